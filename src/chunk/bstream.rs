//! Bit streams under the XOR chunk: most-significant bit first, as Prometheus' `bstream.go`.
//!
//! The writer reproduces one byte-level quirk of Prometheus' writer that shows up in chunk lengths:
//! its `writeByte` always appends a fresh byte, so a write whose width is a multiple of 8 bits leaves
//! a trailing all-zero byte when it ends on a byte boundary (a one-sample chunk is 12 bytes for
//! t = 0, not 11). `BitWriter::write` computes the same length directly instead of replaying
//! Prometheus' bit-by-bit loop.
//!
//! The reader loads 8 (+1) bytes at a time at the current bit position, so each field costs one
//! unaligned load and a couple of shifts; reading past the end yields zero bits, and callers compare
//! the final position with the data length once per sample instead of checking every field.

/// Appends bits to a byte vector that already holds `bit_len` bits.
#[derive(Debug, Clone)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    pub(crate) bit_len: usize,
}

impl BitWriter {
    /// Writes the low `n` bits of `u` (1 <= n <= 64), most significant first.
    #[inline]
    pub(crate) fn write(&mut self, u: u64, n: u32) {
        debug_assert!((1..=64).contains(&n));
        let aligned = u << (64 - n);
        let off = (self.bit_len & 7) as u32;
        let start = self.bit_len >> 3;
        self.bit_len += n as usize;
        // Prometheus' byte-wise writes leave its "free bits in the last byte" counter at 1..=8,
        // bit-wise ones at 0..=7: that decides whether a byte-aligned end has an empty byte after it.
        let want_len = if n.is_multiple_of(8) {
            self.bit_len / 8 + 1
        } else {
            self.bit_len.div_ceil(8)
        };
        if self.buf.len() < want_len {
            self.buf.resize(want_len, 0);
        }
        let spread = (u128::from(aligned) << 64) >> off;
        let nbytes = (off + n).div_ceil(8) as usize;
        for (i, b) in self.buf[start..start + nbytes].iter_mut().enumerate() {
            *b |= (spread >> (120 - 8 * i)) as u8;
        }
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write(u64::from(bit), 1);
    }

    /// Go's `binary.PutUvarint`, written byte by byte as Prometheus does.
    pub(crate) fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write((x as u8 | 0x80).into(), 8);
            x >>= 7;
        }
        self.write(x, 8);
    }
}

/// Bits of `data` from bit `pos` on, left-aligned, with at least 57 of them valid (the load is
/// one unaligned 8-byte read); bits past the end of the data read as zero.
#[inline(always)]
pub(crate) fn peek57(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let w = match data.get(byte..).and_then(|s| s.first_chunk::<8>()) {
        Some(b) => u64::from_be_bytes(*b),
        None => load_tail(data, byte),
    };
    w << (pos & 7)
}

/// The 64 bits of `data` starting at bit `pos`, left-aligned; bits past the end read as zero.
#[inline]
pub(crate) fn peek(data: &[u8], pos: usize) -> u64 {
    let shift = (pos & 7) as u32;
    let hi = peek57(data, pos);
    if shift == 0 {
        hi
    } else {
        let lo = data.get((pos >> 3) + 8).copied().unwrap_or(0);
        hi | (u64::from(lo) >> (8 - shift))
    }
}

/// Slow path of [`peek57`] for the last 7 bytes of the data, zero-padded.
#[inline(never)]
fn load_tail(data: &[u8], byte: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(rest) = data.get(byte..) {
        let n = rest.len().min(8);
        w[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prometheus' writer, bit by bit, as the reference for lengths and bytes.
    struct Reference {
        stream: Vec<u8>,
        count: u8,
    }

    impl Reference {
        fn write_bit(&mut self, bit: bool) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            if bit {
                self.stream[i] |= 1 << (self.count - 1);
            }
            self.count -= 1;
        }
        fn write_byte(&mut self, byt: u8) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            self.stream[i] |= ((u16::from(byt)) >> (8 - self.count)) as u8;
            self.stream.push(((u16::from(byt)) << self.count) as u8);
        }
        fn write_bits(&mut self, u: u64, mut nbits: u32) {
            let mut u = u << (64 - nbits);
            while nbits >= 8 {
                self.write_byte((u >> 56) as u8);
                u <<= 8;
                nbits -= 8;
            }
            while nbits > 0 {
                self.write_bit(u >> 63 == 1);
                u <<= 1;
                nbits -= 1;
            }
        }
    }

    proptest! {
        #[test]
        fn writer_matches_prometheus_bytes(
            ops in proptest::collection::vec((any::<u64>(), 1u32..=64), 0..60)
        ) {
            let mut r = Reference { stream: vec![0, 0], count: 0 };
            let mut w = BitWriter { buf: vec![0, 0], bit_len: 16 };
            for &(u, n) in &ops {
                r.write_bits(u, n);
                w.write(u, n);
                prop_assert_eq!(&r.stream, &w.buf);
            }
            let mut pos = 16;
            for &(u, n) in &ops {
                let got = peek(&w.buf, pos) >> (64 - n);
                if n <= 57 {
                    prop_assert_eq!(peek57(&w.buf, pos) >> (64 - n), got);
                }
                let want = if n == 64 { u } else { u & ((1 << n) - 1) };
                prop_assert_eq!(got, want);
                pos += n as usize;
            }
        }
    }

    #[test]
    fn peek_past_end_reads_zeros() {
        let data = [0xffu8; 3];
        assert_eq!(peek(&data, 0), 0xffff_ff00_0000_0000);
        assert_eq!(peek(&data, 20), 0xf000_0000_0000_0000);
        assert_eq!(peek(&data, 24), 0);
        assert_eq!(peek(&data, 1000), 0);
    }
}
