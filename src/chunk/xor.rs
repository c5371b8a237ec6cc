//! The XOR (Gorilla) float chunk: Prometheus' `tsdb/chunkenc/xor.go` (v2.42), byte for byte.
//!
//! Layout (chunks.md, "XOR chunk data"): 2-byte big-endian sample count; first timestamp as a
//! zig-zag varint and first value as its raw 64 bits; second timestamp as a uvarint delta; from the
//! third sample on, the delta of deltas in the buckets `0`, `10`+14 bits, `110`+17, `1110`+20,
//! `1111`+64. Every value after the first is XORed with its predecessor: `0` when equal, `10` + the
//! significant bits when they fit the previous leading/trailing-zero window, else `11` + 5 bits of
//! leading zeros (clamped to 31) + 6 bits of significant-bit count (64 written as 0) + the bits.
//!
//! The choice between window reuse and a new window follows Prometheus' control flow exactly, since
//! any other (even a more compact) choice would change the bytes.

use super::bstream::{peek, peek57, BitReader, BitWriter};
use super::{ChunkError, XOR_HEADER_LEN};

/// `leading` while no XOR window has been written yet (Prometheus' sentinel); larger than any
/// real (clamped) count, so that no value fits the window.
const NO_WINDOW: u8 = 0xff;

/// First bit position after the sample count header.
const FIRST_SAMPLE_BIT: usize = XOR_HEADER_LEN * 8;

/// Whether `dod` fits Prometheus' `nbits` delta-of-delta bucket: `[-(2^(n-1) - 1), 2^(n-1)]`.
#[inline]
fn bit_range(dod: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= dod && dod <= half
}

/// Builds one XOR chunk; owns the chunk bytes, which are a complete chunk after every append.
///
/// Every head series has one open (72 bytes): the first timestamp is not kept but read back from
/// the bytes when asked for (rarely), which with the series' other fields saves an allocator size
/// class a series (docs/performance.md, session 6).
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk: just the zero sample count.
    pub fn new() -> Self {
        XorAppender {
            // Prometheus starts chunks with capacity 128; a 120-sample chunk of typical data fits.
            // (Starting at 32 and doubling was tried: at 1M series the growth in waves left the
            // freed small blocks unused and RSS rose 6%, docs/performance.md.)
            w: BitWriter::new(
                {
                    let mut b = Vec::with_capacity(128);
                    b.extend_from_slice(&[0, 0]);
                    b
                },
                FIRST_SAMPLE_BIT,
            ),
            num: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a sample. Timestamps should increase (the format stores wrapping deltas, so any
    /// sequence round-trips, but Prometheus' readers assume order).
    ///
    /// Panics if the chunk already holds 65535 samples: callers cut chunks long before (Prometheus
    /// at 120), and [`XorAppender::from_bytes`] refuses full chunks.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(self.num < u16::MAX, "XOR chunk sample count overflow");
        let vbits = v.to_bits();
        if self.num < 2 {
            return self.append_head(t, vbits);
        }
        let t_delta = t.wrapping_sub(self.t) as u64;
        let dod = t_delta.wrapping_sub(self.t_delta) as i64;
        let u = dod as u64;
        // Bucket prefix and value as one field, joined to the value's bits below. A negative value
        // is masked to its width so as not to overwrite the prefix.
        let (prefix, n) = if dod == 0 {
            (0, 1)
        } else if bit_range(dod, 14) {
            ((0b10 << 14) | (u & 0x3fff), 16)
        } else if bit_range(dod, 17) {
            ((0b110 << 17) | (u & 0x1_ffff), 20)
        } else if bit_range(dod, 20) {
            ((0b1110 << 20) | (u & 0xf_ffff), 24)
        } else {
            self.write_wide_dod(u);
            (0, 0)
        };
        self.write_value(prefix, n, vbits);
        self.finish_append(t, vbits, t_delta);
    }

    /// The first two samples, which start with varints (out of line: the common path is the
    /// delta-of-delta one).
    #[inline(never)]
    fn append_head(&mut self, t: i64, vbits: u64) {
        let mut t_delta = 0;
        if self.num == 0 {
            self.w.write_uvarint(((t << 1) ^ (t >> 63)) as u64);
            self.w.write_bits(vbits, 64, true);
        } else {
            t_delta = t.wrapping_sub(self.t) as u64;
            self.w.write_uvarint(t_delta);
            self.write_value(0, 0, vbits);
        }
        self.finish_append(t, vbits, t_delta);
    }

    /// The widest delta-of-delta bucket, whose 68 bits do not fit a write (and are rare).
    #[cold]
    #[inline(never)]
    fn write_wide_dod(&mut self, u: u64) {
        self.w.write_bits(0b1111, 4, false);
        self.w.write_bits(u, 64, true);
    }

    #[inline(always)]
    fn finish_append(&mut self, t: i64, vbits: u64, t_delta: u64) {
        self.t = t;
        self.v = vbits;
        self.t_delta = t_delta;
        self.num += 1;
        if let Some(count) = self.w.bytes_mut().first_chunk_mut::<XOR_HEADER_LEN>() {
            *count = self.num.to_be_bytes();
        }
    }

    /// Writes the value `vbits` after the `n`-bit timestamp field `prefix` (n <= 24; 0 when the
    /// timestamp is written already), joining them into as few writes as fit 64 bits.
    #[inline(always)]
    fn write_value(&mut self, prefix: u64, n: u32, vbits: u64) {
        let delta = vbits ^ self.v;
        if delta == 0 {
            self.w.write_bits(prefix << 1, n + 1, false);
            return;
        }
        // Clamped so it fits the 5-bit field; the surplus zeros then count as significant bits.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        // Without a window `self.leading` is NO_WINDOW, above any clamped `leading`.
        let (head, head_len, sig, shift) = if leading >= self.leading && trailing >= self.trailing {
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            (0b10, 2, sig, self.trailing)
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            // 0b11, 5 bits of leading zeros, 6 bits of significant bits (64 wraps to 0).
            let header = (0b11 << 11) | (u64::from(leading) << 6) | u64::from(sig & 0x3f);
            (header, 13, sig, trailing)
        };
        let head = (prefix << head_len) | head;
        let head_len = n + head_len;
        let bits = delta >> shift;
        // Prometheus writes the significant bits last, in one `writeBits`.
        let ends_bytewise = sig.is_multiple_of(8);
        if head_len + sig <= 64 {
            self.w
                .write_bits((head << sig) | bits, head_len + sig, ends_bytewise);
        } else {
            self.w.write_bits(head, head_len, false);
            self.w.write_bits(bits, sig, ends_bytewise);
        }
    }

    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// The chunk data, sample count included.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_bytes()
    }

    /// The first sample's timestamp, decoded from the bytes (the appender does not keep it).
    pub fn first_time(&self) -> Option<i64> {
        if self.num == 0 {
            return None;
        }
        let mut it = XorIterator::new(self.bytes()).ok()?;
        it.next_sample().ok().flatten().map(|(t, _)| t)
    }

    pub fn last(&self) -> Option<(i64, f64)> {
        (self.num > 0).then_some((self.t, f64::from_bits(self.v)))
    }

    /// The last value's bits; 0 before the first append.
    #[inline]
    pub fn last_value_bits(&self) -> u64 {
        self.v
    }

    /// Resumes appending to existing chunk data: decodes it to recover the appender state, so that
    /// appending afterwards gives the bytes an uninterrupted appender would have produced.
    ///
    /// Differs from Prometheus in two corner cases, both towards uninterrupted-append bytes:
    /// Prometheus' `FromData` restarts writing at the next byte boundary, and its `Appender()`
    /// treats a chunk whose values have all been equal so far as if a 64-bit window were set.
    pub fn from_bytes(mut data: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = XorIterator::new(&data)?;
        if it.total == u16::MAX {
            return Err(ChunkError::Full { count: it.total });
        }
        while it.next_sample()?.is_some() {}
        let bit_len = it.pos;
        let (num, t, v, t_delta) = (it.total, it.t, it.v, it.t_delta);
        let (leading, trailing) = if it.window {
            (it.leading, it.trailing)
        } else {
            (NO_WINDOW, 0)
        };
        // Anything past the decoded bits (junk, or padding bits) must be zero before we OR into it;
        // one empty byte after a byte-aligned end is Prometheus' own state and is kept.
        data.truncate((bit_len / 8 + 1).min(data.len()));
        if let Some(last) = data.get_mut(bit_len / 8) {
            *last &= !(0xffu8 >> (bit_len % 8));
        }
        Ok(XorAppender {
            w: BitWriter::new(data, bit_len),
            num,
            t,
            v,
            t_delta,
            leading,
            trailing,
        })
    }

    /// Releases spare capacity once the chunk is complete (a head keeps many of them in memory).
    pub fn shrink_to_fit(&mut self) {
        self.w.shrink_to_fit();
    }
}

/// Decodes an XOR chunk from a byte slice without allocating.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    data: &'a [u8],
    /// Next bit to read, counted from the start of the chunk data.
    pos: usize,
    end: usize,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Whether a value window has been read (only [`XorAppender::from_bytes`] needs this).
    window: bool,
    /// Set by a decoding error: there is no current sample any more.
    failed: bool,
    /// Byte offset of the last byte of an overlong varint, for the error.
    varint_overflow: Option<usize>,
}

impl<'a> XorIterator<'a> {
    /// Starts decoding; fails only if the sample count header is missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let Some(&[hi, lo]) = data.first_chunk::<XOR_HEADER_LEN>() else {
            return Err(ChunkError::TooShort { len: data.len() });
        };
        Ok(XorIterator {
            data,
            pos: FIRST_SAMPLE_BIT,
            end: data.len() * 8,
            total: u16::from_be_bytes([hi, lo]),
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            window: false,
            failed: false,
            varint_overflow: None,
        })
    }

    /// The sample count the header claims.
    pub fn num_samples(&self) -> usize {
        usize::from(self.total)
    }

    /// The next sample, `None` after the last. After an error the iterator is exhausted.
    #[inline]
    pub fn next_sample(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        if self.read >= 2 && self.read < self.total {
            let start = self.pos;
            self.read_dod();
            // Reads past the end saw zero bits; the sample is only real if it ended in the data.
            if self.read_value() && self.pos <= self.end {
                self.read += 1;
                return Ok(Some((self.t, f64::from_bits(self.v))));
            }
            return Err(self.fail(start));
        }
        self.next_head()
    }

    /// The first two samples, which start with varints, and the end of the chunk.
    fn next_head(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        if self.read == self.total {
            return Ok(None);
        }
        let start = self.pos;
        let ok = if self.read == 0 {
            self.read_first()
        } else {
            self.read_second()
        };
        if ok && self.pos <= self.end {
            self.read += 1;
            return Ok(Some((self.t, f64::from_bits(self.v))));
        }
        Err(self.fail(start))
    }

    /// Ends iteration after a decoding failure of the sample that started at bit `start`, and says
    /// what went wrong.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, start: usize) -> ChunkError {
        let sample = self.read;
        self.read = self.total;
        self.failed = true;
        if let Some(byte) = self.varint_overflow {
            return ChunkError::VarintOverflow { sample, byte };
        }
        if self.pos + 13 <= self.end {
            // Only a value header can fail inside the data; `pos` still points at it.
            let w = peek(self.data, self.pos);
            return ChunkError::BadValueWidth {
                sample,
                bit: self.pos,
                leading: ((w >> 57) & 0x1f) as u8,
                significant: ((w >> 51) & 0x3f) as u8,
            };
        }
        ChunkError::UnexpectedEnd {
            sample,
            count: self.total,
            bit: start,
            len: self.data.len(),
        }
    }

    /// Advances to the first sample with timestamp >= `t`, starting at the current sample (the
    /// last one returned), which is returned again if it qualifies.
    pub fn seek(&mut self, t: i64) -> Result<Option<(i64, f64)>, ChunkError> {
        if self.failed {
            return Ok(None);
        }
        if self.read > 0 && self.t >= t {
            return Ok(Some((self.t, f64::from_bits(self.v))));
        }
        while let Some(s) = self.next_sample()? {
            if s.0 >= t {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Go's `binary.ReadUvarint` over whole bytes; `None` (and the offset noted) on overflow.
    fn read_uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = (peek57(self.data, self.pos) >> 56) as u8;
            self.pos += 8;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    break;
                }
                return Some(x | (u64::from(b) << (7 * i)));
            }
            x |= u64::from(b & 0x7f) << (7 * i);
        }
        self.varint_overflow = Some(self.pos / 8 - 1);
        None
    }

    fn read_first(&mut self) -> bool {
        let Some(u) = self.read_uvarint() else {
            return false;
        };
        self.t = ((u >> 1) as i64) ^ -((u & 1) as i64);
        self.v = peek(self.data, self.pos);
        self.pos += 64;
        true
    }

    fn read_second(&mut self) -> bool {
        let Some(d) = self.read_uvarint() else {
            return false;
        };
        self.t_delta = d;
        self.t = self.t.wrapping_add(d as i64);
        self.read_value()
    }

    #[inline(always)]
    fn read_dod(&mut self) {
        // The widest bucket short of the 64-bit one takes 4 + 20 bits.
        let w = peek57(self.data, self.pos);
        // Number of leading one bits, at most 4, selects the delta-of-delta bucket.
        let (hdr, sz) = match (!w).leading_zeros() {
            0 => (1, 0),
            1 => (2, 14),
            2 => (3, 17),
            3 => (4, 20),
            _ => (4, 64),
        };
        let dod = match sz {
            0 => 0,
            64 => peek(self.data, self.pos + 4),
            _ => {
                let bits = (w << hdr) >> (64 - sz);
                // Negative values come back as large unsigned ones (Prometheus' bstream.md).
                if bits > 1 << (sz - 1) {
                    bits.wrapping_sub(1 << sz)
                } else {
                    bits
                }
            }
        };
        self.pos += (hdr + sz) as usize;
        self.t_delta = self.t_delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.t_delta as i64);
    }

    /// Applies one XOR-encoded value; false (with `pos` left at the value) if its window is
    /// impossible.
    #[inline(always)]
    fn read_value(&mut self) -> bool {
        let w = peek57(self.data, self.pos);
        if w >> 63 == 0 {
            self.pos += 1;
            return true;
        }
        // Both header forms are decoded and one is selected without a branch: whether a value
        // reuses the window is data-dependent and mispredicts often on counters.
        let new_leading = ((w >> 57) & 0x1f) as u32;
        let sig = ((w >> 51) & 0x3f) as u32;
        let new_mbits = if sig == 0 { 64 } else { sig };
        let new_window = (w >> 62) & 1 == 1;
        if new_window && new_leading + new_mbits > 64 {
            return false;
        }
        // Before any window was read Prometheus' reader has 0/0 here, i.e. 64 bits; a chunk
        // resumed by Prometheus' `Appender()` can contain exactly that.
        let old_mbits = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let new_trailing = 64u32.wrapping_sub(new_leading + new_mbits) as u8;
        let (hdr, mbits) = if new_window {
            (13, new_mbits)
        } else {
            (2, old_mbits)
        };
        self.leading = if new_window {
            new_leading as u8
        } else {
            self.leading
        };
        self.trailing = if new_window {
            new_trailing
        } else {
            self.trailing
        };
        self.window = true;
        let bits = if hdr + mbits <= 57 {
            (w << hdr) >> (64 - mbits)
        } else {
            peek(self.data, self.pos + hdr as usize) >> (64 - mbits)
        };
        self.pos += (hdr + mbits) as usize;
        self.v ^= bits << self.trailing;
        true
    }
}

/// Appends to `out` the samples of the XOR chunk `data` whose timestamps lie in `[mint, maxt]`,
/// stopping at the first sample after `maxt` (timestamps increase within a chunk, so nothing after
/// it can qualify). On corrupt data the samples before the bad one are appended and the error is
/// the one [`XorIterator`] reports for that sample.
///
/// The same bits as [`XorIterator`], decoded in one loop with the state in locals and the output
/// written into a pre-sized slice, through a [`BitReader`]: one 8-byte refill per sample in the
/// common case (a sample's fields usually fit the 56 bits it guarantees), fields read by shifting
/// the buffer, no per-sample `Result`/`Option` and no per-sample end-of-data check. A chunk whose
/// fast decoding fails (data ends early, an impossible value window) is decoded again by the
/// iterator, which finds the bad sample and its error.
pub fn decode_xor_into(
    data: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkError> {
    let start = out.len();
    let mut it = XorIterator::new(data)?;
    // The first two samples start with varints: the iterator's path, then its state goes on here.
    while it.read < 2 {
        match it.next_sample()? {
            None => return Ok(()),
            Some(s) if s.0 > maxt => return Ok(()),
            Some(s) if s.0 >= mint => out.push(s),
            Some(_) => {}
        }
    }
    let remaining = usize::from(it.total - it.read);
    let rest = out.len();
    out.resize(rest + remaining, (0, 0.0));
    let buf = out.get_mut(rest..).unwrap_or_default();
    let r = if mint == i64::MIN && maxt == i64::MAX {
        decode_rest::<false>(&it, mint, maxt, buf)
    } else {
        decode_rest::<true>(&it, mint, maxt, buf)
    };
    match r {
        Some(n) => {
            out.truncate(rest + n);
            Ok(())
        }
        None => {
            out.truncate(start);
            decode_slow(data, mint, maxt, out)
        }
    }
}

/// [`decode_xor_into`] through the iterator: for chunks the fast loop finds corrupt.
#[cold]
#[inline(never)]
fn decode_slow(
    data: &[u8],
    mint: i64,
    maxt: i64,
    out: &mut Vec<(i64, f64)>,
) -> Result<(), ChunkError> {
    let mut it = XorIterator::new(data)?;
    while let Some(s) = it.next_sample()? {
        if s.0 > maxt {
            break;
        }
        if s.0 >= mint {
            out.push(s);
        }
    }
    Ok(())
}

/// A delta-of-delta bucket, by the first 4 bits of a field that starts with `1` (`0` is the zero
/// delta of delta, handled before): `10` + 14 bits, `110` + 17, `1110` + 20 (`1111` + 64 is
/// read apart). Everything the decoder computes from the width is here, so a bucket costs one
/// table load.
#[derive(Clone, Copy)]
struct DodBucket {
    /// Header bits.
    hdr: u32,
    /// Right shift that leaves the field: 64 - width.
    shr: u32,
    /// Header and field.
    len: u32,
    /// Fields above this are negative (Prometheus' bstream.md): `2^(width - 1)`.
    half: u64,
    /// What a negative field's bits exceed its value by: `2^width`.
    full: u64,
}

const DOD_BUCKETS: [DodBucket; 16] = {
    let none = DodBucket {
        hdr: 0,
        shr: 0,
        len: 0,
        half: 0,
        full: 0,
    };
    let mut t = [none; 16];
    let mut i = 8;
    while i < 16 {
        let (hdr, sz) = match i {
            8..=11 => (2, 14),
            12 | 13 => (3, 17),
            _ => (4, 20),
        };
        t[i] = DodBucket {
            hdr,
            shr: 64 - sz,
            len: hdr + sz,
            half: 1 << (sz - 1),
            full: 1 << sz,
        };
        i += 1;
    }
    t
};

/// The first 4 bits of the 64-bit delta-of-delta bucket.
const DOD_WIDE: u64 = 0b1111;

/// The decoder's state after the first two samples: the reader, the last sample, the timestamp
/// delta and the value window.
struct Rest<'a> {
    r: BitReader<'a>,
    t: i64,
    v: u64,
    t_delta: u64,
    /// Significant bits of the window, and the zeros after them.
    mbits: u32,
    trailing: u32,
}

impl Rest<'_> {
    /// Decodes the next sample into `t` and `v`; false if its value window is impossible.
    #[inline(always)]
    fn next(&mut self) -> bool {
        let r = &mut self.r;
        // At least 56 bits: the timestamp field and, usually, the value's.
        r.refill();
        let w = r.bits();
        if w >> 63 == 0 {
            // Delta of delta 0: the timestamp delta repeats.
            r.consume(1);
        } else {
            let i = (w >> 60) as usize;
            let dod = match DOD_BUCKETS.get(i) {
                Some(b) if i as u64 != DOD_WIDE => {
                    let bits = (w << b.hdr) >> b.shr;
                    r.consume(b.len);
                    if bits > b.half {
                        bits.wrapping_sub(b.full)
                    } else {
                        bits
                    }
                }
                _ => {
                    r.consume(4);
                    r.read(64)
                }
            };
            self.t_delta = self.t_delta.wrapping_add(dod);
        }
        self.t = self.t.wrapping_add(self.t_delta as i64);
        let w = r.bits();
        if w >> 63 == 0 {
            r.consume(1);
            return true;
        }
        let hdr = if (w >> 62) & 1 == 1 {
            // `11`: a new window, 5 bits of leading zeros and 6 of significant bits.
            let leading = ((w >> 57) & 0x1f) as u32;
            let sig = ((w >> 51) & 0x3f) as u32;
            let mbits = if sig == 0 { 64 } else { sig };
            if leading + mbits > 64 {
                return false;
            }
            self.mbits = mbits;
            self.trailing = 64 - leading - mbits;
            13
        } else {
            2
        };
        let mbits = self.mbits;
        // The timestamp field left at least 32 bits; a wide value needs a second load.
        let need = hdr + mbits;
        if need > r.valid() {
            r.refill();
        }
        let bits = if need <= r.valid() {
            let bits = (r.bits() << hdr) >> (64 - mbits);
            r.consume(need);
            bits
        } else {
            r.consume(hdr);
            r.read(mbits)
        };
        self.v ^= bits << self.trailing;
        true
    }
}

/// The samples after the first two, into `buf` (sized to hold all of them): how many were
/// written, or `None` if the data is corrupt (it ends before the samples it counts, or a value
/// window is impossible; the caller decodes it again to find where). Without `BOUNDED` every
/// sample is kept (a chunk inside the query range: no time comparisons).
#[inline(always)]
fn decode_rest<const BOUNDED: bool>(
    it: &XorIterator<'_>,
    mint: i64,
    maxt: i64,
    buf: &mut [(i64, f64)],
) -> Option<usize> {
    let trailing = u32::from(it.trailing);
    let mut d = Rest {
        r: BitReader::new(it.data, it.pos),
        t: it.t,
        v: it.v,
        t_delta: it.t_delta,
        // Before any window Prometheus' reader has 0/0, i.e. 64 bits.
        mbits: 64 - u32::from(it.leading) - trailing,
        trailing,
    };
    let mut k = 0;
    if BOUNDED {
        let n = buf.len();
        let mut slots = buf.iter_mut();
        for _ in 0..n {
            if !d.next() {
                return None;
            }
            if d.t > maxt {
                break;
            }
            if d.t >= mint {
                if let Some(slot) = slots.next() {
                    *slot = (d.t, f64::from_bits(d.v));
                    k += 1;
                }
            }
        }
    } else {
        for slot in buf.iter_mut() {
            if !d.next() {
                return None;
            }
            *slot = (d.t, f64::from_bits(d.v));
        }
        k = buf.len();
    }
    // Reads past the end saw zero bits; the samples are only real if they ended in the data.
    (d.r.pos() <= it.end).then_some(k)
}

impl Iterator for XorIterator<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_sample().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::bstream::tests::Reference;
    use crate::chunk::{fuzz_decode, NORMAL_NAN_BITS, STALE_NAN_BITS};
    use proptest::prelude::*;

    /// Chunks Prometheus 2.42 wrote (see testdata/gen_prometheus_chunks.py for how).
    const ORACLE: &str = include_str!("testdata/prometheus-v2.42-xor-chunks.txt");

    /// Series name, chunk bytes, samples as (timestamp, value bits).
    type OracleChunk = (&'static str, Vec<u8>, Vec<(i64, u64)>);

    fn oracle() -> Vec<OracleChunk> {
        ORACLE
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let mut f = l.split('\t');
                let name = f.next().unwrap();
                let hex = f.next().unwrap();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let samples = f
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| {
                        let (t, v) = s.split_once(':').unwrap();
                        (t.parse().unwrap(), u64::from_str_radix(v, 16).unwrap())
                    })
                    .collect();
                (name, bytes, samples)
            })
            .collect()
    }

    fn encode(samples: &[(i64, u64)]) -> XorAppender {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, f64::from_bits(v));
        }
        a
    }

    fn decode(data: &[u8]) -> Vec<(i64, u64)> {
        XorIterator::new(data)
            .unwrap()
            .map(|r| r.map(|(t, v)| (t, v.to_bits())).unwrap())
            .collect()
    }

    #[test]
    fn prometheus_written_chunks_decode_and_reencode_identically() {
        let chunks = oracle();
        assert_eq!(chunks.len(), 7);
        for (name, bytes, samples) in chunks {
            assert_eq!(decode(&bytes), samples, "{name}");
            assert_eq!(encode(&samples).bytes(), &bytes[..], "{name}");
            for k in 0..=samples.len() {
                let prefix = encode(&samples[..k]).into_bytes();
                let mut a = XorAppender::from_bytes(prefix).unwrap();
                for &(t, v) in &samples[k..] {
                    a.append(t, f64::from_bits(v));
                }
                assert_eq!(a.bytes(), &bytes[..], "{name} resumed after {k}");
            }
        }
    }

    #[test]
    fn hand_encoded_vector() {
        let mut a = XorAppender::new();
        assert_eq!(a.bytes(), &[0, 0]);
        assert_eq!((a.first_time(), a.last()), (None, None));
        a.append(1000, 1.0);
        // zig-zag(1000) = 2000 = uvarint d0 0f; 1.0 raw; Prometheus' trailing empty byte.
        assert_eq!(
            a.bytes(),
            &[0, 1, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0]
        );
        a.append(16000, 1.0);
        a.append(31000, 2.0);
        // Delta 15000 = uvarint 98 75; then bits: 0 (same value), 0 (dod 0),
        // 11 00001 001011 11111111111 (new window: 1 leading zero, 11 significant bits).
        let want = [
            0, 3, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x98, 0x75, 0x30, 0x97, 0xff, 0xc0,
        ];
        assert_eq!(a.bytes(), &want);
        assert_eq!(a.first_time(), Some(1000));
        assert_eq!(a.last(), Some((31000, 2.0)));
        assert_eq!(a.num_samples(), 3);
        assert_eq!(
            decode(&want),
            [
                (1000, 1.0f64.to_bits()),
                (16000, 1.0f64.to_bits()),
                (31000, 2.0f64.to_bits())
            ]
        );
    }

    #[test]
    fn leading_zeros_are_clamped_to_31() {
        let mut a = XorAppender::new();
        a.append(0, 1.0);
        a.append(1, f64::from_bits(1.0f64.to_bits() ^ 1));
        // After 0 (t), 1.0, uvarint 01 + trailing empty byte: 11 11111 100001 then 33 bits "0...01".
        let b = a.bytes();
        assert_eq!(&b[..12], &[0, 2, 0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(b[12], 0b1111_1111);
        assert_eq!(b[13] >> 3, 0b00001);
        assert_eq!(decode(b)[1].1, 1.0f64.to_bits() ^ 1);
    }

    #[test]
    fn nan_payloads_and_stale_marker_round_trip() {
        let vals = [
            STALE_NAN_BITS,
            NORMAL_NAN_BITS,
            STALE_NAN_BITS,
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            0x7ff8_0000_0000_0000,
            0xfff0_0000_dead_beef,
            (-0.0f64).to_bits(),
            STALE_NAN_BITS,
        ];
        let s: Vec<(i64, u64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000, v))
            .collect();
        assert_eq!(decode(encode(&s).bytes()), s);
    }

    #[test]
    fn seek_follows_prometheus() {
        let s: Vec<(i64, u64)> = (0..50)
            .map(|i| (i * 1000 + 7, (i as f64).to_bits()))
            .collect();
        let a = encode(&s);
        let mut it = XorIterator::new(a.bytes()).unwrap();
        assert_eq!(it.num_samples(), 50);
        // Before any sample: the first one qualifies.
        assert_eq!(it.seek(i64::MIN).unwrap(), Some((7, 0.0)));
        assert_eq!(it.seek(20_000).unwrap(), Some((20_007, 20.0)));
        // Already at or past the target: no move.
        assert_eq!(it.seek(20_007).unwrap(), Some((20_007, 20.0)));
        assert_eq!(it.seek(0).unwrap(), Some((20_007, 20.0)));
        assert_eq!(it.next_sample().unwrap(), Some((21_007, 21.0)));
        assert_eq!(it.seek(49_007).unwrap(), Some((49_007, 49.0)));
        assert_eq!(it.seek(49_008).unwrap(), None);
        assert_eq!(it.next_sample().unwrap(), None);
        let mut it = XorIterator::new(a.bytes()).unwrap();
        assert_eq!(it.seek(1_000_000).unwrap(), None);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            XorIterator::new(&[1]).unwrap_err(),
            ChunkError::TooShort { len: 1 }
        );
        // The count header claims more samples than the data holds.
        let s: Vec<(i64, u64)> = (0..5)
            .map(|i| (i * 15_000, (i as f64 * 1.5).to_bits()))
            .collect();
        let mut b = encode(&s).into_bytes();
        b[1] = 9;
        let mut it = XorIterator::new(&b).unwrap();
        for _ in 0..5 {
            it.next_sample().unwrap().unwrap();
        }
        // Padding bits may decode as repeats (dod 0, same value) before the data runs out.
        let e = loop {
            match it.next_sample() {
                Ok(Some((t, _))) => assert!(t > 60_000),
                Ok(None) => panic!("a lying count must end in an error"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(e, ChunkError::UnexpectedEnd { count: 9, len, .. } if len == b.len()),
            "{e}"
        );
        assert!(e.to_string().contains("of 9"), "{e}");
        assert_eq!(it.next_sample().unwrap(), None);
        assert_eq!(it.seek(0).unwrap(), None);
        assert!(XorAppender::from_bytes(b).is_err());
        // 31 leading zeros + 40 significant bits cannot fit a 64-bit value.
        let mut w = BitWriter::new(vec![0, 2], 16);
        w.write_uvarint(0);
        w.write(0, 64);
        w.write_uvarint(1);
        w.write((0b11 << 11) | (31 << 6) | 40, 13);
        w.write(0, 40);
        let e = XorIterator::new(w.bytes())
            .unwrap()
            .nth(1)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(
                e,
                ChunkError::BadValueWidth {
                    sample: 1,
                    leading: 31,
                    significant: 40,
                    ..
                }
            ),
            "{e}"
        );
        // An overlong varint.
        let e = XorIterator::new(&[
            0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ])
        .unwrap()
        .next_sample()
        .unwrap_err();
        assert_eq!(
            e,
            ChunkError::VarintOverflow {
                sample: 0,
                byte: 11
            }
        );
        let mut full = vec![0xff, 0xff];
        full.extend_from_slice(&[0; 20]);
        assert!(XorAppender::from_bytes(full).is_err());
    }

    #[test]
    fn resume_after_equal_values_matches_uninterrupted() {
        // Prometheus' own Appender() would reuse a 64-bit window here; we keep uninterrupted bytes.
        let s: Vec<(i64, u64)> = [5.0f64, 5.0, 5.0, 6.0, 7.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 15_000, v.to_bits()))
            .collect();
        let mut a = XorAppender::from_bytes(encode(&s[..3]).into_bytes()).unwrap();
        a.append(s[3].0, f64::from_bits(s[3].1));
        a.append(s[4].0, f64::from_bits(s[4].1));
        assert_eq!(a.bytes(), encode(&s).bytes());
    }

    #[test]
    fn shrink_keeps_bytes() {
        let mut a = encode(&[(1, 1.0f64.to_bits()), (2, 2.0f64.to_bits())]);
        let before = a.bytes().to_vec();
        a.shrink_to_fit();
        assert_eq!(a.bytes(), &before[..]);
        a.append(3, 3.0);
        assert_eq!(decode(a.bytes()).len(), 3);
    }

    /// Timestamps: strictly increasing with gaps from 1 ms to ~i64::MAX / 4.
    /// Prometheus' `xorAppender.Append` over its bit-by-bit writer, field by field: the reference for
    /// the bytes after every append, which the encoder writes joined into one field per sample.
    struct ReferenceAppender {
        w: Reference,
        num: u16,
        t: i64,
        v: u64,
        t_delta: u64,
        leading: u8,
        trailing: u8,
    }

    impl ReferenceAppender {
        fn new() -> Self {
            ReferenceAppender {
                w: Reference {
                    stream: vec![0, 0],
                    count: 0,
                },
                num: 0,
                t: 0,
                v: 0,
                t_delta: 0,
                leading: NO_WINDOW,
                trailing: 0,
            }
        }

        fn uvarint(&mut self, mut x: u64) {
            while x >= 0x80 {
                self.w.write_bits(u64::from(x as u8 | 0x80), 8);
                x >>= 7;
            }
            self.w.write_bits(x, 8);
        }

        fn append(&mut self, t: i64, v: u64) {
            let mut t_delta = 0;
            if self.num == 0 {
                self.uvarint(((t << 1) ^ (t >> 63)) as u64);
                self.w.write_bits(v, 64);
            } else {
                t_delta = t.wrapping_sub(self.t) as u64;
                if self.num == 1 {
                    self.uvarint(t_delta);
                } else {
                    let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                    let u = dod as u64;
                    if dod == 0 {
                        self.w.write_bit(false);
                    } else if bit_range(dod, 14) {
                        self.w.write_bits(0b10, 2);
                        self.w.write_bits(u, 14);
                    } else if bit_range(dod, 17) {
                        self.w.write_bits(0b110, 3);
                        self.w.write_bits(u, 17);
                    } else if bit_range(dod, 20) {
                        self.w.write_bits(0b1110, 4);
                        self.w.write_bits(u, 20);
                    } else {
                        self.w.write_bits(0b1111, 4);
                        self.w.write_bits(u, 64);
                    }
                }
                self.value(v);
            }
            self.t = t;
            self.v = v;
            self.t_delta = t_delta;
            self.num += 1;
            self.w.stream[..2].copy_from_slice(&self.num.to_be_bytes());
        }

        fn value(&mut self, v: u64) {
            let delta = v ^ self.v;
            if delta == 0 {
                self.w.write_bit(false);
                return;
            }
            self.w.write_bit(true);
            let leading = (delta.leading_zeros() as u8).min(31);
            let trailing = delta.trailing_zeros() as u8;
            if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
                self.w.write_bit(false);
                let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
                self.w.write_bits(delta >> self.trailing, sig);
                return;
            }
            self.leading = leading;
            self.trailing = trailing;
            self.w.write_bit(true);
            self.w.write_bits(u64::from(leading), 5);
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            self.w.write_bits(u64::from(sig), 6);
            self.w.write_bits(delta >> trailing, sig);
        }
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, u64)>> {
        let gap = prop_oneof![
            4 => 14_990u64..15_010,
            2 => 1u64..100_000,
            1 => 1u64..=(1 << 40),
            1 => 1u64..=(u64::MAX / 4),
        ];
        let value = prop_oneof![
            3 => (0u32..1000).prop_map(|i| (f64::from(i) / 100.0).to_bits()),
            2 => any::<u64>(),
            1 => Just(STALE_NAN_BITS),
            1 => Just(NORMAL_NAN_BITS),
            1 => prop::sample::select(vec![
                f64::INFINITY.to_bits(), f64::NEG_INFINITY.to_bits(), 0, 1 << 63, 1, 0x7ff8_0000_0000_0000,
            ]),
            1 => Just(42.0f64.to_bits()),
        ];
        (
            any::<i64>(),
            proptest::collection::vec((gap, value), 0..150),
        )
            .prop_map(|(start, rest)| {
                let mut out = Vec::with_capacity(rest.len());
                let mut t = start;
                for (i, (g, v)) in rest.into_iter().enumerate() {
                    if i > 0 {
                        match t.checked_add_unsigned(g) {
                            Some(n) => t = n,
                            None => break,
                        }
                    }
                    out.push((t, v));
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trip_bit_exact(s in samples()) {
            let mut a = XorAppender::new();
            for (i, &(t, v)) in s.iter().enumerate() {
                a.append(t, f64::from_bits(v));
                // The bytes are a complete chunk at every moment.
                prop_assert_eq!(decode(a.bytes()), &s[..=i]);
            }
            prop_assert_eq!(a.num_samples(), s.len());
            prop_assert_eq!(a.first_time(), s.first().map(|x| x.0));
            prop_assert_eq!(a.last().map(|(t, v)| (t, v.to_bits())), s.last().copied());
        }

        #[test]
        fn bytes_match_prometheus_writer_after_every_append(s in samples()) {
            let mut a = XorAppender::new();
            let mut r = ReferenceAppender::new();
            prop_assert_eq!(a.bytes(), &r.w.stream[..]);
            for &(t, v) in &s {
                a.append(t, f64::from_bits(v));
                r.append(t, v);
                prop_assert_eq!(a.bytes(), &r.w.stream[..]);
            }
        }

        #[test]
        fn resume_gives_uninterrupted_bytes(s in samples(), split in any::<prop::sample::Index>()) {
            let full = encode(&s);
            let k = split.index(s.len() + 1);
            let mut a = XorAppender::from_bytes(encode(&s[..k]).into_bytes()).unwrap();
            prop_assert_eq!(a.num_samples(), k);
            for &(t, v) in &s[k..] {
                a.append(t, f64::from_bits(v));
            }
            prop_assert_eq!(a.bytes(), full.bytes());
            prop_assert_eq!(a.first_time(), full.first_time());
        }

        #[test]
        fn seek_finds_first_at_or_after(s in samples(), target in any::<i64>(), k in any::<prop::sample::Index>()) {
            let a = encode(&s);
            let mut it = XorIterator::new(a.bytes()).unwrap();
            let skip = k.index(s.len() + 1);
            for _ in 0..skip {
                it.next_sample().unwrap();
            }
            let from = skip.saturating_sub(1);
            let want = s[from.min(s.len())..].iter().find(|x| x.0 >= target).copied();
            let got = it.seek(target).unwrap().map(|(t, v)| (t, v.to_bits()));
            prop_assert_eq!(got, want);
        }

        #[test]
        fn batch_decode_matches_iterator(
            s in samples(),
            lo in any::<prop::sample::Index>(),
            len in 0i64..200_000,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = encode(&s).into_bytes();
            let mut got = Vec::new();
            prop_assert_eq!(decode_xor_into(&b, i64::MIN, i64::MAX, &mut got), Ok(()));
            let bits = |v: &[(i64, f64)]| v.iter().map(|x| (x.0, x.1.to_bits())).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got), s.clone());
            // A window from one sample's timestamp: the iterator's samples in it, up to the
            // first sample after it.
            if !s.is_empty() {
                let mint = s[lo.index(s.len())].0;
                let maxt = mint.saturating_add(len);
                let want: Vec<_> = s
                    .iter()
                    .take_while(|x| x.0 <= maxt)
                    .filter(|x| x.0 >= mint)
                    .copied()
                    .collect();
                got.clear();
                prop_assert_eq!(decode_xor_into(&b, mint, maxt, &mut got), Ok(()));
                prop_assert_eq!(bits(&got), want);
            }
            // Truncated data: the samples before the failure, then the iterator's error.
            b.truncate(cut.index(b.len() + 1));
            let mut want = Vec::new();
            let mut err = None;
            match XorIterator::new(&b) {
                Ok(it) => {
                    for r in it {
                        match r {
                            Ok(x) => want.push((x.0, x.1.to_bits())),
                            Err(e) => { err = Some(e); break; }
                        }
                    }
                }
                Err(e) => err = Some(e),
            }
            got.clear();
            let r = decode_xor_into(&b, i64::MIN, i64::MAX, &mut got);
            prop_assert_eq!(r.err(), err);
            prop_assert_eq!(bits(&got), want);
        }

        #[test]
        fn fuzz_decode_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_decode(&data);
        }

        #[test]
        fn fuzz_decode_never_panics_on_mutated_chunks(
            s in samples(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = encode(&s).into_bytes();
            fuzz_decode(&b);
            for (i, x) in flips {
                let i = i.index(b.len());
                b[i] ^= x;
                fuzz_decode(&b);
            }
            b.truncate(cut.index(b.len() + 1));
            fuzz_decode(&b);
        }
    }
}
