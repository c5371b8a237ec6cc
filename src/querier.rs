//! Reading series back: select by matchers over a time range, list label names and values.
//!
//! A [`Querier`] takes a consistent snapshot per series when it selects: completed chunks are shared
//! (`Arc`), the open head chunk is copied, so iteration holds no lock and appends proceed meanwhile.
//! Time bounds are inclusive on both ends, as in Prometheus' `Querier(mint, maxt)`.

use crate::chunk::XorIterator;
use crate::head::Head;
use crate::labels::{Labels, Matcher};
use std::sync::Arc;

/// Reads the database over `[mint, maxt]`.
pub struct Querier<'a> {
    head: &'a Head,
    mint: i64,
    maxt: i64,
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
}

impl SampleIter<'_> {
    /// Advances to the first sample at or after `t` and returns it.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
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
    pub(crate) fn new(head: &'a Head, mint: i64, maxt: i64) -> Querier<'a> {
        Querier { head, mint, maxt }
    }

    pub fn mint(&self) -> i64 {
        self.mint
    }

    pub fn maxt(&self) -> i64 {
        self.maxt
    }

    /// The series matching every matcher that have samples in range, sorted by labels.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>, crate::db::DbError> {
        let ids = self.head.index().postings_for_matchers(matchers);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(s) = self.head.series(id) else {
                continue;
            };
            let chunks: Vec<ChunkMeta> = {
                let c = s.lock();
                let mut v: Vec<ChunkMeta> = c
                    .closed
                    .iter()
                    .filter(|c| c.max_t >= self.mint && c.min_t <= self.maxt)
                    .map(|c| ChunkMeta {
                        min_t: c.min_t,
                        max_t: c.max_t,
                        data: c.data.clone(),
                    })
                    .collect();
                if let Some(h) = &c.head {
                    if h.app.num_samples() > 0 && h.max_t >= self.mint && h.min_t <= self.maxt {
                        v.push(ChunkMeta {
                            min_t: h.min_t,
                            max_t: h.max_t,
                            data: Arc::from(h.app.bytes()),
                        });
                    }
                }
                v
            };
            if chunks.is_empty() {
                continue;
            }
            out.push(Series {
                labels: s.to_labels(),
                chunks,
                mint: self.mint,
                maxt: self.maxt,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label names of the head's series, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.head.index().label_names()
    }

    /// Values of a label among the head's series, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.head.index().label_values(name)
    }
}
