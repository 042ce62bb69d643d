//! Rate limits: a GCRA budget per (limit, key) — a client IP or a member. Shared by replicas
//! through Redis when configured (one Lua script, Redis's clock), in-process otherwise (the
//! `governor` crate). A limit whose shared store is unreachable refuses (`Unavailable`) rather
//! than let an unbounded number of attempts through.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use crate::redis_link::RedisLink;

/// `burst` requests at once, refilled evenly over `per_secs` (so `burst` per `per_secs`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Budget {
    pub burst: u32,
    pub per_secs: f64,
}

impl Budget {
    fn interval(self) -> Duration {
        Duration::from_secs_f64(self.per_secs.max(0.001) / f64::from(self.burst.max(1)))
    }
}

/// What is limited, and by which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Kakao and development logins, per client IP.
    LoginPerIp,
    /// Refresh-token rotations, per client IP.
    RefreshPerIp,
    /// Secret-group password attempts, per member and per client IP.
    GroupPasswordPerMember,
    GroupPasswordPerIp,
    /// Invite-code look-ups and joins, per member and per client IP.
    InviteCodePerMember,
    InviteCodePerIp,
    /// Bookings and cancellations (HTTP and STOMP), per member.
    BookingPerMember,
    /// STOMP SEND frames, per member.
    StompSendPerMember,
}

impl Limit {
    pub const ALL: [Limit; 8] = [
        Limit::LoginPerIp,
        Limit::RefreshPerIp,
        Limit::GroupPasswordPerMember,
        Limit::GroupPasswordPerIp,
        Limit::InviteCodePerMember,
        Limit::InviteCodePerIp,
        Limit::BookingPerMember,
        Limit::StompSendPerMember,
    ];

    /// The config key under `[limits]` and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Limit::LoginPerIp => "login_per_ip",
            Limit::RefreshPerIp => "refresh_per_ip",
            Limit::GroupPasswordPerMember => "group_password_per_member",
            Limit::GroupPasswordPerIp => "group_password_per_ip",
            Limit::InviteCodePerMember => "invite_code_per_member",
            Limit::InviteCodePerIp => "invite_code_per_ip",
            Limit::BookingPerMember => "booking_per_member",
            Limit::StompSendPerMember => "stomp_send_per_member",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    pub enabled: bool,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a trusted proxy
    /// that sets it); otherwise the TCP peer address.
    pub trust_forwarded_for: bool,
    pub login_per_ip: Budget,
    pub refresh_per_ip: Budget,
    pub group_password_per_member: Budget,
    pub group_password_per_ip: Budget,
    pub invite_code_per_member: Budget,
    pub invite_code_per_ip: Budget,
    pub booking_per_member: Budget,
    pub stomp_send_per_member: Budget,
    /// Todos one member may hold (across groups); more is a 400.
    pub todos_per_member: u64,
    /// STOMP sessions one member may hold open on one replica; more get an ERROR frame.
    pub stomp_sessions_per_member: usize,
    /// Password hashes (argon2, 19 MiB each) computed at once; 0 = half the cores, at least 1.
    pub password_hash_concurrency: usize,
    /// Requests that may wait for a hashing slot; more get 429 at once.
    pub password_hash_queue: usize,
}

impl LimitSettings {
    pub fn budget(&self, limit: Limit) -> Budget {
        match limit {
            Limit::LoginPerIp => self.login_per_ip,
            Limit::RefreshPerIp => self.refresh_per_ip,
            Limit::GroupPasswordPerMember => self.group_password_per_member,
            Limit::GroupPasswordPerIp => self.group_password_per_ip,
            Limit::InviteCodePerMember => self.invite_code_per_member,
            Limit::InviteCodePerIp => self.invite_code_per_ip,
            Limit::BookingPerMember => self.booking_per_member,
            Limit::StompSendPerMember => self.stomp_send_per_member,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limited")]
    Limited { retry_after: Duration },
    /// The shared store cannot be reached: refuse rather than count nothing.
    #[error("rate limit store unavailable")]
    Unavailable,
}

/// Takes one unit of `limit`'s budget: keys tat = theoretical arrival time (ms, Redis clock).
/// Returns 0 when allowed, else the milliseconds to wait.
const GCRA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return math.max(1, math.ceil(tat - now - tolerance))
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', math.max(1, math.ceil(next_tat - now)))
return 0
"#;

pub struct RateLimiter {
    settings: LimitSettings,
    store: Store,
    limited: prometheus::IntCounterVec,
}

enum Store {
    Memory {
        limiters: HashMap<Limit, DefaultKeyedRateLimiter<String>>,
        checks: AtomicU64,
    },
    Redis {
        link: Arc<RedisLink>,
        prefix: String,
    },
}

impl RateLimiter {
    pub fn new(
        settings: LimitSettings,
        redis: Option<(Arc<RedisLink>, String)>,
        registry: &prometheus::Registry,
    ) -> Self {
        let limited = prometheus::IntCounterVec::new(
            prometheus::Opts::new("rate_limited_total", "Requests refused by a rate limit"),
            &["limit"],
        )
        .expect("static metric");
        registry
            .register(Box::new(limited.clone()))
            .expect("unique metric names");
        let store = match redis {
            Some((link, prefix)) => Store::Redis { link, prefix },
            None => Store::Memory {
                limiters: Limit::ALL
                    .iter()
                    .map(|l| {
                        let b = settings.budget(*l);
                        let quota = Quota::with_period(b.interval())
                            .expect("positive interval")
                            .allow_burst(NonZeroU32::new(b.burst.max(1)).expect("at least 1"));
                        (*l, DefaultKeyedRateLimiter::keyed(quota))
                    })
                    .collect(),
                checks: AtomicU64::new(0),
            },
        };
        Self {
            settings,
            store,
            limited,
        }
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Takes one unit of `limit`'s budget for `key`.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), LimitError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let outcome = match &self.store {
            Store::Memory { limiters, checks } => {
                let limiter = &limiters[&limit];
                // Forget idle keys now and then, so the maps stay as small as the active clients.
                if checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
                    limiter.retain_recent();
                }
                limiter
                    .check_key(&key.to_owned())
                    .map_err(|not_until| LimitError::Limited {
                        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                    })
            }
            Store::Redis { link, prefix } => {
                let budget = self.settings.budget(limit);
                let redis_key = format!("{prefix}rl:{}:{key}", limit.name());
                let interval_ms = (budget.interval().as_secs_f64() * 1000.0).max(1.0);
                let wait_ms: i64 = link
                    .run(|c| async move {
                        c.eval(
                            GCRA_SCRIPT,
                            vec![redis_key],
                            vec![interval_ms.to_string(), budget.burst.max(1).to_string()],
                        )
                        .await
                    })
                    .await
                    .map_err(|e| {
                        tracing::warn!(limit = limit.name(), error = %e, "rate limit store unreachable");
                        LimitError::Unavailable
                    })?;
                if wait_ms > 0 {
                    Err(LimitError::Limited {
                        retry_after: Duration::from_millis(wait_ms as u64),
                    })
                } else {
                    Ok(())
                }
            }
        };
        if let Err(LimitError::Limited { .. }) = &outcome {
            self.limited.with_label_values(&[limit.name()]).inc();
        }
        outcome
    }
}

/// The client's IP as the limits see it.
pub fn client_ip(req: &actix_web::HttpRequest, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        if let Some(first) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            let first = first.trim();
            if !first.is_empty() {
                return first.to_owned();
            }
        }
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}
