//! Rule unit tests: the test-file format of `promtool test rules` (Prometheus 2.42,
//! `docs/configuration/unit_testing_rules.md` and `cmd/promtool/unittest.go`), run against this
//! crate's storage, PromQL engine and rule evaluation, with promtool's output.
//!
//! Users keep their rule tests when they move from Prometheus: the same files must pass and fail
//! the same way, and a failure must read as promtool's does. So this module reproduces promtool's
//! procedure, not only its file format:
//!
//! - The file is decoded strictly (an unknown key is an error, as `yaml.UnmarshalStrict`), and its
//!   `rule_files` are resolved against the test file's directory and expanded as globs (a pattern
//!   matching nothing is a warning). Keys are promtool 2.42's: `alert_rule_test` and
//!   `promql_expr_test`, singular.
//! - Each test group loads its `input_series` ([`crate::promql::series_notation`]) into a fresh
//!   [`Db`] in a temporary directory, lazily: before each evaluation, the samples up to its time
//!   (so an expression test sees only the samples up to the last evaluation, as promtool's).
//!   Without `interval` the step is 0 and every value lands at time 0, where the first one wins.
//! - The rule groups of the rule files are evaluated at 0, `evaluation_interval`, ... up to the
//!   largest `eval_time` of the group's tests, in `group_eval_order` (listed groups in that order,
//!   the others first, in file order; promtool leaves their order undefined). A rule evaluation
//!   error ends the test group.
//! - An alert test at `eval_time` is checked after the evaluation at the last evaluation time not
//!   after it: the firing alerts of every alerting rule of that name (labels and expanded
//!   annotations; pending alerts do not count) against `exp_alerts` with `alertname` added.
//! - Expression tests are instant queries at `eval_time`, compared after sorting by labels, values
//!   exactly (a NaN never equals, as Go's `reflect.DeepEqual`).
//! - Queries (of expression tests and of rules) use promtool's engine settings: subqueries without
//!   a step at `evaluation_interval`, a 100 s timeout. Not its limit of 10,000 samples: Prometheus
//!   2.42 counts a range function's samples one series at a time, this engine all series at once,
//!   so that limit would refuse tests promtool runs; the engine's default limit applies.
//! - Rule groups are the rule layer's [`crate::rules::Group`], evaluated synchronously (module
//!   `eval`).
//!
//! The texts of failures ([`Failure`]'s `Display`) and the report ([`run_files`]) are promtool's,
//! byte for byte where the evaluation agrees (`tests/rules_unittest.rs` compares them). Known
//! differences:
//! - The PromQL engine has Prometheus 3's left-open range and lookback windows, so a result that
//!   depends on a sample exactly at the start of a window differs from Prometheus 2.42's (closed
//!   windows): `count_over_time(x[5m])` over `interval: 1m` input counts 5 samples here, 6 there.
//! - Messages of YAML errors other than unknown keys and wrong scalar types, and of rule files that
//!   do not load, are this crate's (same verdict).
//! - Empty label values: label sets here hold none, so an `exp_labels` entry with an empty value
//!   matches its absence (promtool would see a difference). Annotations keep empty values, as in
//!   Prometheus.
//! - An input series with a label name twice is a parse error here; Prometheus reads it and its
//!   storage refuses each append (both fail). A repetition expanding past
//!   [`series_notation::MAX_VALUES`] values is refused here; promtool runs out of memory.

mod eval;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Duration, RuleFile};
use crate::gostr::quote as go_quote;
use crate::labels::{Label, Labels};
use crate::promql::series_notation::{self, NotationError, SequenceValue};
use crate::promql::{QueryOptions, Value};
use crate::{Db, FsyncPolicy, Options};

/// promtool's default `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL_MS: i64 = 60_000;
/// promtool's query timeout.
pub const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(100);

/// A decoded test file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitTestFile {
    /// As written (patterns, relative to the test file's directory).
    pub rule_files: Vec<String>,
    /// Zero when absent (then [`DEFAULT_EVALUATION_INTERVAL_MS`] applies).
    pub evaluation_interval: Duration,
    pub group_eval_order: Vec<String>,
    pub tests: Vec<TestGroup>,
}

/// One entry of `tests:`: input series and the tests over them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestGroup {
    /// The step between the values of the input series (zero when absent).
    pub interval: Duration,
    pub input_series: Vec<InputSeries>,
    pub alert_rule_tests: Vec<AlertTestCase>,
    pub promql_expr_tests: Vec<PromqlTestCase>,
    /// Given to the rules' templates (`$externalLabels`); not added to alert labels.
    pub external_labels: Labels,
    /// Given to the rules' templates (`$externalURL`).
    pub external_url: String,
    /// Shown in failures of alert tests.
    pub name: String,
}

/// A series and its values, in series notation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputSeries {
    pub series: String,
    pub values: String,
}

/// The alerts expected to fire under one name at one time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertTestCase {
    pub eval_time: Duration,
    pub alertname: String,
    pub exp_alerts: Vec<ExpAlert>,
}

/// One expected firing alert: its labels (without `alertname`) and expanded annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpAlert {
    pub exp_labels: BTreeMap<String, String>,
    pub exp_annotations: BTreeMap<String, String>,
}

/// An expression and the samples it must give at one time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromqlTestCase {
    pub expr: String,
    pub eval_time: Duration,
    pub exp_samples: Vec<ExpSample>,
}

/// An expected sample: a metric in series notation and a value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpSample {
    pub labels: String,
    pub value: f64,
}

/// Why a test file could not be used at all (before any test runs).
#[derive(Debug, thiserror::Error)]
pub enum UnitTestError {
    /// The file cannot be read; worded as Go's `os.ReadFile` error.
    #[error("open {}: {}", path.display(), go_io_message(source))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not YAML, a wrong type, an unknown key. `message` is worded as promtool's decoder words it
    /// where known (`yaml: unmarshal errors:\n  line 12: field x not found in type
    /// main.testGroup`); `line` is where, when the decoder said.
    #[error("{message}")]
    Yaml {
        line: Option<usize>,
        message: String,
    },
    /// A rule-file pattern that is not a valid glob.
    #[error("syntax error in pattern")]
    BadPattern(String),
    /// A group named twice in `group_eval_order`.
    #[error("group name repeated in evaluation order: {0}")]
    RepeatedGroup(String),
}

/// A failed check, worded as promtool words it (its `Display` is promtool's text, indentation
/// included).
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The file could not be used ([`UnitTestError`]'s text).
    File(String),
    /// An input series that is not valid series notation.
    Series(NotationError),
    /// A rule file that could not be loaded: one text per problem, each naming the file.
    RuleFile(String),
    /// An alert test without `alertname`.
    MissingAlertname { eval_time: Duration, group: String },
    /// Storing input samples failed.
    Append(String),
    /// The temporary database of a test group could not be set up.
    Storage(String),
    /// A rule's evaluation failed (this ends the test group).
    RuleEval {
        rule: String,
        time_ms: i64,
        error: String,
    },
    /// The firing alerts differ from the expected ones (both sorted).
    Alert {
        group: String,
        alertname: String,
        eval_time: Duration,
        exp: Vec<AlertView>,
        got: Vec<AlertView>,
    },
    /// The expression could not be evaluated.
    ExprError {
        expr: String,
        eval_time: Duration,
        error: String,
    },
    /// An expected sample's `labels` are not a metric.
    ExprLabels {
        expr: String,
        eval_time: Duration,
        labels: String,
        error: NotationError,
    },
    /// The samples differ (both sorted by labels).
    ExprMismatch {
        expr: String,
        eval_time: Duration,
        exp: Vec<(Labels, f64)>,
        got: Vec<(Labels, f64)>,
    },
}

/// An alert as the comparison sees it: labels and annotations (sorted by name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlertView {
    pub labels: Labels,
    /// (name, value), sorted by name; an annotation may have an empty value.
    pub annotations: Vec<(String, String)>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::File(m) | Failure::RuleFile(m) | Failure::Append(m) | Failure::Storage(m) => {
                f.write_str(m)
            }
            Failure::Series(e) => f.write_str(&e.prometheus_message()),
            Failure::MissingAlertname { eval_time, group } => {
                write!(
                    f,
                    "an item under alert_rule_test misses required attribute alertname at eval_time {eval_time}"
                )?;
                if !group.is_empty() {
                    write!(f, " (in TestGroup {group})")?;
                }
                Ok(())
            }
            Failure::RuleEval {
                rule,
                time_ms,
                error,
            } => write!(
                f,
                "    rule: {rule}, time: {}, err: {error}",
                go_duration(*time_ms)
            ),
            Failure::Alert {
                group,
                alertname,
                eval_time,
                exp,
                got,
            } => {
                if !group.is_empty() {
                    writeln!(f, "    name: {group},")?;
                }
                let indent = "            ";
                write!(
                    f,
                    "    alertname: {alertname}, time: {eval_time}, \n        exp:{}, \n        got:{}",
                    indent_lines(&alerts_string(exp), indent),
                    indent_lines(&alerts_string(got), indent)
                )
            }
            Failure::ExprError {
                expr,
                eval_time,
                error,
            } => write!(
                f,
                "    expr: {}, time: {eval_time}, err: {error}",
                go_quote(expr)
            ),
            Failure::ExprLabels {
                expr,
                eval_time,
                labels,
                error,
            } => write!(
                f,
                "    expr: {}, time: {eval_time}, err: labels {}: {}",
                go_quote(expr),
                go_quote(labels),
                error.prometheus_message()
            ),
            Failure::ExprMismatch {
                expr,
                eval_time,
                exp,
                got,
            } => write!(
                f,
                "    expr: {}, time: {eval_time},\n        exp: {}\n        got: {}",
                go_quote(expr),
                samples_string(exp),
                samples_string(got)
            ),
        }
    }
}

/// The outcome of one test file: warnings (printed as they occur) and failures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    pub warnings: Vec<String>,
    pub failures: Vec<Failure>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs the test files in order and writes promtool's report: `Unit Testing:  FILE`, then
/// `  SUCCESS` on `out`, or `  FAILED:` and each failure on `err` (each followed by an empty line
/// on `out`), and an empty line on `out` after each file. Returns whether every file passed
/// (promtool exits 1 otherwise).
pub fn run_files(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> io::Result<bool> {
    let mut all_passed = true;
    for file in files {
        writeln!(out, "Unit Testing:  {}", file.display())?;
        out.flush()?;
        let report = test_file(file);
        for w in &report.warnings {
            writeln!(err, "  WARNING: {w}")?;
        }
        if report.passed() {
            writeln!(out, "  SUCCESS")?;
        } else {
            all_passed = false;
            writeln!(err, "  FAILED:")?;
            for f in &report.failures {
                writeln!(err, "{f}")?;
                writeln!(out)?;
            }
        }
        writeln!(out)?;
        out.flush()?;
        err.flush()?;
    }
    Ok(all_passed)
}

/// Runs every test group of one file.
pub fn test_file(path: &Path) -> FileReport {
    let mut report = FileReport::default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(source) => {
            let e = UnitTestError::Io {
                path: path.to_path_buf(),
                source,
            };
            report.failures.push(Failure::File(e.to_string()));
            return report;
        }
    };
    let file = match UnitTestFile::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            report.failures.push(Failure::File(e.to_string()));
            return report;
        }
    };
    // Go's filepath.Dir: "." for a bare file name.
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let rule_files = match resolve_rule_files(base, &file.rule_files, &mut report.warnings) {
        Ok(r) => r,
        Err(e) => {
            report.failures.push(Failure::File(e.to_string()));
            return report;
        }
    };
    let eval_interval_ms = match file.evaluation_interval.as_millis() {
        0 => DEFAULT_EVALUATION_INTERVAL_MS,
        ms => ms,
    };
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.as_str(), i).is_some() {
            let e = UnitTestError::RepeatedGroup(g.clone());
            report.failures.push(Failure::File(e.to_string()));
            return report;
        }
    }
    for tg in &file.tests {
        report
            .failures
            .extend(run_group(tg, eval_interval_ms, &order, &rule_files));
    }
    report
}

/// The body of the `rules_unittest` fuzz target: decoding untrusted text as a test file, and its
/// input series and expected labels as series notation, must never panic.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = UnitTestFile::parse(text) else {
        return;
    };
    for tg in &file.tests {
        let _ = LazyInput::parse(tg);
        for p in &tg.promql_expr_tests {
            for s in &p.exp_samples {
                let _ = series_notation::parse_metric(&s.labels);
            }
        }
    }
}

/// `rule_files` joined to the test file's directory (unless absolute) and expanded as globs, in
/// order; a pattern without matches is a warning.
fn resolve_rule_files(
    base: &Path,
    patterns: &[String],
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, UnitTestError> {
    let mut out = Vec::new();
    for p in patterns {
        let pattern = if p.is_empty() || Path::new(p).is_absolute() {
            p.clone()
        } else {
            // Go's filepath.Join, which also cleans the result (`./a/../b` is `b`).
            go_clean_path(&format!("{}/{p}", base.to_string_lossy()))
        };
        let matches =
            glob::glob(&pattern).map_err(|_| UnitTestError::BadPattern(pattern.clone()))?;
        let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
        found.sort();
        if found.is_empty() {
            warnings.push(format!("no file match pattern {pattern}"));
        }
        out.extend(found);
    }
    Ok(out)
}

/// Go's `path.Clean`: the shortest lexically equivalent path (`.` and `..` elements resolved,
/// repeated slashes collapsed).
fn go_clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for el in p.split('/') {
        match el {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            el => parts.push(el),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The engine settings of promtool's test loader, except its limit of 10,000 samples: Prometheus
/// 2.42 counts a range function's samples one series at a time, this engine all series of the
/// step at once, so the same limit would refuse queries promtool runs (20 series x 600 samples
/// under `count_over_time` pass promtool and exceed 10,000 here). The default limit applies.
fn query_options(eval_interval_ms: i64) -> QueryOptions {
    QueryOptions {
        timeout: Some(QUERY_TIMEOUT),
        default_subquery_step_ms: eval_interval_ms,
        ..QueryOptions::default()
    }
}

/// One test group, as promtool's `testGroup.test`.
fn run_group(
    tg: &TestGroup,
    eval_interval_ms: i64,
    order: &HashMap<&str, usize>,
    rule_files: &[PathBuf],
) -> Vec<Failure> {
    let mut input = match LazyInput::parse(tg) {
        Ok(i) => i,
        Err(e) => return vec![Failure::Series(e)],
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return vec![Failure::Storage(format!("temporary directory: {e}"))],
    };
    let opts = Options::default()
        .fsync(FsyncPolicy::Never)
        .shards(1)
        .background_compaction(false);
    let db = match Db::open(dir.path(), opts) {
        Ok(db) => db,
        Err(e) => {
            let where_ = dir.path().display();
            return vec![Failure::Storage(format!(
                "temporary database {where_}: {e}"
            ))];
        }
    };
    let qopts = query_options(eval_interval_ms);

    let mut rule_set = match load_rule_files(rule_files) {
        Ok(files) => {
            match eval::RuleSet::new(
                &files,
                tg.interval,
                &tg.external_labels,
                &tg.external_url,
                order,
                &qopts,
            ) {
                Ok(r) => r,
                Err(errs) => return errs.into_iter().map(Failure::RuleFile).collect(),
            }
        }
        Err(errs) => return errs.into_iter().map(Failure::RuleFile).collect(),
    };

    // Alert tests by evaluation time; the names asked at each time.
    let mut alert_tests: BTreeMap<i64, Vec<&AlertTestCase>> = BTreeMap::new();
    for a in &tg.alert_rule_tests {
        if a.alertname.is_empty() {
            return vec![Failure::MissingAlertname {
                eval_time: a.eval_time,
                group: tg.name.clone(),
            }];
        }
        alert_tests
            .entry(a.eval_time.as_millis())
            .or_default()
            .push(a);
    }
    let max_t = tg
        .alert_rule_tests
        .iter()
        .map(|a| a.eval_time.as_millis())
        .chain(tg.promql_expr_tests.iter().map(|p| p.eval_time.as_millis()))
        .max()
        .unwrap_or(0)
        .max(0);

    let mut failures = Vec::new();
    let mut pending = alert_tests.iter().peekable();
    let mut ts = 0i64;
    while ts <= max_t {
        match input.append_till(&db, ts) {
            Err(e) => failures.push(Failure::Append(e)),
            Ok(()) => {
                let errs = rule_set.eval(&db, ts);
                if !errs.is_empty() {
                    failures.extend(errs);
                    return failures;
                }
            }
        }
        let next = ts.saturating_add(eval_interval_ms);
        while let Some((&t, cases)) = pending.peek() {
            if !(ts <= t && t < next) {
                break;
            }
            for case in cases.iter() {
                let mut got = rule_set.firing(&case.alertname);
                let mut exp: Vec<AlertView> = case
                    .exp_alerts
                    .iter()
                    .map(|a| expected_alert(&case.alertname, a))
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    failures.push(Failure::Alert {
                        group: tg.name.clone(),
                        alertname: case.alertname.clone(),
                        eval_time: case.eval_time,
                        exp,
                        got,
                    });
                }
            }
            pending.next();
        }
        ts = next;
    }

    for case in &tg.promql_expr_tests {
        if let Some(f) = check_expr(&db, case, &qopts) {
            failures.push(f);
        }
    }
    failures
}

fn load_rule_files(files: &[PathBuf]) -> Result<Vec<RuleFile>, Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        match RuleFile::load(f) {
            Ok(r) => out.push(r),
            Err(crate::config::ConfigError::RuleFile { file, errors }) => {
                return Err(errors
                    .iter()
                    .map(|e| format!("{}: {e}", file.display()))
                    .collect())
            }
            Err(e) => return Err(vec![e.to_string()]),
        }
    }
    Ok(out)
}

/// The expected alert with `alertname` added (as promtool adds it).
fn expected_alert(alertname: &str, a: &ExpAlert) -> AlertView {
    let mut labels: Vec<Label> = a
        .exp_labels
        .iter()
        .map(|(k, v)| Label::new(k.as_str(), v.as_str()))
        .collect();
    labels.retain(|l| l.name != "alertname");
    labels.push(Label::new("alertname", alertname));
    AlertView {
        labels: Labels::new(labels),
        annotations: a
            .exp_annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// One expression test: `None` when it passes.
fn check_expr(db: &Db, case: &PromqlTestCase, opts: &QueryOptions) -> Option<Failure> {
    let t = case.eval_time.as_millis();
    let result = match db.query_with(&case.expr, t, opts) {
        Ok(Value::Vector(v)) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Ok(Value::Scalar { v, .. }) => Ok(vec![(Labels::default(), v)]),
        Ok(_) => Err("rule result is not a vector or scalar".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut got: Vec<(Labels, f64)> = match result {
        Ok(g) => g,
        Err(error) => {
            return Some(Failure::ExprError {
                expr: case.expr.clone(),
                eval_time: case.eval_time,
                error,
            })
        }
    };
    let mut exp = Vec::with_capacity(case.exp_samples.len());
    for s in &case.exp_samples {
        match series_notation::parse_metric(&s.labels) {
            Ok(l) => exp.push((l, s.value)),
            Err(error) => {
                return Some(Failure::ExprLabels {
                    expr: case.expr.clone(),
                    eval_time: case.eval_time,
                    labels: s.labels.clone(),
                    error,
                })
            }
        }
    }
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // Go's reflect.DeepEqual: values compared with `==` (NaN never equal, -0 == 0).
    let equal =
        exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
    (!equal).then(|| Failure::ExprMismatch {
        expr: case.expr.clone(),
        eval_time: case.eval_time,
        exp,
        got,
    })
}

// ------------------------------------------------------------------ input series

/// The input series of a test group, appended to storage as evaluation time advances (promtool's
/// `LazyLoader`).
struct LazyInput {
    /// Each series' samples not yet appended, in time order.
    series: Vec<(Labels, std::collections::VecDeque<(i64, f64)>)>,
}

impl LazyInput {
    /// Reads the input series as promtool does: it writes a `load <interval>` command with one
    /// line `  <series> <values>` per entry, trims each line, and reads lines up to the first
    /// empty one (so an entry whose text is empty, or ends in a newline, ends the input there).
    /// A series given twice keeps its last values.
    fn parse(tg: &TestGroup) -> Result<LazyInput, NotationError> {
        let mut text = String::new();
        for s in &tg.input_series {
            text.push_str(&format!("  {} {}\n", s.series, s.values));
        }
        let step = tg.interval.as_millis();
        let mut defs: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        for line in text.split('\n') {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                break;
            }
            let d = series_notation::parse_series_desc(line)?;
            let mut samples = Vec::new();
            let mut t = 0i64;
            for v in &d.values {
                if let SequenceValue::Value(v) = v {
                    // Samples at the same time: the first one is stored (Prometheus' head drops
                    // the others at commit).
                    if samples.last().is_none_or(|&(last, _)| t > last) {
                        samples.push((t, *v));
                    }
                }
                t = t.saturating_add(step);
            }
            defs.insert(d.labels, samples);
        }
        Ok(LazyInput {
            series: defs
                .into_iter()
                .map(|(l, s)| (l, s.into_iter().collect()))
                .collect(),
        })
    }

    /// Appends every remaining sample at or before `ts`, in one transaction.
    fn append_till(&mut self, db: &Db, ts: i64) -> Result<(), String> {
        let mut app = db.appender();
        for (labels, samples) in &mut self.series {
            let mut id = None;
            while let Some(&(t, v)) = samples.front() {
                if t > ts {
                    break;
                }
                samples.pop_front();
                let r = match id {
                    Some(id) => app.append_id(id, t, v),
                    None => app.append(labels, t, v).map(|i| id = Some(i)),
                };
                if let Err(e) = r {
                    app.rollback();
                    return Err(e.to_string());
                }
            }
        }
        app.commit().map(|_| ()).map_err(|e| e.to_string())
    }
}

// ------------------------------------------------------------------ YAML

/// A string field: yaml.v2 decodes any scalar into a string (its text), and null as "".
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct GoString(String);

impl<'de> Deserialize<'de> for GoString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GoString, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = GoString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<GoString, E> {
                Ok(GoString(s.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<GoString, E> {
                Ok(GoString(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<GoString, E> {
                Ok(GoString::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Marks a decoder message that is yaml.v2's own wording (a type error), to be reported in its
/// `yaml: unmarshal errors:` form with the line.
const YAML_V2_TYPE_ERROR: &str = "yaml.v2 type error: ";

/// A float field: yaml.v2 decodes numbers (and null as 0) but refuses strings, `NaN` included
/// (YAML spells it `.nan`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct GoFloat(f64);

impl<'de> Deserialize<'de> for GoFloat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GoFloat, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = GoFloat;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<GoFloat, E> {
                Ok(GoFloat(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GoFloat, E> {
                Ok(GoFloat(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GoFloat, E> {
                Ok(GoFloat(v as f64))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<GoFloat, E> {
                Ok(GoFloat(0.0))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<GoFloat, E> {
                Err(E::custom(format!(
                    "{YAML_V2_TYPE_ERROR}cannot unmarshal !!str `{}` into float64",
                    go_truncate(s)
                )))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<GoFloat, E> {
                Err(E::custom(format!(
                    "{YAML_V2_TYPE_ERROR}cannot unmarshal !!bool `{v}` into float64"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// yaml.v2 shortens long values in type errors to their first 7 characters and " ...".
fn go_truncate(s: &str) -> String {
    if s.chars().count() > 10 {
        format!("{} ...", s.chars().take(7).collect::<String>())
    } else {
        s.to_string()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule_files: Option<Vec<GoString>>,
    #[serde(default)]
    evaluation_interval: Option<Duration>,
    #[serde(default)]
    group_eval_order: Option<Vec<GoString>>,
    #[serde(default)]
    tests: Option<Vec<RawTestGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestGroup {
    #[serde(default)]
    interval: Option<Duration>,
    #[serde(default)]
    input_series: Option<Vec<RawSeries>>,
    #[serde(default)]
    alert_rule_test: Option<Vec<RawAlertTest>>,
    #[serde(default)]
    promql_expr_test: Option<Vec<RawPromqlTest>>,
    #[serde(default)]
    external_labels: Option<BTreeMap<GoString, GoString>>,
    #[serde(default)]
    external_url: Option<GoString>,
    #[serde(default)]
    name: Option<GoString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    #[serde(default)]
    series: Option<GoString>,
    #[serde(default)]
    values: Option<GoString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    #[serde(default)]
    eval_time: Option<Duration>,
    #[serde(default)]
    alertname: Option<GoString>,
    #[serde(default)]
    exp_alerts: Option<Vec<RawAlert>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    #[serde(default)]
    exp_labels: Option<BTreeMap<GoString, GoString>>,
    #[serde(default)]
    exp_annotations: Option<BTreeMap<GoString, GoString>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromqlTest {
    #[serde(default)]
    expr: Option<GoString>,
    #[serde(default)]
    eval_time: Option<Duration>,
    #[serde(default)]
    exp_samples: Option<Vec<RawSample>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    #[serde(default)]
    labels: Option<GoString>,
    #[serde(default)]
    value: Option<GoFloat>,
}

/// The Go type promtool decodes a mapping into, named by the first field serde says it expected
/// (for yaml.v2's "field x not found in type main.T").
fn go_type_of(first_expected: &str) -> &'static str {
    match first_expected {
        "rule_files" => "main.unitTestFile",
        "interval" => "main.testGroup",
        "series" => "main.series",
        "eval_time" => "main.alertTestCase",
        "exp_labels" => "main.alert",
        "expr" => "main.promqlTestCase",
        "labels" => "main.sample",
        _ => "main.unknown",
    }
}

fn map_str(m: Option<BTreeMap<GoString, GoString>>) -> BTreeMap<String, String> {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.0, v.0))
        .collect()
}

impl UnitTestFile {
    /// Decodes a test file strictly, as promtool's `yaml.UnmarshalStrict`.
    pub fn parse(text: &str) -> Result<UnitTestFile, UnitTestError> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            // yaml.v2 decodes an empty document as the zero value.
            return Ok(UnitTestFile::default());
        }
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?;
        let strs = |v: Option<Vec<GoString>>| -> Vec<String> {
            v.unwrap_or_default().into_iter().map(|s| s.0).collect()
        };
        Ok(UnitTestFile {
            rule_files: strs(raw.rule_files),
            evaluation_interval: raw.evaluation_interval.unwrap_or_default(),
            group_eval_order: strs(raw.group_eval_order),
            tests: raw
                .tests
                .unwrap_or_default()
                .into_iter()
                .map(|t| TestGroup {
                    interval: t.interval.unwrap_or_default(),
                    input_series: t
                        .input_series
                        .unwrap_or_default()
                        .into_iter()
                        .map(|s| InputSeries {
                            series: s.series.unwrap_or_default().0,
                            values: s.values.unwrap_or_default().0,
                        })
                        .collect(),
                    alert_rule_tests: t
                        .alert_rule_test
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| AlertTestCase {
                            eval_time: a.eval_time.unwrap_or_default(),
                            alertname: a.alertname.unwrap_or_default().0,
                            exp_alerts: a
                                .exp_alerts
                                .unwrap_or_default()
                                .into_iter()
                                .map(|x| ExpAlert {
                                    exp_labels: map_str(x.exp_labels),
                                    exp_annotations: map_str(x.exp_annotations),
                                })
                                .collect(),
                        })
                        .collect(),
                    promql_expr_tests: t
                        .promql_expr_test
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| PromqlTestCase {
                            expr: p.expr.unwrap_or_default().0,
                            eval_time: p.eval_time.unwrap_or_default(),
                            exp_samples: p
                                .exp_samples
                                .unwrap_or_default()
                                .into_iter()
                                .map(|s| ExpSample {
                                    labels: s.labels.unwrap_or_default().0,
                                    value: s.value.unwrap_or_default().0,
                                })
                                .collect(),
                        })
                        .collect(),
                    external_labels: Labels::new(
                        map_str(t.external_labels)
                            .into_iter()
                            .map(|(k, v)| Label::new(k, v))
                            .collect(),
                    ),
                    external_url: t.external_url.unwrap_or_default().0,
                    name: t.name.unwrap_or_default().0,
                })
                .collect(),
        })
    }
}

/// A decoder error worded as yaml.v2's where promtool's wording is known: unknown keys and scalar
/// type errors as `yaml: unmarshal errors:\n  line N: ...`, a duration's own error bare (Go's
/// `model.Duration` returns it unwrapped); anything else as `yaml: line N: <serde's message>`.
fn yaml_error(e: &serde_yaml::Error) -> UnitTestError {
    let full = e.to_string();
    let line = e.location().map(|l| l.line());
    // serde_yaml writes "<path>: <message> at line L column C".
    let mut msg = full.as_str();
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        msg = msg.strip_suffix(suffix.as_str()).unwrap_or(msg);
    }
    let unwrap_path = |m: &str| -> String {
        // The path ("tests[0].interval: ") never contains ": " itself.
        match m.find(": ") {
            Some(i) if !m[..i].contains(' ') => m[i + 2..].to_string(),
            _ => m.to_string(),
        }
    };
    let line_str = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into());
    let message = if let Some(i) = msg.find(YAML_V2_TYPE_ERROR) {
        format!(
            "yaml: unmarshal errors:\n  line {line_str}: {}",
            &msg[i + YAML_V2_TYPE_ERROR.len()..]
        )
    } else if let Some(i) = msg.find("unknown field `") {
        let rest = &msg[i + "unknown field `".len()..];
        let field = rest.split('`').next().unwrap_or("");
        let first_expected = rest
            .split_once("expected ")
            .map(|(_, e)| e.trim_start_matches("one of ").trim_start_matches('`'))
            .and_then(|e| e.split('`').next())
            .unwrap_or("");
        format!(
            "yaml: unmarshal errors:\n  line {line_str}: field {field} not found in type {}",
            go_type_of(first_expected)
        )
    } else if msg.contains("not a valid duration string") {
        unwrap_path(msg)
    } else {
        format!("yaml: line {line_str}: {}", unwrap_path(msg))
    };
    UnitTestError::Yaml { line, message }
}

// ------------------------------------------------------------------ Go formatting

/// Go's error text for a failed `os.ReadFile` (the part after the path).
fn go_io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::IsADirectory => "is a directory".into(),
        _ => e.to_string(),
    }
}

/// Prometheus 2.42's `labels.Labels.String()`: every label, `__name__` included, sorted,
/// `{a="b", c="d"}` with Go quoting.
pub fn labels_string(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&lb.name);
        s.push('=');
        s.push_str(&go_quote(&lb.value));
    }
    s.push('}');
    s
}

fn pairs_string(p: &[(String, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in p.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&go_quote(v));
    }
    s.push('}');
    s
}

/// promtool's `labelsAndAnnotations.String()`.
fn alerts_string(a: &[AlertView]) -> String {
    if a.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[");
    for (i, al) in a.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let one = format!(
            "\nLabels:{}\nAnnotations:{}",
            labels_string(&al.labels),
            pairs_string(&al.annotations)
        );
        s.push_str(&format!("\n{i}:{}", indent_lines(&one, "  ")));
    }
    s.push_str("\n]");
    s
}

/// promtool's `indentLines`: every line but the first prefixed with `indent`.
fn indent_lines(lines: &str, indent: &str) -> String {
    let mut out = String::with_capacity(lines.len());
    for (i, l) in lines.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(indent);
        }
        out.push_str(l);
    }
    out
}

/// promtool's `parsedSamplesString`: `nil`, or `labels value` joined by ", ".
fn samples_string(s: &[(Labels, f64)]) -> String {
    if s.is_empty() {
        return "nil".into();
    }
    s.iter()
        .map(|(l, v)| format!("{} {}", labels_string(l), go_format_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`: shortest digits, `d.dddE±dd`.
pub fn go_format_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}E{sign}{:02}", exp.unsigned_abs())
}

/// Go's `time.Duration.String()` of a millisecond count (`1m0s`, `1h0m0s`, `1.5s`, `500ms`).
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if ms < 1000 {
        s.push_str(&format!("{ms}ms"));
        return s;
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let sec = (ms / 1000) % 60;
    let frac = ms % 1000;
    let secs = if frac == 0 {
        format!("{sec}s")
    } else {
        let f = format!("{frac:03}");
        format!("{sec}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        s.push_str(&format!("{h}h{m}m{secs}"));
    } else if m > 0 {
        s.push_str(&format!("{m}m{secs}"));
    } else {
        s.push_str(&secs);
    }
    s
}

#[cfg(test)]
mod tests;
