//! The portable reference micro-kernel: plain Rust on the same packed layout as the SIMD ones
//! (LLVM vectorises the 16-wide inner loop with whatever the baseline target allows).

use super::{Blocking, Tile};

const MR: usize = 4;
const NR: usize = 16;
/// Row stride of the packed A micro-panel (the kernel's KC).
const KS: usize = 256;

/// Tile and cache blocking of this kernel (see the crate docs).
pub(super) const BLOCKING: Blocking = Blocking {
    mr: MR,
    nr: NR,
    kc: KS,
    mc: 128,
    nc: 4096,
};

/// f32 4×16 tile: `acc[i][j] = Σ_p a[i·KS + p]·b[p·16 + j]`, then the store.
pub(crate) fn kernel_4x16(kc: usize, a: &[f32], b: &[f32], tile: &mut Tile<'_, '_>) {
    tile.check(MR, NR);
    assert!(
        kc <= KS && a.len() >= MR * KS && b.len() >= kc * NR,
        "invariant: packed panels hold kc steps"
    );
    let rows: [&[f32]; MR] = std::array::from_fn(|i| &a[i * KS..i * KS + kc]);
    let mut acc = [[0.0f32; NR]; MR];
    for (p, bp) in b.chunks_exact(NR).take(kc).enumerate() {
        for (row, a_row) in acc.iter_mut().zip(&rows) {
            let ai = a_row[p];
            for (c, &bj) in row.iter_mut().zip(bp) {
                *c += ai * bj;
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(tile.mr) {
        tile.store_row(i, row);
    }
}
