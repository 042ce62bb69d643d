//! The last moment a live STOMP session of a member was seen: evidence of presence that any
//! replica can read when it closes a room's attendance (see `attendance`).

use super::timestamp;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_member_liveness"
    }
}

#[derive(DeriveIden)]
enum MemberLiveness {
    Table,
    MemberId,
    SeenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::create_table(
            m,
            Table::create()
                .table(MemberLiveness::Table)
                .col(
                    ColumnDef::new(MemberLiveness::MemberId)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(timestamp(m, MemberLiveness::SeenAt).not_null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MemberLiveness::Table).to_owned())
            .await
    }
}
