//! Relay of LiveKit `DataPacket`s (chat, text/byte streams, user data, RPC) between
//! participants. The SFU reads only the envelope: it stamps the sender's identity and sid over
//! whatever the client wrote (so nobody can speak as someone else) and picks the receivers.

use livekit_protocol as lk;
use lk::data_packet::Value;
use prost::Message as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("not a DataPacket: {0}")]
    Malformed(String),
    #[error("packets of this kind come only from the server")]
    ServerOnly,
}

/// A packet ready for its receivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    /// The re-encoded packet.
    pub bytes: Vec<u8>,
    /// Receivers by identity; empty means everyone else in the room.
    pub destinations: Vec<String>,
}

pub fn relay(raw: &[u8], sender_identity: &str, sender_sid: &str) -> Result<Relayed, DataError> {
    let mut packet =
        lk::DataPacket::decode(raw).map_err(|e| DataError::Malformed(e.to_string()))?;
    let mut destinations = std::mem::take(&mut packet.destination_identities);
    #[allow(deprecated)]
    match packet.value.as_mut() {
        Some(Value::Speaker(_)) => return Err(DataError::ServerOnly),
        Some(Value::User(user)) => {
            user.participant_identity = sender_identity.to_owned();
            user.participant_sid = sender_sid.to_owned();
            destinations.append(&mut user.destination_identities);
            user.destination_sids.clear();
        }
        _ => {}
    }
    destinations.sort();
    destinations.dedup();
    packet.participant_identity = sender_identity.to_owned();
    packet.participant_sid = sender_sid.to_owned();
    Ok(Relayed {
        bytes: packet.encode_to_vec(),
        destinations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn the_sender_is_stamped_and_destinations_collected() {
        let spoofed = lk::DataPacket {
            participant_identity: "bob".into(),
            participant_sid: "PA_bob".into(),
            destination_identities: vec!["carol".into()],
            sequence: 7,
            value: Some(Value::User(lk::UserPacket {
                participant_identity: "bob".into(),
                participant_sid: "PA_bob".into(),
                payload: b"hi".to_vec(),
                destination_identities: vec!["dave".into(), "carol".into()],
                topic: Some("t".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        let out = relay(&spoofed.encode_to_vec(), "alice", "PA_alice").unwrap();
        assert_eq!(out.destinations, ["carol", "dave"]);
        let back = lk::DataPacket::decode(out.bytes.as_slice()).unwrap();
        assert_eq!(back.participant_identity, "alice");
        assert_eq!(back.participant_sid, "PA_alice");
        assert_eq!(back.sequence, 7, "kept: the client de-duplicates on it");
        let Some(Value::User(user)) = back.value else {
            panic!("{back:?}")
        };
        assert_eq!(user.participant_identity, "alice");
        assert_eq!(user.participant_sid, "PA_alice");
        assert_eq!(user.payload, b"hi");
    }

    #[test]
    #[allow(deprecated)]
    fn chat_to_everyone_and_bad_input() {
        let chat = lk::DataPacket {
            value: Some(Value::ChatMessage(lk::ChatMessage {
                id: "m1".into(),
                message: "hello".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let out = relay(&chat.encode_to_vec(), "alice", "PA_a").unwrap();
        assert!(out.destinations.is_empty());
        assert!(matches!(
            relay(&[0xff, 0xff, 0xff], "a", "b"),
            Err(DataError::Malformed(_))
        ));
        let speaker = lk::DataPacket {
            value: Some(Value::Speaker(Default::default())),
            ..Default::default()
        };
        assert_eq!(
            relay(&speaker.encode_to_vec(), "a", "b"),
            Err(DataError::ServerOnly)
        );
    }
}
