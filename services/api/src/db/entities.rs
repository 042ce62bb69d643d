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
