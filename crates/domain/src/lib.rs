//! Domain rules of ppodok as pure functions: no I/O, no clocks, easy to test.
//!
//! Everything that both services or several handlers must agree on lives here exactly once:
//! input validation (with the contract's Korean messages), the contract's wire formats for times
//! and durations, and invite codes.

pub mod cluster;
pub mod invite;
pub mod periods;
pub mod schedule;
pub mod stats;
pub mod time;
pub mod validate;

/// The group every member joins at sign-up; it can never be left or deleted.
pub const DEFAULT_GROUP_ID: i64 = 1;
