//! Transactions on the head.
//!
//! An [`Appender`] stages samples without touching the series: nothing is visible to queries and
//! nothing reaches the WAL until commit, so a rollback (or a crash) leaves no trace. Each touched
//! series gets a fork of its chunks ([`SeriesChunks::fork`]: the open chunk and the cutting state) and
//! staged samples are appended to the fork with the series' own rules, XOR-encoded once (a few bytes
//! a sample instead of 24 for `(id, t, v)`): that lets a whole 500 MB exposition file be one
//! transaction in bounded memory, and at commit the fork simply replaces the series' open chunk.
//!
//! Samples are staged in shards by series id (`id % shards`) so that the ingest pipeline can stage
//! and apply them on several threads while each series still sees its samples in order. Commit has
//! two phases that the caller (the database) sequences around the WAL: [`Appender::encode_records`]
//! (WAL series + samples records), then [`Appender::apply`] (into the series' chunks).
//!
//! Ordering rules are Prometheus': a sample older than the series' newest one is out of order, one at
//! the same timestamp with other value bits is a duplicate, one with the same bits is a no-op. They are
//! checked when the sample is staged (against committed and staged samples) and again at apply.

use super::series::{Check, MemSeries, Reject, SeriesChunks};
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

/// A series' staged samples: a fork of its chunks ([`SeriesChunks::fork`]) that the samples are
/// appended to with the series' own cutting rules. At commit the fork replaces the series' open
/// chunk, so each sample is XOR-encoded once, when staged.
struct Pending {
    series: Arc<MemSeries>,
    /// The series' [`SeriesChunks::version`] when forked.
    base: (usize, usize, i64),
    staged: SeriesChunks,
    samples: usize,
    /// Out-of-order samples staged for the series (in the shard's `ooo` list).
    ooo: usize,
    min_t: i64,
    max_t: i64,
}

impl Pending {
    fn new(series: Arc<MemSeries>) -> Pending {
        series.pin();
        let (base, staged) = {
            let c = series.lock();
            (c.version(), c.fork())
        };
        Pending {
            series,
            base,
            staged,
            samples: 0,
            ooo: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
        }
    }

    #[inline]
    fn stage(&mut self, t: i64, v: f64, chunk_range: i64) -> Check {
        let check = self.staged.append(t, v, chunk_range);
        if check == Check::Append {
            self.samples += 1;
            self.min_t = self.min_t.min(t);
            self.max_t = t;
        }
        check
    }

    /// Moves the staged samples to `series` (the same labels, after head truncation removed the
    /// series this was forked from). Its chunks differ from the fork's base, so apply appends the
    /// samples one by one.
    fn rebind(&mut self, series: Arc<MemSeries>) {
        series.pin();
        self.series.unpin();
        self.series = series;
        self.base = (usize::MAX, usize::MAX, i64::MIN);
    }

    /// The staged samples (not those the fork started with), in order.
    fn for_each_sample(&self, mut f: impl FnMut(i64, f64)) {
        let after = self.base.2;
        // A fork's completed chunks are in memory until its commit writes them out.
        let chunks = self
            .staged
            .closed
            .iter()
            .filter_map(|c| match &c.data {
                super::series::ChunkData::Mem(d) => Some(&**d),
                super::series::ChunkData::Disk(_) => None,
            })
            .chain(self.staged.head.as_ref().map(|h| h.app.bytes()));
        for data in chunks {
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

/// Above this many staged series a shard finds them through a dense table instead of a hash map.
const DENSE_SLOTS_MIN: usize = 256;
const NO_SLOT: u32 = u32::MAX;

/// One shard of a transaction: the staged samples of series with `id % shards == index`.
pub struct AppenderShard {
    pending: Vec<Pending>,
    slot_of: HashMap<u64, u32, foldhash::fast::FixedState>,
    /// `dense[id / stride]` = slot, once the shard stages many series (ids are dense).
    dense: Vec<u32>,
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
            match self.dense.get((id as usize) / self.stride) {
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
            if self.pending.len() >= DENSE_SLOTS_MIN {
                for (i, p) in self.pending.iter().enumerate() {
                    let at = (p.series.id as usize) / self.stride;
                    if self.dense.len() <= at {
                        self.dense.resize(at + 1, NO_SLOT);
                    }
                    self.dense[at] = i as u32;
                }
                self.slot_of = HashMap::default();
            }
        } else {
            let at = (id as usize) / self.stride;
            if self.dense.len() <= at {
                self.dense
                    .resize((at + 1).max(self.dense.len() * 5 / 4), NO_SLOT);
            }
            self.dense[at] = slot as u32;
        }
        slot
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
        match self.pending[slot].stage(t, v, range) {
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

    fn apply(self, head: &Head) -> CommitStats {
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
        for mut p in self.pending {
            if p.samples == 0 {
                continue;
            }
            let mut chunks = p.series.lock();
            if chunks.version() == p.base && p.min_t >= min_valid {
                // Nothing was committed to the series since the fork: take it over.
                stats.appended += p.samples as u64;
                min = min.min(p.min_t);
                max = max.max(p.max_t);
                chunks.absorb(std::mem::replace(&mut p.staged, SeriesChunks::empty()));
                head.persist(p.series.id, &mut chunks);
                continue;
            }
            // Another transaction committed to this series meanwhile: append one by one, with
            // the ordering rules applied again.
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
            record::encode_series_entry(
                &mut rec,
                p.series.id,
                p.series.labels().iter().map(|(n, v)| (&**n, &**v)),
            );
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
