//! SFU nodes and room placement, as both services see them in Redis: the key names, a node's
//! registry record, and the placement policy (a pure choice over records).
//!
//! Keys (all under the deployment's key prefix, `ppodok:` by default):
//! - `sfu:node:<id>`: the node's [`NodeRecord`] as JSON, refreshed by the node every
//!   `cluster.refresh_millis` and expiring after `cluster.ttl_millis`: a node that stops
//!   refreshing (killed, partitioned) is gone within the TTL;
//! - `sfu:nodes`: set of node ids that registered (a member whose record expired is ignored and
//!   pruned by readers);
//! - `sfu:node:<id>:rooms`: sorted set of the rooms placed on the node, scored by the placement's
//!   expiry (unix seconds), so that a room placed a moment ago counts before anyone joined it;
//! - `sfu:room:<room>`: the id of the node the room is placed on (set by the API with `SET NX`,
//!   replaced only by compare-and-set, released by the node when the room ends there).

use serde::{Deserialize, Serialize};

pub fn node_key(prefix: &str, node: &str) -> String {
    format!("{prefix}sfu:node:{node}")
}

pub fn nodes_key(prefix: &str) -> String {
    format!("{prefix}sfu:nodes")
}

pub fn node_rooms_key(prefix: &str, node: &str) -> String {
    format!("{prefix}sfu:node:{node}:rooms")
}

pub fn placement_key(prefix: &str, room: &str) -> String {
    format!("{prefix}sfu:room:{room}")
}

/// Compare-and-set of a placement: `KEYS[1]` the room's placement key, `KEYS[2]` the new node's
/// rooms set; `ARGV` = expected current node ("" = none), new node, TTL seconds, room, expiry
/// (unix seconds). Returns the placement in effect afterwards (the new node, or whoever won).
pub const PLACE_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
return ARGV[2]
"#;

/// Releases a placement if it is still this node's: `KEYS[1]` placement key, `KEYS[2]` the
/// node's rooms set; `ARGV` = node, room. Returns 1 when released.
pub const RELEASE_SCRIPT: &str = r#"
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub id: String,
    /// Signalling URL handed to clients (through the router: `wss://<host>/sfu/<id>`).
    pub url: String,
    /// HTTP URL of the node's server API (RoomService), reached over the private network.
    pub internal_url: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub zone: String,
    /// Participants the node takes at most.
    pub capacity: u32,
    pub rooms: u32,
    pub participants: u32,
    pub tracks: u32,
    /// RTP payload bits per second forwarded to subscribers (last refresh period).
    pub egress_bps: u64,
    /// Process CPU use over the last refresh period, in percent of one core.
    pub cpu_percent: f32,
    /// Takes no new rooms; finishes the ones it has.
    pub draining: bool,
    /// Unix milliseconds of this record.
    pub updated_at_ms: i64,
}

/// How the API picks a node for a new room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Lowest participants / capacity, then fewest rooms placed, then id.
    LeastLoaded,
    /// Fewest rooms placed, then lowest participants / capacity, then id.
    FewestRooms,
}

/// A node as placement sees it: its record and the rooms currently placed on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub record: NodeRecord,
    pub placed_rooms: u32,
}

impl Candidate {
    fn load(&self) -> f64 {
        f64::from(self.record.participants) / f64::from(self.record.capacity.max(1))
    }

    /// Rooms this node holds: the larger of what it reports and what was placed on it.
    fn rooms(&self) -> u32 {
        self.record.rooms.max(self.placed_rooms)
    }

    /// Healthy for a new room: not draining, capacity left (in `region` when one is asked for).
    pub fn accepts_new_rooms(&self, region: &str) -> bool {
        !self.record.draining
            && self.record.participants < self.record.capacity
            && (region.is_empty() || self.record.region == region)
    }
}

/// The node a new room goes to, or `None` when no node is healthy with capacity left.
pub fn choose<'a>(
    policy: PlacementPolicy,
    region: &str,
    candidates: &'a [Candidate],
) -> Option<&'a Candidate> {
    let eligible = candidates.iter().filter(|c| c.accepts_new_rooms(region));
    match policy {
        PlacementPolicy::LeastLoaded => eligible.min_by(|a, b| {
            a.load()
                .total_cmp(&b.load())
                .then(a.rooms().cmp(&b.rooms()))
                .then(a.record.id.cmp(&b.record.id))
        }),
        PlacementPolicy::FewestRooms => eligible.min_by(|a, b| {
            a.rooms()
                .cmp(&b.rooms())
                .then(a.load().total_cmp(&b.load()))
                .then(a.record.id.cmp(&b.record.id))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, participants: u32, rooms: u32, placed: u32) -> Candidate {
        Candidate {
            record: NodeRecord {
                id: id.into(),
                url: format!("ws://router/sfu/{id}"),
                internal_url: format!("http://{id}:7880"),
                region: "kr".into(),
                zone: "a".into(),
                capacity: 10,
                rooms,
                participants,
                tracks: 0,
                egress_bps: 0,
                cpu_percent: 0.0,
                draining: false,
                updated_at_ms: 0,
            },
            placed_rooms: placed,
        }
    }

    #[test]
    fn least_loaded_counts_rooms_placed_but_not_joined_yet() {
        let nodes = [node("a", 0, 0, 1), node("b", 0, 0, 0)];
        let picked = choose(PlacementPolicy::LeastLoaded, "", &nodes).unwrap();
        assert_eq!(picked.record.id, "b");
        let nodes = [node("a", 2, 1, 1), node("b", 6, 1, 1)];
        assert_eq!(
            choose(PlacementPolicy::LeastLoaded, "", &nodes)
                .unwrap()
                .record
                .id,
            "a"
        );
    }

    #[test]
    fn fewest_rooms_prefers_rooms_over_load() {
        let nodes = [node("a", 1, 1, 1), node("b", 8, 0, 0)];
        let picked = choose(PlacementPolicy::FewestRooms, "", &nodes).unwrap();
        assert_eq!(picked.record.id, "b");
    }

    #[test]
    fn draining_full_and_other_region_nodes_get_no_new_rooms() {
        let mut draining = node("a", 0, 0, 0);
        draining.record.draining = true;
        let full = node("b", 10, 3, 3);
        let mut elsewhere = node("c", 0, 0, 0);
        elsewhere.record.region = "us".into();
        let nodes = [draining, full, elsewhere.clone()];
        assert!(choose(PlacementPolicy::LeastLoaded, "kr", &nodes).is_none());
        assert_eq!(
            choose(PlacementPolicy::LeastLoaded, "", &nodes)
                .unwrap()
                .record
                .id,
            "c"
        );
    }
}
