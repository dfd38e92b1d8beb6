//! Instruction-set selection: what the CPU has (detected once), what `TB_GEMM_ISA` forces, and
//! the arithmetic precision a call asks for.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::{Error, Result};

/// Environment variable that forces one micro-kernel family for every call that does not name
/// an ISA itself: `scalar`, `avx2`, `avx512`, `avx512bf16`, or `auto` (the default).
pub const ISA_ENV: &str = "TB_GEMM_ISA";

/// A family of micro-kernels, ordered from most portable to most specialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, any CPU: the reference micro-kernel of the same packed interface.
    Scalar,
    /// x86-64 AVX2 + FMA: 6×16 f32 tiles (Zen 1–3, Haswell and later).
    Avx2,
    /// x86-64 AVX-512F: 14×32 f32 tiles (Skylake-SP and later, Zen 4/5).
    Avx512,
    /// x86-64 AVX-512F + AVX512_BF16: the AVX-512 f32 kernel for [`Precision::F32`], a 14×32
    /// `vdpbf16ps` kernel for [`Precision::Bf16`] (Cooper Lake, Sapphire Rapids, Zen 4/5).
    Avx512Bf16,
}

impl Isa {
    /// Every ISA, most portable first.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Bf16];

    /// The lowercase name `TB_GEMM_ISA` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
        }
    }

    /// Whether this CPU can run this ISA's micro-kernels (checked with CPUID once, then cached
    /// by the standard library).
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every ISA this CPU can run, most portable first (always starts with [`Isa::Scalar`]).
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The ISA the entry points use unless told otherwise: the fastest this CPU has, detected
    /// once. That is [`Isa::Avx512Bf16`] only where `vdpbf16ps` clearly out-runs f32 FMAs
    /// (measured once, under a millisecond: Zen 4/5 yes, Sapphire Rapids no — there the bf16
    /// precision runs faster as widened f32 on [`Isa::Avx512`]); otherwise the most specialised
    /// of the rest.
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            if Isa::Avx512Bf16.is_available() && crate::kernels::bf16_dot_beats_fma() {
                return Isa::Avx512Bf16;
            }
            [Isa::Avx512, Isa::Avx2]
                .into_iter()
                .find(|isa| isa.is_available())
                .unwrap_or(Isa::Scalar)
        })
    }

    /// The ISA used by the entry points that do not name one: `TB_GEMM_ISA` if set (and not
    /// `auto`), else [`Isa::detected`]. Read once and cached for the process; an unknown value or
    /// an ISA this CPU lacks is an error (returned by every such call) rather than a silent
    /// fallback, so a forced benchmark never measures a different path than it says.
    pub fn active() -> Result<Isa> {
        static ACTIVE: OnceLock<Result<Isa>> = OnceLock::new();
        ACTIVE
            .get_or_init(|| Isa::resolve(std::env::var(ISA_ENV).ok().as_deref()))
            .clone()
    }

    /// What [`Isa::active`] returns for a given `TB_GEMM_ISA` value (`None`: unset).
    pub fn resolve(env_value: Option<&str>) -> Result<Isa> {
        match env_value.map(str::trim) {
            None | Some("") => Ok(Isa::detected()),
            Some(v) if v.eq_ignore_ascii_case("auto") => Ok(Isa::detected()),
            Some(v) => v.parse::<Isa>()?.require(),
        }
    }

    /// `Ok(self)` if this CPU can run it, else [`Error::IsaUnavailable`].
    pub fn require(self) -> Result<Isa> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::IsaUnavailable {
                requested: self,
                detected: Isa::detected(),
            })
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = Error;

    /// Parses the names [`Isa::name`] gives (case-insensitive; `avx512-bf16`, `avx512_bf16`
    /// also accepted).
    fn from_str(s: &str) -> Result<Isa> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == norm)
            .ok_or_else(|| Error::UnknownIsa {
                value: s.to_string(),
            })
    }
}

/// The arithmetic a multiplication uses. Accumulation is f32 in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// Products of the f32 values (a bf16 B is widened exactly), f32 FMAs.
    #[default]
    F32,
    /// Both operands rounded to bf16 (round-to-nearest-even) and multiplied exactly, summed in
    /// f32 — what PyTorch's bf16 autocast does on CPU. B is packed as bf16 (half the memory of
    /// f32 panels). Runs `vdpbf16ps` on [`Isa::Avx512Bf16`]; on the other ISAs each B
    /// micro-panel is widened to f32 once per A block and the same bf16-rounded values go
    /// through that ISA's f32 kernel (a bf16×bf16 product is exact in f32, so the two differ
    /// only in summation order and in the instruction's flushing of subnormals to zero).
    Bf16,
}

impl Precision {
    /// The arithmetic of the products of a model held in bf16 (its frozen base, and the
    /// activation products autocast would run in bf16): [`Precision::Bf16`] where the active ISA
    /// is [`Isa::Avx512Bf16`] — chosen only where its `vdpbf16ps` kernel measures clearly faster
    /// than f32 FMAs (about 2× on Zen 4; not on Sapphire Rapids without AMX, where `vdpbf16ps`
    /// issues at a quarter of the FMA rate) — and [`Precision::F32`] elsewhere, where bf16
    /// products would cost precision for no speed (the bf16 weights still halve the memory).
    /// `TB_GEMM_ISA` forces one path.
    pub fn for_bf16_model() -> Precision {
        match Isa::active() {
            Ok(Isa::Avx512Bf16) => Precision::Bf16,
            _ => Precision::F32,
        }
    }
}
