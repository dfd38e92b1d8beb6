//! Batches for training: padded (one example per row) and padding-free packed (several examples
//! per row, isolated by a block-diagonal mask, positions restarting per example).
//!
//! Targets are already shifted: `targets[t]` is the token to predict after reading
//! `input_ids[t]`, or [`IGNORE`] where no loss applies (prompt tokens, padding, the last token of
//! each example, and across example boundaries in packed rows).

use crate::tokenize::TokenizedExample;

/// Target value that carries no loss (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// A rectangular batch, row-major `[rows, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Rows.
    pub rows: usize,
    /// Columns (tokens per row).
    pub seq_len: usize,
    /// Token ids (padding uses `pad_id`).
    pub input_ids: Vec<u32>,
    /// RoPE position of every token (restarts at 0 for each packed example).
    pub positions: Vec<u32>,
    /// Example index within its row for every token; padding has its own id per token
    /// so it attends only to itself.
    pub segments: Vec<Vec<u32>>,
    /// Shifted targets ([`IGNORE`] where no loss).
    pub targets: Vec<i64>,
    /// Real (non-padding) tokens.
    pub real_tokens: usize,
    /// Tokens that carry loss.
    pub loss_tokens: usize,
    /// Ids of the examples in this batch.
    pub example_ids: Vec<String>,
}

impl Batch {
    /// Share of the batch that is padding.
    pub fn padding_fraction(&self) -> f64 {
        let total = self.rows * self.seq_len;
        if total == 0 {
            0.0
        } else {
            1.0 - self.real_tokens as f64 / total as f64
        }
    }

    /// Whether rows hold several examples.
    pub fn is_packed(&self) -> bool {
        self.segments.iter().any(|row| {
            row.iter()
                .take_while(|s| **s < PAD_SEGMENT_BASE)
                .max()
                .copied()
                .unwrap_or(0)
                > 0
        })
    }
}

/// Segment ids of padding tokens start here (each padding token gets its own).
pub const PAD_SEGMENT_BASE: u32 = 1 << 20;

struct RowBuilder {
    ids: Vec<u32>,
    positions: Vec<u32>,
    segments: Vec<u32>,
    targets: Vec<i64>,
    n_examples: u32,
    loss_tokens: usize,
}

impl RowBuilder {
    fn new() -> Self {
        Self {
            ids: Vec::new(),
            positions: Vec::new(),
            segments: Vec::new(),
            targets: Vec::new(),
            n_examples: 0,
            loss_tokens: 0,
        }
    }

    fn push(&mut self, ex: &TokenizedExample) {
        let n = ex.input_ids.len();
        for t in 0..n {
            self.ids.push(ex.input_ids[t]);
            self.positions.push(t as u32);
            self.segments.push(self.n_examples);
            let target = if t + 1 < n && ex.loss_mask[t + 1] {
                self.loss_tokens += 1;
                i64::from(ex.input_ids[t + 1])
            } else {
                IGNORE
            };
            self.targets.push(target);
        }
        self.n_examples += 1;
    }

    fn pad_to(&mut self, len: usize, pad_id: u32) {
        let mut k = 0;
        while self.ids.len() < len {
            self.ids.push(pad_id);
            self.positions.push(0);
            self.segments.push(PAD_SEGMENT_BASE + k);
            self.targets.push(IGNORE);
            k += 1;
        }
    }
}

fn assemble(rows: Vec<RowBuilder>, seq_len: usize, pad_id: u32, ids: Vec<String>) -> Batch {
    let mut batch = Batch {
        rows: rows.len(),
        seq_len,
        input_ids: Vec::with_capacity(rows.len() * seq_len),
        positions: Vec::with_capacity(rows.len() * seq_len),
        segments: Vec::with_capacity(rows.len()),
        targets: Vec::with_capacity(rows.len() * seq_len),
        real_tokens: 0,
        loss_tokens: 0,
        example_ids: ids,
    };
    for mut row in rows {
        batch.real_tokens += row.ids.len();
        batch.loss_tokens += row.loss_tokens;
        row.pad_to(seq_len, pad_id);
        batch.input_ids.extend(row.ids);
        batch.positions.extend(row.positions);
        batch.targets.extend(row.targets);
        batch.segments.push(row.segments);
    }
    batch
}

/// One example per row, right-padded to the longest example of the batch.
pub fn padded_batch(examples: &[&TokenizedExample], pad_id: u32) -> Batch {
    let seq_len = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(0);
    let rows = examples
        .iter()
        .map(|ex| {
            let mut r = RowBuilder::new();
            r.push(ex);
            r
        })
        .collect();
    let ids = examples.iter().map(|e| e.id.clone()).collect();
    assemble(rows, seq_len, pad_id, ids)
}

/// Packs examples into rows of at most `row_len` tokens, first-fit in the given order (so a
/// seeded shuffle upstream decides the mix), then pads rows to the longest packed row.
/// Examples longer than `row_len` get a row of their own (the caller truncates beforehand).
pub fn packed_batch(examples: &[&TokenizedExample], row_len: usize, pad_id: u32) -> Batch {
    let mut rows: Vec<RowBuilder> = Vec::new();
    let mut ids = Vec::new();
    for ex in examples {
        let n = ex.input_ids.len();
        match rows.iter_mut().find(|r| r.ids.len() + n <= row_len) {
            Some(row) => row.push(ex),
            None => {
                let mut r = RowBuilder::new();
                r.push(ex);
                rows.push(r);
            }
        }
        ids.push(ex.id.clone());
    }
    let seq_len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    assemble(rows, seq_len, pad_id, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, ids: &[u32], mask: &[bool]) -> TokenizedExample {
        TokenizedExample {
            id: id.into(),
            input_ids: ids.to_vec(),
            loss_mask: mask.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn padded_targets_are_shifted_and_masked() {
        let a = ex("a", &[1, 2, 3, 4], &[false, false, true, true]);
        let b = ex("b", &[5, 6], &[false, true]);
        let batch = padded_batch(&[&a, &b], 0);
        assert_eq!(batch.seq_len, 4);
        assert_eq!(batch.input_ids, vec![1, 2, 3, 4, 5, 6, 0, 0]);
        assert_eq!(
            batch.targets,
            vec![IGNORE, 3, 4, IGNORE, 6, IGNORE, IGNORE, IGNORE]
        );
        assert_eq!(batch.loss_tokens, 3);
        assert_eq!(batch.real_tokens, 6);
        assert!((batch.padding_fraction() - 0.25).abs() < 1e-12);
        assert!(!batch.is_packed());
    }

    #[test]
    fn packing_restarts_positions_and_never_crosses_examples() {
        let a = ex("a", &[1, 2, 3], &[false, true, true]);
        let b = ex("b", &[4, 5], &[false, true]);
        let c = ex("c", &[6, 7, 8, 9], &[false, false, true, true]);
        let batch = packed_batch(&[&a, &b, &c], 5, 0);
        assert_eq!(batch.rows, 2);
        assert_eq!(batch.input_ids[..5], [1, 2, 3, 4, 5]);
        assert_eq!(batch.positions[..5], [0, 1, 2, 0, 1]);
        assert_eq!(batch.segments[0], vec![0, 0, 0, 1, 1]);
        // last token of `a` must not predict the first of `b`
        assert_eq!(batch.targets[..5], [2, 3, IGNORE, 5, IGNORE]);
        assert_eq!(batch.segments[1][4], PAD_SEGMENT_BASE);
        assert!(batch.is_packed());
        assert_eq!(batch.loss_tokens, 2 + 1 + 2);
    }
}
