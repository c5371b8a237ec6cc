//! Loading exposition text into a [`Db`]: the engine behind `tsdbctl ingest`.
//!
//! A document (a whole 0.0.4 file, or one OpenMetrics block closed by `# EOF`) is one transaction:
//! every line is parsed and validated before anything is committed, so an invalid document stores
//! nothing. Big 0.0.4 inputs are read in windows of a few MiB (never mapped whole, so memory stays
//! flat), cut into ~1 MiB blocks at line boundaries and parsed in parallel; each parsed sample goes to
//! the appender shard that owns its series (`id % shards`), and each shard applies its blocks in input
//! order, so every series sees its samples in order while all cores work.
//!
//! Like Prometheus' scrape cache, each thread keeps a map from the raw series text (`name{labels}` as
//! it appears in the input) to the series id: labels are parsed and the head consulted only for text
//! not seen before, so a known series costs one hash of its text and nothing is allocated per sample.

use crate::db::{Db, DbError};
use crate::exposition::{self, Entry, Format, ParseError, Parser};
use crate::head::{self, CommitStats};
use crate::labels::{Label, Labels};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Instant;

/// Target size of a block parsed by one task.
const BLOCK_BYTES: usize = 1 << 20;

/// Options of an ingestion.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// The input format; `None` detects it from the first bytes.
    pub format: Option<Format>,
    /// Timestamp (ms) of samples that carry none.
    pub default_timestamp_ms: i64,
    /// Bytes read and parsed per window (a multiple of the block size).
    pub window_bytes: usize,
}

impl IngestOptions {
    pub fn new(default_timestamp_ms: i64) -> IngestOptions {
        IngestOptions {
            format: None,
            default_timestamp_ms,
            window_bytes: 8 * BLOCK_BYTES,
        }
    }
}

/// Why a document was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{source_name}:{line}:{column}: {message}")]
    Parse {
        source_name: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}: {error}")]
    Db { source_name: String, error: DbError },
}

/// What one stored document did.
#[derive(Clone, Debug, Default)]
pub struct DocumentStats {
    pub bytes: u64,
    /// Sample lines read.
    pub samples: u64,
    /// Series created by this document.
    pub new_series: u64,
    pub commit: CommitStats,
    pub seconds: f64,
}

/// A parsed sample routed to its shard: (series id, timestamp, value).
type Routed = (u64, i64, f64);

/// Per-thread scrape cache: raw series text → series id.
type Cache = HashMap<Box<[u8]>, u64, foldhash::fast::FixedState>;

/// Loads documents into a database, keeping its scrape caches across documents.
pub struct Ingester<'db> {
    db: &'db Db,
    opts: IngestOptions,
    caches: Vec<Mutex<Cache>>,
}

/// The outcome of one document of an input.
pub type DocumentResult = Result<DocumentStats, IngestError>;

impl<'db> Ingester<'db> {
    pub fn new(db: &'db Db, opts: IngestOptions) -> Ingester<'db> {
        let threads = rayon::current_num_threads() + 1;
        Ingester {
            db,
            opts,
            caches: (0..threads).map(|_| Mutex::new(Cache::default())).collect(),
        }
    }

    /// Loads every document of `input` (named `name` in errors). With `keep_going`, an invalid
    /// OpenMetrics document does not stop the ones after it. `progress` receives bytes consumed.
    pub fn ingest(
        &self,
        name: &str,
        mut input: impl Read,
        keep_going: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<DocumentResult> {
        let mut first = vec![0u8; 64 * 1024];
        let n = match read_full(&mut input, &mut first) {
            Ok(n) => n,
            Err(error) => {
                return vec![Err(IngestError::Read {
                    source_name: name.to_string(),
                    error,
                })]
            }
        };
        first.truncate(n);
        let format = self
            .opts
            .format
            .unwrap_or_else(|| exposition::detect_format(&first));
        match format {
            Format::Prometheus => vec![self.ingest_prometheus(name, first, input, progress)],
            Format::OpenMetrics => self.ingest_openmetrics(name, first, input, keep_going, progress),
        }
    }

    fn ingest_prometheus(
        &self,
        name: &str,
        first: Vec<u8>,
        mut input: impl Read,
        progress: &(dyn Fn(u64) + Sync),
    ) -> DocumentResult {
        let started = Instant::now();
        let mut app = self.db.appender();
        let mut stats = DocumentStats::default();
        let mut buf = first;
        let mut line = 1u64;
        let mut eof = false;
        let window = self.opts.window_bytes.max(BLOCK_BYTES);
        loop {
            // Fill the window.
            if !eof && buf.len() < window {
                let old = buf.len();
                buf.resize(window, 0);
                let n = read_full(&mut input, &mut buf[old..]).map_err(|error| {
                    IngestError::Read {
                        source_name: name.to_string(),
                        error,
                    }
                })?;
                buf.truncate(old + n);
                eof = n < window - old;
            }
            if buf.is_empty() {
                break;
            }
            // Parse the complete lines; keep a trailing partial line for the next window.
            let end = if eof {
                buf.len()
            } else {
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    // A line longer than the window: grow the window.
                    None => {
                        let cap = buf.len() * 2;
                        buf.reserve(cap);
                        let old = buf.len();
                        buf.resize(cap, 0);
                        let n = read_full(&mut input, &mut buf[old..]).map_err(|error| {
                            IngestError::Read {
                                source_name: name.to_string(),
                                error,
                            }
                        })?;
                        buf.truncate(old + n);
                        eof = n < cap - old;
                        continue;
                    }
                }
            };
            let blocks = split_blocks(&buf[..end], line);
            line = blocks.last().map_or(line, |b| b.3);
            let outs: Vec<BlockOut> = blocks
                .par_iter()
                .map(|&(start, stop, first_line, _)| self.parse_block(&buf[start..stop], first_line))
                .collect();
            // Blocks parse exactly as one pass would, up to the first block that fails or ends the
            // document early (a NUL): a failure there may be an artefact of the cut (a quoted label
            // value may span lines), so from that block on the rest is parsed in one pass.
            let first_bad = outs.iter().position(|o| o.error.is_some() || o.truncated);
            let Some(bad) = first_bad else {
                stage_blocks(app.head_appender(), &outs);
                for o in &outs {
                    stats.samples += o.samples;
                    stats.new_series += o.new_series;
                }
                stats.bytes += end as u64;
                progress(end as u64);
                buf.drain(..end);
                if eof && buf.is_empty() {
                    break;
                }
                continue;
            };
            let good = if outs[bad].error.is_none() { bad + 1 } else { bad };
            stage_blocks(app.head_appender(), &outs[..good]);
            for o in &outs[..good] {
                stats.samples += o.samples;
                stats.new_series += o.new_series;
            }
            if good == bad {
                let (start, _, first_line, _) = blocks[bad];
                if !eof {
                    input.read_to_end(&mut buf).map_err(|error| IngestError::Read {
                        source_name: name.to_string(),
                        error,
                    })?;
                }
                let rest = self.parse_block(&buf[start..], first_line);
                if let Some(e) = &rest.error {
                    app.rollback();
                    return Err(parse_error(name, e));
                }
                stage_blocks(app.head_appender(), std::slice::from_ref(&rest));
                stats.samples += rest.samples;
                stats.new_series += rest.new_series;
            }
            // The document ended early (a NUL, as Prometheus' lexer reads it) or was parsed to its
            // end in one pass: nothing more of the input belongs to it.
            stats.bytes += buf.len() as u64;
            progress(buf.len() as u64);
            break;
        }
        // Rejections counted while staging are part of the commit's statistics.
        stats.commit = app.commit().map_err(|error| IngestError::Db {
            source_name: name.to_string(),
            error,
        })?;
        stats.seconds = started.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Parses one block: resolves each sample's series through this thread's cache and routes it
    /// to its shard. Parsing never touches the appender; only the head's series map (new series).
    fn parse_block(&self, block: &[u8], first_line: u64) -> BlockOut {
        let head = self.db.head();
        let shards = head.shards();
        let mut out = BlockOut {
            routed: (0..shards).map(|_| Vec::new()).collect(),
            samples: 0,
            new_series: 0,
            error: None,
            truncated: false,
        };
        let slot = rayon::current_thread_index().map_or(self.caches.len() - 1, |i| i);
        let Some(cache) = self.caches.get(slot) else {
            return out;
        };
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut parser = Parser::with_first_line(block, Format::Prometheus, first_line);
        let mut labels: Vec<Label> = Vec::new();
        let ts_default = self.opts.default_timestamp_ms;
        loop {
            match parser.next_entry() {
                Ok(Some(Entry::Sample {
                    series,
                    value,
                    timestamp_ms,
                })) => {
                    let id = match cache.get(series) {
                        Some(&id) => id,
                        None => {
                            labels.clear();
                            if let Err(e) = parser.labels(&mut labels) {
                                out.error = Some(e);
                                return out;
                            }
                            let ls = Labels::new(std::mem::take(&mut labels));
                            let (s, created) = head.get_or_create(&ls);
                            labels = ls.into_vec();
                            if created {
                                out.new_series += 1;
                            }
                            cache.insert(series.into(), s.id);
                            s.id
                        }
                    };
                    out.samples += 1;
                    out.routed[(id as usize) % shards].push((
                        id,
                        timestamp_ms.unwrap_or(ts_default),
                        value,
                    ));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out.truncated = parser.truncated_at().is_some();
        out
    }

    fn ingest_openmetrics(
        &self,
        name: &str,
        first: Vec<u8>,
        mut input: impl Read,
        keep_going: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<DocumentResult> {
        // OpenMetrics documents are parsed sequentially: the format's rules span lines (a family's
        // samples follow its TYPE), so blocks cannot be parsed independently.
        let mut data = first;
        if let Err(error) = input.read_to_end(&mut data) {
            return vec![Err(IngestError::Read {
                source_name: name.to_string(),
                error,
            })];
        }
        let mut results = Vec::new();
        let mut offset = 0usize;
        let mut line = 1u64;
        while offset < data.len() {
            let rest = &data[offset..];
            if rest.iter().all(|b| b.is_ascii_whitespace()) && offset > 0 {
                break;
            }
            let (res, consumed) = self.ingest_openmetrics_document(name, rest, line);
            line += rest[..consumed].iter().filter(|&&b| b == b'\n').count() as u64;
            offset += consumed;
            progress(consumed as u64);
            let failed = res.is_err();
            results.push(res);
            if failed && (!keep_going || consumed == 0) {
                break;
            }
        }
        results
    }

    /// One OpenMetrics document starting at `doc`; returns its outcome and the bytes it spans (up to
    /// just past `# EOF`, or to the end of the input).
    fn ingest_openmetrics_document(
        &self,
        name: &str,
        doc: &[u8],
        first_line: u64,
    ) -> (DocumentResult, usize) {
        let started = Instant::now();
        let mut app = self.db.appender();
        let mut stats = DocumentStats::default();
        let mut parser = Parser::with_first_line(doc, Format::OpenMetrics, first_line);
        let mut labels: Vec<Label> = Vec::new();
        let mut cache = self.caches[self.caches.len() - 1]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let skip_to_next_doc = |doc: &[u8]| -> usize {
            // After an error, the document extends to its `# EOF` line, if any.
            let mut pos = 0;
            for l in doc.split_inclusive(|&b| b == b'\n') {
                pos += l.len();
                if l.trim_ascii_end() == b"# EOF" {
                    return pos;
                }
            }
            doc.len()
        };
        let consumed = loop {
            match parser.next_entry() {
                Ok(Some(Entry::Sample {
                    series,
                    value,
                    timestamp_ms,
                })) => {
                    let id = match cache.get(series) {
                        Some(&id) => id,
                        None => {
                            labels.clear();
                            if let Err(e) = parser.labels(&mut labels) {
                                app.rollback();
                                return (Err(parse_error(name, &e)), skip_to_next_doc(doc));
                            }
                            let ls = Labels::new(std::mem::take(&mut labels));
                            let (s, created) = self.db.head().get_or_create(&ls);
                            labels = ls.into_vec();
                            if created {
                                stats.new_series += 1;
                            }
                            cache.insert(series.into(), s.id);
                            s.id
                        }
                    };
                    stats.samples += 1;
                    let ts = timestamp_ms.unwrap_or(self.opts.default_timestamp_ms);
                    // Rejections are counted by the appender and reported at commit.
                    let _ = app.append_id(id, ts, value);
                }
                Ok(Some(Entry::Eof { next_offset })) => break next_offset,
                Ok(Some(_)) => {}
                Ok(None) => {
                    break doc.len();
                }
                Err(e) => {
                    app.rollback();
                    return (Err(parse_error(name, &e)), skip_to_next_doc(doc));
                }
            }
        };
        drop(cache);
        stats.bytes = consumed as u64;
        match app.commit() {
            Ok(c) => {
                stats.commit = c;
                stats.seconds = started.elapsed().as_secs_f64();
                (Ok(stats), consumed)
            }
            Err(error) => (
                Err(IngestError::Db {
                    source_name: name.to_string(),
                    error,
                }),
                consumed,
            ),
        }
    }
}

struct BlockOut {
    routed: Vec<Vec<Routed>>,
    samples: u64,
    new_series: u64,
    error: Option<ParseError>,
    /// The document ended inside this block (a NUL where a line starts).
    truncated: bool,
}

/// Stages parsed blocks: shard `i` on its own thread takes its samples from every block in order.
fn stage_blocks(app: &mut head::Appender<'_>, outs: &[BlockOut]) {
    let head = app.head();
    app.shards_mut()
        .par_iter_mut()
        .enumerate()
        .for_each(|(i, shard)| {
            for o in outs {
                if let Some(samples) = o.routed.get(i) {
                    for &(id, t, v) in samples {
                        // Rejections are counted in the shard and reported by commit.
                        let _ = shard.append_id(head, id, t, v);
                    }
                }
            }
        });
}

/// Cuts `data` (complete lines) into blocks of about [`BLOCK_BYTES`] at line boundaries:
/// (start, end, first line number, line number after the block).
fn split_blocks(data: &[u8], first_line: u64) -> Vec<(usize, usize, u64, u64)> {
    let mut out = Vec::with_capacity(data.len() / BLOCK_BYTES + 1);
    let mut start = 0;
    let mut line = first_line;
    while start < data.len() {
        let mut end = (start + BLOCK_BYTES).min(data.len());
        if end < data.len() {
            end = match data[end..].iter().position(|&b| b == b'\n') {
                Some(i) => end + i + 1,
                None => data.len(),
            };
        }
        let lines = data[start..end].iter().filter(|&&b| b == b'\n').count() as u64;
        out.push((start, end, line, line + lines));
        line += lines;
        start = end;
    }
    out
}

fn parse_error(name: &str, e: &ParseError) -> IngestError {
    IngestError::Parse {
        source_name: name.to_string(),
        line: e.line,
        column: e.column,
        message: e.message.clone(),
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
