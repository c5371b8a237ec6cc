//! The database: a data directory in Prometheus' layout, opened by one process at a time.
//!
//! `Db` composes the head (in memory) with the write-ahead log (on disk) and owns the commit
//! protocol: a transaction's records are written to the WAL and terminated by a commit marker (see
//! [`crate::wal`]) before its samples reach the head, so when [`Appender::commit`] returns every sample
//! survives kill -9, and a crash before that leaves nothing of the transaction after recovery.
//!
//! With [`Options::out_of_order_window_ms`], out-of-order samples within the window are accepted
//! ([`crate::head::ooo`]) and logged, after the WAL commit and before they reach the head, to the
//! write-behind log `wbl/` (Prometheus' WBL; Prometheus 2.42 replays it from our directories).
//!
//! Readers of the WAL outside the head (the remote writer tails it) keep the segments they still
//! need from truncation with [`DbCore::hold_wal_segments`], up to [`Options::wal_hold_max_ms`].
//!
//! ```
//! use tsdb::{Db, Options, labels::{Labels, Matcher}};
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path(), Options::default()).unwrap();
//! let up = Labels::from_pairs(&[("__name__", "up"), ("job", "api")]);
//! let mut app = db.appender();
//! app.append(&up, 1_000, 1.0).unwrap();
//! app.append(&up, 16_000, 0.0).unwrap();
//! let stats = app.commit().unwrap();
//! assert_eq!(stats.appended, 2);
//!
//! let q = db.querier(0, 20_000);
//! let series = q.select(&[Matcher::equal("job", "api")]).unwrap();
//! let samples: Vec<(i64, f64)> = series[0].samples().collect();
//! assert_eq!(samples, vec![(1_000, 1.0), (16_000, 0.0)]);
//! assert_eq!(q.label_values("job"), vec!["api"]);
//! ```

use crate::block::{self, Block, BlockError};
use crate::compact;
use crate::head::{self, CommitStats, Head, MemSeries};
use crate::labels::{Labels, Matcher};
use crate::querier::{LiveBlocks, Querier};
use crate::wal::record::{self, RecordType, RefSample, Stone};
use crate::wal::{self, Compression, Wal, WalError, WalOptions, WalReader};
use std::collections::HashMap;
use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Prometheus' default (and minimum) block range: head chunks are cut on its boundaries.
pub const DEFAULT_BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

/// How long `Db::open` retries a held directory lock before reporting it locked.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Prometheus' default retention: 15 days.
pub const DEFAULT_RETENTION_MS: i64 = 15 * 24 * 3600 * 1000;

/// When a commit's WAL bytes are forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before every commit returns: a committed transaction survives power loss, not just
    /// a killed process. The default: ingest commits a whole document at a time, so one fsync per
    /// document costs little, and "commit returned" then means the same thing whatever happens.
    Commit,
    /// fdatasync at a commit when this long has passed since the last one (and on close). Commits
    /// survive kill -9 (the bytes are in the kernel) but the last interval may be lost on power loss.
    Interval(Duration),
    /// Never fsync (tests, throwaway data). Still survives kill -9.
    Never,
}

/// Database options, with Prometheus' defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// WAL record compression. Default none: on our benchmark snappy costs ~10% of ingest
    /// throughput for a WAL that is deleted after the head is compacted; Prometheus (default
    /// snappy) reads all three.
    pub wal_compression: Compression,
    /// WAL segment size (Prometheus: 128 MiB).
    pub wal_segment_size: usize,
    pub fsync: FsyncPolicy,
    /// The block range; head chunks are cut at its boundaries (Prometheus: 2 h).
    pub block_range_ms: i64,
    /// Parallel shards of an appender and of WAL replay; default: the number of cores.
    pub shards: usize,
    /// Open for reading only: the WAL is recovered and replayed but no new segment is started and
    /// commits fail. The directory lock is still taken, so no writer can change the WAL meanwhile.
    pub read_only: bool,
    /// Blocks whose data ends more than this before the newest block's end are deleted after
    /// compaction (Prometheus' `--storage.tsdb.retention.time`, default 15 days). 0 keeps all.
    pub retention_ms: i64,
    /// Oldest blocks are deleted while the blocks, WAL and head chunks together take more bytes
    /// than this (Prometheus' `--storage.tsdb.retention.size`). 0 (the default) means no limit.
    pub retention_bytes: u64,
    /// Compact in a background thread: when a commit leaves the head spanning more than 1.5
    /// block ranges, and every [`COMPACTION_INTERVAL`]. Default on; off, compaction runs only when
    /// called ([`DbCore::compact_head`]).
    pub background_compaction: bool,
    /// Prometheus' `out_of_order_time_window` (ms): samples older than their series' newest are
    /// accepted when within this of the head's newest sample ([`crate::head::ooo`]) and logged
    /// to the write-behind log `wbl/`. Default 0: off, as in Prometheus.
    pub out_of_order_window_ms: i64,
    /// How long WAL segments held for a reader outside the head ([`DbCore::hold_wal_segments`],
    /// the remote writer) survive truncation: a held segment whose last write is older than this
    /// is checkpointed and deleted anyway, so a receiver that stays down cannot grow the WAL (and
    /// the replay on the next open) without bound; its reader loses what it had not sent, as
    /// Prometheus' remote write does after a WAL truncation. Default [`DEFAULT_WAL_HOLD_MAX_MS`].
    pub wal_hold_max_ms: i64,
}

/// Default [`Options::wal_hold_max_ms`]: 6 hours, three block ranges — a receiver outage that
/// long loses nothing, where Prometheus 2.42 keeps only what the next head truncation spares.
pub const DEFAULT_WAL_HOLD_MAX_MS: i64 = 3 * DEFAULT_BLOCK_RANGE_MS;

impl Default for Options {
    fn default() -> Options {
        Options {
            wal_compression: Compression::None,
            wal_segment_size: wal::DEFAULT_SEGMENT_SIZE,
            fsync: FsyncPolicy::Commit,
            block_range_ms: DEFAULT_BLOCK_RANGE_MS,
            shards: rayon::current_num_threads(),
            read_only: false,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: 0,
            background_compaction: true,
            out_of_order_window_ms: 0,
            wal_hold_max_ms: DEFAULT_WAL_HOLD_MAX_MS,
        }
    }
}

impl Options {
    pub fn wal_compression(mut self, c: Compression) -> Options {
        self.wal_compression = c;
        self
    }
    pub fn fsync(mut self, f: FsyncPolicy) -> Options {
        self.fsync = f;
        self
    }
    pub fn wal_segment_size(mut self, bytes: usize) -> Options {
        self.wal_segment_size = bytes;
        self
    }
    pub fn shards(mut self, n: usize) -> Options {
        self.shards = n.max(1);
        self
    }
    pub fn retention_ms(mut self, ms: i64) -> Options {
        self.retention_ms = ms;
        self
    }
    pub fn retention_bytes(mut self, bytes: u64) -> Options {
        self.retention_bytes = bytes;
        self
    }
    pub fn background_compaction(mut self, on: bool) -> Options {
        self.background_compaction = on;
        self
    }
    pub fn out_of_order_window_ms(mut self, ms: i64) -> Options {
        self.out_of_order_window_ms = ms;
        self
    }

    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }
    pub fn wal_hold_max_ms(mut self, ms: i64) -> Options {
        self.wal_hold_max_ms = ms;
        self
    }
}

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the data directory is in use by another process (lock held)")]
    Locked { path: PathBuf },
    #[error("write-ahead log: {0}")]
    Wal(#[from] WalError),
    #[error("write-ahead log record at segment {segment} offset {offset}: {reason}")]
    Record {
        segment: u64,
        offset: u64,
        reason: String,
    },
    #[error("the database was opened read-only")]
    ReadOnly,
    #[error("{0}")]
    Block(#[from] BlockError),
    #[error("head chunks: {0}")]
    HeadChunks(#[from] head::HeadChunksError),
    #[error("a WAL replay worker panicked")]
    ReplayWorker,
    #[error("compaction: {0}")]
    Compact(Box<compact::CompactError>),
    #[error("a WAL write failed earlier ({0}); reopen the database")]
    Poisoned(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What opening the directory found.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Warnings to show the user (a torn WAL tail that was truncated, skipped record types).
    pub warnings: Vec<String>,
    pub replayed_series: u64,
    pub replayed_samples: u64,
    /// Samples in the WAL that the head rejected on replay (out of order or duplicate).
    pub replay_rejected: u64,
    /// Samples referring to a series no series record defined.
    pub unknown_series_samples: u64,
    /// WAL samples skipped because a block already holds their time range.
    pub replay_in_blocks: u64,
    /// Blocks opened.
    pub blocks: usize,
    /// Deletion intervals replayed into the head's tombstones.
    pub replayed_tombstones: u64,
    /// Completed chunks mapped back from `chunks_head/` and attached to their series.
    pub mapped_chunks: u64,
    /// Chunks in `chunks_head/` of series no WAL series record defined (dropped).
    pub mapped_chunks_dropped: u64,
    /// WAL samples skipped because a mapped chunk of their series holds them.
    pub replay_in_mapped_chunks: u64,
    /// Out-of-order samples replayed from the write-behind log `wbl/` into out-of-order buffers.
    pub replayed_ooo_samples: u64,
    pub replay_seconds: f64,
}

/// What [`DbCore::delete`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteStats {
    /// Distinct series (label sets) that got a deletion interval in the head or a block.
    pub series: u64,
    /// Head series that got a deletion interval (logged to the WAL).
    pub head_series: u64,
    /// Blocks whose tombstones were rewritten, oldest first, with how many of their series got an
    /// interval.
    pub blocks: Vec<(block::Ulid, u64)>,
}

struct WalState {
    wal: Wal,
    last_sync: Instant,
    /// Set when a write failed: the WAL may end in a partial commit, so no later commit may
    /// follow it in this process (recovery truncates it on the next open).
    failed: Option<String>,
    /// The write-behind log `wbl/` (out-of-order samples), when the out-of-order window is on or
    /// the directory has one.
    wbl: Option<Wal>,
    wbl_last_sync: Instant,
}

/// An open data directory. Its state lives in a [`DbCore`] shared with the background compaction
/// thread; every method of `DbCore` is called on the `Db` (`Deref`). Dropping the `Db` stops the
/// thread (waiting for a compaction in progress to finish), syncs the WAL and releases the lock.
pub struct Db {
    core: Arc<DbCore>,
    background: Option<Background>,
}

/// The state of an open data directory (see [`Db`]).
pub struct DbCore {
    dir: PathBuf,
    opts: Options,
    head: Head,
    /// `None` when opened read-only.
    wal: Option<Mutex<WalState>>,
    /// Persistent blocks, oldest first.
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Serializes compactions.
    compacting: Mutex<()>,
    report: OpenReport,
    /// Compactions run and failed, the last failure (see [`DbCore::compaction_status`]).
    compaction: Mutex<CompactionStatus>,
    /// Incremented after compaction hands a head range over to a new block and before the head
    /// drops it: a querier that saw an older epoch re-reads the block list (see [`Querier`]).
    epoch: AtomicU64,
    /// Wakes the background compaction thread (commits do when the head becomes compactable).
    signal: Arc<(Mutex<Wake>, Condvar)>,
    /// First WAL segment each outside reader still needs, by reader name (see
    /// [`DbCore::hold_wal_segments`]).
    wal_holds: Mutex<HashMap<String, u64>>,
    /// Samples committed since open, and rejected at commit (see [`DbCore::appended_totals`]).
    appended_total: AtomicU64,
    rejected_total: AtomicU64,
    /// Held (flock) for the lifetime of the `Db`.
    _lock: File,
}

impl std::ops::Deref for Db {
    type Target = DbCore;
    fn deref(&self) -> &DbCore {
        &self.core
    }
}

impl Db {
    /// Opens (creating if needed) the data directory `dir`: takes its lock, recovers and replays the
    /// WAL, and starts a new WAL segment. Unless [`Options::background_compaction`] is off (or the
    /// directory is opened read-only), a thread compacts the head and the blocks in the background.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db, DbError> {
        let background = opts.background_compaction && !opts.read_only;
        let core = Arc::new(DbCore::open(dir.as_ref(), opts)?);
        let background = if background {
            Some(Background::start(&core).map_err(io_err(&core.dir))?)
        } else {
            None
        };
        Ok(Db { core, background })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(b) = self.background.take() {
            b.stop();
        }
    }
}

/// How often the background thread looks for work when no commit wakes it (Prometheus: 1 min).
pub const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

/// Outcome of background compactions so far.
#[derive(Clone, Debug, Default)]
pub struct CompactionStatus {
    pub runs: u64,
    pub failed: u64,
    /// Blocks cut from the head.
    pub blocks_written: u64,
    /// Block merges (leveled, vertical, tombstone rewrites).
    pub blocks_merged: u64,
    pub last_error: Option<String>,
}

/// What one [`DbCore::compact`] did.
#[derive(Clone, Debug, Default)]
pub struct CompactReport {
    /// Blocks cut from the head.
    pub head_blocks: Vec<block::Ulid>,
    /// Each merge: its inputs and the block written (`None` when nothing remained).
    pub merged: Vec<(Vec<block::Ulid>, Option<block::Ulid>)>,
    pub deleted_by_retention: usize,
}

/// Progress of a compaction, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum CompactProgress {
    /// A merge starts: this many blocks holding this many series in all.
    Merging { blocks: usize, series: u64 },
    /// Input series merged so far out of the total.
    Series { done: u64, total: u64 },
}

struct Wake {
    stop: bool,
    pending: bool,
}

/// The background compaction thread.
struct Background {
    signal: Arc<(Mutex<Wake>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(core: &Arc<DbCore>) -> std::io::Result<Background> {
        let signal = Arc::clone(&core.signal);
        let (core, sig) = (Arc::clone(core), Arc::clone(&signal));
        let thread = std::thread::Builder::new()
            .name("tsdb-compact".into())
            .spawn(move || background_loop(&core, &sig))?;
        Ok(Background {
            signal,
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        let (m, cv) = &*self.signal;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            // A panic in the thread has nothing left to report to.
            let _ = t.join();
        }
    }
}

fn background_loop(core: &DbCore, signal: &(Mutex<Wake>, Condvar)) {
    let (m, cv) = signal;
    loop {
        {
            let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
            if !w.pending && !w.stop {
                w = cv
                    .wait_timeout(w, COMPACTION_INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if w.stop {
                return;
            }
            w.pending = false;
        }
        if core.compactable() {
            core.run_compaction();
        }
    }
}

impl DbCore {
    fn open(dir: &Path, opts: Options) -> Result<DbCore, DbError> {
        let dir = dir.to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // A lock held by another process fails after a short wait. The wait covers a process
        // that forked while holding our descriptor (between fork and exec a child shares the
        // lock until exec closes it), e.g. a program that reopens its database while spawning.
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => return Err(DbError::Locked { path: dir }),
                Err(TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
            }
        }
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(io_err(&wal_dir))?;

        let mut head = Head::new(opts.block_range_ms, opts.shards);
        head.set_out_of_order_window(opts.out_of_order_window_ms);
        let mut report = OpenReport::default();
        let blocks = open_blocks(&dir, opts.read_only, &mut report)?;
        // WAL samples in a block's range were compacted already (a crash came before the WAL
        // was truncated): replay skips them.
        if let Some(maxt) = blocks.iter().map(|b| b.meta().max_time).max() {
            head.set_min_valid_time(maxt);
        }
        report.blocks = blocks.len();
        let started = Instant::now();
        // Completed head chunks are mapped back first: replay attaches them to their series as the
        // WAL defines the series, and re-encodes only the samples after them.
        let (disk, loaded) = head::ChunkDiskMapper::open(
            &dir.join("chunks_head"),
            !opts.read_only,
            head.min_valid_time(),
        )?;
        report.warnings.extend(loaded.warnings);
        head.set_chunk_disk(disk);
        let recovered = wal::recover(&wal_dir)?;
        if let Some(t) = recovered.truncated {
            report.warnings.push(format!(
                "WAL segment {} truncated at offset {} ({} bytes of an incomplete or torn commit dropped)",
                t.segment, t.offset, t.bytes_dropped
            ));
        }
        let aliases = replay(&wal_dir, &head, opts.shards, loaded.chunks, &mut report)?;
        let wbl_dir = dir.join(WBL_DIR);
        let has_wbl = wbl_dir.is_dir();
        if has_wbl {
            let recovered = wal::recover(&wbl_dir)?;
            if let Some(t) = recovered.truncated {
                report.warnings.push(format!(
                    "WBL segment {} truncated at offset {} ({} bytes of an incomplete or torn commit dropped)",
                    t.segment, t.offset, t.bytes_dropped
                ));
            }
            replay_wbl(&wbl_dir, &head, &aliases, &mut report)?;
        }
        report.replay_seconds = started.elapsed().as_secs_f64();

        let wal = if opts.read_only {
            None
        } else {
            let wal = Wal::open(
                &wal_dir,
                WalOptions {
                    segment_size: opts.wal_segment_size,
                    compression: opts.wal_compression,
                },
            )?;
            let wbl = if has_wbl || opts.out_of_order_window_ms > 0 {
                fs::create_dir_all(&wbl_dir).map_err(io_err(&wbl_dir))?;
                Some(Wal::open(
                    &wbl_dir,
                    WalOptions {
                        segment_size: opts.wal_segment_size,
                        compression: opts.wal_compression,
                    },
                )?)
            } else {
                None
            };
            Some(Mutex::new(WalState {
                wal,
                last_sync: Instant::now(),
                failed: None,
                wbl,
                wbl_last_sync: Instant::now(),
            }))
        };
        Ok(DbCore {
            dir,
            opts,
            head,
            wal,
            blocks: RwLock::new(blocks),
            compacting: Mutex::new(()),
            report,
            compaction: Mutex::new(CompactionStatus::default()),
            epoch: AtomicU64::new(0),
            signal: Arc::new((
                Mutex::new(Wake {
                    stop: false,
                    pending: false,
                }),
                Condvar::new(),
            )),
            wal_holds: Mutex::new(HashMap::new()),
            appended_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Whether the head spans more than 1.5 block ranges (a head block is due).
    pub fn compactable(&self) -> bool {
        let range = self.opts.block_range_ms;
        match self.head.time_range() {
            Some((min, max)) => {
                let mint = min.max(self.head.min_valid_time());
                max.saturating_sub(mint) > range / 2 * 3
            }
            None => false,
        }
    }

    /// Runs [`DbCore::compact`], recording the outcome in the compaction status.
    fn run_compaction(&self) {
        let r = self.compact(&mut |_| {});
        let mut st = self.compaction.lock().unwrap_or_else(|e| e.into_inner());
        st.runs += 1;
        match r {
            Ok(report) => {
                st.blocks_written += report.head_blocks.len() as u64;
                st.blocks_merged += report.merged.len() as u64;
            }
            Err(e) => {
                st.failed += 1;
                st.last_error = Some(e.to_string());
            }
        }
    }

    /// Wakes the background compaction thread, if any (it also runs every
    /// [`COMPACTION_INTERVAL`]).
    pub fn trigger_compaction(&self) {
        let (m, cv) = &*self.signal;
        m.lock().unwrap_or_else(|e| e.into_inner()).pending = true;
        cv.notify_one();
    }

    /// Background compactions run so far, and the last error.
    pub fn compaction_status(&self) -> CompactionStatus {
        self.compaction
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Samples committed into the head since the directory was opened, and samples rejected by
    /// commits (out of order, duplicates, out of bounds) — Prometheus'
    /// `prometheus_tsdb_head_samples_appended_total` and its out-of-order counters.
    pub fn appended_totals(&self) -> (u64, u64) {
        (
            self.appended_total.load(Ordering::Relaxed),
            self.rejected_total.load(Ordering::Relaxed),
        )
    }

    /// What [`Db::open`] found (warnings to show, replay figures).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// A new transaction. Appenders on different threads proceed in parallel; commits are
    /// serialized by the WAL.
    pub fn appender(&self) -> Appender<'_> {
        Appender {
            db: self,
            inner: self.head.appender(),
        }
    }

    /// A querier over samples with `mint <= t <= maxt` (milliseconds, inclusive like Prometheus').
    pub fn querier(&self, mint: i64, maxt: i64) -> Querier<'_> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let blocks = self
            .blocks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|b| b.meta().max_time > mint && b.meta().min_time <= maxt)
            .cloned()
            .collect();
        Querier::new(&self.head, blocks, mint, maxt).refreshing(LiveBlocks {
            blocks: &self.blocks,
            epoch: &self.epoch,
            seen: epoch,
        })
    }

    /// The persistent blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds blocks already in the data directory (written by [`crate::backfill`]) to the block
    /// list. Blocks overlapping others are merged by the next compaction.
    pub fn add_blocks(&self, ulids: &[block::Ulid]) -> Result<(), DbError> {
        let mut opened = Vec::with_capacity(ulids.len());
        for u in ulids {
            opened.push(Arc::new(Block::open(&self.dir.join(u.to_string()))?));
        }
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        blocks.extend(opened);
        blocks.sort_by_key(|b| b.meta().min_time);
        Ok(())
    }

    /// Head compaction, as Prometheus does it: while the head spans more than 1.5 block ranges,
    /// its oldest range becomes a block; then the head drops that range and the WAL is truncated
    /// behind a checkpoint. Each step is crash-safe: the block is written under a temporary name and
    /// renamed; until the WAL is truncated a restart replays the WAL but skips what the block holds.
    /// Returns the blocks written.
    pub fn compact_head(&self) -> Result<Vec<block::Ulid>, DbError> {
        let written = self.compact_head_only(false)?;
        self.apply_retention()?;
        Ok(written)
    }

    /// Writes the whole head into blocks, every block range it touches, however recent (as a
    /// Prometheus snapshot with its head, or `promtool tsdb create-blocks-from`, does), and
    /// truncates the WAL. The head is then empty and its minimum valid time is the end of the last
    /// range written: later samples before that time are out of bounds for the head (`tsdbctl
    /// ingest` backfills them into blocks).
    pub fn flush_head(&self) -> Result<Vec<block::Ulid>, DbError> {
        self.compact_head_only(true)
    }

    fn compact_head_only(&self, everything: bool) -> Result<Vec<block::Ulid>, DbError> {
        let Some(wal) = &self.wal else {
            return Err(DbError::ReadOnly);
        };
        let _one = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let range = self.opts.block_range_ms;
        let mut written = Vec::new();
        while let Some((min, max)) = self.head.time_range() {
            let mint = min.max(self.head.min_valid_time()).div_euclid(range) * range;
            if if everything {
                max < mint
            } else {
                max - mint <= range / 2 * 3
            } {
                break;
            }
            let maxt = mint + range;
            if let Some(ulid) = crate::compact::write_head_block(&self.dir, &self.head, mint, maxt)?
            {
                let b = Block::open(&self.dir.join(ulid.to_string()))?;
                let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
                blocks.push(Arc::new(b));
                blocks.sort_by_key(|b| b.meta().min_time);
                written.push(ulid);
            }
            // From here on the block answers for [mint, maxt). Queriers that read the head after
            // the truncation see the new epoch and re-read the block list.
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.head.set_min_valid_time(maxt);
            self.truncate_head(maxt);
            self.truncate_wal(wal, maxt)?;
        }
        Ok(written)
    }

    /// Everything compaction does, as Prometheus' `db.Compact`: head compaction
    /// ([`DbCore::compact_head`]), then block compaction — overlapping blocks merged (vertical),
    /// blocks filling a larger range merged (leveled: 2h, 6h, 18h, ... up to 10% of retention or
    /// 31 days), blocks with many deletions rewritten — until the planner finds nothing to do; then
    /// retention. Merged inputs are deleted once their result is in place (a crash between the two
    /// leaves parents that the next open deletes). `progress` hears of each merge.
    pub fn compact(
        &self,
        progress: &mut dyn FnMut(CompactProgress),
    ) -> Result<CompactReport, DbError> {
        if self.wal.is_none() {
            return Err(DbError::ReadOnly);
        }
        let mut report = CompactReport {
            head_blocks: self.compact_head_only(false)?,
            ..CompactReport::default()
        };
        let _one = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let ranges =
            compact::default_block_ranges(self.opts.block_range_ms, self.opts.retention_ms);
        loop {
            // Archive blocks were set aside on purpose: merging would write their data back in
            // the compatible format.
            let blocks: Vec<Arc<Block>> = self
                .blocks()
                .into_iter()
                .filter(|b| !b.is_archive())
                .collect();
            let metas: Vec<block::BlockMeta> = blocks.iter().map(|b| b.meta().clone()).collect();
            let chosen = compact::plan(&metas, &ranges);
            if chosen.is_empty() {
                break;
            }
            let inputs: Vec<Arc<Block>> = blocks
                .into_iter()
                .filter(|b| chosen.contains(&b.meta().ulid))
                .collect();
            progress(CompactProgress::Merging {
                blocks: inputs.len(),
                series: inputs.iter().map(|b| b.meta().stats.num_series).sum(),
            });
            let merged = compact::merge_blocks(&self.dir, &inputs, &mut |done, total| {
                progress(CompactProgress::Series { done, total })
            })?;
            self.replace_blocks(&chosen, merged)?;
            report.merged.push((chosen, merged));
        }
        drop(_one);
        report.deleted_by_retention = self.apply_retention()?;
        Ok(report)
    }

    /// Rewrites every block that has tombstones without its deleted data (Prometheus'
    /// `CleanTombstones`); a block whose every sample was deleted is removed. Returns the
    /// (old, new) pairs.
    pub fn clean_tombstones(
        &self,
        progress: &mut dyn FnMut(CompactProgress),
    ) -> Result<Vec<(block::Ulid, Option<block::Ulid>)>, DbError> {
        if self.wal.is_none() {
            return Err(DbError::ReadOnly);
        }
        let _one = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for b in self.blocks() {
            // An archive block keeps its tombstones (applied on read): rewriting it here would
            // write it back in the compatible format.
            if b.tombstones().is_empty() || b.is_archive() {
                continue;
            }
            progress(CompactProgress::Merging {
                blocks: 1,
                series: b.meta().stats.num_series,
            });
            let old = b.meta().ulid;
            // As Prometheus' `CleanTombstones`: a level-1 block of its own, the old one its parent.
            let new = compact::merge_blocks_as(
                &self.dir,
                std::slice::from_ref(&b),
                compact::Lineage::Rewritten,
                &mut |done, total| progress(CompactProgress::Series { done, total }),
            )?;
            self.replace_blocks(&[old], new)?;
            out.push((old, new));
        }
        Ok(out)
    }

    /// Puts block `new` (already written) in place of `old`: queriers from now on see the new
    /// one; the old directories are deleted (queriers still holding them keep their mappings).
    fn replace_blocks(&self, old: &[block::Ulid], new: Option<block::Ulid>) -> Result<(), DbError> {
        let opened = match new {
            Some(u) => Some(Arc::new(Block::open(&self.dir.join(u.to_string()))?)),
            None => None,
        };
        let removed: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
            let (removed, kept): (Vec<_>, Vec<_>) =
                blocks.drain(..).partition(|b| old.contains(&b.meta().ulid));
            *blocks = kept;
            blocks.extend(opened);
            blocks.sort_by_key(|b| b.meta().min_time);
            removed
        };
        for b in &removed {
            delete_block_dir(b.dir())?;
        }
        Ok(())
    }

    /// Deletes blocks beyond the retention time (Prometheus' `beyondTimeRetention`: blocks whose end
    /// lies more than the retention before the newest block's end), then, oldest first, blocks
    /// while the directory (blocks, WAL, head chunks) is larger than the size retention
    /// (`beyondSizeRetention`). A block is first renamed to `ULID.tmp-for-deletion`, so a crash
    /// halfway leaves garbage that the next open removes, never a half-deleted block. Returns how
    /// many were deleted.
    pub fn apply_retention(&self) -> Result<usize, DbError> {
        if self.opts.read_only {
            return Ok(0);
        }
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        let mut expired = Vec::new();
        if self.opts.retention_ms > 0 {
            if let Some(newest) = blocks.iter().map(|b| b.meta().max_time).max() {
                let horizon = newest.saturating_sub(self.opts.retention_ms);
                let (gone, kept): (Vec<_>, Vec<_>) =
                    blocks.drain(..).partition(|b| b.meta().max_time <= horizon);
                *blocks = kept;
                expired.extend(gone);
            }
        }
        if self.opts.retention_bytes > 0 {
            let mut total = dir_size(&self.dir.join("wal"))
                + dir_size(&self.dir.join("chunks_head"))
                + dir_size(&self.dir.join(WBL_DIR));
            let sizes: Vec<u64> = blocks.iter().map(|b| dir_size(b.dir())).collect();
            total += sizes.iter().sum::<u64>();
            // Oldest first (the list is sorted by min time).
            let mut n = 0;
            while total > self.opts.retention_bytes && n < blocks.len() {
                total -= sizes[n];
                n += 1;
            }
            expired.extend(blocks.drain(..n));
        }
        drop(blocks);
        for b in &expired {
            delete_block_dir(b.dir())?;
        }
        Ok(expired.len())
    }

    /// Deletes the samples in the closed range `[mint, maxt]` of the series the matchers select
    /// (Prometheus' `DB.Delete`; its admin API's `delete_series` calls it once per `match[]`, with
    /// the range defaulting to all time). No matchers select nothing.
    ///
    /// Each block overlapping the range gets tombstones ([`Block::delete`]: the `tombstones` file
    /// and meta.json replaced atomically) and is reopened in the block list. In the head, the
    /// matching series get the range clamped to their first and last sample as head tombstones,
    /// logged first to the WAL as a Prometheus tombstones record in a commit of its own, so a
    /// restart (ours or Prometheus') replays the deletion. Reads leave deleted samples out at once;
    /// compaction drops them for good (a head range becomes a block without them; merging blocks
    /// applies their tombstones). Holds the compaction lock throughout, so no compaction cuts a
    /// block from the head or merges blocks while intervals are being added.
    ///
    /// Not atomic across blocks and the head (neither is Prometheus'): an error or crash part-way
    /// leaves the deletion done in some of them; repeating the call completes it.
    pub fn delete(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<DeleteStats, DbError> {
        let Some(wal) = &self.wal else {
            return Err(DbError::ReadOnly);
        };
        let mut stats = DeleteStats::default();
        if mint > maxt || matchers.is_empty() {
            return Ok(stats);
        }
        let _one = self.compacting.lock().unwrap_or_else(|e| e.into_inner());
        let mut deleted: std::collections::HashSet<Labels> = std::collections::HashSet::new();
        for b in self.blocks() {
            let Some(d) = b.delete(matchers, mint, maxt)? else {
                continue;
            };
            stats
                .blocks
                .push((d.block.meta().ulid, d.series.len() as u64));
            deleted.extend(d.series);
            let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = blocks.iter_mut().find(|x| Arc::ptr_eq(x, &b)) {
                *slot = Arc::new(d.block);
            }
        }

        let mut w = wal.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &w.failed {
            return Err(DbError::Poisoned(f.clone()));
        }
        // Under the WAL lock, so the clamping sees the head as the WAL has it.
        let intervals = self.head.deletion_intervals(matchers, mint, maxt);
        if !intervals.is_empty() {
            let stones: Vec<Stone> = intervals
                .iter()
                .map(|&(series, iv)| Stone {
                    series,
                    mint: iv.mint,
                    maxt: iv.maxt,
                })
                .collect();
            let mut rec = Vec::new();
            record::encode_tombstones(&stones, &mut rec);
            let state = &mut *w;
            let written = log_sync(
                &mut state.wal,
                &[&rec],
                self.opts.fsync,
                &mut state.last_sync,
            );
            if let Err(e) = written {
                w.failed = Some(e.to_string());
                return Err(e.into());
            }
            for &(id, iv) in &intervals {
                self.head.add_tombstone(id, iv);
                if let Some(s) = self.head.series(id) {
                    deleted.insert(s.to_labels());
                }
            }
            stats.head_series = intervals.len() as u64;
        }
        drop(w);
        stats.series = deleted.len() as u64;
        Ok(stats)
    }

    /// Checkpoints the WAL segments before the current one, keeping series still in the head and
    /// samples from `mint` on, then deletes them (Prometheus' `truncateWAL`).
    fn truncate_wal(&self, wal: &Mutex<WalState>, mint: i64) -> Result<(), DbError> {
        let to = {
            let mut w = wal.lock().unwrap_or_else(|e| e.into_inner());
            w.wal.roll_segment()?;
            w.wal.segment().saturating_sub(1)
        };
        let wal_dir = self.dir.join("wal");
        let head = &self.head;
        if let Some(to) = self.wal_truncation_point(&wal_dir, to)? {
            wal::checkpoint(
                &wal_dir,
                to,
                &|id| head.series(id).is_some(),
                mint,
                self.opts.wal_compression,
            )?;
            wal::truncate(&wal_dir, to)?;
        }
        // The write-behind log: Prometheus 2.42 replays its segments only (a checkpoint directory
        // there is ignored), so instead of a checkpoint the out-of-order samples still in the head
        // (all from `mint` on, after head truncation) are logged again into a fresh segment and
        // the older segments are deleted. Commits wait meanwhile; a crash before the deletion
        // replays samples twice, which the buffers' duplicate rule absorbs.
        let mut w = wal.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wbl) = &mut w.wbl {
            wbl.roll_segment()?;
            let first_kept = wbl.segment();
            let mut buf: Vec<RefSample> = Vec::new();
            let mut rec = Vec::new();
            for series in head.all_series() {
                let c = series.lock();
                buf.extend(c.ooo_samples().iter().map(|&(t, v)| RefSample {
                    series: series.id,
                    t,
                    v,
                }));
                drop(c);
                if buf.len() >= 64 * 1024 {
                    rec.clear();
                    record::encode_samples(&buf, &mut rec);
                    buf.clear();
                    wbl.log(&rec)?;
                }
            }
            if !buf.is_empty() {
                rec.clear();
                record::encode_samples(&buf, &mut rec);
                wbl.log(&rec)?;
            }
            wbl.log_commit(&[])?;
            wbl.sync()?;
            w.wbl_last_sync = Instant::now();
            if first_kept > 0 {
                wal::truncate(&self.dir.join(WBL_DIR), first_kept - 1)?;
            }
        }
        Ok(())
    }

    /// Keeps WAL segments from `first_needed` on from truncation for the reader `name` (a
    /// remote-write queue tailing the WAL), replacing its earlier hold. Compaction checkpoints
    /// only the segments before the lowest hold, except segments older than
    /// [`Options::wal_hold_max_ms`] (the cap on a reader that never catches up).
    pub fn hold_wal_segments(&self, name: &str, first_needed: u64) {
        let mut h = self.wal_holds.lock().unwrap_or_else(|e| e.into_inner());
        h.insert(name.to_string(), first_needed);
    }

    /// Drops the hold of reader `name`.
    pub fn release_wal_segments(&self, name: &str) {
        let mut h = self.wal_holds.lock().unwrap_or_else(|e| e.into_inner());
        h.remove(name);
    }

    /// The last segment head truncation may checkpoint and delete, given that it wants `to`:
    /// `to`, lowered below the lowest hold except for held segments last written more than
    /// [`Options::wal_hold_max_ms`] ago; `None` when that leaves nothing new to checkpoint.
    fn wal_truncation_point(&self, wal_dir: &Path, to: u64) -> Result<Option<u64>, DbError> {
        let floor = {
            let h = self.wal_holds.lock().unwrap_or_else(|e| e.into_inner());
            h.values().copied().min()
        };
        let mut limit = match floor {
            Some(f) if f <= to => f,
            _ => return Ok(Some(to)),
        };
        let cutoff = std::time::SystemTime::now().checked_sub(Duration::from_millis(
            self.opts.wal_hold_max_ms.max(0) as u64,
        ));
        for seg in wal::segments(wal_dir)? {
            if seg < limit || seg > to {
                continue;
            }
            let path = wal_dir.join(format!("{seg:08}"));
            let modified = fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(io_err(&path))?;
            if cutoff.is_some_and(|c| modified < c) {
                limit = seg + 1;
            } else {
                break;
            }
        }
        let Some(to) = limit.checked_sub(1) else {
            return Ok(None);
        };
        let done = wal::last_checkpoint(wal_dir)?.is_some_and(|c| c.1 >= to);
        let any = wal::segments(wal_dir)?.first().is_some_and(|&s| s <= to);
        Ok((any && !done).then_some(to))
    }

    /// Forces every committed WAL byte to stable storage.
    pub fn sync(&self) -> Result<(), DbError> {
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        let mut w = wal.lock().unwrap_or_else(|e| e.into_inner());
        w.wal.sync()?;
        w.last_sync = Instant::now();
        if let Some(wbl) = &mut w.wbl {
            wbl.sync()?;
            w.wbl_last_sync = Instant::now();
        }
        Ok(())
    }

    /// Drops head data before `mint` (written to a block by compaction) while no commit runs.
    pub fn truncate_head(&self, mint: i64) -> head::TruncateStats {
        let _commits = self
            .wal
            .as_ref()
            .map(|w| w.lock().unwrap_or_else(|e| e.into_inner()));
        self.head.truncate(mint)
    }

    fn commit(&self, mut app: head::Appender<'_>) -> Result<CommitStats, DbError> {
        if app.staged() == 0 {
            return Ok(app.apply());
        }
        let Some(wal) = &self.wal else {
            return Err(DbError::ReadOnly);
        };
        let mut w = wal.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &w.failed {
            return Err(DbError::Poisoned(f.clone()));
        }
        app.revalidate();
        let state = &mut *w;
        let mut written = write_commit(&mut state.wal, &app, self.opts.fsync, &mut state.last_sync);
        if written.is_ok() && app.staged_out_of_order() > 0 {
            // After the WAL, as Prometheus' `headAppender.log`: the series records are there.
            written = match &mut state.wbl {
                Some(wbl) => write_ooo_commit(wbl, &app, self.opts.fsync, &mut state.wbl_last_sync),
                None => Err(WalError::Io {
                    path: self.dir.join(WBL_DIR),
                    source: std::io::Error::other("out-of-order samples staged without a WBL"),
                }),
            };
        }
        if let Err(e) = written {
            w.failed = Some(e.to_string());
            return Err(e.into());
        }
        // Applied under the WAL lock, so that the head sees commits in WAL order and a replay
        // rebuilds exactly this head.
        let stats = app.apply();
        drop(w);
        self.appended_total
            .fetch_add(stats.appended, Ordering::Relaxed);
        self.rejected_total
            .fetch_add(stats.rejected.total(), Ordering::Relaxed);
        if self.compactable() {
            self.trigger_compaction();
        }
        Ok(stats)
    }
}

fn write_ooo_commit(
    wbl: &mut Wal,
    app: &head::Appender<'_>,
    fsync: FsyncPolicy,
    last_sync: &mut Instant,
) -> Result<(), WalError> {
    app.encode_ooo_records(&mut |rec: &[u8]| wbl.log(rec))?;
    log_sync(wbl, &[], fsync, last_sync)
}

fn write_commit(
    wal: &mut Wal,
    app: &head::Appender<'_>,
    fsync: FsyncPolicy,
    last_sync: &mut Instant,
) -> Result<(), WalError> {
    app.encode_records(&mut |rec: &[u8]| wal.log(rec))?;
    log_sync(wal, &[], fsync, last_sync)
}

/// Logs `records` as one commit and fsyncs as the policy says.
fn log_sync(
    wal: &mut Wal,
    records: &[&[u8]],
    fsync: FsyncPolicy,
    last_sync: &mut Instant,
) -> Result<(), WalError> {
    wal.log_commit(records)?;
    let sync = match fsync {
        FsyncPolicy::Commit => true,
        FsyncPolicy::Interval(d) => last_sync.elapsed() >= d,
        FsyncPolicy::Never => false,
    };
    if sync {
        wal.sync()?;
        *last_sync = Instant::now();
    }
    Ok(())
}

impl Drop for DbCore {
    fn drop(&mut self) {
        if let (Some(wal), true) = (&mut self.wal, self.opts.fsync != FsyncPolicy::Never) {
            let w = wal.get_mut().unwrap_or_else(|e| e.into_inner());
            // Nothing to report to at drop; `Db::sync` is the checked way.
            let _ = w.wal.sync();
            if let Some(wbl) = &mut w.wbl {
                let _ = wbl.sync();
            }
        }
    }
}

/// A transaction: samples staged by [`Appender::append`] become visible and durable together at
/// [`Appender::commit`], or not at all.
pub struct Appender<'db> {
    db: &'db DbCore,
    inner: head::Appender<'db>,
}

impl<'db> Appender<'db> {
    /// Stages a sample. A sample older than its series' newest, or at the same time with another
    /// value, is rejected here (and counted in the commit's statistics); the same time and value is
    /// accepted as a no-op. Returns the series id.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<u64, head::AppendError> {
        self.inner.append(labels, t, v)
    }

    /// Stages a sample for a series by the id an earlier `append` returned.
    pub fn append_id(&mut self, id: u64, t: i64, v: f64) -> Result<(), head::AppendError> {
        self.inner.append_id(id, t, v)
    }

    /// Stages a sample for a series held by the caller (see [`head::Appender::append_series`]).
    pub fn append_series(
        &mut self,
        series: &Arc<head::MemSeries>,
        t: i64,
        v: f64,
    ) -> Result<(), head::AppendError> {
        self.inner.append_series(series, t, v)
    }

    /// Makes room for about `series` series (see [`head::Appender::reserve`]).
    pub fn reserve(&mut self, series: usize) {
        self.inner.reserve(series)
    }

    /// The head transaction, for parallel staging (see [`head::Appender::shards_mut`]).
    pub fn head_appender(&mut self) -> &mut head::Appender<'db> {
        &mut self.inner
    }

    /// Writes the transaction to the WAL (with a commit marker, fsynced per [`FsyncPolicy`]), then
    /// makes it visible. When this returns `Ok`, the samples survive kill -9.
    pub fn commit(self) -> Result<CommitStats, DbError> {
        self.db.commit(self.inner)
    }

    /// Discards the transaction.
    pub fn rollback(self) {
        self.inner.rollback()
    }
}

// `Db` is shared between threads (behind an `Arc` or by reference): checked at compile time.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Db>();
};

/// Opens the blocks of a data directory: directories named by a ULID. Leftovers of interrupted
/// writes (`*.tmp-for-creation`, `*.tmp-for-deletion`) are removed; a block that fails to open is
/// reported and left in place, excluded from queries.
fn open_blocks(
    dir: &Path,
    read_only: bool,
    report: &mut OpenReport,
) -> Result<Vec<Arc<Block>>, DbError> {
    let mut blocks = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
            if !read_only {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
            continue;
        }
        if name.parse::<block::Ulid>().is_err() {
            continue;
        }
        match Block::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => report.warnings.push(format!(
                "{e} (block left in place and excluded from queries)"
            )),
        }
    }
    if !read_only {
        // A crash after a merged block was written but before its inputs were deleted leaves
        // both: the inputs (parents of a block that opened fine) go now, as do blocks compaction
        // marked deletable.
        let metas: Vec<block::BlockMeta> = blocks.iter().map(|b| b.meta().clone()).collect();
        let parents = compact::deletable_parents(&metas);
        let (doomed, kept): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .partition(|b| parents.contains(&b.meta().ulid) || b.meta().compaction.deletable);
        for b in &doomed {
            delete_block_dir(b.dir())?;
        }
        blocks = kept;
    }
    blocks.sort_by_key(|b| b.meta().min_time);
    Ok(blocks)
}

/// Batches of samples sent to a replay worker.
const REPLAY_BATCH: usize = 4096;

/// Replays the WAL into the head: one thread reads and decodes records and creates series; `shards`
/// workers append samples, each owning the series with `id % shards == i`, so every series receives
/// its samples in WAL order.
fn replay(
    wal_dir: &Path,
    head: &Head,
    shards: usize,
    mut mapped: HashMap<u64, Vec<head::chunks_disk::MappedChunk>>,
    report: &mut OpenReport,
) -> Result<HashMap<u64, u64>, DbError> {
    // The latest checkpoint first, then the segments after it.
    wal::remove_temporary_checkpoints(wal_dir)?;
    let mut readers = Vec::new();
    let first_segment = match wal::last_checkpoint(wal_dir)? {
        Some((dir, idx)) => {
            readers.push(WalReader::open(&dir)?);
            idx + 1
        }
        None => 0,
    };
    readers.push(WalReader::open_from(wal_dir, first_segment, None)?);
    let shards = shards.max(1);
    // WAL ids of series that duplicate an earlier series' labels → the id in the head.
    let mut aliases: HashMap<u64, u64> = HashMap::new();
    let mut skipped: HashMap<String, u64> = HashMap::new();
    let mut samples_buf: Vec<RefSample> = Vec::new();
    let mut stones_buf: Vec<Stone> = Vec::new();
    let mut unknown_stones = 0u64;

    let results = std::thread::scope(|scope| -> Result<Vec<ReplayStats>, DbError> {
        let mut senders = Vec::with_capacity(shards);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<RefSample>>();
        let mut workers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = mpsc::sync_channel::<Vec<RefSample>>(4);
            senders.push(tx);
            let recycle = recycle_tx.clone();
            workers.push(scope.spawn(move || replay_worker(head, rx, recycle)));
        }
        drop(recycle_tx);
        let mut batches: Vec<Vec<RefSample>> = (0..shards).map(|_| Vec::new()).collect();
        let read_result = (|| -> Result<(), DbError> {
            for reader in &mut readers {
                while let Some(rec) = reader.next_record()? {
                    let decoded: Result<(), record::RecordError> = match record::record_type(rec) {
                        RecordType::Series => {
                            let mut scratch = Vec::new();
                            record::for_each_series(rec, &mut scratch, |id, labels| {
                                let s = if head::is_canonical(labels) {
                                    head.create_with_id_pairs(id, labels).0
                                } else {
                                    // A foreign WAL with unsorted or empty labels: normalize.
                                    let owned = Labels::new(
                                        labels
                                            .iter()
                                            .map(|(n, v)| crate::labels::Label::new(*n, *v))
                                            .collect(),
                                    );
                                    head.create_with_id(id, &owned).0
                                };
                                if s.id != id {
                                    aliases.insert(id, s.id);
                                } else if let Some(chunks) = mapped.remove(&id) {
                                    // Before any of the series' samples reach a worker.
                                    s.lock().attach_mapped(&chunks);
                                    if let (Some(f), Some(l)) = (chunks.first(), chunks.last()) {
                                        head.update_time_range(f.min_t, l.max_t);
                                    }
                                    report.mapped_chunks += chunks.len() as u64;
                                }
                                report.replayed_series += 1;
                            })
                        }
                        RecordType::Samples => record::decode_samples(rec, &mut samples_buf),
                        RecordType::Tombstones => {
                            stones_buf.clear();
                            let r = record::decode_tombstones(rec, &mut stones_buf);
                            // As Prometheus' `loadWAL`: intervals wholly before the head's valid
                            // range are moot, those of unknown series are counted and dropped.
                            // Tombstones apply to whatever samples they cover, whenever those
                            // were appended, so the workers' progress does not matter.
                            let min_valid = head.min_valid_time();
                            for st in stones_buf.iter().filter(|st| st.maxt >= min_valid) {
                                let id = aliases.get(&st.series).copied().unwrap_or(st.series);
                                if head.series(id).is_none() {
                                    unknown_stones += 1;
                                    continue;
                                }
                                let iv = block::Interval {
                                    mint: st.mint,
                                    maxt: st.maxt,
                                };
                                head.add_tombstone(id, iv);
                                report.replayed_tombstones += 1;
                            }
                            r
                        }
                        other => {
                            *skipped.entry(format!("{other:?}")).or_default() += 1;
                            Ok(())
                        }
                    };
                    if let Err(e) = decoded {
                        let (segment, offset) = reader.position();
                        return Err(DbError::Record {
                            segment,
                            offset,
                            reason: e.to_string(),
                        });
                    }
                    for s in samples_buf.drain(..) {
                        let mut s = s;
                        if !aliases.is_empty() {
                            if let Some(&real) = aliases.get(&s.series) {
                                s.series = real;
                            }
                        }
                        let i = (s.series as usize) % shards;
                        let b = &mut batches[i];
                        if b.capacity() == 0 {
                            *b = recycle_rx
                                .try_recv()
                                .unwrap_or_else(|_| Vec::with_capacity(REPLAY_BATCH));
                        }
                        b.push(s);
                        if b.len() >= REPLAY_BATCH {
                            let full = std::mem::take(b);
                            // A worker only hangs up by panicking; its join reports that.
                            let _ = senders[i].send(full);
                        }
                    }
                }
            }
            Ok(())
        })();
        for (i, b) in batches.into_iter().enumerate() {
            if !b.is_empty() {
                let _ = senders[i].send(b);
            }
        }
        drop(senders);
        let mut out = Vec::with_capacity(shards);
        for w in workers {
            out.push(w.join().map_err(|_| DbError::ReplayWorker)?);
        }
        read_result?;
        Ok(out)
    })?;
    // Open chunks grew by doubling while replaying; give the slack back (they grow again as
    // samples arrive, one chunk at a time).
    for s in head.all_series() {
        if let Some(h) = &mut s.lock().head {
            h.app.shrink_to_fit();
        }
    }
    report.mapped_chunks_dropped = mapped.values().map(|c| c.len() as u64).sum();
    for r in results {
        report.replay_in_mapped_chunks += r.in_mapped;
        report.replayed_samples += r.appended;
        report.replay_rejected += r.rejected;
        report.unknown_series_samples += r.unknown;
        report.replay_in_blocks += r.in_blocks;
    }
    // Our commit markers and segment headers never get here (the reader skips them). What does is
    // a Prometheus WAL's other records: exemplars, metadata, histograms — not applied yet, so say
    // so.
    let mut skipped: Vec<(String, u64)> = skipped.into_iter().collect();
    skipped.sort();
    for (kind, n) in skipped {
        report.warnings.push(format!(
            "WAL replay skipped {n} {kind} record(s) (not supported yet)"
        ));
    }
    if unknown_stones > 0 {
        report.warnings.push(format!(
            "WAL replay dropped {unknown_stones} deletion interval(s) of series with no series record"
        ));
    }
    if report.unknown_series_samples > 0 {
        report.warnings.push(format!(
            "WAL replay dropped {} sample(s) of series with no series record",
            report.unknown_series_samples
        ));
    }
    Ok(aliases)
}

/// The write-behind log's directory (Prometheus' `wlog.WblDirName`).
pub const WBL_DIR: &str = "wbl";

/// Replays the write-behind log (its checkpoint, then its segments) into the series' out-of-order
/// buffers, after the WAL defined the series. Samples in a block's range are skipped (compacted
/// already); the window is not checked again (it was when the samples were committed).
fn replay_wbl(
    wbl_dir: &Path,
    head: &Head,
    aliases: &HashMap<u64, u64>,
    report: &mut OpenReport,
) -> Result<(), DbError> {
    wal::remove_temporary_checkpoints(wbl_dir)?;
    let mut readers = Vec::new();
    let first_segment = match wal::last_checkpoint(wbl_dir)? {
        Some((dir, idx)) => {
            readers.push(WalReader::open(&dir)?);
            idx + 1
        }
        None => 0,
    };
    readers.push(WalReader::open_from(wbl_dir, first_segment, None)?);
    let min_valid = head.min_valid_time();
    let mut samples: Vec<RefSample> = Vec::new();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut unknown = 0u64;
    for reader in &mut readers {
        while let Some(rec) = reader.next_record()? {
            if record::record_type(rec) != RecordType::Samples {
                continue;
            }
            samples.clear();
            if let Err(e) = record::decode_samples(rec, &mut samples) {
                let (segment, offset) = reader.position();
                return Err(DbError::Record {
                    segment,
                    offset,
                    reason: format!("write-behind log: {e}"),
                });
            }
            for s in &samples {
                let id = aliases.get(&s.series).copied().unwrap_or(s.series);
                if s.t < min_valid {
                    report.replay_in_blocks += 1;
                    continue;
                }
                let Some(series) = head.series(id) else {
                    unknown += 1;
                    continue;
                };
                if series.lock().insert_ooo(s.t, s.v) {
                    report.replayed_ooo_samples += 1;
                    min = min.min(s.t);
                    max = max.max(s.t);
                }
            }
        }
    }
    if min <= max {
        head.update_time_range(min, max);
    }
    if unknown > 0 {
        report.warnings.push(format!(
            "WBL replay dropped {unknown} out-of-order sample(s) of series with no series record"
        ));
    }
    Ok(())
}

#[derive(Default)]
struct ReplayStats {
    appended: u64,
    in_mapped: u64,
    rejected: u64,
    unknown: u64,
    in_blocks: u64,
}

fn replay_worker(
    head: &Head,
    rx: mpsc::Receiver<Vec<RefSample>>,
    recycle: mpsc::Sender<Vec<RefSample>>,
) -> ReplayStats {
    let mut stats = ReplayStats::default();
    let mut cache: HashMap<u64, Arc<MemSeries>, foldhash::fast::FixedState> = HashMap::default();
    let range = head.chunk_range();
    let min_valid = head.min_valid_time();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for mut batch in rx {
        let mut i = 0;
        while i < batch.len() {
            let id = batch[i].series;
            let series = match cache.get(&id) {
                Some(s) => s.clone(),
                None => match head.series(id) {
                    Some(s) => {
                        cache.insert(id, s.clone());
                        s
                    }
                    None => {
                        stats.unknown += 1;
                        i += 1;
                        continue;
                    }
                },
            };
            // Hold the series lock over the run of samples for the same series (our WAL writes
            // a transaction's samples series by series).
            let mut chunks = series.lock();
            let mapped_max = chunks.mapped_max_t();
            while i < batch.len() && batch[i].series == id {
                let s = batch[i];
                if s.t <= mapped_max {
                    // In a chunk mapped from chunks_head/ (Prometheus' mmMaxTime rule).
                    stats.in_mapped += 1;
                    i += 1;
                    continue;
                }
                match chunks.append_valid(s.t, s.v, range, min_valid) {
                    head::Check::Append => {
                        stats.appended += 1;
                        min = min.min(s.t);
                        max = max.max(s.t);
                    }
                    head::Check::NoOp => {}
                    // Already in a block (a crash between writing it and truncating the WAL).
                    head::Check::Reject(head::Reject::OutOfBounds) => stats.in_blocks += 1,
                    head::Check::Reject(_) => stats.rejected += 1,
                }
                i += 1;
            }
            head.persist(id, &mut chunks);
        }
        batch.clear();
        let _ = recycle.send(batch);
    }
    if min <= max {
        head.update_time_range(min, max);
    }
    stats
}

/// Deletes a block directory crash-safely: renamed to `ULID.tmp-for-deletion` first (which the next
/// open removes), so a crash never leaves a half-deleted block under a block's name.
fn delete_block_dir(dir: &Path) -> Result<(), DbError> {
    let mut doomed = dir.to_path_buf().into_os_string();
    doomed.push(".tmp-for-deletion");
    let doomed = PathBuf::from(doomed);
    fs::rename(dir, &doomed).map_err(io_err(dir))?;
    fs::remove_dir_all(&doomed).map_err(io_err(&doomed))
}

/// Bytes of the files under `dir` (0 if it does not exist).
/// Bytes of the files under `dir`, recursively (0 for what cannot be read): the size retention,
/// `tsdbctl inspect` and `/metrics` report.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl From<compact::CompactError> for DbError {
    fn from(e: compact::CompactError) -> DbError {
        DbError::Compact(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Matcher;

    fn labels(i: u32) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())])
    }

    fn samples(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
        db.querier(i64::MIN, i64::MAX)
            .select(&[Matcher::equal("__name__", "m")])
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s.labels().to_string(),
                    s.samples().map(|(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect()
    }

    fn commit_batch(db: &Db, k: i64) {
        let mut app = db.appender();
        for i in 0..50 {
            app.append(&labels(i), k * 1000, (k * 100 + i as i64) as f64)
                .unwrap();
        }
        app.commit().unwrap();
    }

    #[test]
    fn reopen_replays_exactly_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let db = Db::open(dir.path(), Options::default()).unwrap();
            for k in 0..10 {
                commit_batch(&db, k);
            }
            let mut app = db.appender();
            app.append(&labels(0), 99_000, 1.0).unwrap();
            app.rollback();
            samples(&db)
        };
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(samples(&db), before);
        assert_eq!(db.open_report().replayed_samples, 500);
        assert!(db.open_report().warnings.is_empty());
        // New series ids continue after the replayed ones.
        let mut app = db.appender();
        let id = app.append(&labels(1000), 1, 1.0).unwrap();
        assert!(id > 50);
    }

    #[test]
    fn a_torn_last_commit_is_dropped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path(), Options::default()).unwrap();
            for k in 0..5 {
                commit_batch(&db, k);
            }
        }
        // Cut the segment inside its last commit, as a crash mid-write would.
        let seg = dir.path().join("wal").join("00000000");
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 100).unwrap();
        drop(f);
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let w = &db.open_report().warnings;
        assert!(
            w.iter()
                .any(|w| w.contains("segment 0 truncated at offset")),
            "{w:?}"
        );
        let got = samples(&db);
        assert_eq!(got.len(), 50);
        assert!(
            got.iter().all(|(_, s)| s.len() == 4),
            "exactly 4 whole batches"
        );
    }

    #[test]
    fn read_only_refuses_commits_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open(dir.path(), Options::default()).unwrap());
        let segments = || std::fs::read_dir(dir.path().join("wal")).unwrap().count();
        let n = segments();
        let db = Db::open(dir.path(), Options::default().read_only(true)).unwrap();
        let mut app = db.appender();
        app.append(&labels(1), 1, 1.0).unwrap();
        assert!(matches!(app.commit(), Err(DbError::ReadOnly)));
        assert_eq!(segments(), n);
    }

    #[test]
    fn the_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _db = Db::open(dir.path(), Options::default()).unwrap();
        assert!(matches!(
            Db::open(dir.path(), Options::default()),
            Err(DbError::Locked { .. })
        ));
    }

    #[test]
    fn appenders_on_many_threads_commit_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
        std::thread::scope(|s| {
            for th in 0..4u32 {
                let db = &db;
                s.spawn(move || {
                    for k in 0..100i64 {
                        let mut app = db.appender();
                        for i in 0..10 {
                            app.append(&labels(th * 100 + i), k, k as f64).unwrap();
                        }
                        assert_eq!(app.commit().unwrap().appended, 10);
                    }
                });
            }
        });
        let got = samples(&db);
        assert_eq!(got.len(), 40);
        assert!(got.iter().all(|(_, s)| s.len() == 100));
        drop(db);
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(db.open_report().replayed_samples, 4000);
    }

    #[test]
    fn a_head_deletion_is_logged_as_a_prometheus_tombstones_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for k in 0..10 {
            commit_batch(&db, k);
        }
        let id = db.head().lookup(&labels(3)).unwrap().id;
        // Clamped to the series' samples, 0..=9000; other series untouched.
        let st = db
            .delete(&[Matcher::equal("i", "3")], 4_000, i64::MAX)
            .unwrap();
        assert_eq!((st.series, st.head_series, st.blocks.len()), (1, 1, 0));
        let got = samples(&db);
        assert_eq!(got[0].1.len(), 10);
        let s3 = got.iter().find(|(l, _)| l.contains("i=\"3\"")).unwrap();
        assert_eq!(
            s3.1.iter().map(|s| s.0).collect::<Vec<_>>(),
            [0, 1000, 2000, 3000]
        );
        // An inverted range or no matchers delete nothing and log nothing.
        assert_eq!(db.delete(&[], 0, 10_000).unwrap(), DeleteStats::default());
        let none = db.delete(&[Matcher::equal("i", "3")], 5, 4).unwrap();
        assert_eq!(none, DeleteStats::default());
        drop(db);

        let mut r = WalReader::open(&dir.path().join("wal")).unwrap();
        let mut stones = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            if record::record_type(rec) == RecordType::Tombstones {
                record::decode_tombstones(rec, &mut stones).unwrap();
            }
        }
        assert_eq!(
            stones,
            [Stone {
                series: id,
                mint: 4_000,
                maxt: 9_000
            }]
        );
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(db.open_report().replayed_tombstones, 1);
        assert_eq!(samples(&db), got);
    }

    #[test]
    fn replay_reads_the_checkpoint_then_the_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        {
            let db = Db::open(dir.path(), Options::default()).unwrap();
            for k in 0..5 {
                commit_batch(&db, k);
            }
        }
        let last = *wal::segments(&wal_dir).unwrap().last().unwrap();
        // Keep series 0..25 and samples from t = 2000 on.
        let stats =
            wal::checkpoint(&wal_dir, last, &|id| id <= 25, 2000, Compression::None).unwrap();
        assert_eq!(stats.series_kept, 25);
        wal::truncate(&wal_dir, last).unwrap();
        let before = {
            let db = Db::open(dir.path(), Options::default()).unwrap();
            let got = samples(&db);
            assert_eq!(got.len(), 25);
            assert!(got.iter().all(|(_, s)| s.len() == 3));
            commit_batch(&db, 7);
            samples(&db)
        };
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(samples(&db), before);
    }
    #[test]
    fn wal_holds_keep_segments_from_truncation_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let db = Db::open(
            dir.path(),
            Options::default()
                .background_compaction(false)
                .fsync(FsyncPolicy::Never),
        )
        .unwrap();
        let hour = 3_600_000;
        let l = labels(1);
        let append_at = |t: i64| {
            let mut app = db.appender();
            app.append(&l, t, 1.0).unwrap();
            app.commit().unwrap();
        };
        append_at(0);
        let held = db.wal.as_ref().unwrap().lock().unwrap().wal.segment();
        db.hold_wal_segments("reader", held);
        // Enough for head compaction (the head spans more than 1.5 block ranges); each
        // truncation rolls a segment.
        for h in 1..=8 {
            append_at(h * hour);
        }
        db.compact_head().unwrap();
        let segs = wal::segments(&wal_dir).unwrap();
        assert_eq!(segs.first(), Some(&held), "held segment kept: {segs:?}");
        assert!(wal::last_checkpoint(&wal_dir)
            .unwrap()
            .is_none_or(|c| c.1 < held));

        // Once released, the next truncation checkpoints past it.
        db.release_wal_segments("reader");
        for h in 9..=12 {
            append_at(h * hour);
        }
        db.compact_head().unwrap();
        assert!(wal::segments(&wal_dir).unwrap()[0] > held);
    }

    #[test]
    fn a_wal_hold_older_than_the_cap_does_not_keep_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let db = Db::open(
            dir.path(),
            Options::default()
                .background_compaction(false)
                .fsync(FsyncPolicy::Never)
                .wal_hold_max_ms(300),
        )
        .unwrap();
        let hour = 3_600_000;
        let l = labels(1);
        let append_at = |t: i64| {
            let mut app = db.appender();
            app.append(&l, t, 1.0).unwrap();
            app.commit().unwrap();
        };
        let held = db.wal.as_ref().unwrap().lock().unwrap().wal.segment();
        db.hold_wal_segments("stale", held);
        for h in 0..=8 {
            append_at(h * hour);
        }
        // Within the cap: kept (the segment was finished a moment ago).
        db.compact_head().unwrap();
        assert_eq!(wal::segments(&wal_dir).unwrap()[0], held);
        std::thread::sleep(Duration::from_millis(600));
        for h in 9..=12 {
            append_at(h * hour);
        }
        db.compact_head().unwrap();
        assert!(wal::segments(&wal_dir).unwrap()[0] > held);
    }
}
