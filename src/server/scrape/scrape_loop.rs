//! One target's scrape loop (Prometheus 2.42's `scrapeLoop.run`): wait for the target's offset,
//! then scrape every interval; the fetch runs on the async runtime, the append and commit on a
//! long-lived append thread ([`super::workers`]) so that a big scrape never stalls the runtime's workers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{oneshot, watch};

use crate::db::Db;
use crate::server::{Health, MetricMetadata};

use super::append::{AppendSpec, ScrapeState};
use super::cache::ScrapeCache;
use super::client::ScrapeClient;
use super::metrics::{l1, Metrics};
use super::target::Target;
use super::workers::{AppendWorkers, BodyBuffers};

/// Prometheus' `ScrapeTimestampTolerance`: a scrape starting within this of its scheduled time
/// gets the scheduled time as timestamp, so that samples compress to 1 bit of time delta.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_millis(2);
/// After shutdown is asked, a scrape in flight may go on this long before it is abandoned
/// (nothing of it is then stored).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the manager tells a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Run,
    /// Stop, then write staleness markers for everything after two intervals (target removed).
    StopStale,
    /// Stop and hand the cache to the loop replacing this one (pool restarted).
    StopHandover,
}

/// A target's state as the API shows it, shared between its loop and the manager.
pub struct TargetShared {
    pub pool: String,
    pub target: Target,
    /// The target's labels before relabeling as last discovered: a target whose discovered
    /// labels change without changing its identity keeps its loop (Prometheus'
    /// `SetDiscoveredLabels`).
    pub discovered: Mutex<crate::labels::Labels>,
    pub url: String,
    pub interval: crate::config::Duration,
    pub timeout: crate::config::Duration,
    pub status: Mutex<Status>,
    pub metadata: Mutex<Arc<Vec<(String, MetricMetadata)>>>,
    /// Set when the pool has more targets than `target_limit`: every scrape fails with it.
    pub forced_error: Mutex<Option<String>>,
}

#[derive(Clone, Debug)]
pub struct Status {
    pub health: Health,
    pub last_error: String,
    pub last_scrape_ms: Option<i64>,
    pub last_duration_s: f64,
    /// The last commit that failed, if the latest did.
    pub commit_error: Option<String>,
}

impl Default for Status {
    fn default() -> Status {
        Status {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape_ms: None,
            last_duration_s: 0.0,
            commit_error: None,
        }
    }
}

/// Everything a loop needs.
pub struct Loop {
    pub shared: Arc<TargetShared>,
    pub spec: Arc<AppendSpec>,
    pub db: Arc<Db>,
    pub client: ScrapeClient,
    pub metrics: Metrics,
    /// The threads the scrape is appended on ([`super::workers`]).
    pub workers: AppendWorkers,
    pub buffers: BodyBuffers,
    pub body_size_limit: u64,
    pub jitter_seed: u64,
    pub cmd: watch::Receiver<Command>,
    pub shutdown: watch::Receiver<bool>,
    /// The cache of the loop this one replaces, when it can be reused.
    pub handover: Option<oneshot::Receiver<ScrapeCache>>,
    /// Where this loop's cache goes if it is stopped with [`Command::StopHandover`].
    pub give: Option<oneshot::Sender<ScrapeCache>>,
    /// This loop's share of `prometheus_target_metadata_cache_entries`, and where its owner
    /// reads it back to remove it when the loop ends.
    pub meta_reported: i64,
    pub reported: Option<Arc<std::sync::atomic::AtomicI64>>,
}

fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Resolves when shutdown is asked (or the manager is gone).
async fn shutdown_asked(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Resolves with the first command other than `Run` (a dropped sender counts as
/// `StopStale`).
async fn stop_asked(rx: &mut watch::Receiver<Command>) -> Command {
    match rx.wait_for(|c| *c != Command::Run).await {
        Ok(c) => *c,
        Err(_) => Command::StopStale,
    }
}

impl Loop {
    /// Runs the loop until it is stopped (see [`Command`]) or shutdown.
    pub async fn run(self) {
        let metrics = self.metrics.clone();
        let pool = self.shared.pool.clone();
        let reported = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let r = Arc::clone(&reported);
        self.run_inner(r).await;
        let n = reported.load(std::sync::atomic::Ordering::Relaxed);
        if n != 0 {
            metrics
                .metadata_cache_entries
                .get_or_create(&l1("scrape_job", &pool))
                .dec_by(n);
        }
    }

    async fn run_inner(mut self, reported: Arc<std::sync::atomic::AtomicI64>) {
        self.reported = Some(reported);
        // The replaced loop's scrape in flight finishes before this one starts.
        let cache = match self.handover.take() {
            Some(rx) => tokio::select! {
                c = rx => c.unwrap_or_default(),
                _ = shutdown_asked(&mut self.shutdown) => return,
            },
            None => ScrapeCache::new(),
        };
        let mut state = Some(ScrapeState::new(cache));
        let interval = self.shared.interval.to_std().max(Duration::from_millis(1));
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let offset = self
            .shared
            .target
            .offset(interval, self.jitter_seed, now_ns);
        tokio::select! {
            _ = tokio::time::sleep(offset) => {}
            c = stop_asked(&mut self.cmd) => return self.finish(state, c, None).await,
            _ = shutdown_asked(&mut self.shutdown) => return,
        }
        let mut aligned = SystemTime::now();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last: Option<Instant> = None;
        let stop = loop {
            if *self.shutdown.borrow() {
                return;
            }
            let c = *self.cmd.borrow();
            if c != Command::Run {
                break c;
            }
            let mut scrape_time = SystemTime::now();
            if interval > TIMESTAMP_TOLERANCE * 100 {
                while scrape_time
                    .duration_since(aligned)
                    .is_ok_and(|d| d >= interval)
                {
                    aligned += interval;
                }
                if scrape_time
                    .duration_since(aligned)
                    .is_ok_and(|d| d <= TIMESTAMP_TOLERANCE)
                {
                    scrape_time = aligned;
                }
            }
            match self.scrape_once(&mut state, scrape_time, last).await {
                Some(started) => last = Some(started),
                None => return,
            }
            tokio::select! {
                _ = ticker.tick() => {}
                c = stop_asked(&mut self.cmd) => break c,
                _ = shutdown_asked(&mut self.shutdown) => return,
            }
        };
        self.finish(state, stop, last.map(|_| ticker)).await;
    }

    /// After the loop was told to stop: hand the cache over, or write end-of-run staleness
    /// markers when the next two scrapes would have happened (Prometheus' `endOfRunStaleness`:
    /// if the target came back meanwhile, its new loop's samples make the markers out of order,
    /// and they are dropped).
    async fn finish(
        mut self,
        state: Option<ScrapeState>,
        c: Command,
        ticker: Option<tokio::time::Interval>,
    ) {
        let Some(state) = state else { return };
        if c == Command::StopHandover {
            if let Some(tx) = self.give.take() {
                let _ = tx.send(state.cache);
            }
            return;
        }
        drop(self.give.take());
        let Some(mut ticker) = ticker else { return };
        let interval = self.shared.interval.to_std();
        let stale_time = tokio::select! {
            _ = ticker.tick() => SystemTime::now(),
            _ = shutdown_asked(&mut self.shutdown) => return,
        };
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown_asked(&mut self.shutdown) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(interval / 10) => {}
            _ = shutdown_asked(&mut self.shutdown) => return,
        }
        let db = Arc::clone(&self.db);
        let spec = Arc::clone(&self.spec);
        let metrics = self.metrics.clone();
        let mut state = state;
        let _ = self
            .workers
            .run(move || {
                state.end_of_run(
                    &db,
                    &spec,
                    &metrics,
                    now_ms(stale_time),
                    now_ms(SystemTime::now()),
                )
            })
            .await;
    }

    /// One scrape: fetch, then append and commit on one of the append threads. Returns when it
    /// started, or `None` when shutdown abandoned it.
    async fn scrape_once(
        &mut self,
        state: &mut Option<ScrapeState>,
        scrape_time: SystemTime,
        last: Option<Instant>,
    ) -> Option<Instant> {
        let start = Instant::now();
        let interval = self.shared.interval;
        if let Some(l) = last {
            self.metrics
                .interval_length
                .get_or_create(&l1("interval", &interval.to_string()))
                .observe(l.elapsed().as_secs_f64());
        }
        let forced = self
            .shared
            .forced_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fetched = match forced {
            Some(e) => Err(e),
            None => {
                let fut = self.client.fetch(
                    &self.shared.url,
                    self.shared.timeout.to_std(),
                    self.body_size_limit,
                    self.buffers.take(),
                );
                tokio::pin!(fut);
                let r = tokio::select! {
                    r = &mut fut => Some(r),
                    _ = shutdown_asked(&mut self.shutdown) => {
                        tokio::time::timeout(SHUTDOWN_GRACE, &mut fut).await.ok()
                    }
                };
                match r {
                    None => return None,
                    Some(Ok(f)) => Ok(f),
                    Some(Err(e)) => {
                        if matches!(e, super::client::FetchError::BodySizeLimit) {
                            self.metrics.exceeded_body_size_limit.inc();
                        }
                        Err(e.to_string())
                    }
                }
            }
        };
        let mut st = state.take()?;
        let db = Arc::clone(&self.db);
        let spec = Arc::clone(&self.spec);
        let metrics = self.metrics.clone();
        let t = now_ms(scrape_time);
        let joined = self
            .workers
            .run(move || {
                let body = match &fetched {
                    Ok(f) => Ok((f.content_type.as_str(), f.body.as_slice())),
                    Err(e) => Err(e.clone()),
                };
                let dur = || start.elapsed().as_secs_f64();
                let report = st.scrape_and_report(
                    &db,
                    &spec,
                    &metrics,
                    body,
                    t,
                    now_ms(SystemTime::now()),
                    &dur,
                );
                let meta = st.cache.take_metadata_snapshot();
                let meta_len = st.cache.metadata_len();
                (
                    st,
                    report,
                    fetched.ok().map(|f| f.body),
                    meta,
                    meta_len,
                    dur(),
                )
            })
            .await;
        // A panic in the append (a bug) loses this loop's cache but not the loop.
        let (st, report, body, meta, meta_len, duration) = match joined {
            Ok(v) => v,
            Err(e) => {
                *state = Some(ScrapeState::default());
                let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
                s.health = Health::Down;
                s.last_error = format!("internal error appending the scrape: {e}");
                return Some(start);
            }
        };
        *state = Some(st);
        if let Some(b) = body {
            self.buffers.give(b);
        }
        let delta = meta_len as i64 - self.meta_reported;
        if delta != 0 {
            self.metrics
                .metadata_cache_entries
                .get_or_create(&l1("scrape_job", &self.shared.pool))
                .inc_by(delta);
            self.meta_reported = meta_len as i64;
            if let Some(r) = &self.reported {
                r.store(self.meta_reported, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(m) = meta {
            *self
                .shared
                .metadata
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
        }
        let mut s = self.shared.status.lock().unwrap_or_else(|e| e.into_inner());
        s.health = if report.error.is_none() {
            Health::Up
        } else {
            Health::Down
        };
        s.last_error = report.error.unwrap_or_default();
        s.last_scrape_ms = Some(t);
        s.last_duration_s = duration;
        s.commit_error = report.commit_error;
        Some(start)
    }
}
