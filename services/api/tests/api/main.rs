//! HTTP-level scenarios against the real application, each on SQLite and on MariaDB + Redis.

mod helpers;

mod attendance;
mod auth;
mod authorization_matrix;
mod bad_input;
mod binary;
mod cache;
mod caps;
mod groups;
mod jobs;
mod limits;
mod migrations;
mod ops;
mod push;
mod push_crash;
mod push_support;
mod rankings;
mod redis_faults;
mod rooms;
mod stats;
mod stomp;
mod stomp_browser;
mod stomp_support;
mod study_support;
mod timers;
mod todos;
mod video;
mod withdrawal;
