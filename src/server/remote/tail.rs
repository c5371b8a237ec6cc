//! Reading one WAL segment while it is being written: the remote writer's counterpart of
//! Prometheus' `tsdb/wlog/live_reader.go`.
//!
//! The segment format is [`crate::wal`]'s (`tsdb/docs/format/wal.md`): fragments that never cross
//! a 32 KiB page, zero padding to a page end, CRC32C per fragment, records compressed whole.
//! [`crate::wal::WalReader`] reads finished segments from their start; this reader starts at any
//! record boundary (a saved position) and treats the end of the bytes written so far as "not
//! yet": a partial fragment, or a record whose last fragment is not there, is waited for. Bytes
//! the writer has handed to the kernel are final (it only appends), so while the segment is the
//! live one, anything that does not parse yet is the tail of a write in progress; once a later
//! segment exists the caller re-reads to the end and only then calls leftover bytes damage.

use crate::wal::{WalError, HEADER_SIZE, PAGE_SIZE};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes read from the file per [`SegmentTail::fill`], at most.
const READ_CHUNK: usize = 1 << 20;
/// The read syscall's buffer.
const SCRATCH: usize = 64 << 10;
/// Largest record accepted (assembled or decompressed), as the WAL reader's cap.
const MAX_RECORD: usize = crate::wal::MAX_RECORD_SIZE;

const FRAG_FULL: u8 = 1;
const FRAG_FIRST: u8 = 2;
const FRAG_MIDDLE: u8 = 3;
const FRAG_LAST: u8 = 4;
const FLAG_SNAPPY: u8 = 1 << 3;
const FLAG_ZSTD: u8 = 1 << 4;
const FLAG_MASK: u8 = !0x07;

/// Why [`SegmentTail::next_record`] returned no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stall {
    /// The bytes read so far end inside a record (or there are none): read more, or wait.
    NeedMore,
    /// The bytes at `offset` are not a valid fragment sequence.
    Damage { offset: u64, reason: String },
}

/// A segment read from a record boundary on, as it grows.
pub(crate) struct SegmentTail {
    path: PathBuf,
    segment: u64,
    file: File,
    /// File bytes from segment offset `buf_off` on, read and not yet dropped.
    buf: Vec<u8>,
    buf_off: u64,
    /// Index in `buf` of the next record's first byte.
    pos: usize,
    assembled: Vec<u8>,
    decompressed: Vec<u8>,
    snappy: snap::raw::Decoder,
    chunk: Box<[u8]>,
}

impl SegmentTail {
    /// Opens segment `segment` (file `path`) at record boundary `offset`; an offset past the
    /// file's end (a torn tail that recovery cut) starts at the end.
    pub(crate) fn open(path: &Path, segment: u64, offset: u64) -> Result<SegmentTail, WalError> {
        let io = |e| WalError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let start = offset.min(len);
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        Ok(SegmentTail {
            path: path.to_path_buf(),
            segment,
            file,
            buf: Vec::new(),
            buf_off: start,
            pos: 0,
            assembled: Vec::new(),
            decompressed: Vec::new(),
            snappy: snap::raw::Decoder::new(),
            chunk: vec![0; SCRATCH].into_boxed_slice(),
        })
    }

    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// Segment offset just after the last record returned (where reading resumes).
    pub(crate) fn offset(&self) -> u64 {
        self.buf_off + self.pos as u64
    }

    /// Reads up to 1 MiB more of the file; the number of bytes read (0: nothing new yet).
    pub(crate) fn fill(&mut self) -> Result<usize, WalError> {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.buf_off += self.pos as u64;
            self.pos = 0;
        }
        // Through a fixed scratch buffer: growing `buf` by a zeroed megabyte per call would cost
        // a megabyte of memset per poll of an idle segment.
        let mut got = 0;
        while got < READ_CHUNK {
            match self.file.read(&mut self.chunk[..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.buf.extend_from_slice(&self.chunk[..n]);
                    got += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(WalError::Io {
                        path: self.path.clone(),
                        source: e,
                    })
                }
            }
        }
        Ok(got)
    }

    /// Whether everything after the last record is zero padding (or nothing): the state of a
    /// finished segment read to its end. Prometheus may end a segment without padding its last
    /// page, so a short final page of zeros is fine.
    pub(crate) fn at_clean_end(&self) -> bool {
        self.buf[self.pos..].iter().all(|&b| b == 0)
    }

    /// The next whole record (decompressed) in the bytes read so far.
    pub(crate) fn next_record(&mut self) -> Result<&[u8], Stall> {
        let mut p = self.pos;
        let mut in_record = false;
        let mut rec_flags = 0u8;
        let mut rec_start = 0u64;
        self.assembled.clear();
        loop {
            let avail = self.buf.len() - p;
            if avail == 0 {
                return Err(Stall::NeedMore);
            }
            let offset = self.buf_off + p as u64;
            let page_left = PAGE_SIZE - (offset % PAGE_SIZE as u64) as usize;
            let typ = self.buf[p];
            if typ == 0 {
                let n = page_left.min(avail);
                if let Some(i) = self.buf[p..p + n].iter().position(|&b| b != 0) {
                    return Err(damage(offset + i as u64, "non-zero byte in page padding"));
                }
                if n < page_left {
                    return Err(Stall::NeedMore);
                }
                p += page_left;
                if !in_record {
                    // Padding between records is consumed with the record before it.
                    self.pos = p;
                }
                continue;
            }
            if page_left < HEADER_SIZE {
                return Err(damage(
                    offset,
                    "fragment header in the last bytes of a page",
                ));
            }
            if avail < HEADER_SIZE {
                return Err(Stall::NeedMore);
            }
            let h = &self.buf[p..p + HEADER_SIZE];
            let kind = typ & !FLAG_MASK;
            let flags = typ & FLAG_MASK;
            if !(FRAG_FULL..=FRAG_LAST).contains(&kind) || flags == FLAG_MASK {
                return Err(damage(
                    offset,
                    format!("invalid fragment type byte {typ:#04x}"),
                ));
            }
            let len = usize::from(u16::from_be_bytes([h[1], h[2]]));
            let crc = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
            if HEADER_SIZE + len > page_left {
                return Err(damage(
                    offset,
                    format!("fragment length {len} crosses the page end"),
                ));
            }
            if HEADER_SIZE + len > avail {
                return Err(Stall::NeedMore);
            }
            let (a, b) = (p + HEADER_SIZE, p + HEADER_SIZE + len);
            let actual = crc32c::crc32c(&self.buf[a..b]);
            if actual != crc {
                return Err(damage(
                    offset,
                    format!("fragment CRC32C {actual:08x}, header says {crc:08x}"),
                ));
            }
            p = b;
            match (kind, in_record) {
                (FRAG_FULL, false) => {
                    self.pos = p;
                    if flags == 0 {
                        return Ok(&self.buf[a..b]);
                    }
                    self.assembled.extend_from_slice(&self.buf[a..b]);
                    return self.finish(flags, offset);
                }
                (FRAG_FIRST, false) => {
                    in_record = true;
                    rec_flags = flags;
                    rec_start = offset;
                    self.assembled.extend_from_slice(&self.buf[a..b]);
                }
                (FRAG_MIDDLE | FRAG_LAST, true) => {
                    if flags != rec_flags {
                        return Err(damage(offset, "fragment flags differ from the record's"));
                    }
                    if self.assembled.len() + len > MAX_RECORD {
                        return Err(damage(rec_start, "record too large"));
                    }
                    self.assembled.extend_from_slice(&self.buf[a..b]);
                    if kind == FRAG_LAST {
                        self.pos = p;
                        return self.finish(rec_flags, rec_start);
                    }
                }
                _ => {
                    return Err(damage(
                        offset,
                        format!("fragment type {kind} out of sequence"),
                    ))
                }
            }
        }
    }

    fn finish(&mut self, flags: u8, at: u64) -> Result<&[u8], Stall> {
        match flags {
            0 => Ok(&self.assembled),
            FLAG_SNAPPY => {
                let n = snap::raw::decompress_len(&self.assembled)
                    .map_err(|e| damage(at, format!("snappy: {e}")))?;
                if n > MAX_RECORD {
                    return Err(damage(at, "record too large"));
                }
                self.decompressed.clear();
                self.decompressed.resize(n, 0);
                let got = self
                    .snappy
                    .decompress(&self.assembled, &mut self.decompressed)
                    .map_err(|e| damage(at, format!("snappy: {e}")))?;
                self.decompressed.truncate(got);
                Ok(&self.decompressed)
            }
            FLAG_ZSTD => {
                self.decompressed.clear();
                let dec = zstd::stream::read::Decoder::with_buffer(&self.assembled[..])
                    .map_err(|e| damage(at, format!("zstd: {e}")))?;
                dec.take(MAX_RECORD as u64 + 1)
                    .read_to_end(&mut self.decompressed)
                    .map_err(|e| damage(at, format!("zstd: {e}")))?;
                if self.decompressed.len() > MAX_RECORD {
                    return Err(damage(at, "record too large"));
                }
                Ok(&self.decompressed)
            }
            _ => Err(damage(
                at,
                format!("invalid compression flags {flags:#04x}"),
            )),
        }
    }
}

fn damage(offset: u64, reason: impl Into<String>) -> Stall {
    Stall::Damage {
        offset,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Compression, Wal, WalOptions};

    /// Every record of the segment, read with the tail reader fed `step` bytes at a time.
    fn read_growing(bytes: &[u8], step: usize, from: u64) -> (Vec<Vec<u8>>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000");
        std::fs::write(&path, &bytes[..0]).unwrap();
        let mut t = SegmentTail::open(&path, 0, 0).unwrap();
        let mut written = 0;
        let mut out = Vec::new();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let _ = from;
        loop {
            loop {
                match t.next_record() {
                    Ok(r) => out.push(r.to_vec()),
                    Err(Stall::NeedMore) => break,
                    Err(d) => panic!("{d:?}"),
                }
            }
            if t.fill().unwrap() > 0 {
                continue;
            }
            if written == bytes.len() {
                break;
            }
            let n = step.min(bytes.len() - written);
            std::io::Write::write_all(&mut f, &bytes[written..written + n]).unwrap();
            written += n;
        }
        assert!(t.at_clean_end());
        (out, t.offset())
    }

    fn segment_with(records: &[Vec<u8>], c: Compression) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), WalOptions::default().compression(c)).unwrap();
        for r in records {
            w.log_commit(&[r.as_slice()]).unwrap();
        }
        w.sync().unwrap();
        std::fs::read(dir.path().join("00000000")).unwrap()
    }

    #[test]
    fn reads_records_as_the_segment_grows() {
        let records: Vec<Vec<u8>> = (0..40u32)
            .map(|i| {
                let len = [3usize, 100, 40_000, 70_000, 7][i as usize % 5];
                let mut r = vec![2u8];
                r.extend((0..len).map(|j| (j as u32 * 7 + i) as u8));
                r
            })
            .collect();
        for c in [Compression::None, Compression::Snappy, Compression::Zstd] {
            let seg = segment_with(&records, c);
            for step in [1usize << 20, 4099, 777] {
                let (got, end) = read_growing(&seg, step, 0);
                let data: Vec<_> = got.into_iter().filter(|r| r.len() > 1).collect();
                assert_eq!(data, records, "compression {c:?} step {step}");
                assert!(end <= seg.len() as u64);
            }
        }
    }

    #[test]
    fn resumes_at_a_saved_offset() {
        let records: Vec<Vec<u8>> = (0..10u8).map(|i| vec![2, i, i, i]).collect();
        let seg = segment_with(&records, Compression::None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000");
        std::fs::write(&path, &seg).unwrap();
        let mut t = SegmentTail::open(&path, 0, 0).unwrap();
        t.fill().unwrap();
        let mut mid = 0;
        let mut n = 0;
        while let Ok(r) = t.next_record() {
            if r.len() > 1 {
                n += 1;
                if n == 5 {
                    mid = t.offset();
                }
            }
        }
        let mut t = SegmentTail::open(&path, 0, mid).unwrap();
        t.fill().unwrap();
        let mut rest = Vec::new();
        while let Ok(r) = t.next_record() {
            if r.len() > 1 {
                rest.push(r.to_vec());
            }
        }
        assert_eq!(rest, records[5..].to_vec());
    }

    #[test]
    fn damage_is_reported_with_its_offset() {
        let records: Vec<Vec<u8>> = (0..4u8).map(|i| vec![2, i, 9, 9]).collect();
        let mut seg = segment_with(&records, Compression::None);
        // Flip a data byte of the third fragment (header record, then records).
        let third = 8 + 11 + 8;
        seg[third + 9] ^= 0xff;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000");
        std::fs::write(&path, &seg).unwrap();
        let mut t = SegmentTail::open(&path, 0, 0).unwrap();
        t.fill().unwrap();
        let err = loop {
            match t.next_record() {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Stall::Damage { .. }), "{err:?}");
    }
}
