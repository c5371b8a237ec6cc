//! Reading WAL segments: fragments → records, in order, through a bounded buffer; and `recover`,
//! which cuts a torn tail back to the last complete commit.
//!
//! Implements the reading side of `tsdb/docs/format/wal.md` with the checks of Prometheus 2.42's
//! `tsdb/wlog/reader.go`: CRC32C per fragment, fragment sequencing (full | first middle* last),
//! zero padding up to the page end after a type-0 byte, and a segment file that ends before its
//! last page does (virtually zero-padded, as Prometheus' `segmentBufReader` does). We are
//! stricter than Prometheus where its writer never goes: a fragment may not cross a page, a record
//! may not cross a segment, unknown flag bits are damage.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{
    io_err, segment_path, segments, WalError, COMMIT_MARKER, FLAG_MASK, FLAG_SNAPPY, FLAG_ZSTD,
    FRAG_FIRST, FRAG_FULL, FRAG_LAST, FRAG_MIDDLE, HEADER_SIZE, MAX_RECORD_SIZE, PAGE_SIZE,
    SEGMENT_HEADER,
};

/// Bytes read from a segment file at once: 16 pages, as Prometheus' reader buffers. A multiple of
/// the page size, so a buffer never starts inside a page.
const READ_CHUNK: usize = 16 * PAGE_SIZE;

/// Damage found inside one segment: the segment-relative offset and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub offset: u64,
    pub reason: String,
}

fn damage(offset: u64, reason: impl Into<String>) -> Damage {
    Damage {
        offset,
        reason: reason.into(),
    }
}

/// Where the bytes of the record last returned by [`SegmentRecords::next_record`] live.
#[derive(Clone, Copy)]
enum RecordBytes {
    /// A whole uncompressed record in one fragment: a range of the read buffer (no copy).
    Buffer(usize, usize),
    /// Assembled from several uncompressed fragments.
    Assembled,
    /// Decompressed.
    Decompressed,
}

/// The records of one segment, read from any byte source.
pub(crate) struct SegmentRecords<R> {
    src: R,
    buf: Vec<u8>,
    /// Valid bytes in `buf`.
    filled: usize,
    /// Next unparsed byte in `buf`.
    pos: usize,
    /// Segment offset of `buf[0]`.
    base: u64,
    eof: bool,
    max_record: usize,
    assembled: Vec<u8>,
    decompressed: Vec<u8>,
    snappy: snap::raw::Decoder,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    out: RecordBytes,
    /// Segment offsets of the first fragment header and of the byte after the last fragment of
    /// the record last returned.
    start: u64,
    end: u64,
}

/// One fragment's header fields and where its data sits in the read buffer.
struct Fragment {
    offset: u64,
    kind: u8,
    flags: u8,
    data: (usize, usize),
}

impl<R: Read> SegmentRecords<R> {
    pub(crate) fn new(src: R, max_record: usize) -> SegmentRecords<R> {
        SegmentRecords {
            src,
            buf: vec![0; READ_CHUNK],
            filled: 0,
            pos: 0,
            base: 0,
            eof: false,
            max_record,
            assembled: Vec::new(),
            decompressed: Vec::new(),
            snappy: snap::raw::Decoder::new(),
            zstd: None,
            out: RecordBytes::Assembled,
            start: 0,
            end: 0,
        }
    }

    /// Reads the next chunk; false at the end of the source.
    fn refill(&mut self) -> Result<bool, io::Error> {
        if self.eof {
            return Ok(false);
        }
        self.base += self.filled as u64;
        self.filled = 0;
        self.pos = 0;
        while self.filled < self.buf.len() {
            match self.src.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.filled > 0)
    }

    /// The next fragment, skipping page padding; `None` at the end of the segment.
    fn next_fragment(&mut self) -> Result<Result<Option<Fragment>, Damage>, io::Error> {
        loop {
            if self.pos == self.filled && !self.refill()? {
                return Ok(Ok(None));
            }
            let offset = self.base + self.pos as u64;
            let page_left = PAGE_SIZE - (offset % PAGE_SIZE as u64) as usize;
            // Chunks are page-aligned, so the rest of this page is in the buffer unless the
            // file ends first.
            let avail = page_left.min(self.filled - self.pos);
            let typ = self.buf[self.pos];
            if typ == 0 {
                let rest = &self.buf[self.pos..self.pos + avail];
                if let Some(i) = rest.iter().position(|&b| b != 0) {
                    return Ok(Err(damage(
                        offset + i as u64,
                        "non-zero byte in page padding",
                    )));
                }
                self.pos += avail;
                continue;
            }
            if page_left < HEADER_SIZE {
                return Ok(Err(damage(
                    offset,
                    format!("fragment header in the last {page_left} bytes of a page"),
                )));
            }
            if avail < HEADER_SIZE {
                return Ok(Err(damage(offset, "segment ends inside a fragment header")));
            }
            let h = &self.buf[self.pos..self.pos + HEADER_SIZE];
            let kind = typ & !FLAG_MASK;
            let flags = typ & FLAG_MASK;
            if !(FRAG_FULL..=FRAG_LAST).contains(&kind) || flags == FLAG_MASK {
                return Ok(Err(damage(
                    offset,
                    format!("invalid fragment type byte {typ:#04x}"),
                )));
            }
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            let crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
            if HEADER_SIZE + len > page_left {
                return Ok(Err(damage(
                    offset,
                    format!("fragment length {len} crosses the page end"),
                )));
            }
            if HEADER_SIZE + len > avail {
                return Ok(Err(damage(offset, "segment ends inside a fragment")));
            }
            let data = (self.pos + HEADER_SIZE, self.pos + HEADER_SIZE + len);
            let actual = crc32c::crc32c(&self.buf[data.0..data.1]);
            if actual != crc {
                return Ok(Err(damage(
                    offset,
                    format!("fragment CRC32C {actual:08x}, header says {crc:08x}"),
                )));
            }
            self.pos = data.1;
            return Ok(Ok(Some(Fragment {
                offset,
                kind,
                flags,
                data,
            })));
        }
    }

    /// The next whole record (decompressed), including segment headers and commit markers;
    /// `None` at the end of the segment. Outer error: I/O; inner: damage in the bytes.
    pub(crate) fn next_record(&mut self) -> Result<Result<Option<&[u8]>, Damage>, io::Error> {
        match self.advance()? {
            Ok(true) => Ok(Ok(Some(self.record()))),
            Ok(false) => Ok(Ok(None)),
            Err(d) => Ok(Err(d)),
        }
    }

    fn record(&self) -> &[u8] {
        match self.out {
            RecordBytes::Buffer(a, b) => &self.buf[a..b],
            RecordBytes::Assembled => &self.assembled,
            RecordBytes::Decompressed => &self.decompressed,
        }
    }

    /// Segment offsets (start, end) of the record last returned.
    pub(crate) fn record_span(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    fn advance(&mut self) -> Result<Result<bool, Damage>, io::Error> {
        let mut in_record = false;
        let mut rec_flags = 0u8;
        self.assembled.clear();
        loop {
            let frag = match self.next_fragment()? {
                Ok(Some(f)) => f,
                Ok(None) if in_record => {
                    return Ok(Err(damage(self.start, "segment ends inside a record")));
                }
                Ok(None) => return Ok(Ok(false)),
                Err(d) => return Ok(Err(d)),
            };
            let frag_end = frag.data.1;
            match (frag.kind, in_record) {
                (FRAG_FULL, false) => {
                    self.start = frag.offset;
                    self.end = self.base + frag_end as u64;
                    if frag.flags == 0 {
                        self.out = RecordBytes::Buffer(frag.data.0, frag.data.1);
                        return Ok(Ok(true));
                    }
                    let (a, b) = frag.data;
                    self.assembled.extend_from_slice(&self.buf[a..b]);
                    return Ok(self.finish(frag.flags).map(|()| true));
                }
                (FRAG_FIRST, false) => {
                    self.start = frag.offset;
                    rec_flags = frag.flags;
                    in_record = true;
                }
                (FRAG_MIDDLE | FRAG_LAST, true) => {
                    if frag.flags != rec_flags {
                        return Ok(Err(damage(
                            frag.offset,
                            "fragment compression flags differ from the record's first fragment",
                        )));
                    }
                }
                (_, true) => {
                    return Ok(Err(damage(
                        frag.offset,
                        format!(
                            "{} fragment inside a record started at {}",
                            kind_name(frag.kind),
                            self.start
                        ),
                    )))
                }
                (_, false) => {
                    return Ok(Err(damage(
                        frag.offset,
                        format!("{} fragment outside a record", kind_name(frag.kind)),
                    )))
                }
            }
            let (a, b) = frag.data;
            if self.assembled.len() + (b - a) > self.max_record {
                return Ok(Err(damage(
                    self.start,
                    format!("record larger than {} bytes", self.max_record),
                )));
            }
            self.assembled.extend_from_slice(&self.buf[a..b]);
            if frag.kind == FRAG_LAST {
                self.end = self.base + frag_end as u64;
                return Ok(self.finish(rec_flags).map(|()| true));
            }
        }
    }

    /// Completes the record in `assembled`: decompresses it if its flags say so.
    fn finish(&mut self, flags: u8) -> Result<(), Damage> {
        let at = self.start;
        match flags {
            0 => {
                self.out = RecordBytes::Assembled;
                Ok(())
            }
            FLAG_SNAPPY => {
                let n = snap::raw::decompress_len(&self.assembled)
                    .map_err(|e| damage(at, format!("snappy: {e}")))?;
                if n > self.max_record {
                    return Err(damage(
                        at,
                        format!("record larger than {} bytes", self.max_record),
                    ));
                }
                self.decompressed.clear();
                self.decompressed.resize(n, 0);
                let got = self
                    .snappy
                    .decompress(&self.assembled, &mut self.decompressed)
                    .map_err(|e| damage(at, format!("snappy: {e}")))?;
                self.decompressed.truncate(got);
                self.out = RecordBytes::Decompressed;
                Ok(())
            }
            FLAG_ZSTD => {
                self.unzstd().map_err(|reason| damage(at, reason))?;
                self.out = RecordBytes::Decompressed;
                Ok(())
            }
            _ => Err(damage(
                at,
                format!("invalid compression flags {flags:#04x}"),
            )),
        }
    }

    fn unzstd(&mut self) -> Result<(), String> {
        let limit = self.max_record;
        self.decompressed.clear();
        match zstd::zstd_safe::get_frame_content_size(&self.assembled) {
            Ok(Some(n)) => {
                if n > limit as u64 {
                    return Err(format!("record larger than {limit} bytes"));
                }
                if self.zstd.is_none() {
                    self.zstd = Some(
                        zstd::bulk::Decompressor::new().map_err(|e| format!("zstd init: {e}"))?,
                    );
                }
                let Some(dec) = self.zstd.as_mut() else {
                    return Err("zstd init".into());
                };
                self.decompressed.reserve(n as usize);
                let got = dec
                    .decompress_to_buffer(&self.assembled, &mut self.decompressed)
                    .map_err(|e| format!("zstd: {e}"))?;
                if got as u64 != n {
                    return Err(format!("zstd: frame says {n} bytes, got {got}"));
                }
                Ok(())
            }
            // Frames without a content size (other writers may omit it): stream, with the cap.
            Ok(None) => {
                let dec = zstd::stream::read::Decoder::with_buffer(&self.assembled[..])
                    .map_err(|e| format!("zstd: {e}"))?;
                dec.take(limit as u64 + 1)
                    .read_to_end(&mut self.decompressed)
                    .map_err(|e| format!("zstd: {e}"))?;
                if self.decompressed.len() > limit {
                    return Err(format!("record larger than {limit} bytes"));
                }
                Ok(())
            }
            Err(_) => Err("zstd: invalid frame header".into()),
        }
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        FRAG_FULL => "full",
        FRAG_FIRST => "first",
        FRAG_MIDDLE => "middle",
        FRAG_LAST => "last",
        _ => "invalid",
    }
}

/// True for the records we write as pure markers (segment header, commit marker): both decode
/// to nothing in Prometheus, so skipping them changes nothing for replay.
fn is_marker(rec: &[u8]) -> bool {
    rec == SEGMENT_HEADER || rec == COMMIT_MARKER
}

/// Reads every record of a WAL directory's segments, in order, decompressed. Segment headers and
/// commit markers are not returned. Memory is bounded by the read buffer and the largest record.
///
/// Replay runs [`super::recover`] first; then every record this returns belongs to a complete
/// commit, and any damage it reports lies in an earlier segment and is real corruption.
pub struct WalReader {
    dir: PathBuf,
    segs: Vec<u64>,
    /// Index into `segs` of the segment being read.
    cur: usize,
    open: Option<SegmentRecords<File>>,
    pos: (u64, u64),
}

impl WalReader {
    /// Opens the segments of `dir` (a `wal/` directory). Fails if their indices have a gap, as
    /// Prometheus does.
    pub fn open(dir: &Path) -> Result<WalReader, WalError> {
        WalReader::open_from(dir, 0, None)
    }

    /// Opens the segments of `dir` numbered from `first` to `last` (inclusive; all when `None`):
    /// replay starts after the latest checkpoint, a checkpoint reads the segments it covers.
    pub fn open_from(dir: &Path, first: u64, last: Option<u64>) -> Result<WalReader, WalError> {
        let mut segs = segments(dir)?;
        segs.retain(|&s| s >= first && last.is_none_or(|l| s <= l));
        if let Some(w) = segs.windows(2).find(|w| w[1] != w[0] + 1) {
            return Err(WalError::SegmentGap {
                dir: dir.to_path_buf(),
                before: w[0],
                after: w[1],
            });
        }
        let pos = (segs.first().copied().unwrap_or(0), 0);
        Ok(WalReader {
            dir: dir.to_path_buf(),
            segs,
            cur: 0,
            open: None,
            pos,
        })
    }

    /// The next record, decompressed; `None` after the last segment. The slice lives until the
    /// next call. Records that are exactly `[1]` or `[3]` (segment headers, commit markers, or
    /// any other empty series/tombstones record: all decode to nothing) are skipped.
    pub fn next_record(&mut self) -> Result<Option<&[u8]>, WalError> {
        loop {
            let Some(&seg) = self.segs.get(self.cur) else {
                return Ok(None);
            };
            if self.open.is_none() {
                let path = segment_path(&self.dir, seg);
                let f = File::open(&path).map_err(|e| io_err(&path, e))?;
                self.open = Some(SegmentRecords::new(f, MAX_RECORD_SIZE));
            }
            let Some(recs) = self.open.as_mut() else {
                continue;
            };
            let found = match recs.next_record() {
                Err(e) => return Err(io_err(&segment_path(&self.dir, seg), e)),
                Ok(Err(d)) => {
                    return Err(WalError::Corruption {
                        segment: seg,
                        offset: d.offset,
                        reason: d.reason,
                    })
                }
                Ok(Ok(None)) => None,
                Ok(Ok(Some(rec))) => Some(is_marker(rec)),
            };
            match found {
                None => {
                    self.open = None;
                    self.cur += 1;
                }
                Some(true) => {}
                Some(false) => {
                    self.pos = (seg, recs.record_span().1);
                    // Re-borrow to hand out the record (the match above ended its borrow).
                    return Ok(self.open.as_ref().map(|r| r.record()));
                }
            }
        }
    }

    /// (segment, offset) just after the last record returned; (first segment, 0) before any.
    pub fn position(&self) -> (u64, u64) {
        self.pos
    }
}

/// What a scan of one segment found (for `recover`).
#[derive(Debug, Default)]
struct SegmentScan {
    /// Starts with our segment header, so its records commit only at a commit marker.
    uses_markers: bool,
    /// Holds anything besides a segment header and padding (records or damage).
    has_data: bool,
    /// End of the last commit marker before any damage.
    last_marker_end: Option<u64>,
    /// End of the last record other than the segment header before any damage.
    last_record_end: Option<u64>,
    /// End of the last record of any kind (header included) before any damage.
    content_end: u64,
    damage: Option<Damage>,
    len: u64,
}

fn scan_segment(dir: &Path, seg: u64) -> Result<SegmentScan, WalError> {
    let path = segment_path(dir, seg);
    let f = File::open(&path).map_err(|e| io_err(&path, e))?;
    let len = f.metadata().map_err(|e| io_err(&path, e))?.len();
    let mut scan =
        scan_records(SegmentRecords::new(f, MAX_RECORD_SIZE)).map_err(|e| io_err(&path, e))?;
    scan.len = len;
    Ok(scan)
}

fn scan_records<R: Read>(mut recs: SegmentRecords<R>) -> Result<SegmentScan, io::Error> {
    let mut scan = SegmentScan::default();
    let mut first = true;
    loop {
        let (header, marker) = match recs.next_record()? {
            Ok(None) => return Ok(scan),
            Err(d) => {
                scan.has_data = true;
                scan.damage = Some(d);
                return Ok(scan);
            }
            Ok(Some(rec)) => (rec == SEGMENT_HEADER, rec == COMMIT_MARKER),
        };
        let (start, end) = recs.record_span();
        scan.content_end = end;
        if first && start == 0 && header {
            scan.uses_markers = true;
        } else {
            scan.has_data = true;
            scan.last_record_end = Some(end);
            if marker {
                scan.last_marker_end = Some(end);
            }
        }
        first = false;
    }
}

/// Where `recover` cut the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// The segment truncated; every later segment was deleted.
    pub segment: u64,
    /// Its new length: the end of the last complete commit.
    pub offset: u64,
    /// Bytes removed, from that segment and the deleted ones.
    pub bytes_dropped: u64,
}

/// What `recover` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoverReport {
    pub truncated: Option<Truncation>,
}

/// Makes the WAL in `dir` end at its last complete commit; run before replay (and before
/// [`super::Wal::open`]).
///
/// Finds the last segment holding data (records or damage); scans it; the commit point is the
/// end of its last commit marker if it starts with our segment header, else the end of its last
/// valid record (Prometheus' segments commit record by record). A segment without one defers to
/// the segment before it (a commit may span segments). Everything after the commit point is
/// truncated and later segments deleted. Damage in a segment before the last one with data is
/// not a torn write: it is left alone, and reported as `Corruption` only if the search for the
/// commit point has to read through it.
pub fn recover(dir: &Path) -> Result<RecoverReport, WalError> {
    let segs = match segments(dir) {
        Ok(s) => s,
        Err(WalError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(RecoverReport::default())
        }
        Err(e) => return Err(e),
    };
    let mut last = None;
    for i in (0..segs.len()).rev() {
        let scan = scan_segment(dir, segs[i])?;
        if scan.has_data {
            last = Some((i, scan));
            break;
        }
    }
    let Some((li, lscan)) = last else {
        return Ok(RecoverReport::default());
    };

    let mut i = li;
    let mut scan_i = None; // scan of segs[i] when i != li
    let (pi, po) = loop {
        let scan = scan_i.as_ref().unwrap_or(&lscan);
        if i != li {
            if let Some(d) = &scan.damage {
                return Err(WalError::Corruption {
                    segment: segs[i],
                    offset: d.offset,
                    reason: d.reason.clone(),
                });
            }
        }
        let point = if scan.uses_markers {
            scan.last_marker_end
        } else {
            scan.last_record_end
        };
        if let Some(o) = point {
            break (i, o);
        }
        if i == 0 {
            // Nothing committed at all: keep only the first segment's header.
            break (
                0,
                if scan.uses_markers {
                    HEADER_SIZE as u64 + 1
                } else {
                    0
                },
            );
        }
        i -= 1;
        scan_i = Some(scan_segment(dir, segs[i])?);
    };

    let needed = pi < li || lscan.damage.is_some() || lscan.content_end > po;
    if !needed {
        return Ok(RecoverReport::default());
    }
    let seg = segs[pi];
    let path = segment_path(dir, seg);
    let len = std::fs::metadata(&path)
        .map_err(|e| io_err(&path, e))?
        .len();
    let mut dropped = len.saturating_sub(po);
    for &later in &segs[pi + 1..] {
        let p = segment_path(dir, later);
        dropped += std::fs::metadata(&p).map_err(|e| io_err(&p, e))?.len();
    }
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    f.set_len(po).map_err(|e| io_err(&path, e))?;
    f.sync_all().map_err(|e| io_err(&path, e))?;
    // Highest first: a crash midway leaves a gap-free run of segments ending in garbage, which
    // the next recover cuts the same way.
    for &later in segs[pi + 1..].iter().rev() {
        let p = segment_path(dir, later);
        std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
    }
    super::sync_dir(dir)?;
    Ok(RecoverReport {
        truncated: Some(Truncation {
            segment: seg,
            offset: po,
            bytes_dropped: dropped,
        }),
    })
}

/// Fuzz body: reads `data` as one segment, record by record, decoding each record; must never
/// panic, and must agree with the recover scan on where the damage is.
#[doc(hidden)]
pub fn fuzz_read_segment(data: &[u8]) {
    const FUZZ_MAX_RECORD: usize = 1 << 20;
    let mut recs = SegmentRecords::new(data, FUZZ_MAX_RECORD);
    let mut first_damage = None;
    loop {
        match recs.next_record() {
            Ok(Ok(Some(rec))) => super::record::fuzz_decode_record(rec),
            Ok(Ok(None)) => break,
            Ok(Err(d)) => {
                first_damage = Some(d);
                break;
            }
            Err(_) => break,
        }
    }
    if let Ok(scan) = scan_records(SegmentRecords::new(data, FUZZ_MAX_RECORD)) {
        assert_eq!(scan.damage, first_damage, "scan and reader disagree");
        assert!(scan.content_end <= data.len() as u64);
    }
}
