//! The ppodok API service.

pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod envelope;
pub mod error;
pub mod kakao;
pub mod membership;
pub mod metrics;
pub mod migration;
pub mod openapi;
pub mod outbox;
pub mod routes;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod study;
pub mod timers;
