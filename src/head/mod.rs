//! The head: the in-memory, appendable part of the database.
//!
//! Series live in a striped map (Prometheus' `stripeSeries`): one stripe by series id for lookups by
//! reference, one by label hash for lookups by label set, each behind its own lock, so that appenders
//! on many threads do not serialize on one lock. Label strings are interned: a series costs pointers,
//! not copies. The inverted index ([`crate::index::MemPostings`]) maps label name → value → sorted
//! series ids. The WAL is written by [`crate::db`] around [`Appender`]'s two commit phases; the one
//! kind of file the head writes itself is `chunks_head/` ([`chunks_disk`]): given a chunk directory
//! ([`Head::set_chunk_disk`]), every chunk a series completes is written there when the commit that
//! completed it is applied, and the series keeps only its reference.
//!
//! Deletions are head tombstones (Prometheus' `Head.tombstones`): intervals by series id, applied
//! when the head is read and when it is compacted into a block, dropped with the data they cover
//! when the head is truncated. The chunks themselves are never rewritten.

mod appender;
pub mod chunks_disk;
pub mod ooo;
mod series;

pub use appender::{AppendError, Appender, AppenderShard, CommitStats, RejectCounts};
pub use chunks_disk::{ChunkDiskMapper, HeadChunksError};
pub use series::{
    check_after, compute_chunk_end_time, range_for_timestamp, Check, ChunkData, ClosedChunk,
    LabelPair, MemSeries, Pair, Reject, SeriesChunks, Sym, SAMPLES_PER_CHUNK,
};

use crate::block::{Interval, Tombstones};
use crate::index::{IndexReader, MemPostings, Postings};
use crate::labels::{Labels, Matcher};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// Number of lock stripes. A power of two; 2^10 keeps contention negligible at our thread counts
/// while costing ~100 KiB for an empty head.
const STRIPES: usize = 1 << 10;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// A series in a stripe's id set, keyed by its own id: a slot is 8 bytes where a map from id would
/// take 16 (~10–20 bytes a series with the table's free slots). A lookup reads the id from the
/// series, which it then clones anyway.
struct ById(Arc<MemSeries>);

impl std::borrow::Borrow<u64> for ById {
    fn borrow(&self) -> &u64 {
        &self.0.id
    }
}

impl std::hash::Hash for ById {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // As `u64`'s own hash, which lookups by `&u64` use.
        self.0.id.hash(h)
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

/// A series in a stripe's label-hash set, keyed by the [`hash_key`] it keeps in what was padding:
/// 8-byte slots instead of a map's 16, as [`ById`].
struct ByHash(Arc<MemSeries>);

impl std::borrow::Borrow<u32> for ByHash {
    fn borrow(&self) -> &u32 {
        self.0.hash_key()
    }
}

impl std::hash::Hash for ByHash {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash_key().hash(h)
    }
}

impl PartialEq for ByHash {
    fn eq(&self, other: &ByHash) -> bool {
        self.0.hash_key() == other.0.hash_key()
    }
}

impl Eq for ByHash {}

/// The key of a series in its stripe's `by_hash`: the label hash's high half (the stripe is
/// chosen by its low bits).
fn hash_key(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[derive(Default)]
struct Stripe {
    by_id: HashSet<ById, foldhash::fast::FixedState>,
    /// Label hash → the series with that hash.
    by_hash: HashSet<ByHash, foldhash::fast::FixedState>,
    /// Further series whose [`hash_key`] is that of one in `by_hash` (practically never: the
    /// stripe and the key together are 42 bits of the label hash).
    collisions: FastMap<u32, Vec<Arc<MemSeries>>>,
}

/// The in-memory head block.
pub struct Head {
    /// `by_id` of stripe `id % STRIPES` and `by_hash` of stripe `hash % STRIPES`.
    stripes: Box<[RwLock<Stripe>]>,
    symbols: Mutex<Symbols>,
    postings: RwLock<MemPostings>,
    next_id: AtomicU64,
    num_series: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    /// Samples before this are rejected as out of bounds: their range is in a block.
    min_valid_time: AtomicI64,
    /// Prometheus' `out_of_order_time_window` in ms; 0 = out-of-order samples are rejected.
    ooo_window: AtomicI64,
    chunk_range: i64,
    shards: usize,
    /// Deleted intervals by series id.
    tombstones: RwLock<Tombstones>,
    /// `chunks_head/`, if the head writes completed chunks out.
    disk: Option<ChunkDiskMapper>,
    /// Chunk writes (and file deletions) that failed, and the last error: the chunks stay in
    /// memory and are written at the series' next cut.
    disk_errors: AtomicU64,
    last_disk_error: Mutex<Option<String>>,
}

/// The hash of a label set that the head's map is keyed by.
pub fn labels_hash<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5eed_1abe_15ee_d5e5).build_hasher();
    for (n, v) in labels {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

impl Head {
    /// A head whose chunks are cut on `chunk_range` boundaries (the minimum block range, 2 h in
    /// Prometheus) and whose appenders route samples to `shards` parallel shards.
    pub fn new(chunk_range: i64, shards: usize) -> Head {
        Head {
            stripes: (0..STRIPES).map(|_| RwLock::default()).collect(),
            symbols: Mutex::new(Symbols::default()),
            postings: RwLock::new(MemPostings::new()),
            next_id: AtomicU64::new(1),
            num_series: AtomicU64::new(0),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
            ooo_window: AtomicI64::new(0),
            chunk_range,
            shards: shards.max(1),
            tombstones: RwLock::new(Tombstones::new()),
            disk: None,
            disk_errors: AtomicU64::new(0),
            last_disk_error: Mutex::new(None),
        }
    }

    /// Gives the head its `chunks_head/` directory: completed chunks are written there from now on.
    pub fn set_chunk_disk(&mut self, disk: ChunkDiskMapper) {
        self.disk = Some(disk);
    }

    pub fn chunk_disk(&self) -> Option<&ChunkDiskMapper> {
        self.disk.as_ref()
    }

    /// The bytes of a completed chunk (read from `chunks_head/` if it is there).
    pub fn chunk_data(&self, data: &ChunkData) -> Result<Arc<[u8]>, HeadChunksError> {
        match data {
            ChunkData::Mem(d) => Ok(d.clone()),
            ChunkData::Disk(r) => match &self.disk {
                Some(d) => d.chunk(*r),
                None => Err(HeadChunksError::NoFile(*r)),
            },
        }
    }

    /// Writes `series`' completed chunks still in memory to `chunks_head/` (a no-op without a
    /// writable chunk directory). Called with the series locked, after every change that may cut.
    pub fn persist(&self, series: u64, chunks: &mut SeriesChunks) {
        let Some(disk) = self.disk.as_ref().filter(|d| d.writable()) else {
            return;
        };
        if let Err(e) = chunks.persist(series, disk) {
            self.disk_error(e);
        }
    }

    fn disk_error(&self, e: HeadChunksError) {
        self.disk_errors.fetch_add(1, Ordering::Relaxed);
        *self
            .last_disk_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    }

    /// Failed chunk writes and file deletions so far, and the last error.
    pub fn chunk_disk_errors(&self) -> (u64, Option<String>) {
        (
            self.disk_errors.load(Ordering::Relaxed),
            self.last_disk_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    pub fn chunk_range(&self) -> i64 {
        self.chunk_range
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Samples before this time are out of bounds (their range is in a block).
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Acquire)
    }

    /// The out-of-order window in ms (0: off), see [`ooo`].
    pub fn out_of_order_window(&self) -> i64 {
        self.ooo_window.load(Ordering::Relaxed)
    }

    /// Sets the out-of-order window (ms; 0 or less turns it off). Transactions begun later use it.
    pub fn set_out_of_order_window(&self, ms: i64) {
        self.ooo_window.store(ms.max(0), Ordering::Relaxed);
    }

    /// Raises the minimum valid time (never lowers it).
    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    fn stripe(&self, key: u64) -> &RwLock<Stripe> {
        &self.stripes[(key as usize) & (STRIPES - 1)]
    }

    /// The series with this id.
    pub fn series(&self, id: u64) -> Option<Arc<MemSeries>> {
        let s = self.stripe(id).read().unwrap_or_else(|e| e.into_inner());
        s.by_id.get(&id).map(|s| s.0.clone())
    }

    /// The series with exactly these labels.
    pub fn lookup(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        let pairs = pairs_of(labels);
        self.lookup_hashed(labels_hash(pairs.iter().copied()), &pairs)
    }

    fn lookup_hashed(&self, hash: u64, labels: &[(&str, &str)]) -> Option<Arc<MemSeries>> {
        let s = self.stripe(hash).read().unwrap_or_else(|e| e.into_inner());
        find_in(&s, hash, labels)
    }

    /// The series with these labels, created if new. `labels` must be valid (sorted, unique
    /// names, non-empty values: what [`Labels`] guarantees). Returns the series and whether it was
    /// created by this call.
    pub fn get_or_create(&self, labels: &Labels) -> (Arc<MemSeries>, bool) {
        let pairs = pairs_of(labels);
        let hash = labels_hash(pairs.iter().copied());
        if let Some(s) = self.lookup_hashed(hash, &pairs) {
            return (s, false);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.insert(hash, id, &pairs, false)
    }

    /// Creates the series `id` with `labels` as a WAL series record says (replay). If a series with
    /// the same labels exists under another id, that one is returned (WALs may repeat series).
    pub fn create_with_id(&self, id: u64, labels: &Labels) -> (Arc<MemSeries>, bool) {
        self.create_with_id_pairs(id, &pairs_of(labels))
    }

    /// [`Head::create_with_id`] for labels borrowed from a WAL record; they must be sorted by
    /// unique name with non-empty values (see [`is_canonical`]).
    pub fn create_with_id_pairs(&self, id: u64, labels: &[(&str, &str)]) -> (Arc<MemSeries>, bool) {
        let hash = labels_hash(labels.iter().copied());
        if let Some(s) = self.lookup_hashed(hash, labels) {
            return (s, false);
        }
        self.next_id.fetch_max(id + 1, Ordering::Relaxed);
        self.insert(hash, id, labels, true)
    }

    fn insert(
        &self,
        hash: u64,
        id: u64,
        labels: &[(&str, &str)],
        logged: bool,
    ) -> (Arc<MemSeries>, bool) {
        let interned: Box<[Pair]> = {
            let mut symbols = self.symbols.lock().unwrap_or_else(|e| e.into_inner());
            labels.iter().map(|(n, v)| symbols.pair(n, v)).collect()
        };
        let mut series = MemSeries::new(id, interned, logged);
        series.set_hash_key(hash_key(hash));
        let series = Arc::new(series);
        {
            let mut s = self.stripe(hash).write().unwrap_or_else(|e| e.into_inner());
            // Another thread may have created it between our lookup and this lock.
            if let Some(existing) = find_in(&s, hash, labels) {
                return (existing, false);
            }
            let key = hash_key(hash);
            if s.by_hash.contains(&key) {
                s.collisions.entry(key).or_default().push(series.clone())
            } else {
                s.by_hash.insert(ByHash(series.clone()));
            }
        }
        self.stripe(id)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .replace(ById(series.clone()));
        self.postings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(id, series.labels().iter().map(|p| (&p.name, &p.value)));
        self.num_series.fetch_add(1, Ordering::Relaxed);
        (series, true)
    }

    /// Drops every chunk that ends before `mint` (it is in a block now) and removes series left
    /// without chunks, unless a transaction is staging samples for them. The caller makes sure no
    /// commit runs meanwhile (the database holds its WAL lock).
    pub fn truncate(&self, mint: i64) -> TruncateStats {
        let mut stats = TruncateStats::default();
        let mut removed: Vec<Arc<MemSeries>> = Vec::new();
        for s in self.all_series() {
            let (dropped, gone) = s.truncate(mint);
            stats.chunks_removed += dropped as u64;
            if gone {
                removed.push(s);
            }
        }
        for s in &removed {
            let hash = labels_hash(s.label_strs());
            {
                let mut guard = self.stripe(hash).write().unwrap_or_else(|e| e.into_inner());
                let st = &mut *guard;
                let key = hash_key(hash);
                let is_first = st.by_hash.get(&key).is_some_and(|f| f.0.id == s.id);
                if is_first {
                    st.by_hash.remove(&key);
                    // Promote a colliding series, if any, to the main set.
                    if let Some(list) = st.collisions.get_mut(&key) {
                        if let Some(next) = list.pop() {
                            st.by_hash.insert(ByHash(next));
                        }
                        if list.is_empty() {
                            st.collisions.remove(&key);
                        }
                    }
                } else if let Some(list) = st.collisions.get_mut(&key) {
                    list.retain(|m| m.id != s.id);
                    if list.is_empty() {
                        st.collisions.remove(&key);
                    }
                }
            }
            self.stripe(s.id)
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .by_id
                .remove(&s.id);
        }
        if !removed.is_empty() {
            let mut ids: Vec<u64> = removed.iter().map(|s| s.id).collect();
            ids.sort_unstable();
            self.postings
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .delete(&ids);
            self.num_series
                .fetch_sub(ids.len() as u64, Ordering::Relaxed);
        }
        stats.series_removed = removed.len() as u64;
        self.truncate_tombstones(&removed, mint);
        if !removed.is_empty() {
            // The removed series may have been the last users of some labels.
            drop(removed);
            stats.labels_removed = self
                .symbols
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drop_unused() as u64;
        }
        self.min_time.fetch_max(mint, Ordering::Relaxed);
        if let Some(d) = &self.disk {
            match d.truncate(mint) {
                Ok(n) => stats.chunk_files_removed = n as u64,
                Err(e) => self.disk_error(e),
            }
        }
        stats
    }

    /// Prometheus' `DeleteTombstones` and `TruncateBefore` at head truncation: tombstones of removed
    /// series, and intervals that end before `mint` (their data is gone), are dropped.
    fn truncate_tombstones(&self, removed: &[Arc<MemSeries>], mint: i64) {
        let mut t = self.tombstones.write().unwrap_or_else(|e| e.into_inner());
        if t.is_empty() {
            return;
        }
        let gone: HashSet<u64> = removed.iter().map(|s| s.id).collect();
        let mut kept = Tombstones::new();
        for (id, ivs) in t.iter() {
            if gone.contains(&id) {
                continue;
            }
            for iv in ivs.iter().filter(|iv| iv.maxt >= mint) {
                kept.add(id, *iv);
            }
        }
        *t = kept;
    }

    /// The deletion intervals for the closed range `[mint, maxt]` of the series the matchers select
    /// (Prometheus' `Head.Delete` before it logs them): the range clamped to each series' first and
    /// last committed sample. Series with no committed sample in the range get none. Adds nothing;
    /// see [`Head::add_tombstone`].
    pub fn deletion_intervals(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(u64, Interval)> {
        let mut out = Vec::new();
        if mint > maxt {
            return out;
        }
        for id in self.index().postings_for_matchers(matchers) {
            let Some(s) = self.series(id) else { continue };
            let range = {
                let c = s.lock();
                c.min_time().zip(c.last().map(|l| l.0))
            };
            let Some((t0, t1)) = range else { continue };
            let iv = Interval {
                mint: mint.max(t0),
                maxt: maxt.min(t1),
            };
            // Prometheus logs the clamped interval even when it is empty; it deletes nothing.
            if iv.mint <= iv.maxt {
                out.push((id, iv));
            }
        }
        out
    }

    /// Hides the samples of series `id` in `iv` from reads and from blocks cut from the head. The
    /// interval applies to every sample in it, also one appended later (though the intervals
    /// [`Head::deletion_intervals`] gives end at the series' last sample, which in-order appends
    /// cannot go back to).
    pub fn add_tombstone(&self, id: u64, iv: Interval) {
        self.tombstones
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(id, iv);
    }

    /// The head's tombstones, read-locked: hold the guard only while reading series.
    pub fn tombstones(&self) -> RwLockReadGuard<'_, Tombstones> {
        self.tombstones.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    /// Distinct labels (name-value pairs) interned for the head's series.
    pub fn num_interned_labels(&self) -> usize {
        self.symbols.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Oldest and newest sample time appended, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let (min, max) = (
            self.min_time.load(Ordering::Relaxed),
            self.max_time.load(Ordering::Relaxed),
        );
        (min <= max).then_some((min, max))
    }

    pub(crate) fn update_time_range(&self, min: i64, max: i64) {
        self.min_time.fetch_min(min, Ordering::Relaxed);
        self.max_time.fetch_max(max, Ordering::Relaxed);
    }

    /// A new transaction.
    pub fn appender(&self) -> Appender<'_> {
        Appender::new(self)
    }

    /// Read access to the inverted index.
    pub fn index(&self) -> HeadIndex<'_> {
        HeadIndex(self.postings.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every series, in id order (for statistics and tests).
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let ids = self.index().0.all().to_vec();
        ids.into_iter().filter_map(|id| self.series(id)).collect()
    }

    /// Memory accounting: (encoded chunk bytes, estimated bytes of everything else per series).
    pub fn memory_stats(&self) -> HeadMemory {
        let mut m = HeadMemory::default();
        for s in self.all_series() {
            let c = s.lock();
            m.series += 1;
            for cl in &c.closed {
                match &cl.data {
                    ChunkData::Mem(d) => m.chunk_bytes += d.len() as u64,
                    ChunkData::Disk(_) => m.mapped_chunks += 1,
                }
            }
            if let Some(h) = &c.head {
                m.chunk_bytes += h.app.bytes().len() as u64;
            }
            m.samples += c.num_samples() as u64;
        }
        m
    }
}

/// What [`Head::truncate`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TruncateStats {
    pub chunks_removed: u64,
    pub series_removed: u64,
    /// `chunks_head/` files deleted.
    pub chunk_files_removed: u64,
    /// Interned labels no series uses any more, forgotten.
    pub labels_removed: u64,
}

/// Counts for `tsdbctl` and the memory figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadMemory {
    pub series: u64,
    pub samples: u64,
    /// Encoded bytes of the chunks held in memory (open chunks, chunks not written out).
    pub chunk_bytes: u64,
    /// Completed chunks in `chunks_head/` (only their 32-byte descriptors are in memory).
    pub mapped_chunks: u64,
}

/// The head's label interner: every distinct label name once, every distinct (name, value) pair
/// once as a [`Pair`] that the series having it share.
#[derive(Default)]
struct Symbols {
    by_name: FastMap<Sym, FastMap<Sym, Pair>>,
}

impl Symbols {
    /// The interned pair `name="value"`, created if new.
    fn pair(&mut self, name: &str, value: &str) -> Pair {
        if let Some(p) = self.by_name.get(name).and_then(|m| m.get(value)) {
            return p.clone();
        }
        let name = match self.by_name.get_key_value(name) {
            Some((n, _)) => n.clone(),
            None => Sym::from(name),
        };
        let pair = Arc::new(LabelPair {
            name: name.clone(),
            value: Sym::from(value),
        });
        self.by_name
            .entry(name)
            .or_default()
            .insert(pair.value.clone(), pair.clone());
        pair
    }

    /// Forgets the pairs no series holds any more (and names left without pairs); returns how
    /// many pairs. A series still referenced elsewhere (a query, a transaction) keeps its pairs
    /// alive and interned. Without this, a head with churning label values (pod names, build
    /// ids) would keep every value it ever saw.
    fn drop_unused(&mut self) -> usize {
        let mut dropped = 0;
        self.by_name.retain(|_, values| {
            let before = values.len();
            values.retain(|_, p| Arc::strong_count(p) > 1);
            dropped += before - values.len();
            if values.len() < values.capacity() / 4 {
                values.shrink_to_fit();
            }
            !values.is_empty()
        });
        dropped
    }

    fn len(&self) -> usize {
        self.by_name.values().map(|v| v.len()).sum()
    }
}

fn same_labels(a: &[Pair], b: &[(&str, &str)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|(p, (bn, bv))| *p.name == **bn && *p.value == **bv)
}

fn find_in(s: &Stripe, hash: u64, labels: &[(&str, &str)]) -> Option<Arc<MemSeries>> {
    let key = hash_key(hash);
    let first = &s.by_hash.get(&key)?.0;
    if same_labels(first.labels(), labels) {
        return Some(first.clone());
    }
    s.collisions
        .get(&key)?
        .iter()
        .find(|m| same_labels(m.labels(), labels))
        .cloned()
}

fn pairs_of(labels: &Labels) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

/// Whether borrowed labels are as a [`Labels`] holds them: sorted by unique name, values non-empty.
pub fn is_canonical(labels: &[(&str, &str)]) -> bool {
    labels.windows(2).all(|w| w[0].0 < w[1].0) && labels.iter().all(|(_, v)| !v.is_empty())
}

/// The head's inverted index, read-locked for the duration of a lookup.
pub struct HeadIndex<'a>(RwLockReadGuard<'a, MemPostings>);

impl HeadIndex<'_> {
    pub fn label_names(&self) -> Vec<String> {
        self.0.label_names()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.0.label_values(name)
    }

    pub fn postings_for_matchers(&self, matchers: &[crate::labels::Matcher]) -> Vec<u64> {
        crate::index::postings_for_matchers(&*self.0, matchers)
    }
}

impl IndexReader for HeadIndex<'_> {
    fn label_values(&self, name: &str) -> Vec<String> {
        self.0.label_values(name)
    }

    fn postings(&self, name: &str, values: &[&str]) -> Box<dyn Postings + '_> {
        self.0.postings(name, values)
    }

    fn all_postings(&self) -> Box<dyn Postings + '_> {
        self.0.all_postings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Matcher;

    #[test]
    fn get_or_create_is_idempotent_and_indexed() {
        let h = Head::new(7_200_000, 2);
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b")]);
        let (sa, created) = h.get_or_create(&a);
        assert!(created);
        let (sa2, created) = h.get_or_create(&a);
        assert!(!created);
        assert_eq!(sa.id, sa2.id);
        let (sb, _) = h.get_or_create(&b);
        assert_ne!(sa.id, sb.id);
        assert_eq!(h.num_series(), 2);
        let ix = h.index();
        assert_eq!(ix.label_values("job"), vec!["a", "b"]);
        assert_eq!(
            ix.postings_for_matchers(&[Matcher::equal("job", "b")]),
            vec![sb.id]
        );
        assert_eq!(h.series(sb.id).unwrap().to_labels(), b);
    }

    #[test]
    fn series_share_interned_pairs_until_no_series_uses_them() {
        let h = Head::new(7_200_000, 1);
        let a = Labels::from_pairs(&[("__name__", "m"), ("job", "x"), ("s", "a")]);
        let b = Labels::from_pairs(&[("__name__", "m"), ("job", "x"), ("s", "b")]);
        let (sa, _) = h.get_or_create(&a);
        let mut app = h.appender();
        app.append(&b, 10_000_000, 1.0).unwrap();
        commit(app);
        let sb = h.lookup(&b).unwrap();
        let (la, lb) = (sa.labels(), sb.labels());
        assert!(Arc::ptr_eq(&la[0], &lb[0]) && Arc::ptr_eq(&la[1], &lb[1]));
        assert!(!Arc::ptr_eq(&la[2], &lb[2]) && Arc::ptr_eq(&la[2].name, &lb[2].name));
        assert_eq!(h.num_interned_labels(), 4);
        assert_eq!(sa.cmp_labels(&sb), a.cmp(&b));
        assert_eq!(sb.cmp_labels(&sa), b.cmp(&a));
        assert_eq!(sa.label_strs().collect::<Vec<_>>(), pairs_of(&a));
        // `a` has no samples: truncation removes it, but a reader still holds it, so its label
        // s="a" stays interned and a new series with it gets the same pair.
        let stats = h.truncate(1000);
        assert_eq!((stats.series_removed, stats.labels_removed), (1, 0));
        let (sa2, created) = h.get_or_create(&a);
        assert!(created && Arc::ptr_eq(&sa2.labels()[2], &la[2]));
        drop((sa, sa2));
        let stats = h.truncate(2000);
        assert_eq!((stats.series_removed, stats.labels_removed), (1, 1));
        assert_eq!(h.num_interned_labels(), 3);
        assert_eq!(h.index().label_values("s"), vec!["b"]);
        let (sa3, _) = h.get_or_create(&a);
        assert_eq!(sa3.to_labels(), a);
        assert_eq!(h.num_interned_labels(), 4);
    }

    proptest::proptest! {
        #[test]
        fn cmp_labels_orders_as_labels_do(
            sets in proptest::collection::vec(
                proptest::collection::btree_map("[a-c_]{1,2}", "[xy]{1,2}", 0..4),
                1..12,
            ),
        ) {
            let h = Head::new(7_200_000, 1);
            let labels: Vec<Labels> = sets
                .iter()
                .map(|m| {
                    let p: Vec<(&str, &str)> =
                        m.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    Labels::from_pairs(&p)
                })
                .collect();
            let series: Vec<Arc<MemSeries>> =
                labels.iter().map(|l| h.get_or_create(l).0).collect();
            for (x, sx) in labels.iter().zip(&series) {
                proptest::prop_assert_eq!(&sx.to_labels(), x);
                for (y, sy) in labels.iter().zip(&series) {
                    proptest::prop_assert_eq!(sx.cmp_labels(sy), x.cmp(y));
                }
            }
        }
    }

    #[test]
    fn series_whose_hash_keys_collide_are_both_found() {
        let h = Head::new(7_200_000, 1);
        // Same stripe (low bits) and same key (high half), different labels.
        let (h1, h2) = ((7u64 << 32) | 5, (7u64 << 32) | (5 + STRIPES as u64));
        let (a, b) = ([("s", "a")], [("s", "b")]);
        let (sa, created_a) = h.insert(h1, 1, &a, false);
        let (sb, created_b) = h.insert(h2, 2, &b, false);
        assert!(created_a && created_b);
        assert_eq!(h.lookup_hashed(h1, &a).unwrap().id, sa.id);
        assert_eq!(h.lookup_hashed(h2, &b).unwrap().id, sb.id);
        assert!(h.lookup_hashed(h2, &[("s", "c")]).is_none());
        let (again, created) = h.insert(h2, 3, &b, false);
        assert!(!created && again.id == sb.id);
        assert_eq!(h.series(2).unwrap().id, 2);
    }

    #[test]
    fn concurrent_creation_yields_one_series() {
        let h = Head::new(7_200_000, 2);
        let ids: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let l = Labels::from_pairs(&[("__name__", "x")]);
                        h.get_or_create(&l).0.id
                    })
                })
                .collect();
            hs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(h.num_series(), 1);
    }

    fn commit(app: Appender<'_>) -> CommitStats {
        let mut app = app;
        app.revalidate();
        app.apply()
    }

    #[test]
    fn truncate_drops_old_chunks_and_empty_series() {
        let h = Head::new(7_200_000, 2);
        let old = Labels::from_pairs(&[("__name__", "m"), ("s", "old")]);
        let live = Labels::from_pairs(&[("__name__", "m"), ("s", "live")]);
        let mut app = h.appender();
        for i in 0..1000i64 {
            if i < 400 {
                app.append(&old, i * 15_000, 1.0).unwrap();
            }
            app.append(&live, i * 15_000, 2.0).unwrap();
        }
        app.append(&live, 30_000_000, 3.0).unwrap();
        commit(app);
        let before = h.memory_stats();
        let stats = h.truncate(7_500_000);
        assert_eq!(stats.series_removed, 1);
        assert!(stats.chunks_removed > 2);
        assert!(h.lookup(&old).is_none());
        assert_eq!(h.num_series(), 1);
        assert_eq!(h.index().label_values("s"), vec!["live"]);
        let after = h.memory_stats();
        assert!(after.samples < before.samples);
        // Every sample at or after the truncation time is still there.
        let s = h.lookup(&live).unwrap();
        let c = s.lock();
        let first = c.min_time().unwrap();
        assert!(first <= 7_500_000 && first > 7_500_000 - 3 * 3600 * 1000);
        assert_eq!(c.last().unwrap().0, 30_000_000);
    }

    #[test]
    fn a_series_with_staged_samples_is_not_removed() {
        let h = Head::new(7_200_000, 1);
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let mut app = h.appender();
        app.append(&l, 1000, 1.0).unwrap();
        commit(app);
        let mut app = h.appender();
        app.append(&l, 2000, 2.0).unwrap();
        let stats = h.truncate(1_000_000);
        assert_eq!(stats.series_removed, 0);
        assert_eq!(commit(app).appended, 1);
        assert_eq!(h.lookup(&l).unwrap().lock().num_samples(), 1);
    }

    #[test]
    fn deletion_intervals_are_clamped_to_each_series() {
        let h = Head::new(7_200_000, 1);
        let a = Labels::from_pairs(&[("__name__", "m"), ("s", "a")]);
        let b = Labels::from_pairs(&[("__name__", "m"), ("s", "b")]);
        let other = Labels::from_pairs(&[("__name__", "x")]);
        let mut app = h.appender();
        for t in 10..=20 {
            app.append(&a, t * 1000, 1.0).unwrap();
            app.append(&other, t * 1000, 1.0).unwrap();
        }
        for t in 50..=60 {
            app.append(&b, t * 1000, 2.0).unwrap();
        }
        commit(app);
        let (ia, ib) = (h.lookup(&a).unwrap().id, h.lookup(&b).unwrap().id);
        let m = [Matcher::equal("__name__", "m")];
        let iv = |mint, maxt| Interval { mint, maxt };
        assert_eq!(
            h.deletion_intervals(&m, i64::MIN, i64::MAX),
            vec![(ia, iv(10_000, 20_000)), (ib, iv(50_000, 60_000))]
        );
        // Series b has nothing in range: no interval (Prometheus would log an empty one).
        assert_eq!(
            h.deletion_intervals(&m, 15_000, 30_000),
            vec![(ia, iv(15_000, 20_000))]
        );
        assert!(h.deletion_intervals(&m, 30_000, 20_000).is_empty());
        assert!(h.deletion_intervals(&[], i64::MIN, i64::MAX).is_empty());
        // A series with only staged samples has nothing to delete.
        let staged = Labels::from_pairs(&[("__name__", "m"), ("s", "c")]);
        let mut app = h.appender();
        app.append(&staged, 1000, 1.0).unwrap();
        assert_eq!(h.deletion_intervals(&m, i64::MIN, i64::MAX).len(), 2);
        app.rollback();
    }

    #[test]
    fn truncation_drops_tombstones_of_removed_data() {
        let h = Head::new(7_200_000, 1);
        let old = Labels::from_pairs(&[("__name__", "m"), ("s", "old")]);
        let live = Labels::from_pairs(&[("__name__", "m"), ("s", "live")]);
        let mut app = h.appender();
        for i in 0..1000i64 {
            if i < 400 {
                app.append(&old, i * 15_000, 1.0).unwrap();
            }
            app.append(&live, i * 15_000, 2.0).unwrap();
        }
        commit(app);
        let (io, il) = (h.lookup(&old).unwrap().id, h.lookup(&live).unwrap().id);
        let iv = |mint, maxt| Interval { mint, maxt };
        h.add_tombstone(io, iv(0, 100_000));
        h.add_tombstone(il, iv(0, 100_000));
        h.add_tombstone(il, iv(7_000_000, 7_300_000));
        h.add_tombstone(il, iv(8_000_000, 9_000_000));
        assert_eq!(h.tombstones().total(), 4);
        h.truncate(7_200_000);
        // The removed series' tombstones go; of the live one's, those ending before the new
        // minimum time go, one reaching past it stays whole.
        let t = h.tombstones();
        assert!(t.get(io).is_empty());
        assert_eq!(
            t.get(il),
            [iv(7_000_000, 7_300_000), iv(8_000_000, 9_000_000)]
        );
    }

    #[test]
    fn staged_samples_of_a_removed_series_move_to_its_successor() {
        let h = Head::new(7_200_000, 1);
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let (s, _) = h.get_or_create(&l);
        assert_eq!(h.truncate(10).series_removed, 1);
        assert!(s.is_removed());
        let mut app = h.appender();
        app.shards_mut()[0].append(&s, 5000, 7.0).unwrap();
        assert_eq!(commit(app).appended, 1);
        let fresh = h.lookup(&l).unwrap();
        assert_ne!(fresh.id, s.id);
        assert_eq!(fresh.lock().last().map(|x| x.0), Some(5000));
    }

    #[test]
    fn completed_chunks_go_to_disk_and_failed_writes_are_retried_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks_head");
        let (disk, _) = ChunkDiskMapper::open(&cdir, true, i64::MIN).unwrap();
        let mut h = Head::new(7_200_000, 1);
        h.set_chunk_disk(disk);
        let l = Labels::from_pairs(&[("__name__", "m")]);
        let add = |h: &Head, from: i64, to: i64| {
            let mut app = h.appender();
            for i in from..to {
                app.append(&l, i * 15_000, i as f64).unwrap();
            }
            commit(app);
        };
        add(&h, 0, 130);
        let on_disk = |h: &Head| {
            let s = h.lookup(&l).unwrap();
            let c = s.lock();
            c.closed
                .iter()
                .map(|c| matches!(c.data, ChunkData::Disk(_)))
                .collect::<Vec<_>>()
        };
        assert_eq!(on_disk(&h), vec![true]);
        assert_eq!(h.memory_stats().mapped_chunks, 1);
        // The directory vanishes: the next cut cannot start a file (the active one was finished
        // by truncation), so the chunk stays in memory.
        assert_eq!(h.truncate(0).chunk_files_removed, 0);
        std::fs::remove_dir_all(&cdir).unwrap();
        add(&h, 130, 250);
        assert_eq!(on_disk(&h), vec![true, false]);
        assert_eq!(h.chunk_disk_errors().0, 1);
        // Back: the next cut writes both, oldest first.
        std::fs::create_dir_all(&cdir).unwrap();
        add(&h, 250, 370);
        assert_eq!(on_disk(&h), vec![true, true, true]);
        let s = h.lookup(&l).unwrap();
        let chunks: Vec<ClosedChunk> = s.lock().closed.clone();
        let mut t = Vec::new();
        for c in chunks.iter().skip(1) {
            let data = h.chunk_data(&c.data).unwrap();
            for x in crate::chunk::XorIterator::new(&data).unwrap() {
                t.push(x.unwrap().0);
            }
        }
        assert_eq!(t.first(), Some(&(120 * 15_000)));
        assert!(t.windows(2).all(|w| w[1] == w[0] + 15_000));
        // The first chunk's file was unlinked with the directory; its map still reads it.
        assert!(h.chunk_data(&chunks[0].data).is_ok());
    }
}
