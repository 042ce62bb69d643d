//! The one Redis connection of a process, wrapped so that an unreachable or stalled Redis costs a
//! request at most `command_timeout` once, and nothing while it stays down: after a failure the
//! link answers `Down` at once for `retry_after`, then lets one command through to probe it.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Unreachable, stalled or failing: callers degrade or answer 503.
    #[error("redis unavailable: {0}")]
    Down(String),
}

pub struct RedisLink {
    client: Client,
    command_timeout: Duration,
    retry_after: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` until which the link is considered down (0 = up).
    down_until_ms: AtomicI64,
    /// Commands sent through `run` (`redis_commands_total`).
    commands: prometheus::IntCounter,
}

impl RedisLink {
    pub fn new(
        client: Client,
        command_timeout: Duration,
        retry_after: Duration,
        commands: prometheus::IntCounter,
    ) -> Self {
        Self {
            client,
            command_timeout,
            retry_after,
            epoch: Instant::now(),
            down_until_ms: AtomicI64::new(0),
            commands,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// False while a recent failure keeps the link closed.
    pub fn is_up(&self) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) <= self.now_ms()
    }

    fn mark_down(&self) {
        let until = self.now_ms() + self.retry_after.as_millis() as i64;
        self.down_until_ms.store(until.max(1), Ordering::Relaxed);
    }

    /// Runs one command (or pipeline) against Redis within the command timeout.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, RedisError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, fred::error::Error>>,
    {
        if !self.is_up() {
            return Err(RedisError::Down("recently failed".into()));
        }
        self.commands.inc();
        match tokio::time::timeout(self.command_timeout, command(self.client.clone())).await {
            Ok(Ok(value)) => {
                self.down_until_ms.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) => {
                self.mark_down();
                Err(RedisError::Down(e.to_string()))
            }
            Err(_) => {
                self.mark_down();
                Err(RedisError::Down("command timed out".into()))
            }
        }
    }

    /// A PING that ignores the open-circuit shortcut (readiness and recovery probes).
    /// Not counted in `redis_commands_total` (scrapes and probes would show up in it).
    pub async fn ping(&self) -> bool {
        let ok = matches!(
            tokio::time::timeout(self.command_timeout, self.client.ping::<String>(None)).await,
            Ok(Ok(_))
        );
        if ok {
            self.down_until_ms.store(0, Ordering::Relaxed);
        } else {
            self.mark_down();
        }
        ok
    }
}
