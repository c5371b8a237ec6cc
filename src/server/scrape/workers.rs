//! The threads scrapes are appended on, and the buffers response bodies are read into.
//!
//! Why a pool of its own rather than tokio's `spawn_blocking`: the append of a scrape allocates
//! (staging tables, WAL records, the scrape cache's new entries, the series created by a first
//! scrape), and with mimalloc as the allocator every thread has its own heap. Tokio's blocking
//! threads end after 10 s idle and new ones start for the next scrape, so each scrape cycle
//! left the pages of ended threads' heaps *abandoned*: their free blocks are reused only when
//! another thread happens to reclaim the page. Measured on `tsdbctl serve` at 200 targets x 1,000
//! series, up to 3.8K of at most 4.6K mimalloc pages in use had been abandoned that way. Keeping
//! tokio's blocking threads alive longer did not help: the blocking pool starts a new thread
//! whenever every existing one is busy, so it grows to the peak number of overlapping scrapes and
//! spreads the allocations over that many heaps. A fixed, small set of long-lived threads keeps
//! every append's memory in the same few heaps.
//!
//! Response bodies: a loop used to keep its last body (~77 KB with the simulator's 1,000 series,
//! up to twice that in capacity) between scrapes, i.e. one buffer per target. Only the scrapes in
//! flight need one, so loops now take a buffer from a shared [`BodyBuffers`] and give it back
//! after the append (Prometheus does the same with its `buffers` pool).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Threads appending scrapes: one per core, at least 1 and at most this many. A scrape's append
/// takes a few milliseconds; more threads than cores would only add heaps.
pub const MAX_APPEND_THREADS: usize = 4;
/// Body buffers kept for reuse; more are allocated while more scrapes are in flight and freed
/// when given back to a full pool.
pub const MAX_KEPT_BUFFERS: usize = 16;
/// A buffer bigger than this is not kept: one unusual target must not pin a huge buffer.
pub const MAX_KEPT_BUFFER_BYTES: usize = 16 << 20;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the append job panicked: {0}")]
    Panicked(String),
    #[error("the append threads are gone")]
    Gone,
}

/// A fixed set of long-lived threads running append jobs in the order they are submitted. The
/// threads end when the last handle is dropped.
#[derive(Clone)]
pub struct AppendWorkers {
    /// `None` when no thread could be started.
    tx: Option<Arc<Mutex<mpsc::Sender<Job>>>>,
}

impl AppendWorkers {
    /// Starts `threads` threads (clamped to 1..=[`MAX_APPEND_THREADS`]); 0 means one per core.
    /// When no thread can be started, jobs run on tokio's blocking threads instead.
    pub fn start(threads: usize) -> AppendWorkers {
        let n = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        }
        .clamp(1, MAX_APPEND_THREADS);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..n {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("tsdb-append-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                        guard.recv()
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        AppendWorkers {
            tx: (started > 0).then(|| Arc::new(Mutex::new(tx))),
        }
    }

    /// Runs `f` on one of the threads and waits for its result without blocking the runtime. A
    /// panic in `f` is caught and returned as an error (the thread goes on).
    pub async fn run<T, F>(&self, f: F) -> Result<T, WorkerError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let Some(tx) = &self.tx else {
            return tokio::task::spawn_blocking(f).await.map_err(|e| {
                if e.is_panic() {
                    WorkerError::Panicked(e.to_string())
                } else {
                    WorkerError::Gone
                }
            });
        };
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                WorkerError::Panicked(msg)
            });
            let _ = done.send(r);
        });
        let sent = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .is_ok();
        if !sent {
            return Err(WorkerError::Gone);
        }
        result.await.unwrap_or(Err(WorkerError::Gone))
    }
}

/// Buffers for response bodies, shared by the loops of a scrape manager.
#[derive(Clone, Default)]
pub struct BodyBuffers {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BodyBuffers {
    pub fn new() -> BodyBuffers {
        BodyBuffers::default()
    }

    /// A buffer (empty, possibly with capacity from an earlier body).
    pub fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Gives a buffer back; it is freed instead when the pool is full or the buffer too big.
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_BUFFER_BYTES {
            return;
        }
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < MAX_KEPT_BUFFERS {
            free.push(buf);
        }
    }

    /// Buffers kept now.
    pub fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_on_the_pool_threads_and_return_results() {
        let w = AppendWorkers::start(2);
        let mut names = std::collections::BTreeSet::new();
        for i in 0..20u32 {
            let (v, name) = w
                .run(move || {
                    (
                        i * 2,
                        std::thread::current().name().unwrap_or("").to_string(),
                    )
                })
                .await
                .unwrap();
            assert_eq!(v, i * 2);
            names.insert(name);
        }
        assert!(names.iter().all(|n| n.starts_with("tsdb-append-")));
        assert!(names.len() <= 2, "{names:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_an_error_and_the_threads_go_on() {
        let w = AppendWorkers::start(1);
        let r = w.run(|| -> u8 { panic!("boom") }).await;
        match r {
            Err(WorkerError::Panicked(m)) => assert_eq!(m, "boom"),
            other => panic!("{other:?}"),
        }
        assert_eq!(w.run(|| 7).await.unwrap(), 7);
    }

    #[test]
    fn body_buffers_are_reused_up_to_the_limit() {
        let b = BodyBuffers::new();
        let mut v = b.take();
        assert_eq!(v.capacity(), 0);
        v.extend_from_slice(&[1; 1000]);
        let cap = v.capacity();
        b.give(v);
        let v = b.take();
        assert!(v.is_empty());
        assert_eq!(v.capacity(), cap);
        for _ in 0..MAX_KEPT_BUFFERS + 5 {
            b.give(Vec::with_capacity(10));
        }
        assert_eq!(b.kept(), MAX_KEPT_BUFFERS);
        b.give(Vec::new());
        assert_eq!(b.kept(), MAX_KEPT_BUFFERS);
    }
}
