//! A target's scrape cache (Prometheus 2.42's `scrapeCache`): raw series text → the head's series,
//! the series seen in this and the previous scrape (for staleness), the texts metric relabeling
//! dropped, and the metadata (`# HELP`, `# TYPE`, `# UNIT`) the target sent.
//!
//! A repeated scrape finds every known series by its text, so nothing is parsed, relabeled or
//! allocated for it. Targets expose their series in the same order every time, so the cache
//! predicts each line's series as the one that followed the previous line's in the last scrape
//! ([`ScrapeCache::predicted`]): the parser compares the line with that text and reads only the
//! value ([`crate::exposition::Parser::next_sample_for`]), and the entry is found without hashing
//! the text. A line that is not the predicted one is looked up by its text, and the prediction
//! continues after it.
//!
//! Staleness is a mark per entry (the scrape that last appended it without a timestamp), not
//! Prometheus' two sets keyed by label hash: a series of the previous scrape is stale when its
//! mark is that scrape's. The difference shows only for one series exposed under two texts that
//! the target changes between scrapes; its marker is then refused as a duplicate of the sample
//! stored at the same time.

use std::collections::HashMap;
use std::sync::Arc;

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

/// A known series of the target.
pub struct CacheEntry {
    pub held: Held,
    last_iter: u64,
    /// The [`ScrapeCache::mark`] of the scrape that last appended the series without a
    /// timestamp; 0: none.
    tracked: u64,
}

impl CacheEntry {
    /// Records that the series was appended in this scrape without an explicit timestamp
    /// (`mark` from [`ScrapeCache::mark`]).
    #[inline]
    pub fn track(&mut self, mark: u64) {
        self.tracked = mark;
    }
}

/// An entry with its text, in the cache's slab.
struct Slot {
    text: Arc<[u8]>,
    entry: CacheEntry,
    /// Positions in the scrape order of the scrapes with even and odd numbers.
    at: [u32; 2],
    live: bool,
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

#[derive(Default)]
pub struct ScrapeCache {
    /// Prometheus' iteration: advanced by a flush.
    iter: u64,
    /// Advanced by every [`ScrapeCache::iter_done`].
    scrape: u64,
    successful_count: usize,
    /// Text → index in `slots`.
    index: HashMap<Arc<[u8]>, u32, Hasher>,
    slots: Vec<Slot>,
    /// Indexes of `slots` not live, for reuse.
    free: Vec<u32>,
    /// The slots of the last scrape's lines, in order: the prediction for this one.
    order: Vec<u32>,
    /// The same for this scrape, so far.
    next_order: Vec<u32>,
    /// Where in `order` the next line is predicted.
    pos: usize,
    dropped: HashMap<Box<[u8]>, u64, Hasher>,
    metadata: HashMap<String, MetaEntry, Hasher>,
    /// The metadata changed since [`ScrapeCache::take_metadata_snapshot`] last ran.
    metadata_dirty: bool,
}

impl ScrapeCache {
    pub fn new() -> ScrapeCache {
        ScrapeCache::default()
    }

    /// The text the next line is expected to have: the one that followed the previous line in
    /// the last scrape.
    #[inline]
    pub fn predicted(&self) -> Option<&[u8]> {
        let &i = self.order.get(self.pos)?;
        let s = self.slots.get(i as usize)?;
        s.live.then_some(&*s.text)
    }

    /// The slot of the [`ScrapeCache::predicted`] text, which the line had: marks it seen in
    /// this iteration.
    #[inline]
    pub fn take_predicted(&mut self) -> Option<u32> {
        let &i = self.order.get(self.pos)?;
        self.pos += 1;
        self.seen(i);
        Some(i)
    }

    #[inline]
    fn seen(&mut self, i: u32) {
        let at = self.next_order.len() as u32;
        let parity = (self.scrape & 1) as usize;
        let iter = self.iter;
        if let Some(s) = self.slots.get_mut(i as usize) {
            if let Some(a) = s.at.get_mut(parity) {
                *a = at;
            }
            s.entry.last_iter = iter;
            self.next_order.push(i);
        }
    }

    /// The slot of `text`, marking it seen in this iteration; the prediction continues after it.
    #[inline]
    pub fn get(&mut self, text: &[u8]) -> Option<u32> {
        let i = *self.index.get(text)?;
        let parity = ((self.scrape + 1) & 1) as usize;
        if let Some(&last) = self.slots.get(i as usize).and_then(|s| s.at.get(parity)) {
            if self.order.get(last as usize) == Some(&i) {
                self.pos = last as usize + 1;
            }
        }
        self.seen(i);
        Some(i)
    }

    /// The entry in slot `i` (from [`ScrapeCache::get`], [`ScrapeCache::take_predicted`] or
    /// [`ScrapeCache::add`]).
    #[inline]
    pub fn entry(&mut self, i: u32) -> Option<&mut CacheEntry> {
        self.slots.get_mut(i as usize).map(|s| &mut s.entry)
    }

    /// Adds the entry of a new text, seen in this iteration; returns its slot.
    pub fn add(&mut self, text: &[u8], held: Held) -> u32 {
        let text: Arc<[u8]> = text.into();
        let slot = Slot {
            text: Arc::clone(&text),
            entry: CacheEntry {
                held,
                last_iter: self.iter,
                tracked: 0,
            },
            at: [u32::MAX; 2],
            live: true,
        };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        if let Some(old) = self.index.insert(text, i) {
            // The same text added twice in one scrape: the older slot is unreachable now.
            if let Some(s) = self.slots.get_mut(old as usize) {
                s.live = false;
                self.free.push(old);
            }
        }
        self.seen(i);
        i
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

    /// This scrape's staleness mark, for [`CacheEntry::track`].
    #[inline]
    pub fn mark(&self) -> u64 {
        self.scrape + 1
    }

    /// Series of the previous scrape absent from this one.
    pub fn stale(&self) -> impl Iterator<Item = &Held> {
        // The previous scrape's mark; 0 (the first scrape) matches no entry's "never".
        let prev = self.scrape;
        self.slots
            .iter()
            .filter(move |s| s.live && prev > 0 && s.entry.tracked == prev)
            .map(|s| &s.entry.held)
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
            let iter = self.iter;
            for (i, s) in self.slots.iter_mut().enumerate() {
                if s.live && s.entry.last_iter != iter {
                    s.live = false;
                    self.index.remove(&s.text);
                    // Drops the series and the text now, not when the slot is reused.
                    s.entry.held = Held::Labels(Arc::new(Labels::default()));
                    s.text = Arc::default();
                    self.free.push(i as u32);
                }
            }
            self.dropped.retain(|_, i| *i == iter);
            let before = self.metadata.len();
            self.metadata
                .retain(|_, e| iter.saturating_sub(e.last_iter) <= METADATA_KEEP_ITERS);
            self.metadata_dirty |= self.metadata.len() != before;
            self.iter += 1;
        }
        std::mem::swap(&mut self.order, &mut self.next_order);
        self.next_order.clear();
        self.pos = 0;
        self.scrape += 1;
        forced
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

    fn ids<'a>(it: impl Iterator<Item = &'a Held>) -> Vec<u64> {
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
        c.entry(a).unwrap().track(m);
        let b = c.add(b"b", series(2));
        c.entry(b).unwrap().track(m);
        assert!(
            ids(c.stale()).is_empty(),
            "nothing stale in the first scrape"
        );
        c.iter_done(true);
        // Next scrape: only "a".
        let m = c.mark();
        let a = c.get(b"a").unwrap();
        c.entry(a).unwrap().track(m);
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
            c.entry(s).unwrap().track(m);
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
}
