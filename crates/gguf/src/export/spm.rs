//! A minimal reader for SentencePiece's `tokenizer.model` (a `ModelProto` protobuf).
//!
//! Only what the GGUF vocabulary needs is decoded: `ModelProto.pieces` (field 1, repeated
//! `SentencePiece { piece = 1: string, score = 2: float, type = 3: enum }`) and
//! `ModelProto.normalizer_spec.add_dummy_prefix` (field 3 → field 3, bool, default true).
//! Every other field is skipped by its wire type.

use std::path::Path;

use crate::error::{Error, Result};

/// SentencePiece piece types (identical to the GGUF token types).
pub mod piece_type {
    /// Ordinary piece.
    pub const NORMAL: i32 = 1;
    /// `<unk>`.
    pub const UNKNOWN: i32 = 2;
    /// Control symbol (`<s>`, `</s>`).
    pub const CONTROL: i32 = 3;
    /// User-defined symbol.
    pub const USER_DEFINED: i32 = 4;
    /// Unused.
    pub const UNUSED: i32 = 5;
    /// Byte-fallback piece `<0xNN>`.
    pub const BYTE: i32 = 6;
}

/// One vocabulary entry of a SentencePiece model.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece text (with `▁` for spaces).
    pub piece: String,
    /// Its score (log probability for unigram models, merge priority for BPE models).
    pub score: f32,
    /// Its type ([`piece_type`]).
    pub kind: i32,
}

/// The parts of a SentencePiece model the exporter uses.
#[derive(Debug, Clone, PartialEq)]
pub struct SpmModel {
    /// Pieces in id order.
    pub pieces: Vec<Piece>,
    /// `normalizer_spec.add_dummy_prefix`.
    pub add_dummy_prefix: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| format!("truncated varint at byte {}", self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    fn bytes(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("field of {n} bytes at byte {} runs past the end", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field, wire type)`, or `None` at the end.
    fn key(&mut self) -> std::result::Result<Option<(u64, u8)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn skip(&mut self, wire: u8) -> std::result::Result<(), String> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.bytes(8).map(drop),
            2 => {
                let n = self.varint()? as usize;
                self.bytes(n).map(drop)
            }
            5 => self.bytes(4).map(drop),
            w => Err(format!("unsupported wire type {w} at byte {}", self.pos)),
        }
    }

    fn len_delimited(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.varint()? as usize;
        self.bytes(n)
    }
}

fn parse_piece(buf: &[u8]) -> std::result::Result<Piece, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: piece_type::NORMAL,
    };
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, 2) => {
                p.piece = String::from_utf8(r.len_delimited()?.to_vec())
                    .map_err(|_| "piece is not UTF-8".to_string())?;
            }
            (2, 5) => {
                let b = r.bytes(4)?;
                p.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            (3, 0) => p.kind = r.varint()? as i32,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(p)
}

fn parse_normalizer(buf: &[u8]) -> std::result::Result<Option<bool>, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut add = None;
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (3, 0) => add = Some(r.varint()? != 0),
            (_, w) => r.skip(w)?,
        }
    }
    Ok(add)
}

impl SpmModel {
    /// Parses serialized `ModelProto` bytes.
    pub fn parse(buf: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader { buf, pos: 0 };
        let mut pieces = Vec::new();
        let mut add_dummy_prefix = true;
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, 2) => pieces.push(parse_piece(r.len_delimited()?)?),
                (3, 2) => {
                    if let Some(a) = parse_normalizer(r.len_delimited()?)? {
                        add_dummy_prefix = a;
                    }
                }
                (_, w) => r.skip(w)?,
            }
        }
        if pieces.is_empty() {
            return Err("no pieces (not a SentencePiece model?)".into());
        }
        Ok(SpmModel {
            pieces,
            add_dummy_prefix,
        })
    }

    /// Parses the bytes of a `tokenizer.model` file (`path` is named in messages).
    pub fn parse_file(buf: &[u8], path: &Path) -> Result<Self> {
        Self::parse(buf)
            .map_err(|m| Error::convert(path, format!("invalid SentencePiece model: {m}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn piece(text: &str, score: f32, kind: Option<u64>) -> Vec<u8> {
        let mut p = vec![0x0a];
        varint(text.len() as u64, &mut p);
        p.extend_from_slice(text.as_bytes());
        p.push(0x15);
        p.extend_from_slice(&score.to_le_bytes());
        if let Some(k) = kind {
            p.push(0x18);
            varint(k, &mut p);
        }
        p
    }

    #[test]
    fn parses_pieces_and_skips_other_fields() {
        let mut m = Vec::new();
        for p in [
            piece("<unk>", 0.0, Some(2)),
            piece("<s>", 0.0, Some(3)),
            piece("\u{2581}a", -1.5, None),
        ] {
            m.push(0x0a);
            varint(p.len() as u64, &mut m);
            m.extend(p);
        }
        // trainer_spec (field 2) with a varint inside, then normalizer_spec add_dummy_prefix=0
        m.extend([0x12, 0x02, 0x08, 0x01]);
        m.extend([0x1a, 0x02, 0x18, 0x00]);
        let spm = SpmModel::parse(&m).unwrap();
        assert_eq!(spm.pieces.len(), 3);
        assert_eq!(spm.pieces[0].kind, piece_type::UNKNOWN);
        assert_eq!(spm.pieces[2].piece, "\u{2581}a");
        assert_eq!(spm.pieces[2].score, -1.5);
        assert_eq!(spm.pieces[2].kind, piece_type::NORMAL);
        assert!(!spm.add_dummy_prefix);
        assert!(SpmModel::parse(&m[..m.len() - 3]).is_err());
        assert!(SpmModel::parse(&[]).is_err());
    }
}
