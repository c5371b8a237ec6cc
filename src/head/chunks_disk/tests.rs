use super::*;
use proptest::prelude::*;

fn open(dir: &Path) -> (ChunkDiskMapper, Loaded) {
    ChunkDiskMapper::open(dir, true, i64::MIN).unwrap()
}

/// XOR-like data: a 2-byte sample count, then anything.
fn data(n: u16, fill: u8, len: usize) -> Vec<u8> {
    let mut d = n.to_be_bytes().to_vec();
    d.resize(len.max(2), fill);
    d
}

#[test]
fn chunk_record_layout_is_prometheus_v1() {
    let mut out = Vec::new();
    encode_header(&mut out);
    assert_eq!(out, [0x01, 0x30, 0xBC, 0x91, 1, 0, 0, 0]);
    let d = [0u8, 1, 0xaa];
    let mut rec = Vec::new();
    encode_chunk(
        &mut rec,
        &ChunkRecord {
            series: 7,
            min_t: -1,
            max_t: 2,
            encoding: ENCODING_XOR,
            data: &d,
        },
    );
    let mut want = Vec::new();
    want.extend_from_slice(&7u64.to_be_bytes());
    want.extend_from_slice(&(-1i64).to_be_bytes());
    want.extend_from_slice(&2i64.to_be_bytes());
    want.extend_from_slice(&[1, 3, 0, 1, 0xaa]);
    let crc = crc32c::crc32c(&want);
    want.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(rec, want);
    assert_eq!(rec.len(), encoded_len(3));
    assert_eq!(chunk_ref(3, 8), 0x3_0000_0008);
    assert_eq!(unpack_ref(0x3_0000_0008), (3, 8));
}

#[test]
fn bad_crc_and_short_data_are_errors() {
    let mut rec = Vec::new();
    let d = data(1, 9, 20);
    encode_chunk(
        &mut rec,
        &ChunkRecord {
            series: 1,
            min_t: 0,
            max_t: 1,
            encoding: 1,
            data: &d,
        },
    );
    assert!(matches!(
        decode_chunk(&rec[..rec.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut bad = rec.clone();
    bad[30] ^= 1;
    assert!(matches!(decode_chunk(&bad), Err(DecodeError::Crc { .. })));
    assert_eq!(decode_chunk(&rec).unwrap().1, rec.len());
}

#[test]
fn written_chunks_are_readable_at_once_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunks_head");
    let (m, loaded) = open(&p);
    assert!(loaded.chunks.is_empty() && loaded.warnings.is_empty());
    let mut refs = Vec::new();
    for i in 0..1000u64 {
        let d = data(120, i as u8, 100 + (i as usize % 50));
        let r = m
            .write(i % 10 + 1, i as i64 * 10, i as i64 * 10 + 5, &d)
            .unwrap();
        // Readable straight away (through the write buffer's flush and a new map).
        assert_eq!(&*m.chunk(r).unwrap(), &d[..]);
        refs.push((r, d));
    }
    for (r, d) in &refs {
        assert_eq!(&*m.chunk(*r).unwrap(), &d[..]);
    }
    assert_eq!(m.size().0, 1);
    drop(m);
    let (m, loaded) = open(&p);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.chunks.len(), 10);
    let s1 = &loaded.chunks[&1];
    assert_eq!(s1.len(), 100);
    assert_eq!(s1[0].chunk_ref, refs[0].0);
    assert_eq!((s1[0].min_t, s1[0].max_t, s1[0].num_samples), (0, 5, 120));
    for (r, d) in &refs {
        assert_eq!(&*m.chunk(*r).unwrap(), &d[..]);
    }
    // New chunks go to a new file, as Prometheus does after a restart.
    let r = m.write(1, 100_000, 100_001, &data(1, 0, 10)).unwrap();
    assert_eq!(unpack_ref(r), (2, FILE_HEADER_LEN as u32));
    assert!(file_path(&p, 2).exists());
}

#[test]
fn reads_race_with_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = open(&dir.path().join("chunks_head"));
    let refs = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..3000u64 {
                let r = m
                    .write(1, i as i64, i as i64, &data(1, i as u8, 64))
                    .unwrap();
                refs.lock().unwrap().push((r, i as u8));
            }
        });
        s.spawn(|| {
            let mut seen = 0;
            while seen < 3000 {
                let snapshot: Vec<(u64, u8)> = refs.lock().unwrap().clone();
                for &(r, fill) in &snapshot[seen..] {
                    assert_eq!(m.chunk(r).unwrap()[10], fill);
                }
                seen = snapshot.len();
            }
        });
    });
}

#[test]
fn torn_tail_is_truncated_and_later_files_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunks_head");
    let (m, _) = open(&p);
    let a = m.write(1, 0, 10, &data(5, 1, 40)).unwrap();
    let b = m.write(1, 11, 20, &data(5, 2, 40)).unwrap();
    drop(m);
    // A second file, as if cut later.
    let (m, _) = open(&p);
    m.write(1, 21, 30, &data(5, 3, 40)).unwrap();
    drop(m);
    // Tear the last chunk of file 1.
    let f1 = file_path(&p, 1);
    let len = fs::metadata(&f1).unwrap().len();
    File::options()
        .write(true)
        .open(&f1)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    // Read-only: nothing changes on disk, the chunk before the tear is kept.
    let (ro, loaded) = ChunkDiskMapper::open(&p, false, i64::MIN).unwrap();
    assert_eq!(loaded.chunks[&1].len(), 1);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(ro.chunk(a).is_ok());
    assert!(ro.write(1, 40, 50, &data(1, 0, 4)).is_err());
    drop(ro);
    assert_eq!(fs::metadata(&f1).unwrap().len(), len - 3);
    let (m, loaded) = open(&p);
    assert_eq!(
        loaded.chunks[&1]
            .iter()
            .map(|c| c.chunk_ref)
            .collect::<Vec<_>>(),
        vec![a]
    );
    assert!(loaded.warnings[0].contains("truncated, 1 later file(s) deleted"));
    assert_eq!(fs::metadata(&f1).unwrap().len(), unpack_ref(b).1 as u64);
    assert!(!file_path(&p, 2).exists());
    assert!(m.chunk(a).is_ok());
    assert!(m.chunk(b).is_err());
    drop(m);
    let (_, loaded) = open(&p);
    assert!(loaded.warnings.is_empty());
}

#[test]
fn out_of_sequence_chunks_end_the_usable_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunks_head");
    let (m, _) = open(&p);
    m.write(1, 0, 10, &data(5, 1, 40)).unwrap();
    m.write(2, 0, 10, &data(5, 1, 40)).unwrap();
    m.write(1, 5, 20, &data(5, 1, 40)).unwrap();
    m.write(2, 11, 20, &data(5, 1, 40)).unwrap();
    drop(m);
    let (_, loaded) = open(&p);
    assert_eq!(loaded.chunks[&1].len(), 1);
    assert_eq!(loaded.chunks[&2].len(), 1);
    assert!(loaded.warnings[0].contains("previous chunk ends at 10"));
}

#[test]
fn preallocated_zeros_end_a_file_and_empty_last_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunks_head");
    let (m, _) = open(&p);
    let a = m.write(1, 0, 10, &data(5, 1, 40)).unwrap();
    drop(m);
    let f1 = file_path(&p, 1);
    let len = fs::metadata(&f1).unwrap().len();
    File::options()
        .write(true)
        .open(&f1)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();
    fs::write(file_path(&p, 2), [0u8; 3]).unwrap();
    let (m, loaded) = open(&p);
    assert_eq!(loaded.chunks[&1].len(), 1);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(!file_path(&p, 2).exists());
    assert!(m.chunk(a).is_ok());
}

#[test]
fn truncation_deletes_a_prefix_of_files_that_end_before_mint() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunks_head");
    let (m, _) = open(&p);
    let a = m.write(1, 0, 100, &data(5, 1, 40)).unwrap();
    // Finishes file 1; the next write starts file 2.
    assert_eq!(m.truncate(0).unwrap(), 0);
    let b = m.write(1, 200, 300, &data(5, 1, 40)).unwrap();
    assert_eq!(m.truncate(0).unwrap(), 0);
    let c = m.write(2, 0, 50, &data(5, 1, 40)).unwrap();
    assert_eq!(
        [a, b, c].map(|r| unpack_ref(r).0),
        [1, 2, 3],
        "one file per truncation"
    );
    // File 2 ends at 300: file 3 (ends at 50) must stay too, or the sequence would have a gap.
    assert_eq!(m.truncate(150).unwrap(), 1);
    assert!(!file_path(&p, 1).exists());
    assert!(matches!(m.chunk(a), Err(HeadChunksError::NoFile(_))));
    assert!(m.chunk(b).is_ok() && m.chunk(c).is_ok());
    assert_eq!(m.truncate(1000).unwrap(), 2);
    assert_eq!(m.size(), (0, 0));
    let d = m.write(1, 2000, 2001, &data(1, 0, 10)).unwrap();
    assert_eq!(unpack_ref(d).0, 4);
}

#[test]
fn files_are_cut_at_128_mib() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("chunks_head");
    let (m, _) = open(&p);
    let big = data(1, 7, 8 << 20);
    let mut last = 0;
    for i in 0..17 {
        last = m.write(1, i * 10, i * 10 + 1, &big).unwrap();
    }
    assert_eq!(unpack_ref(last).0, 2);
    assert!(fs::metadata(file_path(&p, 1)).unwrap().len() <= MAX_FILE_SIZE);
    assert_eq!(m.chunk(last).unwrap().len(), big.len());
}

fn arb_chunk() -> impl Strategy<Value = (u64, i64, i64, Vec<u8>)> {
    (
        1u64..20,
        any::<i64>(),
        any::<i64>(),
        proptest::collection::vec(any::<u8>(), 2..400),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunk_codec_round_trips((series, min_t, max_t, d) in arb_chunk()) {
        let rec = ChunkRecord { series, min_t, max_t, encoding: ENCODING_XOR, data: &d };
        let mut out = Vec::new();
        encode_chunk(&mut out, &rec);
        prop_assert_eq!(out.len(), encoded_len(d.len()));
        prop_assert_eq!(decode_chunk(&out), Ok((rec, out.len())));
    }

    #[test]
    fn writer_reader_round_trip(chunks in proptest::collection::vec(arb_chunk(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chunks_head");
        let (m, _) = open(&p);
        let mut refs = Vec::new();
        for (series, min_t, max_t, d) in &chunks {
            refs.push(m.write(*series, *min_t, *max_t, d).unwrap());
        }
        for (r, c) in refs.iter().zip(&chunks) {
            prop_assert_eq!(&*m.chunk(*r).unwrap(), &c.3[..]);
        }
        drop(m);
        // Read back on open: every chunk that follows its series' previous one.
        let (m, loaded) = ChunkDiskMapper::open(&p, false, i64::MIN).unwrap();
        let mut last: HashMap<u64, i64> = HashMap::new();
        let mut want: HashMap<u64, Vec<MappedChunk>> = HashMap::new();
        for (r, (series, min_t, max_t, d)) in refs.iter().zip(&chunks) {
            if last.get(series).is_some_and(|&l| l >= *min_t) {
                break;
            }
            last.insert(*series, *max_t);
            want.entry(*series).or_default().push(MappedChunk {
                chunk_ref: *r,
                min_t: *min_t,
                max_t: *max_t,
                num_samples: u16::from_be_bytes([d[0], d[1]]),
            });
            prop_assert_eq!(&*m.chunk(*r).unwrap(), &d[..]);
        }
        prop_assert_eq!(loaded.chunks, want);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fuzz_head_chunks_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzz_head_chunks(&bytes);
    }

    #[test]
    fn fuzz_head_chunks_on_mutated_files(
        chunks in proptest::collection::vec(arb_chunk(), 1..6),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut file = Vec::new();
        encode_header(&mut file);
        for (series, min_t, max_t, d) in &chunks {
            encode_chunk(&mut file, &ChunkRecord { series: *series, min_t: *min_t, max_t: *max_t, encoding: 1, data: d });
        }
        let mut n = 0;
        prop_assert!(scan_file(&file, |_, _| n += 1).is_ok());
        prop_assert_eq!(n, chunks.len());
        for (i, b) in &flips {
            let at = i.index(file.len());
            file[at] ^= *b;
        }
        let len = cut.index(file.len() + 1);
        fuzz_head_chunks(&file[..len]);
        fuzz_head_chunks(&file);
    }
}
