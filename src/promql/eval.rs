//! The evaluator: walks the `promql-parser` AST over a grid of steps (Prometheus' `evaluator`).
//!
//! Every instant-vector node yields [`Col`]s: a series' labels and one optional value per step.
//! Scalars are one value per step. Range vectors (matrix selectors, subqueries) are raw samples
//! plus the window rule, consumed by range-vector functions window by window.

use super::annotations::{self, node_key, Anno, Collector};
use super::functions::{self as f, Bucket};
use super::{
    QueryError, QueryOptions, QueryResult, RangeSeries, Sample, Value, MAX_POINTS_PER_SERIES,
};
use crate::chunk::{decode_xor_into, STALE_NAN_BITS, XOR_HEADER_LEN};
use crate::db::Db;
use crate::labels::{Label, Labels, MatchType, Matcher, METRIC_NAME};
use promql_parser::label::MatchOp;
use promql_parser::parser::token::*;
use promql_parser::parser::{
    self, AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, Offset,
    VectorMatchCardinality, VectorSelector,
};
use rayon::prelude::*;
use std::hash::{BuildHasher, Hasher};

/// The evaluator's maps are keyed by label sets and small integers of one query: foldhash is
/// several times cheaper than SipHash on them (label-set hashing was ~4% of evaluating 1,000
/// recording rules) and hash flooding is not a concern for keys the query's own data produces.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

type R<T> = Result<T, QueryError>;

/// A selected series: labels and samples in time order.
type Selected = (Labels, Vec<(i64, f64)>);

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(QueryError::Eval(msg.into()))
}

/// An instant-vector series over the steps of the current grid.
#[derive(Clone, Debug)]
pub(crate) struct Col {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
    /// Prometheus 3's delayed name removal: drop `__name__` at the end of evaluation.
    pub drop_name: bool,
}

/// A range-vector series: raw samples in time order.
#[derive(Clone, Debug)]
struct RSeries {
    labels: Labels,
    pts: Vec<(i64, f64)>,
    drop_name: bool,
}

/// A range vector with its window rule: at step time t the window is `(r - range, r]` with
/// `r = at.unwrap_or(t) - offset`.
struct RangeVec {
    series: Vec<RSeries>,
    range: i64,
    offset: i64,
    at: Option<i64>,
}

enum Val {
    Vector(Vec<Col>),
    Scalar(Vec<f64>),
    Str(String),
    Range(RangeVec),
}

/// The step grid of one evaluation (the query's, or a subquery's).
#[derive(Clone, Copy, Debug)]
struct Grid {
    start: i64,
    end: i64,
    step: i64,
}

impl Grid {
    fn len(&self) -> usize {
        ((self.end - self.start) / self.step + 1) as usize
    }
    fn t(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

struct Ev<'a> {
    db: &'a Db,
    opts: &'a QueryOptions,
    /// The query's own start and end, for `@ start()` and `@ end()`.
    qstart: i64,
    qend: i64,
    /// The query's step; 0 for an instant query (`step()`).
    qstep: i64,
    samples: AtomicUsize,
    deadline: Option<Instant>,
    /// Start offsets in the query of the AST's nodes, for the annotations' positions.
    positions: std::collections::HashMap<usize, usize>,
    annos: Collector,
}

/// Formats labels as Go's `labels.Labels.String()` does (used in Prometheus' error messages).
pub fn format_labels_go(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, lb) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&lb.name);
        s.push('=');
        s.push_str(&format!("{:?}", lb.value));
    }
    s.push('}');
    s
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Decoding one chunk is about this many units of work (Prometheus cuts chunks at 120 samples;
/// a unit is of the order of one step of one series).
const DECODE_WORK_PER_CHUNK: usize = 120;

/// `items.map(f)` in order, in parallel only when `work` reaches `min`
/// ([`QueryOptions::parallel_min_work`]).
fn par_map<T: Send, U: Send>(
    items: Vec<T>,
    work: usize,
    min: usize,
    f: impl Fn(T) -> U + Sync + Send,
) -> Vec<U> {
    if work >= min {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

pub(crate) fn run(
    db: &Db,
    expr: &str,
    start: i64,
    end: i64,
    step: i64,
    is_range: bool,
    opts: &QueryOptions,
) -> R<QueryResult> {
    let ast = parse(expr)?;
    run_parsed(db, expr, &ast, start, end, step, is_range, opts)
}

/// Parses `expr` as [`run`] does, with Prometheus' wording of a syntax error.
pub(crate) fn parse(expr: &str) -> R<Expr> {
    super::parse_error::parse(expr)
        .map_err(|m| QueryError::Parse(super::parse_error::describe(expr, &m)))
}

/// [`run`] of an expression parsed already: `expr` is its text, for the annotations' positions.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_parsed(
    db: &Db,
    expr: &str,
    ast: &Expr,
    start: i64,
    end: i64,
    step: i64,
    is_range: bool,
    opts: &QueryOptions,
) -> R<QueryResult> {
    if is_range {
        if (end - start) / step > MAX_POINTS_PER_SERIES {
            return err("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
        }
        match ast.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            t => {
                return err(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_name(t)
            ))
            }
        }
    }
    let ev = Ev {
        db,
        opts,
        qstart: start,
        qend: end,
        qstep: if is_range { step } else { 0 },
        samples: AtomicUsize::new(0),
        deadline: opts.timeout.map(|d| Instant::now() + d),
        positions: annotations::positions(expr, ast),
        annos: Collector::default(),
    };
    let grid = Grid { start, end, step };
    let v = ev.eval(ast, grid)?;
    let value = finish_value(v, grid, is_range)?;
    Ok(QueryResult {
        value,
        annotations: ev.annos.finish(expr),
    })
}

/// The evaluator's value as the query's result: name removal, and a range query's matrix.
fn finish_value(v: Val, grid: Grid, is_range: bool) -> R<Value> {
    let start = grid.start;
    match v {
        Val::Scalar(s) => {
            if is_range {
                let points = s.iter().enumerate().map(|(i, &v)| (grid.t(i), v)).collect();
                Ok(Value::Matrix(vec![RangeSeries {
                    labels: Labels::default(),
                    points,
                }]))
            } else {
                Ok(Value::Scalar {
                    t: start,
                    v: s.first().copied().unwrap_or(f64::NAN),
                })
            }
        }
        Val::Str(s) => Ok(Value::String { t: start, s }),
        Val::Range(r) => {
            let series = finish_range(r.series)?;
            Ok(Value::Matrix(series))
        }
        Val::Vector(cols) => {
            let cols = drop_names(cols)?;
            if is_range {
                let mut out: Vec<RangeSeries> = cols
                    .into_iter()
                    .map(|c| RangeSeries {
                        points: c
                            .vals
                            .iter()
                            .enumerate()
                            .filter_map(|(i, v)| v.map(|v| (grid.t(i), v)))
                            .collect(),
                        labels: c.labels,
                    })
                    .filter(|s| !s.points.is_empty())
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Value::Matrix(out))
            } else {
                Ok(Value::Vector(
                    cols.into_iter()
                        .filter_map(|c| {
                            c.vals.first().copied().flatten().map(|v| Sample {
                                labels: c.labels,
                                t: start,
                                v,
                            })
                        })
                        .collect(),
                ))
            }
        }
    }
}

fn type_name(t: parser::value::ValueType) -> &'static str {
    match t {
        parser::value::ValueType::Vector => "instant vector",
        parser::value::ValueType::Scalar => "scalar",
        parser::value::ValueType::Matrix => "range vector",
        parser::value::ValueType::String => "string",
    }
}

fn drop_name_labels(l: &Labels) -> Labels {
    if l.get(METRIC_NAME).is_some() {
        l.without_metric_name()
    } else {
        l.clone()
    }
}

/// Applies delayed name removal and merges series that became equal; overlapping points fail.
fn drop_names(cols: Vec<Col>) -> R<Vec<Col>> {
    let mut out: Vec<Col> = Vec::with_capacity(cols.len());
    let mut index: HashMap<Labels, usize> = HashMap::default();
    let any_drop = cols.iter().any(|c| c.drop_name);
    for mut c in cols {
        if c.vals.iter().all(|v| v.is_none()) {
            continue;
        }
        if c.drop_name {
            c.labels = drop_name_labels(&c.labels);
        }
        if !any_drop {
            out.push(c);
            continue;
        }
        match index.get(&c.labels) {
            Some(&i) => {
                let dst = &mut out[i];
                for (d, s) in dst.vals.iter_mut().zip(c.vals) {
                    if let Some(v) = s {
                        if d.is_some() {
                            return err("vector cannot contain metrics with the same labelset");
                        }
                        *d = Some(v);
                    }
                }
            }
            None => {
                index.insert(c.labels.clone(), out.len());
                out.push(c);
            }
        }
    }
    Ok(out)
}

fn finish_range(series: Vec<RSeries>) -> R<Vec<RangeSeries>> {
    let mut out: Vec<RangeSeries> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::default();
    for s in series {
        if s.pts.is_empty() {
            continue;
        }
        let labels = if s.drop_name {
            drop_name_labels(&s.labels)
        } else {
            s.labels
        };
        match index.get(&labels) {
            Some(&i) => {
                out[i].points.extend(s.pts);
                out[i].points.sort_by_key(|p| p.0);
                if out[i].points.windows(2).any(|w| w[0].0 == w[1].0) {
                    return err("vector cannot contain metrics with the same labelset");
                }
            }
            None => {
                index.insert(labels.clone(), out.len());
                out.push(RangeSeries {
                    labels,
                    points: s.pts,
                });
            }
        }
    }
    Ok(out)
}

/// Collects output columns by label set; a second value at the same step is an error.
struct OutBuilder {
    cols: Vec<Col>,
    index: HashMap<Labels, usize>,
    n: usize,
}

impl OutBuilder {
    fn new(n: usize) -> OutBuilder {
        OutBuilder {
            cols: Vec::new(),
            index: HashMap::default(),
            n,
        }
    }
    fn idx(&mut self, labels: Labels, drop_name: bool) -> usize {
        if let Some(&i) = self.index.get(&labels) {
            self.cols[i].drop_name |= drop_name;
            return i;
        }
        let i = self.cols.len();
        self.index.insert(labels.clone(), i);
        self.cols.push(Col {
            labels,
            vals: vec![None; self.n],
            drop_name,
        });
        i
    }
    fn set(&mut self, i: usize, step: usize, v: f64) -> R<()> {
        let slot = &mut self.cols[i].vals[step];
        if slot.is_some() {
            return err("vector cannot contain metrics with the same labelset");
        }
        *slot = Some(v);
        Ok(())
    }
}

/// Converts a parser matcher into ours: regexes get Prometheus 3's `(?s)` anchoring.
fn to_matcher(m: &promql_parser::label::Matcher) -> R<Matcher> {
    let kind = match m.op {
        MatchOp::Equal => MatchType::Equal,
        MatchOp::NotEqual => MatchType::NotEqual,
        MatchOp::Re(_) => MatchType::Regexp,
        MatchOp::NotRe(_) => MatchType::NotRegexp,
    };
    Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| QueryError::Eval(e.to_string()))
}

fn selector_matchers(vs: &VectorSelector) -> R<Vec<Vec<Matcher>>> {
    let mut base: Vec<Matcher> = Vec::new();
    if let Some(n) = &vs.name {
        base.push(Matcher::equal(METRIC_NAME, n.clone()));
    }
    for m in &vs.matchers.matchers {
        base.push(to_matcher(m)?);
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    let mut out = Vec::new();
    for group in &vs.matchers.or_matchers {
        let mut ms = base.clone();
        for m in group {
            ms.push(to_matcher(m)?);
        }
        out.push(ms);
    }
    Ok(out)
}

/// A series' samples in `[mint, maxt]`. Chunks are decoded directly by the batch decoder (chunks
/// inside the range without the time bounds) into a vector sized from the chunk headers. A chunk
/// that fails to decode ends at the failure, as the querier's iterator does.
fn decode(s: &crate::querier::Series, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
    let sel = s
        .chunks()
        .iter()
        .filter(|c| c.max_t >= mint && c.min_t <= maxt);
    let n: usize = sel
        .clone()
        .filter_map(|c| c.data.first_chunk::<XOR_HEADER_LEN>())
        .map(|h| usize::from(u16::from_be_bytes(*h)))
        .sum();
    let mut out = Vec::with_capacity(n);
    for c in sel {
        let (lo, hi) = if c.min_t >= mint && c.max_t <= maxt {
            (i64::MIN, i64::MAX)
        } else {
            (mint, maxt)
        };
        // The samples before a decoding error are kept, as with the querier's iterator.
        let _ = decode_xor_into(&c.data, lo, hi, &mut out);
    }
    out
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        e => e,
    }
}

impl Ev<'_> {
    fn check(&self) -> R<()> {
        if let Some(d) = self.deadline {
            if Instant::now() > d {
                return Err(QueryError::Timeout);
            }
        }
        if let Some(c) = &self.opts.cancel {
            if c.load(Ordering::Relaxed) {
                return Err(QueryError::Canceled);
            }
        }
        Ok(())
    }

    /// Start offset in the query of an AST node (of an `Expr`, or a `Call` inside one).
    fn pos<T>(&self, node: &T) -> usize {
        self.positions.get(&node_key(node)).copied().unwrap_or(0)
    }

    fn annotate(&self, a: Anno, pos: usize) {
        self.annos.add(a, pos);
    }

    /// The invalid-quantile warnings of `quantile(q, ...)` (Prometheus checks the parameter's
    /// NaN, maximum and minimum over all steps, once).
    fn check_quantile_param(&self, qs: &[f64], pos: usize) {
        let (min, max) = param_min_max(qs);
        if qs.iter().any(|q| q.is_nan()) {
            self.annotate(Anno::InvalidQuantile(f64::NAN), pos);
        }
        if max > 1.0 {
            self.annotate(Anno::InvalidQuantile(max), pos);
        }
        if min < 0.0 {
            self.annotate(Anno::InvalidQuantile(min), pos);
        }
    }

    fn add_samples(&self, n: usize) -> R<()> {
        let total = self.samples.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.opts.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.qstart),
            Some(AtModifier::End) => Some(self.qend),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    fn eval(&self, e: &Expr, g: Grid) -> R<Val> {
        self.check()?;
        let n = g.len();
        match e {
            Expr::NumberLiteral(l) => Ok(Val::Scalar(vec![l.val; n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, g),
            Expr::Unary(u) => match self.eval(&u.expr, g)? {
                Val::Scalar(mut s) => {
                    s.iter_mut().for_each(|v| *v = -*v);
                    Ok(Val::Scalar(s))
                }
                Val::Vector(mut cols) => {
                    for c in cols.iter_mut() {
                        c.vals.iter_mut().flatten().for_each(|v| *v = -*v);
                        c.drop_name = true;
                    }
                    Ok(Val::Vector(cols))
                }
                _ => err(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                ),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, g, false)?)),
            Expr::MatrixSelector(ms) => {
                let offset = offset_ms(&ms.vs.offset);
                let at = self.at_ms(&ms.vs.at);
                let range = ms.range.as_millis() as i64;
                let series = self.range_samples(&ms.vs, g, range, offset, at)?;
                Ok(Val::Range(RangeVec {
                    series,
                    range,
                    offset,
                    at,
                }))
            }
            Expr::Subquery(sq) => {
                let offset = offset_ms(&sq.offset);
                let at = self.at_ms(&sq.at);
                let range = sq.range.as_millis() as i64;
                let step = sq
                    .step
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(self.opts.default_subquery_step_ms);
                if step <= 0 {
                    return err("zero or negative subquery step");
                }
                let (lo, hi) = match at {
                    Some(a) => (a - offset, a - offset),
                    None => (g.start - offset, g.end - offset),
                };
                let x = lo - range;
                // First multiple of the step strictly after the window start (Go's truncation).
                let mut start = step * (x / step);
                if start <= x {
                    start += step;
                }
                let mut series = Vec::new();
                // Every inner step holds a value per series: refuse grids the samples limit
                // would refuse anyway, before allocating them.
                if start <= hi && ((hi - start) / step) as u128 + 1 > self.opts.max_samples as u128
                {
                    return Err(QueryError::TooManySamples);
                }
                if start <= hi {
                    let inner = Grid {
                        start,
                        end: hi,
                        step,
                    };
                    match self.eval(&sq.expr, inner)? {
                        Val::Vector(cols) => {
                            for c in cols {
                                let pts: Vec<(i64, f64)> = c
                                    .vals
                                    .iter()
                                    .enumerate()
                                    .filter_map(|(i, v)| v.map(|v| (inner.t(i), v)))
                                    .collect();
                                if !pts.is_empty() {
                                    series.push(RSeries {
                                        labels: c.labels,
                                        pts,
                                        drop_name: c.drop_name,
                                    });
                                }
                            }
                        }
                        Val::Scalar(s) => {
                            let pts = s
                                .iter()
                                .enumerate()
                                .map(|(i, &v)| (inner.t(i), v))
                                .collect();
                            series.push(RSeries {
                                labels: Labels::default(),
                                pts,
                                drop_name: false,
                            });
                        }
                        _ => return err("subquery is only allowed on instant vector or scalar"),
                    }
                }
                Ok(Val::Range(RangeVec {
                    series,
                    range,
                    offset,
                    at,
                }))
            }
            Expr::Aggregate(a) => self.aggregate(a, g),
            Expr::Binary(b) => self.binary(b, g),
            Expr::Call(c) => self.call(c, g),
            Expr::Extension(_) => err("extension expressions are not supported"),
        }
    }

    fn eval_vector(&self, e: &Expr, g: Grid) -> R<Vec<Col>> {
        match self.eval(e, g)? {
            Val::Vector(v) => Ok(v),
            _ => err("expected instant vector"),
        }
    }

    fn eval_scalar(&self, e: &Expr, g: Grid) -> R<Vec<f64>> {
        match self.eval(e, g)? {
            Val::Scalar(v) => Ok(v),
            _ => err("expected scalar"),
        }
    }

    fn eval_range(&self, e: &Expr, g: Grid) -> R<RangeVec> {
        match self.eval(e, g)? {
            Val::Range(v) => Ok(v),
            _ => err("expected range vector"),
        }
    }

    /// Selects the series of a selector with their samples in `[mint, maxt]`, decoded in
    /// parallel. Or-matchers (`{a="b" or c="d"}`) take the union. With `drop_stale` staleness
    /// markers are removed in the parallel part (range selectors ignore them); the sample count
    /// charged to the query includes them either way.
    fn select(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        drop_stale: bool,
    ) -> R<Vec<Selected>> {
        let sets = selector_matchers(vs)?;
        let q = self
            .db
            .querier(mint, maxt)
            .parallel_min_work(self.opts.parallel_min_work);
        let mut series = Vec::new();
        if sets.len() == 1 {
            series = q.select(&sets[0])?;
        } else {
            let mut seen = std::collections::HashSet::<_, foldhash::fast::RandomState>::default();
            for ms in &sets {
                for s in q.select(ms)? {
                    if seen.insert(s.labels().clone()) {
                        series.push(s);
                    }
                }
            }
            series.sort_by(|a, b| a.labels().cmp(b.labels()));
        }
        // Series are consumed in the workers so their chunk buffers are freed there too.
        let total = AtomicUsize::new(0);
        let work = series
            .iter()
            .map(|s| s.chunks().len())
            .sum::<usize>()
            .saturating_mul(DECODE_WORK_PER_CHUNK);
        let min = self.opts.parallel_min_work;
        let out: Vec<Selected> = par_map(series, work, min, |s| {
            let mut pts = decode(&s, mint, maxt);
            total.fetch_add(pts.len(), Ordering::Relaxed);
            // A scan is cheaper than `retain`, which moves every sample; stale markers are rare.
            if drop_stale && pts.iter().any(|p| is_stale(p.1)) {
                pts.retain(|p| !is_stale(p.1));
            }
            (s.into_labels(), pts)
        });
        self.add_samples(total.into_inner())?;
        Ok(out)
    }

    /// An instant vector selector over the grid, with the lookback window `(r - lookback, r]`.
    /// With `want_ts` the values are the samples' timestamps in seconds (for `timestamp()`).
    fn vector_selector(&self, vs: &VectorSelector, g: Grid, want_ts: bool) -> R<Vec<Col>> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let n = g.len();
        let refs = |i: usize| at.unwrap_or(g.t(i)) - offset;
        let (lo, hi) = (refs(0), refs(n - 1));
        let lookback = self.opts.lookback_ms;
        let data = self.select(vs, lo - lookback + 1, hi, false)?;
        let work = data.len() * n;
        let mut cols: Vec<Col> =
            par_map(data, work, self.opts.parallel_min_work, |(labels, pts)| {
                let mut vals = vec![None; n];
                let mut j = 0usize; // number of samples with t <= ref
                for (i, v) in vals.iter_mut().enumerate() {
                    let r = refs(i);
                    while j < pts.len() && pts[j].0 <= r {
                        j += 1;
                    }
                    if j == 0 {
                        continue;
                    }
                    let (t, x) = pts[j - 1];
                    if t > r - lookback && !is_stale(x) {
                        *v = Some(if want_ts { t as f64 / 1000.0 } else { x });
                    }
                }
                Col {
                    labels,
                    vals,
                    drop_name: false,
                }
            });
        cols.retain(|c| c.vals.iter().any(|v| v.is_some()));
        let pts: usize = cols
            .iter()
            .map(|c| c.vals.iter().filter(|v| v.is_some()).count())
            .sum();
        self.add_samples(pts)?;
        Ok(cols)
    }

    fn range_samples(
        &self,
        vs: &VectorSelector,
        g: Grid,
        range: i64,
        offset: i64,
        at: Option<i64>,
    ) -> R<Vec<RSeries>> {
        let (lo, hi) = match at {
            Some(a) => (a - offset, a - offset),
            None => (g.start - offset, g.end - offset),
        };
        let data = self.select(vs, lo - range + 1, hi, true)?;
        Ok(data
            .into_iter()
            .map(|(labels, pts)| RSeries {
                labels,
                pts,
                drop_name: false,
            })
            .collect())
    }

    // ---------------------------------------------------------------- functions

    fn call(&self, c: &Call, g: Grid) -> R<Val> {
        let name = c.func.name;
        let args = &c.args.args;
        let n = g.len();
        let arg = |i: usize| -> R<&Expr> {
            args.get(i)
                .map(|b| b.as_ref())
                .ok_or_else(|| QueryError::Eval(format!("{name}: missing argument {i}")))
        };
        match name {
            "time" => Ok(Val::Scalar(
                (0..n).map(|i| g.t(i) as f64 / 1000.0).collect(),
            )),
            "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
            // Query-context functions: Prometheus folds them to constants of the query.
            "step" => Ok(Val::Scalar(vec![self.qstep as f64 / 1000.0; n])),
            "range" => Ok(Val::Scalar(vec![
                (self.qend - self.qstart) as f64 / 1000.0;
                n
            ])),
            "start" => Ok(Val::Scalar(vec![self.qstart as f64 / 1000.0; n])),
            "end" => Ok(Val::Scalar(vec![self.qend as f64 / 1000.0; n])),
            "min_of" | "max_of" => {
                let a = self.eval_scalar(arg(0)?, g)?;
                let b = self.eval_scalar(arg(1)?, g)?;
                let max = name == "max_of";
                Ok(Val::Scalar(
                    a.iter()
                        .zip(&b)
                        .map(|(&x, &y)| go_min_max(x, y, max))
                        .collect(),
                ))
            }
            "vector" => {
                let s = self.eval_scalar(arg(0)?, g)?;
                Ok(Val::Vector(vec![Col {
                    labels: Labels::default(),
                    vals: s.into_iter().map(Some).collect(),
                    drop_name: false,
                }]))
            }
            "scalar" => {
                let cols = self.eval_vector(arg(0)?, g)?;
                let out = (0..n)
                    .map(|i| {
                        let mut it = cols.iter().filter_map(|c| c.vals[i]);
                        match (it.next(), it.next()) {
                            (Some(v), None) => v,
                            _ => f64::NAN,
                        }
                    })
                    .collect();
                Ok(Val::Scalar(out))
            }
            "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sin" | "cos"
            | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh"
            | "atanh" | "rad" | "deg" | "sgn" => {
                let func: fn(f64) -> f64 = match name {
                    "abs" => f64::abs,
                    "ceil" => f64::ceil,
                    "floor" => f64::floor,
                    "exp" => f64::exp,
                    "sqrt" => f64::sqrt,
                    "ln" => f64::ln,
                    "log2" => f64::log2,
                    "log10" => f64::log10,
                    "sin" => f64::sin,
                    "cos" => f64::cos,
                    "tan" => f64::tan,
                    "asin" => f64::asin,
                    "acos" => f64::acos,
                    "atan" => f64::atan,
                    "sinh" => f64::sinh,
                    "cosh" => f64::cosh,
                    "tanh" => f64::tanh,
                    "asinh" => f64::asinh,
                    "acosh" => f64::acosh,
                    "atanh" => f64::atanh,
                    "rad" => |v| v * std::f64::consts::PI / 180.0,
                    "deg" => |v| v * 180.0 / std::f64::consts::PI,
                    _ => |v: f64| {
                        if v < 0.0 {
                            -1.0
                        } else if v > 0.0 {
                            1.0
                        } else {
                            v
                        }
                    },
                };
                let cols = self.eval_vector(arg(0)?, g)?;
                Ok(Val::Vector(map_cols(cols, |_, v| Some(func(v)))))
            }
            "round" => {
                let cols = self.eval_vector(arg(0)?, g)?;
                let to = match args.get(1) {
                    Some(a) => self.eval_scalar(a, g)?,
                    None => vec![1.0; n],
                };
                Ok(Val::Vector(map_cols(cols, |i, v| {
                    let inv = 1.0 / to[i];
                    Some((v * inv + 0.5).floor() / inv)
                })))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let cols = self.eval_vector(arg(0)?, g)?;
                let (lo, hi) = match name {
                    "clamp" => (self.eval_scalar(arg(1)?, g)?, self.eval_scalar(arg(2)?, g)?),
                    "clamp_min" => (self.eval_scalar(arg(1)?, g)?, vec![f64::INFINITY; n]),
                    _ => (vec![f64::NEG_INFINITY; n], self.eval_scalar(arg(1)?, g)?),
                };
                Ok(Val::Vector(map_cols(cols, |i, v| {
                    if hi[i] < lo[i] {
                        None
                    } else {
                        Some(lo[i].max(hi[i].min(v)))
                    }
                })))
            }
            "timestamp" => {
                let a = arg(0)?;
                let cols = match unwrap_parens(a) {
                    Expr::VectorSelector(vs) => self.vector_selector(vs, g, true)?,
                    _ => {
                        let cols = self.eval_vector(a, g)?;
                        cols.into_iter()
                            .map(|mut c| {
                                for (i, v) in c.vals.iter_mut().enumerate() {
                                    if v.is_some() {
                                        *v = Some(g.t(i) as f64 / 1000.0);
                                    }
                                }
                                c
                            })
                            .collect()
                    }
                };
                Ok(Val::Vector(map_cols(cols, |_, v| Some(v))))
            }
            "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
            | "hour" | "minute" => {
                if args.is_empty() {
                    let out = (0..n)
                        .map(|i| Some(f::date_part(name, (g.t(i).div_euclid(1000)) as f64)))
                        .collect();
                    return Ok(Val::Vector(vec![Col {
                        labels: Labels::default(),
                        vals: out,
                        drop_name: false,
                    }]));
                }
                let cols = self.eval_vector(arg(0)?, g)?;
                Ok(Val::Vector(map_cols(cols, |_, v| {
                    Some(if v.is_nan() || v.is_infinite() {
                        // Go converts out-of-range floats to int64 with an unspecified result.
                        f64::NAN
                    } else {
                        f::date_part(name, v)
                    })
                })))
            }
            "sort" | "sort_desc" => {
                let mut cols = self.eval_vector(arg(0)?, g)?;
                if g.start != g.end {
                    self.annotate(Anno::SortInRangeQuery, self.pos(c));
                }
                if n == 1 {
                    let desc = name == "sort_desc";
                    cols.sort_by(|a, b| {
                        let (x, y) = (a.vals[0].unwrap_or(f64::NAN), b.vals[0].unwrap_or(f64::NAN));
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                }
                Ok(Val::Vector(cols))
            }
            "sort_by_label" | "sort_by_label_desc" => {
                let mut cols = self.eval_vector(arg(0)?, g)?;
                if g.start != g.end {
                    self.annotate(Anno::SortInRangeQuery, self.pos(c));
                }
                let mut names = Vec::new();
                for a in &args[1..] {
                    names.push(string_arg(a)?);
                }
                let desc = name == "sort_by_label_desc";
                cols.sort_by(|a, b| {
                    for l in &names {
                        let (x, y) = (a.labels.get(l).unwrap_or(""), b.labels.get(l).unwrap_or(""));
                        if x == y {
                            continue;
                        }
                        let less = f::natsort_less(x, y);
                        return if less != desc {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        };
                    }
                    let o = a.labels.cmp(&b.labels);
                    if desc {
                        o.reverse()
                    } else {
                        o
                    }
                });
                Ok(Val::Vector(cols))
            }
            "label_replace" => {
                let dst = string_arg(arg(1)?)?;
                let repl = string_arg(arg(2)?)?;
                let src = string_arg(arg(3)?)?;
                let re_s = string_arg(arg(4)?)?;
                let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|_| {
                    QueryError::Eval(format!(
                        "invalid regular expression in label_replace(): {re_s}"
                    ))
                })?;
                if !valid_label_name(&dst) {
                    return err(format!(
                        "invalid destination label name in label_replace(): {dst}"
                    ));
                }
                let repl_go = go_template_to_rust(&repl);
                let cols = self.eval_vector(arg(0)?, g)?;
                let mut out = Vec::with_capacity(cols.len());
                for mut c in cols {
                    let sv = c.labels.get(&src).unwrap_or("").to_string();
                    if let Some(caps) = re.captures(&sv) {
                        let mut res = String::new();
                        caps.expand(&repl_go, &mut res);
                        c.labels = set_label(&c.labels, &dst, &res);
                        if dst == METRIC_NAME {
                            c.drop_name = false;
                        }
                    }
                    out.push(c);
                }
                Ok(Val::Vector(merge_same_labels(out)?))
            }
            "label_join" => {
                let dst = string_arg(arg(1)?)?;
                let sep = string_arg(arg(2)?)?;
                let mut srcs = Vec::new();
                for a in &args[3..] {
                    let s = string_arg(a)?;
                    if !valid_label_name(&s) {
                        return err(format!("invalid source label name in label_join(): {s}"));
                    }
                    srcs.push(s);
                }
                if !valid_label_name(&dst) {
                    return err(format!(
                        "invalid destination label name in label_join(): {dst}"
                    ));
                }
                let cols = self.eval_vector(arg(0)?, g)?;
                let mut out = Vec::with_capacity(cols.len());
                for mut c in cols {
                    let joined = srcs
                        .iter()
                        .map(|s| c.labels.get(s).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(&sep);
                    c.labels = set_label(&c.labels, &dst, &joined);
                    if dst == METRIC_NAME {
                        c.drop_name = false;
                    }
                    out.push(c);
                }
                Ok(Val::Vector(merge_same_labels(out)?))
            }
            "absent" => {
                let a = arg(0)?;
                let cols = self.eval_vector(a, g)?;
                let labels = absent_labels(a)?;
                let vals = (0..n)
                    .map(|i| {
                        if cols.iter().any(|c| c.vals[i].is_some()) {
                            None
                        } else {
                            Some(1.0)
                        }
                    })
                    .collect();
                Ok(Val::Vector(vec![Col {
                    labels,
                    vals,
                    drop_name: false,
                }]))
            }
            "histogram_quantile" | "histogram_fraction" | "histogram_quantiles" => {
                // Kind: 0 quantile, 1 fraction, 2 several quantiles each labelled.
                let kind = match name {
                    "histogram_quantile" => 0,
                    "histogram_fraction" => 1,
                    _ => 2,
                };
                let (params, vec_arg, qlabel) = match kind {
                    0 => (vec![self.eval_scalar(arg(0)?, g)?], arg(1)?, None),
                    1 => (
                        vec![self.eval_scalar(arg(0)?, g)?, self.eval_scalar(arg(1)?, g)?],
                        arg(2)?,
                        None,
                    ),
                    _ => {
                        let mut ps = Vec::new();
                        for a in &args[2..] {
                            ps.push(self.eval_scalar(a, g)?);
                        }
                        (ps, arg(0)?, Some(string_arg(arg(1)?)?))
                    }
                };
                let cols = self.eval_vector(vec_arg, g)?;
                let vec_pos = self.pos(vec_arg);
                // Quantile parameters: checked at every step, as Prometheus calls the function
                // at every step (the warning's text deduplicates them).
                let quantile_args: &[Box<Expr>] = match kind {
                    0 => &args[..1],
                    2 => &args[2..],
                    _ => &[],
                };
                for (qa, qs) in quantile_args.iter().zip(&params) {
                    let mut prev: Option<u64> = None;
                    for &q in qs {
                        let repeat = prev == Some(q.to_bits());
                        prev = Some(q.to_bits());
                        if !repeat && (q.is_nan() || !(0.0..=1.0).contains(&q)) {
                            self.annotate(Anno::InvalidQuantile(q), self.pos(&**qa));
                        }
                    }
                }
                // Group bucket series by their labels without `le` (fixed over the steps).
                let mut groups: Vec<(Labels, Vec<(usize, f64)>)> = Vec::new();
                let mut index: HashMap<Labels, usize> = HashMap::default();
                for (ci, c) in cols.iter().enumerate() {
                    let Some(le) = c.labels.get("le").and_then(parse_go_float) else {
                        if c.vals.iter().any(|v| v.is_some()) {
                            let bad = Anno::BadBucketLabel {
                                metric: c.labels.get(METRIC_NAME).unwrap_or("").to_string(),
                                le: c.labels.get("le").unwrap_or("").to_string(),
                            };
                            self.annotate(bad, vec_pos);
                        }
                        continue;
                    };
                    let key = without_labels(&c.labels, &["le"]);
                    let gi = *index.entry(key.clone()).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    groups[gi].1.push((ci, le));
                }
                // One output per group, or per quantile and group (quantile-major, as Prometheus).
                let outputs: Vec<(usize, Option<usize>)> = match kind {
                    2 => (0..params.len())
                        .flat_map(|q| (0..groups.len()).map(move |gi| (gi, Some(q))))
                        .collect(),
                    _ => (0..groups.len()).map(|gi| (gi, None)).collect(),
                };
                let work = cols.len() * n;
                let out: Vec<Col> =
                    par_map(outputs, work, self.opts.parallel_min_work, |(gi, q)| {
                        let (labels, members) = &groups[gi];
                        let mut buckets: Vec<Bucket> = Vec::with_capacity(members.len());
                        let mut forced_acc = None;
                        let vals = (0..n)
                            .map(|i| {
                                buckets.clear();
                                for &(ci, le) in members {
                                    if let Some(v) = cols[ci].vals[i] {
                                        buckets.push(Bucket {
                                            upper: le,
                                            count: v,
                                        });
                                    }
                                }
                                if buckets.is_empty() {
                                    return None;
                                }
                                if kind == 1 {
                                    return Some(f::bucket_fraction(
                                        params[0][i],
                                        params[1][i],
                                        &mut buckets,
                                    ));
                                }
                                let (v, forced) = f::bucket_quantile_checked(
                                    params[q.unwrap_or(0)][i],
                                    &mut buckets,
                                );
                                if let Some(fix) = forced {
                                    annotations::merge_forced(&mut forced_acc, g.t(i), fix);
                                }
                                Some(v)
                            })
                            .collect();
                        if let Some((min_ts, max_ts, fix, samples)) = forced_acc {
                            let a = Anno::ForcedMonotonicity {
                                metric: labels.get(METRIC_NAME).unwrap_or("").to_string(),
                                min_ts,
                                max_ts,
                                fix,
                                samples,
                            };
                            self.annotate(a, vec_pos);
                        }
                        let labels = match (&qlabel, q) {
                            (Some(l), Some(q)) => {
                                let qv = params[q].first().copied().unwrap_or(f64::NAN);
                                set_label(labels, l, &format_openmetrics_float(qv))
                            }
                            _ => labels.clone(),
                        };
                        Col {
                            labels,
                            vals,
                            drop_name: true,
                        }
                    });
                Ok(Val::Vector(merge_same_labels(out)?))
            }
            _ => self.range_call(c, g),
        }
    }

    /// Functions over a range vector: each series' windows are independent, so series run in
    /// parallel.
    fn range_call(&self, c: &Call, g: Grid) -> R<Val> {
        let name = c.func.name;
        let args = &c.args.args;
        let n = g.len();
        let (mi, scalar_args): (usize, Vec<usize>) = match name {
            "quantile_over_time" => (1, vec![0]),
            "predict_linear" => (0, vec![1]),
            "double_exponential_smoothing" | "holt_winters" => (0, vec![1, 2]),
            _ => (0, vec![]),
        };
        let mut scalars: Vec<Vec<f64>> = Vec::new();
        for &si in &scalar_args {
            match args.get(si) {
                Some(a) => scalars.push(self.eval_scalar(a, g)?),
                None => return err(format!("{name}: missing argument")),
            }
        }
        let Some(marg) = args.get(mi) else {
            return err(format!("unknown function {name}"));
        };
        if name == "double_exponential_smoothing" {
            for (&sf, &tf) in scalars[0].iter().zip(&scalars[1]) {
                if sf <= 0.0 || sf >= 1.0 {
                    return err(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                    ));
                }
                if tf <= 0.0 || tf >= 1.0 {
                    return err(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                    ));
                }
            }
        }
        let rv = self.eval_range(marg, g)?;
        let func = RangeFn::from_name(name)
            .ok_or_else(|| QueryError::Eval(format!("unknown function {name}")))?;
        let keep_name = matches!(func, RangeFn::LastOverTime | RangeFn::FirstOverTime);
        let range = rv.range;
        let counter_check = matches!(name, "rate" | "increase");
        // Prometheus evaluates a subquery argument into a new matrix selector without a position,
        // so annotations about it point at the query's start (1:1).
        let marg_pos = match &**marg {
            Expr::Subquery(_) => 0,
            m => self.pos(m),
        };
        let q_pos = args.first().map_or(0, |a| self.pos(&**a));
        // quantile_over_time warns at the steps where q is invalid and some window has samples:
        // flagged here, raised once per step after the parallel loop.
        let q_invalid: Vec<bool> = match (&func, scalars.first()) {
            (RangeFn::QuantileOverTime, Some(qs)) => qs
                .iter()
                .map(|q| q.is_nan() || !(0.0..=1.0).contains(q))
                .collect(),
            _ => Vec::new(),
        };
        let q_warn: Vec<AtomicBool> = q_invalid.iter().map(|_| AtomicBool::new(false)).collect();
        let (rv_at, rv_offset) = (rv.at, rv.offset);
        let range_secs = f::duration_seconds(range);
        // Series are consumed so each one's samples are freed in the worker that used them.
        let work = rv.series.len() * n;
        let cols: Vec<Col> = par_map(rv.series, work, self.opts.parallel_min_work, |s| {
            let mut vals = vec![None; n];
            // rate/increase add a series' counter resets from an index instead of scanning
            // every window for them (same additions, same order).
            let mut resets = Vec::new();
            let counter_rate = match func {
                RangeFn::Rate => Some(true),
                RangeFn::Increase => Some(false),
                _ => None,
            };
            if counter_rate.is_some() {
                f::reset_positions(&s.pts, &mut resets);
            }
            let (mut lo, mut hi) = (0usize, 0usize);
            for (i, v) in vals.iter_mut().enumerate() {
                let t = g.t(i);
                let r = rv_at.unwrap_or(t) - rv_offset;
                let start = r - range;
                while hi < s.pts.len() && s.pts[hi].0 <= r {
                    hi += 1;
                }
                // Windows slide forward (`r` grows with the step), except with `@` where they
                // stay put.
                if rv_at.is_some() {
                    if lo > hi {
                        lo = hi;
                    }
                    while lo > 0 && s.pts[lo - 1].0 > start {
                        lo -= 1;
                    }
                }
                while lo < hi && s.pts[lo].0 <= start {
                    lo += 1;
                }
                let w = &s.pts[lo..hi];
                if w.is_empty() {
                    continue;
                }
                let sc = |k: usize| scalars[k][i];
                if q_invalid.get(i) == Some(&true) {
                    q_warn[i].store(true, Ordering::Relaxed);
                }
                *v = match counter_rate {
                    Some(is_rate) => f::counter_rate_indexed(
                        &s.pts, lo, hi, &resets, start, r, range_secs, is_rate,
                    ),
                    None => func.apply(w, start, r, range, t, &sc),
                };
            }
            if counter_check && vals.iter().any(|v| v.is_some()) {
                if let Some(metric) = s.labels.get(METRIC_NAME) {
                    let counter_like = ["_total", "_sum", "_count", "_bucket"]
                        .iter()
                        .any(|suffix| metric.ends_with(suffix));
                    if !metric.is_empty() && !counter_like {
                        let a = Anno::PossibleNonCounter {
                            metric: metric.to_string(),
                        };
                        self.annotate(a, marg_pos);
                    }
                }
            }
            Col {
                labels: s.labels,
                vals,
                drop_name: s.drop_name || !keep_name,
            }
        });
        for (i, w) in q_warn.iter().enumerate() {
            if w.load(Ordering::Relaxed) {
                self.annotate(Anno::InvalidQuantile(scalars[0][i]), q_pos);
            }
        }
        if name == "absent_over_time" {
            let labels = match unwrap_parens(marg) {
                Expr::MatrixSelector(ms) => absent_labels(&Expr::VectorSelector(ms.vs.clone()))?,
                _ => Labels::default(),
            };
            let vals = (0..n)
                .map(|i| {
                    if cols.iter().any(|c| c.vals[i].is_some()) {
                        None
                    } else {
                        Some(1.0)
                    }
                })
                .collect();
            return Ok(Val::Vector(vec![Col {
                labels,
                vals,
                drop_name: false,
            }]));
        }
        Ok(Val::Vector(cols))
    }

    // ---------------------------------------------------------------- aggregation

    fn aggregate(&self, a: &AggregateExpr, g: Grid) -> R<Val> {
        let n = g.len();
        let op = a.op.id();
        let param: Option<Val> = match &a.param {
            Some(p) if op != T_COUNT_VALUES => Some(self.eval(p, g)?),
            _ => None,
        };
        let param_scalar = |i: usize| -> f64 {
            match &param {
                Some(Val::Scalar(s)) => s[i],
                _ => f64::NAN,
            }
        };
        let cols = self.eval_vector(&a.expr, g)?;
        let (without, grouping): (bool, Vec<String>) = match &a.modifier {
            None => (false, vec![]),
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        };
        for l in &grouping {
            if !valid_label_name(l) {
                return err(format!("invalid label name {l:?}"));
            }
        }
        if op == T_COUNT_VALUES {
            let label = match a.param.as_deref() {
                Some(p) => string_arg(p)?,
                None => return err("count_values needs a label name"),
            };
            if !valid_label_name(&label) {
                return err(format!("invalid label name {label:?}"));
            }
            let mut out = OutBuilder::new(n);
            for i in 0..n {
                let mut counts: Vec<(Labels, f64)> = Vec::new();
                let mut idx: HashMap<Labels, usize> = HashMap::default();
                for c in &cols {
                    if let Some(v) = c.vals[i] {
                        let l = set_label(&c.labels, &label, &f::format_float_f(v));
                        let key = group_labels(&l, without, &grouping);
                        match idx.get(&key) {
                            Some(&k) => counts[k].1 += 1.0,
                            None => {
                                idx.insert(key.clone(), counts.len());
                                counts.push((key, 1.0));
                            }
                        }
                    }
                }
                for (l, cnt) in counts {
                    let k = out.idx(l, false);
                    out.set(k, i, cnt)?;
                }
            }
            return Ok(Val::Vector(out.cols));
        }
        if matches!(
            op,
            T_QUANTILE | T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO
        ) && !matches!(param, Some(Val::Scalar(_)))
        {
            return err("expected scalar parameter");
        }
        if let (Some(Val::Scalar(ps)), Some(pe)) = (&param, a.param.as_deref()) {
            let pos = self.pos(pe);
            if op == T_QUANTILE {
                self.check_quantile_param(ps, pos);
            }
            if op == T_LIMIT_RATIO && !ps.iter().any(|r| r.is_nan()) {
                let (min, max) = param_min_max(ps);
                if !(max == 0.0 && min == 0.0) {
                    if max > 1.0 {
                        self.annotate(
                            Anno::InvalidRatio {
                                ratio: max,
                                to: 1.0,
                            },
                            pos,
                        );
                    }
                    if min < -1.0 {
                        self.annotate(
                            Anno::InvalidRatio {
                                ratio: min,
                                to: -1.0,
                            },
                            pos,
                        );
                    }
                }
            }
        }
        if op == T_TOPK || op == T_BOTTOMK || op == T_LIMITK || op == T_LIMIT_RATIO {
            for i in 0..n {
                let p = param_scalar(i);
                if p.is_nan() {
                    if op == T_LIMIT_RATIO {
                        return err("Ratio value is NaN");
                    }
                    return err("Parameter value is NaN");
                }
                if op != T_LIMIT_RATIO && p.abs() >= 9.223_372_036_854_776e18 {
                    return err(format!("Scalar value {p} overflows int64"));
                }
            }
        }
        // Group membership is fixed across steps: compute it once.
        let groups = group_members(&cols, without, &grouping);
        if op == T_TOPK || op == T_BOTTOMK || op == T_LIMITK || op == T_LIMIT_RATIO {
            return self.aggregate_k(op, &cols, &groups, n, &param_scalar);
        }
        let parallel = cols.len() * n >= self.opts.parallel_min_work;
        if op == T_SUM || op == T_COUNT {
            let out: Vec<Col> = if parallel {
                groups
                    .par_iter()
                    .map(|g| sum_count_group(op, &cols, g, n, true))
                    .collect()
            } else {
                groups
                    .iter()
                    .map(|g| sum_count_group(op, &cols, g, n, false))
                    .collect()
            };
            if parallel {
                cols.into_par_iter().for_each(drop);
            }
            return Ok(Val::Vector(out));
        }
        let aggregate_group = |(labels, members): &(Labels, Vec<usize>)| {
            // Steps are independent and each adds its members in the same order, so a group
            // (`sum(...)` has one) also spreads over the threads by step, bit-identically.
            let step = |heap: &mut Vec<f64>, i: usize| {
                let mut drop_name = false;
                let v =
                    aggregate_step(op, &cols, members, i, param_scalar(i), heap, &mut drop_name);
                (v, drop_name)
            };
            let steps: Vec<(Option<f64>, bool)> = if parallel {
                (0..n).into_par_iter().map_init(Vec::new, step).collect()
            } else {
                let mut heap = Vec::new();
                (0..n).map(|i| step(&mut heap, i)).collect()
            };
            Col {
                labels: labels.clone(),
                vals: steps.iter().map(|s| s.0).collect(),
                drop_name: steps.iter().any(|s| s.1),
            }
        };
        let out: Vec<Col> = if parallel {
            groups.par_iter().map(aggregate_group).collect()
        } else {
            groups.iter().map(aggregate_group).collect()
        };
        // The inputs' buffers are freed in parallel too: a sequential drop of thousands of
        // series is a visible share of a query.
        if parallel {
            cols.into_par_iter().for_each(drop);
        }
        Ok(Val::Vector(out))
    }

    fn aggregate_k(
        &self,
        op: TokenId,
        cols: &[Col],
        groups: &[(Labels, Vec<usize>)],
        n: usize,
        param: &dyn Fn(usize) -> f64,
    ) -> R<Val> {
        // Output series are the input series; per step each group keeps k of them.
        let mut keep: Vec<Vec<Option<f64>>> = vec![vec![None; n]; cols.len()];
        let mut order: Vec<usize> = Vec::new();
        let mut heap: Vec<(usize, f64)> = Vec::new();
        // A series' sampling offset depends on its labels only: hash once, not per step.
        let offsets: Vec<f64> = if op == T_LIMIT_RATIO {
            cols.iter().map(|c| ratio_offset(&c.labels)).collect()
        } else {
            Vec::new()
        };
        for i in 0..n {
            let p = param(i);
            let k = if op == T_LIMIT_RATIO {
                0
            } else {
                (p as i64).min(cols.len() as i64)
            };
            if op != T_LIMIT_RATIO && k < 1 {
                continue;
            }
            for (_, members) in groups {
                heap.clear();
                for &ci in members {
                    let Some(v) = cols[ci].vals[i] else { continue };
                    match op {
                        T_TOPK => heap_push_k(&mut heap, (ci, v), k as usize, false),
                        T_BOTTOMK => heap_push_k(&mut heap, (ci, v), k as usize, true),
                        T_LIMITK => {
                            if (heap.len() as i64) < k {
                                heap.push((ci, v));
                            }
                        }
                        _ => {
                            let r = p.clamp(-1.0, 1.0);
                            if ratio_keeps(r, offsets[ci]) {
                                heap.push((ci, v));
                            }
                        }
                    }
                }
                match op {
                    T_TOPK => heap.sort_by(|a, b| cmp_desc_nan_last(a.1, b.1)),
                    T_BOTTOMK => heap.sort_by(|a, b| cmp_asc_nan_last(a.1, b.1)),
                    _ => {}
                }
                for &(ci, v) in heap.iter() {
                    if keep[ci].iter().all(|x| x.is_none()) {
                        order.push(ci);
                    }
                    keep[ci][i] = Some(v);
                }
            }
        }
        if n > 1 {
            order.sort_unstable();
        }
        let out = order
            .into_iter()
            .map(|ci| Col {
                labels: cols[ci].labels.clone(),
                vals: std::mem::take(&mut keep[ci]),
                drop_name: cols[ci].drop_name,
            })
            .collect();
        Ok(Val::Vector(out))
    }

    // ---------------------------------------------------------------- binary operators

    fn binary(&self, b: &BinaryExpr, g: Grid) -> R<Val> {
        let op = b.op.id();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, g)?;
        let rhs = self.eval(&b.rhs, g)?;
        let is_cmp = b.op.is_comparison_operator();
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(&x, &y)| scalar_binop(op, x, y))
                    .collect(),
            )),
            (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(vector_scalar(
                op,
                l,
                &r,
                false,
                return_bool,
                is_cmp,
            ))),
            (Val::Scalar(l), Val::Vector(r)) => Ok(Val::Vector(vector_scalar(
                op,
                r,
                &l,
                true,
                return_bool,
                is_cmp,
            ))),
            (Val::Vector(l), Val::Vector(r)) => {
                let (card, on, mlabels, include) = match &b.modifier {
                    None => (
                        if b.op.is_set_operator() {
                            VectorMatchCardinality::ManyToMany
                        } else {
                            VectorMatchCardinality::OneToOne
                        },
                        false,
                        vec![],
                        vec![],
                    ),
                    Some(m) => {
                        let (on, ml) = match &m.matching {
                            None => (false, vec![]),
                            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                        };
                        let inc = m
                            .card
                            .labels()
                            .map(|l| l.labels.clone())
                            .unwrap_or_default();
                        (m.card.clone(), on, ml, inc)
                    }
                };
                let n = g.len();
                let sig = |l: &Labels| -> Labels {
                    if on {
                        Labels::from_sorted_unchecked(
                            l.iter()
                                .filter(|x| mlabels.contains(&x.name))
                                .cloned()
                                .collect(),
                        )
                    } else {
                        Labels::from_sorted_unchecked(
                            l.iter()
                                .filter(|x| x.name != METRIC_NAME && !mlabels.contains(&x.name))
                                .cloned()
                                .collect(),
                        )
                    }
                };
                let mut sig_ids: HashMap<Labels, usize> = HashMap::default();
                let mut sig_of = |l: &Labels| -> usize {
                    let s = sig(l);
                    let k = sig_ids.len();
                    *sig_ids.entry(s).or_insert(k)
                };
                let lsig: Vec<usize> = l.iter().map(|c| sig_of(&c.labels)).collect();
                let rsig: Vec<usize> = r.iter().map(|c| sig_of(&c.labels)).collect();
                let nsig = sig_ids.len();
                if b.op.is_set_operator() {
                    return self.set_op(op, l, r, &lsig, &rsig, nsig, n);
                }
                // Experimental `fill`, `fill_left`, `fill_right`.
                let fills = b
                    .modifier
                    .as_ref()
                    .map(|m| (m.fill_values.lhs, m.fill_values.rhs))
                    .unwrap_or((None, None));
                self.vector_binop(
                    op,
                    l,
                    r,
                    &lsig,
                    &rsig,
                    nsig,
                    n,
                    card,
                    on,
                    &mlabels,
                    &include,
                    return_bool,
                    fills,
                )
            }
            _ => err("binary operands must be scalars or instant vectors"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn set_op(
        &self,
        op: TokenId,
        l: Vec<Col>,
        r: Vec<Col>,
        lsig: &[usize],
        rsig: &[usize],
        nsig: usize,
        n: usize,
    ) -> R<Val> {
        let mut out = OutBuilder::new(n);
        let lidx: Vec<usize> = l
            .iter()
            .map(|c| out.idx(c.labels.clone(), c.drop_name))
            .collect();
        let ridx: Vec<usize> = if op == T_LOR {
            r.iter()
                .map(|c| out.idx(c.labels.clone(), c.drop_name))
                .collect()
        } else {
            vec![]
        };
        let mut present = vec![false; nsig];
        for i in 0..n {
            present.iter_mut().for_each(|p| *p = false);
            match op {
                T_LAND | T_LUNLESS => {
                    for (j, c) in r.iter().enumerate() {
                        if c.vals[i].is_some() {
                            present[rsig[j]] = true;
                        }
                    }
                    for (j, c) in l.iter().enumerate() {
                        if let Some(v) = c.vals[i] {
                            if present[lsig[j]] == (op == T_LAND) {
                                out.set(lidx[j], i, v)?;
                            }
                        }
                    }
                }
                _ => {
                    for (j, c) in l.iter().enumerate() {
                        if let Some(v) = c.vals[i] {
                            present[lsig[j]] = true;
                            out.set(lidx[j], i, v)?;
                        }
                    }
                    for (j, c) in r.iter().enumerate() {
                        if let Some(v) = c.vals[i] {
                            if !present[rsig[j]] {
                                out.set(ridx[j], i, v)?;
                            }
                        }
                    }
                }
            }
        }
        let cols = out
            .cols
            .into_iter()
            .filter(|c| c.vals.iter().any(|v| v.is_some()))
            .collect();
        Ok(Val::Vector(cols))
    }

    #[allow(clippy::too_many_arguments)]
    fn vector_binop(
        &self,
        op: TokenId,
        l: Vec<Col>,
        r: Vec<Col>,
        lsig: &[usize],
        rsig: &[usize],
        nsig: usize,
        n: usize,
        card: VectorMatchCardinality,
        on: bool,
        mlabels: &[String],
        include: &[String],
        return_bool: bool,
        (fill_l, fill_r): (Option<f64>, Option<f64>),
    ) -> R<Val> {
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        // The "one" side goes right, as in Prometheus.
        let (l, r, lsig, rsig) = if one_to_many {
            (r, l, rsig, lsig)
        } else {
            (l, r, lsig, rsig)
        };
        let mut right_at: Vec<Option<usize>> = vec![None; nsig];
        // The stand-in label sets of filled sides (Prometheus: the matching labels only).
        let lmatch: Vec<Labels> = if fill_r.is_some() {
            l.iter()
                .map(|c| match_labels(&c.labels, on, mlabels))
                .collect()
        } else {
            vec![]
        };
        let rmatch: Vec<Labels> = if fill_l.is_some() {
            r.iter()
                .map(|c| match_labels(&c.labels, on, mlabels))
                .collect()
        } else {
            vec![]
        };
        let mut st = BinState {
            out: OutBuilder::new(n),
            matched: vec![false; nsig],
            matched_sets: HashMap::default(),
            cache: HashMap::default(),
            op,
            one_to_one,
            one_to_many,
            on,
            mlabels,
            include,
            return_bool,
        };
        for i in 0..n {
            right_at.iter_mut().for_each(|x| *x = None);
            for (j, c) in r.iter().enumerate() {
                if c.vals[i].is_none() {
                    continue;
                }
                if let Some(prev) = right_at[rsig[j]] {
                    let side = if one_to_many { "left" } else { "right" };
                    let ml = match_labels(&c.labels, on, mlabels);
                    let (mut d1, mut d2) = (
                        format_labels_go(&c.labels),
                        format_labels_go(&r[prev].labels),
                    );
                    if d1 > d2 {
                        std::mem::swap(&mut d1, &mut d2);
                    }
                    return err(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{d1}, {d2}];many-to-many matching not allowed: matching labels must be unique on one side",
                        format_labels_go(&ml)
                    ));
                }
                right_at[rsig[j]] = Some(j);
            }
            st.matched.iter_mut().for_each(|x| *x = false);
            st.matched_sets.clear();
            for (j, lc) in l.iter().enumerate() {
                let Some(lv) = lc.vals[i] else { continue };
                match right_at[lsig[j]] {
                    Some(rj) => {
                        let Some(rv) = r[rj].vals[i] else { continue };
                        st.apply(&lc.labels, lv, &r[rj].labels, rv, lsig[j], (0, j, rj), i)?;
                    }
                    None => {
                        // `fill`/`fill_right`: a missing right side takes the fill value.
                        if let (Some(f), Some(ml)) = (fill_r, lmatch.get(j)) {
                            st.apply(&lc.labels, lv, ml, f, lsig[j], (1, j, 0), i)?;
                        }
                    }
                }
            }
            if let Some(f) = fill_l {
                for (j, rc) in r.iter().enumerate() {
                    let Some(rv) = rc.vals[i] else { continue };
                    let s = rsig[j];
                    let done = if one_to_one {
                        st.matched[s]
                    } else {
                        st.matched_sets.get(&s).is_some_and(|x| !x.is_empty())
                    };
                    if done {
                        continue;
                    }
                    if let Some(ml) = rmatch.get(j) {
                        st.apply(ml, f, &rc.labels, rv, s, (2, j, 0), i)?;
                    }
                }
            }
        }
        let out = st.out;
        let cols = out
            .cols
            .into_iter()
            .filter(|c| c.vals.iter().any(|v| v.is_some()))
            .collect();
        Ok(Val::Vector(cols))
    }
}

/// The matching state of one vector-vector operation at one step (Prometheus' `doBinOp`).
struct BinState<'a> {
    out: OutBuilder,
    matched: Vec<bool>,
    matched_sets: HashMap<usize, Vec<usize>>,
    /// Output series per (kind, left, right) pair: label sets are fixed across steps.
    cache: HashMap<(u8, usize, usize), usize>,
    op: TokenId,
    one_to_one: bool,
    one_to_many: bool,
    on: bool,
    mlabels: &'a [String],
    include: &'a [String],
    return_bool: bool,
}

impl BinState<'_> {
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        ll: &Labels,
        lv: f64,
        rl: &Labels,
        rv: f64,
        sig: usize,
        key: (u8, usize, usize),
        step: usize,
    ) -> R<()> {
        let (fl, fr) = if self.one_to_many { (rv, lv) } else { (lv, rv) };
        let (mut value, keep) = elem_binop(self.op, fl, fr);
        if self.return_bool {
            value = if keep { 1.0 } else { 0.0 };
        }
        let oi = match self.cache.get(&key) {
            Some(&oi) => oi,
            None => {
                let m = result_metric(
                    ll,
                    rl,
                    self.op,
                    self.one_to_one,
                    self.on,
                    self.mlabels,
                    self.include,
                );
                let oi = self.out.idx(m, self.return_bool);
                self.cache.insert(key, oi);
                oi
            }
        };
        if self.one_to_one {
            if self.matched[sig] {
                return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
            }
            self.matched[sig] = true;
        } else {
            let set = self.matched_sets.entry(sig).or_default();
            if set.contains(&oi) {
                return err(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                );
            }
            set.push(oi);
        }
        if !keep && !self.return_bool {
            return Ok(());
        }
        self.out.set(oi, step, value)
    }
}

fn cmp_desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => b.partial_cmp(&a).unwrap_or(Equal),
    }
}

fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => a.partial_cmp(&b).unwrap_or(Equal),
    }
}

/// Keeps the k best of a stream with Prometheus' replacement rule: for topk the heap root is
/// the smallest kept value (NaN counts as smallest) and a new value replaces it when greater.
fn heap_push_k(heap: &mut Vec<(usize, f64)>, s: (usize, f64), k: usize, bottom: bool) {
    // `less(a, b)`: a is "worse" than b (closer to the root).
    let less = |a: f64, b: f64| -> bool {
        if a.is_nan() {
            return true;
        }
        if bottom {
            a > b
        } else {
            a < b
        }
    };
    if heap.len() < k {
        heap.push(s);
        let mut i = heap.len() - 1;
        while i > 0 {
            let p = (i - 1) / 2;
            if !less(heap[i].1, heap[p].1) {
                break;
            }
            heap.swap(i, p);
            i = p;
        }
        return;
    }
    let root = heap[0].1;
    let replace = if bottom {
        root > s.1 || (root.is_nan() && !s.1.is_nan())
    } else {
        root < s.1 || (root.is_nan() && !s.1.is_nan())
    };
    if !replace {
        return;
    }
    heap[0] = s;
    if k > 1 {
        // heap.Fix(0): sift down.
        let nlen = heap.len();
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= nlen {
                break;
            }
            let mut j = l;
            if l + 1 < nlen && less(heap[l + 1].1, heap[l].1) {
                j = l + 1;
            }
            if !less(heap[j].1, heap[i].1) {
                break;
            }
            heap.swap(i, j);
            i = j;
        }
    }
}

/// Prometheus' `labels.Hash()` in its default build (stringlabels, the default since 3.5): xxhash64
/// (seed 0) of the labels' internal encoding, each name and value preceded by its length — one
/// byte below 255, else the byte 255 and the length in 3 bytes little-endian.
pub(crate) fn prometheus_labels_hash(labels: &Labels) -> u64 {
    fn put(h: &mut xxhash_rust::xxh64::Xxh64, s: &str) {
        let n = s.len();
        if n < 255 {
            h.update(&[n as u8]);
        } else {
            h.update(&[255, n as u8, (n >> 8) as u8, (n >> 16) as u8]);
        }
        h.update(s.as_bytes());
    }
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for l in labels.iter() {
        put(&mut h, &l.name);
        put(&mut h, &l.value);
    }
    h.digest()
}

/// limit_ratio's sampling offset of a series (Prometheus' `HashRatioSampler.SampleOffset`): its
/// label hash as a fraction of `MaxUint64`, in `[0, 1]`.
pub(crate) fn ratio_offset(labels: &Labels) -> f64 {
    prometheus_labels_hash(labels) as f64 / u64::MAX as f64
}

/// limit_ratio's choice (`AddRatioSampleWithOffset`): a positive ratio keeps offsets below it, a
/// negative one offsets at or above `1 + ratio`, so `r` and `r - 1` choose complementary sets.
pub(crate) fn ratio_keeps(ratio: f64, offset: f64) -> bool {
    (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio)
}

#[allow(clippy::too_many_arguments)]
/// Steps per block of [`sum_count_group`]: blocks are the parallel unit of a group.
const AGG_STEP_BLOCK: usize = 32;

/// `sum` or `count` of one group over all steps, member by member (each member's values are
/// contiguous) into per-step accumulators, instead of step by step across the members' columns:
/// each step still adds its members in member order with [`aggregate_step`]'s operations, so the
/// results are identical. With `parallel` blocks of steps run on the pool (`sum(...)` has one
/// group).
fn sum_count_group(
    op: TokenId,
    cols: &[Col],
    (labels, members): &(Labels, Vec<usize>),
    n: usize,
    parallel: bool,
) -> Col {
    let block = |b: usize| -> (Vec<Option<f64>>, bool) {
        let lo = b * AGG_STEP_BLOCK;
        let hi = (lo + AGG_STEP_BLOCK).min(n);
        let len = hi - lo;
        let mut value = [0.0f64; AGG_STEP_BLOCK];
        let mut comp = [0.0f64; AGG_STEP_BLOCK];
        let mut seen = [false; AGG_STEP_BLOCK];
        let mut drop_name = false;
        for &ci in members {
            let Some(col) = cols.get(ci) else { continue };
            let Some(vals) = col.vals.get(lo..hi) else {
                continue;
            };
            let mut any = false;
            for (((v, acc), c), s) in vals.iter().zip(&mut value).zip(&mut comp).zip(&mut seen) {
                let Some(f) = *v else { continue };
                any = true;
                if !*s {
                    *s = true;
                    *acc = if op == T_COUNT { 1.0 } else { f };
                } else if op == T_COUNT {
                    *acc += 1.0;
                } else {
                    (*acc, *c) = f::kahan_inc(f, *acc, *c);
                }
            }
            drop_name |= any && col.drop_name;
        }
        let vals = (0..len)
            .map(|j| {
                seen[j].then(|| {
                    if op == T_COUNT {
                        value[j]
                    } else {
                        value[j] + comp[j]
                    }
                })
            })
            .collect();
        (vals, drop_name)
    };
    let blocks = n.div_ceil(AGG_STEP_BLOCK);
    let parts: Vec<(Vec<Option<f64>>, bool)> = if parallel && blocks > 1 {
        (0..blocks).into_par_iter().map(block).collect()
    } else {
        (0..blocks).map(block).collect()
    };
    let drop_name = parts.iter().any(|p| p.1);
    let mut vals = Vec::with_capacity(n);
    for (p, _) in parts {
        vals.extend(p);
    }
    Col {
        labels: labels.clone(),
        vals,
        drop_name,
    }
}

fn aggregate_step(
    op: TokenId,
    cols: &[Col],
    members: &[usize],
    i: usize,
    q: f64,
    heap: &mut Vec<f64>,
    drop_name: &mut bool,
) -> Option<f64> {
    let mut seen = false;
    let mut value = 0.0;
    let mut mean = 0.0;
    let mut kahan_c = 0.0;
    let mut count = 0.0;
    let mut incremental = false;
    heap.clear();
    for &ci in members {
        let Some(f) = cols[ci].vals[i] else { continue };
        if cols[ci].drop_name {
            *drop_name = true;
        }
        if !seen {
            seen = true;
            value = f;
            mean = f;
            count = 1.0;
            match op {
                T_STDVAR | T_STDDEV => {
                    value = if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    };
                }
                T_QUANTILE => heap.push(f),
                T_GROUP => value = 1.0,
                _ => {}
            }
            continue;
        }
        match op {
            T_SUM => (value, kahan_c) = f::kahan_inc(f, value, kahan_c),
            T_AVG => {
                count += 1.0;
                if !incremental {
                    let (nv, nc) = f::kahan_inc(f, value, kahan_c);
                    if !nv.is_infinite() {
                        value = nv;
                        kahan_c = nc;
                        continue;
                    }
                    incremental = true;
                    mean = value / (count - 1.0);
                    kahan_c /= count - 1.0;
                }
                let qq = (count - 1.0) / count;
                (mean, kahan_c) = f::kahan_inc(f / count, qq * mean, qq * kahan_c);
            }
            T_MAX if value < f || value.is_nan() => value = f,
            T_MIN if value > f || value.is_nan() => value = f,
            T_COUNT => count += 1.0,
            T_STDVAR | T_STDDEV => {
                count += 1.0;
                let delta = f - mean;
                mean += delta / count;
                value += delta * (f - mean);
            }
            T_QUANTILE => heap.push(f),
            _ => {}
        }
    }
    if !seen {
        return None;
    }
    Some(match op {
        T_AVG => {
            if incremental {
                mean + kahan_c
            } else {
                value / count + kahan_c / count
            }
        }
        T_COUNT => count,
        T_STDVAR => value / count,
        T_STDDEV => (value / count).sqrt(),
        T_QUANTILE => f::quantile(q, heap),
        T_SUM => value + kahan_c,
        _ => value,
    })
}

fn scalar_binop(op: TokenId, l: f64, r: f64) -> f64 {
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        T_ADD => l + r,
        T_SUB => l - r,
        T_MUL => l * r,
        T_DIV => l / r,
        T_POW => go_pow(l, r),
        T_MOD => go_mod(l, r),
        T_EQLC => b(l == r),
        T_NEQ => b(l != r),
        T_GTR => b(l > r),
        T_LSS => b(l < r),
        T_GTE => b(l >= r),
        T_LTE => b(l <= r),
        T_ATAN2 => l.atan2(r),
        _ => f64::NAN,
    }
}

/// Prometheus' `labels.FormatOpenMetricsFloat`: integers keep a `.0`.
fn format_openmetrics_float(f: f64) -> String {
    let s = f::format_float_f(f);
    if f.is_finite() && !s.contains('.') && !s.contains('e') {
        format!("{s}.0")
    } else {
        s
    }
}

/// Go's `math.Max`/`math.Min`: NaN wins, and +0 is greater than -0.
fn go_min_max(x: f64, y: f64, max: bool) -> f64 {
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && y == 0.0 {
        let neg = if max {
            x.is_sign_negative() && y.is_sign_negative()
        } else {
            x.is_sign_negative() || y.is_sign_negative()
        };
        return if neg { -0.0 } else { 0.0 };
    }
    if max {
        x.max(y)
    } else {
        x.min(y)
    }
}

/// Prometheus' `fParams` minimum and maximum of a parameter over the steps (Go's `math.Min`/`Max`
/// from `±MaxFloat64`, so a NaN makes both NaN).
fn param_min_max(ps: &[f64]) -> (f64, f64) {
    ps.iter().fold((f64::MAX, -f64::MAX), |(lo, hi), &p| {
        (go_min_max(lo, p, false), go_min_max(hi, p, true))
    })
}

/// Go's `math.Mod`: the result has the sign of `x`.
fn go_mod(x: f64, y: f64) -> f64 {
    x % y
}

/// Go's `math.Pow` special cases where they differ from C's `pow`.
fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 1.0;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == -1.0 && y.is_infinite() {
        return 1.0;
    }
    x.powf(y)
}

/// A vector-element binary operation: the value and whether a comparison keeps the element.
fn elem_binop(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (scalar_binop(op, l, r), true),
    }
}

fn changes_schema(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

fn vector_scalar(
    op: TokenId,
    cols: Vec<Col>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    is_cmp: bool,
) -> Vec<Col> {
    let drop = changes_schema(op) || return_bool;
    cols.into_iter()
        .filter_map(|mut c| {
            for (i, slot) in c.vals.iter_mut().enumerate() {
                let Some(v) = *slot else { continue };
                let (l, r) = if swap { (s[i], v) } else { (v, s[i]) };
                let (mut res, keep) = elem_binop(op, l, r);
                if is_cmp && swap {
                    res = r;
                }
                *slot = if return_bool {
                    Some(if keep { 1.0 } else { 0.0 })
                } else if keep {
                    Some(res)
                } else {
                    None
                };
            }
            if drop {
                c.drop_name = true;
            }
            if c.vals.iter().any(|v| v.is_some()) {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

fn match_labels(l: &Labels, on: bool, names: &[String]) -> Labels {
    Labels::from_sorted_unchecked(
        l.iter()
            .filter(|x| {
                if on {
                    names.contains(&x.name)
                } else {
                    x.name != METRIC_NAME && !names.contains(&x.name)
                }
            })
            .cloned()
            .collect(),
    )
}

fn result_metric(
    lhs: &Labels,
    rhs: &Labels,
    op: TokenId,
    one_to_one: bool,
    on: bool,
    mlabels: &[String],
    include: &[String],
) -> Labels {
    let mut v: Vec<Label> = lhs
        .iter()
        .filter(|l| {
            if changes_schema(op) && l.name == METRIC_NAME {
                return false;
            }
            if one_to_one {
                if on {
                    return mlabels.contains(&l.name);
                }
                return !mlabels.contains(&l.name);
            }
            true
        })
        .cloned()
        .collect();
    for name in include {
        v.retain(|l| &l.name != name);
        if let Some(val) = rhs.get(name) {
            v.push(Label::new(name.clone(), val));
        }
    }
    Labels::new(v)
}

fn map_cols(cols: Vec<Col>, func: impl Fn(usize, f64) -> Option<f64>) -> Vec<Col> {
    cols.into_iter()
        .map(|mut c| {
            for (i, v) in c.vals.iter_mut().enumerate() {
                if let Some(x) = *v {
                    *v = func(i, x);
                }
            }
            c.drop_name = true;
            c
        })
        .collect()
}

fn merge_same_labels(cols: Vec<Col>) -> R<Vec<Col>> {
    let mut out = OutBuilder::new(cols.first().map(|c| c.vals.len()).unwrap_or(0));
    for c in cols {
        let i = out.idx(c.labels, c.drop_name);
        for (s, v) in c.vals.into_iter().enumerate() {
            if let Some(v) = v {
                out.set(i, s, v)?;
            }
        }
    }
    Ok(out.cols)
}

fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = l.iter().filter(|x| x.name != name).cloned().collect();
    if !value.is_empty() {
        v.push(Label::new(name, value));
    }
    Labels::new(v)
}

fn without_labels(l: &Labels, names: &[&str]) -> Labels {
    Labels::from_sorted_unchecked(
        l.iter()
            .filter(|x| !names.contains(&x.name.as_str()))
            .cloned()
            .collect(),
    )
}

/// Whether label `x` is part of an aggregation's group key (`by (grouping)` or `without (grouping)`).
fn in_group(x: &Label, without: bool, grouping: &[String]) -> bool {
    if without {
        x.name != METRIC_NAME && !grouping.contains(&x.name)
    } else {
        grouping.contains(&x.name)
    }
}

/// The groups of an aggregation in order of first appearance: the group's labels and its members'
/// indexes in `cols`. Series are matched to groups by a hash of their grouping labels, compared
/// label by label on a hit, so a group's [`Labels`] is built once per group rather than once per
/// input series (the per-series copies were ~5% of evaluating 1,000 recording rules).
fn group_members(cols: &[Col], without: bool, grouping: &[String]) -> Vec<(Labels, Vec<usize>)> {
    let state = foldhash::fast::FixedState::default();
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    // Hash of the grouping labels -> the groups with that hash (more than one only on collision).
    let mut index: HashMap<u64, Vec<usize>> = HashMap::default();
    for (ci, c) in cols.iter().enumerate() {
        let key = || c.labels.iter().filter(|x| in_group(x, without, grouping));
        let mut h = state.build_hasher();
        for l in key() {
            // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
            h.write_usize(l.name.len());
            h.write(l.name.as_bytes());
            h.write_usize(l.value.len());
            h.write(l.value.as_bytes());
        }
        let candidates = index.entry(h.finish()).or_default();
        match candidates
            .iter()
            .copied()
            .find(|&gi| groups[gi].0.iter().eq(key()))
        {
            Some(gi) => groups[gi].1.push(ci),
            None => {
                candidates.push(groups.len());
                groups.push((group_labels(&c.labels, without, grouping), vec![ci]));
            }
        }
    }
    groups
}

fn group_labels(l: &Labels, without: bool, grouping: &[String]) -> Labels {
    Labels::from_sorted_unchecked(
        l.iter()
            .filter(|x| in_group(x, without, grouping))
            .cloned()
            .collect(),
    )
}

fn valid_label_name(s: &str) -> bool {
    // Prometheus 3 accepts any valid UTF-8 label name that is not empty.
    !s.is_empty()
}

fn string_arg(e: &Expr) -> R<String> {
    match unwrap_parens(e) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => err("expected a string literal argument"),
    }
}

/// Go's `strconv.ParseFloat` for `le` values (accepts `+Inf`, `Inf`, `NaN`, hex, underscores not).
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().ok()
}

/// Converts a Go regexp template (`$1`, `${name}`, `$$`) to the `regex` crate's syntax: the same
/// except that Go takes the longest name after `$` (so `$1x` names group `1x`, which is empty).
fn go_template_to_rust(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() && b[i + 1] != b'$' && b[i + 1] != b'{' {
            let st = i + 1;
            let mut j = st;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > st {
                out.push_str("${");
                out.push_str(&s[st..j]);
                out.push('}');
                i = j;
                continue;
            }
        }
        if b[i] == b'$' && i + 1 < b.len() && b[i + 1] == b'$' {
            out.push_str("$$");
            i += 2;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn absent_labels(e: &Expr) -> R<Labels> {
    let vs = match unwrap_parens(e) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Ok(Labels::default()),
    };
    let mut has: HashMap<String, bool> = HashMap::default();
    let mut v: Vec<Label> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains_key(&m.name) {
            v.retain(|l| l.name != m.name);
            v.push(Label::new(m.name.clone(), m.value.clone()));
            has.insert(m.name.clone(), true);
        } else {
            v.retain(|l| l.name != m.name);
        }
    }
    Ok(Labels::new(v))
}

#[derive(Clone, Copy, Debug)]
enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Resets,
    Changes,
    Deriv,
    PredictLinear,
    Des,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    LastOverTime,
    FirstOverTime,
    PresentOverTime,
    AbsentOverTime,
    MadOverTime,
    TsOfMax,
    TsOfMin,
    TsOfLast,
    TsOfFirst,
}

impl RangeFn {
    fn from_name(n: &str) -> Option<RangeFn> {
        use RangeFn::*;
        Some(match n {
            "rate" => Rate,
            "increase" => Increase,
            "delta" => Delta,
            "irate" => Irate,
            "idelta" => Idelta,
            "resets" => Resets,
            "changes" => Changes,
            "deriv" => Deriv,
            "predict_linear" => PredictLinear,
            "double_exponential_smoothing" | "holt_winters" => Des,
            "avg_over_time" => AvgOverTime,
            "sum_over_time" => SumOverTime,
            "count_over_time" => CountOverTime,
            "min_over_time" => MinOverTime,
            "max_over_time" => MaxOverTime,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "quantile_over_time" => QuantileOverTime,
            "last_over_time" => LastOverTime,
            "first_over_time" => FirstOverTime,
            "present_over_time" => PresentOverTime,
            "absent_over_time" => AbsentOverTime,
            "mad_over_time" => MadOverTime,
            "ts_of_max_over_time" => TsOfMax,
            "ts_of_min_over_time" => TsOfMin,
            "ts_of_last_over_time" => TsOfLast,
            "ts_of_first_over_time" => TsOfFirst,
            _ => return None,
        })
    }

    /// One window's value; `w` is non-empty.
    fn apply(
        self,
        w: &[(i64, f64)],
        start: i64,
        end: i64,
        range: i64,
        t: i64,
        sc: &dyn Fn(usize) -> f64,
    ) -> Option<f64> {
        use RangeFn::*;
        match self {
            Rate => f::extrapolated_rate(w, start, end, range, true, true),
            Increase => f::extrapolated_rate(w, start, end, range, true, false),
            Delta => f::extrapolated_rate(w, start, end, range, false, false),
            Irate => f::instant_value(w, true),
            Idelta => f::instant_value(w, false),
            Resets => Some(f::resets(w)),
            Changes => Some(f::changes(w)),
            Deriv => {
                if w.len() < 2 {
                    return None;
                }
                Some(f::linear_regression(w, w[0].0).0)
            }
            PredictLinear => {
                if w.len() < 2 {
                    return None;
                }
                let (slope, intercept) = f::linear_regression(w, t);
                Some(slope * sc(0) + intercept)
            }
            Des => f::double_exponential_smoothing(w, sc(0), sc(1)),
            AvgOverTime => Some(f::avg_over_time(w)),
            SumOverTime => Some(f::sum_over_time(w)),
            CountOverTime => Some(w.len() as f64),
            MinOverTime => Some(f::extreme_over_time(w, false)),
            MaxOverTime => Some(f::extreme_over_time(w, true)),
            StddevOverTime => Some(f::variance_over_time(w).sqrt()),
            StdvarOverTime => Some(f::variance_over_time(w)),
            QuantileOverTime => {
                let mut v: Vec<f64> = w.iter().map(|p| p.1).collect();
                Some(f::quantile(sc(0), &mut v))
            }
            LastOverTime => w.last().map(|p| p.1),
            FirstOverTime => w.first().map(|p| p.1),
            PresentOverTime | AbsentOverTime => Some(1.0),
            MadOverTime => Some(f::mad_over_time(w)),
            TsOfMax | TsOfMin => {
                let max = matches!(self, TsOfMax);
                let mut m = w[0].1;
                let mut ts = w[0].0;
                for p in w {
                    let better = if max { p.1 > m } else { p.1 < m };
                    if better || m.is_nan() {
                        m = p.1;
                        ts = p.0;
                    }
                }
                Some(ts as f64 / 1000.0)
            }
            TsOfLast => w.last().map(|p| p.0 as f64 / 1000.0),
            TsOfFirst => w.first().map(|p| p.0 as f64 / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            2 => Just(None),
            6 => (-1e6f64..1e6).prop_map(Some),
            1 => prop_oneof![
                Just(0.0), Just(-0.0), Just(f64::NAN), Just(f64::INFINITY),
                Just(f64::NEG_INFINITY), Just(1e308), Just(-1e308), Just(1e-300)
            ]
            .prop_map(Some),
        ]
    }

    /// A value's bits with every NaN as one: which NaN an addition returns depends on its
    /// operands' order (x86 returns the first operand's), and PromQL cannot tell NaNs apart
    /// (Prometheus prints every one as `NaN`).
    fn bits(v: f64) -> u64 {
        if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        }
    }

    proptest! {
        /// The member-by-member `sum`/`count` gives `aggregate_step`'s results bit for bit (NaNs
        /// as one) and its `drop_name`, sequentially and by parallel blocks.
        #[test]
        fn sum_count_group_matches_aggregate_step(
            cols in prop::collection::vec(
                (prop::collection::vec(value(), 70), any::<bool>()), 0..12),
            pick in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            parallel in any::<bool>(),
        ) {
            let n = 70;
            let cols: Vec<Col> = cols
                .into_iter()
                .map(|(vals, drop_name)| Col { labels: Labels::default(), vals, drop_name })
                .collect();
            let members: Vec<usize> = if cols.is_empty() {
                Vec::new()
            } else {
                pick.iter().map(|i| i.index(cols.len())).collect()
            };
            let group = (Labels::default(), members);
            for op in [T_SUM, T_COUNT] {
                let got = sum_count_group(op, &cols, &group, n, parallel);
                let mut heap = Vec::new();
                let mut drop_name = false;
                for i in 0..n {
                    let want = aggregate_step(
                        op, &cols, &group.1, i, f64::NAN, &mut heap, &mut drop_name,
                    );
                    prop_assert_eq!(got.vals[i].map(bits), want.map(bits));
                }
                prop_assert_eq!(got.vals.len(), n);
                prop_assert_eq!(got.drop_name, drop_name);
            }
        }
    }
}
