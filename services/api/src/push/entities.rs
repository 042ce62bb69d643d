//! The push module's tables.

pub mod push_setting {
    use sea_orm::entity::prelude::*;

    /// A member's reminder choices; no row = the defaults.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "push_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub member_id: i64,
        pub enabled: bool,
        pub minutes_before: i32,
        pub at_start: bool,
        pub updated_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod push_reminder {
    use sea_orm::entity::prelude::*;

    pub const TARGET_STOMP: &str = "stomp";
    pub const KIND_BEFORE: &str = "before";
    pub const KIND_START: &str = "start";

    /// Waiting for its time or for a retry.
    pub const PENDING: &str = "pending";
    /// Claimed by a sender whose attempt is `attempt_id`, committed before the provider call.
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    /// The provider refused it for good (or the device was pruned meanwhile).
    pub const FAILED: &str = "failed";
    /// Its room had started before it could go out.
    pub const SKIPPED: &str = "skipped";
    /// A sender's lease ran out mid-call: the provider may or may not have it; never resent.
    pub const UNKNOWN: &str = "unknown";

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "push_reminders")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub reservation_id: i64,
        /// `d<deviceId>` or [`TARGET_STOMP`].
        pub target: String,
        pub device_id: Option<i64>,
        pub member_id: i64,
        pub room_id: i64,
        pub group_id: i64,
        pub kind: String,
        pub start_at: DateTime,
        pub due_at: DateTime,
        pub state: String,
        pub attempts: i32,
        pub next_attempt_at: DateTime,
        pub lease_until: Option<DateTime>,
        pub attempt_id: Option<String>,
        pub last_error: Option<String>,
        pub created_at: DateTime,
        pub sent_at: Option<DateTime>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
