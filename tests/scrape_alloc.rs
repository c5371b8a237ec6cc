//! The scrape hot path allocates nothing per sample for known series: a repeated scrape of N
//! series costs the same allocations as appending N samples by id directly (the database's own
//! transaction), plus a constant. Counted with a counting global allocator.
#![cfg(feature = "server")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tsdb::labels::Labels;
use tsdb::server::scrape::append::{AppendSpec, ScrapeState};
use tsdb::server::scrape::metrics::Metrics;
use tsdb::{Db, Options};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn body(n: usize, v: u64) -> String {
    let mut s = String::from("# HELP m A metric.\n# TYPE m gauge\n");
    for i in 0..n {
        s.push_str(&format!("m{{path=\"/api/v{i}\",code=\"200\"}} {v}\n"));
    }
    s
}

#[test]
fn repeated_scrape_allocates_nothing_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let spec = AppendSpec {
        target_labels: Labels::from_pairs(&[("instance", "h:1"), ("job", "j")]),
        honor_labels: false,
        honor_timestamps: true,
        metric_rules: Default::default(),
        sample_limit: 0,
        label_limit: 0,
        label_name_length_limit: 0,
        label_value_length_limit: 0,
    };
    let m = Metrics::unregistered();
    let mut st = ScrapeState::default();
    let n = 2000;
    let mut t = 1_000_000;
    for k in 0..3 {
        let b = body(n, k);
        st.scrape_and_report(&db, &spec, &m, Ok(("", b.as_bytes())), t, t, &|| 0.1);
        t += 1000;
    }
    let b = body(n, 7);
    let before = ALLOCS.load(Ordering::Relaxed);
    let started = Instant::now();
    let r = st.scrape_and_report(&db, &spec, &m, Ok(("", b.as_bytes())), t, t, &|| 0.1);
    let scrape_time = started.elapsed();
    let scrape_allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(r.error, None);
    assert_eq!(r.appended.added, n as u64);
    t += 1000;
    // Baseline: the same samples appended by id in one transaction, without any scraping.
    let ids: Vec<u64> = {
        let q = db.querier(0, i64::MAX);
        let mt =
            tsdb::labels::Matcher::new(tsdb::labels::MatchType::Regexp, "__name__", ".+").unwrap();
        let mut v: Vec<(Labels, u64)> = q
            .select(&[mt])
            .unwrap()
            .into_iter()
            .map(|s| (s.labels().clone(), db.head().lookup(s.labels()).unwrap().id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect()
    };
    let before = ALLOCS.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut app = db.appender();
    for &id in &ids {
        app.append_id(id, t, 8.0).unwrap();
    }
    app.commit().unwrap();
    let base_allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let base_time = started.elapsed();
    eprintln!(
        "scrape of {n} known series: {scrape_allocs} allocations ({:.3}/sample), {:?}; \
         plain append_id + commit of {} samples: {base_allocs} allocations, {base_time:?}",
        scrape_allocs as f64 / n as f64,
        scrape_time,
        ids.len()
    );
    // The scrape layer adds a constant (buffers, the report), nothing per sample.
    assert!(
        scrape_allocs <= base_allocs + 64,
        "scrape {scrape_allocs} vs append_id {base_allocs}"
    );
}
