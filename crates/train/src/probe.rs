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

/// What the run ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub threads: usize,
    /// Total memory in MiB.
    pub memory_mib: f64,
    /// Operating system.
    pub os: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo` and `/proc/meminfo` (fields stay empty elsewhere).
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|k| k / 1024.0)
            .unwrap_or(0.0);
        Self {
            cpu,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib,
            os: std::env::consts::OS.to_string(),
        }
    }

    /// A short fingerprint (CPU, threads, memory rounded to GiB) for history rows.
    pub fn fingerprint(&self) -> String {
        format!(
            "{} x{} {:.0}GiB",
            self.cpu,
            self.threads,
            self.memory_mib / 1024.0
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_at_least_current() {
        if let (Some(peak), Some(now)) = (super::peak_rss_mib(), super::rss_mib()) {
            assert!(peak >= now * 0.99 && now > 0.0);
        }
    }
}
