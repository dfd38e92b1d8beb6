//! What a peak-memory figure measures, told from the backend a run recorded, so every axis,
//! column note and chart says what the number is.
//!
//! tb-train records one figure per run, `peak_rss_mib`: the peak resident set (VmHWM) of the
//! trainer's own process, on every backend; the HF+PEFT peer records its `ru_maxrss`. On the
//! CPU that is the trainer's memory. On a GPU backend (`cuda`, `wgpu`, with or without a
//! `+nf4`/`+q4_k` suffix) the model lives in device memory, which runs do not record (see
//! `tools/gpu-check.sh`, which samples `nvidia-smi`), so the figure is labelled as the host
//! process's RSS and never as device memory.

use std::collections::BTreeSet;

/// The kind of peak-memory figure a run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemoryKind {
    /// A CPU run (Flex, the PyTorch CPU peer, or a row that predates recorded backends: all
    /// of those ran on the CPU): the process's peak RSS is the trainer's memory.
    ProcessRss,
    /// A GPU run: the figure is the host process's peak RSS; device memory is not recorded.
    GpuHostRss,
}

impl MemoryKind {
    /// From a run's backend string (`flex`, `cuda+nf4`, `wgpu`, `torch-cpu`, empty).
    pub fn of_backend(backend: &str) -> Self {
        let device = backend
            .split(['+', '-', ' ', '('])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match device.as_str() {
            "cuda" | "wgpu" => Self::GpuHostRss,
            _ => Self::ProcessRss,
        }
    }

    /// Axis label with unit.
    pub fn axis_label(self) -> &'static str {
        match self {
            Self::ProcessRss => "peak RSS (MiB)",
            Self::GpuHostRss => "peak host RSS (MiB), GPU memory not recorded",
        }
    }

    /// A series or column name, without unit.
    pub fn name(self) -> &'static str {
        match self {
            Self::ProcessRss => "peak RSS",
            Self::GpuHostRss => "peak host RSS (GPU run)",
        }
    }
}

/// The axis label for figures of these kinds (mixed kinds say so).
pub fn axis_label(kinds: &BTreeSet<MemoryKind>) -> String {
    match kinds.iter().collect::<Vec<_>>().as_slice() {
        [] => MemoryKind::ProcessRss.axis_label().into(),
        [one] => one.axis_label().into(),
        _ => "peak RSS (MiB), GPU runs: host only".into(),
    }
}

/// The series name for figures of these kinds.
pub fn series_name(kinds: &BTreeSet<MemoryKind>) -> &'static str {
    match kinds.iter().collect::<Vec<_>>().as_slice() {
        [] => MemoryKind::ProcessRss.name(),
        [one] => one.name(),
        _ => "peak memory",
    }
}

/// The sentence the report's tables carry about their `peak_rss_mib` column.
pub fn column_note(kinds: &BTreeSet<MemoryKind>) -> &'static str {
    if kinds.contains(&MemoryKind::GpuHostRss) {
        "peak_rss_mib is the peak RSS of the trainer's process (VmHWM; the peer's ru_maxrss); \
         on GPU backends (cuda, wgpu) that is the host process only: GPU memory is not recorded \
         by runs."
    } else {
        "peak_rss_mib is the peak RSS of the trainer's process (VmHWM; the peer's ru_maxrss), \
         all runs on the CPU."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_tell_cpu_from_gpu() {
        for b in ["flex", "torch-cpu", "", "ndarray"] {
            assert_eq!(MemoryKind::of_backend(b), MemoryKind::ProcessRss, "{b}");
        }
        for b in ["cuda", "cuda+nf4", "wgpu", "WGPU+q4_k"] {
            assert_eq!(MemoryKind::of_backend(b), MemoryKind::GpuHostRss, "{b}");
        }
        let cpu = BTreeSet::from([MemoryKind::ProcessRss]);
        assert_eq!(axis_label(&cpu), "peak RSS (MiB)");
        let gpu = BTreeSet::from([MemoryKind::GpuHostRss]);
        assert!(axis_label(&gpu).contains("host RSS") && axis_label(&gpu).contains("not recorded"));
        let both = BTreeSet::from([MemoryKind::ProcessRss, MemoryKind::GpuHostRss]);
        assert!(axis_label(&both).contains("GPU runs: host only"));
        assert!(column_note(&gpu).contains("GPU memory is not recorded"));
        assert!(!column_note(&cpu).contains("GPU"));
    }
}
