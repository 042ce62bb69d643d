//! Settings: compiled-in defaults, an optional file, then `PPODOK_SFU__…` environment variables.

use std::net::IpAddr;

use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");
/// More media threads than this is a typo, not a machine.
const MAX_MEDIA_THREADS: usize = 256;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub livekit: LivekitSettings,
    pub rtc: RtcSettings,
    pub signal: SignalSettings,
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub webhook: WebhookSettings,
    #[serde(default)]
    pub cluster: ClusterSettings,
}

/// Several nodes behind one router: the node registry and room placement in Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// Empty = this node is alone: no registry, no placement checks (the embedded default).
    pub redis_url: String,
    pub key_prefix: String,
    /// Unique per node (a StatefulSet pod name); empty = the host name.
    pub node_id: String,
    /// Signalling URL clients get for this node; empty = `ws://127.0.0.1:<port>`.
    pub public_url: String,
    /// Where the API reaches this node's server API; empty = `http://127.0.0.1:<port>`.
    pub internal_url: String,
    pub region: String,
    pub zone: String,
    /// Participants this node takes; the API places no new room on a node at capacity.
    pub capacity: u32,
    pub refresh_millis: u64,
    pub ttl_millis: u64,
    /// On SIGTERM a node takes no new rooms and stops once its rooms are empty, or after this long.
    pub drain_timeout_secs: u64,
    /// A placement a node claims itself (one the API did not make) lasts this long at most.
    pub placement_ttl_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            key_prefix: "ppodok:".into(),
            node_id: String::new(),
            public_url: String::new(),
            internal_url: String::new(),
            region: String::new(),
            zone: String::new(),
            capacity: 500,
            refresh_millis: 1000,
            ttl_millis: 3000,
            drain_timeout_secs: 1800,
            placement_ttl_secs: 4 * 3600,
        }
    }
}

impl ClusterSettings {
    pub fn enabled(&self) -> bool {
        !self.redis_url.trim().is_empty()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebhookSettings {
    /// Each event is POSTed to every URL here; empty = no webhooks.
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LivekitSettings {
    pub api_key: String,
    pub api_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RtcSettings {
    pub bind_ip: IpAddr,
    pub udp_port_min: u16,
    pub udp_port_max: u16,
    #[serde(default)]
    pub nat_1to1_ips: Vec<String>,
    #[serde(default)]
    pub ice_servers: Vec<IceServerSettings>,
    /// Threads that drive PeerConnections, a room to a thread; 0 = one per CPU core.
    #[serde(default)]
    pub media_threads: usize,
}

impl RtcSettings {
    /// How many media threads to start (`media_threads`, or one per core for 0).
    pub fn media_thread_count(&self) -> usize {
        match self.media_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IceServerSettings {
    pub urls: Vec<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub credential: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SignalSettings {
    pub ping_interval_secs: u32,
    pub ping_timeout_secs: u32,
    /// How often a connected client gets a freshly minted token (`refresh_token`).
    #[serde(default = "default_token_refresh_secs")]
    pub token_refresh_secs: u32,
    /// How long a participant whose socket dropped waits for its client to resume; 0 = never.
    #[serde(default)]
    pub resume_grace_secs: u32,
}

fn default_token_refresh_secs() -> u32 {
    300
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub format: String,
    pub filter: String,
}

impl Settings {
    /// Defaults, then the file named by `PPODOK_SFU_CONFIG` (if set), then the environment.
    pub fn load() -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Ok(path) = std::env::var("PPODOK_SFU_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("PPODOK_SFU")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("rtc.nat_1to1_ips")
                    .with_list_parse_key("webhook.urls")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        settings.validate().map_err(config::ConfigError::Message)?;
        Ok(settings)
    }

    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Self {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the compiled-in defaults parse")
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.livekit.api_key.is_empty() || self.livekit.api_secret.len() < 32 {
            return Err("livekit.api_key must be set and livekit.api_secret be >= 32 bytes".into());
        }
        if self.rtc.udp_port_min > self.rtc.udp_port_max {
            return Err("rtc.udp_port_min must not exceed rtc.udp_port_max".into());
        }
        if (self.rtc.udp_port_min == 0) != (self.rtc.udp_port_max == 0) {
            return Err(
                "rtc.udp_port_min and udp_port_max are both 0 (ephemeral) or both set".into(),
            );
        }
        if self.signal.ping_interval_secs == 0
            || self.signal.ping_timeout_secs <= self.signal.ping_interval_secs
        {
            return Err(
                "signal.ping_timeout_secs must exceed a non-zero ping_interval_secs".into(),
            );
        }
        if self.signal.token_refresh_secs == 0 {
            return Err("signal.token_refresh_secs must be non-zero".into());
        }
        if self.rtc.media_threads > MAX_MEDIA_THREADS {
            return Err(format!(
                "rtc.media_threads must be 0 (one per core) to {MAX_MEDIA_THREADS}"
            ));
        }
        for entry in &self.rtc.nat_1to1_ips {
            if crate::media::NatMapping::parse(entry).is_none() {
                return Err(format!(
                    "rtc.nat_1to1_ips: {entry:?} is not an IP address or public/private pair"
                ));
            }
        }
        if self.cluster.enabled() {
            let c = &self.cluster;
            if c.refresh_millis == 0 || c.ttl_millis < 2 * c.refresh_millis {
                return Err(
                    "cluster.ttl_millis must be at least twice a non-zero refresh_millis".into(),
                );
            }
            if !c
                .node_id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err("cluster.node_id: ASCII letters, digits, '-' and '_' only".into());
            }
            if c.capacity == 0 {
                return Err("cluster.capacity must be non-zero".into());
            }
        }
        for url in &self.webhook.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("webhook.urls: {url:?} is not an http(s) URL"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::defaults();
        assert_eq!(s.port, 7880);
        assert_eq!(s.signal.ping_interval_secs, 5);
        assert_eq!(s.signal.token_refresh_secs, 300);
        assert_eq!(s.signal.resume_grace_secs, 20);
        assert!(s.webhook.urls.is_empty());
        assert!(!s.cluster.enabled(), "alone by default: no Redis");
        assert!(s.validate().is_ok());
        assert_eq!(
            s.rtc.media_threads, 0,
            "one media thread per core by default"
        );
        assert!(s.rtc.media_thread_count() >= 1);
    }

    #[test]
    fn bad_ranges_are_refused() {
        let mut s = Settings::defaults();
        s.rtc.udp_port_min = 60000;
        s.rtc.udp_port_max = 50000;
        assert!(s.validate().is_err());
        let mut s = Settings::defaults();
        s.signal.ping_timeout_secs = 1;
        assert!(s.validate().is_err());
        let mut s = Settings::defaults();
        s.livekit.api_secret = "short".into();
        assert!(s.validate().is_err());
        let mut s = Settings::defaults();
        s.webhook.urls = vec!["ftp://x".into()];
        assert!(s.validate().is_err());
        let mut s = Settings::defaults();
        s.signal.token_refresh_secs = 0;
        assert!(s.validate().is_err());
        let mut s = Settings::defaults();
        s.rtc.media_threads = 100_000;
        assert!(s.validate().is_err());
        let mut s = Settings::defaults();
        s.rtc.nat_1to1_ips = vec!["sfu.example.com".into()];
        assert!(s.validate().is_err());
        s.rtc.nat_1to1_ips = vec!["54.1.2.3/10.0.1.5".into(), "2001:db8::1".into()];
        assert!(s.validate().is_ok());
        s.cluster.redis_url = "redis://127.0.0.1:6379".into();
        s.cluster.node_id = "sfu/1".into();
        assert!(s.validate().is_err(), "a node id is a path segment");
        s.cluster.node_id = "ppodok-sfu-1".into();
        assert!(s.validate().is_ok());
        s.cluster.ttl_millis = s.cluster.refresh_millis;
        assert!(s.validate().is_err());
    }
}
