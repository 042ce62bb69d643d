//! sea-orm entities. Times are UTC `NaiveDateTime`s; durations are milliseconds.

pub mod member {
    use sea_orm::entity::prelude::*;

    pub const STATUS_REGULAR: &str = "REGULAR";
    pub const STATUS_WITHDRAWN: &str = "WITHDRAWN";
    pub const PROVIDER_KAKAO: &str = "kakao";
    pub const PROVIDER_DEV: &str = "dev";

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "members")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub profile: Option<String>,
        pub email: Option<String>,
        pub provider: String,
        pub provider_user_id: Option<String>,
        pub status: String,
        pub created_at: DateTime,
        pub updated_at: DateTime,
        pub withdrawn_at: Option<DateTime>,
        /// IANA zone for the member's study days; None = the service zone.
        pub time_zone: Option<String>,
        /// Minutes after local midnight when the member's study day starts; None = the default.
        pub day_boundary_minutes: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        pub fn is_regular(&self) -> bool {
            self.status == STATUS_REGULAR
        }
    }
}

pub mod study_group {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "study_groups")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub name: String,
        pub owner_id: Option<i64>,
        pub is_secret: bool,
        pub password_hash: Option<String>,
        pub invite_code: String,
        pub created_at: DateTime,
        pub updated_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::membership::Entity")]
        Membership,
    }

    impl Related<super::membership::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Membership.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod membership {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub group_id: i64,
        pub member_id: i64,
        pub color: Option<String>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::study_group::Entity",
            from = "Column::GroupId",
            to = "super::study_group::Column::Id"
        )]
        StudyGroup,
    }

    impl Related<super::study_group::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::StudyGroup.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod rank {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ranks")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub group_id: i64,
        pub member_id: i64,
        pub duration_ms: i64,
        pub created_at: DateTime,
        pub updated_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod todo {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "todos")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub group_id: i64,
        pub member_id: i64,
        pub content: String,
        pub done: bool,
        pub done_at: Option<DateTime>,
        pub created_at: DateTime,
        pub updated_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod push_client {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "push_clients")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub member_id: i64,
        pub token: String,
        pub token_key: String,
        pub created_at: DateTime,
        pub updated_at: DateTime,
        /// `fcm` (token = FCM registration token) or `webpush` (token = subscription endpoint).
        pub kind: String,
        /// Web Push only: the subscription's P-256 public key and auth secret (base64url).
        pub p256dh: Option<String>,
        pub auth_secret: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod kakao_unlink_outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "kakao_unlink_outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub member_id: i64,
        pub kakao_user_id: String,
        pub attempts: i32,
        pub next_attempt_at: DateTime,
        pub locked_until: Option<DateTime>,
        pub last_error: Option<String>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod room {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "rooms")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub group_id: i64,
        pub start_at: DateTime,
        pub end_at: DateTime,
        pub created_by: Option<i64>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::reservation::Entity")]
        Reservation,
    }

    impl Related<super::reservation::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Reservation.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod reservation {
    use sea_orm::entity::prelude::*;

    /// A member's booking of a room, with the presence state that credits study time: the client
    /// and the SFU each say present or not; time is credited while either does, once.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub room_id: i64,
        pub member_id: i64,
        pub group_id: i64,
        pub start_at: DateTime,
        pub end_at: DateTime,
        pub client_present: bool,
        pub client_entered_at: Option<DateTime>,
        pub sfu_present: bool,
        pub present_since: Option<DateTime>,
        pub credited_ms: i64,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::member::Entity",
            from = "Column::MemberId",
            to = "super::member::Column::Id"
        )]
        Member,
        #[sea_orm(
            belongs_to = "super::room::Entity",
            from = "Column::RoomId",
            to = "super::room::Column::Id"
        )]
        Room,
    }

    impl Related<super::member::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Member.def()
        }
    }

    impl Related<super::room::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Room.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod study_record {
    use sea_orm::entity::prelude::*;

    pub const SOURCE_ROOM: &str = "room";
    pub const SOURCE_TIMER: &str = "timer";

    /// One credited interval of study (never overlapping another of the same member and room).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "study_records")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub member_id: i64,
        pub group_id: Option<i64>,
        pub room_id: Option<i64>,
        pub source: String,
        pub started_at: DateTime,
        pub ended_at: DateTime,
        pub duration_ms: i64,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod study_total {
    use sea_orm::entity::prelude::*;

    /// A member's study time in a group for one ranking period (day, week or month).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "study_totals")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub group_id: i64,
        pub member_id: i64,
        pub period_kind: String,
        pub period_start: Date,
        pub duration_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod focus_timer {
    use sea_orm::entity::prelude::*;

    /// A member's personal focus timer: running while `segment_started_at` is set.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "focus_timers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub member_id: i64,
        pub group_id: Option<i64>,
        pub started_at: DateTime,
        pub segment_started_at: Option<DateTime>,
        pub accumulated_ms: i64,
        pub updated_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod job_run {
    use sea_orm::entity::prelude::*;

    /// The lease of one scheduled job for one period.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub job_name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub period_key: String,
        pub owner: String,
        pub lease_until: DateTime,
        pub completed_at: Option<DateTime>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook_event {
    use sea_orm::entity::prelude::*;

    /// Ids of processed SFU webhook events, so a redelivery changes nothing.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub received_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod member_session {
    use sea_orm::entity::prelude::*;

    /// A login session when Redis is not configured (see `sessions`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "member_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sid: String,
        pub member_id: i64,
        pub jti: String,
        pub expires_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
