//! Settings: defaults compiled in from `config/default.toml`, an optional file named by
//! `PPODOK_CONFIG`, then environment variables `PPODOK__SECTION__KEY`.

pub mod push;

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub environment: String,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub kakao: KakaoSettings,
    pub time: TimeSettings,
    pub rooms: RoomSettings,
    pub study: StudySettings,
    pub cache: CacheSettings,
    pub jobs: JobSettings,
    pub livekit: LivekitSettings,
    pub cors: CorsSettings,
    pub telemetry: TelemetrySettings,
    pub limits: crate::limits::LimitSettings,
    pub web: WebSettings,
    pub push: push::PushSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebSettings {
    /// The web client's build, served at `/`; empty or missing directory = not served.
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout_secs: u64,
    pub json_limit_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    /// SQLite only: read-only connections beside the one writer (WAL lets them read during writes).
    pub sqlite_readers: u32,
    pub connect_timeout_secs: u64,
    pub acquire_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    /// Longest a request waits on one Redis command before treating Redis as down.
    pub command_timeout_millis: u64,
    /// After a failure, Redis is skipped (degraded or 503 at once) this long before it is tried again.
    pub retry_after_millis: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: String,
    pub issuer: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub dev_login: bool,
    /// How often the in-process session view compares itself with the database's auth epoch.
    pub session_sync_millis: u64,
    /// A view not synchronised for this long is not trusted (requests go to the database): the
    /// bound within which logout, refresh-token reuse and withdrawal end access on every replica.
    pub session_max_staleness_millis: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KakaoSettings {
    pub token_url: String,
    pub user_info_url: String,
    pub unlink_url: String,
    pub rest_api_key: String,
    pub client_secret: String,
    pub admin_key: String,
    pub redirect_uri: String,
    pub timeout_secs: u64,
    pub unlink_poll_secs: u64,
    pub unlink_backoff_base_ms: u64,
    pub unlink_backoff_max_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TimeSettings {
    pub zone: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoomSettings {
    pub cycle_minutes: u32,
    pub study_minutes: u32,
    pub booking_horizon_days: i64,
    pub max_window_days: i64,
    pub retention_hours: i64,
    /// How often a live STOMP session records that its member is still there (evidence of
    /// presence, see `attendance`), in real milliseconds.
    pub presence_touch_millis: u64,
    /// How long after its last evidence an unconfirmed presence waits before it is closed at that
    /// evidence (a live session refreshes it well within this).
    pub presence_lapse_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StudySettings {
    pub day_boundary: String,
    pub timer_idle_cap_minutes: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CacheSettings {
    pub calendar_ttl_secs: u64,
    pub warm_days: i64,
    pub warm_on_boot: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobSettings {
    pub enabled: bool,
    pub tick_millis: u64,
    pub lease_secs: i64,
    pub close_presence_every_secs: u64,
    pub expire_rooms_every_secs: u64,
    pub warm_cache_every_secs: u64,
    pub stop_idle_timers_every_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LivekitSettings {
    pub api_key: String,
    pub api_secret: String,
    pub sfu_url: String,
    pub token_ttl_secs: i64,
    pub join_before_minutes: i64,
    /// The single SFU's server API (RoomService), used without placement.
    #[serde(default = "default_sfu_api_url")]
    pub sfu_api_url: String,
    /// `off` (one SFU at `sfu_url`), `least_loaded` or `fewest_rooms` (nodes from the registry
    /// in Redis; see README "Running several nodes").
    #[serde(default = "default_placement")]
    pub placement: String,
    /// Place rooms only on nodes of this region (empty = any).
    #[serde(default)]
    pub placement_region: String,
}

fn default_sfu_api_url() -> String {
    "http://127.0.0.1:7880".into()
}

fn default_placement() -> String {
    "off".into()
}

impl LivekitSettings {
    /// The placement policy, `None` when placement is off.
    pub fn placement_policy(
        &self,
    ) -> anyhow::Result<Option<ppodok_domain::cluster::PlacementPolicy>> {
        use ppodok_domain::cluster::PlacementPolicy;
        match self.placement.trim() {
            "" | "off" => Ok(None),
            "least_loaded" => Ok(Some(PlacementPolicy::LeastLoaded)),
            "fewest_rooms" => Ok(Some(PlacementPolicy::FewestRooms)),
            other => anyhow::bail!(
                "livekit.placement: {other:?} is not off, least_loaded or fewest_rooms"
            ),
        }
    }
}

/// The development LiveKit secret shipped in the defaults of both services.
pub const DEV_LIVEKIT_SECRET: &str = "ppodok-dev-livekit-secret-change-me-0123";

#[derive(Debug, Clone, Deserialize)]
pub struct CorsSettings {
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub format: String,
    pub filter: String,
}

impl Settings {
    /// Loads defaults, the optional `PPODOK_CONFIG` file and `PPODOK__…` environment overrides.
    pub fn load() -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Ok(path) = std::env::var("PPODOK_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        builder
            .add_source(
                config::Environment::with_prefix("PPODOK")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("cors.allowed_origins")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()
    }

    /// The compiled-in defaults alone (tests start from these and override fields).
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("config/default.toml is valid")
    }

    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// The slot grid of rooms.
    pub fn slot_grid(&self) -> Option<ppodok_domain::schedule::SlotGrid> {
        ppodok_domain::schedule::SlotGrid::new(self.rooms.cycle_minutes, self.rooms.study_minutes)
    }

    /// The default study-day boundary in minutes after midnight (`HH:MM`).
    pub fn day_boundary_minutes(&self) -> Option<u32> {
        parse_hh_mm(&self.study.day_boundary)
    }

    pub fn uses_redis(&self) -> bool {
        !self.redis.url.trim().is_empty()
    }

    /// Rejects settings that would be unsafe or cannot work, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.time.zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!(
                "time.zone `{}` is not an IANA zone name",
                self.time.zone
            ));
        }
        if self.slot_grid().is_none() {
            return Err("rooms.cycle_minutes must tile a day and hold rooms.study_minutes".into());
        }
        if self.day_boundary_minutes().is_none() {
            return Err("study.day_boundary must be HH:MM".into());
        }
        if ppodok_telemetry::LogFormat::parse(&self.telemetry.format).is_none() {
            return Err("telemetry.format must be `text` or `json`".into());
        }
        if self.is_production() {
            if self.auth.jwt_secret.len() < 32 {
                return Err("auth.jwt_secret must be set (at least 32 bytes) in production".into());
            }
            if self.auth.dev_login {
                return Err("auth.dev_login must be off in production".into());
            }
            if self.livekit.api_secret.len() < 32 || self.livekit.api_secret == DEV_LIVEKIT_SECRET {
                return Err(
                    "livekit.api_secret must be set (at least 32 bytes, not the development default) in production".into(),
                );
            }
        } else if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return Err("auth.jwt_secret must be at least 32 bytes".into());
        }
        self.push.validate()?;
        if self.auth.access_ttl_secs <= 0 || self.auth.refresh_ttl_secs <= self.auth.access_ttl_secs
        {
            return Err("auth ttls must be positive and refresh must outlive access".into());
        }
        Ok(())
    }
}

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_hh_mm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}
