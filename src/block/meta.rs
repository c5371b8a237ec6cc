//! A block's `meta.json` and the ULIDs that name blocks.
//!
//! Field names, optional fields and layout follow Prometheus' `BlockMeta` (`tsdb/block.go`, v2.42):
//! `maxTime` is exclusive, zero stats are omitted, `compaction.sources` lists the level-1 blocks a
//! block descends from and `parents` the blocks it was directly made from. ULIDs are the canonical
//! 26-character Crockford base32 form (48-bit millisecond time, 80 random bits) that
//! `github.com/oklog/ulid` parses.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The only `meta.json` version Prometheus writes and reads.
pub const META_VERSION: u32 = 1;
/// The file name of a block's metadata.
pub const META_FILENAME: &str = "meta.json";

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a ULID's text form.
pub const ULID_LEN: usize = 26;

/// Why a ULID or a `meta.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("ULID {text:?}: {what}")]
    Ulid { text: String, what: &'static str },
    #[error("meta.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("meta.json: version {0}, want {META_VERSION}")]
    Version(u32),
    #[error("meta.json: minTime {min} is after maxTime {max}")]
    Range { min: i64, max: i64 },
}

/// A 128-bit ULID: 48-bit Unix milliseconds then 80 random bits; its text form sorts like its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ulid(u128);

static ULID_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Ulid {
    /// A new ULID for the current time.
    pub fn new() -> Ulid {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ulid::with_time(ms)
    }

    /// A new ULID with time `ms` (Unix milliseconds, truncated to 48 bits) and fresh random bits.
    ///
    /// Randomness comes from std's `RandomState` (randomly keyed SipHash) over the wall clock in
    /// nanoseconds and a process-wide counter: unpredictable enough to keep names of blocks made
    /// in the same millisecond, in this process or another, apart.
    pub fn with_time(ms: u64) -> Ulid {
        let n = ULID_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let word = |salt: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u128(nanos);
            h.write_u64(n);
            h.write_u64(salt);
            h.write_u32(std::process::id());
            h.finish()
        };
        let random = (u128::from(word(1)) << 16 | u128::from(word(2) & 0xffff)) & ((1 << 80) - 1);
        Ulid(u128::from(ms & 0xffff_ffff_ffff) << 80 | random)
    }

    pub fn from_u128(v: u128) -> Ulid {
        Ulid(v)
    }

    pub fn to_u128(self) -> u128 {
        self.0
    }

    /// The ULID's time in Unix milliseconds.
    pub fn timestamp_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl Default for Ulid {
    fn default() -> Self {
        Ulid::new()
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ULID_LEN];
        // 26 characters of 5 bits hold 130 bits; the first character carries the top 3.
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (ULID_LEN - 1 - i);
            *c = CROCKFORD[((self.0 >> shift) & 0x1f) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Ulid {
    type Err = MetaError;

    /// Parses the 26-character form, case-insensitively, rejecting values above 2^128 - 1 (a first
    /// character above `7`), as `oklog/ulid` does.
    fn from_str(s: &str) -> Result<Ulid, MetaError> {
        let err = |what| MetaError::Ulid {
            text: s.to_string(),
            what,
        };
        if s.len() != ULID_LEN {
            return Err(err("not 26 characters"));
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let up = b.to_ascii_uppercase();
            let d = CROCKFORD
                .iter()
                .position(|&c| c == up)
                .ok_or_else(|| err("character outside Crockford base32"))?;
            if i == 0 && d > 7 {
                return Err(err("value overflows 128 bits"));
            }
            v = v << 5 | d as u128;
        }
        Ok(Ulid(v))
    }
}

impl TryFrom<String> for Ulid {
    type Error = MetaError;
    fn try_from(s: String) -> Result<Ulid, MetaError> {
        s.parse()
    }
}

impl From<Ulid> for String {
    fn from(u: Ulid) -> String {
        u.to_string()
    }
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

fn is_false(x: &bool) -> bool {
    !*x
}

/// Counts over a block's contents (`stats` in meta.json); zero counts are omitted, as in Go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// A parent block: its ULID and time range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
}

/// How a block came to be (`compaction` in meta.json).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCompaction {
    /// 1 for blocks cut from the head, one more than the highest parent's for compacted blocks.
    pub level: u32,
    /// The level-1 blocks this block's data comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// Set by compaction when the result held no samples; such a block is deleted on reload.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// The contents of meta.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: Ulid,
    /// Earliest sample time the block may hold (inclusive), in milliseconds.
    pub min_time: i64,
    /// End of the block's range (exclusive): every sample is before it.
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: BlockCompaction,
    pub version: u32,
}

impl BlockMeta {
    /// Encodes as Prometheus does (`json.MarshalIndent` with a tab).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing plain structs of strings and integers into a Vec cannot fail.
        if self.serialize(&mut ser).is_err() {
            out.clear();
        }
        out
    }

    /// Decodes and checks the version and time range.
    pub fn from_json(b: &[u8]) -> Result<BlockMeta, MetaError> {
        let m: BlockMeta = serde_json::from_slice(b)?;
        if m.version != META_VERSION {
            return Err(MetaError::Version(m.version));
        }
        if m.min_time > m.max_time {
            return Err(MetaError::Range {
                min: m.min_time,
                max: m.max_time,
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ulid_text_form() {
        assert_eq!(Ulid(0).to_string(), "00000000000000000000000000");
        assert_eq!(Ulid(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        // A known ULID from the ULID spec: time 1469918176385 ms.
        let u: Ulid = "01ARYZ6S41TSV4RRFFQ69G5FAV".parse().unwrap();
        assert_eq!(u.timestamp_ms(), 1469918176385);
        assert_eq!(
            "01aryz6s41tsv4rrffq69g5fav".parse::<Ulid>().unwrap(),
            u,
            "case-insensitive"
        );
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<Ulid>().is_err());
        assert!("01ARYZ6S41TSV4RRFFQ69G5FA".parse::<Ulid>().is_err());
        assert!("01ARYZ6S41TSV4RRFFQ69G5FAU".parse::<Ulid>().is_err());
    }

    #[test]
    fn new_ulids_are_distinct_and_timed() {
        let a = Ulid::with_time(1000);
        let b = Ulid::with_time(1000);
        assert_ne!(a, b);
        assert_eq!(a.timestamp_ms(), 1000);
        assert!(Ulid::with_time(1001) > a);
        let now = Ulid::new();
        assert!(now.timestamp_ms() > 1_600_000_000_000);
    }

    #[test]
    fn meta_json_matches_prometheus_layout() {
        let u: Ulid = "01ARYZ6S41TSV4RRFFQ69G5FAV".parse().unwrap();
        let m = BlockMeta {
            ulid: u,
            min_time: 0,
            max_time: 7200000,
            stats: BlockStats {
                num_samples: 10,
                num_series: 2,
                num_chunks: 2,
                num_tombstones: 0,
            },
            compaction: BlockCompaction {
                level: 1,
                sources: vec![u],
                ..Default::default()
            },
            version: 1,
        };
        let want = "{\n\t\"ulid\": \"01ARYZ6S41TSV4RRFFQ69G5FAV\",\n\t\"minTime\": 0,\n\t\"maxTime\": 7200000,\n\t\"stats\": {\n\t\t\"numSamples\": 10,\n\t\t\"numSeries\": 2,\n\t\t\"numChunks\": 2\n\t},\n\t\"compaction\": {\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"01ARYZ6S41TSV4RRFFQ69G5FAV\"\n\t\t]\n\t},\n\t\"version\": 1\n}";
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), want);
        assert_eq!(BlockMeta::from_json(want.as_bytes()).unwrap(), m);
        let v2 = want.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            BlockMeta::from_json(v2.as_bytes()),
            Err(MetaError::Version(2))
        ));
    }

    proptest! {
        #[test]
        fn ulid_round_trips(v in any::<u128>()) {
            let u = Ulid(v);
            prop_assert_eq!(u.to_string().parse::<Ulid>().unwrap(), u);
        }

        #[test]
        fn meta_round_trips(min in any::<i64>(), span in 0i64..1 << 40, s in any::<u64>(), lvl in 1u32..6) {
            let m = BlockMeta {
                ulid: Ulid::with_time(5),
                min_time: min / 2,
                max_time: min / 2 + span,
                stats: BlockStats { num_samples: s, num_series: s / 3, num_chunks: 0, num_tombstones: 1 },
                compaction: BlockCompaction {
                    level: lvl,
                    sources: vec![Ulid::with_time(1), Ulid::with_time(2)],
                    parents: vec![BlockDesc { ulid: Ulid::with_time(3), min_time: 1, max_time: 2 }],
                    ..Default::default()
                },
                version: META_VERSION,
            };
            prop_assert_eq!(BlockMeta::from_json(&m.to_json()).unwrap(), m);
        }
    }
}
