//! A bounded pool for password hashing, so that a flood of logins neither stalls the
//! async executor nor queues without bound.
//!
//! A job is first admitted (at most `workers + queue` at once, else [`PoolError::Busy`]
//! at once), then waits for one of `workers` slots and runs on one of the pool's own
//! `workers` threads. Both permits move into the job: if the caller goes away, the slot
//! stays taken until the hash really ends.
//!
//! With a wait target (`FLOTILLA_HASH_WAIT_MS`), admission also looks at time: the
//! wait of a new job is predicted from the jobs ahead of it and the recent time of a
//! hash, and while the queue stands (for four targets' time no job has found a free
//! thread: sign-ins arrive faster than they are hashed) a job that would wait longer
//! than the target is refused at once, unless fewer than one job waits per thread. A burst after a quiet moment still queues up to
//! `queue`. So under a flood the sign-ins that are taken keep nearly their usual
//! time, and the others are told to retry at once instead of after seconds in a queue
//! ([`flotilla_kit::admission`] says more).
//!
//! Own threads rather than tokio's blocking pool: Argon2 allocates its memory (19 MiB
//! by default) per hash, and the allocator keeps a freed block in the arena of the
//! thread that used it. Spread over the many short-lived threads of the blocking pools
//! of every actix worker, that kept hundreds of MB after a signup flood; with a fixed
//! set of threads it stays near `workers` × the Argon2 memory while hashes come.
//!
//! When no job has come for [`RELEASE_AFTER`], that memory is given back (and the
//! allocator's free pages with it: see `flotilla_kit::memory`), so that the process
//! returns to its idle size after a flood; the next hash makes its memory anew.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_kit::admission::AdaptiveTimeout;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::password::hashing::release_spare_memory;
use crate::{HashParams, Password, burn_time, hash_password, verify_password};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `workers + queue` jobs are already admitted; try again later (503).
    #[error("too many password hashes in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl PoolError {
    /// The answer to a request whose password could not be hashed or checked: while
    /// the pool is full, 503 with `Retry-After` saying "Too many {busy} right now";
    /// a failure of the hashing itself, 500 (its cause logged).
    pub fn answer(self, busy: &str) -> flotilla_kit::Error {
        match self {
            PoolError::Busy => flotilla_kit::Error::Unavailable {
                code: "busy",
                message: format!("Too many {busy} right now; please retry in a moment."),
                retry_after_secs: 2,
            },
            PoolError::Failed(cause) => {
                flotilla_kit::Error::Internal(anyhow::anyhow!("password hashing: {cause}"))
            }
        }
    }
}

/// The number of cores, or 1 when unknown: the usual `workers` for [`HashPool::new`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// How long the pool waits without a job before it gives Argon2's memory back. Long
/// enough that a steady trickle of sign-ins keeps it (re-making 19 MiB costs a few
/// milliseconds), short enough to be back near the idle size well within a minute.
pub const RELEASE_AFTER: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// Cheap to clone: clones share the same limits and threads. The threads end when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct HashPool {
    params: HashParams,
    workers: usize,
    capacity: usize,
    admission: Arc<Semaphore>,
    running: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    releases: Arc<AtomicUsize>,
    /// The wait target, when admission looks at time.
    timeout: Option<Arc<AdaptiveTimeout>>,
    /// The recent time of a job, in microseconds (a moving average).
    job_us: Arc<AtomicU64>,
}

/// Hashing threads yield to everything else of the process: a request that is not
/// a hash (a health check, a page) is answered at once even while every core hashes,
/// and hashing still gets all the time nothing else wants.
#[allow(unsafe_code)]
fn lower_priority() {
    // SAFETY: setpriority(2) on this thread's own id; on Linux the nice value is per
    // thread. No memory is touched. Failure leaves the default priority, which is fine.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// Starts the threads that run the jobs; `None` if the system refuses a thread. After
/// `idle` without a job they give the spare Argon2 memory back, counted in `releases`.
fn start_threads(
    workers: usize,
    idle: Duration,
    releases: &Arc<AtomicUsize>,
) -> Option<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    for n in 0..workers {
        let queue = Arc::clone(&queue);
        let releases = Arc::clone(releases);
        std::thread::Builder::new()
            .name(format!("flotilla-hash-{n}"))
            .spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only to take the next job, not to run it. So
                    // one thread at a time waits for a job: when it waited `idle` for
                    // none, the pool was idle that long, whichever thread notices.
                    let next = match queue.lock() {
                        Ok(queue) => queue.recv_timeout(idle),
                        Err(_) => return,
                    };
                    match next {
                        Ok(job) => job(),
                        Err(RecvTimeoutError::Timeout) => {
                            if release_spare_memory() > 0 {
                                releases.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .ok()?;
    }
    Some(jobs)
}

impl HashPool {
    /// At most `workers` hashes run at once (on as many threads, started here) and
    /// `queue` more wait; `workers` is at least 1 and at most 1024. Argon2's memory is
    /// given back after [`RELEASE_AFTER`] without a job.
    ///
    /// # Panics
    /// At start-up only, if the system cannot start the threads.
    pub fn new(params: HashParams, workers: usize, queue: usize) -> Self {
        Self::releasing_after(params, workers, queue, RELEASE_AFTER)
    }

    /// [`HashPool::new`], giving Argon2's memory back after `idle` without a job.
    ///
    /// # Panics
    /// At start-up only, if the system cannot start the threads.
    #[allow(clippy::expect_used)]
    pub fn releasing_after(
        params: HashParams,
        workers: usize,
        queue: usize,
        idle: Duration,
    ) -> Self {
        let workers = workers.clamp(1, 1024);
        let capacity = workers.saturating_add(queue).min(Semaphore::MAX_PERMITS);
        let releases = Arc::new(AtomicUsize::new(0));
        Self {
            params,
            workers,
            capacity,
            admission: Arc::new(Semaphore::new(capacity)),
            running: Arc::new(Semaphore::new(workers)),
            jobs: start_threads(workers, idle, &releases).expect("the hashing threads can start"),
            releases,
            timeout: None,
            job_us: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Refuses, while the queue stands, a job predicted to wait longer than `target`
    /// (`None`: the length of the queue alone bounds it).
    pub fn with_wait_target(mut self, target: Option<Duration>) -> Self {
        self.timeout = target.map(|t| Arc::new(AdaptiveTimeout::new(t, t * 4)));
        self
    }

    /// How long a job admitted now would wait for a thread: the jobs ahead of it that
    /// must end first, `workers` at a time, each taking the recent time of a job.
    fn predicted_wait(&self, ahead: usize) -> Duration {
        let must_end = (ahead + 1).saturating_sub(self.workers);
        let rounds = must_end.div_ceil(self.workers) as u64;
        Duration::from_micros(rounds.saturating_mul(self.job_us.load(Ordering::Relaxed)))
    }

    pub fn params(&self) -> &HashParams {
        &self.params
    }

    /// `workers + queue`: the most jobs admitted at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs admitted now, waiting or running.
    pub fn in_use(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    /// How many times the idle pool gave spare Argon2 memory back.
    pub fn releases(&self) -> usize {
        self.releases.load(Ordering::Relaxed)
    }

    /// Hashes `password` with the pool's parameters.
    pub async fn hash(&self, password: Password) -> Result<String, PoolError> {
        let params = self.params;
        self.run(move || hash_password(&params, &password))
            .await?
            .map_err(|e| PoolError::Failed(e.to_string()))
    }

    /// Checks `candidate` against the PHC string `phc`; false also when `phc` is malformed.
    pub async fn verify(&self, phc: String, candidate: String) -> Result<bool, PoolError> {
        self.run(move || verify_password(&phc, &candidate)).await
    }

    /// Takes as long as [`HashPool::verify`] against a hash made with the pool's
    /// parameters: call it when the user does not exist.
    pub async fn burn_time(&self, candidate: String) -> Result<(), PoolError> {
        let params = self.params;
        self.run(move || burn_time(&params, &candidate)).await
    }

    /// Whether a job would be admitted now: for a request to be refused before the
    /// work that leads to its hash (reading the account, waiting for its turn).
    pub fn check(&self) -> Result<(), PoolError> {
        let ahead = self.in_use();
        if ahead >= self.capacity {
            return Err(PoolError::Busy);
        }
        if let Some(timeout) = &self.timeout {
            timeout.observe(ahead < self.workers);
            // One job waiting behind each thread is always taken: it keeps every
            // thread busy as sign-ins come and go, and waits one hash at most (a
            // target under one hash, on a slow or busy machine, would otherwise refuse
            // even that, and two clients per core sending again at once would turn
            // each refusal into another request).
            let short_queue = ahead < self.workers.saturating_mul(2);
            if !short_queue && !timeout.admits(self.predicted_wait(ahead)) {
                return Err(PoolError::Busy);
            }
        }
        Ok(())
    }

    pub(crate) fn try_admit(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        self.check()?;
        Arc::clone(&self.admission)
            .try_acquire_owned()
            .map_err(|_| PoolError::Busy)
    }

    async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let admitted = self.try_admit()?;
        let slot = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Failed("hash pool closed".to_owned()))?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job_us = Arc::clone(&self.job_us);
        let task: Job = Box::new(move || {
            let started = Instant::now();
            let value = job();
            // An average over the last eight or so: hashes take the same time, but the
            // machine's other work changes it.
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let before = job_us.load(Ordering::Relaxed);
            let mean = if before == 0 {
                took
            } else {
                before - before / 8 + took / 8
            };
            job_us.store(mean, Ordering::Relaxed);
            // Free the slot before answering, so the caller sees the pool as it is.
            drop((admitted, slot));
            let _ = done.send(value);
        });
        self.jobs
            .send(task)
            .map_err(|_| PoolError::Failed("the hashing threads have stopped".to_owned()))?;
        result
            .await
            .map_err(|_| PoolError::Failed("a hash job ended without a result".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::hashing::tests::{FAST, password};

    const PW: &str = "correct horse battery staple";

    #[tokio::test]
    async fn hash_and_verify() {
        let pool = HashPool::new(FAST, 2, 4);
        let phc = pool.hash(password(PW)).await.unwrap();
        assert_eq!(pool.verify(phc.clone(), PW.to_owned()).await, Ok(true));
        assert_eq!(pool.verify(phc, "wrong".to_owned()).await, Ok(false));
        assert_eq!(
            pool.verify("garbage".to_owned(), PW.to_owned()).await,
            Ok(false)
        );
        assert_eq!(pool.burn_time(PW.to_owned()).await, Ok(()));
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn busy_when_saturated() {
        let pool = HashPool::new(FAST, 1, 0);
        assert_eq!(pool.capacity(), 1);
        let held = pool.try_admit().unwrap();
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.hash(password(PW)).await, Err(PoolError::Busy));
        assert_eq!(
            pool.verify("x".to_owned(), PW.to_owned()).await,
            Err(PoolError::Busy)
        );
        assert_eq!(pool.burn_time(PW.to_owned()).await, Err(PoolError::Busy));
        drop(held);
        assert_eq!(pool.in_use(), 0);
        assert!(pool.hash(password(PW)).await.is_ok());
    }

    #[tokio::test]
    async fn queued_job_waits_for_a_worker() {
        let pool = HashPool::new(FAST, 1, 1);
        // Pretend one job is running: it holds an admission and the only worker slot.
        let admitted = pool.try_admit().unwrap();
        let slot = Arc::clone(&pool.running).try_acquire_owned().unwrap();

        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.hash(password(PW)).await }
        });
        while pool.in_use() < 2 {
            tokio::task::yield_now().await;
        }
        // Admitted, but cannot run while the slot is taken; the queue is full.
        assert!(!queued.is_finished());
        assert_eq!(pool.hash(password(PW)).await, Err(PoolError::Busy));

        drop(slot);
        let phc = queued.await.unwrap().unwrap();
        assert!(verify_password(&phc, PW));
        drop(admitted);
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jobs_within_capacity() {
        let pool = HashPool::new(FAST, 2, 6);
        let mut jobs = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let pool = pool.clone();
            jobs.spawn(async move { pool.hash(password(PW)).await });
        }
        while let Some(result) = jobs.join_next().await {
            assert!(verify_password(&result.unwrap().unwrap(), PW));
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn idle_pool_gives_its_memory_back() {
        let pool = HashPool::releasing_after(FAST, 2, 0, Duration::from_millis(20));
        pool.hash(password(PW)).await.unwrap();
        // Waits for the idle thread's release (the condition), not for a guessed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pool.releases() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle pool kept its memory"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The next hash makes its memory anew.
        let phc = pool.hash(password(PW)).await.unwrap();
        assert!(verify_password(&phc, PW));
    }

    #[tokio::test]
    async fn a_standing_queue_takes_only_jobs_that_would_not_wait_long() {
        let pool = HashPool::new(FAST, 1, 10).with_wait_target(Some(Duration::from_millis(30)));
        // A hash takes 20 ms, as the pool has measured.
        pool.job_us.store(20_000, Ordering::Relaxed);
        let running = pool.try_admit().unwrap();
        // A burst after a quiet moment: the queue may fill.
        let burst: Vec<_> = (0..8).map(|_| pool.try_admit().unwrap()).collect();
        assert_eq!(
            pool.predicted_wait(pool.in_use()),
            Duration::from_millis(180)
        );
        drop(burst);
        // No job has found the thread free for four targets' time: the queue stands,
        // and only a wait of one hash (20 ms, below 30) is taken.
        std::thread::sleep(Duration::from_millis(125));
        let second = pool.try_admit().unwrap();
        assert_eq!(pool.try_admit().err(), Some(PoolError::Busy));
        assert_eq!(pool.check(), Err(PoolError::Busy));
        // On a machine where a hash takes longer than the target (40 ms), one job
        // waiting behind the thread is still taken.
        drop(second);
        pool.job_us.store(40_000, Ordering::Relaxed);
        assert_eq!(pool.predicted_wait(1), Duration::from_millis(40));
        let second = pool.try_admit().unwrap();
        assert_eq!(pool.try_admit().err(), Some(PoolError::Busy));
        drop((running, second));
        // The thread free again: the next job meets no queue, and the next burst may
        // queue again.
        let first = pool.try_admit().unwrap();
        let queued: Vec<_> = (0..3).map(|_| pool.try_admit().unwrap()).collect();
        drop((first, queued));
    }

    #[test]
    fn zero_workers_means_one() {
        let pool = HashPool::new(FAST, 0, 0);
        assert_eq!(pool.capacity(), 1);
        assert!(default_workers() >= 1);
    }

    #[test]
    fn huge_queue_is_clamped() {
        let pool = HashPool::new(FAST, 4, usize::MAX);
        assert_eq!(pool.capacity(), Semaphore::MAX_PERMITS);
        assert_eq!(pool.in_use(), 0);
    }
}
