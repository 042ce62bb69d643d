//! Group passwords: argon2 (19 MiB and tens of milliseconds each), computed on a few dedicated
//! threads while a bounded number of requests wait; beyond that a request is refused at once.
//! Without the bound, 64 parallel wrong passwords took the process to gigabytes of RSS and slowed
//! every other request. Dedicated threads matter too: the allocator keeps a freed 19 MiB block in
//! the arena of the thread that used it, so hashing on whichever blocking-pool thread is free would
//! leave one such block behind per thread that ever hashed.

use std::sync::{mpsc, Arc, Mutex};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot is busy and the queue is full.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

type Job = Box<dyn FnOnce() + Send>;

pub struct Passwords {
    /// Feeds the hashing threads.
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Running plus waiting requests.
    admitted: Arc<Semaphore>,
}

impl Passwords {
    /// `concurrency` 0 = half the cores, at least one.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = if concurrency == 0 {
            (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1)
        } else {
            concurrency
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..concurrency {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job; the threads end with the sender.
                    let next = rx.lock().map(|r| r.recv());
                    match next {
                        Ok(Ok(job)) => job(),
                        _ => return,
                    }
                })
                .expect("spawn a password hashing thread");
        }
        Self {
            jobs: Mutex::new(tx),
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
        }
    }

    async fn bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| PasswordError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .lock()
            .map_err(|e| PasswordError::Failed(e.to_string()))?
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|e| PasswordError::Failed(e.to_string()))?;
        result
            .await
            .map_err(|e| PasswordError::Failed(e.to_string()))
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.bounded(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Failed(e.to_string()))
        })
        .await?
    }

    /// True when `candidate` matches the stored hash (false when either is missing).
    pub async fn matches(
        &self,
        hash: Option<String>,
        candidate: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (Some(hash), Some(candidate)) = (hash, candidate) else {
            return Ok(false);
        };
        self.bounded(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(candidate.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
    }
}
