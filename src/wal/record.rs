//! WAL record codecs: the payloads Prometheus' head writes into its write-ahead log.
//!
//! Implements `tsdb/docs/format/wal.md` ("Record encoding") as Prometheus 2.42's
//! `tsdb/record/record.go` encodes and decodes it. A record is an opaque byte string to the segment
//! layer ([`super`]); its first byte is its [`RecordType`]. We encode and decode the three kinds
//! our head needs (series, samples, tombstones) and recognise the rest (exemplars, mmap markers,
//! metadata, native histograms) so replay can skip them.
//!
//! Pure functions over byte slices: no I/O, no state. Decoders never panic on any input; every
//! error names the byte offset inside the record.
//!
//! Integer encodings (record.go): series refs and the samples record's base ref and base
//! timestamp are big-endian 64-bit; label counts and string lengths are Go `uvarint`; sample
//! deltas (ref and timestamp, both relative to the record's FIRST sample) and tombstone
//! intervals are Go zig-zag `varint`; sample values are the raw IEEE-754 bits, big-endian, so
//! every NaN payload (the staleness marker `0x7ff0000000000002` in particular) survives.

use crate::labels::{Label, Labels};

/// Type byte of a series record.
pub const TYPE_SERIES: u8 = 1;
/// Type byte of a samples record.
pub const TYPE_SAMPLES: u8 = 2;
/// Type byte of a tombstones record.
pub const TYPE_TOMBSTONES: u8 = 3;
/// Type byte of an exemplars record.
pub const TYPE_EXEMPLARS: u8 = 4;
/// Type byte of an mmap-markers record (out-of-order WBL).
pub const TYPE_MMAP_MARKERS: u8 = 5;
/// Type byte of a metadata record.
pub const TYPE_METADATA: u8 = 6;
/// Type byte of an integer native-histogram samples record.
pub const TYPE_HISTOGRAM_SAMPLES: u8 = 7;
/// Type byte of a float native-histogram samples record.
pub const TYPE_FLOAT_HISTOGRAM_SAMPLES: u8 = 8;

/// Size of the samples record header after the type byte: base ref and base timestamp.
const SAMPLES_BASE_LEN: usize = 16;
/// Go's `binary.MaxVarintLen64`.
const MAX_VARINT_LEN: usize = 10;

/// The kind of a record, from its first byte (record.go `Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    Series,
    Samples,
    Tombstones,
    Exemplars,
    MmapMarkers,
    Metadata,
    HistogramSamples,
    FloatHistogramSamples,
    /// Any other first byte; an empty record is `Unknown(0)`.
    Unknown(u8),
}

/// A decoding error, with the byte offset inside the record where decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record type {found} where {expected} was expected")]
    WrongType { expected: u8, found: u8 },
    #[error("empty record")]
    Empty,
    #[error("record truncated at byte {offset} while reading {what}")]
    Truncated { offset: usize, what: &'static str },
    #[error("varint overflows 64 bits at byte {offset}")]
    VarintOverflow { offset: usize },
    #[error("label string at byte {offset} is not UTF-8")]
    InvalidUtf8 { offset: usize },
}

/// One sample of a samples record: a series ref, a timestamp in ms, a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    pub series: u64,
    pub t: i64,
    pub v: f64,
}

/// One deleted interval of one series (a tombstones record entry); `mint..=maxt` in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stone {
    pub series: u64,
    pub mint: i64,
    pub maxt: i64,
}

/// The type of `rec`, from its first byte.
pub fn record_type(rec: &[u8]) -> RecordType {
    match rec.first() {
        None => RecordType::Unknown(0),
        Some(&TYPE_SERIES) => RecordType::Series,
        Some(&TYPE_SAMPLES) => RecordType::Samples,
        Some(&TYPE_TOMBSTONES) => RecordType::Tombstones,
        Some(&TYPE_EXEMPLARS) => RecordType::Exemplars,
        Some(&TYPE_MMAP_MARKERS) => RecordType::MmapMarkers,
        Some(&TYPE_METADATA) => RecordType::Metadata,
        Some(&TYPE_HISTOGRAM_SAMPLES) => RecordType::HistogramSamples,
        Some(&TYPE_FLOAT_HISTOGRAM_SAMPLES) => RecordType::FloatHistogramSamples,
        Some(&b) => RecordType::Unknown(b),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn put_varint(out: &mut Vec<u8>, x: i64) {
    // Go's zig-zag: small magnitudes of either sign get short encodings.
    put_uvarint(out, ((x << 1) ^ (x >> 63)) as u64);
}

fn put_uvarint_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Starts a series record: appends its type byte. Follow with [`encode_series_entry`] per series.
pub fn encode_series_header(out: &mut Vec<u8>) {
    out.push(TYPE_SERIES);
}

/// Appends one series (ref and labels, in the order given: pass them sorted by name) to a series
/// record started by [`encode_series_header`].
pub fn encode_series_entry<'a>(
    out: &mut Vec<u8>,
    series: u64,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    out.extend_from_slice(&series.to_be_bytes());
    put_uvarint(out, labels.len() as u64);
    for (name, value) in labels {
        put_uvarint_str(out, name);
        put_uvarint_str(out, value);
    }
}

/// Appends one whole samples record holding `samples` (just the type byte when empty, as
/// Prometheus does). Refs and timestamps are deltas to the first sample's.
pub fn encode_samples(samples: &[RefSample], out: &mut Vec<u8>) {
    out.push(TYPE_SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    out.reserve(SAMPLES_BASE_LEN + samples.len() * 12);
    out.extend_from_slice(&first.series.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        // Go computes these in int64 with wrap-around; so do we, so every u64 ref round-trips.
        put_varint(out, (s.series as i64).wrapping_sub(first.series as i64));
        put_varint(out, s.t.wrapping_sub(first.t));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Appends one whole tombstones record. An empty slice gives `[3]`, the WAL's commit marker.
pub fn encode_tombstones(stones: &[Stone], out: &mut Vec<u8>) {
    out.push(TYPE_TOMBSTONES);
    for s in stones {
        out.extend_from_slice(&s.series.to_be_bytes());
        put_varint(out, s.mint);
        put_varint(out, s.maxt);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A cursor over a record, tracking the offset for error messages.
struct Dec<'a> {
    b: &'a [u8],
    off: usize,
}

impl<'a> Dec<'a> {
    /// Checks the type byte and positions after it.
    fn new(rec: &'a [u8], expected: u8) -> Result<Dec<'a>, RecordError> {
        match rec.first() {
            None => Err(RecordError::Empty),
            Some(&t) if t != expected => Err(RecordError::WrongType { expected, found: t }),
            Some(_) => Ok(Dec { b: rec, off: 1 }),
        }
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.off
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self.off.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.off..end];
                self.off = end;
                Ok(s)
            }
            None => Err(RecordError::Truncated {
                offset: self.off,
                what,
            }),
        }
    }

    fn be64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }

    /// Go's `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    fn uvarint(&mut self, what: &'static str) -> Result<u64, RecordError> {
        let start = self.off;
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN {
            let Some(&byte) = self.b.get(start + i) else {
                return Err(RecordError::Truncated {
                    offset: start,
                    what,
                });
            };
            if byte < 0x80 {
                if i == MAX_VARINT_LEN - 1 && byte > 1 {
                    return Err(RecordError::VarintOverflow { offset: start });
                }
                self.off = start + i + 1;
                return Ok(x | (u64::from(byte) << shift));
            }
            x |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
        Err(RecordError::VarintOverflow { offset: start })
    }

    fn varint(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let ux = self.uvarint(what)?;
        Ok(((ux >> 1) as i64) ^ -((ux & 1) as i64))
    }

    fn uvarint_str(&mut self, what: &'static str) -> Result<&'a str, RecordError> {
        let len = self.uvarint(what)?;
        let at = self.off;
        let len = usize::try_from(len).map_err(|_| RecordError::Truncated { offset: at, what })?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| RecordError::InvalidUtf8 { offset: at })
    }
}

/// Decodes a series record, appending `(ref, labels)` per series to `out`. On error `out` may
/// hold the series decoded before the damage.
/// Decodes a series record without allocating per label: calls `f` with each series' id and its
/// labels as (name, value) pairs borrowed from the record, in record order. `scratch` is reused
/// between series. Replay uses this: the labels are interned by the head right away, and a string
/// per label decoded and dropped again left ~400 bytes of heap fragments per series behind.
pub fn for_each_series<'a>(
    rec: &'a [u8],
    scratch: &mut Vec<(&'a str, &'a str)>,
    mut f: impl FnMut(u64, &[(&'a str, &'a str)]),
) -> Result<(), RecordError> {
    let mut d = Dec::new(rec, TYPE_SERIES)?;
    while d.remaining() > 0 {
        let series = d.be64("series ref")?;
        let n = d.uvarint("label count")?;
        if n > (d.remaining() / 2) as u64 {
            return Err(RecordError::Truncated {
                offset: d.off,
                what: "labels",
            });
        }
        scratch.clear();
        for _ in 0..n {
            let name = d.uvarint_str("label name")?;
            let value = d.uvarint_str("label value")?;
            scratch.push((name, value));
        }
        f(series, scratch);
    }
    Ok(())
}

pub fn decode_series(rec: &[u8], out: &mut Vec<(u64, Labels)>) -> Result<(), RecordError> {
    let mut scratch = Vec::new();
    for_each_series(rec, &mut scratch, |id, labels| {
        let labels = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        out.push((id, Labels::new(labels)));
    })
}

/// Decodes a samples record, appending to `out`; allocates nothing beyond `out`'s growth. A
/// record of just the type byte holds no samples. On error `out` may hold the samples decoded
/// before the damage.
pub fn decode_samples(rec: &[u8], out: &mut Vec<RefSample>) -> Result<(), RecordError> {
    let mut d = Dec::new(rec, TYPE_SAMPLES)?;
    if d.remaining() == 0 {
        return Ok(());
    }
    let base_ref = d.be64("base series ref")?;
    let base_t = d.be64("base timestamp")? as i64;
    // A sample is at least 10 bytes (two 1-byte varints and the value).
    out.reserve(d.remaining() / 10);
    while d.remaining() > 0 {
        let dref = d.varint("series ref delta")?;
        let dt = d.varint("timestamp delta")?;
        let v = d.be64("sample value")?;
        out.push(RefSample {
            series: (base_ref as i64).wrapping_add(dref) as u64,
            t: base_t.wrapping_add(dt),
            v: f64::from_bits(v),
        });
    }
    Ok(())
}

/// Decodes a tombstones record, appending to `out`. `[3]` (our commit marker) holds none.
pub fn decode_tombstones(rec: &[u8], out: &mut Vec<Stone>) -> Result<(), RecordError> {
    let mut d = Dec::new(rec, TYPE_TOMBSTONES)?;
    while d.remaining() > 0 {
        let series = d.be64("series ref")?;
        let mint = d.varint("tombstone mint")?;
        let maxt = d.varint("tombstone maxt")?;
        out.push(Stone { series, mint, maxt });
    }
    Ok(())
}

/// Fuzz body: decodes `data` as whatever record its type byte names; must never panic.
#[doc(hidden)]
pub fn fuzz_decode_record(data: &[u8]) {
    match record_type(data) {
        RecordType::Series => {
            let mut out = Vec::new();
            let _ = decode_series(data, &mut out);
        }
        RecordType::Samples => {
            let mut out = Vec::new();
            if decode_samples(data, &mut out).is_ok() {
                // Whatever decodes must re-encode to a record that decodes to the same samples.
                let mut again = Vec::new();
                encode_samples(&out, &mut again);
                let mut back = Vec::new();
                let ok = decode_samples(&again, &mut back).is_ok()
                    && back.len() == out.len()
                    && back.iter().zip(&out).all(|(a, b)| {
                        a.series == b.series && a.t == b.t && a.v.to_bits() == b.v.to_bits()
                    });
                assert!(ok, "samples re-encode mismatch");
            }
        }
        RecordType::Tombstones => {
            let mut out = Vec::new();
            let _ = decode_tombstones(data, &mut out);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same_samples(a: &[RefSample], b: &[RefSample]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.series == y.series && x.t == y.t && x.v.to_bits() == y.v.to_bits())
    }

    #[test]
    fn samples_layout_matches_record_go() {
        let samples = [
            RefSample {
                series: 10,
                t: 1000,
                v: 1.5,
            },
            RefSample {
                series: 9,
                t: 999,
                v: f64::from_bits(0x7ff0000000000002),
            },
        ];
        let mut out = Vec::new();
        encode_samples(&samples, &mut out);
        let mut want = vec![2u8];
        want.extend_from_slice(&10u64.to_be_bytes());
        want.extend_from_slice(&1000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        // -1 zig-zags to 1.
        want.extend_from_slice(&[1, 1]);
        want.extend_from_slice(&0x7ff0000000000002u64.to_be_bytes());
        assert_eq!(out, want);
        let mut back = Vec::new();
        decode_samples(&out, &mut back).unwrap();
        assert!(same_samples(&samples, &back));
    }

    #[test]
    fn series_layout_matches_record_go() {
        let mut out = Vec::new();
        encode_series_header(&mut out);
        encode_series_entry(&mut out, 7, [("__name__", "up"), ("job", "a")].into_iter());
        let mut want = vec![1u8];
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&[2, 8]);
        want.extend_from_slice(b"__name__");
        want.extend_from_slice(&[2]);
        want.extend_from_slice(b"up");
        want.extend_from_slice(&[3]);
        want.extend_from_slice(b"job");
        want.extend_from_slice(&[1]);
        want.extend_from_slice(b"a");
        assert_eq!(out, want);
        let mut back = Vec::new();
        decode_series(&out, &mut back).unwrap();
        assert_eq!(
            back,
            vec![(7, Labels::from_pairs(&[("__name__", "up"), ("job", "a")]))]
        );
    }

    #[test]
    fn empty_records_are_valid_and_hold_nothing() {
        let mut s = Vec::new();
        decode_series(&[1], &mut s).unwrap();
        assert!(s.is_empty());
        let mut t = Vec::new();
        decode_tombstones(&[3], &mut t).unwrap();
        assert!(t.is_empty());
        let mut x = Vec::new();
        decode_samples(&[2], &mut x).unwrap();
        assert!(x.is_empty());
        let mut enc = Vec::new();
        encode_samples(&[], &mut enc);
        assert_eq!(enc, vec![2]);
    }

    #[test]
    fn decode_errors_name_offset() {
        let mut x = Vec::new();
        assert_eq!(
            decode_samples(&[2, 0, 0], &mut x),
            Err(RecordError::Truncated {
                offset: 1,
                what: "base series ref"
            })
        );
        assert_eq!(
            decode_samples(&[1], &mut x),
            Err(RecordError::WrongType {
                expected: 2,
                found: 1
            })
        );
        let mut rec = vec![3u8];
        rec.extend_from_slice(&1u64.to_be_bytes());
        rec.extend_from_slice(&[0xff; 11]);
        let mut t = Vec::new();
        assert_eq!(
            decode_tombstones(&rec, &mut t),
            Err(RecordError::VarintOverflow { offset: 9 })
        );
        assert_eq!(record_type(&[]), RecordType::Unknown(0));
        assert_eq!(record_type(&[8]), RecordType::FloatHistogramSamples);
        assert_eq!(record_type(&[9]), RecordType::Unknown(9));
    }

    fn arb_sample() -> impl Strategy<Value = RefSample> {
        (any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(series, t, bits)| RefSample {
            series,
            t,
            v: f64::from_bits(bits),
        })
    }

    proptest! {
        #[test]
        fn samples_round_trip(samples in proptest::collection::vec(arb_sample(), 0..50)) {
            let mut out = vec![0xAA];
            encode_samples(&samples, &mut out);
            let mut back = vec![];
            decode_samples(&out[1..], &mut back).unwrap();
            prop_assert!(same_samples(&samples, &back));
        }

        #[test]
        fn series_round_trip(
            entries in proptest::collection::vec(
                (any::<u64>(), proptest::collection::btree_map("[a-z_]{1,8}", ".{1,12}", 0..6)),
                0..10)
        ) {
            let mut out = Vec::new();
            encode_series_header(&mut out);
            for (r, l) in &entries {
                encode_series_entry(&mut out, *r, l.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            }
            let mut back = Vec::new();
            decode_series(&out, &mut back).unwrap();
            prop_assert_eq!(back.len(), entries.len());
            for ((r, l), (br, bl)) in entries.iter().zip(&back) {
                prop_assert_eq!(r, br);
                let pairs: Vec<(&str, &str)> =
                    l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                prop_assert_eq!(bl, &Labels::from_pairs(&pairs));
            }
        }

        #[test]
        fn tombstones_round_trip(
            stones in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..20)
        ) {
            let stones: Vec<Stone> =
                stones.into_iter().map(|(series, mint, maxt)| Stone { series, mint, maxt }).collect();
            let mut out = Vec::new();
            encode_tombstones(&stones, &mut out);
            let mut back = Vec::new();
            decode_tombstones(&out, &mut back).unwrap();
            prop_assert_eq!(back, stones);
        }

        #[test]
        fn fuzz_decode_record_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_decode_record(&data);
        }

        #[test]
        fn fuzz_decode_record_mutated(
            samples in proptest::collection::vec(arb_sample(), 1..8),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
        ) {
            let mut rec = Vec::new();
            encode_samples(&samples, &mut rec);
            for (i, b) in flips {
                let n = rec.len();
                rec[i % n] ^= b;
            }
            let n = rec.len();
            rec.truncate(cut % (n + 1));
            fuzz_decode_record(&rec);
        }
    }
}
