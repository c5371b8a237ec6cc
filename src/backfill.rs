//! Backfill: samples older than the head written straight into blocks, the way Prometheus'
//! `promtool tsdb create-blocks-from` does (issue 3, point 5), so that a multi-day export loads in
//! one command instead of being rejected as out of bounds.
//!
//! The head only accepts samples from its minimum valid time on (the end of the newest block).
//! An appender with backfill on ([`head::Appender::set_backfill`]) sets older samples aside instead
//! of rejecting them; a [`Backfill`] takes them ([`Backfill::drain`]) and buffers them per block
//! range (the database's `block_range_ms`, ranges aligned on multiples of it, as head blocks are)
//! and series, XOR-encoded and cut into chunks by the head's own rules
//! ([`SeriesChunks::append`]: ~120 samples a chunk, never across a range boundary), so blocks
//! written here have the chunks Prometheus would cut. A sample older than the newest one of its
//! series within the same range (input not in time order) is kept aside raw; when the range is
//! written its samples are sorted and deduplicated, the first value seen for a timestamp winning,
//! as in the head.
//!
//! Each range becomes one level-1 block spanning its samples (`[first, last + 1)`, inside the
//! aligned range, like promtool's), written by [`BlockWriter`] (temporary name, fsync, rename)
//! into a staging directory `backfill-<ULID>.tmp-for-creation` of the data directory. Only
//! [`Backfill::commit`] moves them into the data directory and hands them to the database
//! ([`DbCore::add_blocks`]); dropping a `Backfill` uncommitted deletes the staging directory, and
//! a crash leaves it to be deleted by the next [`crate::Db::open`] (which removes every
//! `*.tmp-for-creation`). So a failed document leaves none of its backfilled samples behind, even
//! though blocks were written while it was read. A crash *during* commit may publish some of the
//! blocks and not others; each published block is complete.
//!
//! A range that was written already and receives samples again (input not in time order across
//! series, e.g. `promtool tsdb dump` output, series after series) gets another block overlapping
//! the first: correct, since compaction merges overlapping blocks vertically, deduplicating
//! timestamps, just not optimal.
//!
//! # Memory bound
//!
//! A buffered sample costs its XOR bits (1–2 bytes for regular scrapes of slowly changing values,
//! at most ~18), plus per chunk of ~120 samples ~40 bytes (its bounds and pointer), plus per
//! (range, series) ~[`SERIES_OVERHEAD_BYTES`] bytes; a sample kept aside because it came out of
//! order costs 16 bytes until its range is written. [`Backfill::buffered_bytes`] adds these up.
//! After each drain, once they exceed [`BackfillOptions::max_buffered_bytes`], every range lying
//! more than one range behind the newest sample seen is written. What is left is at most the
//! newest two or three ranges; if even they exceed twice the budget (a fleet so large that one
//! range of it does not fit), every range is written, oldest first, until the buffer is back
//! within the budget. So memory stays within twice the budget plus one drained batch, whatever
//! the input order. For time-ordered input each range is written once, as soon as the budget asks
//! for it after the input has passed it (a budget of 0 writes each range as soon as the input is
//! more than one range past its end), as long as two ranges fit in twice the budget: the default
//! budget holds two ranges of ~20 000 series scraped every 15 s at the ~5 bytes a sample of the
//! noisy benchmark data (2 × 20 000 × 480 × 5 B ≈ 96 MB), or ~50 000 series of calm data.
//!
//! ```
//! use tsdb::backfill::{Backfill, BackfillOptions};
//! use tsdb::labels::Labels;
//! use tsdb::{Db, Options};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path(), Options::default()).unwrap();
//! db.head().set_min_valid_time(100 * 3_600_000); // as if blocks covered everything before
//! let mut bf = Backfill::new(&db, BackfillOptions::new(db.options().block_range_ms));
//! let mut app = db.appender();
//! app.head_appender().set_backfill(true);
//! let up = Labels::from_pairs(&[("__name__", "up")]);
//! app.append(&up, 1_000, 1.0).unwrap(); // older than the head: set aside, not rejected
//! bf.drain(app.head_appender()).unwrap();
//! app.commit().unwrap();
//! let stats = bf.commit(&db).unwrap();
//! assert_eq!((stats.samples, stats.blocks), (1, 1));
//! assert_eq!(db.blocks().len(), 1);
//! ```

use crate::block::{BlockError, BlockWriter, Ulid, TMP_FOR_CREATION_SUFFIX};
use crate::chunk::XorIterator;
use crate::db::{DbCore, DbError};
use crate::head::{self, Check, MemSeries, Reject, SeriesChunks};
use crate::querier::ChunkMeta;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default of [`BackfillOptions::max_buffered_bytes`]: ~30M regular samples at ~2 bytes each.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 << 20;
/// Estimated bytes a (range, series) entry costs besides its chunk bytes: the entry (chunk
/// state, series pointer, aside list) and its slot in the range's hash map.
pub const SERIES_OVERHEAD_BYTES: usize = 160;
/// Estimated bytes of a completed chunk besides its data (bounds, shared pointer, allocation).
const CHUNK_OVERHEAD_BYTES: usize = 40;
/// Bytes of a sample kept aside (out of order within its series and range).
const ASIDE_SAMPLE_BYTES: usize = std::mem::size_of::<(i64, f64)>();
/// Prefix of the staging directory's name, followed by a ULID and [`TMP_FOR_CREATION_SUFFIX`].
pub const STAGING_PREFIX: &str = "backfill-";

/// Options of a [`Backfill`].
#[derive(Clone, Debug)]
pub struct BackfillOptions {
    /// Width of the aligned ranges a block covers at most: the database's block range (2 h).
    pub block_range_ms: i64,
    /// Buffer budget (see the module doc's memory bound).
    pub max_buffered_bytes: usize,
}

impl BackfillOptions {
    pub fn new(block_range_ms: i64) -> BackfillOptions {
        BackfillOptions {
            block_range_ms,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
        }
    }

    pub fn max_buffered_bytes(mut self, bytes: usize) -> BackfillOptions {
        self.max_buffered_bytes = bytes;
        self
    }
}

/// What a backfill did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackfillStats {
    /// Samples written into blocks.
    pub samples: u64,
    /// Samples dropped because their series had a sample at the same timestamp already (the
    /// first one wins, as in the head; identical repeats included).
    pub duplicates: u64,
    /// Blocks written.
    pub blocks: u64,
}

impl BackfillStats {
    pub fn merge(&mut self, o: &BackfillStats) {
        self.samples += o.samples;
        self.duplicates += o.duplicates;
        self.blocks += o.blocks;
    }
}

/// Why a backfill failed. Nothing of it is left in the data directory unless the failure came
/// while [`Backfill::commit`] was publishing blocks (those already moved stay, complete).
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("backfill: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backfill block for [{mint}, {maxt}): {source}")]
    Block {
        mint: i64,
        maxt: i64,
        #[source]
        source: Box<BlockError>,
    },
    #[error("backfill: adding blocks to the database: {0}")]
    Db(#[from] DbError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackfillError + '_ {
    move |source| BackfillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One series' samples in one range.
struct SeriesBuf {
    series: Arc<MemSeries>,
    chunks: SeriesChunks,
    /// Completed chunks of `chunks` already counted in the range's bytes.
    closed_counted: usize,
    /// Bytes of the open chunk counted in the range's bytes.
    open_counted: usize,
    /// Samples older than the newest of `chunks`, in arrival order.
    aside: Vec<(i64, f64)>,
}

/// The buffered samples of one aligned range.
#[derive(Default)]
struct RangeBuf {
    slot_of: HashMap<u64, usize, foldhash::fast::FixedState>,
    series: Vec<SeriesBuf>,
    bytes: usize,
}

/// Buffers samples older than the head and writes them as blocks (see the module doc).
pub struct Backfill {
    data_dir: PathBuf,
    staging: PathBuf,
    staging_created: bool,
    opts: BackfillOptions,
    /// By range start.
    ranges: BTreeMap<i64, RangeBuf>,
    /// The newest sample seen.
    newest: i64,
    buffered: usize,
    /// Blocks written into the staging directory.
    written: Vec<Ulid>,
    stats: BackfillStats,
    committed: bool,
    /// The database was opened read-only: nothing may be written into its directory.
    read_only: bool,
}

impl Backfill {
    /// A backfill into `db`'s data directory. Nothing touches the disk before the first block.
    pub fn new(db: &DbCore, opts: BackfillOptions) -> Backfill {
        let mut b = Backfill::in_dir(db.dir(), opts);
        b.read_only = db.options().read_only;
        b
    }

    /// A backfill staging its blocks under `data_dir` (the database's directory).
    pub fn in_dir(data_dir: &Path, opts: BackfillOptions) -> Backfill {
        let staging = data_dir.join(format!(
            "{STAGING_PREFIX}{}{TMP_FOR_CREATION_SUFFIX}",
            Ulid::new()
        ));
        Backfill {
            data_dir: data_dir.to_path_buf(),
            staging,
            staging_created: false,
            opts: BackfillOptions {
                block_range_ms: opts.block_range_ms.max(1),
                ..opts
            },
            ranges: BTreeMap::new(),
            newest: i64::MIN,
            buffered: 0,
            written: Vec::new(),
            stats: BackfillStats::default(),
            committed: false,
            read_only: false,
        }
    }

    /// Buffers one sample of `series`.
    pub fn append(&mut self, series: &Arc<MemSeries>, t: i64, v: f64) {
        let width = self.opts.block_range_ms;
        let start = t.div_euclid(width) * width;
        let range = self.ranges.entry(start).or_default();
        let slot = match range.slot_of.get(&series.id) {
            Some(&s) => s,
            None => {
                let s = range.series.len();
                range.series.push(SeriesBuf {
                    series: series.clone(),
                    chunks: SeriesChunks::empty(),
                    closed_counted: 0,
                    open_counted: 0,
                    aside: Vec::new(),
                });
                range.slot_of.insert(series.id, s);
                range.bytes += SERIES_OVERHEAD_BYTES;
                self.buffered += SERIES_OVERHEAD_BYTES;
                s
            }
        };
        let Some(sb) = range.series.get_mut(slot) else {
            return;
        };
        let before = range.bytes;
        match sb.chunks.append(t, v, width) {
            Check::Append => {
                while let Some(c) = sb.chunks.closed.get(sb.closed_counted) {
                    range.bytes += c.data.in_memory().map_or(0, |d| d.len()) + CHUNK_OVERHEAD_BYTES;
                    sb.closed_counted += 1;
                    // The completed chunk's bytes were counted as the open chunk's until now.
                    range.bytes -= std::mem::take(&mut sb.open_counted);
                }
                let open = sb.chunks.head.as_ref().map_or(0, |h| h.app.bytes().len());
                range.bytes = range.bytes + open - sb.open_counted;
                sb.open_counted = open;
            }
            Check::NoOp | Check::Reject(Reject::Duplicate) => self.stats.duplicates += 1,
            Check::Reject(Reject::OutOfOrder | Reject::OutOfBounds) => {
                sb.aside.push((t, v));
                range.bytes += ASIDE_SAMPLE_BYTES;
            }
        }
        self.buffered = self.buffered + range.bytes - before;
        self.newest = self.newest.max(t);
    }

    /// Takes the samples `app` set aside as older than the head (see
    /// [`head::Appender::set_backfill`]), then writes ranges if the buffer is over its budget.
    pub fn drain(&mut self, app: &mut head::Appender<'_>) -> Result<(), BackfillError> {
        app.drain_out_of_bounds(&mut |s, t, v| self.append(s, t, v));
        self.flush_over_budget()
    }

    /// Estimated bytes buffered (see the module doc).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Blocks written so far (in the staging directory until commit).
    pub fn blocks_written(&self) -> usize {
        self.written.len()
    }

    /// Writes ranges while the buffer exceeds its budget: those more than one range behind the
    /// newest sample, oldest first; then, if still over twice the budget, the oldest ones until
    /// back within the budget.
    pub fn flush_over_budget(&mut self) -> Result<(), BackfillError> {
        if self.buffered <= self.opts.max_buffered_bytes {
            return Ok(());
        }
        let width = self.opts.block_range_ms;
        let passed: Vec<i64> = self
            .ranges
            .keys()
            .copied()
            .filter(|&s| s.saturating_add(width) <= self.newest.saturating_sub(width))
            .collect();
        for start in passed {
            self.flush_range(start)?;
        }
        if self.buffered > self.opts.max_buffered_bytes.saturating_mul(2) {
            while self.buffered > self.opts.max_buffered_bytes {
                let Some(&start) = self.ranges.keys().next() else {
                    break;
                };
                self.flush_range(start)?;
            }
        }
        Ok(())
    }

    /// Writes every buffered range into the staging directory, moves the blocks into the data
    /// directory and adds them to `db`. Returns what the whole backfill did.
    pub fn commit(mut self, db: &DbCore) -> Result<BackfillStats, BackfillError> {
        if db.options().read_only && !self.ranges.is_empty() {
            return Err(DbError::ReadOnly.into());
        }
        while let Some(&start) = self.ranges.keys().next() {
            self.flush_range(start)?;
        }
        for u in &self.written {
            let name = u.to_string();
            let from = self.staging.join(&name);
            let to = self.data_dir.join(&name);
            fs::rename(&from, &to).map_err(io_err(&to))?;
        }
        if !self.written.is_empty() {
            fs::File::open(&self.data_dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.data_dir))?;
        }
        self.committed = true;
        self.remove_staging();
        db.add_blocks(&self.written)?;
        Ok(self.stats)
    }

    /// What was done so far (samples and blocks written, duplicates dropped).
    pub fn stats(&self) -> BackfillStats {
        self.stats
    }

    fn remove_staging(&mut self) {
        if self.staging_created {
            // A leftover is removed by the next open anyway.
            let _ = fs::remove_dir_all(&self.staging);
            self.staging_created = false;
        }
    }

    /// Writes the range starting at `start` as one block in the staging directory.
    fn flush_range(&mut self, start: i64) -> Result<(), BackfillError> {
        let Some(range) = self.ranges.remove(&start) else {
            return Ok(());
        };
        self.buffered = self.buffered.saturating_sub(range.bytes);
        let width = self.opts.block_range_ms;
        let mut series: Vec<(crate::labels::Labels, Vec<ChunkMeta>)> =
            Vec::with_capacity(range.series.len());
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        for sb in range.series {
            let chunks = if sb.aside.is_empty() {
                sb.chunks
            } else {
                let (chunks, dropped) = merge_aside(&sb.chunks, sb.aside, width);
                self.stats.duplicates += dropped;
                chunks
            };
            let metas = chunk_metas(chunks);
            for c in &metas {
                mint = mint.min(c.min_t);
                maxt = maxt.max(c.max_t);
                self.stats.samples += u64::from(u16::from_be_bytes([
                    c.data.first().copied().unwrap_or(0),
                    c.data.get(1).copied().unwrap_or(0),
                ]));
            }
            if !metas.is_empty() {
                series.push((sb.series.to_labels(), metas));
            }
        }
        if series.is_empty() {
            return Ok(());
        }
        if self.read_only {
            return Err(DbError::ReadOnly.into());
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        // Two head series never share labels, but a series removed from the head and created
        // again has a new id: merge such duplicates' chunks.
        let series = merge_same_labels(series, width, &mut self.stats);
        if !self.staging_created {
            fs::create_dir_all(&self.staging).map_err(io_err(&self.staging))?;
            self.staging_created = true;
        }
        let block_err = |source| BackfillError::Block {
            mint,
            maxt: maxt.saturating_add(1),
            source: Box::new(source),
        };
        let mut w =
            BlockWriter::new(&self.staging, mint, maxt.saturating_add(1)).map_err(block_err)?;
        for (labels, chunks) in series {
            w.add_series(labels, &chunks).map_err(block_err)?;
        }
        let ulid = w.finish().map_err(block_err)?;
        self.written.push(ulid);
        self.stats.blocks += 1;
        Ok(())
    }
}

impl Drop for Backfill {
    /// An uncommitted backfill leaves nothing behind.
    fn drop(&mut self) {
        if !self.committed {
            self.remove_staging();
        }
    }
}

/// A series' chunks as the block writer takes them.
fn chunk_metas(chunks: SeriesChunks) -> Vec<ChunkMeta> {
    let mut out: Vec<ChunkMeta> = chunks
        .closed
        .into_iter()
        // Backfill buffers are never given a chunk directory: every chunk is in memory.
        .filter_map(|c| {
            c.data.in_memory().map(|d| ChunkMeta {
                min_t: c.min_t,
                max_t: c.max_t,
                data: d.clone(),
            })
        })
        .collect();
    if let Some(h) = chunks.head {
        if h.app.num_samples() > 0 {
            out.push(ChunkMeta {
                min_t: h.min_t,
                max_t: h.max_t,
                data: Arc::from(h.app.into_bytes()),
            });
        }
    }
    out
}

/// The samples of `chunks` and `aside` in time order, the first seen of a timestamp kept, encoded
/// again. Every sample in `chunks` came before any later-timestamped one, so one of them at a
/// timestamp also came before an aside sample there: chunks first, then the aside ones in arrival
/// order, stably sorted. Returns the chunks and the samples dropped.
fn merge_aside(chunks: &SeriesChunks, aside: Vec<(i64, f64)>, width: i64) -> (SeriesChunks, u64) {
    let mut all: Vec<(i64, f64)> = Vec::with_capacity(chunks.num_samples() + aside.len());
    for_each_sample(chunks, |t, v| all.push((t, v)));
    all.extend(aside);
    all.sort_by_key(|&(t, _)| t);
    let n = all.len();
    all.dedup_by_key(|&mut (t, _)| t);
    let mut out = SeriesChunks::empty();
    for (t, v) in all.iter() {
        out.append(*t, *v, width);
    }
    (out, (n - all.len()) as u64)
}

fn for_each_sample(chunks: &SeriesChunks, mut f: impl FnMut(i64, f64)) {
    let data = chunks
        .closed
        .iter()
        .filter_map(|c| c.data.in_memory().map(|d| &**d))
        .chain(chunks.head.as_ref().map(|h| h.app.bytes()));
    for d in data {
        // Our own encoding of valid samples: decoding cannot fail.
        if let Ok(mut it) = XorIterator::new(d) {
            while let Ok(Some((t, v))) = it.next_sample() {
                f(t, v);
            }
        }
    }
}

/// Merges adjacent entries with equal labels (see [`Backfill::flush_range`]).
fn merge_same_labels(
    series: Vec<(crate::labels::Labels, Vec<ChunkMeta>)>,
    width: i64,
    stats: &mut BackfillStats,
) -> Vec<(crate::labels::Labels, Vec<ChunkMeta>)> {
    let mut out: Vec<(crate::labels::Labels, Vec<ChunkMeta>)> = Vec::with_capacity(series.len());
    for (labels, chunks) in series {
        match out.last_mut() {
            Some((l, prev)) if *l == labels => {
                let mut merged = SeriesChunks::empty();
                let mut all: Vec<(i64, f64)> = Vec::new();
                for c in prev.iter().chain(chunks.iter()) {
                    if let Ok(mut it) = XorIterator::new(&c.data) {
                        while let Ok(Some(s)) = it.next_sample() {
                            all.push(s);
                        }
                    }
                }
                all.sort_by_key(|&(t, _)| t);
                let n = all.len();
                all.dedup_by_key(|&mut (t, _)| t);
                stats.duplicates += (n - all.len()) as u64;
                stats.samples -= (n - all.len()) as u64;
                for &(t, v) in &all {
                    merged.append(t, v, width);
                }
                *prev = chunk_metas(merged);
            }
            _ => out.push((labels, chunks)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Block;
    use crate::head::Head;
    use crate::labels::{Labels, Matcher};
    use crate::{Db, Options};

    const H: i64 = 3_600_000;
    const RANGE: i64 = 2 * H;

    fn series(head: &Head, i: u32) -> Arc<MemSeries> {
        let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
        head.get_or_create(&l).0
    }

    type ByLabels = BTreeMap<String, Vec<(i64, u64)>>;

    /// Every sample of every block in `dir`, by labels, with each block's range.
    fn read_blocks(dir: &Path) -> (Vec<(i64, i64)>, ByLabels) {
        let mut ranges = Vec::new();
        let mut out = ByLabels::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .parse::<Ulid>()
                .is_err()
            {
                continue;
            }
            let b = Block::open(&p).unwrap();
            ranges.push((b.meta().min_time, b.meta().max_time));
            for (l, chunks) in b
                .select(&[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX)
                .unwrap()
            {
                let v = out.entry(l.to_string()).or_default();
                for c in &chunks {
                    let mut it = XorIterator::new(&c.data).unwrap();
                    while let Some((t, x)) = it.next_sample().unwrap() {
                        v.push((t, x.to_bits()));
                    }
                }
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        ranges.sort();
        (ranges, out)
    }

    #[test]
    fn one_block_per_range_spanning_its_samples() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE));
        let a = series(db.head(), 1);
        let b = series(db.head(), 2);
        // 5 hours at 15 s: ranges [0, 2h), [2h, 4h), [4h, 6h).
        let mut want = 0;
        for k in 0..(5 * H / 15_000) {
            let t = k * 15_000 + 3;
            bf.append(&a, t, k as f64);
            bf.append(&b, t, -(k as f64));
            want += 2;
        }
        let stats = bf.commit(&db).unwrap();
        assert_eq!(stats.samples, want);
        assert_eq!(stats.blocks, 3);
        assert_eq!(db.blocks().len(), 3);
        let (ranges, samples) = read_blocks(dir.path());
        assert_eq!(
            ranges,
            vec![
                (3, 2 * H - 15_000 + 4),
                (2 * H + 3, 4 * H - 15_000 + 4),
                (4 * H + 3, 5 * H - 15_000 + 4)
            ]
        );
        assert_eq!(samples.len(), 2);
        for v in samples.values() {
            assert_eq!(v.len() as i64, 5 * H / 15_000);
        }
        // Chunks are cut like the head's: 480 samples a range → 4 chunks of 120.
        let blk = Block::open(db.blocks()[0].dir()).unwrap();
        let s = blk
            .select(&[Matcher::equal("i", "1")], i64::MIN, i64::MAX)
            .unwrap();
        let sizes: Vec<usize> = s[0]
            .1
            .iter()
            .map(|c| XorIterator::new(&c.data).unwrap().num_samples())
            .collect();
        assert_eq!(sizes, vec![120, 120, 120, 120]);
        // Nothing left in staging.
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(STAGING_PREFIX)
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn out_of_order_samples_are_sorted_and_the_first_value_wins() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE));
        let a = series(db.head(), 1);
        // Descending, with repeats: 1000 distinct timestamps, each first seen with value t,
        // then again with another value.
        for t in (0..1000i64).rev() {
            bf.append(&a, t * 1000, t as f64);
        }
        for t in 0..1000i64 {
            bf.append(&a, t * 1000, -1.0);
        }
        // In order after the above, one identical repeat.
        bf.append(&a, 2_000_000, 5.0);
        bf.append(&a, 2_000_000, 5.0);
        let stats = bf.commit(&db).unwrap();
        assert_eq!(stats.samples, 1001);
        assert_eq!(stats.duplicates, 1001);
        assert_eq!(stats.blocks, 1);
        let (_, samples) = read_blocks(dir.path());
        assert_eq!(samples.len(), 1);
        let got = samples.values().next().unwrap();
        let mut want: Vec<(i64, u64)> = (0..1000i64)
            .map(|t| (t * 1000, (t as f64).to_bits()))
            .collect();
        want.push((2_000_000, 5.0f64.to_bits()));
        assert_eq!(got, &want);
    }

    #[test]
    fn passed_ranges_are_flushed_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        // About 3.5 ranges of 500 series.
        let budget = 1_000_000;
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE).max_buffered_bytes(budget));
        let all: Vec<Arc<MemSeries>> = (0..500).map(|i| series(db.head(), i)).collect();
        // Two days of scrapes every 15 s, time-ordered, drained every 10 scrapes.
        let mut peak = 0;
        let scrapes = 2 * 24 * H / 15_000;
        for k in 0..scrapes {
            for s in &all {
                bf.append(s, k * 15_000, (k % 7) as f64);
            }
            if k == RANGE / 15_000 - 1 {
                // One full range buffered: what a sample costs, overheads included.
                let per_sample = bf.buffered_bytes() as f64 / (500 * (k + 1)) as f64;
                eprintln!("buffered bytes per sample: {per_sample:.2}");
                assert!(per_sample < 3.0, "{per_sample}");
            }
            if k % 10 == 9 {
                peak = peak.max(bf.buffered_bytes());
                bf.flush_over_budget().unwrap();
                assert!(bf.buffered_bytes() <= 2 * budget, "{}", bf.buffered_bytes());
            }
        }
        // Within the budget plus one batch of 10 scrapes of 500 series.
        assert!(peak <= 2 * budget + 10 * 500 * 20, "peak {peak}");
        assert!(peak > budget, "the budget was never reached: {peak}");
        // Time-ordered input: one block per range, each written once the input passed it.
        // (At most the last two or three ranges wait for the commit.)
        assert!(bf.blocks_written() >= 24 - 3, "{}", bf.blocks_written());
        let stats = bf.commit(&db).unwrap();
        assert_eq!(stats.blocks, 24);
        assert_eq!(stats.samples, (scrapes * 500) as u64);
        let (ranges, _) = read_blocks(dir.path());
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlap: {w:?}");
        }
    }

    #[test]
    fn over_budget_unordered_input_writes_overlapping_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE).max_buffered_bytes(0));
        let a = series(db.head(), 1);
        let b = series(db.head(), 2);
        // Series after series (as `promtool tsdb dump` prints): each is written on its own.
        for s in [&a, &b] {
            for k in 0..100 {
                bf.append(s, k * 1000, 1.0);
            }
            bf.flush_over_budget().unwrap();
            assert_eq!(bf.buffered_bytes(), 0);
        }
        let stats = bf.commit(&db).unwrap();
        assert_eq!((stats.blocks, stats.samples), (2, 200));
        let merged = db.compact(&mut |_| {}).unwrap();
        assert_eq!(merged.merged.len(), 1);
        let (ranges, samples) = read_blocks(dir.path());
        assert_eq!(ranges, vec![(0, 99_001)]);
        assert_eq!(samples.values().map(Vec::len).sum::<usize>(), 200);
    }

    #[test]
    fn a_read_only_database_gets_no_block() {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open(dir.path(), Options::default()).unwrap());
        let db = Db::open(dir.path(), Options::default().read_only(true)).unwrap();
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE).max_buffered_bytes(0));
        let a = series(db.head(), 1);
        bf.append(&a, 0, 1.0);
        bf.append(&a, 10 * RANGE, 1.0);
        assert!(matches!(
            bf.flush_over_budget(),
            Err(BackfillError::Db(DbError::ReadOnly))
        ));
        drop(bf);
        // Only wal/, lock (and chunks_head/): no block, no staging directory.
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !matches!(n.as_str(), "wal" | "lock" | "chunks_head"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn an_uncommitted_backfill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE).max_buffered_bytes(0));
        let a = series(db.head(), 1);
        for k in 0..10 {
            bf.append(&a, k * RANGE, 1.0);
        }
        bf.append(&a, 100 * RANGE, 1.0);
        bf.flush_over_budget().unwrap();
        assert!(bf.blocks_written() > 0);
        drop(bf);
        // Only wal/, lock (and chunks_head/): no block, no staging directory.
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !matches!(n.as_str(), "wal" | "lock" | "chunks_head"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(db.blocks().is_empty());
    }

    #[test]
    fn appender_sets_old_samples_aside_only_with_backfill_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        db.head().set_min_valid_time(10 * H);
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let mut app = db.appender();
        assert!(app.append(&l, H, 1.0).is_err());
        assert_eq!(app.head_appender().out_of_bounds_pending(), 0);
        app.head_appender().set_backfill(true);
        app.append(&l, H, 1.0).unwrap();
        app.append(&l, 11 * H, 2.0).unwrap();
        assert_eq!(app.head_appender().out_of_bounds_pending(), 1);
        let mut bf = Backfill::new(&db, BackfillOptions::new(RANGE));
        bf.drain(app.head_appender()).unwrap();
        assert_eq!(app.head_appender().out_of_bounds_pending(), 0);
        let c = app.commit().unwrap();
        assert_eq!((c.appended, c.rejected.out_of_bounds), (1, 1));
        assert_eq!(bf.commit(&db).unwrap().samples, 1);
        let q = db.querier(0, 12 * H);
        let s = q.select(&[Matcher::equal("__name__", "m")]).unwrap();
        let got: Vec<(i64, f64)> = s[0].samples().collect();
        assert_eq!(got, vec![(H, 1.0), (11 * H, 2.0)]);
    }
}
