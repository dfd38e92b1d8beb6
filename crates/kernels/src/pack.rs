//! Packing: B into `kc × NR` micro-panels once ([`PackedB`], or per call into a thread-local
//! buffer), A into `MR × kc` micro-panels per A block, both zero-padded at the edges and in the
//! element type the micro-kernel reads (f32, or bf16 bits in k pairs for `vdpbf16ps`).
//!
//! Packed B layout: k blocks of `kc` rows one after the other; inside block `kb`, the `⌈n/NR⌉`
//! panels one after the other, each `depth(kc_kb) × NR` values (`depth` rounds up to even for
//! the pairs). So any range of columns of a k block is one contiguous run of panels, and a
//! panel is found by arithmetic alone.

use std::cell::Cell;
use std::ops::Range;

use rayon::prelude::*;

use crate::kernels::transpose::{transpose_lanes, DstLanes, SrcLanes};
use crate::kernels::Kernel;
use crate::mat::{round_bf16, round_bf16_bits, Element, MatRef};
use crate::{Error, Isa, Precision, Result};

/// Below this many packed values, packing B runs on the calling thread only.
const PAR_PACK_MIN: usize = 1 << 16;

/// An element of a packed panel: f32, or a bf16 bit pattern laid out in k pairs.
pub(crate) trait PackElem: Copy + Default + Send + Sync + 'static {
    /// Packed in k pairs (`vdpbf16ps` layout).
    const PAIRS: bool;
    /// An A value as packed (`round`: to bf16 first; the u16 form always rounds).
    fn from_a(x: f32, round: bool) -> Self;
    /// A B value as packed (`round`: to bf16 first; the u16 form always rounds).
    fn from_b<T: Element>(x: T, round: bool) -> Self;
    /// A bf16 bit pattern as packed (exact: widened for f32, kept for u16).
    fn from_bf16_bits(bits: u16) -> Self;
    /// Runs `f` with this thread's scratch buffer for packed A (`b == false`) or for a per-call
    /// packed B. The buffer is taken out of the thread-local while `f` runs, so a nested call on
    /// the same thread (rayon work stealing) gets a fresh one instead of a borrow conflict.
    fn with_scratch<R>(b: bool, f: impl FnOnce(&mut AlignedBuf<Self>) -> R) -> R;
    /// A panel as transpose destination lanes.
    fn lanes_mut(dst: &mut [Self]) -> DstLanes<'_>;

    /// Packed rows for `kc` k values.
    #[inline(always)]
    fn depth(kc: usize) -> usize {
        if Self::PAIRS {
            kc.div_ceil(2) * 2
        } else {
            kc
        }
    }

    /// Micro-kernel steps for `kc` k values (pairs count once).
    #[inline(always)]
    fn steps(kc: usize) -> usize {
        if Self::PAIRS {
            kc.div_ceil(2)
        } else {
            kc
        }
    }

    /// Index of `(p, j)` (k step `p`, lane `j`) in a panel `width` lanes wide.
    #[inline(always)]
    fn index(p: usize, j: usize, width: usize) -> usize {
        if Self::PAIRS {
            (p & !1) * width + 2 * j + (p & 1)
        } else {
            p * width + j
        }
    }
}

thread_local! {
    static SCRATCH_F32: [Cell<AlignedBuf<f32>>; 2] = Default::default();
    static SCRATCH_U16: [Cell<AlignedBuf<u16>>; 2] = Default::default();
}

impl PackElem for f32 {
    const PAIRS: bool = false;
    #[inline(always)]
    fn from_a(x: f32, round: bool) -> f32 {
        if round {
            round_bf16(x)
        } else {
            x
        }
    }
    #[inline(always)]
    fn from_b<T: Element>(x: T, round: bool) -> f32 {
        Self::from_a(x.to_f32(), round)
    }
    #[inline(always)]
    fn from_bf16_bits(bits: u16) -> f32 {
        f32::from_bits(u32::from(bits) << 16)
    }
    fn with_scratch<R>(b: bool, f: impl FnOnce(&mut AlignedBuf<f32>) -> R) -> R {
        let mut buf = SCRATCH_F32.with(|s| s[b as usize].take());
        let out = f(&mut buf);
        SCRATCH_F32.with(|s| s[b as usize].set(buf));
        out
    }
    fn lanes_mut(dst: &mut [f32]) -> DstLanes<'_> {
        DstLanes::F32(dst)
    }
}

impl PackElem for u16 {
    const PAIRS: bool = true;
    #[inline(always)]
    fn from_a(x: f32, _round: bool) -> u16 {
        x.to_bf16_bits()
    }
    #[inline(always)]
    fn from_b<T: Element>(x: T, _round: bool) -> u16 {
        x.to_bf16_bits()
    }
    #[inline(always)]
    fn from_bf16_bits(bits: u16) -> u16 {
        bits
    }
    fn with_scratch<R>(b: bool, f: impl FnOnce(&mut AlignedBuf<u16>) -> R) -> R {
        let mut buf = SCRATCH_U16.with(|s| s[b as usize].take());
        let out = f(&mut buf);
        SCRATCH_U16.with(|s| s[b as usize].set(buf));
        out
    }
    fn lanes_mut(dst: &mut [u16]) -> DstLanes<'_> {
        DstLanes::Pairs(dst)
    }
}

/// A growable buffer whose working slice starts on a 64-byte boundary (whole cache lines and
/// aligned vector loads for the micro-kernels), found with `align_offset` — no unsafe.
#[derive(Debug, Default, Clone)]
pub(crate) struct AlignedBuf<T> {
    vec: Vec<T>,
    offset: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedBuf<T> {
    /// The first `len` elements of the aligned slice, growing the buffer if needed (contents
    /// unspecified: the packers write every element they hand to a kernel).
    pub(crate) fn ensure(&mut self, len: usize) -> &mut [T] {
        let slack = 64 / size_of::<T>();
        if self.vec.len() < len + slack {
            self.vec = vec![T::default(); len + slack];
            let off = self.vec.as_ptr().align_offset(64);
            self.offset = if off <= slack { off } else { 0 };
        }
        self.len = len;
        &mut self.vec[self.offset..self.offset + len]
    }

    /// The slice last returned by [`AlignedBuf::ensure`].
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.vec[self.offset..self.offset + self.len]
    }
}

/// Where each panel of a packed B lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BLayout {
    /// Rows of B (depth of the product).
    pub k: usize,
    /// Columns of B.
    pub n: usize,
    /// k block size.
    pub kc: usize,
    /// Panel width.
    pub nr: usize,
    /// Packed in k pairs.
    pub pairs: bool,
}

impl BLayout {
    /// Number of k blocks.
    pub(crate) fn k_blocks(&self) -> usize {
        self.k.div_ceil(self.kc)
    }

    /// Number of `nr`-wide panels.
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(self.nr)
    }

    /// k values in block `kb`.
    pub(crate) fn kc_of(&self, kb: usize) -> usize {
        self.kc.min(self.k - kb * self.kc)
    }

    /// Packed rows of block `kb`'s panels.
    fn depth_of(&self, kb: usize) -> usize {
        let kc = self.kc_of(kb);
        if self.pairs {
            kc.div_ceil(2) * 2
        } else {
            kc
        }
    }

    /// Range of panel `jp` of k block `kb` in the packed buffer (full blocks are `kc` deep and
    /// `kc` is even, so block starts need no per-block table).
    pub(crate) fn panel(&self, kb: usize, jp: usize) -> Range<usize> {
        let len = self.depth_of(kb) * self.nr;
        let start = kb * self.kc * self.panels() * self.nr + jp * len;
        start..start + len
    }

    /// Total packed length.
    pub(crate) fn len(&self) -> usize {
        match self.k_blocks() {
            0 => 0,
            kb => self.panel(kb - 1, 0).start + self.depth_of(kb - 1) * self.nr * self.panels(),
        }
    }
}

/// Packs all of `b` into `dst` (length `layout.len()`), panels in parallel for big B; a B whose
/// columns are contiguous along k goes through `kernel`'s SIMD block transposes where it has
/// them.
pub(crate) fn pack_b<T: Element, P: PackElem>(
    kernel: Kernel,
    b: &MatRef<'_, T>,
    layout: &BLayout,
    round: bool,
    dst: &mut [P],
) {
    let panels = layout.panels();
    let mut blocks = Vec::with_capacity(layout.k_blocks());
    let mut rest = dst;
    for kb in 0..layout.k_blocks() {
        let len = layout.panel(kb, 0).len() * panels;
        let (block, tail) = std::mem::take(&mut rest).split_at_mut(len);
        blocks.push((kb, block));
        rest = tail;
    }
    let work = |(kb, block): (usize, &mut [P])| {
        let panel_len = layout.panel(kb, 0).len();
        let k0 = kb * layout.kc;
        let kc = layout.kc_of(kb);
        let one = |(jp, panel): (usize, &mut [P])| {
            pack_b_panel(kernel, b, k0, kc, jp * layout.nr, layout.nr, round, panel)
        };
        if layout.len() >= PAR_PACK_MIN {
            block.par_chunks_mut(panel_len).enumerate().for_each(one);
        } else {
            block.chunks_mut(panel_len).enumerate().for_each(one);
        }
    };
    if layout.len() >= PAR_PACK_MIN {
        blocks.into_par_iter().for_each(work);
    } else {
        blocks.into_iter().for_each(work);
    }
}

/// One `kc × nr` panel of B at `(k0, j0)`: `dst[index(p, j)] = B(k0 + p, j0 + j)`, zeros past
/// the last column and in an odd pair's missing half.
#[allow(clippy::too_many_arguments)]
fn pack_b_panel<T: Element, P: PackElem>(
    kernel: Kernel,
    b: &MatRef<'_, T>,
    k0: usize,
    kc: usize,
    j0: usize,
    nr: usize,
    round: bool,
    dst: &mut [P],
) {
    let cols = nr.min(b.cols - j0);
    if cols < nr || P::depth(kc) != kc {
        dst.fill(P::default());
    }
    let (rs, cs) = (b.row_stride, b.col_stride);
    if rs == 1 && cs != 1 {
        // Columns of B are contiguous along k (B = Wᵀ of an [out, in] weight): whole tiles
        // through the SIMD transposes, the rest from W's rows one value at a time.
        let (steps, cols_done) = transpose_panel(kernel, b, k0, kc, j0, cols, nr, round, dst);
        for j in 0..cols {
            let from = if j < cols_done { steps } else { 0 };
            let start = (j0 + j) * cs + k0;
            for (p, &x) in b.data[start + from..start + kc].iter().enumerate() {
                dst[P::index(from + p, j, nr)] = P::from_b(x, round);
            }
        }
    } else if cs == 1 && P::PAIRS {
        // Rows k0 + p and k0 + p + 1 of B interleaved into one pair row of the panel (a
        // missing odd row stays zero): contiguous reads and writes the compiler vectorises,
        // where the per-element index below would store every other u16 one at a time.
        for p in (0..kc).step_by(2) {
            let row = |q: usize| &b.data[(k0 + q) * rs + j0..][..cols];
            let out = &mut dst[P::index(p, 0, nr)..][..2 * cols];
            if p + 1 < kc {
                for ((o, &x), &y) in out.chunks_exact_mut(2).zip(row(p)).zip(row(p + 1)) {
                    o[0] = P::from_b(x, round);
                    o[1] = P::from_b(y, round);
                }
            } else {
                for (o, &x) in out.chunks_exact_mut(2).zip(row(p)) {
                    o[0] = P::from_b(x, round);
                }
            }
        }
    } else if cs == 1 {
        for p in 0..kc {
            let start = (k0 + p) * rs + j0;
            for (j, &x) in b.data[start..start + cols].iter().enumerate() {
                dst[P::index(p, j, nr)] = P::from_b(x, round);
            }
        }
    } else {
        for p in 0..kc {
            for j in 0..cols {
                dst[P::index(p, j, nr)] = P::from_b(b.at(k0 + p, j0 + j), round);
            }
        }
    }
}

/// The SIMD part of a transposed panel (see [`crate::kernels::transpose`]): returns the k values
/// and columns it packed, `(0, 0)` where nothing applies — rounding an f32 weight (to bf16 or in
/// place) is left to the scalar loop.
#[allow(clippy::too_many_arguments)]
fn transpose_panel<T: Element, P: PackElem>(
    kernel: Kernel,
    b: &MatRef<'_, T>,
    k0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
    nr: usize,
    round: bool,
    dst: &mut [P],
) -> (usize, usize) {
    let start = j0 * b.col_stride + k0;
    let (src, steps, unit) = match (T::lanes(b.data), P::PAIRS, round) {
        (SrcLanes::F32(s), true, _) => {
            let cols_in = &s[start..];
            return transpose_rounded_pairs(kernel, cols_in, b.col_stride, kc, cols, nr, dst);
        }
        (SrcLanes::F32(s), false, false) => (SrcLanes::F32(&s[start..]), kc, 1),
        (SrcLanes::Pairs(s), true, _) => (SrcLanes::Pairs(&s[start..]), kc / 2, 2),
        (SrcLanes::Pairs(s), false, false) => (SrcLanes::Widen(&s[start..]), kc, 1),
        _ => return (0, 0),
    };
    let (s, c) = transpose_lanes(
        kernel,
        src,
        b.col_stride,
        P::lanes_mut(dst),
        nr,
        steps,
        cols,
    );
    (s * unit, c)
}

thread_local! {
    /// Columns of an f32 panel rounded to bf16 on their way to the pairs transpose.
    static ROUNDED: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`transpose_panel`] for f32 columns contiguous along k (`src[j·stride + p]`, an activation
/// such as attention's `Kᵀ`) packed as bf16 pairs: each column's `kc` values are rounded into a
/// column-major bf16 buffer (a contiguous, vectorised loop; an odd `kc` gets a zero partner), whose
/// pairs then go through the SIMD pairs transpose. Returns the k values and columns packed.
fn transpose_rounded_pairs<P: PackElem>(
    kernel: Kernel,
    src: &[f32],
    stride: usize,
    kc: usize,
    cols: usize,
    nr: usize,
    dst: &mut [P],
) -> (usize, usize) {
    let depth = kc.next_multiple_of(2);
    ROUNDED.with_borrow_mut(|buf| {
        buf.clear();
        buf.resize(cols * depth, 0);
        for (j, out) in buf.chunks_exact_mut(depth).enumerate() {
            let column = &src[j * stride..][..kc];
            for (o, &x) in out.iter_mut().zip(column) {
                *o = round_bf16_bits(x);
            }
        }
        let lanes = P::lanes_mut(dst);
        let (pairs, c) = transpose_lanes(
            kernel,
            SrcLanes::Pairs(buf),
            depth,
            lanes,
            nr,
            depth / 2,
            cols,
        );
        ((2 * pairs).min(kc), c)
    })
}

/// Which A block to pack, and how.
#[derive(Debug, Clone)]
pub(crate) struct ABlock {
    /// Rows of A.
    pub rows: Range<usize>,
    /// First k.
    pub k0: usize,
    /// Number of k values.
    pub kc: usize,
    /// Micro-panel height.
    pub mr: usize,
    /// Row stride of a micro-panel (the kernel's KC).
    pub stride: usize,
    /// Round to bf16 (the f32 form; the u16 form always rounds).
    pub round: bool,
}

/// Packs the A block `rows × [k0, k0 + kc)` into `⌈rows.len()/mr⌉` micro-panels of
/// `mr × stride` values each, row-major: `dst[panel][i·stride + p] = A(row_i, k0 + p)` for
/// `p < kc`, then a zero to complete an odd last pair (bf16), and all-zero rows past the last
/// row of A. Row-major panels make packing a contiguous (vectorisable) copy of A's rows; the
/// micro-kernels read the `mr` rows at the compile-time stride (`stride` is the kernel's KC),
/// and bf16 pairs along k are then simply adjacent (the `vdpbf16ps` operand).
///
/// `#[inline(always)]` so that the ISA wrappers in `kernels` compile it with their target
/// features (wider vectors for the copy and the bf16 rounding).
#[inline(always)]
pub(crate) fn pack_a<P: PackElem>(a: &MatRef<'_, f32>, block: &ABlock, dst: &mut [P]) {
    let ABlock {
        ref rows,
        k0,
        kc,
        mr,
        stride,
        round,
    } = *block;
    let depth = P::depth(kc);
    for (ip, panel) in dst.chunks_mut(mr * stride).enumerate() {
        let r0 = rows.start + ip * mr;
        let height = mr.min(rows.end - r0);
        for (ii, out) in panel.chunks_mut(stride).enumerate() {
            let out = &mut out[..depth];
            if ii >= height {
                out.fill(P::default());
                continue;
            }
            let (row, rest) = out.split_at_mut(kc);
            rest.fill(P::default());
            if a.col_stride == 1 {
                let start = (r0 + ii) * a.row_stride + k0;
                for (o, &x) in row.iter_mut().zip(&a.data[start..start + kc]) {
                    *o = P::from_a(x, round);
                }
            } else {
                for (p, o) in row.iter_mut().enumerate() {
                    *o = P::from_a(a.at(r0 + ii, k0 + p), round);
                }
            }
        }
    }
}

/// Unpacks one bf16-pair B panel (`kc` k values, `nr` lanes) into the kernel's layout:
/// for the f32 kernels this is the exact bf16 → f32 widening, done once per panel per A block
/// into an L1-sized buffer so the inner loop is the unchanged f32 kernel.
pub(crate) fn widen_pairs<P: PackElem>(src: &[u16], kc: usize, nr: usize, dst: &mut [P]) {
    if P::PAIRS {
        // Same layout: a plain copy (not used by the driver, kept total for the generic code).
        let len = P::depth(kc) * nr;
        dst[..len]
            .iter_mut()
            .zip(&src[..len])
            .for_each(|(d, &s)| *d = P::from_bf16_bits(s));
        return;
    }
    for (pair_rows, out) in src
        .chunks_exact(2 * nr)
        .zip(dst[..kc * nr].chunks_mut(2 * nr))
    {
        let (even, odd) = out.split_at_mut(nr.min(out.len()));
        for (e, two) in even.iter_mut().zip(pair_rows.chunks_exact(2)) {
            *e = P::from_bf16_bits(two[0]);
        }
        // `odd` is empty for the last row of an odd `kc`.
        for (o, two) in odd.iter_mut().zip(pair_rows.chunks_exact(2)) {
            *o = P::from_bf16_bits(two[1]);
        }
    }
}

/// The packed values of a [`PackedB`].
#[derive(Debug, Clone)]
pub(crate) enum PackedData {
    /// f32 panels ([`Precision::F32`]).
    F32(AlignedBuf<f32>),
    /// bf16 pair panels ([`Precision::Bf16`]): read directly by the `vdpbf16ps` kernel, widened
    /// per panel for the f32 kernels. Half the memory of f32 panels either way.
    Bf16(AlignedBuf<u16>),
}

/// A B operand packed once for one ISA and precision, reusable across any number of A's: the
/// frozen base weights of a LoRA layer are packed at load time and every forward/backward
/// matmul against them skips packing B.
#[derive(Debug, Clone)]
pub struct PackedB {
    pub(crate) isa: Isa,
    pub(crate) precision: Precision,
    pub(crate) kernel: Kernel,
    pub(crate) layout: BLayout,
    pub(crate) data: PackedData,
}

impl PackedB {
    /// Packs `b` (`k × n`, any strides, f32 or bf16) for [`Isa::active`] at `precision`.
    pub fn new<T: Element>(b: MatRef<'_, T>, precision: Precision) -> Result<Self> {
        Self::with_isa(Isa::active()?, b, precision)
    }

    /// Packs `b` for the micro-kernels of `isa` (an error if this CPU lacks it).
    pub fn with_isa<T: Element>(isa: Isa, b: MatRef<'_, T>, precision: Precision) -> Result<Self> {
        let isa = isa.require()?;
        let kernel = Kernel::select(isa, precision);
        let layout = layout_for(kernel, precision, b.rows, b.cols);
        layout
            .kc
            .checked_mul(layout.nr)
            .and_then(|x| x.checked_mul(layout.panels()))
            .and_then(|x| x.checked_mul(layout.k_blocks()))
            .ok_or(Error::SizeOverflow)?;
        let data = match precision {
            Precision::Bf16 => {
                let mut buf = AlignedBuf::default();
                pack_b(kernel, &b, &layout, true, buf.ensure(layout.len()));
                PackedData::Bf16(buf)
            }
            Precision::F32 => {
                let mut buf = AlignedBuf::default();
                pack_b(kernel, &b, &layout, false, buf.ensure(layout.len()));
                PackedData::F32(buf)
            }
        };
        Ok(Self {
            isa,
            precision,
            kernel,
            layout,
            data,
        })
    }

    /// Rows of B (the product's depth).
    pub fn k(&self) -> usize {
        self.layout.k
    }

    /// Columns of B (the product's width).
    pub fn n(&self) -> usize {
        self.layout.n
    }

    /// The ISA it was packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The precision it was packed for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Bytes held by the packed panels.
    pub fn packed_bytes(&self) -> usize {
        match &self.data {
            PackedData::F32(b) => b.as_slice().len() * 4,
            PackedData::Bf16(b) => b.as_slice().len() * 2,
        }
    }
}

/// The B layout a kernel wants for a `k × n` B: f32 panels for [`Precision::F32`], bf16 pairs
/// for [`Precision::Bf16`] (whichever kernel reads them).
pub(crate) fn layout_for(kernel: Kernel, precision: Precision, k: usize, n: usize) -> BLayout {
    let blk = kernel.blocking();
    BLayout {
        k,
        n,
        kc: blk.kc,
        nr: blk.nr,
        pairs: precision == Precision::Bf16,
    }
}
