//! Builds the SFU from settings and serves it until stopped.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use livekit_protocol as lk;
use ppodok_tokens::livekit::LivekitKeys;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::http::{route, HttpState};
use crate::hub::Hub;
use crate::media::{MediaEngine, MediaSettings, NatMapping};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::signal::SignalContext;
use crate::webhook::{DeliveryPolicy, Webhooks};

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: Arc<HttpState>,
    shutdown: watch::Sender<bool>,
    drain_timeout: std::time::Duration,
}

/// Stops a running [`Application`]: the listener closes, and every session tells its client to
/// reconnect elsewhere and ends.
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind((settings.host.as_str(), settings.port)).await?;
        let port = listener.local_addr()?.port();
        let metrics = Metrics::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let media = MediaEngine::new(
            MediaSettings {
                bind_ip: settings.rtc.bind_ip,
                port_range: (settings.rtc.udp_port_min, settings.rtc.udp_port_max),
                // Validated above.
                nat_1to1: settings
                    .rtc
                    .nat_1to1_ips
                    .iter()
                    .filter_map(|entry| NatMapping::parse(entry))
                    .collect(),
            },
            metrics.wire.clone(),
        )
        .with_media_threads(settings.rtc.media_thread_count())?;
        let keys = LivekitKeys::new(&settings.livekit.api_key, &settings.livekit.api_secret);
        let webhooks = Webhooks::start(
            settings.webhook.urls.clone(),
            keys.clone(),
            DeliveryPolicy::default(),
            metrics.clone(),
        );
        let signal = Arc::new(SignalContext {
            hub: Arc::new(Hub::with_webhooks(metrics.clone(), webhooks)),
            media: Arc::new(media),
            metrics,
            ping_interval_secs: settings.signal.ping_interval_secs,
            ping_timeout_secs: settings.signal.ping_timeout_secs,
            // The SFU itself needs no STUN/TURN (it has a public address, NAT 1:1, or is
            // local); its clients get these.
            ice_servers: settings
                .rtc
                .ice_servers
                .iter()
                .map(|s| lk::IceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
            shutdown: shutdown_rx,
            keys: keys.clone(),
            token_refresh_secs: settings.signal.token_refresh_secs,
            resume_grace_secs: settings.signal.resume_grace_secs,
        });
        // Rooms made through the server API close once empty past their timeouts.
        let reaper_hub = Arc::downgrade(&signal.hub);
        let mut reaper_stop = shutdown.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = reaper_stop.wait_for(|stopped| *stopped) => return,
                }
                let Some(hub) = reaper_hub.upgrade() else {
                    return;
                };
                hub.reap(crate::hub::wall_ms());
            }
        });
        // Active speakers: each room's audio levels, looked at a few times a second.
        let speakers_hub = Arc::downgrade(&signal.hub);
        let mut speakers_stop = shutdown.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::speakers::TICK);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = speakers_stop.wait_for(|stopped| *stopped) => return,
                }
                let Some(hub) = speakers_hub.upgrade() else {
                    return;
                };
                hub.tick_speakers();
            }
        });
        let node_id = match settings.cluster.node_id.trim() {
            "" => crate::registry::default_node_id(),
            id => id.to_owned(),
        };
        let registry = if settings.cluster.enabled() {
            let registry = Registry::connect(
                &settings.cluster,
                node_id.clone(),
                port,
                signal.hub.clone(),
                signal.metrics.clone(),
            )
            .await?;
            registry.refresh_once().await;
            registry.spawn(shutdown.subscribe());
            tracing::info!(node = %node_id, "registered in the node registry");
            Some(registry)
        } else {
            None
        };
        let state = Arc::new(HttpState {
            keys,
            signal,
            node_id,
            registry,
        });
        Ok(Self {
            listener,
            port,
            state,
            shutdown,
            drain_timeout: std::time::Duration::from_secs(settings.cluster.drain_timeout_secs),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The rooms, for operations and tests (e.g. [`Hub::drop_connection`]).
    pub fn hub(&self) -> Arc<Hub> {
        self.state.signal.hub.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// This node's id (`cluster.node_id`, else the host name): its segment in `/sfu/<id>/rtc`.
    pub fn node_id(&self) -> &str {
        &self.state.node_id
    }

    /// The node registry, when `cluster.redis_url` is set.
    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.state.registry.clone()
    }

    /// What SIGTERM does: in a cluster, drain (no new rooms) until the last room here has ended
    /// or `cluster.drain_timeout_secs` passed, then stop; a second signal stops at once. Alone,
    /// stop at once.
    pub fn stop_on_signal(&self) {
        let stop = self.shutdown_handle();
        let registry = self.registry();
        let timeout = self.drain_timeout;
        tokio::spawn(async move {
            wait_for_signal().await;
            if let Some(registry) = registry {
                registry.start_drain().await;
                let deadline = tokio::time::Instant::now() + timeout;
                let drained = async {
                    while registry.local_rooms() > 0 && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                };
                tokio::select! {
                    _ = drained => {}
                    _ = wait_for_signal() => {}
                }
            }
            stop.shutdown();
        });
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut stop = self.shutdown.subscribe();
        loop {
            let (stream, peer): (_, SocketAddr) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| route(state.clone(), req));
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            });
        }
        tracing::info!("SFU stopped accepting connections");
        if let Some(registry) = &self.state.registry {
            registry.deregister().await;
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
