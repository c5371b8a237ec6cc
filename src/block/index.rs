//! The index file of a block, format version 2: Prometheus' `tsdb/docs/format/index.md` and
//! `tsdb/index/index.go` (v2.42).
//!
//! Layout: header (magic `0xBAAAD700`, version 2), symbol table (sorted unique strings, referenced by
//! position), series (16-byte aligned; a series reference is its offset / 16; label pairs as symbol
//! references, then chunk metas with mint, maxt and chunk reference delta-encoded), label indices
//! (one per label name, kept for older readers), postings (4-byte aligned lists of series
//! references, the all-series list under the empty name and value first), label offset table,
//! postings offset table (sorted by name, value), and a 52-byte TOC. Sections start with a
//! big-endian length and end with a CRC32C of the bytes the length counts; series entries use a
//! uvarint length instead.
//!
//! The writer streams sections to any `Write` in one pass (symbols must be known up front, as in
//! Prometheus). The reader works on the mapped file: at open it checks the TOC, the symbol table
//! and the postings offset table (keeping every 32nd symbol offset and every 32nd postings entry
//! per label name, as Prometheus does, so memory stays small); series and postings lists are
//! decoded, and their CRCs checked, only when asked for.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::encoding::{
    put_be32, put_be64, put_uvarint, put_uvarint_str, put_varint, read_uvarint, Decbuf,
};
use super::mmap::Mapped;
use crate::index::{merge, BigEndianPostings, EmptyPostings, IndexReader, Postings};
use crate::labels::{Label, Labels};

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Index format version 1 (Prometheus before 2.x's postings offset table; not read).
pub const FORMAT_V1: u8 = 1;
/// Index format version 2, the one Prometheus 2.x writes.
pub const FORMAT_V2: u8 = 2;
/// Magic and version.
pub const HEADER_LEN: usize = 5;
/// Six big-endian u64 section offsets and a CRC32C.
pub const TOC_LEN: usize = 6 * 8 + 4;
/// Series entries are aligned to this; a series reference is its offset divided by it.
pub const SERIES_ALIGNMENT: u64 = 16;
/// Label indices and postings lists are aligned to this for faster scans.
const LIST_ALIGNMENT: u64 = 4;
/// Every this many symbols (and postings offset entries per name) the reader keeps a position.
const SAMPLE_EVERY: usize = 32;
/// Name of the index file in a block directory.
pub const INDEX_FILENAME: &str = "index";

/// Why an index could not be written or read. Read errors name the file and the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} at offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{path}: writing index: {what}")]
    Write { path: PathBuf, what: String },
}

/// A chunk as the index describes it: time range (both ends inclusive) and chunk reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRefMeta {
    pub min_t: i64,
    pub max_t: i64,
    pub chunk_ref: u64,
}

/// The table of contents: where each section starts (0 = absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for x in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            put_be64(out, x);
        }
        let crc = crc32c::crc32c(&out[start..]);
        put_be32(out, crc);
    }

    /// Decodes the TOC from the last [`TOC_LEN`] bytes of `index`.
    fn decode(index: &[u8]) -> Result<Toc, (u64, String)> {
        let start = index
            .len()
            .checked_sub(TOC_LEN)
            .ok_or((0, format!("{} bytes, too short for a TOC", index.len())))?;
        let mut d = Decbuf::new(index, start, index.len());
        let body = d.bytes(TOC_LEN - 4).unwrap_or_default();
        let want = d.be32().unwrap_or_default();
        let got = crc32c::crc32c(body);
        if got != want {
            return Err((
                start as u64,
                format!("TOC CRC32C {got:#010x}, stored {want:#010x}"),
            ));
        }
        let mut d = Decbuf::new(index, start, index.len());
        let mut f = || d.be64().unwrap_or_default();
        Ok(Toc {
            symbols: f(),
            series: f(),
            label_indices: f(),
            label_indices_table: f(),
            postings: f(),
            postings_table: f(),
        })
    }
}

/// Streams an index in format v2 into `out`.
///
/// Call [`IndexWriter::new`] with every symbol, [`IndexWriter::add_series`] for each series in
/// label order, then [`IndexWriter::finish`]. Postings are gathered in memory as 4 bytes per
/// label of each series.
pub struct IndexWriter<W: Write> {
    out: W,
    path: PathBuf,
    pos: u64,
    toc: Toc,
    symbols: HashMap<String, u32>,
    num_symbols: u32,
    last: Option<Labels>,
    /// (name symbol, value symbol) -> series references. Symbol numbers sort like their strings,
    /// so the map's order is the postings offset table's (name, value) order.
    postings: BTreeMap<(u32, u32), Vec<u32>>,
    all: Vec<u32>,
    buf: Vec<u8>,
}

impl<W: Write> IndexWriter<W> {
    /// Writes the header and the symbol table. `symbols` must be sorted and unique and contain
    /// every label name and value later added. `path` only labels errors.
    pub fn new<'s>(
        out: W,
        path: &Path,
        symbols: impl IntoIterator<Item = &'s str>,
    ) -> Result<IndexWriter<W>, IndexError> {
        let mut w = IndexWriter {
            out,
            path: path.to_path_buf(),
            pos: 0,
            toc: Toc::default(),
            symbols: HashMap::new(),
            num_symbols: 0,
            last: None,
            postings: BTreeMap::new(),
            all: Vec::new(),
            buf: Vec::new(),
        };
        let mut head = Vec::new();
        put_be32(&mut head, MAGIC_INDEX);
        head.push(FORMAT_V2);
        w.write(&head)?;

        w.toc.symbols = w.pos;
        let mut body = Vec::new();
        put_be32(&mut body, 0); // Symbol count, set below.
        let mut prev: Option<&str> = None;
        for s in symbols {
            if prev.is_some_and(|p| p >= s) {
                return Err(w.misuse(format!("symbol {s:?} out of order or repeated")));
            }
            prev = Some(s);
            put_uvarint_str(&mut body, s);
            let n = w.num_symbols;
            w.symbols.insert(s.to_string(), n);
            w.num_symbols = n
                .checked_add(1)
                .ok_or_else(|| w.misuse("more than 2^32 symbols".into()))?;
        }
        body[..4].copy_from_slice(&w.num_symbols.to_be_bytes());
        w.write_section(&body)?;
        w.toc.series = w.pos;
        Ok(w)
    }

    fn misuse(&self, what: String) -> IndexError {
        IndexError::Write {
            path: self.path.clone(),
            what,
        }
    }

    fn write(&mut self, b: &[u8]) -> Result<(), IndexError> {
        self.out.write_all(b).map_err(|source| IndexError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<(), IndexError> {
        let rem = self.pos % align;
        if rem != 0 {
            self.write(&[0u8; SERIES_ALIGNMENT as usize][..(align - rem) as usize])?;
        }
        Ok(())
    }

    /// Writes `len <4b> | body | CRC32C(body)`.
    fn write_section(&mut self, body: &[u8]) -> Result<(), IndexError> {
        let len = u32::try_from(body.len())
            .map_err(|_| self.misuse(format!("section of {} bytes exceeds 4 GiB", body.len())))?;
        self.write(&len.to_be_bytes())?;
        self.write(body)?;
        self.write(&crc32c::crc32c(body).to_be_bytes())
    }

    /// Whether `s` is in the symbol table.
    pub fn has_symbol(&self, s: &str) -> bool {
        self.symbols.contains_key(s)
    }

    fn symbol(&self, s: &str) -> Result<u32, IndexError> {
        self.symbols
            .get(s)
            .copied()
            .ok_or_else(|| self.misuse(format!("{s:?} is not in the symbol table")))
    }

    /// Appends a series with its chunks (sorted by time); returns its series reference. Series
    /// must come in strictly increasing label order.
    pub fn add_series(
        &mut self,
        labels: &Labels,
        chunks: &[ChunkRefMeta],
    ) -> Result<u64, IndexError> {
        if let Some(last) = &self.last {
            if labels <= last {
                return Err(self.misuse(format!("series {labels} added after {last}")));
            }
        }
        self.pad(SERIES_ALIGNMENT)?;
        let sref = u32::try_from(self.pos / SERIES_ALIGNMENT)
            .map_err(|_| self.misuse("series section exceeds 64 GiB".into()))?;
        let mut body = std::mem::take(&mut self.buf);
        body.clear();
        put_uvarint(&mut body, labels.len() as u64);
        for l in labels {
            let n = self.symbol(&l.name)?;
            let v = self.symbol(&l.value)?;
            put_uvarint(&mut body, u64::from(n));
            put_uvarint(&mut body, u64::from(v));
            self.postings.entry((n, v)).or_default().push(sref);
        }
        put_uvarint(&mut body, chunks.len() as u64);
        if let Some((first, rest)) = chunks.split_first() {
            put_varint(&mut body, first.min_t);
            put_uvarint(&mut body, first.max_t.wrapping_sub(first.min_t) as u64);
            put_uvarint(&mut body, first.chunk_ref);
            let (mut t0, mut r0) = (first.max_t, first.chunk_ref);
            for c in rest {
                // Prometheus writes these as unsigned even when chunks overlap; readers wrap back.
                put_uvarint(&mut body, c.min_t.wrapping_sub(t0) as u64);
                put_uvarint(&mut body, c.max_t.wrapping_sub(c.min_t) as u64);
                put_varint(&mut body, c.chunk_ref.wrapping_sub(r0) as i64);
                t0 = c.max_t;
                r0 = c.chunk_ref;
            }
        }
        let mut len = Vec::new();
        put_uvarint(&mut len, body.len() as u64);
        let crc = crc32c::crc32c(&body);
        let res = self
            .write(&len)
            .and_then(|_| self.write(&body))
            .and_then(|_| self.write(&crc.to_be_bytes()));
        self.buf = body;
        res?;
        self.all.push(sref);
        self.last = Some(labels.clone());
        Ok(u64::from(sref))
    }

    /// Writes label indices, postings, both offset tables and the TOC; returns the sink.
    pub fn finish(mut self) -> Result<W, IndexError> {
        let postings = std::mem::take(&mut self.postings);

        // Label indices: per name, its values as symbol references.
        self.toc.label_indices = self.pos;
        let mut label_index_offsets: Vec<(u32, u64)> = Vec::new();
        let mut i = 0;
        let keys: Vec<(u32, u32)> = postings.keys().copied().collect();
        while i < keys.len() {
            let name = keys[i].0;
            let j = i + keys[i..].iter().take_while(|k| k.0 == name).count();
            self.pad(LIST_ALIGNMENT)?;
            label_index_offsets.push((name, self.pos));
            let mut body = Vec::with_capacity(8 + 4 * (j - i));
            put_be32(&mut body, 1);
            put_be32(&mut body, (j - i) as u32);
            for k in &keys[i..j] {
                put_be32(&mut body, k.1);
            }
            self.write_section(&body)?;
            i = j;
        }

        // Postings, the all-series list first; the offset table follows in the same order.
        self.toc.postings = self.pos;
        self.pad(LIST_ALIGNMENT)?;
        let symbols = std::mem::take(&mut self.symbols);
        let names: Vec<&str> = {
            let mut v: Vec<(&String, &u32)> = symbols.iter().collect();
            v.sort_by_key(|(_, &n)| n);
            v.into_iter().map(|(s, _)| s.as_str()).collect()
        };
        let sym = |n: u32| names.get(n as usize).copied().unwrap_or("");
        let mut table = Vec::new();
        put_be32(&mut table, 0); // Entry count, set below.
        let mut entries: u32 = 0;
        let all = std::mem::take(&mut self.all);
        let lists = std::iter::once(("", "", &all)).chain(
            postings
                .iter()
                .map(|(&(n, v), refs)| (sym(n), sym(v), refs)),
        );
        let mut body = Vec::new();
        for (name, value, refs) in lists {
            self.pad(LIST_ALIGNMENT)?;
            table.push(2);
            put_uvarint_str(&mut table, name);
            put_uvarint_str(&mut table, value);
            put_uvarint(&mut table, self.pos);
            entries += 1;
            body.clear();
            put_be32(&mut body, refs.len() as u32);
            for &r in refs {
                put_be32(&mut body, r);
            }
            self.write_section(&body)?;
        }
        table[..4].copy_from_slice(&entries.to_be_bytes());

        self.toc.label_indices_table = self.pos;
        let mut lt = Vec::new();
        put_be32(&mut lt, label_index_offsets.len() as u32);
        for (n, off) in &label_index_offsets {
            lt.push(1);
            put_uvarint_str(&mut lt, sym(*n));
            put_uvarint(&mut lt, *off);
        }
        self.write_section(&lt)?;

        self.toc.postings_table = self.pos;
        self.write_section(&table)?;

        let mut toc = Vec::with_capacity(TOC_LEN);
        self.toc.encode(&mut toc);
        self.write(&toc)?;
        self.out.flush().map_err(|source| IndexError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.out)
    }
}

/// A series read from the index: labels and chunk metas.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesEntry {
    pub labels: Labels,
    pub chunks: Vec<ChunkRefMeta>,
}

/// One entry of the postings offset table.
struct TableEntry<'a> {
    name: &'a [u8],
    value: &'a [u8],
    /// Offset of the postings list in the file.
    offset: u64,
    /// Table position of the next entry.
    next: usize,
}

/// Where one label name's entries lie in the postings offset table.
#[derive(Debug)]
struct NameEntries {
    /// Every [`SAMPLE_EVERY`]th value with the table position of its entry, plus the last value.
    samples: Vec<(Box<str>, usize)>,
    /// Table position just past the name's last entry.
    end: usize,
}

/// A mapped index file, decoded lazily.
#[derive(Debug)]
pub struct IndexFileReader {
    path: PathBuf,
    data: Mapped,
    toc: Toc,
    /// Position of the symbol table's first entry and end of its entries.
    symbols_start: usize,
    symbols_end: usize,
    num_symbols: usize,
    symbol_samples: Vec<usize>,
    names: BTreeMap<Box<str>, NameEntries>,
    /// Symbol reference -> label name, for the few symbols that are names: half of all lookups
    /// when decoding series, answered without walking the symbol table (as Prometheus does).
    name_symbols: HashMap<u32, Box<str>>,
    /// First error met behind [`IndexReader`], whose methods cannot return one.
    sticky: Mutex<Option<IndexError>>,
}

impl IndexFileReader {
    /// Maps and opens the index file at `path`.
    pub fn open(path: &Path) -> Result<IndexFileReader, IndexError> {
        let data = Mapped::open(path).map_err(|source| IndexError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        IndexFileReader::from_mapped(path, data)
    }

    /// Opens index bytes already in memory; `path` labels errors.
    pub fn from_bytes(path: &Path, data: Vec<u8>) -> Result<IndexFileReader, IndexError> {
        IndexFileReader::from_mapped(path, Mapped::from_vec(data))
    }

    fn corrupt(&self, offset: usize, what: impl Into<String>) -> IndexError {
        IndexError::Corrupt {
            path: self.path.clone(),
            offset: offset as u64,
            what: what.into(),
        }
    }

    fn from_mapped(path: &Path, data: Mapped) -> Result<IndexFileReader, IndexError> {
        let mut r = IndexFileReader {
            path: path.to_path_buf(),
            data,
            toc: Toc::default(),
            symbols_start: 0,
            symbols_end: 0,
            num_symbols: 0,
            symbol_samples: Vec::new(),
            names: BTreeMap::new(),
            name_symbols: HashMap::new(),
            sticky: Mutex::new(None),
        };
        let b: &[u8] = &r.data;
        if b.len() < HEADER_LEN + TOC_LEN {
            return Err(r.corrupt(0, format!("{} bytes, too short for an index", b.len())));
        }
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC_INDEX {
            return Err(r.corrupt(0, format!("magic {magic:#010x}, want {MAGIC_INDEX:#010x}")));
        }
        if b[4] != FORMAT_V2 {
            return Err(r.corrupt(
                4,
                format!("index format version {}, want {FORMAT_V2}", b[4]),
            ));
        }
        r.toc = Toc::decode(b).map_err(|(o, w)| r.corrupt(o as usize, w))?;
        r.read_symbols()?;
        r.read_postings_table()?;
        let mut name_symbols = HashMap::with_capacity(r.names.len());
        for n in r.names.keys().filter(|n| !n.is_empty()) {
            if let Some(i) = r.symbol_ref(n) {
                name_symbols.insert(i, n.clone());
            }
        }
        r.name_symbols = name_symbols;
        Ok(r)
    }

    /// The body range of the `len <4b> | body | CRC` section at `off`, its CRC checked.
    fn section(&self, off: u64, what: &str) -> Result<(usize, usize), IndexError> {
        let b: &[u8] = &self.data;
        let o = usize::try_from(off).unwrap_or(usize::MAX);
        let mut d = Decbuf::new(b, o, b.len());
        let len = d
            .be32()
            .ok_or_else(|| self.corrupt(o, format!("{what}: length beyond the end of the file")))?;
        let start = d.pos();
        let body = d.bytes(len as usize).ok_or_else(|| {
            self.corrupt(
                o,
                format!("{what}: {len} bytes run past the end of the file"),
            )
        })?;
        let want = d
            .be32()
            .ok_or_else(|| self.corrupt(o, format!("{what}: CRC beyond the end of the file")))?;
        let got = crc32c::crc32c(body);
        if got != want {
            return Err(self.corrupt(
                o,
                format!("{what}: CRC32C {got:#010x}, stored {want:#010x}"),
            ));
        }
        Ok((start, start + len as usize))
    }

    fn read_symbols(&mut self) -> Result<(), IndexError> {
        if self.toc.symbols == 0 {
            return Ok(());
        }
        let (start, end) = self.section(self.toc.symbols, "symbol table")?;
        let b: &[u8] = &self.data;
        let mut d = Decbuf::new(b, start, end);
        let count = d
            .be32()
            .ok_or_else(|| self.corrupt(start, "symbol table: no symbol count"))?
            as usize;
        self.symbols_start = d.pos();
        let mut samples = Vec::with_capacity(count.min(d.remaining()) / SAMPLE_EVERY + 1);
        let mut prev: Option<&[u8]> = None;
        for i in 0..count {
            if i % SAMPLE_EVERY == 0 {
                samples.push(d.pos());
            }
            let at = d.pos();
            let s = d
                .uvarint_bytes()
                .ok_or_else(|| self.corrupt(at, format!("symbol {i} of {count} is truncated")))?;
            if std::str::from_utf8(s).is_err() {
                return Err(self.corrupt(at, format!("symbol {i} is not UTF-8")));
            }
            if prev.is_some_and(|p| p >= s) {
                return Err(self.corrupt(at, format!("symbol {i} is out of order")));
            }
            prev = Some(s);
        }
        self.symbols_end = d.pos();
        self.num_symbols = count;
        self.symbol_samples = samples;
        Ok(())
    }

    /// Decodes the postings offset table entry at `pos` (entries end at `end`).
    fn table_entry(&self, pos: usize, end: usize) -> Result<TableEntry<'_>, IndexError> {
        let mut d = Decbuf::new(&self.data, pos, end);
        let bad = || self.corrupt(pos, "postings offset table: truncated entry");
        let keys = d.uvarint().ok_or_else(bad)?;
        if keys != 2 {
            return Err(self.corrupt(
                pos,
                format!("postings offset table: entry with {keys} keys, want 2"),
            ));
        }
        let name = d.uvarint_bytes().ok_or_else(bad)?;
        let value = d.uvarint_bytes().ok_or_else(bad)?;
        let offset = d.uvarint().ok_or_else(bad)?;
        Ok(TableEntry {
            name,
            value,
            offset,
            next: d.pos(),
        })
    }

    fn read_postings_table(&mut self) -> Result<(), IndexError> {
        if self.toc.postings_table == 0 {
            return Ok(());
        }
        let (start, end) = self.section(self.toc.postings_table, "postings offset table")?;
        let mut d = Decbuf::new(&self.data, start, end);
        let count = d
            .be32()
            .ok_or_else(|| self.corrupt(start, "postings offset table: no entry count"))?;
        let mut pos = d.pos();
        let mut names: BTreeMap<Box<str>, NameEntries> = BTreeMap::new();
        // The name being read, its entries so far, and its latest (value, position).
        let mut cur: Option<(Box<str>, NameEntries, usize)> = None;
        let mut last: (Box<str>, usize) = (Box::from(""), 0);
        let close = |c: Option<(Box<str>, NameEntries, usize)>,
                     last: &(Box<str>, usize),
                     names: &mut BTreeMap<Box<str>, NameEntries>| {
            if let Some((n, mut e, _)) = c {
                // The last value is always kept, so lookups past it stop without scanning.
                if e.samples.last().map(|s| s.1) != Some(last.1) {
                    e.samples.push(last.clone());
                }
                names.insert(n, e);
            }
        };
        let mut prev: Option<(&[u8], &[u8])> = None;
        for _ in 0..count {
            let e = self.table_entry(pos, end)?;
            if prev.is_some_and(|p| p >= (e.name, e.value)) {
                return Err(self.corrupt(pos, "postings offset table: entries out of order"));
            }
            prev = Some((e.name, e.value));
            let (Ok(n), Ok(v)) = (std::str::from_utf8(e.name), std::str::from_utf8(e.value)) else {
                return Err(self.corrupt(pos, "postings offset table: label is not UTF-8"));
            };
            if cur.as_ref().is_none_or(|c| &*c.0 != n) {
                close(cur.take(), &last, &mut names);
                let fresh = NameEntries {
                    samples: Vec::new(),
                    end: e.next,
                };
                cur = Some((n.into(), fresh, 0));
            }
            if let Some((_, ne, k)) = &mut cur {
                if *k % SAMPLE_EVERY == 0 {
                    ne.samples.push((v.into(), pos));
                }
                *k += 1;
                ne.end = e.next;
            }
            last = (v.into(), pos);
            pos = e.next;
        }
        close(cur.take(), &last, &mut names);
        self.names = names;
        Ok(())
    }

    /// The file this index was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table of contents.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// Size of the index file in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Number of symbols.
    pub fn num_symbols(&self) -> usize {
        self.num_symbols
    }

    /// The symbol with reference `i`.
    pub fn symbol(&self, i: u32) -> Result<&str, IndexError> {
        let i = i as usize;
        let start = self
            .symbol_samples
            .get(i / SAMPLE_EVERY)
            .copied()
            .filter(|_| i < self.num_symbols)
            .ok_or_else(|| {
                self.corrupt(
                    self.toc.symbols as usize,
                    format!(
                        "symbol reference {i} beyond the {} symbols",
                        self.num_symbols
                    ),
                )
            })?;
        let mut d = Decbuf::new(&self.data, start, self.symbols_end);
        for _ in 0..i % SAMPLE_EVERY {
            d.uvarint_bytes();
        }
        let at = d.pos();
        d.uvarint_bytes()
            .and_then(|s| std::str::from_utf8(s).ok())
            .ok_or_else(|| self.corrupt(at, format!("symbol {i} unreadable")))
    }

    /// The reference of symbol `s`, if the table has it: a binary search over the sampled
    /// symbols, then a walk of at most [`SAMPLE_EVERY`] entries.
    pub fn symbol_ref(&self, s: &str) -> Option<u32> {
        let at = |pos: usize| {
            let mut d = Decbuf::new(&self.data, pos, self.symbols_end);
            d.uvarint_bytes()
        };
        let k = self
            .symbol_samples
            .partition_point(|&p| at(p).is_some_and(|x| x <= s.as_bytes()));
        let base = k.checked_sub(1)?;
        let mut d = Decbuf::new(
            &self.data,
            *self.symbol_samples.get(base)?,
            self.symbols_end,
        );
        let first = base * SAMPLE_EVERY;
        for i in first..(first + SAMPLE_EVERY).min(self.num_symbols) {
            match d.uvarint_bytes()?.cmp(s.as_bytes()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return u32::try_from(i).ok(),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Every symbol, in order.
    pub fn symbols(&self) -> Result<Vec<&str>, IndexError> {
        let mut d = Decbuf::new(&self.data, self.symbols_start, self.symbols_end);
        let mut out = Vec::with_capacity(self.num_symbols);
        for i in 0..self.num_symbols {
            let at = d.pos();
            out.push(
                d.uvarint_bytes()
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .ok_or_else(|| self.corrupt(at, format!("symbol {i} unreadable")))?,
            );
        }
        Ok(out)
    }

    /// Every symbol, in order, decoded one at a time: compaction merges the symbol tables of its
    /// inputs without holding any of them. Stops after the first error.
    pub fn symbol_iter(&self) -> impl Iterator<Item = Result<&str, IndexError>> + '_ {
        let mut d = Decbuf::new(&self.data, self.symbols_start, self.symbols_end);
        let mut failed = false;
        (0..self.num_symbols).map_while(move |i| {
            if failed {
                return None;
            }
            let at = d.pos();
            let s = d
                .uvarint_bytes()
                .and_then(|s| std::str::from_utf8(s).ok())
                .ok_or_else(|| self.corrupt(at, format!("symbol {i} unreadable")));
            failed = s.is_err();
            Some(s)
        })
    }

    /// Label names, sorted (the all-postings key excluded).
    pub fn label_names(&self) -> Vec<String> {
        self.names
            .keys()
            .filter(|n| !n.is_empty())
            .map(|n| n.to_string())
            .collect()
    }

    /// Values of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>, IndexError> {
        let Some(e) = self.names.get(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut pos = e.samples.first().map_or(e.end, |s| s.1);
        while pos < e.end {
            let t = self.table_entry(pos, e.end)?;
            out.push(String::from_utf8_lossy(t.value).into_owned());
            pos = t.next;
        }
        Ok(out)
    }

    /// The postings offset of `name=value`, if the index has it.
    fn postings_offset(&self, name: &str, value: &str) -> Result<Option<u64>, IndexError> {
        let Some(e) = self.names.get(name) else {
            return Ok(None);
        };
        let i = e.samples.partition_point(|s| &*s.0 <= value);
        let Some(&(_, mut pos)) = i.checked_sub(1).and_then(|i| e.samples.get(i)) else {
            return Ok(None);
        };
        while pos < e.end {
            let t = self.table_entry(pos, e.end)?;
            match t.value.cmp(value.as_bytes()) {
                std::cmp::Ordering::Less => pos = t.next,
                std::cmp::Ordering::Equal => return Ok(Some(t.offset)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The postings list of `name=value` (empty if absent), its CRC checked.
    pub fn postings_list(
        &self,
        name: &str,
        value: &str,
    ) -> Result<BigEndianPostings<'_>, IndexError> {
        let Some(off) = self.postings_offset(name, value)? else {
            return Ok(BigEndianPostings::new(&[]));
        };
        let (start, end) = self.section(off, "postings list")?;
        let mut d = Decbuf::new(&self.data, start, end);
        let n = d.be32().unwrap_or(u32::MAX) as usize;
        if d.remaining() != n.saturating_mul(4) {
            return Err(self.corrupt(
                off as usize,
                format!("postings list of {n} entries in {} bytes", end - start),
            ));
        }
        let refs = d.bytes(d.remaining()).unwrap_or_default();
        Ok(BigEndianPostings::new(refs))
    }

    /// Union of the postings of `name=v` for each of `values`.
    pub fn postings_for(
        &self,
        name: &str,
        values: &[&str],
    ) -> Result<Box<dyn Postings + '_>, IndexError> {
        let mut lists: Vec<Box<dyn Postings + '_>> = Vec::with_capacity(values.len());
        for v in values {
            let p = self.postings_list(name, v)?;
            if !p.is_empty() {
                lists.push(Box::new(p));
            }
        }
        Ok(merge(lists))
    }

    /// Every series reference, sorted.
    pub fn all_series(&self) -> Result<BigEndianPostings<'_>, IndexError> {
        self.postings_list("", "")
    }

    /// The series with reference `r` (its offset / 16), CRC checked.
    pub fn series(&self, r: u64) -> Result<SeriesEntry, IndexError> {
        let mut labels = Vec::new();
        let mut chunks = Vec::new();
        self.series_into(r, &mut labels, &mut chunks)?;
        Ok(SeriesEntry {
            labels: Labels::from_sorted_unchecked(labels),
            chunks,
        })
    }

    /// Like [`IndexFileReader::series`], into reusable buffers (cleared first).
    pub fn series_into(
        &self,
        r: u64,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkRefMeta>,
    ) -> Result<(), IndexError> {
        labels.clear();
        chunks.clear();
        let off = r
            .checked_mul(SERIES_ALIGNMENT)
            .filter(|&o| o >= self.toc.series.max(HEADER_LEN as u64) && o < self.data.len() as u64)
            .ok_or_else(|| {
                self.corrupt(
                    0,
                    format!("series reference {r} outside the series section"),
                )
            })? as usize;
        let b: &[u8] = &self.data;
        let (len, n) = read_uvarint(b.get(off..).unwrap_or_default())
            .ok_or_else(|| self.corrupt(off, "series: bad length"))?;
        let start = off + n;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e.checked_add(4).is_some_and(|x| x <= b.len()))
            .ok_or_else(|| {
                self.corrupt(
                    off,
                    format!("series: {len} bytes run past the end of the file"),
                )
            })?;
        let body = &b[start..end];
        let want = u32::from_be_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        let got = crc32c::crc32c(body);
        if got != want {
            return Err(self.corrupt(
                off,
                format!("series {r}: CRC32C {got:#010x}, stored {want:#010x}"),
            ));
        }
        let lookup = |s: u32| match self.name_symbols.get(&s) {
            Some(n) => Some(&**n),
            None => self.symbol(s).ok(),
        };
        decode_series(body, lookup, labels, chunks)
            .map_err(|(at, what)| self.corrupt(start + at, format!("series {r}: {what}")))
    }

    fn stick(&self, e: IndexError) {
        if let Ok(mut s) = self.sticky.lock() {
            s.get_or_insert(e);
        }
    }

    /// Takes the first error met by the [`IndexReader`] methods (which return empty results
    /// instead), so callers of [`crate::index::postings_for_matchers`] can tell damage from
    /// absence.
    pub fn take_error(&self) -> Option<IndexError> {
        self.sticky.lock().ok().and_then(|mut s| s.take())
    }
}

/// Decodes a series entry body: labels through `symbol`, then chunk metas. Errors carry the
/// offset within `body`.
fn decode_series<'a>(
    body: &[u8],
    symbol: impl Fn(u32) -> Option<&'a str>,
    labels: &mut Vec<Label>,
    chunks: &mut Vec<ChunkRefMeta>,
) -> Result<(), (usize, String)> {
    let mut d = Decbuf::new(body, 0, body.len());
    let trunc = |d: &Decbuf, what: &str| (d.pos(), format!("truncated {what}"));
    let k = d.uvarint().ok_or_else(|| trunc(&d, "label count"))?;
    for i in 0..k {
        let at = d.pos();
        let n = d.uvarint().ok_or_else(|| trunc(&d, "label name"))?;
        let v = d.uvarint().ok_or_else(|| trunc(&d, "label value"))?;
        let look = |x: u64| u32::try_from(x).ok().and_then(&symbol);
        let (Some(name), Some(value)) = (look(n), look(v)) else {
            return Err((
                at,
                format!("label {i}: unknown symbol reference {n} or {v}"),
            ));
        };
        labels.push(Label::new(name, value));
    }
    if !labels.windows(2).all(|w| w[0].name < w[1].name) {
        return Err((0, "labels not sorted by name".into()));
    }
    let k = d.uvarint().ok_or_else(|| trunc(&d, "chunk count"))?;
    if k == 0 {
        return Ok(());
    }
    // Each chunk meta takes at least 3 bytes: never reserve more than the body can hold.
    chunks.reserve((k as usize).min(d.remaining() / 3 + 1));
    let mut t0 = d.varint().ok_or_else(|| trunc(&d, "chunk mint"))?;
    let mut maxt = (d.uvarint().ok_or_else(|| trunc(&d, "chunk maxt"))? as i64).wrapping_add(t0);
    let mut r0 = d.uvarint().ok_or_else(|| trunc(&d, "chunk reference"))?;
    chunks.push(ChunkRefMeta {
        min_t: t0,
        max_t: maxt,
        chunk_ref: r0,
    });
    t0 = maxt;
    for _ in 1..k {
        let mint = (d.uvarint().ok_or_else(|| trunc(&d, "chunk mint"))? as i64).wrapping_add(t0);
        maxt = (d.uvarint().ok_or_else(|| trunc(&d, "chunk maxt"))? as i64).wrapping_add(mint);
        r0 = r0.wrapping_add(d.varint().ok_or_else(|| trunc(&d, "chunk reference"))? as u64);
        t0 = maxt;
        chunks.push(ChunkRefMeta {
            min_t: mint,
            max_t: maxt,
            chunk_ref: r0,
        });
    }
    Ok(())
}

impl IndexReader for IndexFileReader {
    fn label_values(&self, name: &str) -> Vec<String> {
        IndexFileReader::label_values(self, name).unwrap_or_else(|e| {
            self.stick(e);
            Vec::new()
        })
    }

    fn postings(&self, name: &str, values: &[&str]) -> Box<dyn Postings + '_> {
        self.postings_for(name, values).unwrap_or_else(|e| {
            self.stick(e);
            Box::new(EmptyPostings)
        })
    }

    fn all_postings(&self) -> Box<dyn Postings + '_> {
        match self.all_series() {
            Ok(p) => Box::new(p),
            Err(e) => {
                self.stick(e);
                Box::new(EmptyPostings)
            }
        }
    }
}

/// Fuzz body: opens arbitrary bytes as an index and, if that works, reads every symbol, label
/// value, postings list and the series they reference. Must never panic.
#[doc(hidden)]
pub fn fuzz_index(data: &[u8]) {
    let Ok(r) = IndexFileReader::from_bytes(Path::new("fuzz"), data.to_vec()) else {
        return;
    };
    let _ = r.symbols();
    for i in 0..r.num_symbols().min(1000) {
        if let Ok(s) = r.symbol(i as u32) {
            let _ = r.symbol_ref(s);
        }
    }
    let _ = r.symbol_ref("__name__");
    let mut labels = Vec::new();
    let mut chunks = Vec::new();
    let mut names = r.label_names();
    names.push(String::new());
    for n in names.iter().take(100) {
        let values = IndexFileReader::label_values(&r, n).unwrap_or_default();
        for v in values.iter().take(100) {
            if let Ok(mut p) = r.postings_list(n, v) {
                let mut k = 0;
                while let Some(s) = Postings::next(&mut p) {
                    let _ = r.series_into(s, &mut labels, &mut chunks);
                    k += 1;
                    if k > 1000 {
                        break;
                    }
                }
            }
        }
    }
    for s in 0..64 {
        let _ = r.series_into(s, &mut labels, &mut chunks);
    }
    let _ = r.take_error();
}

#[cfg(test)]
mod tests;
