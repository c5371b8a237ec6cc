//! Chunk encodings: how a run of one series' samples is compressed into bytes.
//!
//! Implements the "XOR chunk data" section of Prometheus' `tsdb/docs/format/chunks.md` (see
//! `../shared/docs/prometheus-tsdb-format.md`): the Gorilla scheme of `tsdb/chunkenc/xor.go` and
//! `bstream.go` as of Prometheus v2.42, byte for byte. Byte identity matters because our blocks and
//! head chunks must be indistinguishable from the ones Prometheus writes (the compatibility tests
//! compare chunk bytes, and chunk sizes feed our compression figures).
//!
//! This module is a pure codec over byte slices: framing a chunk in a segment file (length, encoding
//! byte, CRC) and all I/O belong to the layers above.

mod bstream;
mod xor;

pub use xor::{decode_xor_into, XorAppender, XorIterator};

/// The encoding byte that precedes XOR chunk data in chunk segment files and head chunk files.
pub const ENCODING_XOR: u8 = 1;

/// Prometheus' staleness marker: a NaN with exactly this bit pattern. Compare with `to_bits`.
pub const STALE_NAN_BITS: u64 = 0x7ff0000000000002;

/// The NaN Prometheus stores for an ordinary NaN sample value (distinct from the stale marker).
pub const NORMAL_NAN_BITS: u64 = 0x7ff8000000000001;

/// Length of the big-endian sample count that starts every XOR chunk.
pub const XOR_HEADER_LEN: usize = 2;

/// Why chunk bytes could not be decoded or resumed. Offsets count from the start of the chunk data
/// (the sample count header included).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("XOR chunk is {len} bytes, shorter than its 2-byte sample count header")]
    TooShort { len: usize },
    #[error(
        "XOR chunk data ends at byte {len} while decoding sample {sample} of {count} \
         (which starts at bit {bit})"
    )]
    UnexpectedEnd {
        sample: u16,
        count: u16,
        bit: usize,
        len: usize,
    },
    #[error("varint of sample {sample} overflows 64 bits at byte {byte}")]
    VarintOverflow { sample: u16, byte: usize },
    #[error(
        "value of sample {sample} at bit {bit}: {leading} leading zeros plus {significant} \
         significant bits exceed 64"
    )]
    BadValueWidth {
        sample: u16,
        bit: usize,
        leading: u8,
        significant: u8,
    },
    #[error("XOR chunk already holds {count} samples, the most its 16-bit count can record")]
    Full { count: u16 },
}

/// Fuzz body: decodes arbitrary bytes as an XOR chunk, and where that works resumes appending to it.
/// Must never panic; the properties it asserts hold for every input.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let Ok(it) = XorIterator::new(data) else {
        assert!(data.len() < XOR_HEADER_LEN);
        return;
    };
    let mut samples = Vec::new();
    let mut error = None;
    for r in it {
        match r {
            Ok(s) => samples.push(s),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let failed = error.is_some();
    // The batch decoder sees the same samples and the same error, over the whole chunk and over
    // a window that starts at a sample's timestamp (it stops at the first sample after the window).
    let bits = |v: &[(i64, f64)]| v.iter().map(|s| (s.0, s.1.to_bits())).collect::<Vec<_>>();
    let mut batch = Vec::new();
    let r = decode_xor_into(data, i64::MIN, i64::MAX, &mut batch);
    assert_eq!(bits(&batch), bits(&samples));
    assert_eq!(r.err(), error);
    if let Some(&(lo, _)) = samples.get(samples.len() / 3) {
        let hi = lo.saturating_add(60_000);
        let mut want = Vec::new();
        for &s in &samples {
            if s.0 > hi {
                break;
            }
            if s.0 >= lo {
                want.push(s);
            }
        }
        batch.clear();
        let _ = decode_xor_into(data, lo, hi, &mut batch);
        assert_eq!(bits(&batch), bits(&want));
    }
    // Seeking visits a suffix of what plain iteration sees.
    if let Some(&(t, _)) = samples.get(samples.len() / 2) {
        if let Ok(mut it) = XorIterator::new(data) {
            let got = it.seek(t);
            let want = samples.iter().find(|s| s.0 >= t);
            if let (Ok(Some(g)), Some(w)) = (got, want) {
                assert_eq!((g.0, g.1.to_bits()), (w.0, w.1.to_bits()));
            }
        }
    }
    // A chunk that decodes fully can be resumed, and keeps its samples when appended to.
    match XorAppender::from_bytes(data.to_vec()) {
        Ok(mut app) => {
            assert!(!failed);
            let next_t = samples.last().map_or(0, |s| s.0.wrapping_add(15_000));
            app.append(next_t, 1.5);
            let mut want: Vec<(i64, u64)> = samples.iter().map(|s| (s.0, s.1.to_bits())).collect();
            want.push((next_t, 1.5f64.to_bits()));
            let got: Vec<(i64, u64)> = XorIterator::new(app.bytes())
                .map(|it| it.map(|r| r.map(|s| (s.0, s.1.to_bits()))))
                .and_then(|it| it.collect::<Result<_, _>>())
                .unwrap_or_default();
            assert_eq!(got, want);
        }
        Err(_) => assert!(failed || samples.len() == usize::from(u16::MAX)),
    }
}
