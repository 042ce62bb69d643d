//! The ppodok API service.

pub mod attendance;
pub mod auth;
pub mod cache;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod db;
pub mod envelope;
pub mod error;
pub mod jobs;
pub mod kakao;
pub mod membership;
pub mod metrics;
pub mod migration;
pub mod openapi;
pub mod outbox;
pub mod realtime;
pub mod rooms;
pub mod routes;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod study;
pub mod timers;
pub mod views;
pub mod webhooks;
