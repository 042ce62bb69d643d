//! Login sessions in the database, for deployments without Redis (the embedded default and
//! MySQL-only set-ups): they survive restarts and are shared by replicas.

use super::timestamp;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_member_sessions"
    }
}

#[derive(DeriveIden)]
enum MemberSessions {
    Table,
    Sid,
    MemberId,
    Jti,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::create_table(
            m,
            Table::create()
                .table(MemberSessions::Table)
                .col(
                    ColumnDef::new(MemberSessions::Sid)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(MemberSessions::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(MemberSessions::Jti)
                        .string_len(64)
                        .not_null(),
                )
                .col(timestamp(m, MemberSessions::ExpiresAt).not_null())
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_member_sessions_member")
                .table(MemberSessions::Table)
                .col(MemberSessions::MemberId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MemberSessions::Table).to_owned())
            .await
    }
}
