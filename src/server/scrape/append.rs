//! Appending one scrape to the database: Prometheus 2.42's `scrapeLoop.append`, `report` and
//! `reportStale`, synchronous (the loop runs them on a blocking thread).
//!
//! A scrape is one transaction: its samples, the staleness markers of series it no longer
//! exposes, and the synthetic series (`up`, `scrape_duration_seconds`, ...). When the append
//! fails (parse error, `sample_limit`, a label limit, a missing metric name) its samples are
//! rolled back and the scrape counts as empty: staleness markers for what the previous scrape
//! exposed, and `up` 0 — exactly the order of operations of Prometheus, quirks included (series
//! appended before the failure count as seen, so they get no marker).

use std::sync::Arc;

use crate::db::{Appender, Db};
use crate::exposition::{unescape_help, Entry, Format, Parser};
use crate::head::{AppendError, MemSeries, Reject};
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::relabel::{self, Rule};

use super::cache::{Held, ScrapeCache};
use super::metrics::Metrics;

/// Prometheus' staleness marker.
pub const STALE_NAN: f64 = f64::from_bits(crate::chunk::STALE_NAN_BITS);
/// Samples more than this far in the future are out of bounds (Prometheus' `maxAheadTime`).
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// The synthetic series, keyed in the cache by their name and an `\xff` (which no exposed series
/// text contains).
const UP: &[u8] = b"up\xff";
const DURATION: &[u8] = b"scrape_duration_seconds\xff";
const SAMPLES: &[u8] = b"scrape_samples_scraped\xff";
const POST_RELABEL: &[u8] = b"scrape_samples_post_metric_relabeling\xff";
const SERIES_ADDED: &[u8] = b"scrape_series_added\xff";

/// What a target's series get from the scrape configuration.
pub struct AppendSpec {
    /// The target's labels without `__` ones: added to every series.
    pub target_labels: Labels,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_rules: Arc<Vec<Rule>>,
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
}

/// Counts of one append.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appended {
    /// Samples in the scrape (`scrape_samples_scraped`).
    pub total: u64,
    /// Samples after metric relabeling (`scrape_samples_post_metric_relabeling`).
    pub added: u64,
    /// Series new to the cache whose sample was stored (`scrape_series_added`).
    pub series_added: u64,
    pub out_of_order: u64,
    pub duplicate: u64,
    pub out_of_bounds: u64,
}

/// The outcome of [`ScrapeState::scrape_and_report`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub appended: Appended,
    /// The scrape's error (the fetch's or the append's); `None` means `up` 1.
    pub error: Option<String>,
    /// A commit that failed (nothing of the scrape is stored then).
    pub commit_error: Option<String>,
}

/// A loop's state that lives across scrapes.
#[derive(Default)]
pub struct ScrapeState {
    pub cache: ScrapeCache,
    scratch: Vec<Label>,
}

impl ScrapeState {
    pub fn new(cache: ScrapeCache) -> ScrapeState {
        ScrapeState {
            cache,
            scratch: Vec::new(),
        }
    }

    /// Prometheus' `scrapeAndReport` after the fetch: `body` is `Ok((content_type, bytes))` or
    /// the fetch error. `t` is the scrape's timestamp (ms), `now_ms` the wall clock, and
    /// `duration` gives the elapsed time of the whole scrape when the report is written.
    #[allow(clippy::too_many_arguments)]
    pub fn scrape_and_report(
        &mut self,
        db: &Db,
        spec: &AppendSpec,
        metrics: &Metrics,
        body: Result<(&str, &[u8]), String>,
        t: i64,
        now_ms: i64,
        duration: &dyn Fn() -> f64,
    ) -> Report {
        let mut app = db.appender();
        app.reserve(self.cache.series_len());
        let (content_type, bytes, mut error) = match body {
            Ok((ct, b)) => (ct, b, None),
            Err(e) => ("", &[][..], Some(e)),
        };
        let (appended, app_err) =
            self.append(&mut app, db, spec, metrics, bytes, content_type, t, now_ms);
        if let Some(e) = app_err {
            app.rollback();
            app = db.appender();
            // An empty scrape: markers for everything the previous scrape exposed.
            let (_, e2) = self.append(&mut app, db, spec, metrics, &[], "", t, now_ms);
            if e2.is_some() {
                app.rollback();
                app = db.appender();
            }
            error.get_or_insert(e);
        }
        let up = if error.is_none() { 1.0 } else { 0.0 };
        let values = [
            (UP, up),
            (DURATION, duration()),
            (SAMPLES, appended.total as f64),
            (POST_RELABEL, appended.added as f64),
            (SERIES_ADDED, appended.series_added as f64),
        ];
        for (name, v) in values {
            self.add_report_sample(&mut app, db, spec, name, t, v);
        }
        let commit_error = app.commit().err().map(|e| e.to_string());
        Report {
            appended,
            error,
            commit_error,
        }
    }

    /// Prometheus' `endOfRunStaleness` body: an empty scrape (markers for every series of the
    /// last scrape) and markers for the synthetic series, at `t`.
    pub fn end_of_run(
        &mut self,
        db: &Db,
        spec: &AppendSpec,
        metrics: &Metrics,
        t: i64,
        now_ms: i64,
    ) -> Option<String> {
        let mut app = db.appender();
        let (_, e) = self.append(&mut app, db, spec, metrics, &[], "", t, now_ms);
        if e.is_some() {
            app.rollback();
            app = db.appender();
        }
        for name in [UP, DURATION, SAMPLES, POST_RELABEL, SERIES_ADDED] {
            self.add_report_sample(&mut app, db, spec, name, t, STALE_NAN);
        }
        app.commit().err().map(|e| e.to_string())
    }

    /// Prometheus' `scrapeLoop.append`. Returns the counts and the error that fails the scrape
    /// (the caller then rolls back).
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        app: &mut Appender<'_>,
        db: &Db,
        spec: &AppendSpec,
        metrics: &Metrics,
        body: &[u8],
        content_type: &str,
        def_t: i64,
        now_ms: i64,
    ) -> (Appended, Option<String>) {
        let format = Format::from_content_type(content_type);
        let mut p = Parser::new(body, format);
        let max_t = now_ms.saturating_add(MAX_AHEAD_MS);
        let mut n = Appended::default();
        let mut err: Option<String> = None;
        let mut sample_limit_hit = false;
        let mut limit_count = 0u64;
        let cache = &mut self.cache;
        let mark = cache.mark();
        loop {
            // The line the cache predicts is compared as bytes; only its value is parsed.
            let predicted = cache.predicted().and_then(|text| p.next_sample_for(text));
            let hit = predicted.is_some();
            let entry = match predicted.map(Ok).or_else(|| p.next_entry().transpose()) {
                Some(Ok(e)) => e,
                None => break,
                Some(Err(e)) => {
                    err = Some(e.to_string());
                    break;
                }
            };
            let (series, value, ts) = match entry {
                Entry::Type { metric, kind } => {
                    cache.set_type(metric, kind);
                    continue;
                }
                Entry::Help { metric, text } => {
                    cache.set_help(metric, &unescape_help(text, format));
                    continue;
                }
                Entry::Unit { metric, unit } => {
                    cache.set_unit(metric, unit);
                    continue;
                }
                Entry::Comment | Entry::Eof { .. } => continue,
                Entry::Sample {
                    series,
                    value,
                    timestamp_ms,
                } => (series, value, timestamp_ms),
            };
            n.total += 1;
            let ts = if spec.honor_timestamps { ts } else { None };
            let t = ts.unwrap_or(def_t);
            let slot = if hit {
                cache.take_predicted()
            } else {
                if cache.is_dropped(series) {
                    continue;
                }
                cache.get(series)
            };
            // Known series: no parsing, no relabeling, no allocation. The cache holds the
            // series itself, not its id: no sample looks its series up in the head.
            let (cached, mut held) = match slot.and_then(|i| cache.held(i)) {
                Some(h) => (true, h),
                None => {
                    if let Err(e) = p.labels(&mut self.scratch) {
                        err = Some(e.to_string());
                        break;
                    }
                    let exposed = Labels::new(std::mem::take(&mut self.scratch));
                    let mut lv = mutate_sample_labels(exposed, spec);
                    if !spec.metric_rules.is_empty()
                        && !relabel::process_vec(&spec.metric_rules, &mut lv)
                    {
                        cache.add_dropped(series);
                        continue;
                    }
                    let lset = Labels::new(lv);
                    if lset.is_empty() {
                        cache.add_dropped(series);
                        continue;
                    }
                    if let Err(e) = check_labels(&lset, spec) {
                        if e.limit {
                            metrics.exceeded_label_limits.inc();
                        }
                        err = Some(e.message);
                        break;
                    }
                    (false, Held::Labels(Arc::new(lset)))
                }
            };
            // Prometheus' limitAppender, then its timeLimitAppender, then the head.
            limit_count += 1;
            let over = spec.sample_limit > 0 && limit_count > spec.sample_limit;
            let mut changed = false;
            let result: Result<(), Reject> = if over {
                sample_limit_hit = true;
                Err(Reject::OutOfBounds)
            } else if t > max_t {
                Err(Reject::OutOfBounds)
            } else {
                let (r, fresh) = append_sample(app, db, &held, t, value);
                if let Some(s) = fresh {
                    held = Held::Series(s);
                    changed = true;
                }
                r
            };
            let stored = match result {
                Ok(()) => true,
                Err(r) => {
                    if !over {
                        match r {
                            Reject::OutOfOrder => {
                                n.out_of_order += 1;
                                metrics.sample_out_of_order.inc();
                            }
                            Reject::Duplicate => {
                                n.duplicate += 1;
                                metrics.sample_duplicate.inc();
                            }
                            Reject::OutOfBounds => {
                                n.out_of_bounds += 1;
                                metrics.sample_out_of_bounds.inc();
                            }
                        }
                    }
                    // The head created the series before it refused the sample (as Prometheus'
                    // head appender does), unless the limits refused it first.
                    if let (Held::Labels(l), true, false) = (&held, t <= max_t, over) {
                        held = Held::Series(db.head().get_or_create(l).0);
                        changed = true;
                    }
                    false
                }
            };
            if cached {
                if let Some(i) = slot {
                    if stored && ts.is_none() {
                        cache.track(i, mark);
                    }
                    if changed {
                        cache.set_held(i, held);
                    }
                }
            } else {
                let i = cache.add(series, held);
                if ts.is_none() {
                    cache.track(i, mark);
                }
                if stored && !sample_limit_hit {
                    n.series_added += 1;
                }
            }
            n.added += 1;
        }
        if sample_limit_hit {
            err.get_or_insert_with(|| "sample limit exceeded".to_string());
            metrics.exceeded_sample_limit.inc();
        }
        if err.is_none() {
            // Collected first: appending borrows nothing of the cache, but the fallback by
            // labels needs the database while the cache is iterated. Empty in a steady state.
            let stale: Vec<Held> = cache.stale().collect();
            for held in &stale {
                // Out of order or duplicate: the target came back under a new loop; ignored.
                let _ = append_sample(app, db, held, def_t, STALE_NAN);
            }
            if cache.iter_done(!body.is_empty()) {
                metrics.cache_flush_forced.inc();
            }
        }
        (n, err)
    }

    /// Prometheus' `addReportSample`: a synthetic series with the target's labels.
    fn add_report_sample(
        &mut self,
        app: &mut Appender<'_>,
        db: &Db,
        spec: &AppendSpec,
        key: &[u8],
        t: i64,
        v: f64,
    ) {
        // Not lines of the scrape: they stay out of the cache's prediction of the next one.
        let slot = self.cache.get_unlisted(key);
        let (cached, held) = match slot.and_then(|i| self.cache.held(i)) {
            Some(h) => (true, h),
            None => {
                let name =
                    String::from_utf8_lossy(&key[..key.len().saturating_sub(1)]).into_owned();
                let mut lv = spec.target_labels.as_slice().to_vec();
                lv.push(Label::new(METRIC_NAME, name));
                (false, Held::Labels(Arc::new(Labels::new(lv))))
            }
        };
        let (r, fresh) = append_sample(app, db, &held, t, v);
        if r.is_ok() {
            if !cached {
                self.cache
                    .add_unlisted(key, fresh.map_or(held, Held::Series));
            } else if let (Some(s), Some(i)) = (fresh, slot) {
                self.cache.set_held(i, Held::Series(s));
            }
        }
    }
}

/// Appends to the series the scrape cache holds, or by labels when it holds none or head
/// truncation removed it meanwhile (Prometheus' head appender falls back to the labels the same
/// way). Returns the series appended to when it is not the one held: found or created by labels.
fn append_sample(
    app: &mut Appender<'_>,
    db: &Db,
    held: &Held,
    t: i64,
    v: f64,
) -> (Result<(), Reject>, Option<Arc<MemSeries>>) {
    let s = match held {
        Held::Series(s) => match app.append_series(s, t, v) {
            Ok(()) => return (Ok(()), None),
            Err(AppendError::Rejected(r)) => return (Err(r), None),
            Err(AppendError::UnknownSeries(_)) | Err(AppendError::EmptyLabels) => {
                db.head().get_or_create(&s.to_labels()).0
            }
        },
        Held::Labels(l) => db.head().get_or_create(l).0,
    };
    let r = match app.append_series(&s, t, v) {
        Ok(()) => Ok(()),
        Err(AppendError::Rejected(r)) => Err(r),
        // Just created: cannot be removed; count it as out of bounds if it were.
        Err(_) => Err(Reject::OutOfBounds),
    };
    (r, Some(s))
}

/// Prometheus' `mutateSampleLabels` without the relabeling: the target's labels are added;
/// with `honor_labels` the exposed ones win, otherwise the target's win and the exposed values
/// move to `exported_<name>` (more `exported_` prefixes until the name is free).
fn mutate_sample_labels(exposed: Labels, spec: &AppendSpec) -> Vec<Label> {
    let target = &spec.target_labels;
    let mut out = exposed.as_slice().to_vec();
    if spec.honor_labels {
        for l in target.iter() {
            if exposed.get(&l.name).is_none() {
                out.push(l.clone());
            }
        }
        return out;
    }
    let mut conflicting: Vec<Label> = Vec::new();
    for l in target.iter() {
        if let Some(v) = exposed.get(&l.name) {
            conflicting.push(Label::new(l.name.clone(), v));
        }
        match out.iter_mut().find(|o| o.name == l.name) {
            Some(o) => o.value = l.value.clone(),
            None => out.push(l.clone()),
        }
    }
    if !conflicting.is_empty() {
        conflicting.sort_by_key(|l| l.name.len());
        for i in 0..conflicting.len() {
            let mut name = conflicting[i].name.clone();
            loop {
                name = format!("exported_{name}");
                let taken = exposed.get(&name).is_some()
                    || target.get(&name).is_some()
                    || conflicting[..i].iter().any(|c| c.name == name);
                if !taken {
                    break;
                }
            }
            conflicting[i].name = name;
        }
        for c in conflicting {
            match out.iter_mut().find(|o| o.name == c.name) {
                Some(o) => o.value = c.value,
                None => out.push(c),
            }
        }
    }
    out
}

struct LabelCheck {
    message: String,
    /// A label limit (counted in its metric), not a malformed set.
    limit: bool,
}

/// The checks of a new series after relabeling: metric name present and valid, label names
/// valid, then `label_limit`, `label_name_length_limit` and `label_value_length_limit`
/// (Prometheus' `verifyLabelLimits`, messages included).
fn check_labels(lset: &Labels, spec: &AppendSpec) -> Result<(), LabelCheck> {
    let bad = |message: String| LabelCheck {
        message,
        limit: false,
    };
    let limit = |message: String| LabelCheck {
        message,
        limit: true,
    };
    let Some(name) = lset.metric_name() else {
        return Err(bad("missing metric name (__name__ label)".to_string()));
    };
    if !is_metric_name(name) || lset.iter().any(|l| !is_label_name(&l.name)) {
        return Err(bad(format!("invalid metric name or label names: {lset}")));
    }
    let met: String = name.chars().take(50).collect();
    if spec.label_limit > 0 && lset.len() as u64 > spec.label_limit {
        return Err(limit(format!(
            "label_limit exceeded (metric: {met}, number of labels: {}, limit: {})",
            lset.len(),
            spec.label_limit
        )));
    }
    for l in lset.iter() {
        let short = |s: &str| s.chars().take(50).collect::<String>();
        if spec.label_name_length_limit > 0 && l.name.len() as u64 > spec.label_name_length_limit {
            return Err(limit(format!(
                "label_name_length_limit exceeded (metric: {met}, label name: {}, length: {}, limit: {})",
                short(&l.name),
                l.name.len(),
                spec.label_name_length_limit
            )));
        }
        if spec.label_value_length_limit > 0 && l.value.len() as u64 > spec.label_value_length_limit
        {
            return Err(limit(format!(
                "label_value_length_limit exceeded (metric: {met}, label name: {}, value: {:?}, length: {}, limit: {})",
                short(&l.name),
                short(&l.value),
                l.value.len(),
                spec.label_value_length_limit
            )));
        }
    }
    Ok(())
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{MatchType, Matcher};
    use crate::Options;
    use std::collections::BTreeMap;

    fn spec() -> AppendSpec {
        AppendSpec {
            target_labels: Labels::from_pairs(&[("instance", "h:1"), ("job", "j")]),
            honor_labels: false,
            honor_timestamps: true,
            metric_rules: Arc::new(Vec::new()),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
        }
    }

    /// Every series and its samples, by label text; StaleNaN shown as the string "stale".
    fn dump(db: &Db) -> BTreeMap<String, Vec<(i64, String)>> {
        let q = db.querier(i64::MIN / 2, i64::MAX / 2);
        let m = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
        let mut out = BTreeMap::new();
        for s in q.select(&[m]).unwrap() {
            let v: Vec<(i64, String)> = s
                .samples()
                .map(|(t, v)| {
                    let v = if v.to_bits() == crate::chunk::STALE_NAN_BITS {
                        "stale".to_string()
                    } else {
                        v.to_string()
                    };
                    (t, v)
                })
                .collect();
            out.insert(s.labels().to_string(), v);
        }
        out
    }

    fn scrape(
        st: &mut ScrapeState,
        db: &Db,
        sp: &AppendSpec,
        body: Result<&str, &str>,
        t: i64,
    ) -> Report {
        let m = Metrics::unregistered();
        let b = body
            .map(|b| ("text/plain; version=0.0.4", b.as_bytes()))
            .map_err(|e| e.to_string());
        st.scrape_and_report(db, sp, &m, b, t, t, &|| 0.5)
    }

    #[test]
    fn series_gone_and_failed_scrape_get_stale_markers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let sp = spec();
        let mut st = ScrapeState::default();
        let r = scrape(&mut st, &db, &sp, Ok("a 1\nb 2\n"), 1000);
        assert_eq!(r.error, None);
        assert_eq!(r.appended.series_added, 2);
        let r = scrape(&mut st, &db, &sp, Ok("a 3\n"), 2000);
        assert_eq!(r.appended.series_added, 0);
        scrape(&mut st, &db, &sp, Err("connection refused"), 3000);
        let d = dump(&db);
        let a = &d[r#"a{instance="h:1", job="j"}"#];
        assert_eq!(
            a,
            &vec![
                (1000, "1".into()),
                (2000, "3".into()),
                (3000, "stale".into())
            ]
        );
        let b = &d[r#"b{instance="h:1", job="j"}"#];
        assert_eq!(b, &vec![(1000, "2".into()), (2000, "stale".into())]);
        let up = &d[r#"up{instance="h:1", job="j"}"#];
        assert_eq!(
            up,
            &vec![(1000, "1".into()), (2000, "1".into()), (3000, "0".into())]
        );
        let n = &d[r#"scrape_samples_scraped{instance="h:1", job="j"}"#];
        assert_eq!(
            n,
            &vec![(1000, "2".into()), (2000, "1".into()), (3000, "0".into())]
        );
        assert!(d.contains_key(r#"scrape_duration_seconds{instance="h:1", job="j"}"#));
        assert!(d.contains_key(r#"scrape_series_added{instance="h:1", job="j"}"#));
        assert!(d.contains_key(r#"scrape_samples_post_metric_relabeling{instance="h:1", job="j"}"#));
    }

    #[test]
    fn sample_limit_fails_the_scrape_and_stores_nothing_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut sp = spec();
        sp.sample_limit = 2;
        let mut st = ScrapeState::default();
        let r = scrape(&mut st, &db, &sp, Ok("a 1\nb 1\n"), 1000);
        assert_eq!(r.error, None);
        let r = scrape(&mut st, &db, &sp, Ok("a 2\nb 2\nc 2\n"), 2000);
        assert_eq!(r.error.as_deref(), Some("sample limit exceeded"));
        assert_eq!(r.appended.total, 3);
        assert_eq!(r.appended.added, 3);
        let d = dump(&db);
        // Rolled back: a and b were appended before the limit, so they are "seen" (no marker),
        // c never existed (Prometheus 2.42 does the same).
        assert_eq!(d[r#"a{instance="h:1", job="j"}"#], vec![(1000, "1".into())]);
        assert!(!d.contains_key(r#"c{instance="h:1", job="j"}"#));
        assert_eq!(
            d[r#"up{instance="h:1", job="j"}"#],
            vec![(1000, "1".into()), (2000, "0".into())]
        );
        assert_eq!(
            d[r#"scrape_samples_scraped{instance="h:1", job="j"}"#],
            vec![(1000, "2".into()), (2000, "3".into())]
        );
    }

    #[test]
    fn label_limits_fail_the_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut sp = spec();
        sp.label_limit = 3;
        let mut st = ScrapeState::default();
        let r = scrape(&mut st, &db, &sp, Ok("a{x=\"1\"} 1\n"), 1000);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .starts_with("label_limit exceeded (metric: a, number of labels: 4, limit: 3)"),
            "{:?}",
            r.error
        );
        let mut sp = spec();
        sp.label_value_length_limit = 2;
        let r = scrape(&mut st, &db, &sp, Ok("a{x=\"123\"} 1\n"), 2000);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .starts_with("label_value_length_limit exceeded"),
            "{:?}",
            r.error
        );
        let mut sp = spec();
        sp.label_name_length_limit = 3;
        let r = scrape(&mut st, &db, &sp, Ok("a{long=\"1\"} 1\n"), 3000);
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .starts_with("label_name_length_limit exceeded"),
            "{:?}",
            r.error
        );
        let d = dump(&db);
        assert!(!d.keys().any(|k| k.starts_with("a{")));
    }

    #[test]
    fn honor_labels_and_exported_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut st = ScrapeState::default();
        let body = "a{job=\"x\",exported_job=\"y\",instance=\"i\"} 1\n";
        scrape(&mut st, &db, &spec(), Ok(body), 1000);
        let mut sp = spec();
        sp.honor_labels = true;
        let mut st2 = ScrapeState::default();
        scrape(&mut st2, &db, &sp, Ok("b{job=\"x\"} 1\n"), 1000);
        let d = dump(&db);
        assert!(
            d.contains_key(r#"a{exported_exported_job="x", exported_instance="i", exported_job="y", instance="h:1", job="j"}"#),
            "{:?}",
            d.keys()
        );
        assert!(
            d.contains_key(r#"b{instance="h:1", job="x"}"#),
            "{:?}",
            d.keys()
        );
    }

    #[test]
    fn timestamps_honored_or_not_and_no_staleness_for_explicit_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut st = ScrapeState::default();
        scrape(&mut st, &db, &spec(), Ok("a 1 500\n"), 1000);
        scrape(&mut st, &db, &spec(), Ok(""), 2000);
        let mut sp = spec();
        sp.honor_timestamps = false;
        let mut st2 = ScrapeState::default();
        scrape(&mut st2, &db, &sp, Ok("b 1 500\n"), 1000);
        let d = dump(&db);
        assert_eq!(d[r#"a{instance="h:1", job="j"}"#], vec![(500, "1".into())]);
        assert_eq!(d[r#"b{instance="h:1", job="j"}"#], vec![(1000, "1".into())]);
    }

    #[test]
    fn out_of_order_and_duplicates_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut st = ScrapeState::default();
        scrape(&mut st, &db, &spec(), Ok("a 1 5000\nb 1 5000\n"), 6000);
        let r = scrape(&mut st, &db, &spec(), Ok("a 1 4000\nb 2 5000\n"), 7000);
        assert_eq!(r.error, None);
        assert_eq!(r.appended.out_of_order, 1);
        assert_eq!(r.appended.duplicate, 1);
        assert_eq!(r.appended.added, 2);
    }

    #[test]
    fn parse_error_fails_the_scrape_with_markers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut st = ScrapeState::default();
        scrape(&mut st, &db, &spec(), Ok("a 1\n"), 1000);
        let r = scrape(&mut st, &db, &spec(), Ok("a 2\nb{ 1\n"), 2000);
        assert!(r.error.is_some());
        let d = dump(&db);
        // `a` was parsed before the error: seen, so no marker, and its sample rolled back.
        assert_eq!(d[r#"a{instance="h:1", job="j"}"#], vec![(1000, "1".into())]);
        assert_eq!(d[r#"up{instance="h:1", job="j"}"#][1], (2000, "0".into()));
    }

    #[test]
    fn metadata_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let mut st = ScrapeState::default();
        scrape(
            &mut st,
            &db,
            &spec(),
            Ok("# HELP a The a\\\\b.\n# TYPE a counter\na 1\n"),
            1000,
        );
        let m = st.cache.take_metadata_snapshot().unwrap();
        assert_eq!(m[0].0, "a");
        assert_eq!(m[0].1.kind, "counter");
        assert_eq!(m[0].1.help, "The a\\b.");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::Options;
    use proptest::prelude::*;

    const VALID: &str = "# HELP a The a.\n# TYPE a counter\na_total{x=\"1\",y=\"2\"} 3 1000\nb 2\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n# EOF\n";

    /// Whatever a target sends, an append neither panics nor leaves the cache unusable, in both
    /// formats, with limits on. One database for all cases (opening one per case costs more than
    /// the case).
    #[test]
    fn arbitrary_bodies_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let m = Metrics::unregistered();
        let t = std::cell::Cell::new(1_000_000i64);
        let strategy = (
            proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
            0u64..4,
        );
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1000));
        runner
            .run(&strategy, |(edits, random, om, limit)| {
                let spec = AppendSpec {
                    target_labels: Labels::from_pairs(&[("instance", "h:1"), ("job", "j")]),
                    honor_labels: false,
                    honor_timestamps: true,
                    metric_rules: Arc::new(Vec::new()),
                    sample_limit: limit,
                    label_limit: limit * 2,
                    label_name_length_limit: 0,
                    label_value_length_limit: 0,
                };
                let mut body = VALID.as_bytes().to_vec();
                for (i, b) in edits {
                    let i = i % body.len();
                    body[i] = b;
                }
                body.extend_from_slice(&random);
                let ct = if om {
                    "application/openmetrics-text"
                } else {
                    ""
                };
                let mut st = ScrapeState::default();
                for _ in 0..2 {
                    t.set(t.get() + 1000);
                    st.scrape_and_report(
                        &db,
                        &spec,
                        &m,
                        Ok((ct, &body)),
                        t.get(),
                        t.get(),
                        &|| 0.1,
                    );
                }
                t.set(t.get() + 1000);
                let r = st.scrape_and_report(
                    &db,
                    &spec,
                    &m,
                    Ok(("", b"ok 1\n")),
                    t.get(),
                    t.get(),
                    &|| 0.1,
                );
                prop_assert!(r.error.is_none() || limit > 0, "{:?}", r.error);
                Ok(())
            })
            .unwrap();
    }
}
