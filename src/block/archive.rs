//! Archive blocks: an opt-in, denser on-disk form of old blocks that Prometheus cannot read
//! (issue 3, point 10). Off by default; nothing in the database writes one unless asked
//! (`tsdbctl archive`), and [`unarchive_block`] turns one back into a byte-compatible block.
//!
//! # Layout
//!
//! ```text
//! <ULID>/meta.json   Prometheus' meta.json (version 1) plus  "tsdbctl": {"archive": {...}}
//! <ULID>/archive     the series, their labels and samples, re-encoded and zstd-compressed
//! <ULID>/tombstones  copied unchanged from the source block (when it had one)
//! ```
//!
//! There is no `index` file and no `chunks/` directory. Prometheus (v2.42) reads meta.json, ignores
//! the unknown `tsdbctl` key, then fails to open the block; at startup it exits with `opening
//! storage failed: reloadBlocks: corrupted block ULID: open DIR/chunks: no such file or
//! directory` and leaves the block alone, so it never misreads or deletes an archive (checked by
//! `tests/archive.rs`). `promtool tsdb analyze/dump/list` fail with the same "corrupted block".
//! Our [`super::Block::open`] recognises the `tsdbctl.archive` key and decodes the block.
//!
//! The `archive` file: magic [`ARCHIVE_MAGIC`], version [`ARCHIVE_VERSION`], the number of
//! sections, then per section `uvarint raw_len, uvarint compressed_len, CRC32C(raw) (4 bytes BE),
//! one zstd frame`. Sections, in order:
//!
//! 1. `labels`: the symbol table (sorted strings) and per series its label pairs as symbol numbers.
//! 2. `series`: per series its number of chunks and either the raw chunks' metas (`min_t, max_t,
//!    encoding, length`, data in section 5) or, for series whose chunks are canonical XOR chunks
//!    whose time range is their first and last sample, the timestamp vector it uses, the sample
//!    count of each chunk and how its values are coded (below).
//! 3. `timestamps`: distinct timestamp vectors, each `n, t0, t1-t0` then delta-of-deltas (zig-zag
//!    varints). Series scraped together share one vector: on the standard dataset 100 vectors serve
//!    10,000 series, so timestamps cost next to nothing (XOR chunks spend ~2.5 bits a sample on
//!    them).
//! 4. `planes`: value integers, as byte planes (below).
//! 5. `raw`: chunk bytes of series that could not be re-encoded exactly.
//!
//! # Values
//!
//! As VictoriaMetrics does, a series whose values are short decimals is stored as integers: the
//! smallest exponent `E` (0..=22) such that every value is `M / 10^E` for an integer `|M| <= 2^53`
//! (that division is exact-rounded, so decoding is bit-exact and is checked while encoding). The
//! integers are differenced 0, 1 or 2 times (whichever gives the smallest integers: gauges,
//! counters, steady counters), the first values kept in the series header, and the rest
//! shifted by their minimum ("frame of reference") so they are small non-negative integers of
//! `w <= 8` bytes. Values that are not such decimals (NaN and its payloads, stale markers, ±Inf,
//! -0.0, long fractions) are exceptions kept as raw `f64` bits; a series where more than half are
//! exceptions is coded as the XOR of consecutive values' bits instead. Every series' integers are
//! split into byte planes (byte k of every integer), and all series' most significant planes are
//! written before all other planes: zstd's Huffman tables are per 128 KiB block, and keeping the
//! skewed top bytes apart from the near-uniform low bytes measured 3.1 % smaller on the standard
//! dataset than series-major order (level 9: 4,481,541 vs 4,626,685 bytes). Frames carry their
//! content size, so a decoder allocates what a section holds, not zstd's window; long-distance
//! matching made the archive larger and slower and is off.
//!
//! Everything is lossless: values are bit-exact and the rebuilt XOR chunks are byte-identical to
//! the originals (checked while encoding; a series whose chunk does not re-encode identically is
//! stored raw).
//!
//! # Identity and crash safety
//!
//! An archive gets a new ULID; its `compaction.parents` names the block it was made from (and an
//! unarchived block names its archive), so a crash between writing the new block and retiring the
//! old one leaves two blocks of which the child is complete; [`finish_interrupted`] retires such
//! parents (Prometheus' reload does the same for parents of loaded blocks). Replacing a block in a
//! data directory needs [`DataDirLock`], the `lock` file [`crate::Db::open`] takes.
//!
//! # Memory
//!
//! Opening an archive decodes it whole: the rebuilt index and chunk bytes are held in memory
//! (about the size of the compatible block: 26 MB for the standard dataset's 4.8 M samples)
//! instead of being mapped, plus the compressed file while decoding.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chunks::{self, ChunkFileError, ChunkReader, ChunkWriter};
use super::encoding::{put_uvarint, put_varint, Decbuf};
use super::index::{self, ChunkRefMeta, IndexError, IndexFileReader, IndexWriter};
use super::meta::{self, BlockDesc, BlockMeta, MetaError, Ulid};
use super::tombstones::TOMBSTONES_FILENAME;
use super::{Block, BlockError, CHUNKS_DIRNAME, TMP_FOR_CREATION_SUFFIX};
use crate::chunk::{XorAppender, XorIterator, ENCODING_XOR};
use crate::index::Postings;
use crate::labels::{Label, Labels};

/// File name of the archive data in an archive block.
pub const ARCHIVE_FILENAME: &str = "archive";
/// First bytes of the archive file.
pub const ARCHIVE_MAGIC: [u8; 8] = *b"TSDBARCH";
/// The only archive format version.
pub const ARCHIVE_VERSION: u8 = 1;
/// Key of our extension object in meta.json (Prometheus ignores unknown keys).
pub const META_KEY: &str = "tsdbctl";
/// zstd level `tsdbctl archive` uses unless told otherwise.
pub const DEFAULT_LEVEL: i32 = 9;
/// Suffix a block directory gets while it is being deleted.
pub const TMP_FOR_DELETION_SUFFIX: &str = ".tmp-for-deletion";
/// Name of the data directory's lock file (the one [`crate::Db::open`] locks).
pub const LOCK_FILENAME: &str = "lock";

const SECTIONS: [&str; 5] = ["labels", "series", "timestamps", "planes", "raw"];
const S_LABELS: usize = 0;
const S_SERIES: usize = 1;
const S_TIMESTAMPS: usize = 2;
const S_PLANES: usize = 3;
const S_RAW: usize = 4;

const KIND_RAW: u8 = 0;
const KIND_ENCODED: u8 = 1;
const VALUES_DECIMAL: u8 = 0;
const VALUES_BITS: u8 = 1;
/// Largest decimal exponent: 10^22 is the largest power of ten an f64 holds exactly.
const MAX_EXPONENT: usize = 22;
/// Largest decimal mantissa: integers up to 2^53 are exact in an f64.
const MAX_MANTISSA: f64 = 9_007_199_254_740_992.0;
/// Exact powers of ten, 10^0..=10^22.
const POW10: [f64; MAX_EXPONENT + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Why a block could not be archived, unarchived or opened as an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{path}: {source}")]
    Meta {
        path: PathBuf,
        #[source]
        source: MetaError,
    },
    #[error("{path}: index: {source}")]
    Index {
        path: PathBuf,
        #[source]
        source: IndexError,
    },
    #[error("{path}: chunks: {source}")]
    Chunks {
        path: PathBuf,
        #[source]
        source: ChunkFileError,
    },
    #[error("{path}: {section} section, offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        section: &'static str,
        offset: u64,
        what: String,
    },
    #[error("{path}: not an archive block")]
    NotArchive { path: PathBuf },
    #[error("{path}: already an archive block")]
    AlreadyArchive { path: PathBuf },
    #[error("{path}: the data directory is in use by another process (lock held)")]
    Locked { path: PathBuf },
    #[error("zstd level {0} outside 1..=22")]
    Level(i32),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `tsdbctl` object of an archive's meta.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaExtension {
    pub archive: ArchiveInfo,
}

/// What an archive block's meta.json says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Archive format version ([`ARCHIVE_VERSION`]).
    pub version: u8,
    /// The data file ([`ARCHIVE_FILENAME`]).
    pub file: String,
    /// The zstd level it was written with.
    pub level: i32,
}

#[derive(Serialize)]
struct MetaOut<'a> {
    #[serde(flatten)]
    meta: &'a BlockMeta,
    tsdbctl: &'a MetaExtension,
}

#[derive(Deserialize)]
struct MetaExtIn {
    tsdbctl: Option<serde_json::Value>,
}

/// meta.json of an archive: Prometheus' layout (tab-indented) with the `tsdbctl` object last.
fn archive_meta_json(meta: &BlockMeta, ext: &MetaExtension) -> Vec<u8> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Plain structs of strings and integers serialize into a Vec without error.
    if (MetaOut { meta, tsdbctl: ext })
        .serialize(&mut ser)
        .is_err()
    {
        out.clear();
    }
    out
}

/// The archive extension of a meta.json's bytes: `None` for a compatible block, an error when
/// the `tsdbctl` object is there but not one this version reads.
pub fn meta_extension(raw: &[u8]) -> Result<Option<MetaExtension>, MetaError> {
    let m: MetaExtIn = serde_json::from_slice(raw)?;
    let Some(v) = m.tsdbctl else {
        return Ok(None);
    };
    let ext: MetaExtension = serde_json::from_value(v)?;
    if ext.archive.version != ARCHIVE_VERSION {
        return Err(MetaError::Json(serde::de::Error::custom(format!(
            "tsdbctl.archive.version {}, this build reads {ARCHIVE_VERSION}",
            ext.archive.version
        ))));
    }
    Ok(Some(ext))
}

/// Whether `dir` holds an archive block (its meta.json has the `tsdbctl.archive` object).
pub fn is_archive(dir: &Path) -> bool {
    fs::read(dir.join(meta::META_FILENAME))
        .ok()
        .and_then(|raw| meta_extension(&raw).ok())
        .flatten()
        .is_some()
}

// ---------------------------------------------------------------------------------------------
// Codec: pure functions over bytes.

/// One chunk of a series handed to [`encode`].
#[derive(Clone, Copy, Debug)]
pub struct ChunkIn<'a> {
    pub min_t: i64,
    pub max_t: i64,
    pub encoding: u8,
    pub data: &'a [u8],
}

/// Bounds on what a decoder builds, so hostile bytes cannot make it allocate without limit.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest decompressed section.
    pub max_section: u64,
    /// Most samples in the whole archive.
    pub max_samples: u64,
}

impl Default for DecodeLimits {
    /// 4 GiB sections, 2^36 samples: far above any block Prometheus would cut.
    fn default() -> DecodeLimits {
        DecodeLimits {
            max_section: 1 << 32,
            max_samples: 1 << 36,
        }
    }
}

/// Bytes of the smallest integer width holding `x`.
fn width(x: u64) -> u8 {
    (64 - x.leading_zeros()).div_ceil(8) as u8
}

/// Rough cost in bits of a frame-of-reference stream: what planes + zstd spend on it.
fn stream_cost(s: &[i64]) -> (u64, i64, u8) {
    let Some(&base) = s.iter().min() else {
        return (0, 0, 0);
    };
    let mut bits = 0u64;
    let mut max = 0u64;
    for &x in s {
        let u = x.wrapping_sub(base) as u64;
        bits += u64::from(64 - u.leading_zeros());
        max = max.max(u);
    }
    (bits, base, width(max))
}

/// The integer `m` with `m / 10^e == v` bit for bit, if there is one with `|m| <= 2^53`.
fn decimal_at(v: f64, e: usize) -> Option<i64> {
    let p = *POW10.get(e)?;
    let m = (v * p).round();
    if !m.is_finite() || m.abs() > MAX_MANTISSA {
        return None;
    }
    let m = m as i64;
    // Checked through the decoder's own formula: it is what must give `v` back (-0.0 does not).
    (decimal_value(m, e).to_bits() == v.to_bits()).then_some(m)
}

/// Smallest exponent at which `v` is a short decimal.
fn min_exponent(v: f64) -> Option<usize> {
    if !v.is_finite() {
        return None;
    }
    (0..=MAX_EXPONENT).find(|&e| decimal_at(v, e).is_some())
}

fn decimal_value(m: i64, e: usize) -> f64 {
    m as f64 / POW10.get(e).copied().unwrap_or(1.0)
}

/// Differences `m` `order` times in place; returns the heads kept out of the stream.
fn difference(m: &[i64], order: usize, out: &mut Vec<i64>) -> [i64; 2] {
    out.clear();
    let mut heads = [0i64; 2];
    match order {
        0 => out.extend_from_slice(m),
        1 => {
            if let Some(&f) = m.first() {
                heads[0] = f;
            }
            out.extend(m.windows(2).map(|w| w[1].wrapping_sub(w[0])));
        }
        _ => {
            if let Some(&f) = m.first() {
                heads[0] = f;
            }
            if let Some(w) = m.get(..2) {
                heads[1] = w[1].wrapping_sub(w[0]);
            }
            out.extend(m.windows(3).map(|w| {
                w[2].wrapping_sub(w[1])
                    .wrapping_sub(w[1].wrapping_sub(w[0]))
            }));
        }
    }
    heads
}

struct Encoder {
    sections: [Vec<u8>; 5],
    /// Byte planes: (rank, bytes); written sorted by rank, stable.
    planes: Vec<(u8, Vec<u8>)>,
    ts_ids: HashMap<Vec<u8>, u64>,
    // Reused per series.
    ts: Vec<i64>,
    vs: Vec<f64>,
    counts: Vec<u64>,
    m: Vec<i64>,
    stream: Vec<i64>,
    scratch: Vec<u8>,
}

impl Encoder {
    /// Splits `u` (frame-of-reference integers) into `w` byte planes.
    fn push_planes(&mut self, u: impl Iterator<Item = u64> + Clone, w: u8) {
        for k in (0..w).rev() {
            let plane: Vec<u8> = u.clone().map(|x| (x >> (8 * k)) as u8).collect();
            self.planes.push((u8::from(k + 1 != w), plane));
        }
    }

    /// Decodes the series' chunks into `ts`/`vs`; false when they cannot be rebuilt identically.
    fn samples(&mut self, chunks: &[ChunkIn<'_>]) -> bool {
        self.ts.clear();
        self.vs.clear();
        self.counts.clear();
        for c in chunks {
            if c.encoding != ENCODING_XOR {
                return false;
            }
            let Ok(it) = XorIterator::new(c.data) else {
                return false;
            };
            let start = self.ts.len();
            let mut app = XorAppender::new();
            for s in it {
                let Ok((t, v)) = s else {
                    return false;
                };
                app.append(t, v);
                self.ts.push(t);
                self.vs.push(v);
            }
            let n = self.ts.len() - start;
            if n == 0
                || n > usize::from(u16::MAX)
                || app.bytes() != c.data
                || self.ts.get(start) != Some(&c.min_t)
                || self.ts.last() != Some(&c.max_t)
            {
                return false;
            }
            self.counts.push(n as u64);
        }
        true
    }

    fn series(&mut self, chunks: &[ChunkIn<'_>]) {
        put_uvarint(&mut self.sections[S_SERIES], chunks.len() as u64);
        if chunks.is_empty() {
            return;
        }
        if !self.samples(chunks) {
            let [_, s, _, _, raw] = &mut self.sections;
            s.push(KIND_RAW);
            for c in chunks {
                put_varint(s, c.min_t);
                put_varint(s, c.max_t);
                s.push(c.encoding);
                put_uvarint(s, c.data.len() as u64);
                raw.extend_from_slice(c.data);
            }
            return;
        }
        // Timestamps: a shared vector.
        let mut tsb = std::mem::take(&mut self.scratch);
        tsb.clear();
        put_uvarint(&mut tsb, self.ts.len() as u64);
        let mut prev_d = 0i64;
        for (i, &t) in self.ts.iter().enumerate() {
            match i {
                0 => put_varint(&mut tsb, t),
                _ => {
                    let d = t.wrapping_sub(self.ts[i - 1]);
                    put_varint(&mut tsb, if i == 1 { d } else { d.wrapping_sub(prev_d) });
                    prev_d = d;
                }
            }
        }
        let next = self.ts_ids.len() as u64;
        let id = match self.ts_ids.get(&tsb) {
            Some(&id) => {
                self.scratch = tsb;
                id
            }
            None => {
                self.sections[S_TIMESTAMPS].extend_from_slice(&tsb);
                self.ts_ids.insert(tsb, next);
                next
            }
        };
        let s = &mut self.sections[S_SERIES];
        s.push(KIND_ENCODED);
        put_uvarint(s, id);
        for &c in &self.counts {
            put_uvarint(s, c);
        }
        self.values();
    }

    fn values(&mut self) {
        let n = self.vs.len();
        let e = self
            .vs
            .iter()
            .filter_map(|&v| min_exponent(v))
            .max()
            .unwrap_or(0);
        self.m.clear();
        let mut exceptions: Vec<(usize, u64)> = Vec::new();
        let mut prev = 0i64;
        for (i, &v) in self.vs.iter().enumerate() {
            match decimal_at(v, e) {
                Some(m) => prev = m,
                None => exceptions.push((i, v.to_bits())),
            }
            self.m.push(prev);
        }
        if exceptions.len() * 2 > n {
            let s = &mut self.sections[S_SERIES];
            s.push(VALUES_BITS);
            let first = self.vs.first().map_or(0, |v| v.to_bits());
            s.extend_from_slice(&first.to_le_bytes());
            let bits: Vec<u64> = self
                .vs
                .windows(2)
                .map(|w| w[0].to_bits() ^ w[1].to_bits())
                .collect();
            let w = width(bits.iter().copied().max().unwrap_or(0));
            s.push(w);
            self.push_planes(bits.iter().copied(), w);
            return;
        }
        let mut best = (u64::MAX, 0usize, 0i64, 0u8);
        let mut stream = std::mem::take(&mut self.stream);
        for order in 0..=2 {
            difference(&self.m, order, &mut stream);
            let (bits, base, w) = stream_cost(&stream);
            // Each head costs about a varint of the mantissa; order 0 has none.
            let cost = bits + 40 * order.min(n) as u64;
            if cost < best.0 {
                best = (cost, order, base, w);
            }
        }
        let (_, order, base, w) = best;
        let heads = difference(&self.m, order, &mut stream);
        let s = &mut self.sections[S_SERIES];
        s.push(VALUES_DECIMAL);
        s.push(e as u8);
        s.push(order as u8);
        for &h in heads.iter().take(order.min(n)) {
            put_varint(s, h);
        }
        put_varint(s, base);
        s.push(w);
        put_uvarint(s, exceptions.len() as u64);
        let mut last = 0usize;
        for &(i, bits) in &exceptions {
            put_uvarint(s, (i - last) as u64);
            s.extend_from_slice(&bits.to_le_bytes());
            last = i;
        }
        self.push_planes(stream.iter().map(|&x| x.wrapping_sub(base) as u64), w);
        self.stream = stream;
    }
}

/// Encodes series (sorted by labels, as in an index) with their chunks into archive bytes,
/// compressing with zstd at `level`.
pub fn encode(series: &[(Labels, Vec<ChunkIn<'_>>)], level: i32) -> Result<Vec<u8>, io::Error> {
    let mut symbols: BTreeSet<&str> = BTreeSet::new();
    for (l, _) in series {
        for x in l {
            symbols.insert(&x.name);
            symbols.insert(&x.value);
        }
    }
    let mut enc = Encoder {
        sections: Default::default(),
        planes: Vec::new(),
        ts_ids: HashMap::new(),
        ts: Vec::new(),
        vs: Vec::new(),
        counts: Vec::new(),
        m: Vec::new(),
        stream: Vec::new(),
        scratch: Vec::new(),
    };
    let ls = &mut enc.sections[S_LABELS];
    put_uvarint(ls, symbols.len() as u64);
    let mut ids: HashMap<&str, u64> = HashMap::with_capacity(symbols.len());
    for (i, s) in symbols.iter().enumerate() {
        put_uvarint(ls, s.len() as u64);
        ls.extend_from_slice(s.as_bytes());
        ids.insert(s, i as u64);
    }
    put_uvarint(ls, series.len() as u64);
    for (l, _) in series {
        put_uvarint(ls, l.len() as u64);
        for x in l {
            put_uvarint(ls, ids.get(x.name.as_str()).copied().unwrap_or(0));
            put_uvarint(ls, ids.get(x.value.as_str()).copied().unwrap_or(0));
        }
    }
    let mut ts_count = Vec::new();
    for (_, chunks) in series {
        enc.series(chunks);
    }
    put_uvarint(&mut ts_count, enc.ts_ids.len() as u64);
    ts_count.extend_from_slice(&enc.sections[S_TIMESTAMPS]);
    enc.sections[S_TIMESTAMPS] = ts_count;
    enc.planes.sort_by_key(|p| p.0);
    let planes = &mut enc.sections[S_PLANES];
    for (_, p) in &enc.planes {
        planes.extend_from_slice(p);
    }

    let mut out = Vec::new();
    out.extend_from_slice(&ARCHIVE_MAGIC);
    out.push(ARCHIVE_VERSION);
    out.push(SECTIONS.len() as u8);
    for raw in &enc.sections {
        let mut z = zstd::stream::Encoder::new(Vec::new(), level)?;
        z.include_contentsize(true)?;
        z.set_pledged_src_size(Some(raw.len() as u64))?;
        z.write_all(raw)?;
        let comp = z.finish()?;
        put_uvarint(&mut out, raw.len() as u64);
        put_uvarint(&mut out, comp.len() as u64);
        out.extend_from_slice(&crc32c::crc32c(raw).to_be_bytes());
        out.extend_from_slice(&comp);
    }
    Ok(out)
}

/// How a decoded series' values are coded.
#[derive(Debug)]
enum Values {
    Decimal {
        e: u8,
        order: u8,
        heads: [i64; 2],
        base: i64,
        exceptions: Vec<(usize, u64)>,
    },
    Bits {
        first: u64,
    },
}

#[derive(Debug)]
struct RawChunk {
    min_t: i64,
    max_t: i64,
    encoding: u8,
    at: usize,
    len: usize,
}

#[derive(Debug)]
enum Body {
    Empty,
    Raw(Vec<RawChunk>),
    Encoded {
        ts: usize,
        counts: Vec<u16>,
        values: Values,
        /// Offsets of the series' planes in the planes section, most significant first.
        planes: Vec<usize>,
    },
}

/// A parsed archive: sections decompressed, series headers decoded; chunks are rebuilt on demand
/// by [`Archive::for_each_series`].
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    symbols: Vec<String>,
    series: Vec<(Labels, Body)>,
    ts: Vec<Vec<i64>>,
    planes: Vec<u8>,
    raw: Vec<u8>,
}

/// One rebuilt chunk: time range, encoding and bytes.
#[derive(Clone, Copy, Debug)]
pub struct ChunkOut<'a> {
    pub min_t: i64,
    pub max_t: i64,
    pub encoding: u8,
    pub data: &'a [u8],
}

struct Cur<'a> {
    path: &'a Path,
    section: usize,
    d: Decbuf<'a>,
}

impl<'a> Cur<'a> {
    fn new(path: &'a Path, section: usize, b: &'a [u8]) -> Cur<'a> {
        Cur {
            path,
            section,
            d: Decbuf::new(b, 0, b.len()),
        }
    }

    fn err(&self, what: impl Into<String>) -> ArchiveError {
        ArchiveError::Corrupt {
            path: self.path.to_path_buf(),
            section: SECTIONS.get(self.section).copied().unwrap_or("header"),
            offset: self.d.pos() as u64,
            what: what.into(),
        }
    }

    fn uvarint(&mut self, what: &str) -> Result<u64, ArchiveError> {
        self.d
            .uvarint()
            .ok_or_else(|| self.err(format!("{what}: bad or truncated varint")))
    }

    fn varint(&mut self, what: &str) -> Result<i64, ArchiveError> {
        self.d
            .varint()
            .ok_or_else(|| self.err(format!("{what}: bad or truncated varint")))
    }

    /// A count, refused when larger than `max`.
    fn count(&mut self, what: &str, max: u64) -> Result<usize, ArchiveError> {
        let n = self.uvarint(what)?;
        if n > max {
            return Err(self.err(format!("{what} {n} exceeds {max}")));
        }
        usize::try_from(n).map_err(|_| self.err(format!("{what} {n} too large")))
    }

    fn u8(&mut self, what: &str) -> Result<u8, ArchiveError> {
        self.d
            .bytes(1)
            .and_then(|b| b.first().copied())
            .ok_or_else(|| self.err(format!("{what}: truncated")))
    }

    fn u64le(&mut self, what: &str) -> Result<u64, ArchiveError> {
        self.d
            .bytes(8)
            .and_then(|b| b.first_chunk::<8>().copied())
            .map(u64::from_le_bytes)
            .ok_or_else(|| self.err(format!("{what}: truncated")))
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], ArchiveError> {
        self.d
            .bytes(n)
            .ok_or_else(|| self.err(format!("{what}: truncated")))
    }

    fn remaining(&self) -> u64 {
        self.d.remaining() as u64
    }
}

impl Archive {
    /// Parses archive bytes; `path` names the file in errors.
    pub fn parse(path: &Path, b: &[u8], limits: DecodeLimits) -> Result<Archive, ArchiveError> {
        let mut h = Cur::new(path, usize::MAX, b);
        if h.bytes(ARCHIVE_MAGIC.len(), "magic")? != ARCHIVE_MAGIC {
            return Err(h.err("bad magic: not an archive file"));
        }
        let v = h.u8("version")?;
        if v != ARCHIVE_VERSION {
            return Err(h.err(format!("version {v}, this build reads {ARCHIVE_VERSION}")));
        }
        let n = h.u8("section count")?;
        if usize::from(n) != SECTIONS.len() {
            return Err(h.err(format!("{n} sections, want {}", SECTIONS.len())));
        }
        let mut sections: Vec<Vec<u8>> = Vec::with_capacity(SECTIONS.len());
        for name in SECTIONS {
            let raw_len = h.uvarint(name)?;
            if raw_len > limits.max_section {
                return Err(h.err(format!(
                    "{name}: {raw_len} bytes exceed the limit {}",
                    limits.max_section
                )));
            }
            let clen = h.count(name, h.remaining())?;
            let crc = h.bytes(4, name)?;
            let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
            let at = h.d.pos();
            let comp = h.bytes(clen, name)?;
            let mut raw = Vec::new();
            let dec = zstd::stream::read::Decoder::new(comp).map_err(|e| h.err(e.to_string()))?;
            dec.take(raw_len)
                .read_to_end(&mut raw)
                .map_err(|e| ArchiveError::Corrupt {
                    path: path.to_path_buf(),
                    section: name,
                    offset: at as u64,
                    what: format!("zstd: {e}"),
                })?;
            let got = crc32c::crc32c(&raw);
            if raw.len() as u64 != raw_len || got != want {
                return Err(ArchiveError::Corrupt {
                    path: path.to_path_buf(),
                    section: name,
                    offset: at as u64,
                    what: format!(
                        "{} bytes with CRC32C {got:#010x}, header says {raw_len} bytes with {want:#010x}",
                        raw.len()
                    ),
                });
            }
            sections.push(raw);
        }
        if h.remaining() != 0 {
            return Err(h.err(format!("{} bytes after the last section", h.remaining())));
        }
        let raw = sections.pop().unwrap_or_default();
        let planes = sections.pop().unwrap_or_default();
        let (symbols, labels) = parse_labels(path, sections.first().map_or(&[][..], |s| s))?;
        let ts = parse_timestamps(
            path,
            sections.get(S_TIMESTAMPS).map_or(&[][..], |s| s),
            limits,
        )?;
        let series = parse_series(
            path,
            sections.get(S_SERIES).map_or(&[][..], |s| s),
            labels,
            &ts,
            planes.len(),
            raw.len(),
            limits,
        )?;
        Ok(Archive {
            path: path.to_path_buf(),
            symbols,
            series,
            ts,
            planes,
            raw,
        })
    }

    /// The sorted symbol table (every label name and value).
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.symbols.iter().map(String::as_str)
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Calls `f` with each series (in index order) and its rebuilt chunks.
    pub fn for_each_series<E>(
        &self,
        mut f: impl FnMut(&Labels, &[ChunkOut<'_>]) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<ArchiveError>,
    {
        let mut vs: Vec<f64> = Vec::new();
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        for (labels, body) in &self.series {
            match body {
                Body::Empty => f(labels, &[])?,
                Body::Raw(chunks) => {
                    let mut out = Vec::with_capacity(chunks.len());
                    for c in chunks {
                        let data = self
                            .raw
                            .get(c.at..c.at + c.len)
                            .ok_or_else(|| self.corrupt(S_RAW, c.at, "chunk past the end"))?;
                        out.push(ChunkOut {
                            min_t: c.min_t,
                            max_t: c.max_t,
                            encoding: c.encoding,
                            data,
                        });
                    }
                    f(labels, &out)?;
                }
                Body::Encoded {
                    ts,
                    counts,
                    values,
                    planes,
                } => {
                    let ts = self
                        .ts
                        .get(*ts)
                        .ok_or_else(|| self.corrupt(S_SERIES, 0, "timestamp vector"))?;
                    self.values(values, planes, ts.len(), &mut vs)?;
                    bufs.resize_with(counts.len().max(bufs.len()), Vec::new);
                    let mut at = 0usize;
                    let mut ranges = Vec::with_capacity(counts.len());
                    for (k, &c) in counts.iter().enumerate() {
                        let c = usize::from(c);
                        let mut app = XorAppender::new();
                        for i in at..at + c {
                            if let (Some(&t), Some(&v)) = (ts.get(i), vs.get(i)) {
                                app.append(t, v);
                            }
                        }
                        let (lo, hi) = (
                            ts.get(at).copied().unwrap_or(0),
                            ts.get(at + c - 1).copied().unwrap_or(0),
                        );
                        if let Some(b) = bufs.get_mut(k) {
                            *b = app.into_bytes();
                        }
                        ranges.push((lo, hi));
                        at += c;
                    }
                    let mut out = Vec::with_capacity(ranges.len());
                    for (b, &(lo, hi)) in bufs.iter().zip(&ranges) {
                        out.push(ChunkOut {
                            min_t: lo,
                            max_t: hi,
                            encoding: ENCODING_XOR,
                            data: b,
                        });
                    }
                    f(labels, &out)?;
                }
            }
        }
        Ok(())
    }

    fn corrupt(&self, section: usize, offset: usize, what: &str) -> ArchiveError {
        ArchiveError::Corrupt {
            path: self.path.clone(),
            section: SECTIONS.get(section).copied().unwrap_or("header"),
            offset: offset as u64,
            what: what.into(),
        }
    }

    /// Decodes a series' `n` values into `vs`.
    fn values(
        &self,
        values: &Values,
        planes: &[usize],
        n: usize,
        vs: &mut Vec<f64>,
    ) -> Result<(), ArchiveError> {
        vs.clear();
        let heads_n = match values {
            Values::Decimal { order, .. } => usize::from(*order).min(n),
            Values::Bits { .. } => n.min(1),
        };
        let len = n - heads_n;
        let mut ps: Vec<&[u8]> = Vec::with_capacity(planes.len());
        for &p in planes {
            ps.push(
                self.planes
                    .get(p..p + len)
                    .ok_or_else(|| self.corrupt(S_PLANES, p, "plane past the end"))?,
            );
        }
        let u = |i: usize| {
            ps.iter().fold(0u64, |acc, p| {
                acc << 8 | u64::from(p.get(i).copied().unwrap_or(0))
            })
        };
        match values {
            Values::Bits { first, .. } => {
                let mut b = *first;
                if n > 0 {
                    vs.push(f64::from_bits(b));
                }
                for i in 0..len {
                    b ^= u(i);
                    vs.push(f64::from_bits(b));
                }
            }
            Values::Decimal {
                e,
                order,
                heads,
                base,
                exceptions,
                ..
            } => {
                let e = usize::from(*e);
                let mut m = heads[0];
                let mut d = heads[1];
                let mut exc = exceptions.iter().peekable();
                for i in 0..n {
                    match (*order, i) {
                        (0, _) => m = base.wrapping_add(u(i) as i64),
                        (1, 0) | (2, 0) => {}
                        (1, _) => m = m.wrapping_add(base.wrapping_add(u(i - 1) as i64)),
                        (_, 1) => m = m.wrapping_add(d),
                        _ => {
                            d = d.wrapping_add(base.wrapping_add(u(i - 2) as i64));
                            m = m.wrapping_add(d);
                        }
                    }
                    let v = match exc.peek() {
                        Some(&&(at, bits)) if at == i => {
                            exc.next();
                            f64::from_bits(bits)
                        }
                        _ => decimal_value(m, e),
                    };
                    vs.push(v);
                }
            }
        }
        Ok(())
    }
}

fn parse_labels(path: &Path, b: &[u8]) -> Result<(Vec<String>, Vec<Labels>), ArchiveError> {
    let mut c = Cur::new(path, S_LABELS, b);
    let n = c.count("symbol count", c.remaining())?;
    let mut symbols = Vec::with_capacity(n);
    for _ in 0..n {
        let len = c.count("symbol length", c.remaining())?;
        let s = c.bytes(len, "symbol")?;
        let s = std::str::from_utf8(s).map_err(|_| c.err("symbol is not UTF-8"))?;
        if symbols.last().is_some_and(|l: &String| l.as_str() >= s) {
            return Err(c.err(format!("symbol {s:?} out of order")));
        }
        symbols.push(s.to_string());
    }
    let ns = c.count("series count", c.remaining())?;
    let mut series = Vec::with_capacity(ns);
    for _ in 0..ns {
        let nl = c.count("label count", c.remaining() / 2)?;
        let mut ls: Vec<Label> = Vec::with_capacity(nl);
        for _ in 0..nl {
            let mut sym = |what: &str| -> Result<&str, ArchiveError> {
                let r = c.uvarint(what)?;
                usize::try_from(r)
                    .ok()
                    .and_then(|r| symbols.get(r))
                    .map(String::as_str)
                    .ok_or_else(|| c.err(format!("{what}: symbol {r} out of range")))
            };
            let name = sym("label name")?;
            let value = sym("label value")?;
            if value.is_empty() || ls.last().is_some_and(|l| l.name.as_str() >= name) {
                return Err(c.err(format!(
                    "label {name}={value:?}: names must be sorted and values non-empty"
                )));
            }
            ls.push(Label::new(name, value));
        }
        let l = Labels::from_sorted_unchecked(ls);
        if series.last().is_some_and(|p: &Labels| *p >= l) {
            return Err(c.err(format!("series {l} out of order")));
        }
        series.push(l);
    }
    if c.remaining() != 0 {
        return Err(c.err("trailing bytes"));
    }
    Ok((symbols, series))
}

fn parse_timestamps(
    path: &Path,
    b: &[u8],
    limits: DecodeLimits,
) -> Result<Vec<Vec<i64>>, ArchiveError> {
    let mut c = Cur::new(path, S_TIMESTAMPS, b);
    let n = c.count("vector count", c.remaining())?;
    let mut out = Vec::with_capacity(n);
    let mut total = 0u64;
    for _ in 0..n {
        // Every timestamp takes at least one byte.
        let len = c.count("vector length", c.remaining())?;
        total += len as u64;
        if total > limits.max_samples {
            return Err(c.err(format!("more than {} timestamps", limits.max_samples)));
        }
        let mut v = Vec::with_capacity(len);
        let (mut t, mut d) = (0i64, 0i64);
        for i in 0..len {
            let x = c.varint("timestamp")?;
            match i {
                0 => t = x,
                1 => {
                    d = x;
                    t = t.wrapping_add(d);
                }
                _ => {
                    d = d.wrapping_add(x);
                    t = t.wrapping_add(d);
                }
            }
            v.push(t);
        }
        out.push(v);
    }
    if c.remaining() != 0 {
        return Err(c.err("trailing bytes"));
    }
    Ok(out)
}

fn parse_series(
    path: &Path,
    b: &[u8],
    labels: Vec<Labels>,
    ts: &[Vec<i64>],
    planes_len: usize,
    raw_len: usize,
    limits: DecodeLimits,
) -> Result<Vec<(Labels, Body)>, ArchiveError> {
    let mut c = Cur::new(path, S_SERIES, b);
    let mut out = Vec::with_capacity(labels.len());
    let mut raw_at = 0usize;
    let mut samples = 0u64;
    // (series index, plane index within series, rank, length) of every plane, to lay them out.
    let mut plane_list: Vec<(usize, usize, u8, usize)> = Vec::new();
    for l in labels {
        let nchunks = c.count("chunk count", c.remaining())?;
        if nchunks == 0 {
            out.push((l, Body::Empty));
            continue;
        }
        let kind = c.u8("series kind")?;
        let body = match kind {
            KIND_RAW => {
                let mut chunks = Vec::with_capacity(nchunks);
                for _ in 0..nchunks {
                    let min_t = c.varint("chunk min time")?;
                    let max_t = c.varint("chunk max time")?;
                    let encoding = c.u8("chunk encoding")?;
                    let len = c.count("chunk length", (raw_len - raw_at) as u64)?;
                    chunks.push(RawChunk {
                        min_t,
                        max_t,
                        encoding,
                        at: raw_at,
                        len,
                    });
                    raw_at += len;
                }
                Body::Raw(chunks)
            }
            KIND_ENCODED => {
                let tsi = c.count("timestamp vector", ts.len().saturating_sub(1) as u64)?;
                let n = ts.get(tsi).map_or(0, Vec::len);
                samples += n as u64;
                if samples > limits.max_samples {
                    return Err(c.err(format!("more than {} samples", limits.max_samples)));
                }
                let mut counts = Vec::with_capacity(nchunks.min(n));
                let mut sum = 0usize;
                for _ in 0..nchunks {
                    let k = c.count("chunk samples", u64::from(u16::MAX))?;
                    if k == 0 {
                        return Err(c.err("chunk of 0 samples"));
                    }
                    sum += k;
                    if sum > n {
                        return Err(c.err(format!(
                            "chunks hold more than the {n} timestamps of vector {tsi}"
                        )));
                    }
                    counts.push(k as u16);
                }
                if sum != n {
                    return Err(c.err(format!(
                        "chunks hold {sum} samples, timestamp vector {tsi} has {n}"
                    )));
                }
                let (values, w, heads_n) = match c.u8("value coding")? {
                    VALUES_DECIMAL => {
                        let e = c.u8("exponent")?;
                        if usize::from(e) > MAX_EXPONENT {
                            return Err(c.err(format!("exponent {e} above {MAX_EXPONENT}")));
                        }
                        let order = c.u8("order")?;
                        if order > 2 {
                            return Err(c.err(format!("difference order {order}")));
                        }
                        let hn = usize::from(order).min(n);
                        let mut heads = [0i64; 2];
                        for h in heads.iter_mut().take(hn) {
                            *h = c.varint("head")?;
                        }
                        let base = c.varint("base")?;
                        let w = c.u8("width")?;
                        let ne = c.count("exception count", n as u64)?;
                        let mut exceptions = Vec::with_capacity(ne.min(c.remaining() as usize));
                        let mut at = 0usize;
                        for k in 0..ne {
                            let gap = c.count("exception position", n as u64)?;
                            if k > 0 && gap == 0 {
                                return Err(c.err("exception positions not increasing"));
                            }
                            at += gap;
                            if at >= n {
                                return Err(c.err(format!("exception at {at} of {n} samples")));
                            }
                            exceptions.push((at, c.u64le("exception")?));
                        }
                        let v = Values::Decimal {
                            e,
                            order,
                            heads,
                            base,
                            exceptions,
                        };
                        (v, w, hn)
                    }
                    VALUES_BITS => {
                        let first = c.u64le("first value")?;
                        let w = c.u8("width")?;
                        (Values::Bits { first }, w, n.min(1))
                    }
                    x => return Err(c.err(format!("value coding {x}"))),
                };
                if w > 8 {
                    return Err(c.err(format!("width {w} above 8 bytes")));
                }
                let idx = out.len();
                for k in 0..usize::from(w) {
                    plane_list.push((idx, k, u8::from(k != 0), n - heads_n));
                }
                Body::Encoded {
                    ts: tsi,
                    counts,
                    values,
                    planes: vec![0; usize::from(w)],
                }
            }
            k => return Err(c.err(format!("series kind {k}"))),
        };
        out.push((l, body));
    }
    if c.remaining() != 0 {
        return Err(c.err("trailing bytes"));
    }
    if raw_at != raw_len {
        return Err(ArchiveError::Corrupt {
            path: path.to_path_buf(),
            section: SECTIONS[S_RAW],
            offset: raw_at as u64,
            what: format!("{} bytes not used by any chunk", raw_len - raw_at),
        });
    }
    // The encoder wrote planes sorted (stably) by rank: top planes first.
    plane_list.sort_by_key(|p| p.2);
    let mut at = 0usize;
    for (idx, k, _, len) in plane_list {
        if let Some((_, Body::Encoded { planes, .. })) = out.get_mut(idx) {
            if let Some(p) = planes.get_mut(k) {
                *p = at;
            }
        }
        at += len;
    }
    if at != planes_len {
        return Err(ArchiveError::Corrupt {
            path: path.to_path_buf(),
            section: SECTIONS[S_PLANES],
            offset: 0,
            what: format!("{planes_len} bytes, series headers describe {at}"),
        });
    }
    Ok(out)
}

/// Rebuilds index and chunks from an archive: `put` stores a chunk and returns its reference.
fn rebuild<W: Write>(
    a: &Archive,
    mut iw: IndexWriter<W>,
    index_path: &Path,
    mut put: impl FnMut(u8, &[u8]) -> Result<u64, ArchiveError>,
) -> Result<W, ArchiveError> {
    let ix = |source| ArchiveError::Index {
        path: index_path.to_path_buf(),
        source,
    };
    let mut metas: Vec<ChunkRefMeta> = Vec::new();
    a.for_each_series(|labels, chunks| -> Result<(), ArchiveError> {
        metas.clear();
        for c in chunks {
            let r = put(c.encoding, c.data)?;
            metas.push(ChunkRefMeta {
                min_t: c.min_t,
                max_t: c.max_t,
                chunk_ref: r,
            });
        }
        iw.add_series(labels, &metas).map_err(ix)?;
        Ok(())
    })?;
    iw.finish().map_err(ix)
}

/// Decodes archive bytes into the index file bytes and chunk segments of the equivalent
/// compatible block, in memory.
pub fn rebuild_in_memory(
    path: &Path,
    bytes: &[u8],
    limits: DecodeLimits,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), ArchiveError> {
    let a = Archive::parse(path, bytes, limits)?;
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut seg: Vec<u8> = chunks::segment_header().to_vec();
    let iw =
        IndexWriter::new(Vec::new(), path, a.symbols()).map_err(|source| ArchiveError::Index {
            path: path.to_path_buf(),
            source,
        })?;
    let index = rebuild(&a, iw, path, |enc, data| {
        if (seg.len() + chunks::record_len(data.len())) as u64 > chunks::DEFAULT_SEGMENT_SIZE
            && seg.len() > chunks::SEGMENT_HEADER_SIZE
        {
            segments.push(std::mem::replace(
                &mut seg,
                chunks::segment_header().to_vec(),
            ));
        }
        let r = chunks::chunk_ref(segments.len() as u32, seg.len() as u32);
        chunks::encode_record(&mut seg, enc, data);
        Ok(r)
    })?;
    segments.push(seg);
    Ok((index, segments))
}

/// Opens the archive block in `dir` in memory: its index and chunks as a compatible block's.
pub(crate) fn open_in_memory(dir: &Path) -> Result<(IndexFileReader, ChunkReader), ArchiveError> {
    let path = dir.join(ARCHIVE_FILENAME);
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    let (index, segments) = rebuild_in_memory(&path, &bytes, DecodeLimits::default())?;
    let index =
        IndexFileReader::from_bytes(&path, index).map_err(|source| ArchiveError::Index {
            path: path.clone(),
            source,
        })?;
    Ok((index, ChunkReader::from_segments(segments)))
}

/// Fuzz body: decodes untrusted archive bytes (small limits); must never panic.
#[doc(hidden)]
pub fn fuzz_archive(data: &[u8]) {
    let limits = DecodeLimits {
        max_section: 1 << 22,
        max_samples: 1 << 20,
    };
    if let Ok((index, segments)) = rebuild_in_memory(Path::new("fuzz"), data, limits) {
        let _ = IndexFileReader::from_bytes(Path::new("fuzz"), index);
        let _ = ChunkReader::from_segments(segments);
    }
}

// ---------------------------------------------------------------------------------------------
// Block directories.

fn write_synced(path: &Path, data: &[u8]) -> Result<(), ArchiveError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

fn read_meta(dir: &Path) -> Result<(BlockMeta, Option<MetaExtension>, Vec<u8>), ArchiveError> {
    let path = dir.join(meta::META_FILENAME);
    let raw = fs::read(&path).map_err(io_err(&path))?;
    let meta_err = |source| ArchiveError::Meta {
        path: path.clone(),
        source,
    };
    let m = BlockMeta::from_json(&raw).map_err(meta_err)?;
    let ext = meta_extension(&raw).map_err(meta_err)?;
    Ok((m, ext, raw))
}

/// The source block's tombstones file, if it has one.
fn read_tombstones(dir: &Path) -> Result<Option<Vec<u8>>, ArchiveError> {
    let path = dir.join(TOMBSTONES_FILENAME);
    match fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// A block directory under construction; removed unless [`TmpBlock::commit`] renames it.
struct TmpBlock {
    tmp: PathBuf,
    dst: PathBuf,
    parent: PathBuf,
    done: bool,
}

impl TmpBlock {
    fn new(parent: &Path, ulid: Ulid) -> Result<TmpBlock, ArchiveError> {
        let tmp = parent.join(format!("{ulid}{TMP_FOR_CREATION_SUFFIX}"));
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        Ok(TmpBlock {
            tmp,
            dst: parent.join(ulid.to_string()),
            parent: parent.to_path_buf(),
            done: false,
        })
    }

    fn commit(mut self) -> Result<(), ArchiveError> {
        sync_dir(&self.tmp)?;
        fs::rename(&self.tmp, &self.dst).map_err(io_err(&self.dst))?;
        self.done = true;
        sync_dir(&self.parent)
    }
}

impl Drop for TmpBlock {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn desc(m: &BlockMeta) -> BlockDesc {
    BlockDesc {
        ulid: m.ulid,
        min_time: m.min_time,
        max_time: m.max_time,
    }
}

/// Writes an archive of the compatible block `src` as a new block (new ULID) in `dest_parent`,
/// compressing at zstd `level` (1..=22); the source is left alone. The archive's meta.json keeps
/// the source's time range, stats and compaction level and sources, and names the source as its
/// parent.
pub fn archive_block(src: &Path, dest_parent: &Path, level: i32) -> Result<Ulid, ArchiveError> {
    if !(1..=22).contains(&level) {
        return Err(ArchiveError::Level(level));
    }
    let (m, ext, _) = read_meta(src)?;
    if ext.is_some() {
        return Err(ArchiveError::AlreadyArchive {
            path: src.to_path_buf(),
        });
    }
    let block = Block::open(src)?;
    let ix = |source| ArchiveError::Index {
        path: src.join(index::INDEX_FILENAME),
        source,
    };
    let mut refs = Vec::new();
    let mut p = block.index().all_series().map_err(ix)?;
    while let Some(r) = p.next() {
        refs.push(r);
    }
    let mut series = Vec::with_capacity(refs.len());
    let mut labels = Vec::new();
    let mut metas = Vec::new();
    for r in refs {
        block
            .index()
            .series_into(r, &mut labels, &mut metas)
            .map_err(ix)?;
        let mut chunks = Vec::with_capacity(metas.len());
        for c in &metas {
            let (encoding, data) =
                block
                    .chunks()
                    .chunk(c.chunk_ref)
                    .map_err(|source| ArchiveError::Chunks {
                        path: src.join(CHUNKS_DIRNAME),
                        source,
                    })?;
            chunks.push(ChunkIn {
                min_t: c.min_t,
                max_t: c.max_t,
                encoding,
                data,
            });
        }
        series.push((Labels::from_sorted_unchecked(labels.clone()), chunks));
    }
    let bytes = encode(&series, level).map_err(io_err(&src.join(ARCHIVE_FILENAME)))?;
    let tombstones = read_tombstones(src)?;

    let ulid = Ulid::new();
    let out = TmpBlock::new(dest_parent, ulid)?;
    write_synced(&out.tmp.join(ARCHIVE_FILENAME), &bytes)?;
    if let Some(t) = tombstones {
        write_synced(&out.tmp.join(TOMBSTONES_FILENAME), &t)?;
    }
    let mut am = m.clone();
    am.ulid = ulid;
    am.compaction.parents = vec![desc(&m)];
    let ext = MetaExtension {
        archive: ArchiveInfo {
            version: ARCHIVE_VERSION,
            file: ARCHIVE_FILENAME.into(),
            level,
        },
    };
    write_synced(
        &out.tmp.join(meta::META_FILENAME),
        &archive_meta_json(&am, &ext),
    )?;
    out.commit()?;
    Ok(ulid)
}

/// Writes the compatible block equivalent to the archive block `src` as a new block (new ULID) in
/// `dest_parent`: index, chunk segments, tombstones and meta.json as Prometheus reads them; the
/// source is left alone. meta.json keeps the archive's range, stats, level and sources and names
/// the archive as its parent.
pub fn unarchive_block(src: &Path, dest_parent: &Path) -> Result<Ulid, ArchiveError> {
    let (m, ext, _) = read_meta(src)?;
    if ext.is_none() {
        return Err(ArchiveError::NotArchive {
            path: src.to_path_buf(),
        });
    }
    let apath = src.join(ARCHIVE_FILENAME);
    let bytes = fs::read(&apath).map_err(io_err(&apath))?;
    let a = Archive::parse(&apath, &bytes, DecodeLimits::default())?;
    drop(bytes);
    let tombstones = read_tombstones(src)?;

    let ulid = Ulid::new();
    let out = TmpBlock::new(dest_parent, ulid)?;
    let cdir = out.tmp.join(CHUNKS_DIRNAME);
    let cerr = |source| ArchiveError::Chunks {
        path: cdir.clone(),
        source,
    };
    let mut cw = ChunkWriter::new(&cdir).map_err(cerr)?;
    let ipath = out.tmp.join(index::INDEX_FILENAME);
    let f = File::create(&ipath).map_err(io_err(&ipath))?;
    let iw = IndexWriter::new(BufWriter::with_capacity(1 << 20, f), &ipath, a.symbols()).map_err(
        |source| ArchiveError::Index {
            path: ipath.clone(),
            source,
        },
    )?;
    let w = rebuild(&a, iw, &ipath, |enc, data| {
        cw.write(enc, data).map_err(cerr)
    })?;
    cw.finish().map_err(cerr)?;
    let f = w.into_inner().map_err(|e| io_err(&ipath)(e.into_error()))?;
    f.sync_all().map_err(io_err(&ipath))?;
    if let Some(t) = tombstones {
        write_synced(&out.tmp.join(TOMBSTONES_FILENAME), &t)?;
    }
    let mut um = m.clone();
    um.ulid = ulid;
    um.compaction.parents = vec![desc(&m)];
    write_synced(&out.tmp.join(meta::META_FILENAME), &um.to_json())?;
    out.commit()?;
    Ok(ulid)
}

// ---------------------------------------------------------------------------------------------
// Replacing blocks in a data directory.

/// The data directory's `lock` file, held (flock) as [`crate::Db::open`] holds it: while this
/// exists no database has the directory open, so blocks can be replaced under it.
#[derive(Debug)]
pub struct DataDirLock {
    dir: PathBuf,
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of data directory `dir`, failing at once if a process holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, ArchiveError> {
        let path = dir.join(LOCK_FILENAME);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock {
                dir: dir.to_path_buf(),
                _file: file,
            }),
            Err(fs::TryLockError::WouldBlock) => Err(ArchiveError::Locked {
                path: dir.to_path_buf(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A block directory of a data directory, as [`list_blocks`] reports it.
#[derive(Clone, Debug)]
pub struct BlockInfo {
    pub meta: BlockMeta,
    pub archive: bool,
}

/// The blocks (directories named by a ULID with a readable meta.json) of a data directory,
/// oldest first.
pub fn list_blocks(dir: &Path) -> Result<Vec<BlockInfo>, ArchiveError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<Ulid>().is_err() || !e.path().is_dir() {
            continue;
        }
        let (meta, ext, _) = read_meta(&e.path())?;
        out.push(BlockInfo {
            meta,
            archive: ext.is_some(),
        });
    }
    out.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
    Ok(out)
}

/// Deletes block `ulid` of the locked directory crash-safely: renamed to `.tmp-for-deletion`
/// first (garbage that the next open removes), then removed.
fn retire(lock: &DataDirLock, ulid: Ulid) -> Result<(), ArchiveError> {
    let from = lock.dir.join(ulid.to_string());
    let to = lock.dir.join(format!("{ulid}{TMP_FOR_DELETION_SUFFIX}"));
    fs::rename(&from, &to).map_err(io_err(&from))?;
    sync_dir(&lock.dir)?;
    fs::remove_dir_all(&to).map_err(io_err(&to))
}

/// Replaces block `ulid` of the locked data directory by its archive; returns the archive's ULID.
pub fn archive_in_place(lock: &DataDirLock, ulid: Ulid, level: i32) -> Result<Ulid, ArchiveError> {
    let new = archive_block(&lock.dir.join(ulid.to_string()), &lock.dir, level)?;
    retire(lock, ulid)?;
    Ok(new)
}

/// Replaces archive block `ulid` of the locked data directory by the compatible block; returns
/// its ULID.
pub fn unarchive_in_place(lock: &DataDirLock, ulid: Ulid) -> Result<Ulid, ArchiveError> {
    let new = unarchive_block(&lock.dir.join(ulid.to_string()), &lock.dir)?;
    retire(lock, ulid)?;
    Ok(new)
}

/// Finishes replacements a crash interrupted: a block that is the parent of another block with
/// the same time range holds nothing its child lacks, so it is retired. Returns the ULIDs
/// retired.
pub fn finish_interrupted(lock: &DataDirLock) -> Result<Vec<Ulid>, ArchiveError> {
    let blocks = list_blocks(&lock.dir)?;
    let mut retired = Vec::new();
    for b in &blocks {
        for p in &b.meta.compaction.parents {
            let covered = p.min_time == b.meta.min_time && p.max_time == b.meta.max_time;
            let exists = blocks.iter().any(|x| x.meta.ulid == p.ulid);
            if covered && exists && !retired.contains(&p.ulid) && p.ulid != b.meta.ulid {
                retire(lock, p.ulid)?;
                retired.push(p.ulid);
            }
        }
    }
    Ok(retired)
}

#[cfg(test)]
mod tests;
