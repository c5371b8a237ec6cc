//! Warnings and infos: the annotations Prometheus 3 returns beside a query's result
//! (`util/annotations/annotations.go`), for the cases that apply to floats and classic histograms.
//!
//! They are part of what users see: the API's `warnings` and `infos` fields, and the upstream test
//! files' `expect warn`/`expect info` lines, which compare the full text. The texts and their
//! rules are Prometheus':
//! - an annotation is `PromQL warning: …` or `PromQL info: …` followed by ` (line:column)`, the
//!   position in the query of the expression that caused it (1-based column in bytes);
//! - annotations are deduplicated by their text without the position, the last one added keeping
//!   its position; the monotonicity info of `histogram_quantile` is merged instead, reporting the
//!   range of buckets and times over all the samples it was raised for;
//! - numbers are formatted as Go's `%g` (and `%.2g` for the monotonicity fix's largest
//!   difference).
//!
//! `promql-parser` keeps no positions in its AST, so [`positions`] recovers the start of every
//! expression node by walking the AST and the query's tokens side by side.

use super::functions::ForcedMonotonicity;
use promql_parser::parser::{Expr, LabelModifier};
use std::collections::HashMap;
use std::sync::Mutex;

const WARNING: &str = "PromQL warning";
const INFO: &str = "PromQL info";

/// A query's annotations, as Prometheus' API returns them: each a complete message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }
}

/// One annotation as the engine raises it.
#[derive(Clone, Debug)]
pub(crate) enum Anno {
    /// `quantile`, `quantile_over_time`, `histogram_quantile` with `q` outside `[0, 1]` or NaN.
    InvalidQuantile(f64),
    /// `limit_ratio` with a ratio outside `[-1, 1]`, capped to `to`.
    InvalidRatio { ratio: f64, to: f64 },
    /// `histogram_quantile`/`histogram_fraction` input whose `le` does not parse.
    BadBucketLabel { metric: String, le: String },
    /// `rate`/`increase` over a metric whose name does not look like a counter's.
    PossibleNonCounter { metric: String },
    /// `sort`, `sort_desc`, `sort_by_label(_desc)` evaluated over more than one step.
    SortInRangeQuery,
    /// `histogram_quantile` had to raise bucket counts that decreased, for `samples` samples
    /// (steps of one group) between `min_ts` and `max_ts` (milliseconds); `fix` spans them all.
    ForcedMonotonicity {
        metric: String,
        min_ts: i64,
        max_ts: i64,
        fix: ForcedMonotonicity,
        samples: usize,
    },
}

fn for_metric_name(text: String, metric: &str) -> String {
    if metric.is_empty() {
        text
    } else {
        format!("{text} for metric name {}", go_quote(metric))
    }
}

impl Anno {
    /// The text Prometheus deduplicates by (without the position), and whether it is a warning.
    fn key(&self) -> (String, bool) {
        match self {
            Anno::InvalidQuantile(q) => (
                format!(
                    "{WARNING}: quantile value should be between 0 and 1, got {}",
                    go_g(*q, None)
                ),
                true,
            ),
            Anno::InvalidRatio { ratio, to } => (
                format!(
                    "{WARNING}: ratio value should be between -1 and 1, got {}, capping to {}",
                    go_g(*ratio, None),
                    go_g(*to, None)
                ),
                true,
            ),
            Anno::BadBucketLabel { metric, le } => (
                for_metric_name(
                    format!(
                        "{WARNING}: bucket label \"le\" is missing or has a malformed value of {}",
                        go_quote(le)
                    ),
                    metric,
                ),
                true,
            ),
            Anno::PossibleNonCounter { metric } => (
                format!(
                    "{INFO}: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                    go_quote(metric)
                ),
                false,
            ),
            Anno::SortInRangeQuery => (
                format!(
                    "{WARNING}: sort is ineffective for range queries since results are always ordered by labels"
                ),
                true,
            ),
            Anno::ForcedMonotonicity { metric, .. } => (
                for_metric_name(
                    format!("{INFO}: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"),
                    metric,
                ),
                false,
            ),
        }
    }
}

/// Merges the monotonicity details of one more sample into `acc` (the evaluator gathers them per
/// group before raising one annotation, instead of one per step).
pub(crate) fn merge_forced(
    acc: &mut Option<(i64, i64, ForcedMonotonicity, usize)>,
    ts: i64,
    fix: ForcedMonotonicity,
) {
    match acc {
        None => *acc = Some((ts, ts, fix, 1)),
        Some((lo, hi, f, n)) => {
            *lo = (*lo).min(ts);
            *hi = (*hi).max(ts);
            if fix.min_bucket < f.min_bucket {
                f.min_bucket = fix.min_bucket;
            }
            if fix.max_bucket > f.max_bucket {
                f.max_bucket = fix.max_bucket;
            }
            if fix.max_diff > f.max_diff {
                f.max_diff = fix.max_diff;
            }
            *n += 1;
        }
    }
}

/// The monotonicity details merged over every sample the info was raised for.
#[derive(Clone, Copy, Debug)]
struct Merged {
    min_ts: i64,
    max_ts: i64,
    min_bucket: f64,
    max_bucket: f64,
    max_diff: f64,
    /// Samples beyond the first, as Prometheus counts them.
    count: usize,
}

#[derive(Debug)]
struct Entry {
    key: String,
    warning: bool,
    pos: usize,
    merged: Option<Merged>,
}

/// Collects annotations during one evaluation; shared by the evaluator's parallel workers (an
/// annotation is rare, so one lock is cheap).
#[derive(Debug, Default)]
pub(crate) struct Collector {
    entries: Mutex<Entries>,
}

/// Annotations in the order first raised, indexed by text.
#[derive(Debug, Default)]
struct Entries {
    list: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Collector {
    /// Adds `a`, raised by the expression starting at byte `pos` of the query.
    pub(crate) fn add(&self, a: Anno, pos: usize) {
        let (key, warning) = a.key();
        let merged = match a {
            Anno::ForcedMonotonicity {
                min_ts,
                max_ts,
                fix,
                samples,
                ..
            } => Some(Merged {
                min_ts,
                max_ts,
                min_bucket: fix.min_bucket,
                max_bucket: fix.max_bucket,
                max_diff: fix.max_diff,
                count: samples.saturating_sub(1),
            }),
            _ => None,
        };
        let mut entries = match self.entries.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = entries
            .index
            .get(&key)
            .copied()
            .and_then(|i| entries.list.get_mut(i))
        {
            match (&mut e.merged, merged) {
                (Some(o), Some(n)) => {
                    o.min_ts = o.min_ts.min(n.min_ts);
                    o.max_ts = o.max_ts.max(n.max_ts);
                    if n.min_bucket < o.min_bucket {
                        o.min_bucket = n.min_bucket;
                    }
                    if n.max_bucket > o.max_bucket {
                        o.max_bucket = n.max_bucket;
                    }
                    if n.max_diff > o.max_diff {
                        o.max_diff = n.max_diff;
                    }
                    o.count += n.count + 1;
                }
                // Plain annotations: the one added last stands (its position).
                _ => e.pos = pos,
            }
            return;
        }
        let i = entries.list.len();
        entries.index.insert(key.clone(), i);
        entries.list.push(Entry {
            key,
            warning,
            pos,
            merged,
        });
    }

    /// The messages, with positions in `query`, in the order first raised.
    pub(crate) fn finish(self, query: &str) -> Annotations {
        let entries = match self.entries.into_inner() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        let mut out = Annotations::default();
        for e in entries.list {
            let pos = line_col(query, e.pos);
            let text = match e.merged {
                None => format!("{} ({pos})", e.key),
                Some(m) => format!(
                    "{}, from buckets {} to {}, with a max diff of {}, over {} samples from {} to {} ({pos})",
                    e.key,
                    go_g(m.min_bucket, None),
                    go_g(m.max_bucket, None),
                    go_g(m.max_diff, Some(2)),
                    m.count + 1,
                    rfc3339_seconds(m.min_ts),
                    rfc3339_seconds(m.max_ts)
                ),
            };
            if e.warning {
                out.warnings.push(text);
            } else {
                out.infos.push(text);
            }
        }
        out
    }
}

/// Prometheus' `PositionRange.StartPosInput`: `line:column`, both 1-based, the column in bytes.
fn line_col(query: &str, pos: usize) -> String {
    let pos = pos.min(query.len());
    let before = query.as_bytes().get(..pos).unwrap_or_default();
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let last_break = before.iter().rposition(|&b| b == b'\n');
    let col = match last_break {
        Some(i) => pos - i,
        None => pos + 1,
    };
    format!("{line}:{col}")
}

/// Go's `time.Unix(ms/1000, 0).UTC().Format(time.RFC3339)`.
fn rfc3339_seconds(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = super::functions::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

use crate::gostr::quote as go_quote;

/// Go's `%g` (`prec` None: shortest representation) or `%.Ng` of a float.
pub(crate) fn go_g(v: f64, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let neg = v.is_sign_negative();
    let sign = if neg { "-" } else { "" };
    if v == 0.0 {
        return format!("{sign}0");
    }
    let a = v.abs();
    let sci = match prec {
        None => format!("{a:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, a),
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(|b| b.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let mut p = match prec {
        None => nd,
        Some(p) => p.max(1) as i32,
    };
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if prec.is_none() {
        eprec = 6;
    }
    let mut out = String::from(sign);
    if exp < -4 || exp >= eprec {
        p = p.min(nd);
        out.push(digits[0] as char);
        if p > 1 {
            out.push('.');
            for &d in &digits[1..p as usize] {
                out.push(d as char);
            }
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
        return out;
    }
    if p > dp {
        p = nd;
    }
    let decimals = (p - dp).max(0);
    let digit = |i: i32| -> char {
        if i >= 0 && i < nd {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if dp <= 0 {
        out.push('0');
    } else {
        for i in 0..dp {
            out.push(digit(i));
        }
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            out.push(digit(dp + i));
        }
    }
    out
}

// ------------------------------------------------------------------ positions

/// Start offsets (bytes) of the expression nodes of `ast`, keyed by node address (of the `Expr`
/// and, for calls, also of the `Call` inside it). Parsed from `query`; a node the walk cannot
/// place is absent (its annotations then point at the start of the query).
pub(crate) fn positions(query: &str, ast: &Expr) -> HashMap<usize, usize> {
    let mut w = Walker {
        s: query,
        toks: super::parse_error::tokens(query),
        i: 0,
        map: HashMap::new(),
    };
    w.expr(ast, 0);
    w.map
}

/// Address of a node, the key of [`positions`].
pub(crate) fn node_key<T>(n: &T) -> usize {
    n as *const T as usize
}

struct Walker<'a> {
    s: &'a str,
    toks: Vec<(usize, usize)>,
    i: usize,
    map: HashMap<usize, usize>,
}

/// Deep enough for any real query; guards the recursion against hostile nesting.
const MAX_DEPTH: usize = 512;

impl Walker<'_> {
    fn peek_at(&self, i: usize) -> &str {
        self.toks
            .get(i)
            .and_then(|&(a, b)| self.s.get(a..b))
            .unwrap_or("")
    }
    fn peek(&self) -> &str {
        self.peek_at(self.i)
    }
    /// Whether the current token is one of the keywords (PromQL keywords ignore case).
    fn at_keyword(&self, words: &[&str]) -> bool {
        let t = self.peek();
        words.iter().any(|w| t.eq_ignore_ascii_case(w))
    }
    fn skip_signs(&mut self) {
        while matches!(self.peek(), "-" | "+") {
            self.bump();
        }
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.s.len(), |t| t.0)
    }
    fn bump(&mut self) {
        if self.i < self.toks.len() {
            self.i += 1;
        }
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.peek().eq_ignore_ascii_case(t) {
            self.bump();
            true
        } else {
            false
        }
    }
    /// At an opening bracket: moves past its matching closer.
    fn skip_group(&mut self) {
        let mut depth = 0usize;
        while self.i < self.toks.len() {
            match self.peek() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
            if depth == 0 {
                return;
            }
        }
    }
    /// A number or duration, with the signs the parser folded into it; `1e-3` is three tokens
    /// here.
    fn number(&mut self) {
        self.skip_signs();
        let word_end = self.toks.get(self.i).map(|t| t.1);
        let ends_in_e = self.peek().ends_with(['e', 'E']);
        self.bump();
        if let (true, Some(end)) = (ends_in_e, word_end) {
            let adjacent = |i: usize, at: usize| self.toks.get(i).is_some_and(|t| t.0 == at);
            if matches!(self.peek(), "-" | "+") && adjacent(self.i, end) {
                let sign_end = end + 1;
                if adjacent(self.i + 1, sign_end) {
                    self.i += 2;
                }
            }
        }
    }
    fn modifiers(&mut self) {
        loop {
            let offset = self.at_keyword(&["offset"]);
            match self.peek() {
                _ if offset => {
                    self.bump();
                    self.number();
                }
                "@" => {
                    self.bump();
                    if self.at_keyword(&["start", "end"]) {
                        self.bump();
                        if self.peek() == "(" {
                            self.skip_group();
                        }
                    } else {
                        self.number();
                    }
                }
                _ => return,
            }
        }
    }
    fn selector_head(&mut self) {
        if self.peek() != "{" {
            self.bump();
        }
        if self.peek() == "{" {
            self.skip_group();
        }
    }
    fn grouping(&mut self) {
        if self.at_keyword(&["by", "without"]) {
            self.bump();
            if self.peek() == "(" {
                self.skip_group();
            }
        }
    }
    fn expr(&mut self, e: &Expr, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let start = self.pos();
        // Signs the parser folded away (`+x`, `- -x`): the node starts at them, as in Prometheus.
        if !matches!(e, Expr::Binary(_) | Expr::NumberLiteral(_) | Expr::Unary(_)) {
            self.skip_signs();
        }
        self.map.insert(node_key(e), start);
        match e {
            Expr::NumberLiteral(_) => self.number(),
            Expr::StringLiteral(_) => self.bump(),
            Expr::Paren(p) => {
                self.eat("(");
                self.expr(&p.expr, depth + 1);
                self.eat(")");
            }
            Expr::Unary(u) => {
                self.bump();
                self.expr(&u.expr, depth + 1);
            }
            Expr::VectorSelector(_) => {
                self.selector_head();
                self.modifiers();
            }
            Expr::MatrixSelector(_) => {
                self.selector_head();
                self.modifiers();
                if self.peek() == "[" {
                    self.skip_group();
                }
                self.modifiers();
            }
            Expr::Subquery(sq) => {
                self.expr(&sq.expr, depth + 1);
                if self.peek() == "[" {
                    self.skip_group();
                }
                self.modifiers();
            }
            Expr::Binary(b) => {
                self.expr(&b.lhs, depth + 1);
                self.bump();
                self.eat("bool");
                // on/ignoring, group_left/right and the experimental fill modifiers, each with
                // an optional parenthesised list.
                while self.at_keyword(&[
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                    "fill",
                    "fill_left",
                    "fill_right",
                ]) {
                    self.bump();
                    if self.peek() == "(" {
                        self.skip_group();
                    }
                }
                self.expr(&b.rhs, depth + 1);
            }
            Expr::Aggregate(a) => {
                self.bump();
                if matches!(
                    a.modifier,
                    Some(LabelModifier::Include(_) | LabelModifier::Exclude(_))
                ) {
                    self.grouping();
                }
                self.eat("(");
                if let Some(p) = &a.param {
                    self.expr(p, depth + 1);
                    self.eat(",");
                }
                self.expr(&a.expr, depth + 1);
                self.eat(")");
                self.grouping();
            }
            Expr::Call(c) => {
                self.map.insert(node_key(c), start);
                self.bump();
                let open = self.i;
                if !self.eat("(") {
                    return;
                }
                for a in &c.args.args {
                    if self.peek() == ")" || self.peek().is_empty() {
                        break;
                    }
                    self.expr(a, depth + 1);
                    self.eat(",");
                }
                if !self.eat(")") {
                    // Out of step with the source (an argument the parser added or rewrote):
                    // resynchronise at the call's closing parenthesis.
                    self.i = open;
                    self.skip_group();
                }
            }
            Expr::Extension(_) => self.bump(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g_formats_like_go() {
        let cases: &[(f64, Option<usize>, &str)] = &[
            (1.1, None, "1.1"),
            (-1.0, None, "-1"),
            (f64::NAN, None, "NaN"),
            (1e6, None, "1e+06"),
            (123456.0, None, "123456"),
            (1234567.0, None, "1.234567e+06"),
            (0.0001, None, "0.0001"),
            (0.00001, None, "1e-05"),
            (f64::INFINITY, None, "+Inf"),
            (5.0, Some(2), "5"),
            (12.0, Some(2), "12"),
            (123.0, Some(2), "1.2e+02"),
            (0.5, Some(2), "0.5"),
            (0.25, Some(2), "0.25"),
            (0.123, Some(2), "0.12"),
            (1e-7, Some(2), "1e-07"),
        ];
        for &(v, p, want) in cases {
            assert_eq!(go_g(v, p), want, "{v} {p:?}");
        }
    }

    #[test]
    fn positions_of_nodes() {
        let q = "count(limit_ratio(-1.1, http_requests)) + on(a) group_left\n  rate(foo{a=\"(\"}[5m] offset 1m)";
        let ast = promql_parser::parser::parse(q).unwrap();
        let pos = positions(q, &ast);
        let Expr::Binary(b) = &ast else { panic!() };
        let Expr::Aggregate(count) = &*b.lhs else {
            panic!()
        };
        let Expr::Aggregate(lr) = &*count.expr else {
            panic!()
        };
        let param = lr.param.as_deref().unwrap();
        assert_eq!(line_col(q, pos[&node_key(param)]), "1:19");
        let Expr::Call(rate) = &*b.rhs else { panic!() };
        assert_eq!(line_col(q, pos[&node_key(rate)]), "2:3");
        assert_eq!(line_col(q, pos[&node_key(&*rate.args.args[0])]), "2:8");
    }

    /// The walk stays in step with the source: it ends on the last token. (Checked once over all
    /// 1913 expressions of the upstream test files that `promql-parser` parses.)
    #[test]
    fn walker_consumes_every_token() {
        for q in [
            "SUM BY (group) (((http_requests{job=\"api-server\"})))",
            "SUM(http_requests) BY (job, nonexistent) - COUNT(x) BY (job)",
            "-10^3 * - SUM(http_requests_total) BY (job) ^ -1",
            "- - - 1",
            "2/-2^---1*3+2",
            "x AND IGNORING (group, instance, job) vector(1)",
            "requests + on(status) group_left(owner) fill_right(0) limits",
            "rate(x[5m:1m] offset -1m @ start()) > bool 1e-3",
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket{a=~\"(x|y)\"}[5m] @ 100)))",
            "count_values(\"v\", x) # a comment",
            "time() + year() + label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
        ] {
            let ast = promql_parser::parser::parse(q).unwrap();
            let mut w = Walker {
                s: q,
                toks: super::super::parse_error::tokens(q),
                i: 0,
                map: HashMap::new(),
            };
            w.expr(&ast, 0);
            assert_eq!(w.i, w.toks.len(), "{q}");
        }
    }

    #[test]
    fn duplicates_keep_one_and_monotonicity_merges() {
        let c = Collector::default();
        c.add(Anno::InvalidQuantile(2.0), 0);
        c.add(Anno::InvalidQuantile(2.0), 4);
        let fix = |lo: f64, hi: f64, d: f64| ForcedMonotonicity {
            min_bucket: lo,
            max_bucket: hi,
            max_diff: d,
        };
        let metric = "x_bucket".to_string();
        c.add(
            Anno::ForcedMonotonicity {
                metric: metric.clone(),
                min_ts: 60_000,
                max_ts: 60_000,
                fix: fix(1.0, 2.0, 0.5),
                samples: 1,
            },
            2,
        );
        c.add(
            Anno::ForcedMonotonicity {
                metric,
                min_ts: 120_000,
                max_ts: 180_000,
                fix: fix(0.5, 1.0, 3.0),
                samples: 2,
            },
            2,
        );
        let a = c.finish("abcdef");
        assert_eq!(
            a.warnings,
            ["PromQL warning: quantile value should be between 0 and 1, got 2 (1:5)"]
        );
        assert_eq!(a.infos, ["PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"x_bucket\", from buckets 0.5 to 2, with a max diff of 3, over 3 samples from 1970-01-01T00:01:00Z to 1970-01-01T00:03:00Z (1:3)"]);
    }
}
