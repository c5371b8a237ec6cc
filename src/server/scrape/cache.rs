//! A target's scrape cache (Prometheus 2.42's `scrapeCache`): raw series text → the head's series,
//! the series seen in this and the previous scrape (for staleness), the texts metric relabeling
//! dropped, and the metadata (`# HELP`, `# TYPE`, `# UNIT`) the target sent.
//!
//! A repeated scrape finds every known series by its text, so nothing is parsed, relabeled or
//! allocated for it. Targets expose their series in the same order every time, so the cache
//! predicts each line's series as the one that followed the previous line's when that was last
//! seen ([`ScrapeCache::predicted`]): the parser compares the line with that text and reads only the
//! value ([`crate::exposition::Parser::next_sample_for`]), and the entry is found without hashing
//! the text. A line that is not the predicted one is looked up by its text, and the prediction
//! continues after it.
//!
//! Memory (issue 5 point 7: the cache is one of the larger per-series costs of `tsdbctl serve`):
//! the texts of a target sit back to back in one arena, each behind its length, and a series is a 24-byte slot (text offset, the slot that
//! followed it, two 32-bit marks, the series pointer). The text index is a table of slot numbers
//! hashed and compared through the arena; a line is a cached series only when its bytes equal
//! the stored text (a hash is never taken for identity). The prediction is the slot that
//! followed the previous line when that was last seen (a link per slot, not a copy of the last
//! scrape's order). Freed texts stay in the arena until they are a quarter of it; then the live
//! ones are copied into a new one. Per series in `benches/scrape_append.rs`' shapes (text of 66
//! bytes on average, glibc): 217 bytes before (a 64-byte slot, an `Arc<[u8]>` per text, a
//! `HashMap<Arc<[u8]>, u32>`, the order of two scrapes), 108 after.
//!
//! Staleness is a mark per entry (the scrape that last appended it without a timestamp), not
//! Prometheus' two sets keyed by label hash: a series of the previous scrape is stale when its
//! mark is that scrape's. The difference shows only for one series exposed under two texts that
//! the target changes between scrapes; its marker is then refused as a duplicate of the sample
//! stored at the same time.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::exposition::MetricType;
use crate::head::MemSeries;
use crate::labels::Labels;
use crate::server::MetricMetadata;

type Hasher = foldhash::fast::RandomState;

/// What the cache keeps of a series.
#[derive(Clone)]
pub enum Held {
    /// The head's series itself, not its id: a sample costs no lookup in the head. One that head
    /// truncation removed is found again by its labels.
    Series(Arc<MemSeries>),
    /// The final labels of a series the head does not have yet (its samples were refused by the
    /// limits before it was created): found or created by them at its next append. A series'
    /// labels are not kept otherwise: the head has them, interned (they were ~700 bytes a series
    /// here, a third of the memory at 1M series).
    Labels(Arc<Labels>),
}

/// "No slot": the end of the prediction chain, no previous line.
const NONE: u32 = u32::MAX;
/// The `off` of a slot not in use.
const FREE: u32 = u32::MAX;
/// The arena is compacted when the texts of freed slots are at least this share of it (1/4):
/// a compaction copies at most 3 live bytes per dead one, and each text dies once.
const COMPACT_DEAD_SHARE: usize = 4;
/// Slack kept beyond the length when the arena or the slots grow (1/4 of it) or are trimmed in
/// a steady scrape (1/16): doubling left up to half of each unused.
const GROW_SHARE: usize = 4;
const TRIM_SHARE: usize = 16;
/// Every this many scrapes, staleness marks older than the previous scrape's are cleared, so
/// that a 32-bit mark never meets an old one again after the counter wraps.
const MARK_RENORMALIZE: u32 = 1 << 30;

/// A known series of the target: 24 bytes, its text in the cache's arena.
struct Slot {
    /// Where the text is in the arena, behind its length (LEB128); [`FREE`]: not in use.
    off: u32,
    /// The slot of the line that followed this one when it was last seen; [`NONE`]: it was the
    /// last line, or none yet. Only a prediction: a line is taken for it only when the bytes
    /// are equal.
    next: u32,
    /// The iteration ([`ScrapeCache::iter`], truncated) that last saw it. Exact in 32 bits: a
    /// flush frees every slot not seen in the iteration it ends, so a live slot's is the
    /// current iteration or the one before.
    seen: u32,
    /// The [`ScrapeCache::mark`] of the scrape that last appended it without a timestamp;
    /// 0: none.
    tracked: u32,
    /// `None` for a slot holding labels ([`ScrapeCache::labels`]) or not in use.
    series: Option<Arc<MemSeries>>,
}

/// Metadata of one metric family, with the iterations it was last seen and last changed.
#[derive(Clone)]
struct MetaEntry {
    kind: MetricType,
    help: String,
    unit: String,
    last_iter: u64,
    last_iter_change: u64,
}

/// Prometheus' cache-growth guard: a failed scrape flushes the cache anyway when it has grown
/// past twice the size after the last successful one plus this many entries.
const FORCED_FLUSH_SLACK: usize = 1000;
/// Metadata of a family no longer exposed is kept this many scrapes.
const METADATA_KEEP_ITERS: u64 = 10;

pub struct ScrapeCache {
    /// Prometheus' iteration: advanced by a flush.
    iter: u64,
    /// Advanced by every [`ScrapeCache::iter_done`], never 0 after the first (see
    /// [`next_mark`]).
    scrape: u32,
    successful_count: usize,
    /// Every slot's text, each behind its length, back to back: one allocation for the
    /// target's texts instead of one each (~16 bytes of header and the allocator's rounding).
    arena: Vec<u8>,
    /// Bytes of `arena` that belong to freed slots.
    dead: usize,
    slots: Vec<Slot>,
    /// Slots not in use, for reuse.
    free: Vec<u32>,
    /// Text → slot: the table holds slot numbers only, hashed and compared through the arena.
    index: HashTable<u32>,
    hasher: Hasher,
    /// The labels of the slots that hold [`Held::Labels`] (rare: kept apart so that a slot
    /// holds one pointer).
    labels: HashMap<u32, Arc<Labels>, Hasher>,
    /// The first line of the last scrape.
    head: u32,
    /// The slot the next line is predicted to be.
    cursor: u32,
    /// The first and the latest line of this scrape so far.
    first: u32,
    prev: u32,
    /// A line was added in this scrape: the arena and slots are trimmed only at the end of a
    /// scrape that added none, so that a trim does not follow each growth (the synthetic series,
    /// added after the first scrape's end, do not count: their few bytes fit in the trim's slack).
    grew: bool,
    dropped: HashMap<Box<[u8]>, u64, Hasher>,
    metadata: HashMap<String, MetaEntry, Hasher>,
    /// The metadata changed since [`ScrapeCache::take_metadata_snapshot`] last ran.
    metadata_dirty: bool,
}

impl Default for ScrapeCache {
    fn default() -> ScrapeCache {
        ScrapeCache {
            iter: 0,
            scrape: 0,
            successful_count: 0,
            arena: Vec::new(),
            dead: 0,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: Hasher::default(),
            labels: HashMap::default(),
            head: NONE,
            cursor: NONE,
            first: NONE,
            prev: NONE,
            grew: false,
            dropped: HashMap::default(),
            metadata: HashMap::default(),
            metadata_dirty: false,
        }
    }
}

/// The text of slot `i` (empty for a slot not in use).
#[inline]
fn slot_text<'a>(arena: &'a [u8], slots: &[Slot], i: u32) -> &'a [u8] {
    slots.get(i as usize).map_or(&[], |s| text_at(arena, s.off))
}

/// The text at `off` in the arena: its length (LEB128), then its bytes.
#[inline]
fn text_at(arena: &[u8], off: u32) -> &[u8] {
    let Some(rest) = arena.get(off as usize..) else {
        return &[];
    };
    // Most series texts are shorter than 128 bytes: one length byte.
    if let Some(&b) = rest.first() {
        if b < 0x80 {
            return rest.get(1..1 + b as usize).unwrap_or(&[]);
        }
    }
    let mut len = 0usize;
    for (n, &b) in rest.iter().enumerate().take(5) {
        len |= ((b & 0x7f) as usize) << (7 * n);
        if b < 0x80 {
            return rest.get(n + 1..n + 1 + len).unwrap_or(&[]);
        }
    }
    &[]
}

/// Bytes of a text of `len` bytes in the arena.
fn stored_len(len: usize) -> usize {
    let mut n = 1;
    let mut l = len >> 7;
    while l > 0 {
        n += 1;
        l >>= 7;
    }
    n + len
}

/// Makes room for `additional` more elements, growing by a quarter rather than doubling.
fn reserve<T>(v: &mut Vec<T>, additional: usize) {
    if v.capacity() - v.len() < additional {
        v.reserve_exact(additional.max(v.len() / GROW_SHARE));
    }
}

/// `v` with its slack given back: into a new allocation, since an allocator may keep a block
/// shrunk by less than half in place (mimalloc does).
fn trim<T>(v: &mut Vec<T>) {
    if v.capacity() - v.len() > v.len() / TRIM_SHARE + 16 {
        let mut t = Vec::with_capacity(v.len() + v.len() / TRIM_SHARE);
        t.append(v);
        *v = t;
    }
}

/// The scrape counter's successor: 1 after `u32::MAX`, so that 0 stays "never".
#[inline]
fn next_mark(s: u32) -> u32 {
    s.checked_add(1).unwrap_or(1)
}

impl ScrapeCache {
    pub fn new() -> ScrapeCache {
        ScrapeCache::default()
    }

    /// The text the next line is expected to have: the one that followed the previous line
    /// when that was last seen.
    #[inline]
    pub fn predicted(&self) -> Option<&[u8]> {
        let s = self.slots.get(self.cursor as usize)?;
        (s.off != FREE).then(|| text_at(&self.arena, s.off))
    }

    /// The slot of the [`ScrapeCache::predicted`] text, which the line had: marks it seen in
    /// this iteration.
    #[inline]
    pub fn take_predicted(&mut self) -> Option<u32> {
        let i = self.cursor;
        self.cursor = self.slots.get(i as usize)?.next;
        self.link(i);
        Some(i)
    }

    /// Records line `i` of this scrape after the previous one, seen in this iteration.
    #[inline]
    fn link(&mut self, i: u32) {
        match self.slots.get_mut(self.prev as usize) {
            Some(p) => p.next = i,
            None => self.first = i,
        }
        self.prev = i;
        self.mark_seen(i);
    }

    #[inline]
    fn mark_seen(&mut self, i: u32) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.seen = self.iter as u32;
        }
    }

    fn find(&self, text: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(text);
        let (arena, slots) = (&self.arena, &self.slots);
        self.index
            .find(h, |&j| slot_text(arena, slots, j) == text)
            .copied()
    }

    /// The slot of line `text`, marking it seen in this iteration; the prediction continues
    /// after it.
    #[inline]
    pub fn get(&mut self, text: &[u8]) -> Option<u32> {
        let i = self.find(text)?;
        if let Some(s) = self.slots.get(i as usize) {
            self.cursor = s.next;
        }
        self.link(i);
        Some(i)
    }

    /// The slot of `text`, marking it seen in this iteration, for a series that is not a line
    /// of the scrape (the synthetic ones): the prediction is left as it is.
    pub fn get_unlisted(&mut self, text: &[u8]) -> Option<u32> {
        let i = self.find(text)?;
        self.mark_seen(i);
        Some(i)
    }

    /// What slot `i` holds; `None` if it is not in use.
    #[inline]
    pub fn held(&self, i: u32) -> Option<Held> {
        let s = self.slots.get(i as usize)?;
        match &s.series {
            Some(series) => Some(Held::Series(Arc::clone(series))),
            None if s.off != FREE => self.labels.get(&i).cloned().map(Held::Labels),
            None => None,
        }
    }

    /// Makes slot `i` hold `held`.
    pub fn set_held(&mut self, i: u32, held: Held) {
        let Some(s) = self.slots.get_mut(i as usize) else {
            return;
        };
        if s.off == FREE {
            return;
        }
        match held {
            Held::Series(series) => {
                s.series = Some(series);
                if !self.labels.is_empty() {
                    self.labels.remove(&i);
                }
            }
            Held::Labels(l) => {
                s.series = None;
                self.labels.insert(i, l);
            }
        }
    }

    /// Records that the series in slot `i` was appended in this scrape without an explicit
    /// timestamp (`mark` from [`ScrapeCache::mark`]).
    #[inline]
    pub fn track(&mut self, i: u32, mark: u32) {
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.tracked = mark;
        }
    }

    /// Adds the entry of a new line, seen in this iteration, after the previous line; returns
    /// its slot.
    pub fn add(&mut self, text: &[u8], held: Held) -> u32 {
        self.grew = true;
        let i = self.insert(text, held);
        self.link(i);
        i
    }

    /// [`ScrapeCache::add`] for a series that is not a line of the scrape (the synthetic ones).
    pub fn add_unlisted(&mut self, text: &[u8], held: Held) -> u32 {
        let i = self.insert(text, held);
        self.mark_seen(i);
        i
    }

    fn insert(&mut self, text: &[u8], held: Held) -> u32 {
        let off = self.store_text(text);
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                reserve(&mut self.slots, 1);
                self.slots.push(Slot {
                    off: FREE,
                    next: NONE,
                    seen: 0,
                    tracked: 0,
                    series: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        if let Some(s) = self.slots.get_mut(i as usize) {
            *s = Slot {
                off,
                next: NONE,
                seen: self.iter as u32,
                tracked: 0,
                series: None,
            };
        }
        if off == FREE {
            // Not stored (see `store_text`): counted and staleness-tracked in no scrape, found by
            // no lookup; the slot goes back to the free list at once.
            self.free.push(i);
            return i;
        }
        self.set_held(i, held);
        let h = self.hasher.hash_one(text);
        let (arena, slots) = (&self.arena, &self.slots);
        match self
            .index
            .find_mut(h, |&j| slot_text(arena, slots, j) == text)
        {
            Some(old) => {
                // The same text added twice in one scrape: the older slot is unreachable now.
                let old = std::mem::replace(old, i);
                self.release(old);
            }
            None => {
                let hasher = &self.hasher;
                self.index
                    .insert_unique(h, i, |&j| hasher.hash_one(slot_text(arena, slots, j)));
            }
        }
        i
    }

    /// Appends `text` to the arena; returns its offset, or [`FREE`] if the arena cannot address
    /// it even after a compaction (4 GiB of texts in one target).
    fn store_text(&mut self, text: &[u8]) -> u32 {
        let need = stored_len(text.len());
        if self.arena.len() + need > FREE as usize {
            self.compact();
            if self.arena.len() + need > FREE as usize {
                return FREE;
            }
        }
        let off = self.arena.len() as u32;
        reserve(&mut self.arena, need);
        let mut len = text.len();
        while len >= 0x80 {
            self.arena.push((len as u8) | 0x80);
            len >>= 7;
        }
        self.arena.push(len as u8);
        self.arena.extend_from_slice(text);
        off
    }

    /// Takes slot `i` out of use (its index entry is the caller's business).
    fn release(&mut self, i: u32) {
        let Some(s) = self.slots.get_mut(i as usize) else {
            return;
        };
        if s.off == FREE {
            return;
        }
        self.dead += stored_len(text_at(&self.arena, s.off).len());
        s.off = FREE;
        // Drops the series now, not when the slot is reused.
        s.series = None;
        if !self.labels.is_empty() {
            self.labels.remove(&i);
        }
        self.free.push(i);
    }

    /// Copies the live texts into a new arena, dropping those of freed slots.
    fn compact(&mut self) {
        let live = self.arena.len() - self.dead;
        let mut arena = Vec::with_capacity(live + live / TRIM_SHARE);
        for s in self.slots.iter_mut().filter(|s| s.off != FREE) {
            let len = stored_len(text_at(&self.arena, s.off).len());
            let from = s.off as usize;
            s.off = arena.len() as u32;
            arena.extend_from_slice(self.arena.get(from..from + len).unwrap_or(&[]));
        }
        self.arena = arena;
        self.dead = 0;
    }

    pub fn is_dropped(&mut self, text: &[u8]) -> bool {
        if self.dropped.is_empty() {
            return false;
        }
        let iter = self.iter;
        match self.dropped.get_mut(text) {
            Some(i) => {
                *i = iter;
                true
            }
            None => false,
        }
    }

    pub fn add_dropped(&mut self, text: &[u8]) {
        self.dropped.insert(text.into(), self.iter);
    }

    /// This scrape's staleness mark, for [`ScrapeCache::track`].
    #[inline]
    pub fn mark(&self) -> u32 {
        next_mark(self.scrape)
    }

    /// Series of the previous scrape absent from this one.
    pub fn stale(&self) -> impl Iterator<Item = Held> + '_ {
        // The previous scrape's mark; 0 (the first scrape) matches no entry's "never".
        let prev = self.scrape;
        self.slots
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.off != FREE && prev > 0 && s.tracked == prev)
            .filter_map(|(i, _)| self.held(i as u32))
    }

    /// Prometheus' `iterDone`: ends an append. `flush` (a non-empty scrape appended) forgets
    /// entries not seen in this scrape; this scrape's marks become the previous scrape's.
    /// Returns whether the flush was forced by cache growth over failed scrapes.
    pub fn iter_done(&mut self, mut flush: bool) -> bool {
        let count = self.index.len() + self.dropped.len() + self.metadata.len();
        let mut forced = false;
        if flush {
            self.successful_count = count;
        } else if count > self.successful_count * 2 + FORCED_FLUSH_SLACK {
            flush = true;
            forced = true;
        }
        if flush {
            let iter = self.iter as u32;
            let before = self.free.len();
            for i in 0..self.slots.len() {
                if matches!(self.slots.get(i), Some(s) if s.off != FREE && s.seen != iter) {
                    self.release(i as u32);
                }
            }
            if self.free.len() != before {
                let slots = &self.slots;
                self.index
                    .retain(|&mut j| matches!(slots.get(j as usize), Some(s) if s.off != FREE));
            }
            self.dropped.retain(|_, i| *i == self.iter);
            let before = self.metadata.len();
            let iter = self.iter;
            self.metadata
                .retain(|_, e| iter.saturating_sub(e.last_iter) <= METADATA_KEEP_ITERS);
            self.metadata_dirty |= self.metadata.len() != before;
            self.iter += 1;
        }
        if self.dead > 0 && self.dead >= self.arena.len() / COMPACT_DEAD_SHARE {
            self.compact();
        } else if !self.grew {
            trim(&mut self.arena);
        }
        if !self.grew {
            trim(&mut self.slots);
        }
        self.grew = false;
        if let Some(p) = self.slots.get_mut(self.prev as usize) {
            p.next = NONE;
        }
        self.head = self.first;
        self.cursor = self.head;
        self.first = NONE;
        self.prev = NONE;
        self.scrape = next_mark(self.scrape);
        if self.scrape.is_multiple_of(MARK_RENORMALIZE) {
            let prev = self.scrape;
            for s in &mut self.slots {
                if s.tracked != prev {
                    s.tracked = 0;
                }
            }
        }
        forced
    }

    /// Heap bytes of the series part of the cache (texts, slots, index, labels, free list).
    pub fn series_heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.allocation_size()
            + self.free.capacity() * 4
            + self.labels.capacity() * (std::mem::size_of::<(u32, Arc<Labels>)>() + 1)
    }

    /// Applies `f` to the metadata of `metric` (created if new); `f` says whether it changed
    /// anything.
    fn with_meta(&mut self, metric: &[u8], f: impl FnOnce(&mut MetaEntry) -> bool) {
        let iter = self.iter;
        let name = String::from_utf8_lossy(metric);
        let changed = match self.metadata.get_mut(name.as_ref()) {
            Some(e) => {
                e.last_iter = iter;
                f(e)
            }
            None => {
                let mut e = MetaEntry {
                    kind: MetricType::Unknown,
                    help: String::new(),
                    unit: String::new(),
                    last_iter: iter,
                    last_iter_change: iter,
                };
                f(&mut e);
                self.metadata.insert(name.into_owned(), e);
                true
            }
        };
        if changed {
            self.metadata_dirty = true;
        }
    }

    pub fn set_type(&mut self, metric: &[u8], kind: MetricType) {
        let iter = self.iter;
        self.with_meta(metric, |e| {
            let changed = e.kind != kind;
            if changed {
                e.kind = kind;
                e.last_iter_change = iter;
            }
            changed
        });
    }

    pub fn set_help(&mut self, metric: &[u8], help: &[u8]) {
        let iter = self.iter;
        self.with_meta(metric, |e| {
            let changed = e.help.as_bytes() != help;
            if changed {
                e.help = String::from_utf8_lossy(help).into_owned();
                e.last_iter_change = iter;
            }
            changed
        });
    }

    pub fn set_unit(&mut self, metric: &[u8], unit: &[u8]) {
        let iter = self.iter;
        self.with_meta(metric, |e| {
            let changed = e.unit.as_bytes() != unit;
            if changed {
                e.unit = String::from_utf8_lossy(unit).into_owned();
                e.last_iter_change = iter;
            }
            changed
        });
    }

    /// The metadata as the API lists it, if it changed since the last call.
    pub fn take_metadata_snapshot(&mut self) -> Option<Vec<(String, MetricMetadata)>> {
        if !self.metadata_dirty {
            return None;
        }
        self.metadata_dirty = false;
        let mut v: Vec<(String, MetricMetadata)> = self
            .metadata
            .iter()
            .map(|(k, e)| {
                (
                    k.clone(),
                    MetricMetadata {
                        kind: type_name(e.kind).to_string(),
                        help: e.help.clone(),
                        unit: e.unit.clone(),
                    },
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Some(v)
    }

    /// Entries of the series, dropped-series and metadata maps (Prometheus'
    /// `prometheus_target_metadata_cache_entries` counts metadata only).
    pub fn metadata_len(&self) -> usize {
        self.metadata.len()
    }

    pub fn series_len(&self) -> usize {
        self.index.len()
    }
}

/// The type names Prometheus' API reports.
pub fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(id: u64) -> Held {
        Held::Series(Arc::new(MemSeries::new(id, Box::new([]), true)))
    }

    fn ids(it: impl Iterator<Item = Held>) -> Vec<u64> {
        let mut v: Vec<u64> = it
            .filter_map(|h| match h {
                Held::Series(s) => Some(s.id),
                Held::Labels(_) => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn staleness_marks_and_flush() {
        let mut c = ScrapeCache::new();
        let m = c.mark();
        let a = c.add(b"a", series(1));
        c.track(a, m);
        let b = c.add(b"b", series(2));
        c.track(b, m);
        assert!(
            ids(c.stale()).is_empty(),
            "nothing stale in the first scrape"
        );
        c.iter_done(true);
        // Next scrape: only "a".
        let m = c.mark();
        let a = c.get(b"a").unwrap();
        c.track(a, m);
        assert_eq!(ids(c.stale()), vec![2]);
        c.iter_done(true);
        // "b" was not seen in the last scrape: flushed, and not stale again.
        assert!(c.get(b"b").is_none());
        // "a" of the last scrape, until this one appends it.
        assert_eq!(ids(c.stale()), vec![1]);
        assert!(c.get(b"a").is_some());
        assert_eq!(c.series_len(), 1);
    }

    #[test]
    fn a_failed_scrape_marks_everything_of_the_previous_one_stale_once() {
        let mut c = ScrapeCache::new();
        let m = c.mark();
        for (i, t) in [b"a", b"b", b"c"].iter().enumerate() {
            let s = c.add(*t, series(i as u64));
            c.track(s, m);
        }
        c.iter_done(true);
        // An empty scrape: every series of the previous one is stale, nothing is flushed.
        assert_eq!(ids(c.stale()), vec![0, 1, 2]);
        c.iter_done(false);
        assert!(ids(c.stale()).is_empty());
        assert_eq!(c.series_len(), 3);
    }

    #[test]
    fn predicts_the_order_of_the_last_scrape_and_resyncs_after_a_miss() {
        let mut c = ScrapeCache::new();
        for (i, t) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            c.add(*t, series(i as u64));
        }
        c.iter_done(true);
        // Same order: every line predicted.
        for t in [b"a", b"b", b"c", b"d"] {
            assert_eq!(c.predicted(), Some(&t[..]));
            c.take_predicted().unwrap();
        }
        assert_eq!(c.predicted(), None);
        c.iter_done(true);
        // "b" gone, "x" new before "d": the prediction follows the lines looked up by text.
        assert_eq!(c.predicted(), Some(&b"a"[..]));
        c.take_predicted().unwrap();
        assert_eq!(c.predicted(), Some(&b"b"[..])); // the line is "c": a miss
        c.get(b"c").unwrap();
        assert_eq!(c.predicted(), Some(&b"d"[..])); // the line is "x": new
        c.add(b"x", series(9));
        assert_eq!(c.predicted(), Some(&b"d"[..]));
        c.take_predicted().unwrap();
        c.iter_done(true);
        assert_eq!(c.series_len(), 4);
        let mut seen = Vec::new();
        while let Some(p) = c.predicted() {
            seen.push(p.to_vec());
            c.take_predicted();
        }
        assert_eq!(seen, [&b"a"[..], b"c", b"x", b"d"]);
    }

    #[test]
    fn metadata_snapshot_only_on_change() {
        let mut c = ScrapeCache::new();
        c.set_type(b"x", MetricType::Counter);
        c.set_help(b"x", b"help");
        let s = c.take_metadata_snapshot().unwrap();
        assert_eq!(s[0].1.kind, "counter");
        assert_eq!(s[0].1.help, "help");
        c.set_type(b"x", MetricType::Counter);
        c.set_help(b"x", b"help");
        assert!(c.take_metadata_snapshot().is_none());
    }

    fn text(k: usize) -> Vec<u8> {
        // Lengths across the 1- and 2-byte length prefixes.
        let mut t = format!("m{{k=\"{k}\"}}").into_bytes();
        t.resize(t.len() + (k * 37) % 200, b'x');
        t
    }

    /// One scrape of `lines`, looked up as the append path does: the predicted line first,
    /// then by text, else added.
    fn scrape(c: &mut ScrapeCache, lines: &[Vec<u8>], next_id: &mut u64) -> Vec<u64> {
        let mut got = Vec::new();
        for l in lines {
            let i = match c.predicted() {
                Some(p) if p == &l[..] => c.take_predicted().unwrap(),
                _ => match c.get(l) {
                    Some(i) => i,
                    None => {
                        *next_id += 1;
                        c.add(l, series(*next_id))
                    }
                },
            };
            got.push(ids(c.held(i).into_iter())[0]);
        }
        got
    }

    #[test]
    fn arena_texts_of_every_length_are_found() {
        let mut c = ScrapeCache::new();
        let lens = [0usize, 1, 127, 128, 129, 16_383, 16_384, 70_000];
        let texts: Vec<Vec<u8>> = lens
            .iter()
            .map(|&n| (0..n).map(|j| b'a' + (j % 26) as u8).collect())
            .collect();
        for (k, t) in texts.iter().enumerate() {
            let i = c.add(t, series(k as u64));
            assert_eq!(slot_text(&c.arena, &c.slots, i), &t[..]);
        }
        c.iter_done(true);
        for (k, t) in texts.iter().enumerate() {
            assert_eq!(c.predicted(), Some(&t[..]));
            let i = c.take_predicted().unwrap();
            assert_eq!(ids(c.held(i).into_iter()), vec![k as u64]);
        }
        // A prefix or an extension of a stored text is another text.
        assert!(c.get(&texts[3][..127]).is_some());
        assert!(c.get(&texts[2][..126]).is_none());
        let mut longer = texts[7].clone();
        longer.push(b'!');
        assert!(c.get(&longer).is_none());
    }

    #[test]
    fn churn_compacts_the_arena_and_lookups_find_the_live_texts_after_it() {
        let mut c = ScrapeCache::new();
        let mut next_id = 0;
        let mut ids_of: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut compactions = 0;
        // 1,000 series, 300 of them replaced by new ones every scrape.
        for round in 0..20usize {
            let lines: Vec<Vec<u8>> = (0..1000)
                .map(|j| {
                    if j < 700 {
                        text(j)
                    } else {
                        text(1000 + round * 300 + j - 700)
                    }
                })
                .collect();
            let got = scrape(&mut c, &lines, &mut next_id);
            for (l, id) in lines.iter().zip(got) {
                assert_eq!(*ids_of.entry(l.clone()).or_insert(id), id, "round {round}");
            }
            let len = c.arena.len();
            c.iter_done(true);
            if c.arena.len() < len {
                compactions += 1;
            }
            assert!(
                c.dead < c.arena.len() / COMPACT_DEAD_SHARE + 1,
                "round {round}"
            );
            assert_eq!(c.series_len(), 1000);
            // Every live text found, every flushed one gone.
            for l in &lines {
                assert_eq!(
                    c.find(l).map(|i| slot_text(&c.arena, &c.slots, i)),
                    Some(&l[..])
                );
            }
            if round > 0 {
                assert!(c.find(&text(1000 + (round - 1) * 300)).is_none());
            }
        }
        assert!(compactions >= 5, "{compactions} compactions");
        // Freed slots were reused, not appended.
        assert!(c.slots.len() <= 1300, "{} slots", c.slots.len());
    }

    #[test]
    fn steady_scrapes_cost_at_most_the_text_and_48_bytes_a_series() {
        let mut c = ScrapeCache::new();
        let mut next_id = 0;
        let lines: Vec<Vec<u8>> = (0..1000).map(text).collect();
        for _ in 0..3 {
            scrape(&mut c, &lines, &mut next_id);
            c.iter_done(true);
        }
        let text_bytes: usize = lines.iter().map(|l| l.len()).sum();
        let bytes = c.series_heap_bytes();
        assert!(
            bytes <= text_bytes + 48 * lines.len(),
            "{bytes} bytes for {text_bytes} bytes of text"
        );
        assert_eq!(next_id, 1000);
    }

    #[test]
    fn staleness_marks_survive_the_counter_wrapping() {
        let mut c = ScrapeCache::new();
        c.scrape = u32::MAX - 2;
        let a = c.add(b"a", series(1));
        let b = c.add(b"b", series(2));
        let m = c.mark();
        c.track(a, m);
        c.track(b, m);
        c.iter_done(true);
        for round in 0..4 {
            // "a" appended without a timestamp each time, "b" with one: stale once, then not.
            let m = c.mark();
            assert_ne!(m, 0);
            let a = c.get(b"a").unwrap();
            c.track(a, m);
            c.get(b"b").unwrap();
            let want: Vec<u64> = if round == 0 { vec![2] } else { vec![] };
            assert_eq!(ids(c.stale()), want, "round {round}");
            c.iter_done(true);
        }
        // At a renormalization, marks older than the previous scrape's are cleared.
        c.scrape = MARK_RENORMALIZE - 1;
        let m = c.mark();
        let a = c.get(b"a").unwrap();
        c.track(a, m);
        let b = c.get(b"b").unwrap();
        c.track(b, 12345);
        c.iter_done(true);
        assert_eq!(c.slots[b as usize].tracked, 0);
        assert_eq!(c.slots[a as usize].tracked, MARK_RENORMALIZE);
        c.get(b"b").unwrap();
        assert_eq!(ids(c.stale()), vec![1]);
    }

    #[test]
    fn labels_are_held_apart_and_replaced_by_the_series() {
        let mut c = ScrapeCache::new();
        let l = Arc::new(Labels::from_pairs(&[("__name__", "x")]));
        let i = c.add(b"x", Held::Labels(Arc::clone(&l)));
        assert!(matches!(c.held(i), Some(Held::Labels(h)) if h == l));
        c.set_held(i, series(7));
        assert_eq!(ids(c.held(i).into_iter()), vec![7]);
        assert!(c.labels.is_empty());
        c.set_held(i, Held::Labels(l));
        c.iter_done(true);
        c.iter_done(true);
        // Flushed: the slot and its labels are gone.
        assert!(c.held(i).is_none());
        assert!(c.labels.is_empty());
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// What the cache must do, written plainly: text → (id, iteration last seen, mark).
        #[derive(Default)]
        struct Model {
            entries: HashMap<Vec<u8>, (u64, u64, u64)>,
            iter: u64,
            scrape: u64,
            successful_count: usize,
        }

        impl Model {
            fn stale(&self) -> Vec<u64> {
                let prev = self.scrape;
                let mut v: Vec<u64> = self
                    .entries
                    .values()
                    .filter(|e| prev > 0 && e.2 == prev)
                    .map(|e| e.0)
                    .collect();
                v.sort();
                v
            }

            fn iter_done(&mut self, mut flush: bool) -> bool {
                let mut forced = false;
                if flush {
                    self.successful_count = self.entries.len();
                } else if self.entries.len() > self.successful_count * 2 + FORCED_FLUSH_SLACK {
                    flush = true;
                    forced = true;
                }
                if flush {
                    let iter = self.iter;
                    self.entries.retain(|_, e| e.1 == iter);
                    self.iter += 1;
                }
                self.scrape += 1;
                forced
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            /// Random scrapes (repeats, reordering, churn, lines with explicit timestamps,
            /// empty and failed scrapes): the cache maps each text to the series the model
            /// does, and agrees on staleness, flushes and size.
            #[test]
            fn the_cache_behaves_as_a_map_of_texts(
                scrapes in proptest::collection::vec(
                    (proptest::collection::vec((0usize..60, any::<bool>()), 0..80), any::<bool>()),
                    1..25,
                ),
            ) {
                let mut c = ScrapeCache::new();
                let mut m = Model::default();
                let mut next_id = 0u64;
                for (lines, flush) in scrapes {
                    let mark = c.mark();
                    for (k, track) in &lines {
                        let t = text(*k);
                        if let Some(p) = c.predicted() {
                            prop_assert!(m.entries.contains_key(p), "predicted a text not cached");
                        }
                        let i = match c.predicted() {
                            Some(p) if p == &t[..] => c.take_predicted().unwrap(),
                            _ => match c.get(&t) {
                                Some(i) => i,
                                None => {
                                    prop_assert!(!m.entries.contains_key(&t));
                                    next_id += 1;
                                    m.entries.insert(t.clone(), (next_id, m.iter, 0));
                                    c.add(&t, series(next_id))
                                }
                            },
                        };
                        let e = m.entries.get_mut(&t).unwrap();
                        e.1 = m.iter;
                        prop_assert_eq!(ids(c.held(i).into_iter()), vec![e.0]);
                        if *track {
                            c.track(i, mark);
                            e.2 = m.scrape + 1;
                        }
                    }
                    prop_assert_eq!(ids(c.stale()), m.stale());
                    // A scrape with no lines is an empty (or failed) one: no flush.
                    let flush = flush && !lines.is_empty();
                    prop_assert_eq!(c.iter_done(flush), m.iter_done(flush));
                    prop_assert_eq!(c.series_len(), m.entries.len());
                    prop_assert!(c.dead <= c.arena.len());
                    for (t, e) in &m.entries {
                        let i = c.find(t);
                        prop_assert!(i.is_some());
                        prop_assert_eq!(ids(c.held(i.unwrap()).into_iter()), vec![e.0]);
                    }
                }
            }
        }
    }
}
