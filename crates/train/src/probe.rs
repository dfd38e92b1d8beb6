//! Memory and machine probes: peak resident memory of this process (Linux `VmHWM`), current
//! resident memory (`VmRSS`), and a short machine description for run summaries.

use serde::{Deserialize, Serialize};

fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Peak resident set size of this process in MiB (`VmHWM`), if the OS reports it.
pub fn peak_rss_mib() -> Option<f64> {
    status_kib("VmHWM:").map(|k| k as f64 / 1024.0)
}

/// Current resident set size in MiB (`VmRSS`).
pub fn rss_mib() -> Option<f64> {
    status_kib("VmRSS:").map(|k| k as f64 / 1024.0)
}

/// SIMD features named in a machine's fingerprint, in this order, where `/proc/cpuinfo` lists
/// them (x86 `flags`, Arm `Features`): the ones that change which kernels run and how fast.
const ISA_FLAGS: &[&str] = &[
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "asimd",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
];

/// What the run ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (`model name`; the architecture where the OS gives none).
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub threads: usize,
    /// Total memory in MiB.
    pub memory_mib: f64,
    /// Operating system.
    pub os: String,
    /// Vendor, family and model numbers (`AuthenticAMD 25/17`): tells apart CPUs that share a
    /// model name (cloud VMs often report only "AMD EPYC"). Absent from summaries written
    /// before it was recorded, and where `/proc/cpuinfo` has no such fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_id: Option<String>,
    /// The SIMD features among those that change which kernels run (avx2, fma, avx512f,
    /// avx512_bf16, avx512_fp16, avx_vnni, amx_tile, amx_bf16; Arm asimd, sve, sve2, bf16,
    /// i8mm) this CPU has, in that order (absent from older summaries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isa: Vec<String>,
    /// The GPU a GPU run used (`NVIDIA H100 80GB HBM3`), from `nvidia-smi`; absent for CPU runs,
    /// older summaries, and GPUs `nvidia-smi` does not name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

impl Machine {
    /// Reads `/proc/cpuinfo` and `/proc/meminfo` (fields stay empty elsewhere).
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|k| k / 1024.0)
            .unwrap_or(0.0);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::from_cpuinfo(&cpuinfo, threads, memory_mib)
    }

    /// The machine a `/proc/cpuinfo` text describes (its first processor), with the given
    /// thread count and memory.
    pub fn from_cpuinfo(cpuinfo: &str, threads: usize, memory_mib: f64) -> Self {
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let cpu = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let cpu_id = match (field("vendor_id"), field("cpu family"), field("model")) {
            (Some(v), Some(f), Some(m)) => Some(format!("{v} {f}/{m}")),
            _ => None,
        };
        let flags = field("flags")
            .or_else(|| field("Features"))
            .unwrap_or_default();
        let present: Vec<&str> = flags.split_whitespace().collect();
        let isa = ISA_FLAGS
            .iter()
            .filter(|f| present.contains(f))
            .map(|f| f.to_string())
            .collect();
        Self {
            cpu,
            threads,
            memory_mib,
            os: std::env::consts::OS.to_string(),
            cpu_id,
            isa,
            gpu: None,
        }
    }

    /// This machine as a run on `device` used it: for a GPU device, the first GPU `nvidia-smi`
    /// lists (the CUDA backend trains on GPU 0; wgpu picks the high-performance adapter, which
    /// is that GPU where one is installed). A GPU `nvidia-smi` cannot name stays unnamed (the
    /// run's `backend` still says it ran on a GPU).
    pub fn on_device(mut self, device: crate::config::DeviceKind) -> Self {
        if device != crate::config::DeviceKind::Cpu {
            self.gpu = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=name", "--format=csv,noheader"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| first_gpu_name(&String::from_utf8_lossy(&o.stdout)));
        }
        self
    }

    /// The key history rows and `regress` group by: CPU name, vendor/family/model, threads,
    /// memory rounded to GiB, the SIMD features and, for a GPU run, the GPU, e.g.
    /// `AMD EPYC [AuthenticAMD 25/17] x2 24GiB avx2+fma+avx512f+avx512_bf16` or `... gpu:NVIDIA
    /// H200`; two CPUs that run different kernels, or two GPUs, never share it. Summaries without `cpu_id`/`isa` keep the short
    /// form `AMD EPYC x2 24GiB`.
    pub fn fingerprint(&self) -> String {
        let mut key = self.cpu.clone();
        if let Some(id) = &self.cpu_id {
            key.push_str(&format!(" [{id}]"));
        }
        key.push_str(&format!(
            " x{} {:.0}GiB",
            self.threads,
            self.memory_mib / 1024.0
        ));
        if !self.isa.is_empty() {
            key.push(' ');
            key.push_str(&self.isa.join("+"));
        }
        if let Some(gpu) = &self.gpu {
            key.push_str(&format!(" gpu:{gpu}"));
        }
        key
    }
}

/// The first name in `nvidia-smi --query-gpu=name --format=csv,noheader` output.
fn first_gpu_name(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{first_gpu_name, Machine};

    const ZEN4: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512vl\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
    const ZEN3: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n";

    #[test]
    fn cpus_sharing_a_model_name_get_different_keys() {
        let zen4 = Machine::from_cpuinfo(ZEN4, 2, 24.0 * 1024.0);
        assert_eq!(zen4.cpu_id.as_deref(), Some("AuthenticAMD 25/17"));
        assert_eq!(zen4.isa, ["avx2", "fma", "avx512f", "avx512_bf16"]);
        assert_eq!(
            zen4.fingerprint(),
            "AMD EPYC [AuthenticAMD 25/17] x2 24GiB avx2+fma+avx512f+avx512_bf16"
        );
        let zen3 = Machine::from_cpuinfo(ZEN3, 2, 24.0 * 1024.0);
        assert_eq!(
            zen3.fingerprint(),
            "AMD EPYC [AuthenticAMD 25/1] x2 24GiB avx2+fma"
        );
        assert_ne!(zen3.fingerprint(), zen4.fingerprint());
        let arm = Machine::from_cpuinfo("Features\t: fp asimd sve bf16\n", 4, 8192.0);
        assert_eq!(
            arm.fingerprint(),
            format!("{} x4 8GiB asimd+sve+bf16", std::env::consts::ARCH)
        );
    }

    #[test]
    fn a_gpu_run_names_its_gpu_in_the_key() {
        let cpu = Machine::from_cpuinfo(ZEN4, 2, 24.0 * 1024.0);
        let h100 = Machine {
            gpu: first_gpu_name("NVIDIA H100 80GB HBM3\nNVIDIA H100 80GB HBM3\n"),
            ..cpu.clone()
        };
        assert_eq!(h100.gpu.as_deref(), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(
            h100.fingerprint(),
            format!("{} gpu:NVIDIA H100 80GB HBM3", cpu.fingerprint())
        );
        let h200 = Machine {
            gpu: Some("NVIDIA H200".into()),
            ..cpu.clone()
        };
        assert_ne!(h100.fingerprint(), h200.fingerprint());
        assert_eq!(first_gpu_name("\n  \n"), None);
        // A CPU run asks no GPU tool and keeps the CPU's key.
        let on_cpu = cpu.clone().on_device(crate::config::DeviceKind::Cpu);
        assert_eq!(on_cpu.gpu, None);
        assert_eq!(on_cpu.fingerprint(), cpu.fingerprint());
        let json = serde_json::to_value(&on_cpu).unwrap();
        assert!(json.get("gpu").is_none(), "{json}");
    }

    #[test]
    fn summaries_without_the_cpu_fields_keep_their_key() {
        let old = r#"{"cpu":"AMD EPYC","threads":2,"memory_mib":24105.2578125,"os":"linux"}"#;
        let m: Machine = serde_json::from_str(old).unwrap();
        assert_eq!(m.fingerprint(), "AMD EPYC x2 24GiB");
        let back: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(old).unwrap()
        );
    }

    /// The current size is read first: other tests allocate on other threads meanwhile, and
    /// a peak read later is at least any size read before it.
    #[test]
    fn peak_is_at_least_current() {
        let now = super::rss_mib();
        let peak = super::peak_rss_mib();
        if let (Some(peak), Some(now)) = (peak, now) {
            assert!(
                peak >= now && now > 0.0,
                "peak {peak} MiB, current {now} MiB"
            );
        }
    }
}
