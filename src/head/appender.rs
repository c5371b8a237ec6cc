//! Transactions on the head.
//!
//! An [`Appender`] stages samples without touching the series: nothing is visible to queries and
//! nothing reaches the WAL until commit, so a rollback (or a crash) leaves no trace. A touched series'
//! first few samples are kept as they are and encoded into its open chunk at commit, under its lock:
//! a scrape stages one sample per series, and that costs no copy of the series' chunk. From the
//! fifth sample on, the series gets a fork of its chunks ([`SeriesChunks::fork`]: the open chunk and
//! the cutting state) and staged samples are appended to the fork with the series' own rules,
//! XOR-encoded once (a few bytes a sample instead of 16): that lets a whole 500 MB exposition file be
//! one transaction in bounded memory, and at commit the fork simply replaces the series' open chunk.
//!
//! Samples are staged in shards by series id (`id % shards`) so that the ingest pipeline can stage
//! and apply them on several threads while each series still sees its samples in order. Commit has
//! two phases that the caller (the database) sequences around the WAL: [`Appender::encode_records`]
//! (WAL series + samples records), then [`Appender::apply`] (into the series' chunks).
//!
//! Ordering rules are Prometheus': a sample older than the series' newest one is out of order, one at
//! the same timestamp with other value bits is a duplicate, one with the same bits is a no-op. They are
//! checked when the sample is staged (against committed and staged samples) and again at apply.

use super::series::{check_after, Check, MemSeries, Reject, SeriesChunks};
use super::Head;
use crate::chunk::XorIterator;
use crate::labels::Labels;
use crate::wal::record::{self, RefSample};
use std::collections::HashMap;
use std::sync::Arc;

/// Samples per WAL samples record: ~11 bytes each, so records of ~700 KiB.
const SAMPLES_PER_RECORD: usize = 64 * 1024;
/// Below this many staged samples, commit applies on the calling thread.
const PARALLEL_APPLY_MIN: usize = 50_000;

/// Samples not appended, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RejectCounts {
    pub out_of_order: u64,
    pub duplicate: u64,
    pub out_of_bounds: u64,
}

impl RejectCounts {
    pub fn add(&mut self, r: Reject) {
        match r {
            Reject::OutOfOrder => self.out_of_order += 1,
            Reject::Duplicate => self.duplicate += 1,
            Reject::OutOfBounds => self.out_of_bounds += 1,
        }
    }

    pub fn merge(&mut self, o: &RejectCounts) {
        self.out_of_order += o.out_of_order;
        self.duplicate += o.duplicate;
        self.out_of_bounds += o.out_of_bounds;
    }

    pub fn total(&self) -> u64 {
        self.out_of_order + self.duplicate + self.out_of_bounds
    }
}

/// What a commit did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples now in the head (out-of-order ones included).
    pub appended: u64,
    /// Of `appended`, samples accepted into out-of-order buffers within the out-of-order window
    /// (see [`super::ooo`]).
    pub out_of_order: u64,
    /// Samples equal (timestamp and value bits) to the series' newest: accepted, nothing stored.
    pub no_ops: u64,
    /// Samples rejected when staged or at apply, by reason.
    pub rejected: RejectCounts,
}

/// Samples a series stages before its [`Pending`] switches to a fork of its chunks. A scrape
/// stages one sample per series and transaction: copying the series' open chunk for it (and
/// freeing the copy at commit) was a fifth of the ingest CPU of `tsdbctl serve`.
const INLINE_SAMPLES: usize = 4;

/// Where a series' staged samples are.
enum Staged {
    /// Up to [`INLINE_SAMPLES`] samples as they are; encoded into the series' open chunk at apply.
    Few {
        samples: [(i64, f64); INLINE_SAMPLES],
        len: u8,
    },
    /// A fork of the series' chunks ([`SeriesChunks::fork`]) the samples were appended to with
    /// the series' own cutting rules: at commit it replaces the series' open chunk, so each
    /// sample of a large transaction is XOR-encoded once, in a few bytes instead of 16.
    Fork {
        /// The series' [`SeriesChunks::version`] when forked.
        base: (usize, usize, i64),
        chunks: Box<SeriesChunks>,
    },
}

/// A series' staged samples. Nothing of them is in the series until [`AppenderShard::apply`].
struct Pending {
    series: Arc<MemSeries>,
    staged: Staged,
    /// The newest sample (timestamp, value bits), staged or committed when staging began: what
    /// the next staged sample is checked against.
    last: Option<(i64, u64)>,
    /// Samples at or before this are out of order while the series has no open chunk
    /// ([`SeriesChunks::append_floor`]).
    floor: i64,
    samples: usize,
    /// Out-of-order samples staged for the series (in the shard's `ooo` list).
    ooo: usize,
    min_t: i64,
    max_t: i64,
}

impl Pending {
    fn new(series: Arc<MemSeries>) -> Pending {
        series.pin();
        let (last, floor) = {
            let c = series.lock();
            (c.last(), c.append_floor())
        };
        Pending {
            series,
            staged: Staged::Few {
                samples: [(0, 0.0); INLINE_SAMPLES],
                len: 0,
            },
            last,
            floor,
            samples: 0,
            ooo: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
        }
    }

    /// Stages a sample. The count is of earlier inline samples that switching to a fork refused
    /// ([`Pending::switch_to_fork`]).
    #[inline]
    fn stage(&mut self, t: i64, v: f64, chunk_range: i64) -> (Check, u64) {
        let mut refused = 0;
        let check = match &mut self.staged {
            Staged::Few { samples, len } if usize::from(*len) < INLINE_SAMPLES => {
                let mut check = check_after(self.last, t, v);
                if check == Check::Append && t <= self.floor {
                    check = Check::Reject(Reject::OutOfOrder);
                }
                if check == Check::Append {
                    samples[usize::from(*len)] = (t, v);
                    *len += 1;
                }
                check
            }
            Staged::Few { .. } => {
                refused = self.switch_to_fork(chunk_range);
                self.stage_fork(t, v, chunk_range)
            }
            Staged::Fork { .. } => self.stage_fork(t, v, chunk_range),
        };
        if check == Check::Append {
            self.samples += 1;
            self.min_t = self.min_t.min(t);
            self.max_t = t;
            self.last = Some((t, v.to_bits()));
        }
        (check, refused)
    }

    #[inline]
    fn stage_fork(&mut self, t: i64, v: f64, chunk_range: i64) -> Check {
        match &mut self.staged {
            Staged::Fork { chunks, .. } => chunks.append(t, v, chunk_range),
            Staged::Few { .. } => Check::Reject(Reject::OutOfOrder),
        }
    }

    /// Switches from inline samples to a fork of the series' chunks as they are now, with the
    /// inline samples appended to it. Returns how many of them the fork refused: another
    /// transaction committed newer samples to the series since they were staged (they would be
    /// refused at apply anyway).
    fn switch_to_fork(&mut self, chunk_range: i64) -> u64 {
        let (base, mut chunks) = {
            let c = self.series.lock();
            (c.version(), c.fork())
        };
        let mut refused = 0;
        let (mut min_t, mut max_t, mut n) = (i64::MAX, i64::MIN, 0);
        for (t, v) in self.few() {
            if chunks.append(t, v, chunk_range) == Check::Append {
                min_t = min_t.min(t);
                max_t = t;
                n += 1;
            } else {
                refused += 1;
            }
        }
        self.samples = n;
        self.min_t = min_t;
        self.max_t = max_t;
        self.last = chunks.last();
        self.staged = Staged::Fork {
            base,
            chunks: Box::new(chunks),
        };
        refused
    }

    /// The inline samples (none once forked).
    fn few(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        let s: &[(i64, f64)] = match &self.staged {
            Staged::Few { samples, len } => samples.get(..usize::from(*len)).unwrap_or(&[]),
            Staged::Fork { .. } => &[],
        };
        s.iter().copied()
    }

    /// Moves the staged samples to `series` (the same labels, after head truncation removed the
    /// series they were staged for). Its chunks differ from a fork's base, so apply appends the
    /// samples one by one.
    fn rebind(&mut self, series: Arc<MemSeries>) {
        series.pin();
        self.series.unpin();
        self.series = series;
        if let Staged::Fork { base, .. } = &mut self.staged {
            *base = (usize::MAX, usize::MAX, i64::MIN);
        }
    }

    /// The staged samples (not those a fork started with), in order.
    fn for_each_sample(&self, mut f: impl FnMut(i64, f64)) {
        let (base, chunks) = match &self.staged {
            Staged::Few { .. } => {
                for (t, v) in self.few() {
                    f(t, v);
                }
                return;
            }
            Staged::Fork { base, chunks } => (base, chunks),
        };
        let after = base.2;
        // A fork's completed chunks are in memory until its commit writes them out.
        let data = chunks
            .closed
            .iter()
            .filter_map(|c| match &c.data {
                super::series::ChunkData::Mem(d) => Some(&**d),
                super::series::ChunkData::Disk(_) => None,
            })
            .chain(chunks.head.as_ref().map(|h| h.app.bytes()));
        for data in data {
            // Staged chunks are our own encoding of valid samples: decoding cannot fail.
            if let Ok(mut it) = XorIterator::new(data) {
                while let Ok(Some((t, v))) = it.next_sample() {
                    if t > after {
                        f(t, v);
                    }
                }
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.series.unpin();
    }
}

/// Above this many staged series a shard finds them through a dense table instead of a hash map,
/// if their ids are dense enough.
const DENSE_SLOTS_MIN: usize = 256;
/// The dense table may have this many entries per staged series at most. Ids are dense when one
/// source created the series (a file ingested); a scrape's series were created by many targets at
/// once and spread over the whole id range: a table over that range (2 MB per scrape at 1M
/// series) cost more to allocate and clear than the hash map costs to probe.
const DENSE_SPREAD: usize = 4;
const NO_SLOT: u32 = u32::MAX;

/// One shard of a transaction: the staged samples of series with `id % shards == index`.
pub struct AppenderShard {
    pending: Vec<Pending>,
    slot_of: HashMap<u64, u32, foldhash::fast::FixedState>,
    /// `dense[(id - dense_base) / stride]` = slot, once the shard stages many series with dense
    /// ids; `slot_of` is empty then.
    dense: Vec<u32>,
    dense_base: u64,
    /// Staged series at which to consider the dense table again.
    dense_check_at: usize,
    stride: usize,
    chunk_range: i64,
    /// Samples before this time are out of bounds (the head's minimum valid time when the
    /// transaction began).
    min_valid: i64,
    staged: usize,
    no_ops: u64,
    rejected: RejectCounts,
    /// Set samples before `min_valid` aside in `out_of_bounds` instead of rejecting them.
    backfill: bool,
    /// (slot in `pending`, t, v) of samples set aside for backfill, until drained.
    out_of_bounds: Vec<(u32, i64, f64)>,
    /// Out-of-order samples at or after this time go to `ooo` ([`super::ooo`]); `None`: the
    /// out-of-order window is off.
    ooo_floor: Option<i64>,
    /// (slot in `pending`, t, v) of staged out-of-order samples, in staging order.
    ooo: Vec<(u32, i64, f64)>,
}

impl AppenderShard {
    fn new(
        stride: usize,
        chunk_range: i64,
        min_valid: i64,
        ooo_floor: Option<i64>,
    ) -> AppenderShard {
        AppenderShard {
            pending: Vec::new(),
            slot_of: HashMap::default(),
            dense: Vec::new(),
            dense_base: 0,
            dense_check_at: DENSE_SLOTS_MIN,
            stride: stride.max(1),
            chunk_range,
            min_valid,
            staged: 0,
            no_ops: 0,
            rejected: RejectCounts::default(),
            backfill: false,
            out_of_bounds: Vec::new(),
            ooo_floor,
            ooo: Vec::new(),
        }
    }

    #[inline]
    fn find(&self, id: u64) -> Option<usize> {
        if self.dense.is_empty() {
            self.slot_of.get(&id).map(|&s| s as usize)
        } else {
            let at = id.checked_sub(self.dense_base)? as usize / self.stride;
            match self.dense.get(at) {
                Some(&s) if s != NO_SLOT => Some(s as usize),
                _ => None,
            }
        }
    }

    fn add_slot(&mut self, series: Arc<MemSeries>) -> usize {
        let slot = self.pending.len();
        let id = series.id;
        self.pending.push(Pending::new(series));
        if self.dense.is_empty() {
            self.slot_of.insert(id, slot as u32);
            if self.pending.len() >= self.dense_check_at {
                self.index_densely();
            }
            return slot;
        }
        let at = id
            .checked_sub(self.dense_base)
            .map(|d| d as usize / self.stride)
            .filter(|&at| at < (self.pending.len() * DENSE_SPREAD).max(self.dense.len()));
        match at {
            Some(at) => {
                if self.dense.len() <= at {
                    self.dense
                        .resize((at + 1).max(self.dense.len() * 5 / 4), NO_SLOT);
                }
                self.dense[at] = slot as u32;
            }
            None => {
                // Below the table's base or far beyond it: back to the map, rebuilt.
                self.dense = Vec::new();
                self.slot_of = self
                    .pending
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.series.id, i as u32))
                    .collect();
                self.dense_check_at = self.pending.len() * 2;
            }
        }
        slot
    }

    /// Moves the slots from the map to a dense table if the staged ids are dense enough;
    /// otherwise looks again when twice as many series are staged.
    fn index_densely(&mut self) {
        let lo = self.pending.iter().map(|p| p.series.id).min().unwrap_or(0);
        let hi = self.pending.iter().map(|p| p.series.id).max().unwrap_or(0);
        let span = ((hi - lo) as usize) / self.stride + 1;
        if span > self.pending.len() * DENSE_SPREAD {
            self.dense_check_at = self.pending.len() * 2;
            return;
        }
        self.dense = vec![NO_SLOT; span];
        self.dense_base = lo;
        for (i, p) in self.pending.iter().enumerate() {
            self.dense[((p.series.id - lo) as usize) / self.stride] = i as u32;
        }
        self.slot_of = HashMap::default();
    }

    #[inline]
    fn stage(&mut self, slot: usize, t: i64, v: f64) -> Result<(), Reject> {
        if t < self.min_valid {
            if self.backfill {
                // Off the hot path: only out-of-bounds samples pay for this branch.
                self.out_of_bounds.push((slot as u32, t, v));
                return Ok(());
            }
            self.rejected.add(Reject::OutOfBounds);
            return Err(Reject::OutOfBounds);
        }
        let range = self.chunk_range;
        // `slot` comes from `find` or `add_slot`: it indexes `pending`.
        let (check, refused) = self.pending[slot].stage(t, v, range);
        if refused > 0 {
            // Off the hot path: a large transaction raced with another committing to the series.
            self.staged -= refused as usize;
            self.rejected.out_of_order += refused;
        }
        match check {
            Check::Append => {
                self.staged += 1;
                Ok(())
            }
            Check::NoOp => {
                self.no_ops += 1;
                Ok(())
            }
            Check::Reject(Reject::OutOfOrder) if self.ooo_floor.is_some_and(|f| t >= f) => {
                // Off the hot path: only out-of-order samples get here.
                self.ooo.push((slot as u32, t, v));
                self.pending[slot].ooo += 1;
                self.staged += 1;
                Ok(())
            }
            Check::Reject(r) => {
                self.rejected.add(r);
                Err(r)
            }
        }
    }

    /// Stages a sample for an existing series. The series must belong to this shard.
    #[inline]
    pub fn append(&mut self, series: &Arc<MemSeries>, t: i64, v: f64) -> Result<(), Reject> {
        let slot = match self.find(series.id) {
            Some(s) => s,
            None => self.add_slot(series.clone()),
        };
        self.stage(slot, t, v)
    }

    /// Stages a sample for the series with this id, looked up in `head`.
    #[inline]
    pub fn append_id(&mut self, head: &Head, id: u64, t: i64, v: f64) -> Result<(), AppendError> {
        let slot = match self.find(id) {
            Some(s) => s,
            None => {
                let series = head.series(id).ok_or(AppendError::UnknownSeries(id))?;
                self.add_slot(series)
            }
        };
        self.stage(slot, t, v).map_err(AppendError::Rejected)
    }

    /// Samples staged in this shard.
    pub fn staged(&self) -> usize {
        self.staged
    }

    /// Hands each sample set aside for backfill to `f` (in staging order) and forgets it.
    fn drain_out_of_bounds(&mut self, f: &mut dyn FnMut(&Arc<MemSeries>, i64, f64)) {
        for (slot, t, v) in self.out_of_bounds.drain(..) {
            if let Some(p) = self.pending.get(slot as usize) {
                f(&p.series, t, v);
            }
        }
    }

    fn apply(mut self, head: &Head) -> CommitStats {
        let mut stats = CommitStats {
            appended: 0,
            out_of_order: 0,
            no_ops: self.no_ops,
            rejected: self.rejected,
        };
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        let range = head.chunk_range();
        let min_valid = head.min_valid_time();
        for &(slot, t, v) in &self.ooo {
            let Some(p) = self.pending.get(slot as usize) else {
                continue;
            };
            if t < min_valid {
                // Head compaction moved this range into a block since the sample was staged.
                stats.rejected.add(Reject::OutOfBounds);
                continue;
            }
            if p.series.lock().insert_ooo(t, v) {
                stats.appended += 1;
                stats.out_of_order += 1;
                min = min.min(t);
                max = max.max(t);
            } else {
                stats.no_ops += 1;
            }
        }
        // By reference: a `Pending` is ~150 bytes, and moving each out cost a copy per sample.
        for p in &mut self.pending {
            if p.samples == 0 {
                continue;
            }
            let mut chunks = p.series.lock();
            if let Staged::Fork { base, chunks: fork } = &mut p.staged {
                if chunks.version() == *base && p.min_t >= min_valid {
                    // Nothing was committed to the series since the fork: take it over.
                    stats.appended += p.samples as u64;
                    min = min.min(p.min_t);
                    max = max.max(p.max_t);
                    chunks.absorb(std::mem::replace(&mut **fork, SeriesChunks::empty()));
                    head.persist(p.series.id, &mut chunks);
                    continue;
                }
            }
            // Inline samples, or another transaction committed to a forked series meanwhile:
            // append one by one, with the ordering rules applied again.
            p.for_each_sample(|t, v| match chunks.append_valid(t, v, range, min_valid) {
                Check::Append => {
                    stats.appended += 1;
                    min = min.min(t);
                    max = max.max(t);
                }
                Check::NoOp => stats.no_ops += 1,
                Check::Reject(r) => stats.rejected.add(r),
            });
            head.persist(p.series.id, &mut chunks);
        }
        if min <= max {
            head.update_time_range(min, max);
        }
        stats
    }
}

/// Why [`Appender::append`] did not stage a sample.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    #[error("sample rejected: {0:?}")]
    Rejected(Reject),
    #[error("unknown series id {0}")]
    UnknownSeries(u64),
    #[error("a series needs at least one label")]
    EmptyLabels,
}

/// A head transaction.
pub struct Appender<'h> {
    head: &'h Head,
    shards: Vec<AppenderShard>,
}

impl<'h> Appender<'h> {
    pub(super) fn new(head: &'h Head) -> Appender<'h> {
        // Prometheus compares with the head's max time when the sample is appended; a
        // transaction takes it once, as it takes the minimum valid time.
        let window = head.out_of_order_window();
        let ooo_floor = (window > 0).then(|| {
            head.time_range()
                .map_or(i64::MIN, |(_, max)| max.saturating_sub(window))
        });
        Appender {
            head,
            shards: (0..head.shards())
                .map(|_| {
                    AppenderShard::new(
                        head.shards(),
                        head.chunk_range(),
                        head.min_valid_time(),
                        ooo_floor,
                    )
                })
                .collect(),
        }
    }

    pub fn head(&self) -> &'h Head {
        self.head
    }

    /// Stages a sample for the series `labels`, creating the series if new. Returns its id.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<u64, AppendError> {
        if labels.is_empty() {
            return Err(AppendError::EmptyLabels);
        }
        let (series, _) = self.head.get_or_create(labels);
        let id = series.id;
        let n = self.shards.len();
        self.shards[(id as usize) % n]
            .append(&series, t, v)
            .map_err(AppendError::Rejected)?;
        Ok(id)
    }

    /// Stages a sample for an existing series by id.
    pub fn append_id(&mut self, id: u64, t: i64, v: f64) -> Result<(), AppendError> {
        let n = self.shards.len();
        self.shards[(id as usize) % n].append_id(self.head, id, t, v)
    }

    /// Stages a sample for a series the caller holds (a scrape cache keeps them, so that no sample
    /// looks its series up in the head). [`AppendError::UnknownSeries`] when head truncation has
    /// removed the series: the caller finds or creates it again by its labels. A removal between
    /// this call and commit is handled at commit ([`Appender::revalidate`]).
    #[inline]
    pub fn append_series(
        &mut self,
        series: &Arc<MemSeries>,
        t: i64,
        v: f64,
    ) -> Result<(), AppendError> {
        if series.is_removed() {
            return Err(AppendError::UnknownSeries(series.id));
        }
        let n = self.shards.len();
        self.shards[(series.id as usize) % n]
            .append(series, t, v)
            .map_err(AppendError::Rejected)
    }

    /// Makes room for about `series` series without growing while they are staged (a scrape
    /// knows how many its target exposed last time).
    pub fn reserve(&mut self, series: usize) {
        let n = self.shards.len();
        let per = series / n + series / (4 * n) + 8;
        for s in &mut self.shards {
            s.pending.reserve(per);
            if s.dense.is_empty() {
                s.slot_of.reserve(per);
            }
        }
    }

    /// The shards, to stage samples from several threads: shard `i` takes series with
    /// `id % shards().len() == i`.
    pub fn shards_mut(&mut self) -> &mut [AppenderShard] {
        &mut self.shards
    }

    /// With backfill on, samples older than the head's minimum valid time (its range is in blocks
    /// already) are set aside for [`Appender::drain_out_of_bounds`] (see [`crate::backfill`])
    /// instead of being rejected as out of bounds. Off by default. Samples set aside and not
    /// drained are dropped with the transaction; commit never writes them.
    pub fn set_backfill(&mut self, on: bool) {
        for s in &mut self.shards {
            s.backfill = on;
        }
    }

    /// Samples set aside for backfill and not yet drained.
    pub fn out_of_bounds_pending(&self) -> usize {
        self.shards.iter().map(|s| s.out_of_bounds.len()).sum()
    }

    /// Hands every sample set aside for backfill to `f` with its series, shard after shard (each
    /// series' samples in staging order), and forgets them.
    pub fn drain_out_of_bounds(&mut self, f: &mut dyn FnMut(&Arc<MemSeries>, i64, f64)) {
        for s in &mut self.shards {
            s.drain_out_of_bounds(f);
        }
    }

    /// Samples staged (to be appended at commit).
    pub fn staged(&self) -> usize {
        self.shards.iter().map(|s| s.staged).sum()
    }

    /// Counts so far (rejections and no-ops at staging).
    pub fn rejected(&self) -> RejectCounts {
        let mut r = RejectCounts::default();
        for s in &self.shards {
            r.merge(&s.rejected);
        }
        r
    }

    /// Replaces series that head truncation removed while this transaction staged samples for
    /// them by the head's current series with the same labels (created if needed). The database
    /// calls this under its WAL lock, before [`Appender::encode_records`].
    ///
    /// Out-of-order samples whose range head compaction has moved into a block since they were
    /// staged are rejected here (out of bounds), before they reach the write-behind log: replay
    /// would skip them, but Prometheus replays every WBL sample it finds.
    pub fn revalidate(&mut self) {
        let head = self.head;
        let min_valid = head.min_valid_time();
        for s in &mut self.shards {
            let before = s.ooo.len();
            if s.ooo.iter().any(|&(_, t, _)| t < min_valid) {
                let pending = &mut s.pending;
                s.ooo.retain(|&(slot, t, _)| {
                    let keep = t >= min_valid;
                    if !keep {
                        if let Some(p) = pending.get_mut(slot as usize) {
                            p.ooo -= 1;
                        }
                    }
                    keep
                });
                let dropped = before - s.ooo.len();
                s.staged -= dropped;
                s.rejected.out_of_bounds += dropped as u64;
            }
        }
        for p in self.shards.iter_mut().flat_map(|s| s.pending.iter_mut()) {
            if p.series.is_removed() {
                let (fresh, _) = head.get_or_create(&p.series.to_labels());
                p.rebind(fresh);
            }
        }
    }

    /// Commit phase 1: the WAL records of this transaction — a series record for every series not
    /// yet logged, then samples records — handed to `sink` one at a time, in bounded memory.
    pub fn encode_records<E>(&self, sink: &mut dyn FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut rec = Vec::new();
        let mut first = true;
        for p in self.shards.iter().flat_map(|s| &s.pending) {
            if p.series.is_logged() || p.samples + p.ooo == 0 {
                continue;
            }
            if first {
                record::encode_series_header(&mut rec);
                first = false;
            }
            record::encode_series_entry(&mut rec, p.series.id, p.series.label_strs());
            if rec.len() >= SAMPLES_PER_RECORD * 8 {
                sink(&rec)?;
                rec.clear();
                first = true;
            }
        }
        if !rec.is_empty() {
            sink(&rec)?;
        }
        let mut buf: Vec<RefSample> = Vec::with_capacity(SAMPLES_PER_RECORD.min(self.staged()));
        for p in self.shards.iter().flat_map(|s| &s.pending) {
            let id = p.series.id;
            let mut failed = None;
            p.for_each_sample(|t, v| {
                if failed.is_some() {
                    return;
                }
                buf.push(RefSample { series: id, t, v });
                if buf.len() == SAMPLES_PER_RECORD {
                    rec.clear();
                    record::encode_samples(&buf, &mut rec);
                    buf.clear();
                    if let Err(e) = sink(&rec) {
                        failed = Some(e);
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
        }
        if !buf.is_empty() {
            rec.clear();
            record::encode_samples(&buf, &mut rec);
            sink(&rec)?;
        }
        Ok(())
    }

    /// Out-of-order samples staged (a subset of [`Appender::staged`]).
    pub fn staged_out_of_order(&self) -> usize {
        self.shards.iter().map(|s| s.ooo.len()).sum()
    }

    /// The samples records of the staged out-of-order samples (for the write-behind log, after
    /// [`Appender::encode_records`] wrote the series records), handed to `sink` one at a time.
    pub fn encode_ooo_records<E>(
        &self,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rec = Vec::new();
        let mut buf: Vec<RefSample> = Vec::new();
        for s in &self.shards {
            for &(slot, t, v) in &s.ooo {
                let Some(p) = s.pending.get(slot as usize) else {
                    continue;
                };
                buf.push(RefSample {
                    series: p.series.id,
                    t,
                    v,
                });
                if buf.len() == SAMPLES_PER_RECORD {
                    rec.clear();
                    record::encode_samples(&buf, &mut rec);
                    buf.clear();
                    sink(&rec)?;
                }
            }
        }
        if !buf.is_empty() {
            rec.clear();
            record::encode_samples(&buf, &mut rec);
            sink(&rec)?;
        }
        Ok(())
    }

    /// Commit phase 2, after the records are in the WAL: appends the staged samples to the series
    /// (on several threads for large transactions) and marks new series as logged.
    pub fn apply(self) -> CommitStats {
        for p in self.shards.iter().flat_map(|s| &s.pending) {
            if p.samples + p.ooo > 0 {
                p.series.set_logged();
            }
        }
        let head = self.head;
        let parallel = self.staged() >= PARALLEL_APPLY_MIN && self.shards.len() > 1;
        let results: Vec<CommitStats> = if parallel {
            use rayon::prelude::*;
            self.shards.into_par_iter().map(|s| s.apply(head)).collect()
        } else {
            self.shards.into_iter().map(|s| s.apply(head)).collect()
        };
        let mut total = CommitStats::default();
        for r in results {
            total.appended += r.appended;
            total.out_of_order += r.out_of_order;
            total.no_ops += r.no_ops;
            total.rejected.merge(&r.rejected);
        }
        total
    }

    /// Drops everything staged.
    pub fn rollback(self) {}

    /// Number of series with staged samples.
    pub fn pending_series(&self) -> usize {
        self.shards.iter().map(|s| s.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &str) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("i", v)])
    }

    #[test]
    fn staged_samples_are_invisible_until_apply() {
        let h = Head::new(7_200_000, 2);
        let mut a = h.appender();
        let id = a.append(&labels("a"), 1000, 1.0).unwrap();
        a.append(&labels("a"), 2000, 2.0).unwrap();
        assert_eq!(h.series(id).unwrap().lock().num_samples(), 0);
        let mut recs = Vec::new();
        a.encode_records(&mut |r: &[u8]| {
            recs.push(r.to_vec());
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(recs.len(), 2); // one series record, one samples record
        let stats = a.apply();
        assert_eq!(stats.appended, 2);
        assert_eq!(h.series(id).unwrap().lock().num_samples(), 2);
        assert_eq!(h.time_range(), Some((1000, 2000)));
        // Logged now: a second transaction writes only samples.
        let mut a = h.appender();
        a.append(&labels("a"), 3000, 3.0).unwrap();
        let mut n = 0;
        a.encode_records(&mut |_r: &[u8]| {
            n += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn rejects_are_counted_by_reason() {
        let h = Head::new(7_200_000, 1);
        let mut a = h.appender();
        a.append(&labels("a"), 1000, 1.0).unwrap();
        a.apply();
        let mut a = h.appender();
        assert_eq!(
            a.append(&labels("a"), 500, 1.0),
            Err(AppendError::Rejected(Reject::OutOfOrder))
        );
        assert_eq!(
            a.append(&labels("a"), 1000, 2.0),
            Err(AppendError::Rejected(Reject::Duplicate))
        );
        assert!(a.append(&labels("a"), 1000, 1.0).is_ok());
        a.append(&labels("a"), 2000, 1.0).unwrap();
        let s = a.apply();
        assert_eq!(s.appended, 1);
        assert_eq!(s.no_ops, 1);
        assert_eq!(
            s.rejected,
            RejectCounts {
                out_of_order: 1,
                duplicate: 1,
                out_of_bounds: 0,
            }
        );
    }

    #[test]
    fn rollback_leaves_series_empty() {
        let h = Head::new(7_200_000, 2);
        let mut a = h.appender();
        let id = a.append(&labels("a"), 1000, 1.0).unwrap();
        a.rollback();
        assert_eq!(h.series(id).unwrap().lock().num_samples(), 0);
    }

    #[test]
    fn large_transactions_span_pending_chunks() {
        let h = Head::new(7_200_000, 2);
        let mut a = h.appender();
        let n = 70_000;
        for i in 0..n {
            a.append(&labels("a"), i as i64, i as f64).unwrap();
        }
        assert_eq!(a.staged(), n);
        let s = a.apply();
        assert_eq!(s.appended as usize, n);
    }
}

#[cfg(test)]
mod isolation_tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

    fn labels(v: &str) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("i", v)])
    }

    fn commit(a: Appender<'_>) -> CommitStats {
        a.encode_records(&mut |_r: &[u8]| Ok::<(), ()>(())).unwrap();
        a.apply()
    }

    /// Every sample of a series as a query reads it: completed chunks, then the open chunk.
    fn visible(h: &Head, id: u64) -> Vec<(i64, f64)> {
        let s = h.series(id).unwrap();
        let data: Vec<Arc<[u8]>> = {
            let c = s.lock();
            c.closed
                .iter()
                .map(|cc| h.chunk_data(&cc.data).unwrap())
                .chain(c.head.as_ref().map(|hc| Arc::from(hc.app.bytes())))
                .collect()
        };
        let mut out = Vec::new();
        for d in data {
            let mut it = XorIterator::new(&d).unwrap();
            while let Some(x) = it.next_sample().unwrap() {
                out.push(x);
            }
        }
        out
    }

    /// The series' chunks as bytes: (completed chunks' bytes, open chunk's bytes).
    fn chunk_bytes(h: &Head, id: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
        let s = h.series(id).unwrap();
        let c = s.lock();
        (
            c.closed
                .iter()
                .map(|cc| h.chunk_data(&cc.data).unwrap().to_vec())
                .collect(),
            c.head
                .as_ref()
                .map_or(Vec::new(), |hc| hc.app.bytes().to_vec()),
        )
    }

    #[test]
    fn staged_samples_are_invisible_inline_and_forked_until_apply() {
        let h = Head::new(7_200_000, 2);
        let mut a = h.appender();
        let one = a.append(&labels("one"), 1000, 1.0).unwrap();
        let many = a.append(&labels("many"), 1000, 1.0).unwrap();
        commit(a);
        let (one_before, many_before) = (visible(&h, one), visible(&h, many));
        let mut a = h.appender();
        a.append_id(one, 2000, 2.0).unwrap();
        // More than fit inline: this series is staged in a fork of its chunks.
        let n = 3 * INLINE_SAMPLES as i64;
        for i in 1..=n {
            a.append_id(many, 1000 + i * 1000, i as f64).unwrap();
        }
        assert_eq!(visible(&h, one), one_before);
        assert_eq!(visible(&h, many), many_before);
        let mut recs = 0;
        a.encode_records(&mut |_r: &[u8]| {
            recs += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(recs, 1, "one samples record, both series logged already");
        // Writing the WAL records changes nothing either.
        assert_eq!(visible(&h, one), one_before);
        assert_eq!(visible(&h, many), many_before);
        let stats = a.apply();
        assert_eq!(stats.appended, 1 + n as u64);
        assert_eq!(visible(&h, one), vec![(1000, 1.0), (2000, 2.0)]);
        let mut want = vec![(1000, 1.0)];
        want.extend((1..=n).map(|i| (1000 + i * 1000, i as f64)));
        assert_eq!(visible(&h, many), want);
    }

    #[test]
    fn rollback_restores_the_chunks_byte_for_byte() {
        // Two heads given the same committed samples; one also sees transactions rolled back
        // (inline, and forked across a chunk cut): afterwards both must be identical.
        let (h, reference) = (Head::new(7_200_000, 2), Head::new(7_200_000, 2));
        let mut ids = Vec::new();
        for head in [&h, &reference] {
            let mut a = head.appender();
            for k in 0..115 {
                a.append(&labels("x"), k * 15_000, k as f64).unwrap();
            }
            ids.push(a.append(&labels("x"), 115 * 15_000, 0.5).unwrap());
            commit(a);
        }
        let before = chunk_bytes(&h, ids[0]);
        let mut a = h.appender();
        a.append_id(ids[0], 116 * 15_000, 9.0).unwrap();
        a.rollback();
        assert_eq!(chunk_bytes(&h, ids[0]), before);
        let mut a = h.appender();
        for k in 116..140 {
            a.append_id(ids[0], k * 15_000, -(k as f64)).unwrap();
        }
        a.rollback();
        assert_eq!(chunk_bytes(&h, ids[0]), before);
        for (head, id) in [(&h, ids[0]), (&reference, ids[1])] {
            let mut a = head.appender();
            for k in 116..130 {
                a.append_id(id, k * 15_000, k as f64 * 2.0).unwrap();
            }
            commit(a);
            let mut a = head.appender();
            a.append_id(id, 130 * 15_000, 1.0).unwrap();
            commit(a);
        }
        assert_eq!(chunk_bytes(&h, ids[0]), chunk_bytes(&reference, ids[1]));
        assert_eq!(
            chunk_bytes(&h, ids[0]).0.len(),
            1,
            "the 120th sample cut a chunk"
        );
    }

    #[test]
    fn concurrent_reads_never_see_staged_samples() {
        let h = Head::new(7_200_000, 2);
        let ids: Vec<u64> = (0..64)
            .map(|i| h.get_or_create(&labels(&i.to_string())).0.id)
            .collect();
        // The transaction number whose apply may have begun: no value above it may be visible.
        let applying = AtomicI64::new(0);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut reads = 0u64;
                    while !done.load(Ordering::SeqCst) || reads == 0 {
                        for &id in &ids {
                            let seen = visible(&h, id);
                            let bound = applying.load(Ordering::SeqCst) as f64;
                            assert!(
                                seen.iter().all(|&(_, v)| v <= bound),
                                "series {id}: a staged sample is visible ({seen:?} > {bound})"
                            );
                            assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
                            reads += 1;
                        }
                    }
                });
            }
            for k in 1..=400i64 {
                let mut a = h.appender();
                for (j, &id) in ids.iter().enumerate() {
                    // Every fourth series gets enough samples per transaction to be forked.
                    let per = if j % 4 == 0 {
                        2 * INLINE_SAMPLES as i64
                    } else {
                        1
                    };
                    for i in 0..per {
                        a.append_id(id, (k * 16 + i) * 1000, k as f64).unwrap();
                    }
                }
                // Let the readers run while the samples are staged.
                std::thread::yield_now();
                a.encode_records(&mut |_r: &[u8]| Ok::<(), ()>(())).unwrap();
                applying.store(k, Ordering::SeqCst);
                a.apply();
            }
            done.store(true, Ordering::SeqCst);
        });
        for (j, &id) in ids.iter().enumerate() {
            let per = if j % 4 == 0 { 2 * INLINE_SAMPLES } else { 1 };
            assert_eq!(visible(&h, id).len(), 400 * per);
        }
    }

    #[test]
    fn a_shard_finds_its_series_whether_ids_are_dense_or_spread() {
        let h = Head::new(7_200_000, 1);
        let ids: Vec<u64> = (0..4000)
            .map(|i| h.get_or_create(&labels(&i.to_string())).0.id)
            .collect();
        // Spread (every 10th id: a map), dense (a table), then an id below the table's base.
        let spread: Vec<u64> = ids.iter().step_by(10).copied().collect();
        let dense: Vec<u64> = ids[1000..1600].to_vec();
        for set in [&spread[..], &dense[..]] {
            let mut a = h.appender();
            for t in [1000, 2000] {
                for &id in set {
                    a.append_id(id, t, 1.0).unwrap();
                }
            }
            assert_eq!(a.pending_series(), set.len());
            assert_eq!(a.staged(), 2 * set.len());
        }
        let mut a = h.appender();
        for &id in &dense {
            a.append_id(id, 3000, 1.0).unwrap();
        }
        a.append_id(ids[3], 3000, 1.0).unwrap();
        a.append_id(ids[3999], 3000, 1.0).unwrap();
        for &id in dense.iter().chain([&ids[3], &ids[3999]]) {
            a.append_id(id, 4000, 1.0).unwrap();
        }
        assert_eq!(a.pending_series(), dense.len() + 2);
        assert_eq!(commit(a).appended, 2 * (dense.len() as u64 + 2));
    }

    #[test]
    fn a_held_series_that_truncation_removed_is_refused_and_found_again() {
        let h = Head::new(7_200_000, 2);
        let (s, _) = h.get_or_create(&labels("gone"));
        let mut a = h.appender();
        a.append_series(&s, 1000, 1.0).unwrap();
        commit(a);
        h.truncate(5000);
        assert!(s.is_removed());
        let mut a = h.appender();
        assert_eq!(
            a.append_series(&s, 6000, 1.0),
            Err(AppendError::UnknownSeries(s.id))
        );
        let (fresh, created) = h.get_or_create(&s.to_labels());
        assert!(created);
        a.append_series(&fresh, 6000, 1.0).unwrap();
        assert_eq!(commit(a).appended, 1);
        assert_eq!(visible(&h, fresh.id), vec![(6000, 1.0)]);
    }
}

#[cfg(test)]
mod ooo_tests {
    use super::*;

    fn labels(v: &str) -> Labels {
        Labels::from_pairs(&[("__name__", "m"), ("i", v)])
    }

    fn commit(a: Appender<'_>) -> CommitStats {
        a.encode_records(&mut |_r: &[u8]| Ok::<(), ()>(())).unwrap();
        a.apply()
    }

    /// Series a: 5_000 and 8_000; series b: 10_000 (the head's max time).
    fn head_with(window: i64) -> Head {
        let h = Head::new(7_200_000, 2);
        h.set_out_of_order_window(window);
        let mut a = h.appender();
        a.append(&labels("a"), 5_000, 1.0).unwrap();
        a.append(&labels("a"), 8_000, 1.0).unwrap();
        a.append(&labels("b"), 10_000, 1.0).unwrap();
        commit(a);
        h
    }

    #[test]
    fn window_accept_reject_table() {
        let cases: &[(i64, i64, Result<(), AppendError>)] = &[
            // (window, t, expected) for series "a" whose newest sample is 8_000.
            (0, 7_000, Err(AppendError::Rejected(Reject::OutOfOrder))),
            (2_500, 7_499, Err(AppendError::Rejected(Reject::OutOfOrder))),
            (2_500, 7_500, Ok(())), // t == head max - window: in the window
            (2_500, 8_000, Err(AppendError::Rejected(Reject::Duplicate))),
            (2_500, 8_001, Ok(())), // after the series' newest: in order
            (5_000, 5_000, Ok(())), // equal to an older in-order sample: into the buffer
            (5_000, 6_000, Ok(())),
            (5_000, 4_999, Err(AppendError::Rejected(Reject::OutOfOrder))),
        ];
        for &(window, t, ref want) in cases {
            let h = head_with(window);
            let mut a = h.appender();
            assert_eq!(
                &a.append(&labels("a"), t, 2.0).map(|_| ()),
                want,
                "{window} {t}"
            );
        }
    }

    #[test]
    fn out_of_order_samples_are_applied_and_counted() {
        let h = head_with(5_000);
        let mut a = h.appender();
        a.append(&labels("a"), 6_000, 2.0).unwrap();
        a.append(&labels("a"), 7_000, 3.0).unwrap();
        a.append(&labels("a"), 6_000, 9.0).unwrap(); // duplicate in the buffer: first stays
        a.append(&labels("a"), 9_000, 4.0).unwrap(); // in order
        assert_eq!(a.staged(), 4);
        assert_eq!(a.staged_out_of_order(), 3);
        let mut n = 0;
        a.encode_ooo_records(&mut |_r: &[u8]| {
            n += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n, 1);
        let s = commit(a);
        assert_eq!(s.appended, 3);
        assert_eq!(s.out_of_order, 2);
        assert_eq!(s.no_ops, 1);
        let series = h.lookup(&labels("a")).unwrap();
        let c = series.lock();
        assert_eq!(c.ooo_samples(), &[(6_000, 2.0), (7_000, 3.0)]);
        assert_eq!(c.num_samples(), 5);
    }

    #[test]
    fn out_of_order_samples_older_than_min_valid_stay_out_of_bounds() {
        let h = head_with(10_000);
        h.set_min_valid_time(6_000);
        let mut a = h.appender();
        assert_eq!(
            a.append(&labels("a"), 5_500, 1.0),
            Err(AppendError::Rejected(Reject::OutOfBounds))
        );
        a.append(&labels("a"), 6_500, 1.0).unwrap();
        // Compaction raises the minimum valid time before the commit: rejected at apply.
        h.set_min_valid_time(7_000);
        let s = commit(a);
        // One at staging, one at apply.
        assert_eq!(s.rejected.out_of_bounds, 2);
        assert_eq!(s.appended, 0);
        // ... or, under the database's WAL lock, before the sample is logged.
        let mut a = h.appender();
        a.append(&labels("a"), 7_500, 1.0).unwrap();
        h.set_min_valid_time(7_600);
        a.revalidate();
        assert_eq!(a.staged(), 0);
        assert_eq!(a.staged_out_of_order(), 0);
        let mut n = 0;
        a.encode_ooo_records(&mut |_r: &[u8]| {
            n += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n, 0);
        assert_eq!(commit(a).rejected.out_of_bounds, 1);
    }

    #[test]
    fn truncation_drops_buffered_samples_before_mint() {
        let h = head_with(5_000);
        let mut a = h.appender();
        a.append(&labels("a"), 6_000, 2.0).unwrap();
        a.append(&labels("a"), 7_500, 2.0).unwrap();
        commit(a);
        h.truncate(7_000);
        let series = h.lookup(&labels("a")).unwrap();
        assert_eq!(series.lock().ooo_samples(), &[(7_500, 2.0)]);
    }

    #[test]
    fn deletion_covers_out_of_order_samples_older_than_the_first_in_order_one() {
        let h = head_with(5_000);
        let mut a = h.appender();
        a.append(&labels("b"), 6_000, 2.0).unwrap();
        commit(a);
        let m = [crate::labels::Matcher::equal("i", "b")];
        let iv = h.deletion_intervals(&m, 0, 20_000);
        assert_eq!(iv.len(), 1);
        assert_eq!((iv[0].1.mint, iv[0].1.maxt), (6_000, 10_000));
    }
}
