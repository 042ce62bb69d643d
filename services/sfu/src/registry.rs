//! The node registry: with `cluster.redis_url` set, this node publishes itself and its live load
//! in Redis every `refresh_millis` (a record that expires `ttl_millis` after the last refresh),
//! admits only rooms placed on it, releases the placement of a room once it ends here, and
//! deregisters when it stops. Draining (SIGTERM, or `POST /admin/drain`): the record says so, the
//! API places no new room here, and joins are admitted only to rooms this node still has.
//!
//! Key names and the record are shared with the API in [`ppodok_domain::cluster`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::Expiration;
use ppodok_domain::cluster::{self, NodeRecord};
use tokio::sync::watch;

use crate::config::ClusterSettings;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Why a join is refused here; the text reaches the client (livekit-client's `NotAllowed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("room is placed on another node: request a new token")]
    PlacedElsewhere,
    #[error("node is draining and takes no new rooms: request a new token")]
    Draining,
}

impl JoinRefusal {
    fn label(&self) -> &'static str {
        match self {
            JoinRefusal::PlacedElsewhere => "placed_elsewhere",
            JoinRefusal::Draining => "draining",
        }
    }
}

/// This node's id when none is configured: the host name, else a random one.
pub fn default_node_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or_else(|| format!("sfu-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
}

pub struct Registry {
    client: Client,
    prefix: String,
    base: NodeRecord,
    draining: AtomicBool,
    /// Set once deregistered: no refresh may bring the record back.
    left: AtomicBool,
    refresh: Duration,
    ttl: Duration,
    placement_ttl_secs: u64,
    hub: Arc<Hub>,
    metrics: Metrics,
    sampler: Mutex<Sampler>,
}

/// Load between two refreshes.
struct Sampler {
    at: Instant,
    bytes_out: u64,
    cpu_ticks: Option<u64>,
    rooms: HashSet<String>,
}

fn cpu_ticks() -> Option<u64> {
    // utime + stime, fields 14 and 15 of /proc/self/stat (after the parenthesised name).
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second of /proc (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

impl Registry {
    /// Connects to Redis; the node registers on its first refresh.
    pub async fn connect(
        settings: &ClusterSettings,
        node_id: String,
        port: u16,
        hub: Arc<Hub>,
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Self>> {
        let timeout = Duration::from_millis(500);
        let client = Builder::from_config(Config::from_url(&settings.redis_url)?)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(1);
                c.internal_command_timeout = Duration::from_secs(1);
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .build()?;
        client.init().await?;
        let or = |value: &str, default: String| {
            if value.trim().is_empty() {
                default
            } else {
                value.trim().to_owned()
            }
        };
        let base = NodeRecord {
            url: or(&settings.public_url, format!("ws://127.0.0.1:{port}")),
            internal_url: or(&settings.internal_url, format!("http://127.0.0.1:{port}")),
            id: node_id,
            region: settings.region.clone(),
            zone: settings.zone.clone(),
            capacity: settings.capacity,
            rooms: 0,
            participants: 0,
            tracks: 0,
            egress_bps: 0,
            cpu_percent: 0.0,
            draining: false,
            updated_at_ms: 0,
        };
        Ok(Arc::new(Self {
            client,
            prefix: settings.key_prefix.clone(),
            base,
            draining: AtomicBool::new(false),
            left: AtomicBool::new(false),
            refresh: Duration::from_millis(settings.refresh_millis),
            ttl: Duration::from_millis(settings.ttl_millis),
            placement_ttl_secs: settings.placement_ttl_secs.max(1),
            hub,
            metrics,
            sampler: Mutex::new(Sampler {
                at: Instant::now(),
                bytes_out: 0,
                cpu_ticks: cpu_ticks(),
                rooms: HashSet::new(),
            }),
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.base.id
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// No new rooms from now on; published at once.
    pub async fn start_drain(&self) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.base.id, "draining: no new rooms, finishing the current ones");
            self.metrics.draining.set(1);
            self.refresh_once().await;
        }
    }

    /// Rooms this node has now.
    pub fn local_rooms(&self) -> usize {
        self.hub.list_rooms(&[]).len()
    }

    fn record(&self) -> (NodeRecord, Vec<String>) {
        let rooms: HashSet<String> = self
            .hub
            .list_rooms(&[])
            .into_iter()
            .map(|r| r.name)
            .collect();
        let bytes_out = ["audio", "video"]
            .iter()
            .map(|kind| self.metrics.bytes_out.with_label_values(&[kind]).get())
            .sum::<u64>();
        let ticks = cpu_ticks();
        let mut sampler = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = sampler.at.elapsed().as_secs_f64().max(0.001);
        let egress_bps =
            (bytes_out.saturating_sub(sampler.bytes_out) as f64 * 8.0 / elapsed) as u64;
        let cpu_percent = match (ticks, sampler.cpu_ticks) {
            (Some(now), Some(before)) => {
                (now.saturating_sub(before) as f64 / USER_HZ / elapsed * 100.0) as f32
            }
            _ => 0.0,
        };
        let ended: Vec<String> = sampler.rooms.difference(&rooms).cloned().collect();
        *sampler = Sampler {
            at: Instant::now(),
            bytes_out,
            cpu_ticks: ticks,
            rooms,
        };
        let record = NodeRecord {
            rooms: sampler.rooms.len() as u32,
            participants: self.metrics.participants.get().max(0) as u32,
            tracks: self.metrics.tracks.get().max(0) as u32,
            egress_bps,
            cpu_percent,
            draining: self.is_draining(),
            updated_at_ms: crate::hub::wall_ms(),
            ..self.base.clone()
        };
        (record, ended)
    }

    /// Publishes the record and releases the placements of rooms that ended here.
    pub async fn refresh_once(&self) {
        if self.left.load(Ordering::Relaxed) {
            return;
        }
        let (record, ended) = self.record();
        let json = serde_json::to_string(&record).expect("a record serialises");
        let id = &self.base.id;
        let written: Result<(), fred::error::Error> = async {
            self.client
                .set::<(), _, _>(
                    cluster::node_key(&self.prefix, id),
                    json,
                    Some(Expiration::PX(self.ttl.as_millis() as i64)),
                    None,
                    false,
                )
                .await?;
            self.client
                .sadd::<(), _, _>(cluster::nodes_key(&self.prefix), id.as_str())
                .await?;
            for room in &ended {
                self.release(room).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = written {
            self.metrics.registry_errors.inc();
            tracing::warn!(error = %e, "node registry refresh failed");
        }
    }

    async fn release(&self, room: &str) -> Result<(), fred::error::Error> {
        let id = &self.base.id;
        self.client
            .eval::<i64, _, _, _>(
                cluster::RELEASE_SCRIPT,
                vec![
                    cluster::placement_key(&self.prefix, room),
                    cluster::node_rooms_key(&self.prefix, id),
                ],
                vec![id.as_str(), room],
            )
            .await
            .map(|_| ())
    }

    /// Refreshes until `stop` turns true.
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
                me.refresh_once().await;
            }
        });
    }

    /// Leaves the registry (graceful stop): the API stops placing rooms here at once, and the
    /// rooms placed here are placed again on their next token request.
    pub async fn deregister(&self) {
        self.left.store(true, Ordering::Relaxed);
        let id = &self.base.id;
        let result: Result<(), fred::error::Error> = async {
            self.client
                .del::<(), _>(vec![
                    cluster::node_key(&self.prefix, id),
                    cluster::node_rooms_key(&self.prefix, id),
                ])
                .await?;
            self.client
                .srem::<(), _, _>(cluster::nodes_key(&self.prefix), id.as_str())
                .await
        }
        .await;
        match result {
            Ok(()) => tracing::info!(node = %id, "left the node registry"),
            Err(e) => tracing::warn!(error = %e, "node registry: deregistering failed"),
        }
    }

    /// Whether a participant may join `room` here. A room placed on another node is refused; an
    /// unplaced one is claimed (a token minted before placement existed, or after Redis lost the
    /// key). Redis trouble admits the join: one node serving a room alone beats nobody serving it.
    pub async fn check_join(&self, room: &str) -> Result<(), JoinRefusal> {
        let outcome = self.decide(room).await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refusal)) => {
                self.metrics
                    .placement_refusals
                    .with_label_values(&[refusal.label()])
                    .inc();
                Err(refusal)
            }
            Err(e) => {
                self.metrics.registry_errors.inc();
                tracing::warn!(error = %e, room, "placement check failed: admitting the join");
                Ok(())
            }
        }
    }

    async fn decide(&self, room: &str) -> Result<Result<(), JoinRefusal>, fred::error::Error> {
        let id = self.base.id.as_str();
        let live_here = !self.hub.list_rooms(&[room.to_owned()]).is_empty();
        let key = cluster::placement_key(&self.prefix, room);
        let placed: Option<String> = self.client.get(&key).await?;
        match placed.as_deref() {
            Some(node) if node == id => {
                if self.is_draining() && !live_here {
                    // Finished here: its next token places it on a node that takes rooms.
                    self.release(room).await?;
                    return Ok(Err(JoinRefusal::Draining));
                }
                Ok(Ok(()))
            }
            Some(_) => Ok(Err(JoinRefusal::PlacedElsewhere)),
            None if self.is_draining() && !live_here => Ok(Err(JoinRefusal::Draining)),
            None => {
                let expiry = crate::hub::wall_ms() / 1000 + self.placement_ttl_secs as i64;
                let winner: Option<String> = self
                    .client
                    .eval(
                        cluster::PLACE_SCRIPT,
                        vec![key, cluster::node_rooms_key(&self.prefix, id)],
                        vec![
                            String::new(),
                            id.to_owned(),
                            self.placement_ttl_secs.to_string(),
                            room.to_owned(),
                            expiry.to_string(),
                        ],
                    )
                    .await?;
                if winner.as_deref() == Some(id) {
                    Ok(Ok(()))
                } else {
                    Ok(Err(JoinRefusal::PlacedElsewhere))
                }
            }
        }
    }
}
