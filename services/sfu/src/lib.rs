//! ppodok's SFU: LiveKit-compatible signalling (v0, two PeerConnections per participant).
//!
//! Layers, each knowing only the one below:
//! - [`http`]: the HTTP routes and the WebSocket upgrade; [`twirp`]: the server API;
//! - [`signal`]: one task per signalling socket, speaking LiveKit's protobuf messages;
//! - [`hub`] over [`room`]: rooms and participants as plain data, and delivery of their messages;
//! - [`media`]: PeerConnections behind the SFU's own types.

pub mod config;
pub mod data;
pub mod forward;
pub mod http;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod room;
pub mod router;
pub mod sdp;
pub mod signal;
pub mod startup;
pub mod twirp;
pub mod webhook;
