//! Integer and string encodings shared by the block files: big-endian fixed-width fields and Go's
//! `uvarint`/`varint` (zig-zag), as Prometheus' `tsdb/encoding` writes them (see
//! `../shared/docs/prometheus-tsdb-format.md`, "Integers").
//!
//! Decoding goes through [`Decbuf`], a bounds-checked cursor whose methods return `None` instead of
//! reading past the end, so no input can make a reader panic; callers turn `None` into an error that
//! names their file and [`Decbuf::pos`].

/// Longest Go uvarint of a 64-bit value.
pub const MAX_VARINT_LEN64: usize = 10;

pub fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

pub fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64);
}

pub fn put_uvarint_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn uvarint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

pub fn put_be32(out: &mut Vec<u8>, x: u32) {
    out.extend_from_slice(&x.to_be_bytes());
}

pub fn put_be64(out: &mut Vec<u8>, x: u64) {
    out.extend_from_slice(&x.to_be_bytes());
}

/// Decodes a Go uvarint from the start of `b`: the value and its length, or `None` when `b` ends
/// first or the value overflows 64 bits.
pub fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    let mut shift = 0u32;
    for (i, &byte) in b.iter().enumerate().take(MAX_VARINT_LEN64) {
        if byte < 0x80 {
            if i == MAX_VARINT_LEN64 - 1 && byte > 1 {
                return None;
            }
            return Some((x | u64::from(byte) << shift, i + 1));
        }
        x |= u64::from(byte & 0x7f) << shift;
        shift += 7;
    }
    None
}

/// A bounds-checked read cursor over `data`; `pos` is an absolute offset into `data`.
#[derive(Debug, Clone)]
pub struct Decbuf<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Decbuf<'a> {
    /// A cursor over `data[start..end]` (clamped to `data`).
    pub fn new(data: &'a [u8], start: usize, end: usize) -> Decbuf<'a> {
        let end = end.min(data.len());
        Decbuf {
            data,
            pos: start.min(end),
            end,
        }
    }

    /// Absolute offset of the next unread byte.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left before the end of the cursor's range.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.remaining() {
            return None;
        }
        let b = self.data.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(b)
    }

    pub fn be32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(*self.bytes(4)?.first_chunk::<4>()?))
    }

    pub fn be64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(*self.bytes(8)?.first_chunk::<8>()?))
    }

    pub fn uvarint(&mut self) -> Option<u64> {
        let rest = self.data.get(self.pos..self.end)?;
        let (x, n) = read_uvarint(rest)?;
        self.pos += n;
        Some(x)
    }

    pub fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A uvarint length followed by that many bytes.
    pub fn uvarint_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.uvarint()?;
        self.bytes(usize::try_from(n).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_uvarint_edge_cases() {
        assert_eq!(read_uvarint(&[0]), Some((0, 1)));
        assert_eq!(read_uvarint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(read_uvarint(&[0x80]), None);
        let mut max = Vec::new();
        put_uvarint(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(read_uvarint(&max), Some((u64::MAX, 10)));
        // A 10th byte above 1 overflows 64 bits.
        let mut over = max.clone();
        over[9] = 2;
        assert_eq!(read_uvarint(&over), None);
        assert_eq!(read_uvarint(&[0xff; 11]), None);
    }

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>(), s in ".{0,20}") {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            prop_assert_eq!(b.len(), uvarint_len(u));
            put_varint(&mut b, i);
            put_uvarint_str(&mut b, &s);
            put_be32(&mut b, u as u32);
            put_be64(&mut b, u);
            let mut d = Decbuf::new(&b, 0, b.len());
            prop_assert_eq!(d.uvarint(), Some(u));
            prop_assert_eq!(d.varint(), Some(i));
            prop_assert_eq!(d.uvarint_bytes(), Some(s.as_bytes()));
            prop_assert_eq!(d.be32(), Some(u as u32));
            prop_assert_eq!(d.be64(), Some(u));
            prop_assert_eq!(d.remaining(), 0);
            prop_assert_eq!(d.bytes(1), None);
        }
    }
}
