//! A block's `tombstones` file: deletion intervals per series (Prometheus'
//! `tsdb/docs/format/tombstones.md` and `tsdb/tombstones/tombstones.go`, v2.42).
//!
//! Layout, as the Go code writes it (the spec's "last 8 bytes are an offset" note is stale): magic
//! `0x0130BA30` (4 bytes, big-endian), version byte 1, then `uvarint series ref | varint mint |
//! varint maxt` per interval, then a CRC32C of the intervals (the version byte excluded). Intervals
//! are closed; overlapping or adjacent intervals of a series are merged, as `Intervals.Add` does.
//! Every block we write has one, empty unless something was deleted.

use std::collections::BTreeMap;

use super::encoding::{put_uvarint, put_varint, Decbuf};

/// Magic number at the start of a tombstones file.
pub const MAGIC_TOMBSTONES: u32 = 0x0130_BA30;
/// The tombstones format version.
pub const TOMBSTONES_FORMAT_V1: u8 = 1;
/// Name of the file in a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";
const HEADER_LEN: usize = 5;
const CRC_LEN: usize = 4;

/// Why a tombstones file could not be decoded; offsets count from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TombstoneError {
    #[error("tombstones at offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },
}

/// A closed time interval `[mint, maxt]` of deleted samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub mint: i64,
    pub maxt: i64,
}

impl Interval {
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }
}

/// Deletion intervals by series reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tombstones {
    by_series: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    pub fn new() -> Tombstones {
        Tombstones::default()
    }

    /// Adds an interval for a series, merging it with overlapping or adjacent ones. An empty
    /// interval (`mint > maxt`, which deletes nothing) is ignored.
    pub fn add(&mut self, series: u64, iv: Interval) {
        if iv.mint > iv.maxt {
            return;
        }
        let list = self.by_series.entry(series).or_default();
        let mut merged = iv;
        let mut out = Vec::with_capacity(list.len() + 1);
        for &e in list.iter() {
            if e.maxt < merged.mint.saturating_sub(1) || e.mint > merged.maxt.saturating_add(1) {
                out.push(e);
            } else {
                merged.mint = merged.mint.min(e.mint);
                merged.maxt = merged.maxt.max(e.maxt);
            }
        }
        let i = out.partition_point(|e| e.mint < merged.mint);
        out.insert(i, merged);
        *list = out;
    }

    /// The intervals of a series, sorted and disjoint.
    pub fn get(&self, series: u64) -> &[Interval] {
        self.by_series.get(&series).map_or(&[], Vec::as_slice)
    }

    /// Every (series, intervals), by series reference.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[Interval])> {
        self.by_series.iter().map(|(&s, v)| (s, v.as_slice()))
    }

    /// Number of intervals (meta.json's `numTombstones`).
    pub fn total(&self) -> u64 {
        self.by_series.values().map(|v| v.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }

    /// The whole file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + CRC_LEN);
        out.extend_from_slice(&MAGIC_TOMBSTONES.to_be_bytes());
        out.push(TOMBSTONES_FORMAT_V1);
        for (s, ivs) in self.iter() {
            for iv in ivs {
                put_uvarint(&mut out, s);
                put_varint(&mut out, iv.mint);
                put_varint(&mut out, iv.maxt);
            }
        }
        let crc = crc32c::crc32c(&out[HEADER_LEN..]);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a whole file, checking magic, version and CRC.
    pub fn decode(b: &[u8]) -> Result<Tombstones, TombstoneError> {
        let err = |offset: usize, what: String| TombstoneError::Corrupt {
            offset: offset as u64,
            what,
        };
        if b.len() < HEADER_LEN + CRC_LEN {
            return Err(err(0, format!("{} bytes, too short", b.len())));
        }
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC_TOMBSTONES {
            return Err(err(
                0,
                format!("magic {magic:#010x}, want {MAGIC_TOMBSTONES:#010x}"),
            ));
        }
        if b[4] != TOMBSTONES_FORMAT_V1 {
            return Err(err(4, format!("format version {}, want 1", b[4])));
        }
        let end = b.len() - CRC_LEN;
        let want = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        let got = crc32c::crc32c(&b[HEADER_LEN..end]);
        if got != want {
            return Err(err(end, format!("CRC32C {got:#010x}, stored {want:#010x}")));
        }
        let mut t = Tombstones::new();
        let mut d = Decbuf::new(b, HEADER_LEN, end);
        while d.remaining() > 0 {
            let at = d.pos();
            let (Some(s), Some(mint), Some(maxt)) = (d.uvarint(), d.varint(), d.varint()) else {
                return Err(err(at, "truncated tombstone".into()));
            };
            t.add(s, Interval { mint, maxt });
        }
        Ok(t)
    }
}

/// Fuzz body: decodes arbitrary bytes as a tombstones file; must never panic.
#[doc(hidden)]
pub fn fuzz_tombstones(data: &[u8]) {
    if let Ok(t) = Tombstones::decode(data) {
        // Intervals it yields re-encode to a file that decodes to the same.
        assert_eq!(Tombstones::decode(&t.encode()).as_ref(), Ok(&t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_file_bytes() {
        let b = Tombstones::new().encode();
        // CRC32C of nothing is 0.
        assert_eq!(b, [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert!(Tombstones::decode(&b).unwrap().is_empty());
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(Tombstones::decode(&bad).is_err());
    }

    #[test]
    fn intervals_merge_like_prometheus() {
        let mut t = Tombstones::new();
        t.add(1, Interval { mint: 10, maxt: 20 });
        t.add(1, Interval { mint: 30, maxt: 40 });
        t.add(1, Interval { mint: 21, maxt: 22 }); // adjacent to the first
        assert_eq!(
            t.get(1),
            [
                Interval { mint: 10, maxt: 22 },
                Interval { mint: 30, maxt: 40 }
            ]
        );
        t.add(1, Interval { mint: 0, maxt: 100 });
        assert_eq!(t.get(1), [Interval { mint: 0, maxt: 100 }]);
        assert_eq!(t.total(), 1);
        assert!(t.get(2).is_empty());
    }

    proptest! {
        #[test]
        fn tombstones_round_trip(ivs in proptest::collection::vec((0u64..20, any::<i64>(), 0i64..1000), 0..30)) {
            let mut t = Tombstones::new();
            for (s, a, l) in ivs {
                t.add(s, Interval { mint: a / 2, maxt: a / 2 + l });
            }
            prop_assert_eq!(Tombstones::decode(&t.encode()).unwrap(), t);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fuzz_tombstones_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            fuzz_tombstones(&data);
            let mut b = Tombstones::new().encode();
            b.truncate(5);
            b.extend_from_slice(&data);
            let crc = crc32c::crc32c(&b[5..]);
            b.extend_from_slice(&crc.to_be_bytes());
            fuzz_tombstones(&b);
        }
    }
}
