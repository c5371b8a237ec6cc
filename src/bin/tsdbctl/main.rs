//! `tsdbctl`: the command-line shell over the `tsdb` library. Subcommands parse arguments, call the
//! library, and format output; no storage or query logic lives here.

/// `println!` for command output: a closed pipe (`tsdbctl inspect | head`) ends the process
/// quietly instead of panicking, and any other write error is reported.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(format_args!($($arg)*))
    };
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod archive;
#[cfg(feature = "server")]
mod check;
mod plot;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
mod test;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tsdb::api;
use tsdb::db::dir_size;
use tsdb::exposition::Format;
use tsdb::ingest::{IngestOptions, Ingester};
use tsdb::promql::{QueryOptions, QueryResult, Value};
use tsdb::wal::Compression;
use tsdb::{Db, Options};

/// Retention flags, with Prometheus' names and defaults.
#[derive(clap::Args)]
struct Retention {
    /// Delete blocks whose data ends more than this before the newest data (0 keeps all).
    #[arg(long = "retention.time", default_value = "15d", value_parser = parse_duration_ms)]
    retention_time: i64,
    /// Delete the oldest blocks while blocks, WAL and head chunks take more than this (e.g.
    /// `512MB`, `10GB`; 0 = no limit).
    #[arg(long = "retention.size", default_value = "0B", value_parser = parse_size)]
    retention_size: u64,
}

impl Retention {
    fn apply(&self, opts: Options) -> Options {
        opts.retention_ms(self.retention_time)
            .retention_bytes(self.retention_size)
    }
}

fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    api::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    api::parse_size(s).map_err(|e| e.to_string())
}

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
    /// Run as a server: scrape the targets of a prometheus.yml, store the samples, answer the
    /// Prometheus HTTP API, remote-write in and out. Stops gracefully on SIGTERM/SIGINT; SIGHUP or
    /// `POST /-/reload` re-reads the configuration.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Load Prometheus text exposition (0.0.4 or OpenMetrics) into the database. Each document (a
    /// file, stdin, or an OpenMetrics block closed by `# EOF`) is one transaction.
    ///
    /// Samples older than the head (their time range is in blocks already) are backfilled: written
    /// into new blocks, as `promtool tsdb create-blocks-from` does, which compaction then merges
    /// with the blocks they overlap. A document's backfill blocks are published right after its
    /// other samples commit; a document that fails leaves none of them (a crash in between keeps
    /// the other samples only).
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
        /// Reject samples older than the head (counted as "older than the head") instead of
        /// backfilling them into blocks.
        #[arg(long)]
        no_backfill: bool,
        /// Memory budget of the backfill, in MiB: once its buffered samples exceed it, the time
        /// ranges the input has passed are written as blocks (memory stays below twice this).
        #[arg(long, default_value_t = 64, value_name = "MIB")]
        backfill_buffer: usize,
        /// Accept samples older than their series' newest when within this of the head's newest
        /// sample (Prometheus' `out_of_order_time_window`, e.g. `30m`); 0 (default) rejects them.
        #[arg(long, default_value = "0s", value_name = "DURATION")]
        out_of_order_window: String,
        /// Compression of the WAL records this run writes (Prometheus reads all three; snappy
        /// is Prometheus' default, none is fastest).
        #[arg(long, value_enum, default_value_t = WalCompression::None)]
        wal_compression: WalCompression,
        #[command(flatten)]
        retention: Retention,
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
    /// Compact as Prometheus does: every range of the head older than 1.5 block ranges becomes a
    /// block, overlapping blocks are merged, blocks filling a larger range (6h, 18h, ...) are merged;
    /// then retention applies. (`tsdbctl ingest` and an open database do this in the background.)
    Compact {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        /// First write the whole head into blocks, however recent (like a Prometheus snapshot
        /// with its head); later samples in those ranges are then backfilled into blocks.
        #[arg(long)]
        flush_head: bool,
        #[command(flatten)]
        retention: Retention,
    },
    /// Rewrite the blocks that have deletions (tombstones) without the deleted data.
    CleanTombstones {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
    },
    /// Replace blocks by archive blocks: much smaller, but Prometheus cannot read them (an
    /// extension, off by default; `unarchive` converts back).
    Archive(archive::ArchiveArgs),
    /// Turn archive blocks back into Prometheus-compatible blocks.
    Unarchive(archive::UnarchiveArgs),
    /// Validate files without starting anything (`check config prometheus.yml`, as promtool).
    #[cfg(feature = "server")]
    Check(check::CheckArgs),
    /// Run tests (`test rules TEST.yml...`: rule unit tests, as promtool).
    #[cfg(feature = "server")]
    Test(test::TestArgs),
    /// Open the database (replaying its WAL) and report what is in it, how long the replay took and
    /// the memory it used.
    Stats {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Delete the samples of the selected series in a time range (Prometheus' admin
    /// `delete_series`): blocks get tombstones, the head logs the deletion to its WAL. Compaction
    /// drops the samples for good.
    Delete {
        #[arg(long, default_value = "./data")]
        db: PathBuf,
        /// Series selector, e.g. `up{job="api"}`; repeat to delete several (each on its own).
        #[arg(long = "match", required = true)]
        matches: Vec<String>,
        /// Start of the range, inclusive: Unix seconds or RFC 3339 (default: the beginning of time).
        #[arg(long)]
        start: Option<String>,
        /// End of the range, inclusive: Unix seconds or RFC 3339 (default: the end of time).
        #[arg(long)]
        end: Option<String>,
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
            no_backfill,
            backfill_buffer,
            out_of_order_window,
            wal_compression,
            retention,
            files,
        } => ingest(
            db,
            format,
            &timestamp,
            IngestFlags {
                keep_going,
                backfill: !no_backfill,
                backfill_buffer_bytes: backfill_buffer.saturating_mul(1 << 20),
                out_of_order_window,
            },
            wal_compression,
            &retention,
            files,
        ),
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
        #[cfg(feature = "server")]
        Cmd::Serve(a) => serve::serve(a),
        Cmd::Stats { db, output } => stats(db, output),
        Cmd::Inspect { db, limit } => inspect(db, limit),
        Cmd::Compact {
            db,
            flush_head,
            retention,
        } => compact(db, flush_head, &retention),
        Cmd::CleanTombstones { db } => clean_tombstones(db),
        Cmd::Archive(a) => archive::archive(a),
        Cmd::Unarchive(a) => archive::unarchive(a),
        #[cfg(feature = "server")]
        Cmd::Check(a) => check::check(a),
        #[cfg(feature = "server")]
        Cmd::Test(a) => test::test(a),
        Cmd::Delete {
            db,
            matches,
            start,
            end,
        } => delete(db, &matches, start.as_deref(), end.as_deref()),
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

/// `tsdbctl ingest` switches.
struct IngestFlags {
    keep_going: bool,
    backfill: bool,
    backfill_buffer_bytes: usize,
    /// `--out-of-order-window`, unparsed.
    out_of_order_window: String,
}

fn ingest(
    dir: PathBuf,
    format: FormatArg,
    timestamp: &str,
    flags: IngestFlags,
    wal_compression: WalCompression,
    retention: &Retention,
    mut files: Vec<String>,
) -> Result<ExitCode, String> {
    let IngestFlags {
        keep_going,
        backfill,
        backfill_buffer_bytes,
        out_of_order_window,
    } = flags;
    let window_ms = tsdb::api::parse_duration(&out_of_order_window)
        .map_err(|e| format!("--out-of-order-window: {e}"))?;
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
    let db = open(
        &dir,
        retention.apply(
            Options::default()
                .wal_compression(compression)
                .out_of_order_window_ms(window_ms),
        ),
    )?;
    let mut opts = IngestOptions::new(ts);
    opts.backfill = backfill;
    opts.backfill_buffer_bytes = backfill_buffer_bytes;
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
    let mut ooo_accepted = 0u64;
    let mut backfilled = tsdb::backfill::BackfillStats::default();
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
                    ooo_accepted += s.commit.out_of_order;
                    ooo += s.commit.rejected.out_of_order;
                    dup += s.commit.rejected.duplicate;
                    oob += s.commit.rejected.out_of_bounds;
                    backfilled.merge(&s.backfill);
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
    // Data older than 1.5 block ranges behind the newest sample goes into blocks now (the
    // background compaction may have done part of it already), and blocks are merged.
    match db.compact(&mut |_| {}) {
        Ok(r) => {
            let st = db.compaction_status();
            let written = r.head_blocks.len() as u64 + st.blocks_written;
            if written > 0 {
                eprintln!("blocks written: {written}");
            }
        }
        Err(e) => {
            eprintln!("tsdbctl: error: compaction: {e}");
            failed += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "documents: {} ({} stored, {} rejected); new series: {}; samples appended: {}; \
         out-of-order samples accepted (within the window): {}; samples rejected: {} (out of order: {}, duplicate timestamp: {}, older than the head: {}); \
         identical duplicates ignored: {}; \
         samples backfilled: {} into {} blocks ({} duplicate timestamps dropped); \
         {:.3} s; {:.0} samples/s",
        docs,
        docs.saturating_sub(failed),
        failed,
        new_series,
        appended,
        ooo_accepted,
        ooo + dup + oob,
        ooo,
        dup,
        oob,
        no_ops,
        backfilled.samples,
        backfilled.blocks,
        backfilled.duplicates,
        secs,
        (appended + backfilled.samples) as f64 / secs.max(1e-9)
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
            out!("{}", plot::render(m, s, e, st, &opts));
        }
        (Some(_), _, v) => {
            return Err(format!(
                "--plot draws a range query's matrix, not a {}",
                v.type_name()
            ))
        }
        (None, ..) => match output {
            Output::Json => outln!("{}", api::response_json(&result, &annotations)),
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
        outln!("series{sep}value{sep}time");
    }
    match result {
        Value::String { t, s } => outln!(
            "{}{sep}{}{sep}{}",
            quote("string".into()),
            quote(s.clone()),
            api::format_time(*t)
        ),
        Value::Scalar { t, v } => outln!(
            "{}{sep}{}{sep}{}",
            quote("scalar".into()),
            api::format_value(*v),
            api::format_time(*t)
        ),
        _ => {
            for s in api::result_series(result) {
                let name = quote(s.labels.to_string());
                for &(t, v) in &s.points {
                    outln!(
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
                outln!("{k:<36} {v}");
            }
        }
        Output::Csv => {
            for (k, v) in &fields {
                outln!("{k},{v}");
            }
        }
        Output::Json => {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            outln!("{{{}}}", body.join(","));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A data directory has a WAL or at least one block (a directory `promtool tsdb
/// create-blocks-from` wrote has only blocks); anything else is probably a wrong `--db`.
fn require_db(dir: &std::path::Path) -> Result<(), String> {
    let has_block = || {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.path().join("meta.json").exists())
        })
    };
    if dir.join("wal").exists() || has_block() {
        Ok(())
    } else {
        Err(format!(
            "{}: no database here (no wal/ directory and no block)",
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
    outln!(
        "{:<26}  {:<24}  {:<24}  {:>9}  {:>11}  {:>9}  {:>12}  {:>8}",
        "BLOCK",
        "MIN TIME",
        "MAX TIME",
        "SERIES",
        "SAMPLES",
        "CHUNKS",
        "BYTES",
        "B/SAMPLE"
    );
    for b in db.blocks() {
        let m = b.meta();
        let bytes = dir_size(b.dir());
        outln!(
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
    let head_bytes = dir_size(&dir.join("wal")) + dir_size(&dir.join("chunks_head"));
    outln!(
        "{:<26}  {:<24}  {:<24}  {:>9}  {:>11}  {:>9}  {:>12}  {:>8}",
        "head (WAL + chunks_head)",
        range.map_or("-".into(), |r| time_str(r.0)),
        range.map_or("-".into(), |r| time_str(r.1)),
        h.series,
        h.samples,
        "-",
        head_bytes,
        if h.samples == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", head_bytes as f64 / h.samples as f64)
        }
    );
    let q = db.querier(i64::MIN, i64::MAX);
    let mut labels: Vec<(usize, String)> = q
        .label_names()
        .into_iter()
        .map(|n| (q.label_values(&n).len(), n))
        .collect();
    labels.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    outln!("\nHighest cardinality labels:");
    for (n, name) in labels.iter().take(limit) {
        outln!("{n:>9}  {name}");
    }
    let mut names: Vec<(usize, String)> = Vec::new();
    for name in q.label_values("__name__") {
        let m = tsdb::labels::Matcher::equal("__name__", name.as_str());
        let n = q.select(&[m]).map_err(|e| e.to_string())?.len();
        names.push((n, name));
    }
    names.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    outln!("\nHighest cardinality metric names:");
    for (n, name) in names.iter().take(limit) {
        outln!("{n:>9}  {name}");
    }
    Ok(ExitCode::SUCCESS)
}

fn compact(dir: PathBuf, flush_head: bool, retention: &Retention) -> Result<ExitCode, String> {
    require_db(&dir)?;
    let db = open(
        &dir,
        retention.apply(Options::default().background_compaction(false)),
    )?;
    if flush_head {
        for u in db.flush_head().map_err(|e| e.to_string())? {
            eprintln!("block written from the head: {u}");
        }
    }
    let mut bar = CompactBar::new();
    let report = db
        .compact(&mut |p| bar.update(p))
        .map_err(|e| e.to_string())?;
    bar.finish();
    for u in &report.head_blocks {
        eprintln!("block written: {u}");
    }
    for (from, to) in &report.merged {
        let from: Vec<String> = from.iter().map(|u| u.to_string()).collect();
        match to {
            Some(u) => eprintln!("blocks merged: {} -> {u}", from.join(" + ")),
            None => eprintln!("blocks merged: {} -> nothing left", from.join(" + ")),
        }
    }
    eprintln!(
        "blocks written: {}; merges: {}; deleted by retention: {}; blocks now: {}",
        report.head_blocks.len(),
        report.merged.len(),
        report.deleted_by_retention,
        db.blocks().len()
    );
    Ok(ExitCode::SUCCESS)
}

fn clean_tombstones(dir: PathBuf) -> Result<ExitCode, String> {
    require_db(&dir)?;
    let db = open(&dir, Options::default().background_compaction(false))?;
    let mut bar = CompactBar::new();
    let cleaned = db
        .clean_tombstones(&mut |p| bar.update(p))
        .map_err(|e| e.to_string())?;
    bar.finish();
    for (old, new) in &cleaned {
        match new {
            Some(n) => eprintln!("block rewritten: {old} -> {n}"),
            None => eprintln!("block removed (everything in it was deleted): {old}"),
        }
    }
    eprintln!("blocks with tombstones cleaned: {}", cleaned.len());
    Ok(ExitCode::SUCCESS)
}

/// A progress bar over the series of each merge, on a terminal only.
struct CompactBar {
    bar: Option<indicatif::ProgressBar>,
    tty: bool,
}

impl CompactBar {
    fn new() -> CompactBar {
        CompactBar {
            bar: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, p: tsdb::db::CompactProgress) {
        if !self.tty {
            return;
        }
        match p {
            tsdb::db::CompactProgress::Merging { blocks, series } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
                let b = indicatif::ProgressBar::new(series);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:40}] {pos}/{len} series ({eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message(format!("merging {blocks} blocks"));
                self.bar = Some(b);
            }
            tsdb::db::CompactProgress::Series { done, total } => {
                if let Some(b) = &self.bar {
                    b.set_length(total);
                    b.set_position(done);
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn delete(
    dir: PathBuf,
    selectors: &[String],
    start: Option<&str>,
    end: Option<&str>,
) -> Result<ExitCode, String> {
    require_db(&dir)?;
    let time = |t: Option<&str>, default: i64, flag: &str| match t {
        Some(t) => api::parse_time(t).map_err(|e| format!("--{flag}: {e}")),
        None => Ok(default),
    };
    let (mint, maxt) = (time(start, i64::MIN, "start")?, time(end, i64::MAX, "end")?);
    if mint > maxt {
        return Err(format!("--start ({mint} ms) is after --end ({maxt} ms)"));
    }
    let matchers = selectors
        .iter()
        .map(|s| tsdb::labels::parse_selector(s).map_err(|e| format!("--match {s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let db = open(&dir, Options::default().background_compaction(false))?;
    for (sel, m) in selectors.iter().zip(&matchers) {
        let st = db.delete(m, mint, maxt).map_err(|e| e.to_string())?;
        outln!(
            "{sel}: samples deleted from {} series (head: {} series; blocks touched: {})",
            st.series,
            st.head_series,
            st.blocks.len()
        );
        for (ulid, n) in &st.blocks {
            outln!("  block {ulid}: {n} series");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes command output to stdout; see [`outln!`].
fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tsdbctl: error: writing output: {e}");
        std::process::exit(1);
    }
}
