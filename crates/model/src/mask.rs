//! Attention masks: causal, sliding-window, and block-diagonal for packed sequences.
//!
//! A mask is a `Bool` tensor `[batch, 1, q_len, k_len]` where `true` means "may NOT attend".
//! Mistral's sliding window follows HF and llama.cpp: query at position `p` sees key position
//! `j` when `j <= p` and `p - j < window`.

use burn::prelude::*;

/// Builds masks on the host and uploads them.
pub struct MaskBuilder;

impl MaskBuilder {
    /// Causal mask for `batch` rows of `q_len` new tokens appended after `past` cached tokens.
    ///
    /// # Shapes
    /// - output: `[batch, 1, q_len, past + q_len]`
    pub fn causal<B: Backend>(
        batch: usize,
        q_len: usize,
        past: usize,
        sliding_window: Option<usize>,
        device: &B::Device,
    ) -> Tensor<B, 4, Bool> {
        let k_len = past + q_len;
        let mut blocked = Vec::with_capacity(q_len * k_len);
        for i in 0..q_len {
            let p = past + i;
            for j in 0..k_len {
                blocked.push(Self::blocked(p, j, sliding_window));
            }
        }
        let row = Tensor::<B, 2, Bool>::from_data(TensorData::new(blocked, [q_len, k_len]), device);
        row.reshape([1, 1, q_len, k_len]).repeat_dim(0, batch)
    }

    /// Block-diagonal causal mask for packed rows: `segments[b][t]` is the example index of token
    /// `t` in row `b` (tokens of different examples never see each other; padding may use any
    /// segment id that no real example uses). Positions inside a segment count from its start.
    ///
    /// # Shapes
    /// - output: `[batch, 1, seq, seq]` where `seq` is the common row length
    pub fn packed<B: Backend>(
        segments: &[Vec<u32>],
        sliding_window: Option<usize>,
        device: &B::Device,
    ) -> Tensor<B, 4, Bool> {
        let batch = segments.len();
        let seq = segments.first().map_or(0, Vec::len);
        let mut blocked = Vec::with_capacity(batch * seq * seq);
        for row in segments {
            for i in 0..seq {
                for j in 0..seq {
                    let same = row.get(i) == row.get(j) && i < row.len() && j < row.len();
                    blocked.push(!same || Self::blocked(i, j, sliding_window));
                }
            }
        }
        Tensor::<B, 1, Bool>::from_data(TensorData::new(blocked, [batch * seq * seq]), device)
            .reshape([batch, 1, seq, seq])
    }

    fn blocked(p: usize, j: usize, window: Option<usize>) -> bool {
        j > p || window.is_some_and(|w| p - j >= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    fn to_vec(m: Tensor<B, 4, Bool>) -> Vec<bool> {
        m.into_data().to_vec::<bool>().unwrap()
    }

    #[test]
    fn sliding_window_matches_hf_rule() {
        let m = to_vec(MaskBuilder::causal::<B>(
            1,
            4,
            0,
            Some(2),
            &Default::default(),
        ));
        #[rustfmt::skip]
        let want = [
            false, true, true, true,
            false, false, true, true,
            true, false, false, true,
            true, true, false, false,
        ];
        assert_eq!(m, want);
    }

    #[test]
    fn packed_rows_are_block_diagonal() {
        let m = to_vec(MaskBuilder::packed::<B>(
            &[vec![0, 0, 1]],
            None,
            &Default::default(),
        ));
        #[rustfmt::skip]
        let want = [
            false, true, true,
            false, false, true,
            true, true, false,
        ];
        assert_eq!(m, want);
    }
}
