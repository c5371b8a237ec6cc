//! Times resolving a selector across the blocks of a data directory (issue 3's figure "time to
//! resolve a selector matching 1% of 100k series across blocks"):
//!
//! ```text
//! cargo run --release --example select_figure -- DIR 'SELECTOR' [RUNS]
//! ```
//!
//! Prints the median of RUNS (default 21) for: the postings alone (series references per block),
//! and a querier `select` (labels and chunk references of every matching series, merged across
//! blocks), plus how many series matched.

use std::time::Instant;
use tsdb::labels::parse_selector;
use tsdb::{Db, Options};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: select_figure DIR SELECTOR [RUNS]");
        std::process::exit(2);
    }
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(21);
    let matchers = parse_selector(&args[1]).unwrap_or_else(|e| panic!("{e}"));
    let db =
        Db::open(&args[0], Options::default().read_only(true)).unwrap_or_else(|e| panic!("{e}"));
    let blocks = db.blocks();
    let mut postings = Vec::new();
    let mut refs = 0;
    for _ in 0..runs {
        let t = Instant::now();
        refs = 0;
        for b in &blocks {
            refs += b
                .series_refs(&matchers)
                .unwrap_or_else(|e| panic!("{e}"))
                .len();
        }
        postings.push(t.elapsed().as_secs_f64());
    }
    let mut select = Vec::new();
    let mut series = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let q = db.querier(i64::MIN, i64::MAX);
        series = q.select(&matchers).unwrap_or_else(|e| panic!("{e}")).len();
        select.push(t.elapsed().as_secs_f64());
    }
    let total: u64 = blocks.iter().map(|b| b.meta().stats.num_series).sum();
    println!(
        "blocks={} series_in_blocks={total} matched_series={series} matched_refs={refs} \
         postings_median_ms={:.3} select_median_ms={:.3}",
        blocks.len(),
        median(postings) * 1e3,
        median(select) * 1e3
    );
}
