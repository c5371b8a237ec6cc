//! Runs Prometheus' own PromQL test scripts (`promql/promqltest/testdata/*.test`, copied to
//! `../shared/promql-tests/upstream/`) against our engine. The language is described in
//! `../shared/promql-tests/README.md`.
//!
//! Evals that need native histograms or experimental features are skipped with the reason, by the
//! same classification as `catalog.py`. Every other eval must pass, except those in
//! [`ALLOWED_FAILURES`] (each with its cause, also listed in `docs/promql-compatibility.md`).
//! Annotations are checked as Prometheus' runner does: `eval_warn`/`eval_info` need at least one
//! warning/info; `expect warn`/`expect info` lines (any, `msg:` or `regex:`) must each match one
//! annotation of their kind and every annotation of that kind must match one of them;
//! `expect no_warn`/`no_info` forbid them. Evals without such lines do not check annotations, and
//! neither does the range-mode re-run of an instant eval.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tsdb::labels::Labels;
use tsdb::promql::series_notation::{parse_number, parse_series_desc, SequenceValue as SeqVal};
use tsdb::promql::{Annotations, QueryOptions, Value};
use tsdb::{Db, FsyncPolicy, Options};

/// Stable evals that are known to fail: (file, line of the eval, cause).
const ALLOWED_FAILURES: &[(&str, usize, &str)] = &[
    (
        "functions.test",
        523,
        "label_replace with the destination \"\\xff\" (invalid UTF-8) must fail; promql-parser decodes \\xff to U+00FF, a valid name",
    ),
    (
        "native_histograms.test",
        1419,
        "sum over a float and a native histogram: Prometheus drops the group with a warning; the histogram is not stored here",
    ),
];

/// Stable evals (as catalog.py classifies them) whose expected annotation comes from a native
/// histogram in the loaded data that the selector also matches: the histogram is not stored here,
/// so the annotation cannot appear. Their values are still checked. (file, line, cause)
const NATIVE_ANNOTATIONS: &[(&str, usize, &str)] = &[
    (
        "aggregators.test",
        239,
        "info: max ignores the native histogram http_requests_histogram matched by {job=\"api-server\"}",
    ),
    (
        "aggregators.test",
        252,
        "info: min ignores the native histogram http_requests_histogram matched by {job=\"api-server\"}",
    ),
    (
        "aggregators.test",
        814,
        "info: stddev ignores the native histogram matched by {label=\"c\"}",
    ),
    (
        "aggregators.test",
        817,
        "info: stdvar ignores the native histogram matched by {label=\"c\"}",
    ),
    (
        "operators.test",
        292,
        "info: == between a native histogram matched by {job=\"app-server\"} and a float",
    ),
];

const EXPERIMENTAL_FUNCS: &[&str] = &[
    "end",
    "histogram_quantiles",
    "double_exponential_smoothing",
    "info",
    "max_of",
    "min_of",
    "mad_over_time",
    "ts_of_first_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "ts_of_last_over_time",
    "range",
    "sort_by_label",
    "sort_by_label_desc",
    "start",
    "start_timestamp",
    "step",
    "limitk",
    "limit_ratio",
    "first_over_time",
];
const EXPERIMENTAL_FILES: &[&str] = &["type_and_unit.test", "start_timestamps.test"];

/// `../shared/promql-tests/upstream` from the crate root; a worktree nested deeper finds it in
/// the nearest ancestor that has `shared/`. `PROMQL_TESTS_DIR` overrides.
fn run_experimental() -> bool {
    std::env::var("PROMQL_RUN_EXPERIMENTAL").is_ok_and(|v| v == "1")
}

fn upstream_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PROMQL_TESTS_DIR") {
        return PathBuf::from(d);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for a in root.ancestors().skip(1) {
        let d = a.join("shared/promql-tests/upstream");
        if d.is_dir() {
            return d;
        }
    }
    root.join("../shared/promql-tests/upstream")
}

// ------------------------------------------------------------------ value sequences

// Series rows (`metric{labels} 1+2x3 _ stale`) are read by the library's reader of Prometheus'
// series notation (`tsdb::promql::series_notation`); a bare expected value by its `parse_number`
// (Go's `parseNumber`).

fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_time(rest).map(|t| -t);
    }
    tsdb::api::parse_duration(s).map_err(|e| e.to_string())
}

// ------------------------------------------------------------------ commands

#[derive(Debug, Default)]
struct EvalCmd {
    line: usize,
    /// Run only with `PROMQL_RUN_EXPERIMENTAL=1`; counted apart and never failing the test.
    experimental: bool,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    expect_string: Option<String>,
    expect_range_vector: Option<(i64, i64, i64)>,
    scalar: Option<f64>,
    /// Expected series in order: labels and values.
    series: Vec<(Labels, Vec<SeqVal>)>,
    annos: AnnoExpect,
}

/// An `expect warn`/`expect info` line: any annotation, an exact text, or a regex.
#[derive(Debug)]
enum AnnoMatch {
    Any,
    Msg(String),
    Regex(regex::Regex),
}

impl AnnoMatch {
    fn matches(&self, s: &str) -> bool {
        match self {
            AnnoMatch::Any => true,
            AnnoMatch::Msg(m) => m == s,
            AnnoMatch::Regex(r) => r.is_match(s),
        }
    }
}

#[derive(Debug, Default)]
struct AnnoExpect {
    /// `eval_warn` / `eval_info`: at least one.
    some_warn: bool,
    some_info: bool,
    warn: Vec<AnnoMatch>,
    info: Vec<AnnoMatch>,
    no_warn: bool,
    no_info: bool,
}

impl AnnoExpect {
    fn any(&self) -> bool {
        self.some_warn
            || self.some_info
            || !self.warn.is_empty()
            || !self.info.is_empty()
            || self.no_warn
            || self.no_info
    }
}

fn parse_anno_match(rest: &str) -> Result<AnnoMatch, String> {
    let rest = rest.trim();
    if let Some(m) = rest.strip_prefix("msg:") {
        Ok(AnnoMatch::Msg(m.trim().to_string()))
    } else if let Some(r) = rest.strip_prefix("regex:") {
        // Go's regexp.MatchString: unanchored.
        regex::Regex::new(r.trim())
            .map(AnnoMatch::Regex)
            .map_err(|e| format!("bad regex {r}: {e}"))
    } else if rest.is_empty() {
        Ok(AnnoMatch::Any)
    } else {
        Err(format!("bad expect line {rest:?}"))
    }
}

/// Prometheus' `checkAnnotations` and `validateExpectedAnnotationsOfType`.
fn check_annotations(e: &AnnoExpect, got: &Annotations) -> Result<(), String> {
    if e.some_warn && got.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if e.some_info && got.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    for (kind, want, have) in [
        ("warn", &e.warn, &got.warnings),
        ("info", &e.info, &got.infos),
    ] {
        if want.is_empty() {
            continue;
        }
        if have.is_empty() {
            return Err(format!("expected {kind} annotations but none were found"));
        }
        for w in want.iter() {
            if !have.iter().any(|h| w.matches(h)) {
                return Err(format!("expected {kind} annotation {w:?}, found {have:?}"));
            }
        }
        for h in have.iter() {
            if !want.iter().any(|w| w.matches(h)) {
                return Err(format!("unexpected {kind} annotation {h:?}"));
            }
        }
    }
    if e.no_warn && !got.warnings.is_empty() {
        return Err(format!("unexpected warnings {:?}", got.warnings));
    }
    if e.no_info && !got.infos.is_empty() {
        return Err(format!("unexpected infos {:?}", got.infos));
    }
    Ok(())
}

enum Cmd {
    Load(i64, Vec<(Labels, Vec<SeqVal>)>),
    Clear,
    Eval(Box<EvalCmd>),
    Skip(String),
}

fn classify_native_names(lines: &[&str]) -> Vec<HashSet<String>> {
    // For each line index, the metric names loaded with native histograms since the last clear.
    let mut out = Vec::with_capacity(lines.len());
    let mut names: HashSet<String> = HashSet::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.starts_with("clear") {
            names.clear();
        } else if line.starts_with("load") {
            let nhcb = line.starts_with("load_with_nhcb");
            let mut j = i + 1;
            while j < lines.len() && !lines[j].trim().is_empty() {
                let row = lines[j].trim();
                let mut name: String = row
                    .chars()
                    .take_while(|c| *c != '{' && !c.is_whitespace())
                    .collect();
                if name.is_empty() {
                    if let Some(p) = row.find("__name__") {
                        let rest = &row[p..];
                        if let Some(q1) = rest.find('"') {
                            let r2 = &rest[q1 + 1..];
                            if let Some(q2) = r2.find('"') {
                                name = r2[..q2].to_string();
                            }
                        }
                    }
                }
                if row.contains("{{") || (nhcb && name.contains("_bucket")) {
                    // Only the suffix names the histogram (catalog.py strips every "_bucket" and
                    // so misses a few native evals: those are skipped here).
                    let base = if nhcb {
                        name.strip_suffix("_bucket").unwrap_or(&name).to_string()
                    } else {
                        name
                    };
                    names.insert(base);
                }
                j += 1;
            }
        }
        out.push(names.clone());
        i += 1;
    }
    out
}

fn idents(expr: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            out.insert(expr[s..i].to_string());
        } else {
            i += 1;
        }
    }
    out
}

fn experimental_reason(file: &str, expr: &str) -> Option<String> {
    if EXPERIMENTAL_FILES.contains(&file) {
        return Some("experimental file".into());
    }
    let lower = expr.to_ascii_lowercase();
    for f in EXPERIMENTAL_FUNCS {
        let re = regex::Regex::new(&format!(r"\b{f}\s*\(")).unwrap();
        if re.is_match(&lower) {
            return Some(format!("experimental function {f}"));
        }
    }
    let syn = regex::Regex::new(
        r"\b(anchored|smoothed|fill|fill_left|fill_right)\b|\[[^\]]*[-+*/%^()][^\]]*\]|offset\s*\(|@\s*\(",
    )
    .unwrap();
    if syn.is_match(expr) {
        return Some("experimental syntax".into());
    }
    None
}

fn parse_file(file: &str, text: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let native = classify_native_names(&lines);
    let is_blank = |l: &str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    };
    let mut cmds = Vec::new();
    let mut i = 0;
    let eval_instant = regex::Regex::new(
        r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$",
    )
    .unwrap();
    let eval_range = regex::Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap();
    let expect_range = regex::Regex::new(r"from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap();
    while i < lines.len() {
        let line = lines[i].trim();
        if is_blank(line) {
            i += 1;
            continue;
        }
        let start = i;
        let mut body: Vec<&str> = Vec::new();
        i += 1;
        if line == "clear" {
            cmds.push(Cmd::Clear);
            continue;
        }
        while i < lines.len() && !lines[i].trim().is_empty() {
            if !lines[i].trim().starts_with('#') {
                body.push(lines[i].trim());
            }
            i += 1;
        }
        if let Some(rest) = line.strip_prefix("load") {
            let step_s = rest.trim_start_matches("_with_nhcb").trim();
            let step = parse_time(step_s)?;
            let mut series = Vec::new();
            for row in &body {
                if row.contains("{{") || row.starts_with("@st") {
                    continue;
                }
                // Rows in notations of experimental features (start timestamps) are left out;
                // the evals that read them are skipped by classification.
                if let Ok(d) = parse_series_desc(row) {
                    series.push((d.labels, d.values));
                }
            }
            cmds.push(Cmd::Load(step, series));
        } else if line.starts_with("eval") {
            let mut c = EvalCmd {
                line: start + 1,
                ..Default::default()
            };
            if let Some(cap) = eval_instant.captures(line) {
                match cap.get(1).map(|m| m.as_str()) {
                    Some("fail") => c.fail = true,
                    Some("ordered") => c.ordered = true,
                    Some("warn") => c.annos.some_warn = true,
                    Some("info") => c.annos.some_info = true,
                    _ => {}
                }
                c.at = match cap.get(2) {
                    Some(t) => parse_time(t.as_str())?,
                    None => 0,
                };
                c.expr = cap[3].to_string();
            } else if let Some(cap) = eval_range.captures(line) {
                match cap.get(1).map(|m| m.as_str()) {
                    Some("fail") => c.fail = true,
                    Some("warn") => c.annos.some_warn = true,
                    Some("info") => c.annos.some_info = true,
                    _ => {}
                }
                c.range = Some((
                    parse_time(&cap[2])?,
                    parse_time(&cap[3])?,
                    parse_time(&cap[4])?,
                ));
                c.expr = cap[5].to_string();
            } else {
                return Err(format!("{file}:{}: bad eval line", start + 1));
            }
            let ids = idents(&c.expr);
            let names = &native[start];
            let mut native_reason = ids.iter().any(|x| names.contains(x))
                || (c.expr.contains("__name__") && !names.is_empty());
            if body.iter().any(|l| l.contains("{{")) {
                native_reason = true;
            }
            if native_reason {
                cmds.push(Cmd::Skip("native histograms".into()));
                continue;
            }
            let exp = experimental_reason(file, &c.expr);
            if let Some(r) = &exp {
                if !run_experimental() {
                    cmds.push(Cmd::Skip(r.clone()));
                    continue;
                }
            }
            c.experimental = exp.is_some();
            for row in &body {
                if let Some(m) = row.strip_prefix("expected_fail_message") {
                    c.fail_msg = Some(m.trim().to_string());
                } else if let Some(m) = row.strip_prefix("expected_fail_regexp") {
                    c.fail_regex = Some(m.trim().to_string());
                } else if let Some(rest) = row.strip_prefix("expect range vector") {
                    let cap = expect_range
                        .captures(rest)
                        .ok_or("bad expect range vector")?;
                    c.expect_range_vector = Some((
                        parse_time(&cap[1])?,
                        parse_time(&cap[2])?,
                        parse_time(&cap[3])?,
                    ));
                } else if let Some(rest) = row.strip_prefix("expect string") {
                    let s = rest.trim();
                    let s = parse_go_string(s).ok_or_else(|| format!("bad string {s}"))?;
                    c.expect_string = Some(s);
                } else if row.split(' ').next() == Some("expect") {
                    let rest = row["expect".len()..].trim();
                    if rest.starts_with("ordered") {
                        c.ordered = true;
                    } else if let Some(r) = rest.strip_prefix("fail") {
                        c.fail = true;
                        let r = r.trim();
                        if let Some(m) = r.strip_prefix("msg:") {
                            c.fail_msg = Some(m.trim().to_string());
                        } else if let Some(m) = r.strip_prefix("regex:") {
                            c.fail_regex = Some(m.trim().to_string());
                        }
                    } else if let Some(r) = rest.strip_prefix("no_warn") {
                        c.annos.no_warn = r.trim().is_empty();
                    } else if let Some(r) = rest.strip_prefix("no_info") {
                        c.annos.no_info = r.trim().is_empty();
                    } else if let Some(r) = rest.strip_prefix("warn") {
                        c.annos.warn.push(parse_anno_match(r)?);
                    } else if let Some(r) = rest.strip_prefix("info") {
                        c.annos.info.push(parse_anno_match(r)?);
                    }
                } else {
                    // A bare number: a scalar result (Prometheus' runner tries this first too).
                    if let Some(v) = parse_number(row) {
                        c.scalar = Some(v);
                        continue;
                    }
                    let d = parse_series_desc(row)
                        .map_err(|e| format!("{file}:{}: {row:?}: {e}", start + 1))?;
                    c.series.push((d.labels, d.values));
                }
            }
            cmds.push(Cmd::Eval(Box::new(c)));
        } else {
            return Err(format!("{file}:{}: unknown command {line:?}", start + 1));
        }
    }
    Ok(cmds)
}

fn parse_go_string(s: &str) -> Option<String> {
    if s.len() >= 2
        && (s.starts_with('"') && s.ends_with('"') || s.starts_with('`') && s.ends_with('`'))
    {
        let inner = &s[1..s.len() - 1];
        if s.starts_with('`') {
            return Some(inner.to_string());
        }
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    o => {
                        out.push('\\');
                        out.push(o);
                    }
                }
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    None
}

// ------------------------------------------------------------------ comparison

fn almost_equal(a: f64, b: f64) -> bool {
    let stale = tsdb::chunk::STALE_NAN_BITS;
    if a.to_bits() == stale || b.to_bits() == stale {
        return a.to_bits() == b.to_bits();
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let eps = 1e-6;
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn compare_vector(c: &EvalCmd, got: &[(Labels, f64)]) -> Result<(), String> {
    let mut exp: BTreeMap<&Labels, (usize, f64)> = BTreeMap::new();
    for (pos, (l, v)) in c.series.iter().enumerate() {
        let v = match v.first() {
            Some(SeqVal::Value(v)) => *v,
            _ => return Err(format!("expected series {l} has no value")),
        };
        exp.insert(l, (pos, v));
    }
    let mut seen = HashSet::new();
    for (pos, (l, v)) in got.iter().enumerate() {
        let Some(&(epos, ev)) = exp.get(l) else {
            return Err(format!("unexpected metric {l} in result, has value {v}"));
        };
        if c.ordered && epos != pos {
            return Err(format!(
                "expected metric {l} at position {} but was at {}",
                epos + 1,
                pos + 1
            ));
        }
        if !almost_equal(ev, *v) {
            return Err(format!("expected {ev} for {l} but got {v}"));
        }
        seen.insert(l.clone());
    }
    for l in exp.keys() {
        if !seen.contains(*l) {
            return Err(format!("expected metric {l} not found"));
        }
    }
    Ok(())
}

fn compare_matrix(
    c: &EvalCmd,
    got: &[tsdb::promql::RangeSeries],
    (start, end, step): (i64, i64, i64),
) -> Result<(), String> {
    for w in got.windows(2) {
        if w[0].labels >= w[1].labels {
            return Err(format!(
                "matrix not sorted: {} before {}",
                w[0].labels, w[1].labels
            ));
        }
    }
    let exp: BTreeMap<&Labels, &Vec<SeqVal>> = c.series.iter().map(|(l, v)| (l, v)).collect();
    for s in got {
        let Some(vals) = exp.get(&s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has {:?}",
                s.labels, s.points
            ));
        };
        let mut expected = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let t = start + i as i64 * step;
            if t > end {
                return Err(format!(
                    "expected {} points for {} but range is shorter",
                    vals.len(),
                    s.labels
                ));
            }
            if let SeqVal::Value(v) = v {
                expected.push((t, *v));
            }
        }
        if expected.len() != s.points.len() {
            return Err(format!(
                "expected {} points for {}, got {:?}",
                expected.len(),
                s.labels,
                s.points
            ));
        }
        for (e, g) in expected.iter().zip(&s.points) {
            if e.0 != g.0 || !almost_equal(e.1, g.1) {
                return Err(format!("expected {e:?} for {} but got {g:?}", s.labels));
            }
        }
    }
    let got_labels: HashSet<&Labels> = got.iter().map(|s| &s.labels).collect();
    for l in exp.keys() {
        if !got_labels.contains(*l) {
            return Err(format!("expected metric {l} not found"));
        }
    }
    Ok(())
}

fn check_fail(c: &EvalCmd, e: &tsdb::promql::QueryError) -> Result<(), String> {
    let msg = e.to_string();
    if let Some(m) = &c.fail_msg {
        if *m != msg {
            return Err(format!("expected error {m:?}, got {msg:?}"));
        }
    }
    if let Some(r) = &c.fail_regex {
        let re = regex::Regex::new(r).map_err(|e| e.to_string())?;
        if !re.is_match(&msg) {
            return Err(format!("expected error matching {r:?}, got {msg:?}"));
        }
    }
    Ok(())
}

/// Runs one eval; an annotation mismatch is reported through `anno_err` (the values are still
/// compared).
fn run_eval(db: &Db, c: &EvalCmd, anno_err: &mut Option<String>) -> Result<(), String> {
    let opts = QueryOptions::default();
    if let Some((start, end, step)) = c.range {
        let res = db.query_range_annotated(&c.expr, start, end, step, &opts);
        return match (res, c.fail) {
            (Err(e), true) => check_fail(c, &e),
            (Err(e), false) => Err(format!("error: {e}")),
            (Ok(_), true) => Err("expected an error, got none".into()),
            (Ok(r), false) => {
                *anno_err = check_annotations(&c.annos, &r.annotations).err();
                match r.value {
                    Value::Matrix(m) => compare_matrix(c, &m, (start, end, step)),
                    v => Err(format!("range query returned {}", v.type_name())),
                }
            }
        };
    }
    let res = db.query_annotated(&c.expr, c.at, &opts);
    let v = match (res, c.fail) {
        (Err(e), true) => return check_fail(c, &e),
        (Err(e), false) => return Err(format!("error: {e}")),
        (Ok(_), true) => return Err("expected an error, got none".into()),
        (Ok(r), false) => {
            *anno_err = check_annotations(&c.annos, &r.annotations).err();
            r.value
        }
    };
    match &v {
        Value::String { s, .. } => {
            return match &c.expect_string {
                Some(e) if e == s => Ok(()),
                e => Err(format!("expected string {e:?}, got {s:?}")),
            }
        }
        Value::Scalar { v, .. } => match c.scalar {
            Some(e) if almost_equal(e, *v) => {}
            e => return Err(format!("expected {e:?}, got scalar {v}")),
        },
        Value::Matrix(m) => {
            return match c.expect_range_vector {
                Some(r) => compare_matrix(c, m, r),
                None => Err("instant query returned a matrix".into()),
            }
        }
        Value::Vector(vec) => {
            if c.scalar.is_some() {
                return Err("expected a scalar, got a vector".into());
            }
            let got: Vec<(Labels, f64)> = vec.iter().map(|s| (s.labels.clone(), s.v)).collect();
            compare_vector(c, &got)?;
        }
    }
    // Prometheus' runner: the same expression as a range query around the instant agrees.
    if c.ordered
        || c.expect_range_vector.is_some()
        || c.expect_string.is_some()
        || regex::Regex::new(r"(start|end|range|step)\(\)")
            .unwrap()
            .is_match(&c.expr)
    {
        return Ok(());
    }
    let r = db
        .query_range_with(&c.expr, c.at - 60_000, c.at + 60_000, 60_000, &opts)
        .map_err(|e| format!("range mode: error: {e}"))?;
    let Value::Matrix(m) = r else {
        return Err("range mode: not a matrix".into());
    };
    for w in m.windows(2) {
        if w[0].labels >= w[1].labels {
            return Err("range mode: matrix not sorted".into());
        }
    }
    let got: Vec<(Labels, f64)> = m
        .iter()
        .filter_map(|s| {
            s.points
                .iter()
                .find(|p| p.0 == c.at)
                .map(|p| (s.labels.clone(), p.1))
        })
        .collect();
    if let Value::Scalar { .. } = v {
        return match (c.scalar, got.first()) {
            (Some(e), Some(g)) if almost_equal(e, g.1) => Ok(()),
            (e, g) => Err(format!("range mode: expected scalar {e:?}, got {g:?}")),
        };
    }
    compare_vector(c, &got).map_err(|e| format!("range mode: {e}"))
}

fn new_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options::default().fsync(FsyncPolicy::Never).shards(1),
    )
    .unwrap();
    (dir, db)
}

fn load(db: &Db, step: i64, series: &[(Labels, Vec<SeqVal>)]) {
    // A series listed twice in one load: the later value at a timestamp wins, as in
    // Prometheus' test storage (aggregators.test relies on it).
    let mut merged: BTreeMap<&Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    for (l, vals) in series {
        let e = merged.entry(l).or_default();
        for (i, v) in vals.iter().enumerate() {
            if let SeqVal::Value(v) = v {
                e.insert(i as i64 * step, *v);
            }
        }
    }
    let mut app = db.appender();
    for (l, pts) in merged {
        for (t, v) in pts {
            // A sample already stored by an earlier load is rejected, as in Prometheus.
            let _ = app.append(l, t, v);
        }
    }
    app.commit().unwrap();
}

#[derive(Default)]
struct Counts {
    pass: usize,
    fail: usize,
    allowed: usize,
    skip_native: usize,
    skip_exp: usize,
    exp_pass: usize,
    exp_fail: usize,
    /// Stable evals run that have annotation expectations, and how many of them pass.
    anno_evals: usize,
    anno_pass: usize,
    /// Of those, passing only because they are in [`NATIVE_ANNOTATIONS`].
    anno_native: usize,
}

#[test]
fn upstream_promql_tests() {
    let dir = upstream_dir();
    assert!(
        dir.is_dir(),
        "{}: the upstream PromQL test files are missing (see ../shared/promql-tests/README.md)",
        dir.display()
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let filter = std::env::var("PROMQL_TEST_FILTER").ok();
    let mut failures: Vec<String> = Vec::new();
    let mut exp_failures: Vec<String> = Vec::new();
    let mut table = String::from("| file | pass | fail (allowed) | skipped native | skipped experimental |\n|---|---|---|---|---|\n");
    let mut total = Counts::default();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(f) = &filter {
            if !name.contains(f.as_str()) {
                continue;
            }
        }
        let text = std::fs::read_to_string(path).unwrap();
        let cmds = match parse_file(&name, &text) {
            Ok(c) => c,
            Err(e) => panic!("{name}: {e}"),
        };
        let mut counts = Counts::default();
        let (mut _dir, mut db) = new_db();
        for cmd in &cmds {
            match cmd {
                Cmd::Clear => {
                    drop(db);
                    (_dir, db) = new_db();
                }
                Cmd::Load(step, series) => load(&db, *step, series),
                Cmd::Skip(reason) => {
                    if reason == "native histograms" {
                        counts.skip_native += 1;
                    } else {
                        counts.skip_exp += 1;
                    }
                }
                Cmd::Eval(c) => {
                    let mut anno_err = None;
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_eval(&db, c, &mut anno_err)
                    }))
                    .unwrap_or_else(|_| Err("panic".into()));
                    let native_anno = NATIVE_ANNOTATIONS
                        .iter()
                        .any(|(f, l, _)| *f == name && *l == c.line);
                    let r = match (r, anno_err) {
                        (Ok(()), Some(_)) if native_anno => {
                            counts.anno_native += 1;
                            Ok(())
                        }
                        (Ok(()), Some(e)) => Err(format!("annotations: {e}")),
                        (r, _) => r,
                    };
                    if c.experimental {
                        match r {
                            Ok(()) => counts.exp_pass += 1,
                            Err(e) => {
                                counts.exp_fail += 1;
                                exp_failures.push(format!("{name}:{}: {}: {e}", c.line, c.expr));
                            }
                        }
                        continue;
                    }
                    if c.annos.any() {
                        counts.anno_evals += 1;
                        if r.is_ok() {
                            counts.anno_pass += 1;
                        }
                    }
                    match r {
                        Ok(()) => counts.pass += 1,
                        Err(e) => {
                            if ALLOWED_FAILURES
                                .iter()
                                .any(|(f, l, _)| *f == name && *l == c.line)
                            {
                                counts.allowed += 1;
                            } else {
                                counts.fail += 1;
                                failures.push(format!("{name}:{}: {}: {e}", c.line, c.expr));
                            }
                        }
                    }
                }
            }
        }
        table.push_str(&format!(
            "| {name} | {} | {} ({}) | {} | {} |\n",
            counts.pass,
            counts.fail + counts.allowed,
            counts.allowed,
            counts.skip_native,
            counts.skip_exp
        ));
        total.pass += counts.pass;
        total.fail += counts.fail;
        total.allowed += counts.allowed;
        total.skip_native += counts.skip_native;
        total.skip_exp += counts.skip_exp;
        total.exp_pass += counts.exp_pass;
        total.exp_fail += counts.exp_fail;
        total.anno_evals += counts.anno_evals;
        total.anno_pass += counts.anno_pass;
        total.anno_native += counts.anno_native;
    }
    table.push_str(&format!(
        "| **all** | {} | {} ({}) | {} | {} |\n",
        total.pass,
        total.fail + total.allowed,
        total.allowed,
        total.skip_native,
        total.skip_exp
    ));
    println!("{table}");
    println!(
        "annotations: {} of the {} stable evals with warn/info expectations pass ({} of them only \
         because the annotation comes from a native histogram, see NATIVE_ANNOTATIONS)",
        total.anno_pass, total.anno_evals, total.anno_native
    );
    if run_experimental() {
        println!(
            "experimental evals run: {} pass, {} fail",
            total.exp_pass, total.exp_fail
        );
        for f in &exp_failures {
            println!("EXP-FAIL {f}");
        }
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} evals failed outside the allow-list",
        failures.len()
    );
}
