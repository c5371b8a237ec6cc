//! A target's scrape cache (Prometheus 2.42's `scrapeCache`): raw series text → series id and
//! final labels, the series seen in this and the previous scrape (for staleness), the texts
//! metric relabeling dropped, and the metadata (`# HELP`, `# TYPE`, `# UNIT`) the target sent.
//!
//! A repeated scrape finds every known series by its text, so nothing is parsed, relabeled or
//! allocated for it: one hash lookup, an `Arc` clone into the staleness set, and the append by id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::exposition::MetricType;
use crate::labels::Labels;
use crate::server::MetricMetadata;

type Hasher = foldhash::fast::RandomState;

/// A known series of the target.
pub struct CacheEntry {
    pub id: u64,
    pub labels: Arc<Labels>,
    /// Hash of the series' labels as exposed (before target labels and relabeling): the key of
    /// the staleness sets.
    pub hash: u64,
    last_iter: u64,
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
    iter: u64,
    successful_count: usize,
    series: HashMap<Box<[u8]>, CacheEntry, Hasher>,
    dropped: HashMap<Box<[u8]>, u64, Hasher>,
    /// Series appended without an explicit timestamp in this scrape (label hash → id, labels).
    cur: HashMap<u64, (u64, Arc<Labels>), Hasher>,
    /// The same for the previous scrape.
    prev: HashMap<u64, (u64, Arc<Labels>), Hasher>,
    metadata: HashMap<String, MetaEntry, Hasher>,
    /// The metadata changed since [`ScrapeCache::take_metadata_snapshot`] last ran.
    metadata_dirty: bool,
}

impl ScrapeCache {
    pub fn new() -> ScrapeCache {
        ScrapeCache::default()
    }

    /// The entry of `text`, marking it seen in this iteration.
    #[inline]
    pub fn get(&mut self, text: &[u8]) -> Option<&mut CacheEntry> {
        let iter = self.iter;
        let e = self.series.get_mut(text)?;
        e.last_iter = iter;
        Some(e)
    }

    pub fn add(&mut self, text: &[u8], id: u64, labels: Arc<Labels>, hash: u64) {
        self.series.insert(
            text.into(),
            CacheEntry {
                id,
                labels,
                hash,
                last_iter: self.iter,
            },
        );
    }

    pub fn is_dropped(&mut self, text: &[u8]) -> bool {
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

    /// Records that the series was appended in this scrape without an explicit timestamp.
    #[inline]
    pub fn track_staleness(&mut self, hash: u64, id: u64, labels: &Arc<Labels>) {
        self.cur.insert(hash, (id, Arc::clone(labels)));
    }

    /// Series of the previous scrape absent from this one: (id, labels) each.
    pub fn stale(&self) -> impl Iterator<Item = &(u64, Arc<Labels>)> {
        self.prev
            .iter()
            .filter(|(h, _)| !self.cur.contains_key(*h))
            .map(|(_, v)| v)
    }

    /// Prometheus' `iterDone`: ends an append. `flush` (a non-empty scrape appended) forgets
    /// entries not seen in this scrape; the current staleness set becomes the previous one.
    /// Returns whether the flush was forced by cache growth over failed scrapes.
    pub fn iter_done(&mut self, mut flush: bool) -> bool {
        let count = self.series.len() + self.dropped.len() + self.metadata.len();
        let mut forced = false;
        if flush {
            self.successful_count = count;
        } else if count > self.successful_count * 2 + FORCED_FLUSH_SLACK {
            flush = true;
            forced = true;
        }
        if flush {
            let iter = self.iter;
            self.series.retain(|_, e| e.last_iter == iter);
            self.dropped.retain(|_, i| *i == iter);
            let before = self.metadata.len();
            self.metadata
                .retain(|_, e| iter.saturating_sub(e.last_iter) <= METADATA_KEEP_ITERS);
            self.metadata_dirty |= self.metadata.len() != before;
            self.iter += 1;
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.cur.clear();
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
        self.series.len()
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

    #[test]
    fn staleness_sets_and_flush() {
        let mut c = ScrapeCache::new();
        let l = Arc::new(Labels::from_pairs(&[("__name__", "a")]));
        c.add(b"a", 1, Arc::clone(&l), 11);
        c.track_staleness(11, 1, &l);
        c.add(b"b", 2, Arc::clone(&l), 22);
        c.track_staleness(22, 2, &l);
        c.iter_done(true);
        // Next scrape: only "a".
        assert!(c.get(b"a").is_some());
        c.track_staleness(11, 1, &l);
        let stale: Vec<u64> = c.stale().map(|(id, _)| *id).collect();
        assert_eq!(stale, vec![2]);
        c.iter_done(true);
        // "b" was not seen in the last scrape: flushed.
        assert!(c.get(b"b").is_none());
        assert!(c.get(b"a").is_some());
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
