//! Bit streams under the XOR chunk: most-significant bit first, as Prometheus' `bstream.go`.
//!
//! The writer reproduces one byte-level quirk of Prometheus' writer that shows up in chunk lengths:
//! its `writeByte` always appends a fresh byte, so a write whose width is a multiple of 8 bits leaves
//! a trailing all-zero byte when it ends on a byte boundary (a one-sample chunk is 12 bytes for
//! t = 0, not 11). `BitWriter::write_bits` computes the same length directly instead of replaying
//! Prometheus' bit-by-bit loop. Only the last of a run of Prometheus writes decides that length, so
//! a caller may join several fields (a whole sample, usually) into one write.
//!
//! The buffer under the stream keeps at least 16 zero bytes past the byte holding the next bit, so
//! each write is one 16-byte big-endian store at that byte, with no bounds check or length update
//! per byte, and no accumulator to flush: the stream is complete after every write. Together with
//! joining a sample's fields into one or two writes this took XOR encoding from ~376 to ~145
//! instructions per sample.
//!
//! The reader loads 8 bytes (57 valid bits) or 16 (64 valid bits) at the current bit position, so
//! each field costs one unaligned load and a couple of shifts; reading past the end yields zero
//! bits, and callers compare the final position with the data length once per sample instead of
//! checking every field. The batch decoder reads through a `BitReader` instead: a 64-bit buffer
//! refilled by one 8-byte load to at least 56 bits, which usually covers a whole sample.

/// Zero bytes the writer keeps past the byte holding the next bit: one write's store.
const SLACK: usize = 16;

/// Appends bits to a stream that already holds `bit_len` bits.
#[derive(Debug, Clone)]
pub(crate) struct BitWriter {
    /// The stream (its first `len` bytes), then zero bytes. Every bit past `bit_len` is zero.
    buf: Vec<u8>,
    /// The stream length Prometheus' writer would have: `bit_len` rounded up to bytes, or one more.
    len: usize,
    bit_len: usize,
}

impl BitWriter {
    /// Continues the stream `bytes`, whose first `bit_len` bits are written; the rest must be zero.
    pub(crate) fn new(bytes: Vec<u8>, bit_len: usize) -> Self {
        BitWriter {
            len: bytes.len(),
            buf: bytes,
            bit_len,
        }
    }

    /// The stream as Prometheus' writer would hold it.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        // `len` never exceeds the buffer: writes grow the buffer first, `new` starts with both equal.
        &self.buf[..self.len]
    }

    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }

    /// Drops the slack and spare capacity; the next write grows the buffer again.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.buf.truncate(self.len);
        self.buf.shrink_to_fit();
    }

    /// Writes the low `n` bits of `u` (1 <= n <= 64), most significant first, leaving the stream
    /// length Prometheus leaves after the same bits if its last `writeBits` for them was a whole
    /// number of bytes wide (`ends_bytewise`) or not.
    #[inline(always)]
    pub(crate) fn write_bits(&mut self, u: u64, n: u32, ends_bytewise: bool) {
        debug_assert!((1..=64).contains(&n));
        let start = self.bit_len >> 3;
        let off = (self.bit_len & 7) as u32;
        self.bit_len += n as usize;
        // Prometheus' byte-wise writes leave its "free bits in the last byte" counter at 1..=8,
        // bit-wise ones at 0..=7: that decides whether a byte-aligned end has an empty byte after it.
        self.len = (self.bit_len + 7 + usize::from(ends_bytewise)) / 8;
        let aligned = u << (64 - n);
        let word = |slot: &[u8; SLACK]| {
            // Only the first byte holds bits already; the rest are zero and simply overwritten.
            let hi = (u64::from(slot[0]) << 56) | (aligned >> off);
            // The `off` bits shifted out of `hi` start the ninth byte (none when `off` is 0).
            let lo = (aligned << 1) << (63 - off);
            ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes()
        };
        match self.buf.get_mut(start..start + SLACK) {
            Some(slot) => {
                if let Some(slot) = slot.first_chunk_mut::<SLACK>() {
                    *slot = word(slot);
                }
            }
            None => {
                self.grow(start + SLACK);
                if let Some(slot) = self.buf.get_mut(start..).and_then(|s| s.first_chunk_mut()) {
                    *slot = word(slot);
                }
            }
        }
    }

    /// Extends the zero slack to at least `need` bytes, and to the whole capacity so that growth
    /// stays amortised.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, need: usize) {
        self.buf.reserve(need.saturating_sub(self.buf.len()));
        self.buf.resize(self.buf.capacity(), 0);
    }

    /// Writes the low `n` bits of `u` (1 <= n <= 64), most significant first, as one Prometheus
    /// `writeBits`.
    #[cfg(test)]
    pub(crate) fn write(&mut self, u: u64, n: u32) {
        self.write_bits(u, n, n.is_multiple_of(8));
    }

    /// Go's `binary.PutUvarint`, written byte by byte as Prometheus does.
    pub(crate) fn write_uvarint(&mut self, mut x: u64) {
        // Up to 8 of its (at most 10) bytes per write.
        loop {
            let mut bits = 0u64;
            for n in (8..=64).step_by(8) {
                if x < 0x80 {
                    self.write_bits((bits << 8) | x, n, true);
                    return;
                }
                bits = (bits << 8) | u64::from(x as u8 | 0x80);
                x >>= 7;
            }
            self.write_bits(bits, 64, true);
        }
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
/// One 16-byte load and no branch on the bit offset.
#[inline(always)]
pub(crate) fn peek(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let w = match data.get(byte..).and_then(|s| s.first_chunk::<16>()) {
        Some(b) => u128::from_be_bytes(*b),
        None => load16_tail(data, byte),
    };
    ((w << (pos & 7)) >> 64) as u64
}

/// Slow path of [`peek`] for the last 15 bytes of the data, zero-padded.
#[inline(never)]
fn load16_tail(data: &[u8], byte: usize) -> u128 {
    let mut w = [0u8; 16];
    if let Some(rest) = data.get(byte..) {
        let n = rest.len().min(16);
        w[..n].copy_from_slice(&rest[..n]);
    }
    u128::from_be_bytes(w)
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

/// A reader that keeps the next bits of the stream in a 64-bit buffer, for the batch decoder:
/// reading a field is a shift of the buffer, and one branch-free refill (one 8-byte load) tops it up
/// to at least 56 bits, so a typical sample (a few fields, under 56 bits together) costs one load
/// instead of one per field. This is the "variant 4" refill of Fabian Giesen's "Reading bits in far
/// too many ways": the buffer's bits below the valid ones are the next bytes' own bits, so OR-ing
/// the next load over them changes nothing.
///
/// Bits past the end of the data read as zero, as with [`peek`]; [`BitReader::pos`] may then pass
/// the data's length in bits, which the caller checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// The next bits, left-aligned; the top `valid` are the stream's next bits.
    buf: u64,
    /// Valid bits in `buf`: 56..=63 after a refill.
    valid: u32,
    /// The byte loaded next: the first one whose bits are not all among the valid ones.
    byte: usize,
    /// Bytes from which 8 can be loaded whole: `len - 7`, or 0 for shorter data.
    full_loads: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at bit `pos` of `data`, refilled.
    #[inline(always)]
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        let mut r = BitReader {
            data,
            buf: 0,
            valid: 0,
            byte: pos >> 3,
            full_loads: data.len().saturating_sub(7),
        };
        r.refill();
        r.consume((pos & 7) as u32);
        r
    }

    /// Tops the buffer up to at least 56 valid bits.
    #[inline(always)]
    pub(crate) fn refill(&mut self) {
        let byte = self.byte;
        let w = if byte < self.full_loads {
            // `byte + 8 <= len`: the check below is the same one, which the compiler drops.
            match self
                .data
                .get(byte..byte + 8)
                .and_then(|s| s.first_chunk::<8>())
            {
                Some(b) => u64::from_be_bytes(*b),
                None => 0,
            }
        } else {
            // The last 7 bytes, zero-padded: byte by byte in line, since a call here makes the
            // decoder keep its state on the stack instead of in registers.
            let mut w = 0;
            for i in 0..8 {
                let b = self.data.get(byte.wrapping_add(i)).copied();
                w = (w << 8) | u64::from(b.unwrap_or(0));
            }
            w
        };
        self.buf |= w >> self.valid;
        self.byte += ((63 - self.valid) >> 3) as usize;
        self.valid |= 56;
    }

    /// The buffer: the next `valid()` bits of the stream, left-aligned.
    #[inline(always)]
    pub(crate) fn bits(&self) -> u64 {
        self.buf
    }

    /// How many of [`BitReader::bits`] are the stream's.
    #[inline(always)]
    pub(crate) fn valid(&self) -> u32 {
        self.valid
    }

    /// Drops the next `n` bits; `n` must not exceed [`BitReader::valid`] (and so is below 64).
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.valid);
        self.buf <<= n;
        self.valid -= n;
    }

    /// Reads the next `n` bits (1 <= n <= 64) as the low bits of the result; refills as needed.
    #[inline(always)]
    pub(crate) fn read(&mut self, n: u32) -> u64 {
        debug_assert!((1..=64).contains(&n));
        if n > self.valid {
            self.refill();
        }
        if n <= self.valid {
            let x = self.buf >> (64 - n);
            self.consume(n);
            x
        } else {
            self.read_wide(n)
        }
    }

    /// [`BitReader::read`] of more bits than a refill guarantees, in two halves. Rare, but in
    /// line all the same: a call taking `&mut self` would make the decoder keep the reader in
    /// memory rather than in registers (measured: ~20 more instructions per sample).
    #[inline(always)]
    fn read_wide(&mut self, n: u32) -> u64 {
        let hi = self.buf >> 32;
        self.consume(32);
        self.refill();
        let lo_n = n - 32;
        let lo = self.buf >> (64 - lo_n);
        self.consume(lo_n);
        (hi << lo_n) | lo
    }

    /// The bit position of the next bit, from the start of the data.
    #[inline(always)]
    pub(crate) fn pos(&self) -> usize {
        self.byte * 8 - self.valid as usize
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prometheus' writer, bit by bit, as the reference for lengths and bytes.
    pub(crate) struct Reference {
        pub(crate) stream: Vec<u8>,
        pub(crate) count: u8,
    }

    impl Reference {
        pub(crate) fn write_bit(&mut self, bit: bool) {
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
        pub(crate) fn write_bits(&mut self, u: u64, mut nbits: u32) {
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
            let mut w = BitWriter::new(vec![0, 0], 16);
            for &(u, n) in &ops {
                r.write_bits(u, n);
                w.write(u, n);
                prop_assert_eq!(&r.stream[..], w.bytes());
            }
            let b = w.bytes();
            let mut pos = 16;
            for &(u, n) in &ops {
                let got = peek(b, pos) >> (64 - n);
                if n <= 57 {
                    prop_assert_eq!(peek57(b, pos) >> (64 - n), got);
                }
                let want = if n == 64 { u } else { u & ((1 << n) - 1) };
                prop_assert_eq!(got, want);
                pos += n as usize;
            }
        }
    }

    proptest! {
        #[test]
        fn bit_reader_reads_what_peek_sees(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            start in 0usize..600,
            widths in proptest::collection::vec(1u32..=64, 1..40),
        ) {
            let mut r = BitReader::new(&data, start);
            let mut pos = start;
            for &n in &widths {
                prop_assert_eq!(r.pos(), pos);
                // Within a refill, the buffer shows the next bits.
                let v = r.valid();
                if v > 0 {
                    prop_assert_eq!(r.bits() >> (64 - v), peek(&data, pos) >> (64 - v));
                }
                let want = peek(&data, pos) >> (64 - n);
                prop_assert_eq!(r.read(n), want);
                pos += n as usize;
                if n % 3 == 0 {
                    r.refill();
                }
            }
            prop_assert_eq!(r.pos(), pos);
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
