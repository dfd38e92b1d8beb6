//! Errors of the fused-op API (shape checks before any kernel runs) and of packing a frozen
//! base to 4 bits.

/// What can go wrong when calling a fused op.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FusedError {
    /// Two tensors that must agree on a dimension do not.
    #[error("{op}: {what} (got {got:?}, expected {expected:?})")]
    Shape {
        /// The op that rejected its inputs.
        op: &'static str,
        /// Which dimensions disagree.
        what: &'static str,
        /// The shape that was passed.
        got: Vec<usize>,
        /// The shape (or dimension) that was expected.
        expected: Vec<usize>,
    },
    /// A size argument is out of range (zero chunk, odd head width, heads not divisible...).
    #[error("{op}: {what}")]
    Invalid {
        /// The op that rejected its inputs.
        op: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// A frozen base weight cannot be packed to 4 bits.
    #[error("{tensor}: cannot pack as {format}: {reason}")]
    Pack {
        /// The tensor's name (HF, e.g. `model.layers.0.self_attn.q_proj.weight`).
        tensor: String,
        /// The requested format (`NF4`, `Q4_K`).
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Result of a fused-op call.
pub type Result<T> = core::result::Result<T, FusedError>;

/// Returns a shape error unless `got == expected`.
pub(crate) fn expect_dims(
    op: &'static str,
    what: &'static str,
    got: &[usize],
    expected: &[usize],
) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(FusedError::Shape {
            op,
            what,
            got: got.to_vec(),
            expected: expected.to_vec(),
        })
    }
}
