//! What every handler shares.

use std::sync::Arc;

use chrono_tz::Tz;
use ppodok_tokens::MemberTokenCodec;
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::attendance::{Attendance, PresenceNews};
use crate::clock::Clock;
use crate::config::Settings;
use crate::kakao::KakaoClient;
use crate::metrics::Metrics;
use crate::rooms::{Bookings, CalendarNews};
use crate::sessions::SessionStore;
use crate::video::{VideoSeats, VideoTokens};

pub struct AppState {
    /// Transactions and writes (on SQLite the one writer connection).
    pub db: DatabaseConnection,
    /// Reads outside transactions on the hot path (on SQLite a pool of read-only connections).
    pub read: DatabaseConnection,
    pub redis: Option<Arc<crate::redis_link::RedisLink>>,
    pub sessions: SessionStore,
    pub tokens: MemberTokenCodec,
    pub kakao: KakaoClient,
    /// Wakes the Kakao unlink outbox worker after a withdrawal commits.
    pub unlink_wake: Arc<Notify>,
    pub zone: Tz,
    pub clock: Clock,
    /// The room slot grid.
    pub grid: ppodok_domain::schedule::SlotGrid,
    /// Study days of group rankings: the service zone and the default boundary.
    pub ranking_days: ppodok_domain::periods::DayBoundary,
    pub metrics: Metrics,
    pub calendar_cache: crate::cache::CalendarCache,
    pub realtime: crate::realtime::Realtime,
    /// LiveKit key pair shared with the SFU (None when no secret is configured).
    pub livekit: Option<ppodok_tokens::livekit::LivekitKeys>,
    /// Which SFU node a video room is on (placement), and removals from rooms.
    pub video_nodes: Arc<crate::placement::VideoNodes>,
    /// Rate limits (per client IP or member).
    pub limits: crate::limits::RateLimiter,
    /// Bounded argon2 hashing of group passwords.
    pub passwords: crate::passwords::Passwords,
    /// Push reminders: providers, metrics, the worker's wake-up.
    pub push: Arc<crate::push::Push>,
    pub settings: Settings,
}

impl AppState {
    /// The service's attendance (its database, ranking days and configured lapse).
    pub fn attendance(&self) -> Attendance<'_> {
        Attendance::new(
            &self.db,
            self.ranking_days,
            chrono::Duration::seconds(self.settings.rooms.presence_lapse_secs.max(0)),
        )
    }

    /// Presence announcements: the event sink, stamped with the clock in the service zone.
    pub fn presence_news(&self) -> PresenceNews<'_> {
        PresenceNews {
            events: &self.realtime,
            zone: self.zone,
            clock: &self.clock,
        }
    }

    /// The video seats of members (open video rooms, removals from them).
    pub fn video_seats(&self) -> VideoSeats<'_> {
        VideoSeats {
            db: &self.db,
            clock: &self.clock,
            nodes: &self.video_nodes,
            join_before: self.video_join_before(),
        }
    }

    /// How long before a room's start its video opens.
    fn video_join_before(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.settings.livekit.join_before_minutes)
    }

    /// Minting video tokens with the configured keys, placement, window and lifetime.
    pub fn video_tokens(&self) -> VideoTokens<'_> {
        VideoTokens {
            db: &self.db,
            clock: &self.clock,
            keys: self.livekit.as_ref(),
            nodes: &self.video_nodes,
            join_before: self.video_join_before(),
            ttl_secs: self.settings.livekit.token_ttl_secs,
        }
    }

    /// Calendar announcements: the database, zone, grid and clock, the event sink, the group views.
    pub fn calendar_news(&self) -> CalendarNews<'_> {
        CalendarNews {
            db: &self.db,
            zone: self.zone,
            grid: &self.grid,
            clock: &self.clock,
            events: &self.realtime,
            groups: self.calendar_cache.view(),
        }
    }

    /// Booking and cancelling rooms (the booking rate limit is the caller's).
    pub fn bookings(&self) -> Bookings<'_> {
        Bookings {
            calendar: self.calendar_news(),
            horizon_days: self.settings.rooms.booking_horizon_days,
        }
    }

    /// Takes one unit of the member's booking budget (bookings and cancellations).
    pub async fn limit_bookings(&self, member_id: i64) -> Result<(), crate::limits::LimitError> {
        self.limits
            .check(
                crate::limits::Limit::BookingPerMember,
                &member_id.to_string(),
            )
            .await
    }
}
