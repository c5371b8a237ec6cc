//! Persistent blocks: immutable directories of data for one time range, in Prometheus' on-disk
//! format (issue 3, point 2; `../shared/docs/prometheus-tsdb-format.md`, "The layout").
//!
//! ```text
//! <ULID>/meta.json      meta: ulid, time range (maxTime exclusive), stats, compaction
//! <ULID>/index          symbols, series, label indices, postings, offset tables, TOC (index v2)
//! <ULID>/chunks/000001  chunk segment files
//! <ULID>/tombstones     deletions (empty when nothing was deleted)
//! ```
//!
//! [`BlockWriter`] builds a block in `<ULID>.tmp-for-creation`, fsyncs every file and the
//! directory, and renames it into place, so a crash never leaves a half-written block under a
//! block's name. [`Block::open`] maps the files and decodes lazily; every read checks its CRC and
//! a damaged block is reported with its ULID and what failed. This module never deletes a block.

pub mod archive;
pub mod chunks;
mod encoding;
pub mod index;
pub mod meta;
pub mod mmap;
pub mod tombstones;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

/// One series of [`Block::select`]: its labels and chunks in range.
type SelectedSeries = (Labels, Vec<ChunkMeta>);

pub use chunks::{ChunkFileError, ChunkReader, ChunkWriter};
pub use index::{ChunkRefMeta, IndexError, IndexFileReader, IndexWriter, SeriesEntry};
pub use meta::{BlockCompaction, BlockDesc, BlockMeta, BlockStats, MetaError, Ulid};
pub use tombstones::{Interval, TombstoneError, Tombstones};

use crate::chunk::{ChunkError, XorAppender, XorIterator, ENCODING_XOR, XOR_HEADER_LEN};
use crate::index::postings_for_matchers;
use crate::labels::{Labels, Matcher};
use crate::querier::ChunkMeta;

/// Suffix of a block directory under construction; such a directory left by a crash is garbage.
pub const TMP_FOR_CREATION_SUFFIX: &str = ".tmp-for-creation";
/// Name of the chunks directory in a block.
pub const CHUNKS_DIRNAME: &str = "chunks";

/// Why a block could not be written or read. `block` is the block's ULID (its directory name).
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {block}: {path}: {source}")]
    Io {
        block: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("block {block}: {source}")]
    Meta {
        block: String,
        #[source]
        source: MetaError,
    },
    #[error("block {block}: index: {source}")]
    Index {
        block: String,
        #[source]
        source: IndexError,
    },
    #[error("block {block}: chunks: {source}")]
    Chunks {
        block: String,
        #[source]
        source: ChunkFileError,
    },
    #[error("block {block}: {path}: {source}")]
    Tombstones {
        block: String,
        path: PathBuf,
        #[source]
        source: TombstoneError,
    },
    #[error("block {block}: chunk {chunk_ref:#x}: encoding {encoding}, only XOR (1) is supported")]
    Encoding {
        block: String,
        chunk_ref: u64,
        encoding: u8,
    },
    #[error("block {block}: chunk {chunk_ref:#x}: {source}")]
    ChunkData {
        block: String,
        chunk_ref: u64,
        #[source]
        source: ChunkError,
    },
    #[error("block {block}: archive: {source}")]
    Archive {
        block: String,
        #[source]
        source: Box<archive::ArchiveError>,
    },
    #[error("block {block}: series {labels}: {what}")]
    BadInput {
        block: String,
        labels: String,
        what: String,
    },
}

/// Builds one block. Series must be added in strictly increasing label order; chunk data is
/// written to segment files as it comes. The index needs every symbol before the first series:
/// given them up front ([`BlockWriter::with_symbols`], as compaction can from its source
/// indexes) series go straight to the index file and memory stays at the postings (4 bytes per
/// label of each series); otherwise labels and chunk metas are kept until
/// [`BlockWriter::finish`].
pub struct BlockWriter {
    parent: PathBuf,
    tmp: PathBuf,
    ulid: Ulid,
    mint: i64,
    maxt: i64,
    compaction: BlockCompaction,
    chunks: Option<ChunkWriter>,
    /// Series kept for the index when symbols were not given up front.
    series: Vec<(Labels, Vec<ChunkRefMeta>)>,
    /// The index being streamed when symbols were given up front.
    index: Option<IndexWriter<BufWriter<File>>>,
    last: Option<Labels>,
    metas: Vec<ChunkRefMeta>,
    stats: BlockStats,
    done: bool,
}

impl BlockWriter {
    /// Starts a level-1 block for `[mint, maxt)` under directory `dir`.
    pub fn new(dir: &Path, mint: i64, maxt: i64) -> Result<BlockWriter, BlockError> {
        BlockWriter::with_segment_size(dir, mint, maxt, chunks::DEFAULT_SEGMENT_SIZE)
    }

    /// Like [`BlockWriter::new`] with chunk segments of at most `segment_size` bytes.
    pub fn with_segment_size(
        dir: &Path,
        mint: i64,
        maxt: i64,
        segment_size: u64,
    ) -> Result<BlockWriter, BlockError> {
        let ulid = Ulid::new();
        let tmp = dir.join(format!("{ulid}{TMP_FOR_CREATION_SUFFIX}"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlockError::Io {
                block: ulid.to_string(),
                path,
                source,
            }
        };
        if mint >= maxt {
            return Err(BlockError::BadInput {
                block: ulid.to_string(),
                labels: "{}".into(),
                what: format!("empty block range [{mint}, {maxt})"),
            });
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let chunks = ChunkWriter::with_segment_size(&tmp.join(CHUNKS_DIRNAME), segment_size)
            .map_err(|source| BlockError::Chunks {
                block: ulid.to_string(),
                source,
            })?;
        Ok(BlockWriter {
            parent: dir.to_path_buf(),
            tmp,
            ulid,
            mint,
            maxt,
            compaction: BlockCompaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            chunks: Some(chunks),
            series: Vec::new(),
            index: None,
            last: None,
            metas: Vec::new(),
            stats: BlockStats::default(),
            done: false,
        })
    }

    /// Like [`BlockWriter::new`], streaming series into the index: `symbols` (sorted, unique) must
    /// hold every label name and value of the series to come.
    pub fn with_symbols<'s>(
        dir: &Path,
        mint: i64,
        maxt: i64,
        symbols: impl IntoIterator<Item = &'s str>,
    ) -> Result<BlockWriter, BlockError> {
        let mut w = BlockWriter::new(dir, mint, maxt)?;
        let ipath = w.tmp.join(index::INDEX_FILENAME);
        let f = File::create(&ipath).map_err(|source| BlockError::Io {
            block: w.ulid.to_string(),
            path: ipath.clone(),
            source,
        })?;
        let iw = IndexWriter::new(BufWriter::with_capacity(1 << 20, f), &ipath, symbols).map_err(
            |source| BlockError::Index {
                block: w.ulid.to_string(),
                source,
            },
        )?;
        w.index = Some(iw);
        Ok(w)
    }

    /// The ULID the block will have.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Sets the compaction section of meta.json (level, sources, parents) for compacted blocks.
    pub fn set_compaction(&mut self, c: BlockCompaction) {
        self.compaction = c;
    }

    fn bad(&self, labels: &Labels, what: String) -> BlockError {
        BlockError::BadInput {
            block: self.ulid.to_string(),
            labels: labels.to_string(),
            what,
        }
    }

    /// Adds a series with its XOR chunks (sorted by time, inside the block's range). Series
    /// without chunks are skipped, as Prometheus' compactor does.
    pub fn add_series(&mut self, labels: Labels, chunks: &[ChunkMeta]) -> Result<(), BlockError> {
        if let Some(last) = &self.last {
            if labels <= *last {
                return Err(self.bad(
                    &labels,
                    format!("added after {last}: series must be sorted"),
                ));
            }
        }
        if chunks.is_empty() {
            return Ok(());
        }
        // Everything is checked before the first byte is written, so a refused series leaves
        // neither chunk data nor counts behind.
        let mut samples = 0u64;
        for c in chunks {
            if c.min_t < self.mint || c.max_t >= self.maxt || c.min_t > c.max_t {
                return Err(self.bad(
                    &labels,
                    format!(
                        "chunk [{}, {}] outside the block range [{}, {})",
                        c.min_t, c.max_t, self.mint, self.maxt
                    ),
                ));
            }
            let Some(&[hi, lo]) = c.data.first_chunk::<XOR_HEADER_LEN>() else {
                return Err(self.bad(&labels, "chunk shorter than its XOR header".into()));
            };
            samples += u64::from(u16::from_be_bytes([hi, lo]));
        }
        if let Some(iw) = &self.index {
            // Streaming: the index writer would refuse these only after the chunks were written.
            if let Some(l) = labels
                .iter()
                .find(|l| !iw.has_symbol(&l.name) || !iw.has_symbol(&l.value))
            {
                return Err(self.bad(
                    &labels,
                    format!(
                        "label {}={:?} not in the symbols given up front",
                        l.name, l.value
                    ),
                ));
            }
        }
        let Some(w) = self.chunks.as_mut() else {
            return Err(self.bad(&labels, "writer already finished".into()));
        };
        let mut metas = std::mem::take(&mut self.metas);
        metas.clear();
        for c in chunks {
            let r = w
                .write(ENCODING_XOR, &c.data)
                .map_err(|source| BlockError::Chunks {
                    block: self.ulid.to_string(),
                    source,
                })?;
            metas.push(ChunkRefMeta {
                min_t: c.min_t,
                max_t: c.max_t,
                chunk_ref: r,
            });
        }
        self.stats.num_samples += samples;
        self.stats.num_chunks += chunks.len() as u64;
        self.stats.num_series += 1;
        if let Some(iw) = &mut self.index {
            let res = iw.add_series(&labels, &metas);
            self.metas = metas;
            res.map_err(|source| BlockError::Index {
                block: self.ulid.to_string(),
                source,
            })?;
            self.last = Some(labels);
        } else {
            self.last = Some(labels.clone());
            self.series.push((labels, metas));
        }
        Ok(())
    }

    /// Writes index, tombstones and meta.json, fsyncs, and renames the block into place.
    pub fn finish(mut self) -> Result<Ulid, BlockError> {
        let block = self.ulid.to_string();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            let block = block.clone();
            move |source| BlockError::Io {
                block,
                path,
                source,
            }
        };
        if let Some(w) = self.chunks.take() {
            w.finish().map_err(|source| BlockError::Chunks {
                block: block.clone(),
                source,
            })?;
        }

        let ipath = self.tmp.join(index::INDEX_FILENAME);
        let ix_err = |source| BlockError::Index {
            block: block.clone(),
            source,
        };
        let w = match self.index.take() {
            Some(w) => w,
            None => {
                let mut symbols: BTreeSet<&str> = BTreeSet::new();
                for (l, _) in &self.series {
                    for x in l {
                        symbols.insert(&x.name);
                        symbols.insert(&x.value);
                    }
                }
                let f = File::create(&ipath).map_err(io(&ipath))?;
                let mut w = IndexWriter::new(BufWriter::with_capacity(1 << 20, f), &ipath, symbols)
                    .map_err(ix_err)?;
                for (l, metas) in &self.series {
                    w.add_series(l, metas).map_err(ix_err)?;
                }
                w
            }
        };
        let f = w
            .finish()
            .map_err(ix_err)?
            .into_inner()
            .map_err(|e| io(&ipath)(e.into_error()))?;
        f.sync_all().map_err(io(&ipath))?;

        let tpath = self.tmp.join(tombstones::TOMBSTONES_FILENAME);
        write_synced(&tpath, &Tombstones::new().encode()).map_err(io(&tpath))?;

        let meta = BlockMeta {
            ulid: self.ulid,
            min_time: self.mint,
            max_time: self.maxt,
            stats: self.stats.clone(),
            compaction: self.compaction.clone(),
            version: meta::META_VERSION,
        };
        let mpath = self.tmp.join(meta::META_FILENAME);
        write_synced(&mpath, &meta.to_json()).map_err(io(&mpath))?;
        sync_dir(&self.tmp).map_err(io(&self.tmp))?;

        let dst = self.parent.join(&block);
        fs::rename(&self.tmp, &dst).map_err(io(&dst))?;
        sync_dir(&self.parent).map_err(io(&self.parent))?;
        self.done = true;
        Ok(self.ulid)
    }
}

impl Drop for BlockWriter {
    /// An abandoned or failed block leaves no temporary directory behind.
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a level-1 block for `[mint, maxt)` into `dir` from series in label order with their XOR
/// chunks; returns its ULID.
pub fn write_block(
    dir: &Path,
    mint: i64,
    maxt: i64,
    series: impl Iterator<Item = (Labels, Vec<ChunkMeta>)>,
) -> Result<Ulid, BlockError> {
    let mut w = BlockWriter::new(dir, mint, maxt)?;
    for (labels, chunks) in series {
        w.add_series(labels, &chunks)?;
    }
    w.finish()
}

/// Replaces `dir/name` with `data` atomically, as Prometheus' `fileutil.Replace` does: the bytes go
/// to `name.tmp`, which is fsynced and renamed over `name`, then the directory is fsynced. A crash
/// leaves the old file or the new one, never a mix (a leftover `.tmp` is ignored by readers).
fn replace_file(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    write_synced(&tmp, data)?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Prometheus' `clampInterval`: `[a, b]` narrowed to `[mint, maxt]`.
fn clamp_interval(a: i64, b: i64, mint: i64, maxt: i64) -> Interval {
    Interval {
        mint: a.max(mint),
        maxt: b.min(maxt),
    }
}

/// The outcome of [`Block::delete`] when it added intervals.
#[derive(Debug)]
pub struct BlockDeletion {
    /// The block reopened with its new tombstones and meta.json.
    pub block: Block,
    /// The series that got a deletion interval, in index order.
    pub series: Vec<Labels>,
}

/// Re-encodes an XOR chunk without the samples any of `deleted` covers; `None` if none remain.
/// Used wherever tombstones apply: block reads, head reads, and head compaction.
pub fn chunk_without_deleted(
    data: &[u8],
    deleted: &[Interval],
) -> Result<Option<ChunkMeta>, ChunkError> {
    let mut app = XorAppender::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in XorIterator::new(data)? {
        let (t, v) = s?;
        if deleted.iter().any(|d| d.contains(t)) {
            continue;
        }
        app.append(t, v);
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if app.num_samples() == 0 {
        return Ok(None);
    }
    Ok(Some(ChunkMeta {
        min_t: lo,
        max_t: hi,
        data: Arc::from(app.into_bytes()),
    }))
}

/// An opened block: its metadata, mapped index and chunk segments, and tombstones.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    name: String,
    meta: BlockMeta,
    index: IndexFileReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
    archive: bool,
}

impl Block {
    /// Opens the block in `dir`, checking meta.json, the index's TOC, symbol table and postings
    /// offset table, the chunk segment headers and the tombstones file. An archive block
    /// ([`archive`]) is decoded into memory and then reads like any other.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let io = |path: PathBuf| {
            let block = name.clone();
            move |source| BlockError::Io {
                block,
                path,
                source,
            }
        };
        let mpath = dir.join(meta::META_FILENAME);
        let raw = fs::read(&mpath).map_err(io(mpath.clone()))?;
        let meta = BlockMeta::from_json(&raw).map_err(|source| BlockError::Meta {
            block: name.clone(),
            source,
        })?;
        let ext = archive::meta_extension(&raw).map_err(|source| BlockError::Meta {
            block: name.clone(),
            source,
        })?;
        let archive = ext.is_some();
        let (index, chunks) = if archive {
            // An archive block (our extension): decoded whole into memory.
            archive::open_in_memory(dir).map_err(|e| BlockError::Archive {
                block: name.clone(),
                source: Box::new(e),
            })?
        } else {
            let index =
                IndexFileReader::open(&dir.join(index::INDEX_FILENAME)).map_err(|source| {
                    BlockError::Index {
                        block: name.clone(),
                        source,
                    }
                })?;
            let chunks = ChunkReader::open(&dir.join(CHUNKS_DIRNAME)).map_err(|source| {
                BlockError::Chunks {
                    block: name.clone(),
                    source,
                }
            })?;
            (index, chunks)
        };
        let tpath = dir.join(tombstones::TOMBSTONES_FILENAME);
        // Prometheus treats a missing tombstones file as no deletions.
        let tombstones = match fs::read(&tpath) {
            Ok(b) => Tombstones::decode(&b).map_err(|source| BlockError::Tombstones {
                block: name.clone(),
                path: tpath.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Tombstones::new(),
            Err(e) => return Err(io(tpath)(e)),
        };
        Ok(Block {
            dir: dir.to_path_buf(),
            name,
            meta,
            index,
            chunks,
            tombstones,
            archive,
        })
    }

    /// Whether this is an archive block (our extension, see [`archive`]), held in memory.
    pub fn is_archive(&self) -> bool {
        self.archive
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn index(&self) -> &IndexFileReader {
        &self.index
    }

    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    fn index_err(&self, source: IndexError) -> BlockError {
        BlockError::Index {
            block: self.name.clone(),
            source,
        }
    }

    /// The XOR data (sample count header included) of chunk `r`, CRC checked. Chunks of other
    /// encodings (native histograms) are an error.
    pub fn chunk(&self, r: u64) -> Result<&[u8], BlockError> {
        let (enc, data) = self.chunks.chunk(r).map_err(|source| BlockError::Chunks {
            block: self.name.clone(),
            source,
        })?;
        if enc != ENCODING_XOR {
            return Err(BlockError::Encoding {
                block: self.name.clone(),
                chunk_ref: r,
                encoding: enc,
            });
        }
        Ok(data)
    }

    /// The labels and chunk metas of series `r`.
    pub fn series(&self, r: u64) -> Result<SeriesEntry, BlockError> {
        self.index.series(r).map_err(|e| self.index_err(e))
    }

    /// References of the series the matchers select (Prometheus' semantics), sorted; resolved
    /// through the postings without reading series. With [`IndexFileReader::series_into`] and
    /// [`Block::chunk`] this reads a block without copying chunk data.
    pub fn series_refs(&self, matchers: &[Matcher]) -> Result<Vec<u64>, BlockError> {
        let refs = postings_for_matchers(&self.index, matchers);
        match self.index.take_error() {
            Some(e) => Err(self.index_err(e)),
            None => Ok(refs),
        }
    }

    /// The series the matchers select (Prometheus' semantics) with their chunks that overlap the
    /// closed range `[mint, maxt]`; series with no such chunk are left out. Chunk data is copied
    /// out of the mapping; chunks with deleted samples (tombstones) are re-encoded without them.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<ChunkMeta>)>, BlockError> {
        let refs = self.series_refs(matchers)?;
        // Series decode independently (label symbols, chunk records and their CRCs), so they run
        // in parallel; the results keep the postings order and the first error in that order wins,
        // as in a sequential walk.
        let per_series: Vec<Result<Option<SelectedSeries>, BlockError>> = refs
            .par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(labels, metas), &r| self.select_one(r, labels, metas, mint, maxt),
            )
            .collect();
        let mut out = Vec::with_capacity(per_series.len());
        for s in per_series {
            if let Some(s) = s? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// One series of [`Block::select`], with the caller's scratch buffers.
    fn select_one(
        &self,
        r: u64,
        labels: &mut Vec<crate::labels::Label>,
        metas: &mut Vec<ChunkRefMeta>,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<SelectedSeries>, BlockError> {
        self.index
            .series_into(r, labels, metas)
            .map_err(|e| self.index_err(e))?;
        let mut chunks = Vec::new();
        let deleted = self.tombstones.get(r);
        for m in metas.iter().filter(|m| m.max_t >= mint && m.min_t <= maxt) {
            let data = self.chunk(m.chunk_ref)?;
            if deleted
                .iter()
                .any(|d| d.mint <= m.max_t && m.min_t <= d.maxt)
            {
                chunks.extend(self.without_deleted(m.chunk_ref, data, deleted)?);
                continue;
            }
            chunks.push(ChunkMeta {
                min_t: m.min_t,
                max_t: m.max_t,
                data: Arc::from(data),
            });
        }
        if chunks.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            Labels::from_sorted_unchecked(labels.clone()),
            chunks,
        )))
    }

    /// The chunk re-encoded without the samples `deleted` covers; `None` if none remain.
    fn without_deleted(
        &self,
        chunk_ref: u64,
        data: &[u8],
        deleted: &[Interval],
    ) -> Result<Option<ChunkMeta>, BlockError> {
        chunk_without_deleted(data, deleted).map_err(|source| BlockError::ChunkData {
            block: self.name.clone(),
            chunk_ref,
            source,
        })
    }

    /// Whether the block's half-open range `[min_time, max_time)` overlaps the closed `[mint, maxt]`
    /// (Prometheus' `Block.OverlapsClosedInterval`).
    pub fn overlaps_closed(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && mint < self.meta.max_time
    }

    /// Deletes the samples in the closed range `[mint, maxt]` of the series the matchers select, as
    /// Prometheus' `Block.Delete` does: every such series with a chunk overlapping the range gets
    /// the range clamped to its own first and last chunk times as a tombstone, merged with the
    /// block's existing ones; the `tombstones` file and then meta.json (`numTombstones`, the number
    /// of intervals) are replaced atomically. The chunks stay as they are until compaction rewrites
    /// the block; reads leave the deleted samples out meanwhile.
    ///
    /// Returns the block reopened with its new tombstones and the series that got an interval.
    /// Unlike Prometheus, which rewrites both files on every call, nothing is written (and `None`
    /// returned) when the tombstones would not change.
    pub fn delete(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Option<BlockDeletion>, BlockError> {
        if mint > maxt || !self.overlaps_closed(mint, maxt) {
            return Ok(None);
        }
        let mut stones = self.tombstones.clone();
        let mut series = Vec::new();
        let mut labels = Vec::new();
        let mut metas = Vec::new();
        for r in self.series_refs(matchers)? {
            self.index
                .series_into(r, &mut labels, &mut metas)
                .map_err(|e| self.index_err(e))?;
            let (Some(first), Some(last)) = (metas.first(), metas.last()) else {
                continue;
            };
            if metas.iter().any(|m| m.min_t <= maxt && mint <= m.max_t) {
                stones.add(r, clamp_interval(mint, maxt, first.min_t, last.max_t));
                series.push(Labels::from_sorted_unchecked(labels.clone()));
            }
        }
        if stones == self.tombstones {
            return Ok(None);
        }
        let io = |path: PathBuf| {
            let block = self.name.clone();
            move |source| BlockError::Io {
                block,
                path,
                source,
            }
        };
        let tpath = self.dir.join(tombstones::TOMBSTONES_FILENAME);
        replace_file(&self.dir, tombstones::TOMBSTONES_FILENAME, &stones.encode())
            .map_err(io(tpath))?;
        let mut meta = self.meta.clone();
        meta.stats.num_tombstones = stones.total();
        meta.version = meta::META_VERSION;
        let mpath = self.dir.join(meta::META_FILENAME);
        replace_file(&self.dir, meta::META_FILENAME, &meta.to_json()).map_err(io(mpath))?;
        Ok(Some(BlockDeletion {
            block: Block::open(&self.dir)?,
            series,
        }))
    }
}

#[cfg(test)]
mod tests;
