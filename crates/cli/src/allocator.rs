//! Process-wide heap policy for glibc: the trainers allocate and free the same activation-sized
//! buffers (0.1–32 MiB) every step. With glibc's defaults each of those is a fresh `mmap` (or a
//! heap top trimmed back to the kernel) and every page of it faults and is cleared again on the
//! next step; keeping them in the heap measured +4% PEFT-style tokens/s on SmolLM2 (2-core
//! Zen 4, 5 steps, interleaved pairs: 116.6/116.2 → 120.3/121.6). Set once at start-up in the
//! binary, never from a library. A user's own `GLIBC_TUNABLES` or `MALLOC_*_` settings win.

/// Blocks below this come from the heap, not from their own `mmap` (glibc's upper bound for
/// the threshold: 32 MiB on 64-bit).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Freed memory at the top of the heap kept for reuse instead of being returned to the kernel.
pub const TRIM_THRESHOLD: usize = i32::MAX as usize;

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The thresholds above are in effect.
    Applied,
    /// The environment already sets malloc tunables; left as they are.
    UserSettings,
    /// Not glibc (or glibc refused the values): the allocator's defaults stay.
    Unavailable,
}

/// Applies the thresholds unless the environment configures malloc itself.
pub fn tune() -> Tuning {
    let user = std::env::var_os("GLIBC_TUNABLES").is_some()
        || std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_"));
    if user {
        return Tuning::UserSettings;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    let as_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is called once, on the
    // main thread, before any worker thread exists.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) == 1
    };
    if ok {
        Tuning::Applied
    } else {
        Tuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::Unavailable
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Whether glibc served a `bytes` request with its own `mmap`: bit 0x2 (`IS_MMAPPED`) of
    /// the chunk's size field, the word before the pointer malloc returns (glibc's chunk
    /// layout). Read per block, so other tests' allocations cannot disturb it.
    fn is_mmapped(bytes: usize) -> bool {
        // SAFETY: malloc'd and freed here; the size word precedes every glibc chunk's memory.
        unsafe {
            let p = libc::malloc(bytes).cast::<usize>();
            assert!(!p.is_null(), "malloc({bytes}) failed");
            let mmapped = *p.sub(1) & 2 != 0;
            libc::free(p.cast());
            mmapped
        }
    }

    #[test]
    fn activation_sized_blocks_come_from_the_heap_once_applied() {
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        assert_eq!(apply(), Tuning::Applied);
        assert!(
            !is_mmapped(16 << 20),
            "a 16 MiB block was mmapped: threshold not applied"
        );
        assert!(!is_mmapped(MMAP_THRESHOLD - 4096));
        assert!(
            is_mmapped(64 << 20),
            "blocks above the threshold keep their own mmap"
        );
    }
}
