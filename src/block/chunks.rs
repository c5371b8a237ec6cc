//! Chunk segment files of a block (`chunks/000001`, ...): Prometheus' `tsdb/docs/format/chunks.md`
//! and `tsdb/chunks/chunks.go` (v2.42).
//!
//! A segment starts with an 8-byte header (magic `0x85BD40DD`, version 1, 3 zero bytes) followed by
//! chunk records `uvarint len | encoding byte | data | CRC32C(encoding + data)`. A chunk reference
//! is `segment index << 32 | byte offset`, where the segment index counts the directory's segment
//! files in name order from 0 (file `000001` is index 0). Segments are cut before they would
//! exceed 512 MiB. The writer streams records to files; the reader maps the files and checks each
//! record's CRC when it is read.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::encoding::{put_uvarint, read_uvarint, uvarint_len};
use super::mmap::Mapped;

/// Magic number at the start of every chunk segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// The segment format version Prometheus writes.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Magic, version and 3 bytes of padding.
pub const SEGMENT_HEADER_SIZE: usize = 8;
/// Prometheus' default (and our) maximum segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// Size of a record's CRC32C.
const CRC_SIZE: usize = 4;
/// Size of a record's encoding byte.
const ENCODING_SIZE: usize = 1;

/// A chunk reference: segment index in the high 32 bits, byte offset in the low 32.
pub fn chunk_ref(segment: u32, offset: u32) -> u64 {
    u64::from(segment) << 32 | u64::from(offset)
}

/// The (segment index, offset) of a chunk reference.
pub fn split_ref(r: u64) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

/// The file name of segment number `n` (1-based): six zero-padded digits.
pub fn segment_name(n: u32) -> String {
    format!("{n:06}")
}

/// Why a chunk segment could not be written or a chunk read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkFileError {
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
    #[error("chunk reference {chunk_ref:#x}: segment index {segment} out of range ({segments} segments)")]
    NoSegment {
        chunk_ref: u64,
        segment: u32,
        segments: usize,
    },
    #[error("chunk of {len} bytes does not fit a segment of at most {max} bytes")]
    TooLarge { len: usize, max: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ChunkFileError + '_ {
    move |source| ChunkFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The 8-byte segment header.
pub fn segment_header() -> [u8; SEGMENT_HEADER_SIZE] {
    let mut h = [0u8; SEGMENT_HEADER_SIZE];
    h[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
    h[4] = CHUNKS_FORMAT_V1;
    h
}

/// Appends one chunk record to `out`.
pub fn encode_record(out: &mut Vec<u8>, encoding: u8, data: &[u8]) {
    put_uvarint(out, data.len() as u64);
    let start = out.len();
    out.push(encoding);
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Size of the record [`encode_record`] writes for `len` bytes of data.
pub fn record_len(len: usize) -> usize {
    uvarint_len(len as u64) + ENCODING_SIZE + len + CRC_SIZE
}

/// What went wrong decoding a segment's bytes, at an offset within the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub offset: u64,
    pub what: String,
}

/// Checks a segment's header.
pub fn check_header(seg: &[u8]) -> Result<(), RecordError> {
    let Some(h) = seg.first_chunk::<SEGMENT_HEADER_SIZE>() else {
        return Err(RecordError {
            offset: 0,
            what: format!("{} bytes, shorter than the segment header", seg.len()),
        });
    };
    let magic = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    if magic != MAGIC_CHUNKS {
        return Err(RecordError {
            offset: 0,
            what: format!("magic {magic:#010x}, want {MAGIC_CHUNKS:#010x}"),
        });
    }
    if h[4] != CHUNKS_FORMAT_V1 {
        return Err(RecordError {
            offset: 4,
            what: format!("segment format version {}, want {CHUNKS_FORMAT_V1}", h[4]),
        });
    }
    Ok(())
}

/// Decodes the record at `offset` of segment bytes `seg`, checking its CRC: the encoding byte, the
/// data, and the offset just past the record. (Prometheus reads the length through a 5-byte
/// window and so rejects records starting closer than that to a segment's end; no valid record
/// is that short, and we accept anything that fits.)
pub fn decode_record(seg: &[u8], offset: usize) -> Result<(u8, &[u8], usize), RecordError> {
    let err = |at: usize, what: String| RecordError {
        offset: at as u64,
        what,
    };
    if offset < SEGMENT_HEADER_SIZE {
        return Err(err(offset, "chunk offset inside the segment header".into()));
    }
    let rest = seg.get(offset..).ok_or_else(|| {
        err(
            offset,
            format!("chunk offset beyond segment end {}", seg.len()),
        )
    })?;
    let (len, n) = read_uvarint(rest)
        .ok_or_else(|| err(offset, "truncated or overlong chunk length".into()))?;
    let enc_start = offset + n;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| {
            enc_start
                .checked_add(ENCODING_SIZE + CRC_SIZE)?
                .checked_add(l)
        })
        .filter(|&e| e <= seg.len())
        .ok_or_else(|| {
            err(
                offset,
                format!(
                    "chunk of {len} bytes runs past the segment end {}",
                    seg.len()
                ),
            )
        })?;
    let body = &seg[enc_start..end - CRC_SIZE];
    let want = u32::from_be_bytes([seg[end - 4], seg[end - 3], seg[end - 2], seg[end - 1]]);
    let got = crc32c::crc32c(body);
    if got != want {
        return Err(err(
            offset,
            format!("chunk CRC32C {got:#010x}, stored {want:#010x}"),
        ));
    }
    let (&encoding, data) = body
        .split_first()
        .ok_or_else(|| err(offset, "empty chunk record".into()))?;
    Ok((encoding, data, end))
}

/// Writes chunk records into numbered segment files of a directory.
pub struct ChunkWriter {
    dir: PathBuf,
    max_segment: u64,
    /// Number of the current segment file (1-based); 0 before the first.
    seq: u32,
    file: Option<BufWriter<File>>,
    pos: u64,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// A writer for `dir` (created if missing) with 512 MiB segments.
    pub fn new(dir: &Path) -> Result<ChunkWriter, ChunkFileError> {
        ChunkWriter::with_segment_size(dir, DEFAULT_SEGMENT_SIZE)
    }

    /// A writer cutting segments before they exceed `max_segment` bytes (at most 4 GiB, as offsets
    /// are 32 bits).
    pub fn with_segment_size(dir: &Path, max_segment: u64) -> Result<ChunkWriter, ChunkFileError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            max_segment: max_segment.min(u64::from(u32::MAX)),
            seq: 0,
            file: None,
            pos: 0,
            buf: Vec::new(),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(segment_name(self.seq))
    }

    fn finish_segment(&mut self) -> Result<(), ChunkFileError> {
        if let Some(f) = self.file.take() {
            let path = self.path();
            let f = f.into_inner().map_err(|e| io_err(&path)(e.into_error()))?;
            f.sync_all().map_err(io_err(&path))?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), ChunkFileError> {
        self.finish_segment()?;
        self.seq += 1;
        let path = self.path();
        let mut f = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(io_err(&path))?);
        f.write_all(&segment_header()).map_err(io_err(&path))?;
        self.file = Some(f);
        self.pos = SEGMENT_HEADER_SIZE as u64;
        Ok(())
    }

    /// Appends a chunk and returns its reference.
    pub fn write(&mut self, encoding: u8, data: &[u8]) -> Result<u64, ChunkFileError> {
        let len = record_len(data.len()) as u64;
        if len + SEGMENT_HEADER_SIZE as u64 > self.max_segment {
            return Err(ChunkFileError::TooLarge {
                len: data.len(),
                max: self.max_segment,
            });
        }
        if self.file.is_none() || self.pos + len > self.max_segment {
            self.cut()?;
        }
        self.buf.clear();
        encode_record(&mut self.buf, encoding, data);
        let r = chunk_ref(self.seq - 1, self.pos as u32);
        let path = self.path();
        if let Some(f) = &mut self.file {
            f.write_all(&self.buf).map_err(io_err(&path))?;
        }
        self.pos += len;
        Ok(r)
    }

    /// Flushes and fsyncs the last segment and the directory.
    pub fn finish(mut self) -> Result<(), ChunkFileError> {
        self.finish_segment()?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

/// The mapped segment files of a block's `chunks/` directory.
#[derive(Debug)]
pub struct ChunkReader {
    segments: Vec<(PathBuf, Mapped)>,
}

impl ChunkReader {
    /// Maps every segment file (names that are decimal numbers) in name order and checks headers.
    pub fn open(dir: &Path) -> Result<ChunkReader, ChunkFileError> {
        let mut names: Vec<String> = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            if let Some(n) = e.file_name().to_str() {
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    names.push(n.to_string());
                }
            }
        }
        // Prometheus indexes segments by their position in the directory listing, which Go sorts
        // by name.
        names.sort();
        let mut segments = Vec::with_capacity(names.len());
        for n in names {
            let path = dir.join(n);
            let map = Mapped::open(&path).map_err(io_err(&path))?;
            check_header(&map).map_err(|e| ChunkFileError::Corrupt {
                path: path.clone(),
                offset: e.offset,
                what: e.what,
            })?;
            segments.push((path, map));
        }
        Ok(ChunkReader { segments })
    }

    /// A reader over in-memory segments (tests and fuzzing); headers are not checked.
    pub fn from_segments(segments: Vec<Vec<u8>>) -> ChunkReader {
        ChunkReader {
            segments: segments
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        PathBuf::from(segment_name(i as u32 + 1)),
                        Mapped::from_vec(s),
                    )
                })
                .collect(),
        }
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Total bytes of all segments.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|(_, m)| m.len() as u64).sum()
    }

    /// The encoding byte and data of the chunk at `r`, after checking its CRC.
    pub fn chunk(&self, r: u64) -> Result<(u8, &[u8]), ChunkFileError> {
        let (seg, off) = split_ref(r);
        let (path, map) = self
            .segments
            .get(seg as usize)
            .ok_or(ChunkFileError::NoSegment {
                chunk_ref: r,
                segment: seg,
                segments: self.segments.len(),
            })?;
        match decode_record(map, off as usize) {
            Ok((enc, data, _)) => Ok((enc, data)),
            Err(e) => Err(ChunkFileError::Corrupt {
                path: path.clone(),
                offset: e.offset,
                what: e.what,
            }),
        }
    }
}

/// Fuzz body: treats `data` as a chunk segment, walks its records from the header on, and reads
/// chunks at offsets taken from the input. Must never panic.
#[doc(hidden)]
pub fn fuzz_segment(data: &[u8]) {
    let _ = check_header(data);
    let mut off = SEGMENT_HEADER_SIZE;
    let mut n = 0;
    while off < data.len() && n < 10_000 {
        match decode_record(data, off) {
            Ok((_, d, end)) => {
                assert!(end > off && end <= data.len() && d.len() < end - off);
                off = end;
            }
            Err(e) => {
                assert!(e.offset as usize >= off.min(SEGMENT_HEADER_SIZE));
                break;
            }
        }
        n += 1;
    }
    let r = ChunkReader::from_segments(vec![data.to_vec()]);
    for w in data.chunks(8).take(64) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        let _ = r.chunk(u64::from_be_bytes(b));
        let _ = r.chunk(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn record_layout_matches_spec() {
        let mut b = Vec::new();
        encode_record(&mut b, 1, &[0, 1, 0xaa]);
        // len 3, encoding 1, data, CRC32C over encoding + data, big-endian.
        let crc = crc32c::crc32c(&[1, 0, 1, 0xaa]).to_be_bytes();
        assert_eq!(b, [3, 1, 0, 1, 0xaa, crc[0], crc[1], crc[2], crc[3]]);
        assert_eq!(record_len(3), b.len());
        assert_eq!(segment_header(), [0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
        assert_eq!(chunk_ref(2, 8), 0x2_0000_0008);
        assert_eq!(split_ref(0x2_0000_0008), (2, 8));
    }

    #[test]
    fn writer_cuts_segments_and_reader_validates_crc() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::with_segment_size(&cdir, 64).unwrap();
        let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20]).collect();
        let refs: Vec<u64> = chunks.iter().map(|c| w.write(1, c).unwrap()).collect();
        w.finish().unwrap();
        assert_eq!(refs[0], chunk_ref(0, 8));
        assert!(split_ref(*refs.last().unwrap()).0 > 0, "several segments");
        assert!(cdir.join("000001").exists() && cdir.join("000002").exists());
        let r = ChunkReader::open(&cdir).unwrap();
        for (c, &rf) in chunks.iter().zip(&refs) {
            assert_eq!(r.chunk(rf).unwrap(), (1, c.as_slice()));
        }
        assert!(matches!(
            r.chunk(chunk_ref(99, 8)),
            Err(ChunkFileError::NoSegment { .. })
        ));
        // Flip a data byte: the CRC error names the file and the record's offset.
        let p = cdir.join("000001");
        let mut b = fs::read(&p).unwrap();
        b[12] ^= 0xff;
        fs::write(&p, &b).unwrap();
        let r = ChunkReader::open(&cdir).unwrap();
        let e = r.chunk(refs[0]).unwrap_err().to_string();
        assert!(
            e.contains("000001") && e.contains("offset 8") && e.contains("CRC"),
            "{e}"
        );
        fs::write(&p, b"garbage!").unwrap();
        let e = ChunkReader::open(&cdir).unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
    }

    #[test]
    fn oversized_chunk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ChunkWriter::with_segment_size(dir.path(), 32).unwrap();
        assert!(matches!(
            w.write(1, &[0; 40]),
            Err(ChunkFileError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn segments_round_trip(
            chunks in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..40),
            max in 400u64..4000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut w = ChunkWriter::with_segment_size(dir.path(), max).unwrap();
            let refs: Vec<u64> = chunks.iter().map(|(e, d)| w.write(*e, d).unwrap()).collect();
            w.finish().unwrap();
            let r = ChunkReader::open(dir.path()).unwrap();
            for ((e, d), rf) in chunks.iter().zip(refs) {
                let (ge, gd) = r.chunk(rf).unwrap();
                prop_assert_eq!((ge, gd), (*e, d.as_slice()));
            }
            for (p, m) in &r.segments {
                prop_assert!(m.len() as u64 <= max, "{} is {} bytes", p.display(), m.len());
            }
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fuzz_segment_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_segment(&data);
            let mut with_header = segment_header().to_vec();
            with_header.extend_from_slice(&data);
            fuzz_segment(&with_header);
        }

        #[test]
        fn fuzz_segment_on_mutated_valid_segments(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..8),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut seg = segment_header().to_vec();
            for c in &chunks {
                encode_record(&mut seg, 1, c);
            }
            for (i, x) in flips {
                let n = seg.len();
                seg[i % n] ^= x;
            }
            fuzz_segment(&seg);
        }
    }
}
