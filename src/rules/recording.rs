//! Recording rules (Prometheus 2.42's `rules/recording.go`) and what all rules share: the query
//! function (an instant query whose scalar result becomes one series without labels) and the
//! health a rule reports in `/api/v1/rules`.
//!
//! A recording rule's result keeps each series' labels, with `__name__` set to the rule's name
//! and the rule's labels overriding; two results with the same label set after that, or more
//! series than the group's `limit`, fail the evaluation (nothing is appended).

use crate::db::Db;
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::promql::{PreparedQuery, QueryOptions, Sample, Value};

/// A rule's health after its last evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleHealth {
    /// Not evaluated yet.
    #[default]
    Unknown,
    Good,
    Bad,
}

impl RuleHealth {
    /// Prometheus' words: `unknown`, `ok`, `err`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Good => "ok",
            RuleHealth::Bad => "err",
        }
    }
}

/// What `/api/v1/rules` reports of a rule's last evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleStatus {
    pub health: RuleHealth,
    pub last_error: Option<String>,
    /// Wall-clock duration of the last evaluation (query, append, commit), seconds.
    pub evaluation_seconds: f64,
    /// Wall-clock start of the last evaluation, Unix milliseconds.
    pub last_evaluation_ms: Option<i64>,
}

/// Evaluates `expr` at `ts` as a rule does (Prometheus' `EngineQueryFunc`): a vector as it is,
/// a scalar as one sample without labels, anything else an error.
pub fn query_vector(
    db: &Db,
    expr: &str,
    ts: i64,
    opts: &QueryOptions,
) -> Result<Vec<Sample>, String> {
    rule_vector(db.query_with(expr, ts, opts).map_err(|e| e.to_string())?)
}

/// [`query_vector`] of an expression parsed when the rule was loaded.
pub fn query_vector_prepared(
    db: &Db,
    q: &PreparedQuery,
    ts: i64,
    opts: &QueryOptions,
) -> Result<Vec<Sample>, String> {
    rule_vector(
        db.query_prepared(q, ts, opts)
            .map_err(|e| e.to_string())?
            .value,
    )
}

/// A rule's query result as samples: a scalar is one sample without labels.
fn rule_vector(value: Value) -> Result<Vec<Sample>, String> {
    match value {
        Value::Vector(v) => Ok(v),
        Value::Scalar { t, v } => Ok(vec![Sample {
            labels: Labels::default(),
            t,
            v,
        }]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// A recording rule.
#[derive(Debug)]
pub struct RecordingRule {
    name: String,
    /// Parsed when the rule is loaded, as Prometheus does, not at every evaluation.
    expr: PreparedQuery,
    labels: Labels,
    pub(crate) status: RuleStatus,
}

impl RecordingRule {
    pub fn new(name: String, expr: String, labels: Labels) -> RecordingRule {
        RecordingRule {
            name,
            expr: PreparedQuery::new(&expr),
            labels,
            status: RuleStatus::default(),
        }
    }

    /// The recorded metric's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn query(&self) -> &str {
        self.expr.expr()
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn status(&self) -> &RuleStatus {
        &self.status
    }

    /// The series to append at `ts`.
    pub(crate) fn eval(
        &self,
        db: &Db,
        ts: i64,
        opts: &QueryOptions,
        limit: usize,
    ) -> Result<Vec<Sample>, String> {
        let mut v = query_vector_prepared(db, &self.expr, ts, opts)?;
        for s in &mut v {
            let mut l: Vec<Label> = Vec::with_capacity(s.labels.len() + self.labels.len() + 1);
            l.extend(
                std::mem::take(&mut s.labels)
                    .into_vec()
                    .into_iter()
                    .filter(|l| l.name != METRIC_NAME),
            );
            l.push(Label::new(METRIC_NAME, self.name.clone()));
            l.extend(self.labels.iter().cloned());
            s.labels = Labels::new(l);
        }
        let mut sorted: Vec<&Labels> = v.iter().map(|s| &s.labels).collect();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        if limit > 0 && v.len() > limit {
            return Err(format!("exceeded limit of {limit} with {} series", v.len()));
        }
        Ok(v)
    }
}
