//! ppodok's SFU: LiveKit-compatible signalling (v0, two PeerConnections per participant).
//!
//! Layers, each knowing only the one below:
//! - [`http`]: the HTTP routes and the WebSocket upgrade; [`twirp`]: the server API;
//! - [`signal`]: one task per session, speaking LiveKit's protobuf messages over a socket it can
//!   lose and get back (resume); [`negotiation`]: its subscriber offer/answer state machine;
//! - [`hub`] over [`room`]: rooms and participants as plain data, and delivery of their messages;
//! - [`media`]: PeerConnections behind the SFU's own types.

#[cfg(test)]
mod callgrind;
pub mod config;
pub mod data;
pub mod dynacast;
pub mod forward;
pub mod http;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod negotiation;
pub mod quality;
pub mod registry;
pub mod room;
pub mod router;
pub mod sdp;
pub mod signal;
pub mod speakers;
pub mod startup;
pub mod subscription;
pub mod twirp;
pub mod webhook;
