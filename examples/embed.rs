//! Embedding the database in a Rust program: open a directory, append from several threads in
//! transactions, query it back.
//!
//! Run: `cargo run --release --example embed -- /tmp/embed-data`

use std::sync::Arc;
use tsdb::labels::{parse_selector, Labels, Matcher};
use tsdb::{Db, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./embed-data".into());
    let db = Arc::new(Db::open(&dir, Options::default())?);
    for w in &db.open_report().warnings {
        eprintln!("warning: {w}");
    }
    let start = db
        .head()
        .time_range()
        .map_or(1_700_000_000_000, |(_, max)| max + 15_000);

    // Four threads, each scraping "its" target every 15 s for an hour, one transaction per scrape.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || -> Result<u64, tsdb::DbError> {
                let instance = format!("localhost:800{}", i + 1);
                let calls = Labels::from_pairs(&[
                    ("__name__", "function_calls_total"),
                    ("instance", &instance),
                    ("job", "prometheus_demo"),
                ]);
                let mut appended = 0;
                for step in 0..240i64 {
                    let mut app = db.appender();
                    let t = start + step * 15_000;
                    app.append(&calls, t, (step * (i + 1)) as f64)
                        .map_err(|e| tsdb::DbError::Poisoned(e.to_string()))?;
                    appended += app.commit()?.appended;
                }
                Ok(appended)
            })
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| "writer thread panicked")??;
    }
    println!(
        "appended {total} samples in {} series",
        db.head().num_series()
    );

    let q = db.querier(start, start + 3_600_000);
    println!("instances: {:?}", q.label_values("instance"));
    let matchers: Vec<Matcher> =
        parse_selector(r#"function_calls_total{instance=~"localhost:800[12]"}"#)?;
    for s in q.select(&matchers)? {
        let samples: Vec<(i64, f64)> = s.samples().collect();
        let (t, v) = samples.last().copied().unwrap_or_default();
        println!("{}: {} samples, last {v} at {t}", s.labels(), samples.len());
    }
    Ok(())
}
