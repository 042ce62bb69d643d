//! Which SFU node a video room is on, and removing a member from it.
//!
//! With `livekit.placement` set (and Redis), a room is placed on one node of the registry when its
//! first token is minted: the policy picks a healthy node with capacity left, `SET NX` through a
//! compare-and-set script records it, so two replicas placing the same room at once agree on the
//! winner. Every later token names that node, while its registry record lives (a draining node
//! keeps its rooms until they end there; the node then releases them). A room whose node is gone
//! is placed again, compare-and-set against the dead node's id. Without placement, every token
//! names `livekit.sfu_url` (one SFU, today's behaviour).
//!
//! Key names and the record shape: [`ppodok_domain::cluster`].

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use ppodok_domain::cluster::{self, Candidate, NodeRecord, PlacementPolicy};
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};

use crate::config::LivekitSettings;
use crate::redis_link::{RedisError, RedisLink};

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// Every node is gone, draining or full.
    #[error("no SFU node takes new rooms")]
    NoNode,
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// A node a room is on: where clients connect, and where its server API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub url: String,
    pub internal_url: String,
}

impl From<NodeRecord> for Node {
    fn from(r: NodeRecord) -> Self {
        Self {
            id: r.id,
            url: r.url,
            internal_url: r.internal_url,
        }
    }
}

/// Placement through the node registry in Redis.
pub struct Placement {
    link: Arc<RedisLink>,
    prefix: String,
    policy: PlacementPolicy,
    region: String,
}

impl Placement {
    pub fn new(link: Arc<RedisLink>, prefix: &str, policy: PlacementPolicy, region: &str) -> Self {
        Self {
            link,
            prefix: prefix.to_owned(),
            policy,
            region: region.to_owned(),
        }
    }

    async fn record(&self, node: &str) -> Result<Option<NodeRecord>, RedisError> {
        let key = cluster::node_key(&self.prefix, node);
        let text: Option<String> = self.link.run(|c| async move { c.get(key).await }).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn placed(&self, room: &str) -> Result<Option<String>, RedisError> {
        let key = cluster::placement_key(&self.prefix, room);
        self.link.run(|c| async move { c.get(key).await }).await
    }

    /// The live nodes with the rooms placed on each; ids whose record expired are pruned.
    async fn candidates(&self) -> Result<Vec<Candidate>, RedisError> {
        let nodes_key = cluster::nodes_key(&self.prefix);
        let ids: Vec<String> = {
            let key = nodes_key.clone();
            self.link
                .run(|c| async move { c.smembers(key).await })
                .await?
        };
        let now = chrono::Utc::now().timestamp();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(record) = self.record(&id).await? else {
                let key = nodes_key.clone();
                self.link
                    .run(|c| async move { c.srem::<(), _, _>(key, id).await })
                    .await?;
                continue;
            };
            let rooms_key = cluster::node_rooms_key(&self.prefix, &record.id);
            let placed_rooms: u32 = self
                .link
                .run(|c| async move {
                    c.zremrangebyscore::<(), _, _, _>(&rooms_key, f64::NEG_INFINITY, now as f64)
                        .await?;
                    c.zcard(&rooms_key).await
                })
                .await?;
            out.push(Candidate {
                record,
                placed_rooms,
            });
        }
        Ok(out)
    }

    /// The node `room` is on, placing it first when it is on none or on a gone node. The
    /// placement lives `ttl_secs` (the room's remaining time and some margin).
    pub async fn node_for(&self, room: &str, ttl_secs: u64) -> Result<Node, PlacementError> {
        // A lost race re-reads once per competitor; three rounds is plenty for two replicas.
        for _ in 0..3 {
            let current = self.placed(room).await?;
            if let Some(node) = &current {
                if let Some(record) = self.record(node).await? {
                    return Ok(record.into());
                }
            }
            let candidates = self.candidates().await?;
            let chosen = cluster::choose(self.policy, &self.region, &candidates)
                .ok_or(PlacementError::NoNode)?
                .record
                .clone();
            let expiry = chrono::Utc::now().timestamp() + ttl_secs as i64;
            let keys = vec![
                cluster::placement_key(&self.prefix, room),
                cluster::node_rooms_key(&self.prefix, &chosen.id),
            ];
            let args = vec![
                current.clone().unwrap_or_default(),
                chosen.id.clone(),
                ttl_secs.max(1).to_string(),
                room.to_owned(),
                expiry.to_string(),
            ];
            let winner: Option<String> = self
                .link
                .run(|c| async move { c.eval(cluster::PLACE_SCRIPT, keys, args).await })
                .await?;
            if winner.as_deref() == Some(chosen.id.as_str()) {
                tracing::info!(room, node = %chosen.id, replaced = ?current, "video room placed");
                return Ok(chosen.into());
            }
        }
        Err(PlacementError::NoNode)
    }

    /// The node `room` is placed on now, if any and alive (no placing).
    pub async fn current(&self, room: &str) -> Result<Option<Node>, RedisError> {
        let Some(node) = self.placed(room).await? else {
            return Ok(None);
        };
        Ok(self.record(&node).await?.map(Node::from))
    }
}

/// Where video tokens send clients, and the server-API calls to the nodes.
pub struct VideoNodes {
    placement: Option<Placement>,
    keys: Option<LivekitKeys>,
    single_url: String,
    single_api_url: String,
    http: reqwest::Client,
}

/// How long a removal call may take.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);

impl VideoNodes {
    pub fn new(
        settings: &LivekitSettings,
        keys: Option<LivekitKeys>,
        redis: Option<(Arc<RedisLink>, String)>,
    ) -> anyhow::Result<Self> {
        let placement = match (settings.placement_policy()?, redis) {
            (Some(policy), Some((link, prefix))) => Some(Placement::new(
                link,
                &prefix,
                policy,
                &settings.placement_region,
            )),
            (Some(_), None) => {
                anyhow::bail!("livekit.placement needs redis.url (the node registry lives there)")
            }
            (None, _) => None,
        };
        Ok(Self {
            placement,
            keys,
            single_url: settings.sfu_url.clone(),
            single_api_url: settings.sfu_api_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().timeout(REMOVE_TIMEOUT).build()?,
        })
    }

    /// The signalling URL for a token of `room`, placing the room when needed.
    pub async fn url_for(&self, room: &str, ttl_secs: u64) -> Result<String, PlacementError> {
        match &self.placement {
            None => Ok(self.single_url.clone()),
            Some(p) => Ok(p.node_for(room, ttl_secs).await?.url),
        }
    }

    /// Removes `identity` from the video `room` through the server API (RoomService
    /// `RemoveParticipant`) of the node the room is on. Someone not in the room is no error.
    pub async fn remove_participant(&self, room: &str, identity: &str) -> anyhow::Result<()> {
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no LiveKit keys"))?;
        let api_url = match &self.placement {
            None => self.single_api_url.clone(),
            Some(p) => match p.current(room).await? {
                Some(node) => node.internal_url.trim_end_matches('/').to_owned(),
                // Not placed (or its node is gone): nobody is in it anywhere.
                None => return Ok(()),
            },
        };
        let grant = VideoGrant {
            room: room.to_owned(),
            room_admin: true,
            ..Default::default()
        };
        let token =
            keys.mint_access_token("ppodok-api", "", grant, chrono::Utc::now().timestamp(), 60);
        let res = self
            .http
            .post(format!(
                "{api_url}/twirp/livekit.RoomService/RemoveParticipant"
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({ "room": room, "identity": identity }))
            .send()
            .await?;
        let status = res.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        anyhow::bail!("RemoveParticipant answered {status}")
    }
}

/// After a booking, a membership or a member went away: removes the member from those video
/// rooms in the background (the caller's response does not wait), each within seconds.
pub fn remove_in_background(nodes: Arc<VideoNodes>, member_id: i64, rooms: Vec<i64>) {
    if rooms.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let identity = member_id.to_string();
        for room in rooms {
            let room = room.to_string();
            if let Err(e) = nodes.remove_participant(&room, &identity).await {
                tracing::warn!(error = %format!("{e:#}"), room, "removing a member from a video room failed");
            }
        }
    });
}
