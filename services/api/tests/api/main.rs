//! HTTP-level scenarios against the real application, each on SQLite and on MariaDB + Redis.

mod helpers;

mod auth;
mod authorization_matrix;
mod bad_input;
mod binary;
mod groups;
mod ops;
mod rankings;
mod stats;
mod study_support;
mod timers;
mod todos;
mod withdrawal;
