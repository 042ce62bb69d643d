//! LiveKit's server API, `RoomService`, over Twirp: `POST /twirp/livekit.RoomService/<Method>`
//! with a protobuf (`application/protobuf`) or JSON (`application/json`, protobuf's JSON
//! mapping) body, answered in the same format; errors as Twirp's JSON `{code, msg}`.
//!
//! Authorised by an API-key-signed token in `Authorization: Bearer`, with LiveKit's grants:
//! `roomList` lists, `roomCreate` creates and deletes, `roomAdmin` for the token's `room` does the
//! rest. Free of HTTP types: [`serve`] takes the request's parts and returns a [`Reply`].

use livekit_protocol as lk;
use ppodok_tokens::livekit::{LivekitKeys, VideoGrant};
use prost::Message;
use serde::{de::DeserializeOwned, Serialize};

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::room::{CoreError, ParticipantChange, RoomOptions};

pub const PREFIX: &str = "/twirp/livekit.RoomService/";
/// Largest request body read (SendData carries a payload).
pub const MAX_BODY: usize = 1 << 20;
/// Largest `SendData` payload, as LiveKit's data channel limit.
const MAX_DATA: usize = 64 * 1024;

/// The methods served; anything else is Twirp's `bad_route`.
const METHODS: [&str; 11] = [
    "CreateRoom",
    "ListRooms",
    "DeleteRoom",
    "ListParticipants",
    "GetParticipant",
    "RemoveParticipant",
    "MutePublishedTrack",
    "UpdateParticipant",
    "UpdateSubscriptions",
    "UpdateRoomMetadata",
    "SendData",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a `Content-Type`; `None` for anything Twirp does not speak.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let mime = value.split(';').next().unwrap_or("").trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/protobuf" | "application/x-protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/protobuf",
            Self::Json => "application/json",
        }
    }
}

/// What goes back over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A Twirp error: its code (which fixes the HTTP status) and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    pub code: &'static str,
    pub msg: String,
}

impl TwirpError {
    fn new(code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    fn status(&self) -> u16 {
        match self.code {
            "invalid_argument" | "malformed" => 400,
            "unauthenticated" => 401,
            "permission_denied" => 403,
            "not_found" | "bad_route" => 404,
            "failed_precondition" => 412,
            "resource_exhausted" => 429,
            _ => 500,
        }
    }

    fn reply(&self) -> Reply {
        Reply {
            status: self.status(),
            content_type: "application/json",
            body: serde_json::json!({ "code": self.code, "msg": self.msg })
                .to_string()
                .into_bytes(),
        }
    }
}

impl From<CoreError> for TwirpError {
    fn from(e: CoreError) -> Self {
        let code = match e {
            CoreError::UnknownRoom | CoreError::UnknownParticipant | CoreError::UnknownTrack => {
                "not_found"
            }
            CoreError::TooLong(_) => "invalid_argument",
            CoreError::RemoteUnmute => "failed_precondition",
            CoreError::NotAllowed | CoreError::MetadataNotAllowed => "permission_denied",
            CoreError::DuplicateCid => "invalid_argument",
        };
        Self::new(code, e.to_string())
    }
}

/// The request as the HTTP layer saw it.
pub struct Request<'a> {
    pub method: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// Serves one call and counts it by method and outcome.
pub fn serve(hub: &Hub, keys: &LivekitKeys, metrics: &Metrics, req: Request<'_>) -> Reply {
    let method = METHODS
        .iter()
        .copied()
        .find(|m| *m == req.method)
        .unwrap_or("unknown");
    let outcome = call(hub, keys, method, &req);
    let label = match &outcome {
        Ok(_) => "ok",
        Err(e) => e.code,
    };
    metrics
        .twirp_requests
        .with_label_values(&[method, label])
        .inc();
    outcome.unwrap_or_else(|e| e.reply())
}

fn call(
    hub: &Hub,
    keys: &LivekitKeys,
    method: &str,
    req: &Request<'_>,
) -> Result<Reply, TwirpError> {
    if method == "unknown" {
        return Err(TwirpError::new("bad_route", "no such method"));
    }
    let format = req
        .content_type
        .and_then(Format::from_content_type)
        .ok_or_else(|| TwirpError::new("bad_route", "unsupported Content-Type"))?;
    let grant = authorise(keys, req.authorization)?;
    let body = req.body;
    match method {
        "CreateRoom" => {
            let r: lk::CreateRoomRequest = decode(format, body)?;
            need(grant.room_create, "roomCreate")?;
            valid_name(&r.name)?;
            if r.metadata.len() > crate::room::MAX_METADATA {
                return Err(TwirpError::new("invalid_argument", "metadata is too long"));
            }
            let opts = RoomOptions {
                empty_timeout: r.empty_timeout,
                departure_timeout: r.departure_timeout,
                max_participants: r.max_participants,
                metadata: r.metadata,
            };
            encode(format, &hub.create_room(&r.name, &opts))
        }
        "ListRooms" => {
            let r: lk::ListRoomsRequest = decode(format, body)?;
            need(grant.room_list, "roomList")?;
            let rooms = hub.list_rooms(&r.names);
            encode(format, &lk::ListRoomsResponse { rooms })
        }
        "DeleteRoom" => {
            let r: lk::DeleteRoomRequest = decode(format, body)?;
            need(grant.room_create, "roomCreate")?;
            hub.delete_room(&r.room)?;
            encode(format, &lk::DeleteRoomResponse {})
        }
        "ListParticipants" => {
            let r: lk::ListParticipantsRequest = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            let participants = hub.list_participants(&r.room)?;
            encode(format, &lk::ListParticipantsResponse { participants })
        }
        "GetParticipant" => {
            let r: lk::RoomParticipantIdentity = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            encode(format, &hub.get_participant(&r.room, &r.identity)?)
        }
        "RemoveParticipant" => {
            let r: lk::RoomParticipantIdentity = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            hub.remove_participant(&r.room, &r.identity)?;
            encode(format, &lk::RemoveParticipantResponse {})
        }
        "MutePublishedTrack" => {
            let r: lk::MuteRoomTrackRequest = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            let track = hub.mute_published_track(&r.room, &r.identity, &r.track_sid, r.muted)?;
            encode(format, &lk::MuteRoomTrackResponse { track: Some(track) })
        }
        "UpdateParticipant" => {
            let r: lk::UpdateParticipantRequest = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            let change = ParticipantChange {
                metadata: Some(r.metadata),
                name: Some(r.name),
                attributes: r.attributes,
                permission: r.permission,
            };
            encode(
                format,
                &hub.update_participant(&r.room, &r.identity, change)?,
            )
        }
        "UpdateSubscriptions" => {
            let r: lk::UpdateSubscriptionsRequest = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            let mut tracks = r.track_sids;
            tracks.extend(r.participant_tracks.into_iter().flat_map(|p| p.track_sids));
            hub.update_subscriptions(&r.room, &r.identity, tracks, r.subscribe)?;
            encode(format, &lk::UpdateSubscriptionsResponse {})
        }
        "UpdateRoomMetadata" => {
            let r: lk::UpdateRoomMetadataRequest = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            encode(format, &hub.update_room_metadata(&r.room, &r.metadata)?)
        }
        "SendData" => {
            let r: lk::SendDataRequest = decode(format, body)?;
            admin_of(&grant, &r.room)?;
            if r.data.len() > MAX_DATA {
                return Err(TwirpError::new("invalid_argument", "data is too large"));
            }
            let reliable = r.kind != lk::data_packet::Kind::Lossy as i32;
            let room = r.room.clone();
            let destinations = r.destination_identities.clone();
            let bytes = server_packet(r).encode_to_vec();
            hub.send_server_data(&room, bytes, destinations, reliable)?;
            encode(format, &lk::SendDataResponse {})
        }
        _ => Err(TwirpError::new("bad_route", "no such method")),
    }
}

/// A user packet from the server: no sender identity, so clients show it as from the room.
#[allow(deprecated)]
fn server_packet(r: lk::SendDataRequest) -> lk::DataPacket {
    lk::DataPacket {
        kind: r.kind,
        destination_identities: r.destination_identities.clone(),
        value: Some(lk::data_packet::Value::User(lk::UserPacket {
            payload: r.data,
            topic: r.topic,
            destination_identities: r.destination_identities,
            nonce: r.nonce,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn authorise(keys: &LivekitKeys, authorization: Option<&str>) -> Result<VideoGrant, TwirpError> {
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TwirpError::new("unauthenticated", "no bearer token"))?;
    let claims = keys
        .verify_api_token(token)
        .map_err(|_| TwirpError::new("unauthenticated", "invalid token"))?;
    Ok(claims.video.unwrap_or_default())
}

fn need(granted: bool, what: &str) -> Result<(), TwirpError> {
    if granted {
        Ok(())
    } else {
        Err(TwirpError::new(
            "permission_denied",
            format!("permissions denied: {what} grant required"),
        ))
    }
}

/// `roomAdmin` for this very room (LiveKit's rule: the grant names the room it administers).
fn admin_of(grant: &VideoGrant, room: &str) -> Result<(), TwirpError> {
    valid_name(room)?;
    need(
        grant.room_admin && grant.room == room,
        "roomAdmin for this room",
    )
}

fn valid_name(room: &str) -> Result<(), TwirpError> {
    if room.trim().is_empty() || room.len() > 256 {
        return Err(TwirpError::new(
            "invalid_argument",
            "a room name is required",
        ));
    }
    Ok(())
}

fn decode<T: Message + Default + DeserializeOwned>(
    format: Format,
    body: &[u8],
) -> Result<T, TwirpError> {
    let malformed =
        |e: String| TwirpError::new("malformed", format!("the body does not parse: {e}"));
    match format {
        Format::Protobuf => T::decode(body).map_err(|e| malformed(e.to_string())),
        // Twirp clients send `{}` for an empty request; an empty body means the same.
        Format::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        Format::Json => serde_json::from_slice(body).map_err(|e| malformed(e.to_string())),
    }
}

fn encode<T: Message + Serialize>(format: Format, msg: &T) -> Result<Reply, TwirpError> {
    let body = match format {
        Format::Protobuf => msg.encode_to_vec(),
        Format::Json => serde_json::to_vec(msg)
            .map_err(|_| TwirpError::new("internal", "response encoding failed"))?,
    };
    Ok(Reply {
        status: 200,
        content_type: format.content_type(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> LivekitKeys {
        LivekitKeys::new("key", SECRET)
    }

    fn token(grant: VideoGrant) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        format!(
            "Bearer {}",
            keys().mint_access_token("", "", grant, now, 600)
        )
    }

    fn json(hub: &Hub, method: &str, auth: &str, body: &str) -> (u16, serde_json::Value) {
        let reply = serve(
            hub,
            &keys(),
            &Metrics::new(),
            Request {
                method,
                content_type: Some("application/json; charset=utf-8"),
                authorization: Some(auth),
                body: body.as_bytes(),
            },
        );
        (
            reply.status,
            serde_json::from_slice(&reply.body).unwrap_or_default(),
        )
    }

    #[test]
    fn grants_decide_and_errors_are_twirp_json() {
        let hub = Hub::new(Metrics::new());
        let creator = token(VideoGrant {
            room_create: true,
            ..Default::default()
        });
        let (status, room) = json(
            &hub,
            "CreateRoom",
            &creator,
            r#"{"name":"r","maxParticipants":3}"#,
        );
        assert_eq!(status, 200, "{room}");
        assert_eq!(room["name"], "r");
        assert_eq!(room["maxParticipants"], 3);
        let (status, err) = json(&hub, "ListRooms", &creator, "{}");
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("permission_denied"))
        );
        let lister = token(VideoGrant {
            room_list: true,
            ..Default::default()
        });
        let (status, list) = json(&hub, "ListRooms", &lister, "");
        assert_eq!(status, 200);
        assert_eq!(list["rooms"][0]["name"], "r");
        // roomAdmin of another room is no admin of this one.
        let other_admin = token(VideoGrant {
            room_admin: true,
            room: "other".into(),
            ..Default::default()
        });
        let (status, _) = json(&hub, "ListParticipants", &other_admin, r#"{"room":"r"}"#);
        assert_eq!(status, 403);
        let admin = token(VideoGrant {
            room_admin: true,
            room: "r".into(),
            ..Default::default()
        });
        let (status, body) = json(&hub, "ListParticipants", &admin, r#"{"room":"r"}"#);
        assert_eq!((status, body), (200, serde_json::json!({})));
        let (status, err) = json(
            &hub,
            "GetParticipant",
            &admin,
            r#"{"room":"r","identity":"x"}"#,
        );
        assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
        let (status, err) = json(&hub, "ListParticipants", &admin, "{not json");
        assert_eq!((status, err["code"].as_str()), (400, Some("malformed")));
        let (status, err) = json(&hub, "ListParticipants", "Bearer nope", "{}");
        assert_eq!(
            (status, err["code"].as_str()),
            (401, Some("unauthenticated"))
        );
        let (status, err) = json(&hub, "Nope", &admin, "{}");
        assert_eq!((status, err["code"].as_str()), (404, Some("bad_route")));
        let (status, _) = json(&hub, "DeleteRoom", &creator, r#"{"room":"r"}"#);
        assert_eq!(status, 200);
        let (status, _) = json(&hub, "DeleteRoom", &creator, r#"{"room":"r"}"#);
        assert_eq!(status, 404);
    }

    #[test]
    fn protobuf_in_protobuf_out() {
        let hub = Hub::new(Metrics::new());
        let creator = token(VideoGrant {
            room_create: true,
            room_list: true,
            ..Default::default()
        });
        let call = |method: &str, body: Vec<u8>| {
            serve(
                &hub,
                &keys(),
                &Metrics::new(),
                Request {
                    method,
                    content_type: Some("application/protobuf"),
                    authorization: Some(&creator),
                    body: &body,
                },
            )
        };
        let created = call(
            "CreateRoom",
            lk::CreateRoomRequest {
                name: "p".into(),
                metadata: "hello".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert_eq!(created.content_type, "application/protobuf");
        assert_eq!(
            lk::Room::decode(created.body.as_slice()).unwrap().metadata,
            "hello"
        );
        let listed = call("ListRooms", Vec::new());
        let rooms = lk::ListRoomsResponse::decode(listed.body.as_slice()).unwrap();
        assert_eq!(rooms.rooms.len(), 1);
    }
}
