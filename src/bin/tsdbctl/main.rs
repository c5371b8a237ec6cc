//! `tsdbctl`: the command-line shell over the `tsdb` library. Subcommands parse arguments, call the
//! library, and format output; no storage or query logic lives here.

mod plot;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tsdb::api;
use tsdb::exposition::Format;
use tsdb::ingest::{IngestOptions, Ingester};
use tsdb::promql::{QueryOptions, QueryResult, Value};
use tsdb::wal::Compression;
use tsdb::{Db, Options};

#[derive(Parser)]
#[command(
    name = "tsdbctl",
    version,
    about = "An embedded Prometheus-compatible time-series database"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load Prometheus text exposition (0.0.4 or OpenMetrics) into the database. Each document (a
    /// file, stdin, or an OpenMetrics block closed by `# EOF`) is one transaction.
    Ingest {
        /// Data directory.
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Timestamp for samples without one: milliseconds since the epoch, or `now`.
        #[arg(long, default_value = "now")]
        timestamp: String,
        /// Continue with the next documents after an invalid one.
        #[arg(long)]
        keep_going: bool,
        /// Compression of the WAL records this run writes (Prometheus reads all three; snappy
        /// is Prometheus' default, none is fastest).
        #[arg(long, value_enum, default_value_t = WalCompression::None)]
        wal_compression: WalCompression,
        /// Input files; `-` (or none) reads standard input.
        files: Vec<String>,
    },
    /// Evaluate a PromQL expression at one time (`--time`) or over a range (`--start --end --step`).
    Query {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        /// Evaluation time: Unix seconds or RFC 3339 (default: now).
        #[arg(long, conflicts_with_all = ["start", "end", "step"])]
        time: Option<String>,
        #[arg(long, requires_all = ["end", "step"])]
        start: Option<String>,
        #[arg(long, requires_all = ["start", "step"])]
        end: Option<String>,
        /// Resolution: a duration (`15s`, `1m`) or seconds.
        #[arg(long, requires_all = ["start", "end"])]
        step: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Draw the range query as a chart in the terminal instead of printing it.
        #[arg(long, conflicts_with = "output")]
        plot: bool,
        /// Chart width in columns (default: `COLUMNS`, else 100).
        #[arg(long)]
        plot_width: Option<usize>,
        /// Chart height in rows.
        #[arg(long, default_value_t = plot::DEFAULT_HEIGHT)]
        plot_height: usize,
        /// Evaluate the query N more times in this process and print `{"median_s": S}` as the last
        /// line of stderr (query latency without the cost of opening the database).
        #[arg(long, default_value_t = 0)]
        repeat: usize,
        /// PromQL expression, e.g. `sum by (module) (rate(function_calls_total[1m]))`.
        expr: String,
    },
    /// List the blocks and the head (time range, series, samples, chunks, size, bytes/sample) and the
    /// highest-cardinality labels and metric names, like `promtool tsdb analyze`.
    Inspect {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        /// How many labels and metric names to list.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Compact the head: every range of it older than 1.5 block ranges becomes a block; then apply
    /// retention.
    Compact {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
    },
    /// Open the database (replaying its WAL) and report what is in it, how long the replay took and
    /// the memory it used.
    Stats {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Prometheus,
    Openmetrics,
}

#[derive(Clone, Copy, ValueEnum)]
enum WalCompression {
    None,
    Snappy,
    Zstd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Ingest {
            db,
            format,
            timestamp,
            keep_going,
            wal_compression,
            files,
        } => ingest(db, format, &timestamp, keep_going, wal_compression, files),
        Cmd::Query {
            db,
            time,
            start,
            end,
            step,
            output,
            plot,
            plot_width,
            plot_height,
            repeat,
            expr,
        } => {
            let plot = plot.then_some(PlotSize {
                width: plot_width,
                height: plot_height,
            });
            query(
                db,
                time,
                start.zip(end).zip(step),
                output,
                plot,
                repeat,
                &expr,
            )
        }
        Cmd::Stats { db, output } => stats(db, output),
        Cmd::Inspect { db, limit } => inspect(db, limit),
        Cmd::Compact { db } => compact(db),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tsdbctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(dir: &PathBuf, opts: Options) -> Result<Db, String> {
    let db = Db::open(dir, opts).map_err(|e| e.to_string())?;
    for w in &db.open_report().warnings {
        eprintln!("tsdbctl: warning: {w}");
    }
    Ok(db)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ingest(
    dir: PathBuf,
    format: FormatArg,
    timestamp: &str,
    keep_going: bool,
    wal_compression: WalCompression,
    mut files: Vec<String>,
) -> Result<ExitCode, String> {
    let ts = if timestamp == "now" {
        now_ms()
    } else {
        timestamp.parse::<i64>().map_err(|_| {
            format!("--timestamp: expected milliseconds or `now`, got {timestamp:?}")
        })?
    };
    if files.is_empty() {
        files.push("-".into());
    }
    let compression = match wal_compression {
        WalCompression::None => Compression::None,
        WalCompression::Snappy => Compression::Snappy,
        WalCompression::Zstd => Compression::Zstd,
    };
    let db = open(&dir, Options::default().wal_compression(compression))?;
    let mut opts = IngestOptions::new(ts);
    opts.format = match format {
        FormatArg::Auto => None,
        FormatArg::Prometheus => Some(Format::Prometheus),
        FormatArg::Openmetrics => Some(Format::OpenMetrics),
    };
    let ingester = Ingester::new(&db, opts);
    let started = Instant::now();
    let total_bytes: u64 = files
        .iter()
        .filter(|f| *f != "-")
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if std::io::stderr().is_terminal() && total_bytes > 0 {
        let b = indicatif::ProgressBar::new(total_bytes);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let progress = |n: u64| {
        if let Some(b) = &bar {
            b.inc(n);
        }
    };
    let (mut docs, mut failed, mut new_series, mut appended, mut no_ops) = (0u64, 0u64, 0, 0, 0);
    let (mut ooo, mut dup, mut oob) = (0u64, 0u64, 0u64);
    let mut stop = false;
    for f in &files {
        if stop {
            break;
        }
        let results = if f == "-" {
            let stdin = std::io::stdin();
            ingester.ingest("<stdin>", stdin, keep_going, &progress)
        } else {
            match std::fs::File::open(f) {
                Ok(file) => ingester.ingest(f, file, keep_going, &progress),
                Err(e) => {
                    if let Some(b) = &bar {
                        b.suspend(|| eprintln!("tsdbctl: error: {f}: {e}"));
                    } else {
                        eprintln!("tsdbctl: error: {f}: {e}");
                    }
                    failed += 1;
                    stop = !keep_going;
                    continue;
                }
            }
        };
        for r in results {
            docs += 1;
            match r {
                Ok(s) => {
                    new_series += s.new_series;
                    appended += s.commit.appended;
                    no_ops += s.commit.no_ops;
                    ooo += s.commit.rejected.out_of_order;
                    dup += s.commit.rejected.duplicate;
                    oob += s.commit.rejected.out_of_bounds;
                }
                Err(e) => {
                    failed += 1;
                    let msg =
                        format!("tsdbctl: error: {e} (document rejected, nothing of it stored)");
                    match &bar {
                        Some(b) => b.suspend(|| eprintln!("{msg}")),
                        None => eprintln!("{msg}"),
                    }
                    if !keep_going {
                        stop = true;
                    }
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Data older than 1.5 block ranges behind the newest sample goes into blocks now.
    match db.compact_head() {
        Ok(blocks) if !blocks.is_empty() => eprintln!("blocks written: {}", blocks.len()),
        Ok(_) => {}
        Err(e) => {
            eprintln!("tsdbctl: error: compaction: {e}");
            failed += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "documents: {} ({} stored, {} rejected); new series: {}; samples appended: {}; \
         samples rejected: {} (out of order: {}, duplicate timestamp: {}, older than the head: {}); \
         identical duplicates ignored: {}; \
         {:.3} s; {:.0} samples/s",
        docs,
        docs.saturating_sub(failed),
        failed,
        new_series,
        appended,
        ooo + dup + oob,
        ooo,
        dup,
        oob,
        no_ops,
        secs,
        appended as f64 / secs.max(1e-9)
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

type Range = ((String, String), String);

/// `--plot` with its `--plot-width` and `--plot-height`.
struct PlotSize {
    width: Option<usize>,
    height: usize,
}

fn query(
    dir: PathBuf,
    time: Option<String>,
    range: Option<Range>,
    output: Output,
    plot: Option<PlotSize>,
    repeat: usize,
    expr: &str,
) -> Result<ExitCode, String> {
    if plot.is_some() && range.is_none() {
        return Err(
            "--plot draws a range query: give --start, --end and --step (not --time)".into(),
        );
    }
    if !dir.join("wal").exists() {
        return Err(format!(
            "{}: no database here (no wal/ directory)",
            dir.display()
        ));
    }
    let db = open(&dir, Options::default().read_only(true))?;
    let opts = QueryOptions::default();
    let range_ms = match &range {
        Some(((start, end), step)) => Some((
            api::parse_time(start).map_err(|e| e.to_string())?,
            api::parse_time(end).map_err(|e| e.to_string())?,
            api::parse_duration(step).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let eval = || -> Result<QueryResult, String> {
        match range_ms {
            Some((s, e, st)) => {
                api::query_range_annotated(&db, expr, s, e, st, &opts).map_err(|e| e.to_string())
            }
            None => {
                let t = match &time {
                    Some(t) => api::parse_time(t).map_err(|e| e.to_string())?,
                    None => now_ms(),
                };
                api::query_annotated(&db, expr, t, &opts).map_err(|e| e.to_string())
            }
        }
    };
    let QueryResult {
        value: result,
        annotations,
    } = eval()?;
    if output != Output::Json || plot.is_some() {
        // The JSON body carries them; elsewhere they go to stderr, apart from the data.
        for a in annotations.warnings.iter().chain(&annotations.infos) {
            eprintln!("tsdbctl: {a}");
        }
    }
    match (&plot, range_ms, &result) {
        (Some(size), Some((s, e, st)), Value::Matrix(m)) => {
            let opts = plot::PlotOptions {
                width: size.width.unwrap_or_else(terminal_width),
                height: size.height,
                color: std::io::stdout().is_terminal(),
                max_legend: plot::DEFAULT_MAX_LEGEND,
            };
            print!("{}", plot::render(m, s, e, st, &opts));
        }
        (Some(_), _, v) => {
            return Err(format!(
                "--plot draws a range query's matrix, not a {}",
                v.type_name()
            ))
        }
        (None, ..) => match output {
            Output::Json => println!("{}", api::response_json(&result, &annotations)),
            Output::Table | Output::Csv => print_rows(&result, output == Output::Csv),
        },
    }
    if repeat > 0 {
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t0 = Instant::now();
            let r = eval()?;
            times.push(t0.elapsed().as_secs_f64());
            drop(r);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        eprintln!("{{\"median_s\": {}}}", times[times.len() / 2]);
    }
    Ok(ExitCode::SUCCESS)
}

/// The terminal's width for `--plot`: `COLUMNS` (set by shells), else the default.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&w: &usize| w > 0)
        .unwrap_or(plot::DEFAULT_WIDTH)
}

/// One line per point: series, value, time (tab-separated, or CSV with a header).
fn print_rows(result: &Value, csv: bool) {
    let sep = if csv { "," } else { "\t" };
    let quote = |s: String| {
        if csv {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    if csv {
        println!("series{sep}value{sep}time");
    }
    match result {
        Value::String { t, s } => println!(
            "{}{sep}{}{sep}{}",
            quote("string".into()),
            quote(s.clone()),
            api::format_time(*t)
        ),
        Value::Scalar { t, v } => println!(
            "{}{sep}{}{sep}{}",
            quote("scalar".into()),
            api::format_value(*v),
            api::format_time(*t)
        ),
        _ => {
            for s in api::result_series(result) {
                let name = quote(s.labels.to_string());
                for &(t, v) in &s.points {
                    println!(
                        "{name}{sep}{}{sep}{}",
                        api::format_value(v),
                        api::format_time(t)
                    );
                }
            }
        }
    }
}

/// Resident memory now and at its peak (bytes), from /proc/self/status.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn stats(dir: PathBuf, output: Output) -> Result<ExitCode, String> {
    if !dir.join("wal").exists() {
        return Err(format!(
            "{}: no database here (no wal/ directory)",
            dir.display()
        ));
    }
    let (rss_before, _) = memory();
    let db = open(&dir, Options::default().read_only(true))?;
    let (rss, peak) = memory();
    let r = db.open_report();
    let m = db.head().memory_stats();
    let range = db.head().time_range();
    let per_series = if m.series > 0 {
        (rss.saturating_sub(rss_before) as f64 - m.chunk_bytes as f64) / m.series as f64
    } else {
        0.0
    };
    let fields: Vec<(&str, String)> = vec![
        ("series", m.series.to_string()),
        ("samples", m.samples.to_string()),
        ("chunk_bytes", m.chunk_bytes.to_string()),
        (
            "min_time_ms",
            range.map_or("null".into(), |r| r.0.to_string()),
        ),
        (
            "max_time_ms",
            range.map_or("null".into(), |r| r.1.to_string()),
        ),
        ("replayed_samples", r.replayed_samples.to_string()),
        ("replay_seconds", format!("{:.3}", r.replay_seconds)),
        (
            "replay_samples_per_second",
            format!(
                "{:.0}",
                r.replayed_samples as f64 / r.replay_seconds.max(1e-9)
            ),
        ),
        ("rss_before_open_bytes", rss_before.to_string()),
        ("rss_after_open_bytes", rss.to_string()),
        ("peak_rss_bytes", peak.to_string()),
        ("head_rss_bytes", rss.saturating_sub(rss_before).to_string()),
        (
            "rss_per_series_beyond_chunks_bytes",
            format!("{per_series:.0}"),
        ),
    ];
    match output {
        Output::Table => {
            for (k, v) in &fields {
                println!("{k:<36} {v}");
            }
        }
        Output::Csv => {
            for (k, v) in &fields {
                println!("{k},{v}");
            }
        }
        Output::Json => {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            println!("{{{}}}", body.join(","));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn require_db(dir: &std::path::Path) -> Result<(), String> {
    if dir.join("wal").exists() {
        Ok(())
    } else {
        Err(format!(
            "{}: no database here (no wal/ directory)",
            dir.display()
        ))
    }
}

fn time_str(ms: i64) -> String {
    api::format_rfc3339(ms)
}

fn inspect(dir: PathBuf, limit: usize) -> Result<ExitCode, String> {
    require_db(&dir)?;
    let db = open(&dir, Options::default().read_only(true))?;
    println!(
        "{:<26}  {:<24}  {:<24}  {:>9}  {:>11}  {:>9}  {:>12}  {:>8}",
        "BLOCK", "MIN TIME", "MAX TIME", "SERIES", "SAMPLES", "CHUNKS", "BYTES", "B/SAMPLE"
    );
    for b in db.blocks() {
        let m = b.meta();
        let bytes = dir_size(b.dir());
        println!(
            "{:<26}  {:<24}  {:<24}  {:>9}  {:>11}  {:>9}  {:>12}  {:>8.3}",
            m.ulid.to_string(),
            time_str(m.min_time),
            time_str(m.max_time),
            m.stats.num_series,
            m.stats.num_samples,
            m.stats.num_chunks,
            bytes,
            bytes as f64 / (m.stats.num_samples.max(1)) as f64
        );
    }
    let h = db.head().memory_stats();
    let range = db.head().time_range();
    let wal_bytes = dir_size(&dir.join("wal"));
    println!(
        "{:<26}  {:<24}  {:<24}  {:>9}  {:>11}  {:>9}  {:>12}  {:>8.3}",
        "head (WAL)",
        range.map_or("-".into(), |r| time_str(r.0)),
        range.map_or("-".into(), |r| time_str(r.1)),
        h.series,
        h.samples,
        "-",
        wal_bytes,
        wal_bytes as f64 / (h.samples.max(1)) as f64
    );
    let q = db.querier(i64::MIN, i64::MAX);
    let mut labels: Vec<(usize, String)> = q
        .label_names()
        .into_iter()
        .map(|n| (q.label_values(&n).len(), n))
        .collect();
    labels.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    println!("\nHighest cardinality labels:");
    for (n, name) in labels.iter().take(limit) {
        println!("{n:>9}  {name}");
    }
    let mut names: Vec<(usize, String)> = Vec::new();
    for name in q.label_values("__name__") {
        let m = tsdb::labels::Matcher::equal("__name__", name.as_str());
        let n = q.select(&[m]).map_err(|e| e.to_string())?.len();
        names.push((n, name));
    }
    names.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    println!("\nHighest cardinality metric names:");
    for (n, name) in names.iter().take(limit) {
        println!("{n:>9}  {name}");
    }
    Ok(ExitCode::SUCCESS)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn compact(dir: PathBuf) -> Result<ExitCode, String> {
    require_db(&dir)?;
    let db = open(&dir, Options::default().background_compaction(false))?;
    let written = db.compact_head().map_err(|e| e.to_string())?;
    for u in &written {
        eprintln!("block written: {u}");
    }
    eprintln!(
        "blocks written: {}; blocks now: {}",
        written.len(),
        db.blocks().len()
    );
    Ok(ExitCode::SUCCESS)
}
