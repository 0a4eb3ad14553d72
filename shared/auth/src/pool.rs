//! A bounded pool for password hashing, so that a flood of logins neither stalls the
//! async executor nor queues without bound.
//!
//! A job is first admitted (at most `workers + queue` at once, else [`PoolError::Busy`]
//! at once), then waits for one of `workers` slots and runs on tokio's blocking pool.
//! Both permits move into the blocking job: if the caller goes away, the slot stays
//! taken until the hash really ends.

use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{HashParams, Password, burn_time, hash_password, verify_password};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `workers + queue` jobs are already admitted; try again later (503).
    #[error("too many password hashes in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The number of cores, or 1 when unknown: the usual `workers` for [`HashPool::new`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Cheap to clone: clones share the same limits.
#[derive(Debug, Clone)]
pub struct HashPool {
    params: HashParams,
    capacity: usize,
    admission: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

impl HashPool {
    /// At most `workers` hashes run at once and `queue` more wait; `workers` is at least 1.
    pub fn new(params: HashParams, workers: usize, queue: usize) -> Self {
        let workers = workers.clamp(1, Semaphore::MAX_PERMITS);
        let capacity = workers.saturating_add(queue).min(Semaphore::MAX_PERMITS);
        Self {
            params,
            capacity,
            admission: Arc::new(Semaphore::new(capacity)),
            running: Arc::new(Semaphore::new(workers)),
        }
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

    pub(crate) fn try_admit(&self) -> Result<OwnedSemaphorePermit, PoolError> {
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
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, slot);
            job()
        })
        .await
        .map_err(|e| PoolError::Failed(format!("hash job: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::tests::{FAST, password};

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
