//! Deterministic mutations for the hostile-input campaigns: a seeded generator and byte-level
//! edits (bit flips, extreme words, truncation, splices), so a failing case reproduces from its
//! iteration number.

use std::ops::Range;

/// xorshift64*: tiny, fast and the same sequence on every platform.
pub struct Rng(u64);

impl Rng {
    /// A generator; a zero seed (which would stay zero forever) is replaced.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A random element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Values that break size and offset arithmetic (zero, around powers of two, the maxima).
pub const EXTREME_U64: [u64; 12] = [
    0,
    1,
    2,
    7,
    8,
    255,
    1 << 31,
    u32::MAX as u64,
    1 << 32,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

/// Applies one random byte-level mutation to `bytes`, mostly inside `focus` (a header, say):
/// 1–4 bit flips, an extreme little-endian 4- or 8-byte word, truncation (sometimes with a
/// corrupted byte), or a duplicated or deleted chunk. Returns what it did, for messages.
pub fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, focus: Range<usize>) -> String {
    if bytes.is_empty() {
        bytes.push(rng.next_u64() as u8);
        return "grew an empty file".into();
    }
    let focus = focus.start.min(bytes.len() - 1)..focus.end.clamp(1, bytes.len());
    let len = bytes.len();
    let at = |rng: &mut Rng| {
        if rng.one_in(5) || focus.is_empty() {
            rng.below(len)
        } else {
            focus.start + rng.below(focus.len())
        }
    };
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let i = at(rng);
                bytes[i] ^= 1 << rng.below(8);
            }
            format!("{n} bit flip(s)")
        }
        1 => {
            let v = *rng.pick(&EXTREME_U64);
            let width = if rng.one_in(2) { 4 } else { 8 };
            let i = at(rng).min(bytes.len().saturating_sub(width));
            let end = (i + width).min(bytes.len());
            bytes[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
            format!("{v} written at byte {i}")
        }
        2 => {
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
            if cut > 0 && rng.one_in(2) {
                let i = rng.below(cut);
                bytes[i] = rng.next_u64() as u8;
            }
            format!("truncated to {cut} bytes")
        }
        _ => {
            let i = at(rng);
            let n = 1 + rng.below(16);
            let end = (i + n).min(bytes.len());
            if rng.one_in(2) {
                let chunk = bytes[i..end].to_vec();
                bytes.splice(i..i, chunk);
                format!("bytes {i}..{end} duplicated")
            } else {
                bytes.drain(i..end);
                format!("bytes {i}..{end} deleted")
            }
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".into())
}
