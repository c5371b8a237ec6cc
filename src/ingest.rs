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
//!
//! With [`IngestOptions::backfill`], samples older than the head (their range is in blocks
//! already) are written into new blocks ([`crate::backfill`]) instead of being rejected: they are
//! drained from the appender after each window is staged, buffered in bounded memory, and the
//! blocks are handed to the database right after the document's head samples commit. Blocks
//! written while the document is read sit in a staging directory, so a document that fails
//! leaves none of them behind; a crash between the head commit and the blocks' publication keeps
//! the head part only.

use crate::backfill::{Backfill, BackfillError, BackfillOptions, BackfillStats};
use crate::db::{Db, DbError};
use crate::exposition::{self, Entry, Format, ParseError, Parser};
use crate::head::{self, CommitStats};
use crate::labels::{Label, Labels};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

/// Target size of a block parsed by one task.
const BLOCK_BYTES: usize = 1 << 20;
/// An OpenMetrics document hands its samples older than the head to the backfill every this many
/// samples, so that they wait as (slot, t, v) triples (24 bytes) no longer than that.
const OPENMETRICS_DRAIN_EVERY: u64 = 64 * 1024;

/// Options of an ingestion.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// The input format; `None` detects it from the first bytes.
    pub format: Option<Format>,
    /// Timestamp (ms) of samples that carry none.
    pub default_timestamp_ms: i64,
    /// Bytes read per window, cut into blocks parsed in parallel.
    pub window_bytes: usize,
    /// Bytes per block (one parallel task).
    pub block_bytes: usize,
    /// Write samples older than the head into blocks instead of rejecting them as out of bounds
    /// (see the module doc). Default off.
    pub backfill: bool,
    /// Buffer budget of the backfill ([`BackfillOptions::max_buffered_bytes`]).
    pub backfill_buffer_bytes: usize,
}

impl IngestOptions {
    pub fn new(default_timestamp_ms: i64) -> IngestOptions {
        IngestOptions {
            format: None,
            default_timestamp_ms,
            window_bytes: 8 * BLOCK_BYTES,
            block_bytes: BLOCK_BYTES,
            backfill: false,
            backfill_buffer_bytes: crate::backfill::DEFAULT_MAX_BUFFERED_BYTES,
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
    #[error("{source_name}: {error}")]
    Backfill {
        source_name: String,
        error: BackfillError,
    },
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
    /// Samples older than the head written into blocks (with [`IngestOptions::backfill`]).
    pub backfill: BackfillStats,
    pub seconds: f64,
}

/// A parsed sample routed to its shard: (series id, timestamp, value).
type Routed = (u64, i64, f64);

/// A thread's scrape cache: raw series text → series id.
///
/// Exposition files are mostly scrape after scrape of the same series in the same order, so each
/// entry remembers which entry followed it last time: a lookup first compares the text with that
/// prediction (its key sits next in the arena, so memory is read sequentially), and only on a miss
/// hashes the text. On the standard benchmark data the hash-map lookup with its two cache misses
/// (table, then the key's heap box) was a third of the CPU time of ingest.
#[derive(Default)]
struct Cache {
    /// Hash of the text → first entry with that hash.
    by_hash: HashMap<u64, u32, foldhash::fast::FixedState>,
    entries: Vec<CacheEntry>,
    /// Keys, back to back in insertion order.
    arena: Vec<u8>,
    /// The entry of the previous sample in the current block.
    last: u32,
}

struct CacheEntry {
    key_start: u32,
    key_len: u32,
    id: u64,
    /// The entry that followed this one last time.
    next: u32,
    /// The next entry with the same 64-bit hash (collisions are verified, never assumed away).
    same_hash: u32,
}

const NONE: u32 = u32::MAX;

impl Cache {
    fn key(&self, e: &CacheEntry) -> &[u8] {
        &self.arena[e.key_start as usize..(e.key_start + e.key_len) as usize]
    }

    /// Starts a new block: the predecessor of its first sample is unknown.
    fn reset_position(&mut self) {
        self.last = NONE;
    }

    /// The entry expected next (the one that followed the previous sample's last time) and its
    /// key.
    #[inline]
    fn predicted(&self) -> Option<(u32, &[u8])> {
        let prev = self.entries.get(self.last as usize)?;
        let e = self.entries.get(prev.next as usize)?;
        Some((prev.next, self.key(e)))
    }

    /// The predicted entry was right: returns its id.
    #[inline]
    fn confirm(&mut self, i: u32) -> u64 {
        self.last = i;
        self.entries.get(i as usize).map_or(0, |e| e.id)
    }

    #[inline]
    fn get(&mut self, key: &[u8]) -> Option<u64> {
        if let Some(prev) = self.entries.get(self.last as usize) {
            if let Some(e) = self.entries.get(prev.next as usize) {
                if self.key(e) == key {
                    self.last = prev.next;
                    return Some(e.id);
                }
            }
        }
        let mut i = *self.by_hash.get(&hash_key(key))?;
        while let Some(e) = self.entries.get(i as usize) {
            if self.key(e) == key {
                let id = e.id;
                self.link(i);
                return Some(id);
            }
            i = e.same_hash;
        }
        None
    }

    fn link(&mut self, i: u32) {
        if let Some(prev) = self.entries.get_mut(self.last as usize) {
            prev.next = i;
        }
        self.last = i;
    }

    fn insert(&mut self, key: &[u8], id: u64) {
        let i = self.entries.len() as u32;
        let h = hash_key(key);
        let same_hash = self.by_hash.insert(h, i).unwrap_or(NONE);
        self.entries.push(CacheEntry {
            key_start: self.arena.len() as u32,
            key_len: key.len() as u32,
            id,
            next: NONE,
            same_hash,
        });
        self.arena.extend_from_slice(key);
        self.link(i);
    }

    /// The series of the current sample (`series` is its raw text): from the cache, or — for text
    /// not seen before — by parsing its labels and finding or creating the series in the head.
    /// Returns the id and whether the series was created.
    fn resolve(
        &mut self,
        series: &[u8],
        parser: &Parser<'_>,
        scratch: &mut Vec<Label>,
        head: &crate::head::Head,
    ) -> Result<(u64, bool), ParseError> {
        if let Some(id) = self.get(series) {
            return Ok((id, false));
        }
        parser.labels(scratch)?;
        let labels = Labels::new(std::mem::take(scratch));
        let (s, created) = head.get_or_create(&labels);
        *scratch = labels.into_vec();
        self.ensure_room(series.len());
        self.insert(series, s.id);
        Ok((s.id, created))
    }

    /// The arena addresses keys with u32 offsets: start over before it would overflow.
    fn ensure_room(&mut self, key_len: usize) {
        if self.arena.len() + key_len >= u32::MAX as usize {
            *self = Cache::default();
        }
    }
}

fn hash_key(key: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x6a09_e667_f3bc_c908).build_hasher();
    h.write(key);
    h.finish()
}

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

    /// A backfill for one document, when on; the appender then sets old samples aside for it.
    fn start_backfill(&self, app: &mut crate::db::Appender<'_>) -> Option<Backfill> {
        if !self.opts.backfill {
            return None;
        }
        app.head_appender().set_backfill(true);
        Some(Backfill::new(
            self.db,
            BackfillOptions::new(self.db.options().block_range_ms)
                .max_buffered_bytes(self.opts.backfill_buffer_bytes),
        ))
    }

    /// Loads every document of `input` (named `name` in errors). With `keep_going`, an invalid
    /// OpenMetrics document does not stop the ones after it. `progress` receives bytes consumed.
    pub fn ingest(
        &self,
        name: &str,
        mut input: impl Read + Send,
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
            Format::OpenMetrics => {
                self.ingest_openmetrics(name, first, input, keep_going, progress)
            }
        }
    }

    fn ingest_prometheus(
        &self,
        name: &str,
        first: Vec<u8>,
        input: impl Read + Send,
        progress: &(dyn Fn(u64) + Sync),
    ) -> DocumentResult {
        let started = Instant::now();
        let block = self.opts.block_bytes.max(1);
        let window = self.opts.window_bytes.max(block);
        std::thread::scope(|scope| {
            // The reader runs ahead of the parsers by one window, in buffers passed back and forth.
            let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Window>>(1);
            let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
            scope.spawn(move || read_windows(first, input, window, block, full_tx, empty_rx));
            let result = self.parse_windows(name, &full_rx, &empty_tx, progress);
            // Unblock the reader if parsing stopped early, then let it finish.
            drop(full_rx);
            drop(empty_tx);
            result
        })
        .map(|mut stats| {
            stats.seconds = started.elapsed().as_secs_f64();
            stats
        })
    }

    fn parse_windows(
        &self,
        name: &str,
        windows: &mpsc::Receiver<std::io::Result<Window>>,
        recycle: &mpsc::Sender<Vec<u8>>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> DocumentResult {
        let read_err = |error| IngestError::Read {
            source_name: name.to_string(),
            error,
        };
        let backfill_err = |error| IngestError::Backfill {
            source_name: name.to_string(),
            error,
        };
        let mut app = self.db.appender();
        let mut backfill = self.start_backfill(&mut app);
        let mut stats = DocumentStats::default();
        let mut line = 1u64;
        // Parsed but not yet staged: staging window k overlaps parsing window k+1.
        let mut parsed: Vec<BlockOut> = Vec::new();
        while let Ok(w) = windows.recv() {
            let w = w.map_err(read_err)?;
            let data = &w.buf[..w.len];
            let blocks = split_blocks(data, self.opts.block_bytes);
            let prev = std::mem::take(&mut parsed);
            let (drained, mut outs) = rayon::join(
                || stage_and_drain(app.head_appender(), &prev, backfill.as_mut()),
                || {
                    blocks
                        .par_iter()
                        .map(|&(start, stop)| {
                            let mut o = self.parse_block(&data[start..stop], 1);
                            o.lines = count_newlines(&data[start..stop]);
                            o
                        })
                        .collect::<Vec<BlockOut>>()
                },
            );
            drained.map_err(backfill_err)?;
            for o in &prev {
                stats.samples += o.samples;
                stats.new_series += o.new_series;
            }
            // Line numbers: each block was parsed from line 1; place them in the input.
            let mut first_lines = Vec::with_capacity(outs.len());
            for o in &mut outs {
                first_lines.push(line);
                if let Some(e) = &mut o.error {
                    e.line += line - 1;
                }
                line += o.lines;
            }
            stats.bytes += w.len as u64;
            progress(w.len as u64);
            // Blocks parse exactly as one pass would, up to the first block that fails or ends the
            // document early (a NUL): a failure there may be an artefact of the cut (a quoted label
            // value may span lines), so from that block on the rest is parsed in one pass.
            let Some(bad) = outs.iter().position(|o| o.error.is_some() || o.truncated) else {
                parsed = outs;
                let _ = recycle.send(w.buf);
                continue;
            };
            let good = if outs[bad].error.is_none() {
                bad + 1
            } else {
                bad
            };
            outs.truncate(good.max(bad + 1));
            let bad_out = outs.pop();
            if good > bad {
                parsed = outs;
                parsed.extend(bad_out);
                break;
            }
            // Re-parse from the failing block's start to the end of the input in one pass.
            let mut rest = data[blocks[bad].0..].to_vec();
            for more in windows.iter() {
                let more = more.map_err(read_err)?;
                rest.extend_from_slice(&more.buf[..more.len]);
                stats.bytes += more.len as u64;
                progress(more.len as u64);
            }
            let out = self.parse_block(&rest, first_lines[bad]);
            if let Some(e) = &out.error {
                app.rollback();
                return Err(parse_error(name, e));
            }
            outs.push(out);
            parsed = outs;
            break;
        }
        stage_and_drain(app.head_appender(), &parsed, backfill.as_mut()).map_err(backfill_err)?;
        for o in &parsed {
            stats.samples += o.samples;
            stats.new_series += o.new_series;
        }
        // Rejections counted while staging are part of the commit's statistics.
        stats.commit = app.commit().map_err(|error| IngestError::Db {
            source_name: name.to_string(),
            error,
        })?;
        if let Some(b) = backfill {
            stats.backfill = b.commit(self.db).map_err(backfill_err)?;
        }
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
            lines: 0,
        };
        let slot = rayon::current_thread_index().map_or(self.caches.len() - 1, |i| i);
        let Some(cache) = self.caches.get(slot) else {
            return out;
        };
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.reset_position();
        let mut parser = Parser::with_first_line(block, Format::Prometheus, first_line);
        let mut labels: Vec<Label> = Vec::new();
        let ts_default = self.opts.default_timestamp_ms;
        loop {
            // The cache's guess for the next line, checked by comparing bytes instead of lexing.
            let guess = match cache.predicted() {
                Some((i, key)) => parser.next_sample_for(key).map(|e| (i, e)),
                None => None,
            };
            if let Some((
                i,
                Entry::Sample {
                    value,
                    timestamp_ms,
                    ..
                },
            )) = guess
            {
                let id = cache.confirm(i);
                out.samples += 1;
                out.routed[(id as usize) % shards].push((
                    id,
                    timestamp_ms.unwrap_or(ts_default),
                    value,
                ));
                continue;
            }
            match parser.next_entry() {
                Ok(Some(Entry::Sample {
                    series,
                    value,
                    timestamp_ms,
                })) => {
                    let id = match cache.resolve(series, &parser, &mut labels, head) {
                        Ok((id, created)) => {
                            out.new_series += u64::from(created);
                            id
                        }
                        Err(e) => {
                            out.error = Some(e);
                            return out;
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
        let mut backfill = self.start_backfill(&mut app);
        let mut stats = DocumentStats::default();
        let mut parser = Parser::with_first_line(doc, Format::OpenMetrics, first_line);
        let mut labels: Vec<Label> = Vec::new();
        let mut cache = self.caches[self.caches.len() - 1]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cache.reset_position();
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
                    let id = match cache.resolve(series, &parser, &mut labels, self.db.head()) {
                        Ok((id, created)) => {
                            stats.new_series += u64::from(created);
                            id
                        }
                        Err(e) => {
                            app.rollback();
                            return (Err(parse_error(name, &e)), skip_to_next_doc(doc));
                        }
                    };
                    stats.samples += 1;
                    let ts = timestamp_ms.unwrap_or(self.opts.default_timestamp_ms);
                    // Rejections are counted by the appender and reported at commit.
                    let _ = app.append_id(id, ts, value);
                    if let Some(b) = &mut backfill {
                        if stats.samples % OPENMETRICS_DRAIN_EVERY == 0 {
                            if let Err(error) = b.drain(app.head_appender()) {
                                app.rollback();
                                let e = IngestError::Backfill {
                                    source_name: name.to_string(),
                                    error,
                                };
                                return (Err(e), skip_to_next_doc(doc));
                            }
                        }
                    }
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
        if let Some(b) = &mut backfill {
            if let Err(error) = b.drain(app.head_appender()) {
                app.rollback();
                let e = IngestError::Backfill {
                    source_name: name.to_string(),
                    error,
                };
                return (Err(e), consumed);
            }
        }
        match app.commit() {
            Ok(c) => {
                stats.commit = c;
                if let Some(b) = backfill {
                    match b.commit(self.db) {
                        Ok(bs) => stats.backfill = bs,
                        Err(error) => {
                            let e = IngestError::Backfill {
                                source_name: name.to_string(),
                                error,
                            };
                            return (Err(e), consumed);
                        }
                    }
                }
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

/// A window of the input: `buf[..len]` ends at a line boundary (or at the end of the input).
struct Window {
    buf: Vec<u8>,
    len: usize,
}

/// The reader thread: fills windows of about `window` bytes, cut after their last newline (the
/// partial line is carried into the next), and sends them; buffers come back through `empty`.
fn read_windows(
    first: Vec<u8>,
    mut input: impl Read,
    window: usize,
    block: usize,
    full: mpsc::SyncSender<std::io::Result<Window>>,
    empty: mpsc::Receiver<Vec<u8>>,
) {
    let mut carry = first;
    let mut eof = false;
    while !eof || !carry.is_empty() {
        // Buffers keep their length between uses, so they are zeroed once, not per window.
        let mut buf = empty.try_recv().unwrap_or_default();
        let mut want = window.max(carry.len() + block);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        buf[..carry.len()].copy_from_slice(&carry);
        let mut filled = carry.len();
        carry.clear();
        loop {
            if !eof {
                match read_full(&mut input, &mut buf[filled..want]) {
                    Ok(n) => {
                        eof = n < want - filled;
                        filled += n;
                    }
                    Err(e) => {
                        let _ = full.send(Err(e));
                        return;
                    }
                }
            }
            let len = if eof {
                filled
            } else {
                match buf[..filled].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None => {
                        // A line longer than the window: read more.
                        want = filled * 2;
                        buf.resize(want, 0);
                        continue;
                    }
                }
            };
            carry.extend_from_slice(&buf[len..filled]);
            if len > 0 && full.send(Ok(Window { buf, len })).is_err() {
                return;
            }
            break;
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
    /// Newlines in the block.
    lines: u64,
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

/// [`stage_blocks`], then the samples set aside as older than the head go to the backfill.
fn stage_and_drain(
    app: &mut head::Appender<'_>,
    outs: &[BlockOut],
    backfill: Option<&mut Backfill>,
) -> Result<(), BackfillError> {
    stage_blocks(app, outs);
    match backfill {
        Some(b) => b.drain(app),
        None => Ok(()),
    }
}

/// Cuts `data` (complete lines) into blocks of about `block` bytes at line boundaries.
fn split_blocks(data: &[u8], block: usize) -> Vec<(usize, usize)> {
    let block = block.max(1);
    let mut out = Vec::with_capacity(data.len() / block + 1);
    let mut start = 0;
    while start < data.len() {
        let mut end = (start + block).min(data.len());
        if end < data.len() {
            end = match data[end..].iter().position(|&b| b == b'\n') {
                Some(i) => end + i + 1,
                None => data.len(),
            };
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// Counts `\n` bytes, 8 at a time (SWAR), without a per-byte branch.
fn count_newlines(data: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b) ^ (ONES * u64::from(b'\n'));
        // High bit set in each byte of x that is zero (exact for all byte values).
        let zero = !(((x & !HIGH) + !HIGH) | x) & HIGH;
        n += u64::from(zero.count_ones());
    }
    n + words.remainder().iter().filter(|&&b| b == b'\n').count() as u64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_cache_predicts_and_falls_back() {
        let mut c = Cache::default();
        c.reset_position();
        for (i, k) in ["a{x=\"1\"}", "b", "c"].iter().enumerate() {
            assert_eq!(c.get(k.as_bytes()), None);
            c.insert(k.as_bytes(), i as u64);
        }
        // Same order: every lookup hits the prediction.
        c.reset_position();
        assert_eq!(c.get(b"a{x=\"1\"}"), Some(0));
        assert_eq!(c.get(b"b"), Some(1));
        assert_eq!(c.get(b"c"), Some(2));
        // Other order and unknown keys: the hash map answers.
        c.reset_position();
        assert_eq!(c.get(b"c"), Some(2));
        assert_eq!(c.get(b"a{x=\"1\"}"), Some(0));
        assert_eq!(c.get(b"d"), None);
        assert_eq!(c.get(b"b"), Some(1));
    }

    #[test]
    fn newline_count_is_exact() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 100, 10_000] {
            let want = data[..len].iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_newlines(&data[..len]), want);
        }
        assert_eq!(count_newlines(b"\n\n\n\n\n\n\n\n\n"), 9);
    }

    #[test]
    fn blocks_end_at_line_boundaries() {
        let line = b"metric_name{label=\"value\"} 1 1000\n";
        let data: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 100_000)
            .collect();
        let blocks = split_blocks(&data, BLOCK_BYTES);
        assert!(blocks.len() > 2);
        assert_eq!(blocks[0].0, 0);
        assert_eq!(blocks.last().unwrap().1, data.len());
        for w in blocks.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            assert_eq!(data[w[0].1 - 1], b'\n');
        }
    }
}
