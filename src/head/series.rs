//! One in-memory series: its interned labels and its chunks.
//!
//! Chunk cutting follows Prometheus 2.42 (`tsdb/head_append.go`, `appendPreprocessor`): a new head chunk
//! is cut when the sample reaches the chunk's predicted end time (`next_at`, first the end of the
//! sample's 2 h chunk range, re-predicted at 30 samples so that the range fills with ~120-sample chunks)
//! or when the chunk already holds 240 samples. The same rule makes our chunks, and so our compression
//! and our blocks, the same as Prometheus' for the same samples.
//!
//! A completed chunk is written to `chunks_head/` ([`super::chunks_disk`]) when the head has a
//! writable chunk directory; the series then keeps only its reference, time range and sample count
//! (32 bytes instead of the ~150 bytes of a 120-sample chunk plus its allocation).

use crate::chunk::XorAppender;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Interned label string.
pub type Sym = Arc<str>;

/// One label (name and value), interned by the head so that every series having it shares one
/// copy: a series holds an 8-byte [`Pair`] a label instead of two 16-byte [`Sym`]s, 140 bytes less
/// for the 6 labels of a typical scraped series (docs/performance.md, session 6). Pairs are shared
/// widely: `job`, `instance` within a target, `__name__` and most other labels across targets.
#[derive(Debug)]
pub struct LabelPair {
    pub name: Sym,
    pub value: Sym,
}

/// Handle to an interned [`LabelPair`]. Two series with the same label have the same handle
/// (while the head's interner holds it), so comparing handles by pointer skips comparing strings.
pub type Pair = Arc<LabelPair>;

/// Target samples per chunk (Prometheus' `samplesPerChunk`).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Where a completed chunk's bytes are.
#[derive(Clone, Debug)]
pub enum ChunkData {
    /// In memory: a transaction's staged chunk, a head without a chunk directory (or opened
    /// read-only), or a chunk whose write failed (retried at the series' next cut).
    Mem(Arc<[u8]>),
    /// In a `chunks_head/` file, read through [`super::Head::chunk_data`].
    Disk(super::chunks_disk::ChunkRef),
}

impl ChunkData {
    /// The bytes, when they are in memory.
    pub fn in_memory(&self) -> Option<&Arc<[u8]>> {
        match self {
            ChunkData::Mem(d) => Some(d),
            ChunkData::Disk(_) => None,
        }
    }
}

/// A completed chunk: immutable.
#[derive(Clone, Debug)]
pub struct ClosedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub num_samples: u16,
    pub data: ChunkData,
}

/// The open chunk samples are appended to.
#[derive(Debug)]
pub struct HeadChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub app: XorAppender,
}

/// The mutable part of a series, behind its mutex.
#[derive(Debug)]
pub struct SeriesChunks {
    pub closed: Vec<ClosedChunk>,
    pub head: Option<HeadChunk>,
    /// When the head chunk must be cut at the latest (Prometheus' `nextAt`).
    next_at: i64,
    /// End of the last chunk mapped from `chunks_head/` on open (Prometheus' `mmMaxTime`): while the
    /// series has no open chunk, samples up to here are out of order (replay skips them: they are
    /// in that chunk).
    mapped_max_t: i64,
    /// Out-of-order samples accepted within the database's out-of-order window, sorted by time with
    /// unique timestamps ([`super::ooo`]). Boxed so that series without any cost one pointer.
    pub ooo: Option<Box<Vec<(i64, f64)>>>,
}

/// Why a sample was not appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Older than the series' newest sample.
    OutOfOrder,
    /// Same timestamp as the newest sample, different value.
    Duplicate,
    /// Older than the head's minimum valid time: that range is in a block already.
    OutOfBounds,
}

/// What [`check_after`] says of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Append,
    /// Same timestamp and same value bits as the newest sample: accepted, nothing to store.
    NoOp,
    Reject(Reject),
}

/// The decision rule shared by appenders (against committed and pending samples) and commit.
#[inline]
pub fn check_after(last: Option<(i64, u64)>, t: i64, v: f64) -> Check {
    match last {
        None => Check::Append,
        Some((lt, _)) if t > lt => Check::Append,
        Some((lt, lv)) if t == lt => {
            if v.to_bits() == lv {
                Check::NoOp
            } else {
                Check::Reject(Reject::Duplicate)
            }
        }
        Some(_) => Check::Reject(Reject::OutOfOrder),
    }
}

impl SeriesChunks {
    /// No chunks.
    pub fn empty() -> SeriesChunks {
        SeriesChunks::new()
    }

    fn new() -> SeriesChunks {
        SeriesChunks {
            closed: Vec::new(),
            head: None,
            next_at: i64::MIN,
            mapped_max_t: i64::MIN,
            ooo: None,
        }
    }

    /// Inserts an out-of-order sample into the series' out-of-order buffer, in time order. A
    /// sample whose timestamp is there already is dropped whatever its value (false): the first
    /// one stays, as in Prometheus' OOO head chunk (`OOOChunk.Insert`).
    pub fn insert_ooo(&mut self, t: i64, v: f64) -> bool {
        let buf = self.ooo.get_or_insert_with(Default::default);
        // Samples mostly arrive late but in order among themselves: check the end first.
        if buf.last().is_none_or(|&(lt, _)| lt < t) {
            buf.push((t, v));
            return true;
        }
        match buf.binary_search_by_key(&t, |&(st, _)| st) {
            Ok(_) => false,
            Err(at) => {
                buf.insert(at, (t, v));
                true
            }
        }
    }

    /// The out-of-order samples, in time order.
    pub fn ooo_samples(&self) -> &[(i64, f64)] {
        self.ooo.as_deref().map_or(&[], |b| b.as_slice())
    }

    /// Attaches the chunks found in `chunks_head/` for this series on open, before WAL replay.
    pub fn attach_mapped(&mut self, chunks: &[super::chunks_disk::MappedChunk]) {
        self.closed.extend(chunks.iter().map(|c| ClosedChunk {
            min_t: c.min_t,
            max_t: c.max_t,
            num_samples: c.num_samples,
            data: ChunkData::Disk(c.chunk_ref),
        }));
        if let Some(last) = chunks.last() {
            self.mapped_max_t = self.mapped_max_t.max(last.max_t);
        }
    }

    /// End of the last chunk attached by [`SeriesChunks::attach_mapped`] (`i64::MIN` if none).
    pub fn mapped_max_t(&self) -> i64 {
        self.mapped_max_t
    }

    /// Writes the completed chunks still in memory (oldest first) to `disk`, replacing their bytes
    /// by references. Cheap when there is nothing to write (it looks at the last chunk only). On a
    /// write error the chunk stays in memory and a later call retries it.
    pub fn persist(
        &mut self,
        series: u64,
        disk: &super::chunks_disk::ChunkDiskMapper,
    ) -> Result<usize, super::chunks_disk::HeadChunksError> {
        let in_mem = self
            .closed
            .iter()
            .rev()
            .take_while(|c| matches!(c.data, ChunkData::Mem(_)))
            .count();
        let start = self.closed.len() - in_mem;
        for c in &mut self.closed[start..] {
            if let ChunkData::Mem(d) = &c.data {
                let r = disk.write(series, c.min_t, c.max_t, d)?;
                c.data = ChunkData::Disk(r);
            }
        }
        Ok(in_mem)
    }

    /// The newest sample's timestamp and value bits.
    pub fn last(&self) -> Option<(i64, u64)> {
        // The open chunk's appender has the value bits (the duplicate-sample rule compares bits).
        self.head
            .as_ref()
            .map(|h| (h.max_t, h.app.last_value_bits()))
    }

    /// The oldest sample's timestamp, out-of-order samples included (one may be older than the
    /// first in-order sample).
    pub fn min_time(&self) -> Option<i64> {
        let in_order = self
            .closed
            .first()
            .map(|c| c.min_t)
            .or(self.head.as_ref().map(|h| h.min_t));
        match (in_order, self.ooo_samples().first()) {
            (Some(a), Some(&(b, _))) => Some(a.min(b)),
            (a, b) => a.or(b.map(|s| s.0)),
        }
    }

    pub fn num_samples(&self) -> usize {
        self.ooo_samples().len()
            + self.head.as_ref().map_or(0, |h| h.app.num_samples())
            + self
                .closed
                .iter()
                .map(|c| usize::from(c.num_samples))
                .sum::<usize>()
    }

    /// Appends a sample, applying Prometheus' duplicate and ordering rules. `chunk_range` is the
    /// head's chunk range (the minimum block range, 2 h by default).
    #[inline]
    pub fn append(&mut self, t: i64, v: f64, chunk_range: i64) -> Check {
        let check = check_after(self.last(), t, v);
        if check != Check::Append {
            return check;
        }
        let cut = match &mut self.head {
            None if t <= self.mapped_max_t => return Check::Reject(Reject::OutOfOrder),
            None => true,
            Some(h) => {
                let n = h.app.num_samples();
                if n == SAMPLES_PER_CHUNK / 4 {
                    self.next_at = compute_chunk_end_time(h.min_t, h.max_t, self.next_at);
                }
                t >= self.next_at || n >= SAMPLES_PER_CHUNK * 2
            }
        };
        if cut {
            self.cut(t, chunk_range);
        }
        if let Some(h) = &mut self.head {
            h.app.append(t, v);
            h.max_t = t;
        }
        Check::Append
    }

    /// Samples at or before this time are out of order (`i64::MIN` when the series has an open
    /// chunk: then [`SeriesChunks::last`] decides): the rule [`SeriesChunks::append`] applies to a
    /// series whose chunks were mapped from `chunks_head/` on open.
    pub fn append_floor(&self) -> i64 {
        if self.head.is_some() {
            i64::MIN
        } else {
            self.mapped_max_t
        }
    }

    /// A staging copy: the open head chunk and cutting state, no completed chunks. Samples appended
    /// to the fork continue this series exactly as they would continue the series itself.
    pub fn fork(&self) -> SeriesChunks {
        SeriesChunks {
            closed: Vec::new(),
            head: self.head.as_ref().map(|h| HeadChunk {
                min_t: h.min_t,
                max_t: h.max_t,
                app: h.app.clone(),
            }),
            next_at: self.next_at,
            mapped_max_t: self.mapped_max_t,
            ooo: None,
        }
    }

    /// What a fork must still match to be absorbed: (completed chunks, samples in the open chunk,
    /// its newest timestamp).
    pub fn version(&self) -> (usize, usize, i64) {
        (
            self.closed.len(),
            self.head.as_ref().map_or(0, |h| h.app.num_samples()),
            self.head.as_ref().map_or(i64::MIN, |h| h.max_t),
        )
    }

    /// Takes over a fork made at the current [`SeriesChunks::version`]: its completed chunks are
    /// appended and its open chunk replaces ours. No sample is re-encoded.
    pub fn absorb(&mut self, fork: SeriesChunks) {
        self.closed.extend(fork.closed);
        self.head = fork.head;
        self.next_at = fork.next_at;
    }

    /// Removes chunks whose samples all lie before `mint`; returns how many.
    pub fn truncate_before(&mut self, mint: i64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|c| c.max_t >= mint);
        let mut dropped = before - self.closed.len();
        if self.head.as_ref().is_some_and(|h| h.max_t < mint) {
            self.head = None;
            dropped += 1;
        }
        if let Some(buf) = &mut self.ooo {
            // Written to the block with the in-order samples of their range.
            buf.retain(|&(t, _)| t >= mint);
            if buf.is_empty() {
                self.ooo = None;
            }
        }
        dropped
    }

    /// [`SeriesChunks::append`], rejecting samples before `min_valid` as out of bounds.
    #[inline]
    pub fn append_valid(&mut self, t: i64, v: f64, chunk_range: i64, min_valid: i64) -> Check {
        if t < min_valid {
            return Check::Reject(Reject::OutOfBounds);
        }
        self.append(t, v, chunk_range)
    }

    fn cut(&mut self, t: i64, chunk_range: i64) {
        let mut prev_len = None;
        if let Some(old) = self.head.take() {
            let num_samples = u16::try_from(old.app.num_samples()).unwrap_or(u16::MAX);
            let bytes = old.app.into_bytes();
            prev_len = Some(bytes.len());
            self.closed.push(ClosedChunk {
                min_t: old.min_t,
                max_t: old.max_t,
                num_samples,
                data: ChunkData::Mem(Arc::from(bytes)),
            });
        }
        // Size the new chunk like the one just completed: the series' next chunk compresses about
        // as well, and growing by doubling left ~40% of every open chunk unused (~400 bytes a
        // series on the benchmark data).
        let app = match prev_len {
            Some(len) => {
                let mut buf = Vec::with_capacity(len + len / 16 + 8);
                buf.extend_from_slice(&[0, 0]);
                XorAppender::from_bytes(buf).unwrap_or_default()
            }
            None => XorAppender::new(),
        };
        self.head = Some(HeadChunk {
            min_t: t,
            max_t: i64::MIN,
            app,
        });
        self.next_at = range_for_timestamp(t, chunk_range);
    }
}

/// End of the chunk range `t` falls in (Prometheus' `rangeForTimestamp`).
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width + width
}

/// Prometheus' `computeChunkEndTime`: the end time that spreads the rest of the range evenly over
/// chunks of the rate seen so far (called at a quarter of a chunk).
pub fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    // Go's integer division truncates toward zero, as Rust's does.
    let denom = (cur - start + 1).saturating_mul(4);
    if denom <= 0 {
        return max;
    }
    let n = (max - start) / denom;
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

/// An in-memory series.
#[derive(Debug)]
pub struct MemSeries {
    pub id: u64,
    labels: Box<[Pair]>,
    chunks: Mutex<SeriesChunks>,
    /// [`LOGGED`], [`REMOVED`] and the count of [`PENDING`] transactions in one word: 4 bytes
    /// where three atomics took 6, which with the smaller chunk state above makes the series 176
    /// bytes (192 with its `Arc` counts: one allocator size class below the former 224).
    state: AtomicU32,
    /// The head's key for this series in its label-hash set (part of the labels' hash), kept in
    /// what would be padding so that the set needs no key of its own.
    hash_key: u32,
}

/// [`MemSeries`] state bit: a WAL series record for this series has been written.
const LOGGED: u32 = 1 << 31;
/// [`MemSeries`] state bit, set under the chunks lock: head truncation removed the series.
const REMOVED: u32 = 1 << 30;
/// [`MemSeries`] state bits counting the transactions staging samples for the series (it is not
/// garbage-collected meanwhile). Bounded by the transactions open at once, far below 2^30.
const PENDING: u32 = REMOVED - 1;

impl MemSeries {
    pub fn new(id: u64, labels: Box<[Pair]>, logged: bool) -> MemSeries {
        MemSeries {
            id,
            labels,
            chunks: Mutex::new(SeriesChunks::new()),
            state: AtomicU32::new(if logged { LOGGED } else { 0 }),
            hash_key: 0,
        }
    }

    pub(crate) fn set_hash_key(&mut self, key: u32) {
        self.hash_key = key;
    }

    pub(crate) fn hash_key(&self) -> &u32 {
        &self.hash_key
    }

    /// The interned labels, sorted by name.
    pub fn labels(&self) -> &[Pair] {
        &self.labels
    }

    /// The labels as (name, value) strings, sorted by name.
    pub fn label_strs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        self.labels.iter().map(|p| (&*p.name, &*p.value))
    }

    /// The label set as an owned [`crate::labels::Labels`].
    pub fn to_labels(&self) -> crate::labels::Labels {
        crate::labels::Labels::from_sorted_unchecked(
            self.labels
                .iter()
                .map(|p| crate::labels::Label::new(&*p.name, &*p.value))
                .collect(),
        )
    }

    /// Orders two series as their [`crate::labels::Labels`] are ordered, without building them.
    /// Labels are interned as pairs and names as strings, so the labels two series share (most of
    /// them, within one selection) compare by pointer; only the differing ones compare strings.
    pub fn cmp_labels(&self, other: &MemSeries) -> std::cmp::Ordering {
        use std::cmp::Ordering::Equal;
        for (a, b) in self.labels.iter().zip(other.labels.iter()) {
            if Arc::ptr_eq(a, b) {
                continue;
            }
            if !Arc::ptr_eq(&a.name, &b.name) {
                match a.name.cmp(&b.name) {
                    Equal => {}
                    o => return o,
                }
            }
            match a.value.cmp(&b.value) {
                Equal => {}
                o => return o,
            }
        }
        self.labels.len().cmp(&other.labels.len())
    }

    /// Locks the chunks. A poisoned lock (a panic elsewhere while appending) still holds consistent
    /// chunks — every mutation leaves them valid — so it is recovered rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, SeriesChunks> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_logged(&self) -> bool {
        self.state.load(Ordering::Acquire) & LOGGED != 0
    }

    pub fn set_logged(&self) {
        self.state.fetch_or(LOGGED, Ordering::Release);
    }

    pub(crate) fn pin(&self) {
        self.state.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn unpin(&self) {
        self.state.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether head truncation removed this series (a transaction holding it must re-resolve it).
    pub fn is_removed(&self) -> bool {
        self.state.load(Ordering::Acquire) & REMOVED != 0
    }

    /// Drops chunks that end before `mint`; if nothing is left and no transaction stages samples for
    /// the series, marks it removed and returns true (the caller unlinks it from the head).
    pub(crate) fn truncate(&self, mint: i64) -> (usize, bool) {
        let mut c = self.lock();
        let dropped = c.truncate_before(mint);
        let gone = c.closed.is_empty()
            && c.head.is_none()
            && c.ooo.is_none()
            // Removed only if no transaction pins it, in one step with the check.
            && self
                .state
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |st| {
                    (st & PENDING == 0).then_some(st | REMOVED)
                })
                .is_ok();
        (dropped, gone)
    }

    /// Approximate heap bytes of this series beyond its encoded chunk bytes (for memory figures).
    pub fn overhead_bytes(&self) -> usize {
        let c = self.lock();
        std::mem::size_of::<MemSeries>()
            + self.labels.len() * std::mem::size_of::<Pair>()
            + c.closed.capacity() * std::mem::size_of::<ClosedChunk>()
            + c.closed
                .iter()
                .filter(|c| matches!(c.data, ChunkData::Mem(_)))
                .count()
                * 16
            + c.ooo.as_ref().map_or(0, |b| {
                std::mem::size_of::<Vec<(i64, f64)>>() + b.capacity() * 16
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: i64 = 2 * 3600 * 1000;

    #[test]
    fn chunk_end_time_matches_prometheus() {
        // 30 samples at 15 s from the start of a 2 h range: 8 chunks of 15 min predicted.
        let start = 0;
        let cur = 29 * 15_000;
        let end = compute_chunk_end_time(start, cur, RANGE);
        let n = RANGE / ((cur + 1) * 4);
        assert_eq!(end, RANGE / n);
        assert_eq!(compute_chunk_end_time(0, RANGE, RANGE), RANGE);
    }

    #[test]
    fn cuts_chunks_of_120_at_15s_across_a_2h_range() {
        let mut s = SeriesChunks::new();
        for i in 0..480 {
            assert_eq!(s.append(i * 15_000, i as f64, RANGE), Check::Append);
        }
        let sizes: Vec<usize> = s
            .closed
            .iter()
            .map(|c| match &c.data {
                ChunkData::Mem(d) => usize::from(u16::from_be_bytes([d[0], d[1]])),
                ChunkData::Disk(_) => unreachable!("no chunk directory"),
            })
            .collect();
        assert_eq!(sizes, vec![120, 120, 120]);
        assert_eq!(s.head.as_ref().unwrap().app.num_samples(), 120);
        assert_eq!(s.num_samples(), 480);
    }

    /// A head holds one per series: with its two `Arc` counts a series must stay within the
    /// allocators' 192-byte size class (mimalloc's bins go 160, 192, 224; glibc rounds to 16).
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_series_fits_192_bytes_with_its_arc_counts() {
        assert!(std::mem::size_of::<MemSeries>() + 16 <= 192);
        assert!(std::mem::size_of::<crate::chunk::XorAppender>() <= 72);
    }

    #[test]
    fn duplicate_and_out_of_order_rules() {
        let mut s = SeriesChunks::new();
        assert_eq!(s.append(10, 1.0, RANGE), Check::Append);
        assert_eq!(s.append(10, 1.0, RANGE), Check::NoOp);
        assert_eq!(s.append(10, 2.0, RANGE), Check::Reject(Reject::Duplicate));
        assert_eq!(s.append(9, 2.0, RANGE), Check::Reject(Reject::OutOfOrder));
        let nan = f64::from_bits(0x7ff0000000000002);
        assert_eq!(s.append(11, nan, RANGE), Check::Append);
        assert_eq!(s.append(11, nan, RANGE), Check::NoOp);
        assert_eq!(s.num_samples(), 2);
    }

    #[test]
    fn cuts_at_the_range_boundary() {
        let mut s = SeriesChunks::new();
        s.append(RANGE - 1, 1.0, RANGE);
        s.append(RANGE, 1.0, RANGE);
        assert_eq!(s.closed.len(), 1);
    }

    #[test]
    fn samples_up_to_the_last_mapped_chunk_are_out_of_order() {
        let mut s = SeriesChunks::new();
        s.attach_mapped(&[super::super::chunks_disk::MappedChunk {
            chunk_ref: 8,
            min_t: 0,
            max_t: 1000,
            num_samples: 5,
        }]);
        assert_eq!(s.num_samples(), 5);
        assert_eq!(s.min_time(), Some(0));
        let mut fork = s.fork();
        assert_eq!(
            fork.append(1000, 1.0, RANGE),
            Check::Reject(Reject::OutOfOrder)
        );
        assert_eq!(s.append(500, 1.0, RANGE), Check::Reject(Reject::OutOfOrder));
        assert_eq!(fork.append(1001, 1.0, RANGE), Check::Append);
        s.absorb(fork);
        assert_eq!(s.num_samples(), 6);
        assert_eq!(s.closed.len(), 1);
    }
}
