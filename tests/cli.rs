//! The real `tsdbctl` binary: the README's commands, exit codes, error messages, JSON bodies.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tsdbctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args(args)
        .output()
        .unwrap()
}

fn tsdbctl_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data/motivating.prom")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn readme_main_job_ingests_the_example_and_queries_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    let db = db.to_str().unwrap();
    let out = tsdbctl(&["ingest", "--db", db, &example()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("documents: 1 (1 stored, 0 rejected)"), "{err}");
    assert!(err.contains("new series: 88"), "{err}");
    assert!(err.contains("samples appended: 5368"), "{err}");

    let out = tsdbctl(&[
        "query",
        "--db",
        db,
        "--time",
        "2026-11-20T10:15:00Z",
        "--output",
        "json",
        r#"function_calls_total{module="counter_demo"}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"function_calls_total","instance":"localhost:8001","job":"prometheus_demo","module":"counter_demo"},"value":[1795169700,"3189"]}]}}"#
    );

    let out = tsdbctl(&[
        "query",
        "--db",
        db,
        "--start",
        "2026-11-20T10:00:00Z",
        "--end",
        "1795168920",
        "--step",
        "1m",
        "--output",
        "json",
        "--repeat",
        "3",
        "process_time",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    assert!(body.starts_with(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"process_time""#), "{body}");
    assert!(body.contains(r#""values":[[1795168860,"#), "{body}");
    let last = text(&out.stderr).lines().last().unwrap_or("").to_string();
    assert!(last.starts_with(r#"{"median_s": "#), "{last}");

    // Ingesting the same file again changes nothing, and says why: each series' newest sample is an
    // identical duplicate, every older one is out of order (as Prometheus would reject it).
    let out = tsdbctl(&["ingest", "--db", db, &example()]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("samples appended: 0;"), "{err}");
    assert!(
        err.contains("samples rejected: 5280 (out of order: 5280, duplicate timestamp: 0, older than the head: 0)"),
        "{err}"
    );
    assert!(err.contains("identical duplicates ignored: 88;"), "{err}");
}

#[test]
fn an_invalid_document_is_rejected_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    let db = db.to_str().unwrap();
    let bad = dir.path().join("bad.prom");
    std::fs::write(&bad, "ok 1 1000\nok 2 2000\nbad{x=\"1\" 3\n").unwrap();
    let good = dir.path().join("good.prom");
    std::fs::write(&good, "good 1 1000\n").unwrap();
    let bad = bad.to_str().unwrap();
    let good = good.to_str().unwrap();

    let out = tsdbctl(&["ingest", "--db", db, bad, good]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{bad}:3:")), "{err}");
    assert!(err.contains("nothing of it stored"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Without --keep-going the next file is not loaded.
    let out = tsdbctl(&["query", "--db", db, "--time", "2", "{__name__=~\".+\"}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");

    let out = tsdbctl(&["ingest", "--db", db, "--keep-going", bad, good]);
    assert!(!out.status.success());
    let out = tsdbctl(&["query", "--db", db, "--time", "2", "{__name__=~\".+\"}"]);
    assert_eq!(text(&out.stdout).trim(), "good\t1\t2");
}

#[test]
fn stdin_timestamps_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    let db = db.to_str().unwrap();
    let out = tsdbctl_stdin(
        &["ingest", "--db", db, "--timestamp", "5000", "-"],
        b"# TYPE x gauge\nx{a=\"1\"} 7\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tsdbctl(&["query", "--db", db, "--time", "5", "x"]);
    assert_eq!(text(&out.stdout).trim(), "x{a=\"1\"}\t7\t5");

    for (args, want) in [
        (vec!["query", "--db", db, "rate(x[1m]"], "parse error"),
        (
            vec!["query", "--db", db, "--time", "yesterday", "x"],
            "cannot parse",
        ),
        (
            vec!["query", "--db", "/nonexistent/dir", "x"],
            "no database here",
        ),
        (
            vec!["ingest", "--db", db, "/nonexistent/file.prom"],
            "/nonexistent/file.prom",
        ),
        (
            vec!["ingest", "--db", db, "--timestamp", "soon", "-"],
            "--timestamp",
        ),
    ] {
        let out = tsdbctl(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
}

#[test]
fn a_second_process_gets_a_clear_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let _db = tsdb::Db::open(dir.path(), tsdb::Options::default()).unwrap();
    let out = tsdbctl(&[
        "query",
        "--db",
        dir.path().to_str().unwrap(),
        "--time",
        "1",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("in use by another process"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn query_plot_draws_a_range_query() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    let db = db.to_str().unwrap();
    let out = tsdbctl(&["ingest", "--db", db, &example()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let range = [
        "--start",
        "2026-11-20T10:00:00Z",
        "--end",
        "2026-11-20T10:15:00Z",
        "--step",
        "15s",
    ];
    let plot = |extra: &[&str], columns: Option<&str>| -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsdbctl"));
        cmd.args(["query", "--db", db]).args(range).arg("--plot");
        cmd.args(extra).arg("rate(function_calls_total[1m])");
        match columns {
            Some(c) => cmd.env("COLUMNS", c),
            None => cmd.env_remove("COLUMNS"),
        };
        cmd.output().unwrap()
    };

    let out = plot(&[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let chart = text(&out.stdout);
    let lines: Vec<&str> = chart.lines().collect();
    // 16 plot rows (default height), the x axis, the times, one legend line.
    assert_eq!(lines.len(), 16 + 3, "{chart}");
    assert!(
        lines[..16]
            .iter()
            .all(|l| l.contains('┤') || l.contains('│')),
        "{chart}"
    );
    assert!(lines[..16]
        .iter()
        .any(|l| l.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))));
    assert!(
        lines[16].contains('└') && lines[16].contains('┬'),
        "{chart}"
    );
    assert!(
        lines[17].contains("10:00") && lines[17].contains("10:14"),
        "{chart}"
    );
    assert_eq!(
        lines[18],
        r#"⠤⠤ {instance="localhost:8001", job="prometheus_demo", module="counter_demo"}"#
    );
    // Default width 100 without COLUMNS; no colour when stdout is not a terminal.
    assert_eq!(lines[0].chars().count(), 100, "{chart}");
    assert!(!chart.contains('\x1b'));

    let out = plot(&[], Some("72"));
    assert_eq!(
        text(&out.stdout).lines().next().unwrap().chars().count(),
        72
    );
    let out = plot(&["--plot-width", "50", "--plot-height", "6"], Some("72"));
    let small = text(&out.stdout);
    assert_eq!(small.lines().count(), 6 + 3, "{small}");
    assert_eq!(small.lines().next().unwrap().chars().count(), 50, "{small}");

    // An instant query cannot be plotted.
    let out = tsdbctl(&[
        "query",
        "--db",
        db,
        "--time",
        "2026-11-20T10:15:00Z",
        "--plot",
        "up",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--plot draws a range query: give --start, --end and --step"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn query_annotations_in_json_and_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    let db = db.to_str().unwrap();
    let out = tsdbctl(&["ingest", "--db", db, &example()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = r#"PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "process_resident_memory_bytes" (1:10)"#;
    let q = "sum(rate(process_resident_memory_bytes[5m]))";
    let at = ["query", "--db", db, "--time", "2026-11-20T10:15:00Z"];
    let out = tsdbctl(&[&at[..], &["--output", "json", q]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    let tail = format!(
        r#"]}},"infos":[{}]}}"#,
        serde_json::to_string(info).unwrap()
    );
    assert!(body.trim_end().ends_with(&tail), "{body}");
    assert!(!body.contains("\"warnings\""), "{body}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    let out = tsdbctl(&[&at[..], &[q]].concat());
    assert!(out.status.success());
    assert_eq!(text(&out.stderr).trim(), format!("tsdbctl: {info}"));
    assert!(!text(&out.stdout).contains("PromQL"));
}
