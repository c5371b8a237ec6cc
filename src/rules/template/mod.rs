//! Go `text/template` expansion of alert labels and annotations, as Prometheus 2.42 does it
//! (`template/template.go`, `rules/alerting.go`): the template text is prefixed with
//! `{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`,
//! parsed with Prometheus' function map, and executed with `missingkey=zero` over the alert's
//! data (`.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value`).
//!
//! Supported: the whole action syntax of Go's `text/template` (text, `{{- -}}` trim markers,
//! comments, pipelines, parenthesized arguments, `:=`/`=` variables, fields and map keys,
//! `if`/`else if`/`else`, `range` with `else`/`break`/`continue` over query results and label
//! maps (sorted keys), `with`, `define`/`template`/`block`, every literal kind); Go's builtins
//! (`and or not len index slice print printf println eq ne lt le gt ge html js urlquery call`);
//! Prometheus' functions (`query first label value strvalue sortByLabel args reReplaceAll
//! safeHtml match title toUpper toLower graphLink tableLink stripPort stripDomain humanize
//! humanize1024 humanizeDuration humanizePercentage humanizeTimestamp toTime pathPrefix
//! externalURL parseDuration`), and the methods of the `*time.Time` that `toTime` returns
//! (`Format` with Go's layouts, `Unix`, `UnixMilli`, `Year`, `Month`, `Day`, ...). Values print
//! as Go's `fmt` prints them (`{{ $value }}` of 1e6 is `1e+06`; `printf` verbs, flags, width,
//! precision, `%[n]` indexes and the `%!d(string=x)` error forms). Not supported: other
//! methods, hex float literals, complex numbers; an unsigned literal above `int64` becomes a
//! float64. Nesting is limited to 100 levels and an expansion to 1 MiB of output and 10^6 steps
//! (Go: 10000 levels, unbounded) so that no input exhausts a worker's stack or memory.
//!
//! Checked against Prometheus 2.42 itself: the tests pin `template_test.go`'s cases and the
//! expansions and messages `promtool test rules` / `promtool check rules` print.
//!
//! Why our own engine: the Rust ports of Go templates (`gtmpl`, last release 2021; `gotmpl`)
//! model data as untyped maps, so a missing label prints `<no value>` where Prometheus'
//! `map[string]string` with `missingkey=zero` prints "" (the common `{{ $labels.x }}` case),
//! their functions must be `'static` (no borrowed query runner per evaluation), and alert text
//! depends on Go's exact float printing (`1e+06`, `%.4g` in `humanize`), which lives in
//! the `gofmt` submodule here.

mod exec;
mod funcs;
mod gofmt;
mod parse;
mod value;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regex::Regex;

use crate::labels::Labels;

/// What a template sees: `$labels`/`.Labels`, `$externalLabels`/`.ExternalLabels`,
/// `$externalURL`/`.ExternalURL`, `$value`/`.Value` (Prometheus' rule template data).
#[derive(Debug)]
pub struct TemplateData<'a> {
    pub labels: &'a Labels,
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
    pub value: f64,
}

/// One sample returned by the template function `query` (an instant query at the evaluation time).
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    pub labels: Labels,
    pub value: f64,
}

/// Runs the PromQL of `{{ query "..." }}`; the caller evaluates it at the rule's evaluation time.
pub trait QueryFn {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String>;
}

/// A template that cannot be parsed or executed. `Display` is Go's message: a parse error
/// reads `template: NAME:LINE: message` (what Prometheus' rule file check reports), an
/// execution error `error executing template NAME: template: NAME:LINE:COL: executing "NAME"
/// at <COMMAND>: message` (what Prometheus puts in `<error expanding template: ...>`). Lines
/// and columns count the variable definitions Prometheus prepends, as Prometheus' do.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template: {name}:{line}: {msg}")]
    Parse {
        name: String,
        line: usize,
        msg: String,
    },
    #[error("error executing template {name}: template: {name}:{line}:{col}: executing \"{name}\" at <{context}>: {msg}")]
    Exec {
        name: String,
        line: usize,
        col: usize,
        context: String,
        msg: String,
    },
}

/// The definitions Prometheus prepends to every alert label and annotation template.
const ALERT_DEFS: &str =
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// Compiled `reReplaceAll`/`match` patterns, shared by the clones of a template.
#[derive(Default)]
pub(crate) struct RegexCache(Mutex<HashMap<String, Regex>>);

/// Distinct patterns kept per template (templates build patterns from labels rarely).
const REGEX_CACHE_MAX: usize = 64;

impl RegexCache {
    fn get(&self, pattern: &str) -> Result<Regex, String> {
        if let Ok(m) = self.0.lock() {
            if let Some(r) = m.get(pattern) {
                return Ok(r.clone());
            }
        }
        // Go's regexp (RE2) and the regex crate share the syntax Prometheus users write.
        let re = Regex::new(pattern).map_err(|e| {
            // The regex crate's message spans lines; its last line names the problem.
            let msg = e.to_string();
            let last = msg.lines().last().unwrap_or("").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            format!("regexp: Compile(`{pattern}`): error parsing regexp: {last}")
        })?;
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= REGEX_CACHE_MAX {
                m.clear();
            }
            m.insert(pattern.to_string(), re.clone());
        }
        Ok(re)
    }
}

/// A parsed template: parsed once when the rule is loaded, expanded at every evaluation.
#[derive(Clone)]
pub struct Template {
    name: Arc<str>,
    /// The text as parsed (with the prepended definitions), for error positions.
    text: Arc<str>,
    tree: Arc<parse::Tree>,
    regexes: Arc<RegexCache>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .field("text", &self.text)
            .finish()
    }
}

/// 1-based line and 0-based byte column of `pos`, as Go's `ErrorContext`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.as_bytes().get(..pos).unwrap_or(&[]);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(pos, |i| pos - i - 1);
    (line, col)
}

impl Template {
    /// Parses an alert label or annotation template named `name` (Prometheus names them
    /// `__alert_<alertname>`), with Prometheus' variable definitions prepended.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let full = format!("{ALERT_DEFS}{text}");
        let tree = parse::parse(&full, funcs::exists).map_err(|e| TemplateError::Parse {
            name: name.to_string(),
            line: line_col(&full, e.pos).0,
            msg: e.msg,
        })?;
        Ok(Template {
            name: name.into(),
            text: full.into(),
            tree: Arc::new(tree),
            regexes: Arc::default(),
        })
    }

    /// Executes the template over `data`; `{{ query }}` runs through `query`.
    pub fn expand(
        &self,
        data: &TemplateData<'_>,
        query: &dyn QueryFn,
    ) -> Result<String, TemplateError> {
        let ctx = funcs::Ctx {
            query,
            external_url: data.external_url,
            regexes: &self.regexes,
        };
        let mut ex = exec::Exec::new(
            &self.tree,
            &ctx,
            self.text.len().saturating_sub(ALERT_DEFS.len()) + 16,
        );
        match ex.run(value::Value::Data(data)) {
            Ok(()) => Ok(ex.out),
            Err(f) => {
                let (line, col) = line_col(&self.text, f.pos);
                Err(TemplateError::Exec {
                    name: self.name.to_string(),
                    line,
                    col,
                    context: f.context,
                    msg: f.msg,
                })
            }
        }
    }
}

/// parse + expand in one call.
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData<'_>,
    query: &dyn QueryFn,
) -> Result<String, TemplateError> {
    Template::parse(name, text)?.expand(data, query)
}

/// A query runner with a fixed answer, for the fuzz body.
struct FixedQuery(Vec<QuerySample>);

impl QueryFn for FixedQuery {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        if expr.contains("fail") {
            return Err("query failed".into());
        }
        Ok(self.0.clone())
    }
}

/// Fuzz body: parse arbitrary bytes as a template and expand it; must never panic.
#[doc(hidden)]
pub fn fuzz_template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(t) = Template::parse("__alert_fuzz", &text) else {
        return;
    };
    let labels = Labels::from_pairs(&[("instance", "host.example.com:9100"), ("job", "node")]);
    let ext = Labels::from_pairs(&[("cluster", "a")]);
    let q = FixedQuery(vec![
        QuerySample {
            labels: Labels::from_pairs(&[("instance", "b"), ("__value__", "2")]),
            value: 2.0,
        },
        QuerySample {
            labels: Labels::from_pairs(&[("instance", "a")]),
            value: 0.5,
        },
    ]);
    let d = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "http://localhost:9090/prom",
        value: 1e6,
    };
    let _ = t.expand(&d, &q);
}

#[cfg(test)]
mod tests;
