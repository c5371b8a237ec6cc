//! Issue 6's rule-evaluation cost without the rule manager: evaluates every expression of a rule file
//! with [`Db::query`] over a data directory, as one iteration of all groups would, and reports where
//! the time goes. A reproduction for profilers (`valgrind --tool=callgrind`, `perf record`) of what
//! `bench/rules_compare.py` measures live:
//!
//! ```text
//! python3 bench/rules_compare.py --print-rules > /tmp/rules.yml
//! # a data directory of the simulator's shape: a copy of a run's (`--keep-data`), Prometheus' or ours
//! cargo build --release --example rules_eval
//! target/release/examples/rules_eval --db /tmp/data-copy --rules /tmp/rules.yml [--rounds 3] [--time T]
//! ```
//!
//! Expressions are parsed once, as the rule manager does (`--reparse`: at every evaluation).
//! `--time` (Unix seconds) defaults to the newest sample of the head minus one evaluation interval,
//! so that every `[5m]` window is full. Each round evaluates all rules once, in file order, on this
//! thread (the engine itself may use rayon's pool); the output is the wall and CPU time per round
//! (`/proc/self/stat` utime + stime), then the ten most expensive rule families (the record name)
//! with their share. The database is opened read-only, so a copy of a live directory is enough.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use tsdb::config::rules::{RuleFile, RuleKind};
use tsdb::db::{Db, Options};
use tsdb::promql::{PreparedQuery, QueryOptions, Value};

// The allocator of `tsdbctl`, so that profiles of this reproduction show the server's malloc costs.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Evaluates every rule of a rule file over a data directory, timing each")]
struct Args {
    /// Data directory (opened read-only).
    #[arg(long)]
    db: PathBuf,
    /// Rule file (Prometheus format).
    #[arg(long)]
    rules: PathBuf,
    /// Evaluation time, Unix seconds (default: newest head sample minus 15 s).
    #[arg(long)]
    time: Option<f64>,
    /// Rounds of all rules.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Parse each expression at every evaluation (`Db::query`), as the rule manager did before it
    /// kept its rules' parsed expressions (`PreparedQuery`, the default here).
    #[arg(long)]
    reparse: bool,
}

/// CPU seconds (utime + stime) of this process; CLK_TCK is 100 on Linux.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn run(args: Args) -> Result<(), String> {
    let file = RuleFile::load(&args.rules).map_err(|e| e.to_string())?;
    let rules: Vec<(String, PreparedQuery)> = file
        .groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .filter(|r| matches!(r.kind, RuleKind::Record(_)))
        .map(|r| (r.name().to_string(), PreparedQuery::new(&r.expr)))
        .collect();
    // As `tsdbctl serve` evaluates rules: each query on the calling thread.
    let opts = QueryOptions {
        parallel_min_work: std::env::var("TSDB_PAR_MIN_WORK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX),
        ..QueryOptions::default()
    };
    let opened = Instant::now();
    let db = Db::open(&args.db, Options::default().read_only(true)).map_err(|e| e.to_string())?;
    let (_, maxt) = db
        .head()
        .time_range()
        .ok_or_else(|| format!("{}: the head is empty", args.db.display()))?;
    let t = match args.time {
        Some(s) => (s * 1000.0) as i64,
        None => maxt - 15_000,
    };
    eprintln!(
        "rules_eval: {} recording rules, {} head series, opened in {:.2} s, t = {} ms",
        rules.len(),
        db.head().num_series(),
        opened.elapsed().as_secs_f64(),
        t
    );
    let mut per_family: BTreeMap<&str, f64> = BTreeMap::new();
    let mut total_samples = 0usize;
    for round in 0..args.rounds {
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let mut samples = 0usize;
        for (name, expr) in &rules {
            let t0 = Instant::now();
            let value = if args.reparse {
                db.query(expr.expr(), t)
            } else {
                db.query_prepared(expr, t, &opts).map(|r| r.value)
            };
            match value.map_err(|e| format!("{name}: {}: {e}", expr.expr()))? {
                Value::Vector(v) => samples += v.len(),
                other => return Err(format!("{name}: not a vector: {}", other.type_name())),
            }
            *per_family.entry(name).or_default() += t0.elapsed().as_secs_f64();
        }
        total_samples = samples;
        println!(
            "round {round}: wall {:.3} s, cpu {:.3} s, {samples} samples recorded",
            wall0.elapsed().as_secs_f64(),
            cpu_seconds() - cpu0
        );
    }
    let all: f64 = per_family.values().sum();
    let mut top: Vec<_> = per_family.into_iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "{} samples per round; wall time by family over {} rounds:",
        total_samples, args.rounds
    );
    for (name, s) in top.iter().take(10) {
        println!("  {:5.1}%  {:8.3} s  {name}", 100.0 * s / all, s);
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("rules_eval: {e}");
        std::process::exit(1);
    }
}
