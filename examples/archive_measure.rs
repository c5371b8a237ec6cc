//! Measures archive blocks (issue 3, point 10): cuts the head of a data directory (opened
//! read-only, so its WAL is untouched) into compatible blocks of every block range it covers, then
//! archives and unarchives each and reports bytes per sample (whole block directories) and times.
//!
//! `cargo run --release --example archive_measure -- DB OUT [LEVEL]`

use std::path::Path;
use std::time::Instant;
use tsdb::block::{archive, Block};
use tsdb::{Db, Options};

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (db_dir, out) = (Path::new(&args[1]), Path::new(&args[2]));
    let level = args
        .get(3)
        .map_or(archive::DEFAULT_LEVEL, |l| l.parse().unwrap());
    let (compat, arch, unarch) = (
        out.join("compat"),
        out.join("archive"),
        out.join("unarchive"),
    );
    for d in [&compat, &arch, &unarch] {
        std::fs::create_dir_all(d).unwrap();
    }
    if std::fs::read_dir(&compat).unwrap().next().is_none() {
        let db = Db::open(db_dir, Options::default().read_only(true)).unwrap();
        let (lo, hi) = db.head().time_range().unwrap();
        let range = db.options().block_range_ms;
        let mut t = lo.div_euclid(range) * range;
        while t <= hi {
            tsdb::compact::write_head_block(&compat, db.head(), t, t + range).unwrap();
            t += range;
        }
    }
    let (mut samples, mut csize, mut asize, mut usize_) = (0u64, 0u64, 0u64, 0u64);
    let (mut at, mut ut, mut ot) = (0f64, 0f64, 0f64);
    for e in std::fs::read_dir(&compat).unwrap() {
        let src = e.unwrap().path();
        let b = Block::open(&src).unwrap();
        samples += b.meta().stats.num_samples;
        csize += dir_size(&src);
        let t0 = Instant::now();
        let a = archive::archive_block(&src, &arch, level).unwrap();
        at += t0.elapsed().as_secs_f64();
        let adir = arch.join(a.to_string());
        asize += dir_size(&adir);
        let t0 = Instant::now();
        let ab = Block::open(&adir).unwrap();
        ot += t0.elapsed().as_secs_f64();
        assert_eq!(ab.meta().stats, b.meta().stats);
        let t0 = Instant::now();
        let u = archive::unarchive_block(&adir, &unarch).unwrap();
        ut += t0.elapsed().as_secs_f64();
        let udir = unarch.join(u.to_string());
        usize_ += dir_size(&udir);
        for f in ["index", "chunks/000001"] {
            let same = std::fs::read(src.join(f)).unwrap() == std::fs::read(udir.join(f)).unwrap();
            println!("{}: unarchived {f} byte-identical: {same}", src.display());
        }
    }
    let bps = |n: u64| n as f64 / samples as f64;
    println!("samples {samples}");
    println!("compatible {csize} bytes, {:.3} bytes/sample", bps(csize));
    println!(
        "archive (zstd {level}) {asize} bytes, {:.3} bytes/sample",
        bps(asize)
    );
    println!("unarchived {usize_} bytes, {:.3} bytes/sample", bps(usize_));
    println!("archive {at:.2} s, open archive {ot:.2} s, unarchive {ut:.2} s");
}
