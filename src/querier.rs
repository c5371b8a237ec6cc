//! Reading series back: select by matchers over a time range, list label names and values.
//!
//! A [`Querier`] takes a consistent snapshot per series when it selects: completed chunks are shared
//! (`Arc`), the open head chunk is copied, so iteration holds no lock and appends proceed meanwhile.
//! Time bounds are inclusive on both ends, as in Prometheus' `Querier(mint, maxt)`.
//!
//! Series come from the persistent blocks overlapping the range and from the head, merged by label
//! set; each series' chunks are in time order. A head series' out-of-order samples are merged into
//! its chunks first ([`crate::head::ooo::merge_ooo`]: the in-order sample wins a shared timestamp). Should two sources overlap in time (they do not, by
//! construction: the head rejects samples in a block's range), iteration keeps the first sample of
//! a timestamp and skips any that would go back in time.
//!
//! Deleted samples (tombstones, of the head and of each block) are left out: a chunk a deletion
//! interval overlaps is re-encoded without them, so consumers of [`Series::chunks`] never see them.

use crate::block::{self, Block, Interval};
use crate::chunk::XorIterator;
use crate::head::{ClosedChunk, Head, HeadChunksError, MemSeries};
use crate::labels::{Labels, Matcher};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rayon::prelude::*;

/// One series of a select before merging: its labels and chunks in range.
type SelectedSeries = (Labels, Vec<ChunkMeta>);

/// Reads the database over `[mint, maxt]`.
pub struct Querier<'a> {
    head: &'a Head,
    blocks: Vec<Arc<Block>>,
    /// The database and its compaction epoch when the block list was taken: if a compaction has
    /// moved head data into a new block since, `select` takes a fresh list.
    live: Option<LiveBlocks<'a>>,
    mint: i64,
    maxt: i64,
    /// Work below which `select` reads head series on the calling thread ([`par_min_work`]).
    par_min_work: usize,
}

/// The database's block list and compaction epoch, for a querier that must stay correct while
/// compaction moves head data into blocks.
#[derive(Clone, Copy)]
pub struct LiveBlocks<'a> {
    pub blocks: &'a RwLock<Vec<Arc<Block>>>,
    pub epoch: &'a AtomicU64,
    /// The epoch when the querier's block list was taken.
    pub seen: u64,
}

/// One chunk of a selected series.
#[derive(Clone, Debug)]
pub struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    pub data: Arc<[u8]>,
}

/// A selected series: its labels and the chunks that overlap the querier's range.
#[derive(Clone, Debug)]
pub struct Series {
    labels: Labels,
    chunks: Vec<ChunkMeta>,
    mint: i64,
    maxt: i64,
}

impl Series {
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The labels, without cloning them (the chunks are dropped).
    pub fn into_labels(self) -> Labels {
        self.labels
    }

    pub fn chunks(&self) -> &[ChunkMeta] {
        &self.chunks
    }

    /// The samples within the querier's range, in time order.
    pub fn samples(&self) -> SampleIter<'_> {
        SampleIter {
            chunks: &self.chunks,
            next_chunk: 0,
            cur: None,
            mint: self.mint,
            maxt: self.maxt,
            last: None,
        }
    }
}

/// Samples of a [`Series`] in `[mint, maxt]`.
pub struct SampleIter<'a> {
    chunks: &'a [ChunkMeta],
    next_chunk: usize,
    cur: Option<XorIterator<'a>>,
    mint: i64,
    maxt: i64,
    /// Timestamp of the last sample returned: overlapping chunks never make time go back.
    last: Option<i64>,
}

impl SampleIter<'_> {
    /// Advances to the first sample at or after `t` and returns it.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        let s = self.seek_raw(t)?;
        if self.last.is_some_and(|l| s.0 <= l) {
            return self.next();
        }
        self.last = Some(s.0);
        Some(s)
    }

    fn seek_raw(&mut self, t: i64) -> Option<(i64, f64)> {
        let t = t.max(self.mint);
        // Skip whole chunks that end before t.
        if let Some(it) = &mut self.cur {
            if let Ok(Some(s)) = it.seek(t) {
                if s.0 > self.maxt {
                    self.finish();
                    return None;
                }
                return Some(s);
            }
            self.cur = None;
        }
        while let Some(c) = self.chunks.get(self.next_chunk) {
            self.next_chunk += 1;
            if c.max_t < t {
                continue;
            }
            let Ok(mut it) = XorIterator::new(&c.data) else {
                continue;
            };
            if let Ok(Some(s)) = it.seek(t) {
                self.cur = Some(it);
                if s.0 > self.maxt {
                    self.finish();
                    return None;
                }
                return Some(s);
            }
        }
        None
    }

    fn finish(&mut self) {
        self.cur = None;
        self.next_chunk = self.chunks.len();
    }
}

impl Iterator for SampleIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        loop {
            let s = self.next_raw()?;
            if self.last.is_some_and(|l| s.0 <= l) {
                continue;
            }
            self.last = Some(s.0);
            return Some(s);
        }
    }
}

impl SampleIter<'_> {
    fn next_raw(&mut self) -> Option<(i64, f64)> {
        loop {
            if let Some(it) = &mut self.cur {
                match it.next_sample() {
                    Ok(Some((t, v))) => {
                        if t > self.maxt {
                            self.finish();
                            return None;
                        }
                        if t >= self.mint {
                            return Some((t, v));
                        }
                        continue;
                    }
                    // Chunks in memory are our own encoding; a decode error ends the chunk.
                    _ => self.cur = None,
                }
            }
            let c = self.chunks.get(self.next_chunk)?;
            self.next_chunk += 1;
            if let Ok(mut it) = XorIterator::new(&c.data) {
                if c.min_t < self.mint {
                    match it.seek(self.mint) {
                        Ok(Some((t, v))) => {
                            self.cur = Some(it);
                            if t > self.maxt {
                                self.finish();
                                return None;
                            }
                            return Some((t, v));
                        }
                        _ => continue,
                    }
                }
                self.cur = Some(it);
            }
        }
    }
}

impl<'a> Querier<'a> {
    pub(crate) fn new(
        head: &'a Head,
        blocks: Vec<Arc<Block>>,
        mint: i64,
        maxt: i64,
    ) -> Querier<'a> {
        Querier {
            head,
            blocks,
            live: None,
            mint,
            maxt,
            par_min_work: par_min_work(),
        }
    }

    /// Sets the work below which `select` stays on the calling thread (a query's
    /// `QueryOptions::parallel_min_work`; `usize::MAX` never uses the pool).
    pub fn parallel_min_work(mut self, min_work: usize) -> Querier<'a> {
        self.par_min_work = min_work;
        self
    }

    /// Makes `select` safe against a compaction running meanwhile.
    pub fn refreshing(mut self, live: LiveBlocks<'a>) -> Querier<'a> {
        self.live = Some(live);
        self
    }

    /// The blocks to read after the head was read: compaction adds a block (then bumps the epoch)
    /// before it drops that range from the head, so a head read that missed the range is followed
    /// by a block list that has it. A range seen in both is deduplicated by the sample iterator.
    fn blocks_after_head_read(&self) -> Vec<Arc<Block>> {
        match self.live {
            Some(l) if l.epoch.load(Ordering::SeqCst) != l.seen => l
                .blocks
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|b| b.meta().max_time > self.mint && b.meta().min_time <= self.maxt)
                .cloned()
                .collect(),
            _ => self.blocks.clone(),
        }
    }

    pub fn mint(&self) -> i64 {
        self.mint
    }

    pub fn maxt(&self) -> i64 {
        self.maxt
    }

    /// One head series of [`Querier::select`]: its labels and chunks in range, `None` when it is
    /// gone or has none.
    fn head_series(
        &self,
        s: &MemSeries,
        tombstones: &block::Tombstones,
    ) -> Result<Option<SelectedSeries>, crate::db::DbError> {
        let id = s.id;
        let (closed, open, ooo): (Vec<ClosedChunk>, Option<ChunkMeta>, Vec<(i64, f64)>) = {
            let c = s.lock();
            let ooo = c
                .ooo_samples()
                .iter()
                .filter(|&&(t, _)| t >= self.mint && t <= self.maxt)
                .copied()
                .collect();
            let closed = c
                .closed
                .iter()
                .filter(|c| c.max_t >= self.mint && c.min_t <= self.maxt)
                .cloned()
                .collect();
            let open = c.head.as_ref().and_then(|h| {
                (h.app.num_samples() > 0 && h.max_t >= self.mint && h.min_t <= self.maxt).then(
                    || ChunkMeta {
                        min_t: h.min_t,
                        max_t: h.max_t,
                        data: Arc::from(h.app.bytes()),
                    },
                )
            });
            (closed, open, ooo)
        };
        // Chunks in `chunks_head/` are read after the series lock is released.
        let mut chunks = Vec::with_capacity(closed.len() + 1);
        for c in closed {
            let data = match self.head.chunk_data(&c.data) {
                Ok(d) => d,
                // Head truncation deleted the file meanwhile: the chunk is in a block now,
                // which `blocks_after_head_read` returns.
                Err(HeadChunksError::NoFile(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            chunks.push(ChunkMeta {
                min_t: c.min_t,
                max_t: c.max_t,
                data,
            });
        }
        chunks.extend(open);
        let chunks = crate::head::ooo::merge_ooo(chunks, &ooo);
        let chunks = without_deleted(chunks, tombstones.get(id));
        if chunks.is_empty() {
            return Ok(None);
        }
        Ok(Some((s.to_labels(), chunks)))
    }

    /// The series matching every matcher that have samples in range, sorted by labels.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, crate::db::DbError> {
        let mut merged: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        let ids = self.head.index().postings_for_matchers(matchers);
        // Head series come in creation order: sorted here by their interned labels (pointer
        // comparisons for the pairs they share), which costs a fraction of sorting the selected
        // `Labels` afterwards (a `memcmp` per name and value).
        let mut head_series: Vec<Arc<MemSeries>> =
            ids.iter().filter_map(|&id| self.head.series(id)).collect();
        head_series.sort_by(|a, b| a.cmp_labels(b));
        let tombstones = self.head.tombstones();
        // Head series are read independently (lock, chunk metas, `chunks_head/` reads), so large
        // selections run in parallel; the order and the first error in that order are kept.
        // Small ones stay on this thread: waking the pool costs more than they do.
        let read = |s: &Arc<MemSeries>| self.head_series(s, &tombstones);
        let head: Vec<Result<Option<SelectedSeries>, crate::db::DbError>> =
            if head_series.len().saturating_mul(HEAD_READ_WORK) >= self.par_min_work {
                head_series.par_iter().map(read).collect()
            } else {
                head_series.iter().map(read).collect()
            };
        for s in head {
            if let Some(s) = s? {
                merged.push(s);
            }
        }
        drop(tombstones);
        let mut sources = usize::from(!merged.is_empty());
        for b in &self.blocks_after_head_read() {
            let selected = b.select(matchers, self.mint, self.maxt)?;
            sources += usize::from(!selected.is_empty());
            merged.extend(selected);
        }
        // Each source is sorted already: the head's above, a block's by its postings order (the
        // index lists series sorted by labels). Several are merged by a stable sort, which finds
        // those runs, and equal label sets become one series, head first.
        if sources > 1 {
            merged.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let grouped = if sources > 1 {
            let mut grouped: Vec<(Labels, Vec<ChunkMeta>)> = Vec::with_capacity(merged.len());
            for (labels, chunks) in merged {
                match grouped.last_mut() {
                    Some(last) if last.0 == labels => last.1.extend(chunks),
                    _ => grouped.push((labels, chunks)),
                }
            }
            grouped
        } else {
            merged
        };
        Ok(grouped
            .into_iter()
            .map(|(labels, mut chunks)| {
                chunks.sort_by_key(|c| c.min_t);
                let chunks = without_overlaps(chunks);
                Series {
                    labels,
                    chunks,
                    mint: self.mint,
                    maxt: self.maxt,
                }
            })
            .collect())
    }

    /// Label names of the series in the head and the blocks, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.head.index().label_names().into_iter().collect();
        for b in &self.blocks {
            names.extend(b.index().label_names());
        }
        names.into_iter().collect()
    }

    /// Values of a label among the series in the head and the blocks, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut values: BTreeSet<String> =
            self.head.index().label_values(name).into_iter().collect();
        for b in &self.blocks {
            // A damaged label index leaves that block's values out; its select reports the error.
            values.extend(b.index().label_values(name).unwrap_or_default());
        }
        values.into_iter().collect()
    }
}

/// Below this much work (series to read, or series x steps in the engine) a loop runs on the calling
/// thread instead of rayon's pool. A parallel call from outside the pool injects a job, wakes a
/// worker and blocks until it is done, and woken workers spin before they sleep again: with 1,000
/// recording rules of 10 to 2,800 series each, that took ~30% of `tsdbctl serve`'s CPU.
pub(crate) const PAR_MIN_WORK: usize = 2048;

/// [`PAR_MIN_WORK`], or the environment's `TSDB_PAR_MIN_WORK` (read once) for measurements.
/// Units of work of reading one head series in `select` (lock, chunk metas, its `chunks_head/`
/// chunks copied out with their CRC checked: ~1,500 instructions for a 2 h series), on the scale
/// where decoding a chunk counts 120 (~10,000 instructions).
const HEAD_READ_WORK: usize = 16;

pub(crate) fn par_min_work() -> usize {
    static V: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("TSDB_PAR_MIN_WORK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(PAR_MIN_WORK)
    })
}

/// `chunks` of a head series without the samples `deleted` covers (chunks no interval overlaps
/// are passed through untouched). Head chunks are our own encoding; one that fails to decode is
/// dropped, as [`SampleIter`] would end it.
pub(crate) fn without_deleted(chunks: Vec<ChunkMeta>, deleted: &[Interval]) -> Vec<ChunkMeta> {
    if deleted.is_empty() {
        return chunks;
    }
    chunks
        .into_iter()
        .filter_map(|c| {
            if !deleted
                .iter()
                .any(|d| d.mint <= c.max_t && c.min_t <= d.maxt)
            {
                return Some(c);
            }
            block::chunk_without_deleted(&c.data, deleted)
                .ok()
                .flatten()
        })
        .collect()
}

/// Chunks sorted by min time with no two overlapping in time. Overlaps come from overlapping
/// blocks (a backfill, a block copied in, a compaction racing this read) before compaction merges
/// them: each run of overlapping chunks is decoded, merged in time order — at a shared timestamp the
/// chunk that starts first wins, as in `compact::merge_blocks` — and re-encoded. Without overlaps
/// the chunks are returned as they are.
pub(crate) fn without_overlaps(chunks: Vec<ChunkMeta>) -> Vec<ChunkMeta> {
    if chunks.windows(2).all(|w| w[0].max_t < w[1].min_t) {
        return chunks;
    }
    let mut out = Vec::with_capacity(chunks.len());
    let mut run: Vec<ChunkMeta> = Vec::new();
    let mut run_max = i64::MIN;
    for c in chunks {
        if !run.is_empty() && c.min_t > run_max {
            flush_run(&mut run, &mut out);
        }
        run_max = if run.is_empty() {
            c.max_t
        } else {
            run_max.max(c.max_t)
        };
        run.push(c);
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<ChunkMeta>, out: &mut Vec<ChunkMeta>) {
    if run.len() <= 1 {
        out.append(run);
        return;
    }
    // (t, order of the chunk in the run, v): sorting by (t, order) keeps the first chunk's sample.
    let mut samples: Vec<(i64, usize, f64)> = Vec::new();
    for (k, c) in run.iter().enumerate() {
        // A chunk that fails to decode ends at the failure, as the sample iterator does.
        if let Ok(mut it) = XorIterator::new(&c.data) {
            while let Ok(Some((t, v))) = it.next_sample() {
                samples.push((t, k, v));
            }
        }
    }
    run.clear();
    samples.sort_by_key(|s| (s.0, s.1));
    samples.dedup_by_key(|s| s.0);
    for part in samples.chunks(crate::head::SAMPLES_PER_CHUNK) {
        let mut app = crate::chunk::XorAppender::new();
        for &(t, _, v) in part {
            app.append(t, v);
        }
        if let (Some(first), Some(last)) = (part.first(), part.last()) {
            out.push(ChunkMeta {
                min_t: first.0,
                max_t: last.0,
                data: Arc::from(app.into_bytes()),
            });
        }
    }
}

#[cfg(test)]
mod overlap_tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(samples: &[(i64, f64)]) -> ChunkMeta {
        let mut app = crate::chunk::XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        ChunkMeta {
            min_t: samples[0].0,
            max_t: samples[samples.len() - 1].0,
            data: Arc::from(app.into_bytes()),
        }
    }

    fn decode_all(chunks: &[ChunkMeta]) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for c in chunks {
            let mut it = XorIterator::new(&c.data).unwrap();
            while let Some(s) = it.next_sample().unwrap() {
                out.push(s);
            }
        }
        out
    }

    #[test]
    fn interleaved_chunks_are_merged_and_the_first_wins_a_timestamp() {
        let a = chunk(&[(10, 1.0), (30, 3.0), (50, 5.0)]);
        let b = chunk(&[(20, 2.0), (30, 99.0), (40, 4.0)]);
        let c = chunk(&[(60, 6.0)]);
        let got = without_overlaps(vec![a, b, c.clone()]);
        assert_eq!(
            decode_all(&got),
            vec![
                (10, 1.0),
                (20, 2.0),
                (30, 3.0),
                (40, 4.0),
                (50, 5.0),
                (60, 6.0)
            ]
        );
        assert!(got.windows(2).all(|w| w[0].max_t < w[1].min_t));
        // Disjoint chunks come back as they are (same bytes).
        let d = chunk(&[(70, 7.0)]);
        let same = without_overlaps(vec![c.clone(), d.clone()]);
        assert!(Arc::ptr_eq(&same[0].data, &c.data) && Arc::ptr_eq(&same[1].data, &d.data));
    }

    proptest! {
        #[test]
        fn merged_chunks_equal_a_first_wins_model(
            sets in proptest::collection::vec(
                proptest::collection::btree_map(0i64..400, -1e6f64..1e6, 1..150), 1..4)
        ) {
            let mut model = std::collections::BTreeMap::new();
            let mut chunks = Vec::new();
            for set in &sets {
                let s: Vec<(i64, f64)> = set.iter().map(|(&t, &v)| (t, v)).collect();
                for part in s.chunks(120) {
                    chunks.push(chunk(part));
                }
            }
            chunks.sort_by_key(|c| c.min_t);
            // The model: in min-time order of the chunks, the first sample of a timestamp stays.
            for c in &chunks {
                let mut it = XorIterator::new(&c.data).unwrap();
                while let Some((t, v)) = it.next_sample().unwrap() {
                    model.entry(t).or_insert(v);
                }
            }
            let got = without_overlaps(chunks);
            prop_assert!(got.windows(2).all(|w| w[0].max_t < w[1].min_t));
            let want: Vec<(i64, f64)> = model.into_iter().collect();
            prop_assert_eq!(decode_all(&got), want);
        }
    }
}

#[cfg(test)]
mod order_tests {
    use crate::db::{Db, Options};
    use crate::labels::{Label, Labels, Matcher};
    use proptest::prelude::*;

    fn labels_strategy() -> impl Strategy<Value = Labels> {
        // Few names and short values over a small alphabet: shared pairs, prefixes of each other.
        let value = prop::collection::vec(prop::sample::select(vec!['a', 'b', 'é']), 1..4)
            .prop_map(|c| c.into_iter().collect::<String>());
        let name = prop::sample::select(vec!["a", "ab", "b", "code", "zone"]);
        prop::collection::vec((name, value), 0..4).prop_map(|pairs| {
            let mut l: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
            l.push(Label::new("__name__", "m"));
            Labels::new(l)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Head series are created in any order; a select returns them sorted by labels.
        #[test]
        fn head_select_is_sorted_by_labels(sets in prop::collection::vec(labels_strategy(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path(), Options::default()).unwrap();
            let mut seen = std::collections::HashSet::new();
            let sets: Vec<Labels> = sets.into_iter().filter(|l| seen.insert(l.clone())).collect();
            let mut app = db.appender();
            for l in &sets {
                app.append(l, 1000, 1.0).unwrap();
            }
            app.commit().unwrap();
            let got: Vec<Labels> = db
                .querier(0, 2000)
                .select(&[Matcher::equal("__name__", "m")])
                .unwrap()
                .into_iter()
                .map(|s| s.into_labels())
                .collect();
            let mut want = sets.clone();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
