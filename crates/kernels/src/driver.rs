//! The blocked loop nest around the micro-kernels and its split over rayon threads.
//!
//! C is cut into tasks (ranges of rows × ranges of columns): over m in `MR` multiples when there
//! are enough rows for every thread to get a few micro-panels, else over n in panel multiples
//! (short, wide outputs), into at least as many tasks as threads (a multiple of the thread
//! count, each a few cache blocks at most). Splitting over m packs each A row once per NC
//! block; splitting over n packs all of A in every task, so it is kept for small m, where A is
//! cheap. The total B traffic is the same either way (each B panel once per A block).
//! The rows of C are split into disjoint `&mut` slices per task, so tasks never share a
//! written element and no unsafe is needed here. Inside a task, the classic BLIS order:
//!
//! ```text
//! for jc in task columns, step NC          (kc × NC of packed B: L2/L3)
//!   for kb in k blocks of KC
//!     for ic in task rows, step MC         (pack A: MC × KC, L2)
//!       for jp in panels of jc             (KC × NR B micro-panel: L1)
//!         for ip in micro-panels of ic     (MR × KC A micro-panel streams from L2)
//!           micro-kernel → MR × NR tile of C (overwrite on the first k block unless
//!                                             accumulating, add afterwards)
//! ```

use std::ops::Range;

use rayon::prelude::*;

use crate::kernels::{Blocking, Kernel, Tile};
use crate::mat::{MatMut, MatRef};
use crate::pack::{ABlock, AlignedBuf, BLayout, PackElem};
use crate::{Call, Threads};

/// Below this many multiply-adds a product runs on the calling thread only.
const PAR_MIN_MACS: usize = 1 << 18;

/// Split over m when every thread gets at least this many A micro-panels (else over n).
const MIN_PANELS_PER_THREAD: usize = 4;

/// Where the kernel's B micro-panels come from.
#[derive(Clone, Copy)]
pub(crate) enum BSource<'p, P> {
    /// Packed in the kernel's own layout: used in place.
    Packed(&'p [P]),
    /// bf16 pairs for an f32 kernel: each micro-panel is widened (by the given function) into a
    /// per-task buffer once per A block (`1/MC` of the multiply-adds' work) and then read like
    /// f32 panels.
    Bf16Pairs(&'p [u16], fn(&[u16], usize, usize, &mut [P])),
}

/// What the loop nest needs to know about one (kernel, packed B) pair.
pub(crate) struct Plan<'p, P> {
    /// Which kernel (for its blocking and its ISA's packing helpers).
    pub kind: Kernel,
    /// The micro-kernel.
    pub kernel: fn(usize, &[P], &[P], &mut Tile<'_, '_>),
    /// Round A to bf16 while packing it (bf16 precision through an f32 kernel).
    pub round_a: bool,
    /// Packed B.
    pub b: BSource<'p, P>,
    /// Where B's panels are.
    pub layout: BLayout,
}

/// `C = alpha·A·B (+ C)` for checked shapes (`a` is `m × k`, `c` is `m × n`, B is the plan's).
pub(crate) fn run<P: PackElem>(plan: &Plan<'_, P>, a: &MatRef<'_, f32>, c: MatMut<'_>, call: Call) {
    let Call {
        alpha, accumulate, ..
    } = call;
    let (m, n, k) = (a.rows, plan.layout.n, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.into_rows().into_iter().for_each(|row| row.fill(0.0));
        }
        return;
    }
    let threads = match call.threads {
        Threads::Pool => rayon::current_num_threads(),
        Threads::Caller => 1,
    };
    let (row_ranges, col_ranges) = split(m, n, k, &plan.kind.blocking(), threads);
    let mut rows = c.into_rows();
    if row_ranges.len() * col_ranges.len() == 1 {
        P::with_scratch(false, |scratch| {
            run_task(plan, a, &mut rows, 0..m, 0..n, alpha, accumulate, scratch)
        });
        return;
    }
    let ncol = col_ranges.len();
    let mut tasks: Vec<Vec<&mut [f32]>> = (0..row_ranges.len() * ncol)
        .map(|t| Vec::with_capacity(row_ranges[t / ncol].len()))
        .collect();
    let mut ti = 0;
    for (r, row) in rows.into_iter().enumerate() {
        if r >= row_ranges[ti].end {
            ti += 1;
        }
        let mut rest = row;
        for (cj, cr) in col_ranges.iter().enumerate() {
            let (seg, tail) = std::mem::take(&mut rest).split_at_mut(cr.len());
            tasks[ti * ncol + cj].push(seg);
            rest = tail;
        }
    }
    tasks.into_par_iter().enumerate().for_each(|(t, mut rows)| {
        let (rr, cr) = (row_ranges[t / ncol].clone(), col_ranges[t % ncol].clone());
        P::with_scratch(false, |scratch| {
            run_task(plan, a, &mut rows, rr, cr, alpha, accumulate, scratch)
        });
    });
}

/// Row ranges × column ranges of the tasks (see the module docs).
fn split(
    m: usize,
    n: usize,
    k: usize,
    blk: &Blocking,
    threads: usize,
) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    let macs = m.saturating_mul(n).saturating_mul(k);
    if threads <= 1 || macs < PAR_MIN_MACS {
        return (whole(m), whole(n));
    }
    let cut = |len: usize, unit: usize, block: usize| -> Vec<Range<usize>> {
        let units = len.div_ceil(unit);
        let want = len.div_ceil(block).max(threads).next_multiple_of(threads);
        let per = units.div_ceil(want.min(units)) * unit;
        (0..len)
            .step_by(per)
            .map(|s| s..(s + per).min(len))
            .collect()
    };
    if m >= MIN_PANELS_PER_THREAD * blk.mr * threads {
        (cut(m, blk.mr, blk.mc), whole(n))
    } else {
        (whole(m), cut(n, blk.nr, blk.nc))
    }
}

/// The single range `0..len`.
fn whole(len: usize) -> Vec<Range<usize>> {
    std::iter::once(0..len).collect()
}

/// The loop nest over one task: rows `rr` × columns `cr` of C, whose row slices (`rows[i]` is
/// row `rr.start + i`, columns `cr`) the task owns. `cr.start` is a multiple of NR.
#[allow(clippy::too_many_arguments)]
fn run_task<P: PackElem>(
    plan: &Plan<'_, P>,
    a: &MatRef<'_, f32>,
    rows: &mut [&mut [f32]],
    rr: Range<usize>,
    cr: Range<usize>,
    alpha: f32,
    accumulate: bool,
    scratch: &mut AlignedBuf<P>,
) {
    let Blocking { mr, nr, kc, mc, nc } = plan.kind.blocking();
    let layout = &plan.layout;
    // Equal A blocks (in MR multiples) rather than full MC blocks plus a sliver: a thin last
    // block would reuse each B micro-panel for only a few tiles.
    let mcb_even = rr
        .len()
        .div_ceil(rr.len().div_ceil(mc))
        .next_multiple_of(mr);
    let a_rows = mcb_even.min(rr.len().next_multiple_of(mr));
    let a_buf = scratch.ensure(a_rows * kc);
    let mut wide = AlignedBuf::<P>::default();
    for jc in cr.clone().step_by(nc) {
        let panels = jc / nr..(jc + nc).min(cr.end).div_ceil(nr);
        for kb in 0..layout.k_blocks() {
            let kcb = layout.kc_of(kb);
            let (depth, steps) = (P::depth(kcb), P::steps(kcb));
            let add = accumulate || kb > 0;
            for ic in rr.clone().step_by(mcb_even) {
                let mcb = mcb_even.min(rr.end - ic);
                let a_panels = mcb.div_ceil(mr);
                let a_pack = &mut a_buf[..a_panels * mr * kc];
                let block = ABlock {
                    rows: ic..ic + mcb,
                    k0: kb * kc,
                    kc: kcb,
                    mr,
                    stride: kc,
                    round: plan.round_a,
                };
                plan.kind.pack_a(a, &block, a_pack);
                for jp in panels.clone() {
                    let b_panel: &[P] = match plan.b {
                        BSource::Packed(b) => &b[layout.panel(kb, jp)],
                        BSource::Bf16Pairs(b, widen) => {
                            let dst = wide.ensure(depth * nr);
                            widen(&b[layout.panel(kb, jp)], kcb, nr, dst);
                            dst
                        }
                    };
                    let nr_eff = nr.min(cr.end - jp * nr);
                    for (ip, a_panel) in a_pack.chunks_exact(mr * kc).enumerate() {
                        let r0 = ic - rr.start + ip * mr;
                        let mr_eff = mr.min(mcb - ip * mr);
                        let mut tile = Tile {
                            rows: &mut rows[r0..r0 + mr_eff],
                            col0: jp * nr - cr.start,
                            mr: mr_eff,
                            nr: nr_eff,
                            alpha,
                            accumulate: add,
                        };
                        (plan.kernel)(steps, a_panel, b_panel, &mut tile);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLK: Blocking = Blocking {
        mr: 14,
        nr: 32,
        kc: 256,
        mc: 336,
        nc: 1024,
    };

    fn covers(ranges: &[Range<usize>], len: usize, unit: usize) {
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(len));
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in ranges {
            assert!(r.start % unit == 0 && !r.is_empty());
        }
    }

    #[test]
    fn split_is_a_partition_on_unit_boundaries() {
        for &(m, n, threads) in &[
            (1024, 1536, 2),
            (1024, 576, 2),
            (1024, 49152, 2),
            (2048, 14336, 2),
            (577, 97, 2),
            (33, 2000, 3),
            (15, 1, 4),
            (1, 4000, 2),
        ] {
            let (rows, cols) = split(m, n, 1000, &BLK, threads);
            covers(&rows, m, BLK.mr);
            covers(&cols, n, BLK.nr);
            assert!(rows.len() == 1 || cols.len() == 1);
            assert!(rows.len() * cols.len() >= threads.min(m.div_ceil(14)).min(n.div_ceil(32)));
        }
        // Tall enough: over m, four blocks of at most MC rows.
        assert_eq!(split(1024, 1536, 576, &BLK, 2).0.len(), 4);
        assert_eq!(split(2048, 14336, 4096, &BLK, 2).0.len(), 8);
        // Short and wide: over n, NC-sized column ranges, an even count.
        assert_eq!(split(33, 2000, 700, &BLK, 2).1.len(), 2);
        assert_eq!(split(64, 14336, 4096, &BLK, 2).1.len(), 14);
        assert_eq!(split(8, 8, 8, &BLK, 2), (whole(8), whole(8)));
    }
}
