//! Members, groups, memberships, ranks, todos, push clients, the Kakao unlink outbox,
//! and the default public group.

use super::{id, timestamp};
use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_identity_groups_todos"
    }
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
    Name,
    Profile,
    Email,
    Provider,
    ProviderUserId,
    Status,
    CreatedAt,
    UpdatedAt,
    WithdrawnAt,
}

#[derive(DeriveIden)]
enum StudyGroups {
    Table,
    Id,
    Name,
    OwnerId,
    IsSecret,
    PasswordHash,
    InviteCode,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    Id,
    GroupId,
    MemberId,
    Color,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Ranks {
    Table,
    Id,
    GroupId,
    MemberId,
    DurationMs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Todos {
    Table,
    Id,
    GroupId,
    MemberId,
    Content,
    Done,
    DoneAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PushClients {
    Table,
    Id,
    MemberId,
    Token,
    TokenKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KakaoUnlinkOutbox {
    Table,
    Id,
    MemberId,
    KakaoUserId,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    LastError,
    CreatedAt,
}

fn fk_cascade(
    name: &str,
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::create_table(
            m,
            Table::create()
                .table(Members::Table)
                .col(id(Members::Id))
                .col(ColumnDef::new(Members::Name).string_len(100).not_null())
                .col(ColumnDef::new(Members::Profile).string_len(1000).null())
                .col(ColumnDef::new(Members::Email).string_len(320).null())
                .col(ColumnDef::new(Members::Provider).string_len(16).not_null())
                // NULL once withdrawn, so the same account can sign up again.
                .col(
                    ColumnDef::new(Members::ProviderUserId)
                        .string_len(100)
                        .null(),
                )
                .col(ColumnDef::new(Members::Status).string_len(16).not_null())
                .col(timestamp(m, Members::CreatedAt).not_null())
                .col(timestamp(m, Members::UpdatedAt).not_null())
                .col(timestamp(m, Members::WithdrawnAt).null())
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ux_members_provider_user")
                .table(Members::Table)
                .col(Members::Provider)
                .col(Members::ProviderUserId)
                .unique()
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(StudyGroups::Table)
                .col(id(StudyGroups::Id))
                .col(ColumnDef::new(StudyGroups::Name).string_len(100).not_null())
                .col(ColumnDef::new(StudyGroups::OwnerId).big_integer().null())
                .col(ColumnDef::new(StudyGroups::IsSecret).boolean().not_null())
                .col(
                    ColumnDef::new(StudyGroups::PasswordHash)
                        .string_len(255)
                        .null(),
                )
                .col(
                    ColumnDef::new(StudyGroups::InviteCode)
                        .string_len(64)
                        .not_null(),
                )
                .col(timestamp(m, StudyGroups::CreatedAt).not_null())
                .col(timestamp(m, StudyGroups::UpdatedAt).not_null())
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ux_study_groups_invite_code")
                .table(StudyGroups::Table)
                .col(StudyGroups::InviteCode)
                .unique()
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(Memberships::Table)
                .col(id(Memberships::Id))
                .col(
                    ColumnDef::new(Memberships::GroupId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Memberships::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Memberships::Color).string_len(32).null())
                .col(timestamp(m, Memberships::CreatedAt).not_null())
                .foreign_key(&mut fk_cascade(
                    "fk_memberships_group",
                    (Memberships::Table, Memberships::GroupId),
                    (StudyGroups::Table, StudyGroups::Id),
                ))
                .foreign_key(&mut fk_cascade(
                    "fk_memberships_member",
                    (Memberships::Table, Memberships::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ux_memberships_group_member")
                .table(Memberships::Table)
                .col(Memberships::GroupId)
                .col(Memberships::MemberId)
                .unique()
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_memberships_member")
                .table(Memberships::Table)
                .col(Memberships::MemberId)
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(Ranks::Table)
                .col(id(Ranks::Id))
                .col(ColumnDef::new(Ranks::GroupId).big_integer().not_null())
                .col(ColumnDef::new(Ranks::MemberId).big_integer().not_null())
                .col(
                    ColumnDef::new(Ranks::DurationMs)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(timestamp(m, Ranks::CreatedAt).not_null())
                .col(timestamp(m, Ranks::UpdatedAt).not_null())
                .foreign_key(&mut fk_cascade(
                    "fk_ranks_group",
                    (Ranks::Table, Ranks::GroupId),
                    (StudyGroups::Table, StudyGroups::Id),
                ))
                .foreign_key(&mut fk_cascade(
                    "fk_ranks_member",
                    (Ranks::Table, Ranks::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ux_ranks_group_member")
                .table(Ranks::Table)
                .col(Ranks::GroupId)
                .col(Ranks::MemberId)
                .unique()
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_ranks_group_duration")
                .table(Ranks::Table)
                .col(Ranks::GroupId)
                .col(Ranks::DurationMs)
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(Todos::Table)
                .col(id(Todos::Id))
                .col(ColumnDef::new(Todos::GroupId).big_integer().not_null())
                .col(ColumnDef::new(Todos::MemberId).big_integer().not_null())
                .col(ColumnDef::new(Todos::Content).string_len(1024).not_null())
                .col(ColumnDef::new(Todos::Done).boolean().not_null())
                .col(timestamp(m, Todos::DoneAt).null())
                .col(timestamp(m, Todos::CreatedAt).not_null())
                .col(timestamp(m, Todos::UpdatedAt).not_null())
                .foreign_key(&mut fk_cascade(
                    "fk_todos_group",
                    (Todos::Table, Todos::GroupId),
                    (StudyGroups::Table, StudyGroups::Id),
                ))
                .foreign_key(&mut fk_cascade(
                    "fk_todos_member",
                    (Todos::Table, Todos::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_todos_member_group")
                .table(Todos::Table)
                .col(Todos::MemberId)
                .col(Todos::GroupId)
                .to_owned(),
        )
        .await?;
        // The daily purge of done todos scans only done rows.
        super::create_index(
            m,
            Index::create()
                .name("ix_todos_done_at")
                .table(Todos::Table)
                .col(Todos::Done)
                .col(Todos::DoneAt)
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(PushClients::Table)
                .col(id(PushClients::Id))
                .col(
                    ColumnDef::new(PushClients::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(PushClients::Token).text().not_null())
                // SHA-256 of the token: tokens run to 1000 characters, too long for a unique index.
                .col(
                    ColumnDef::new(PushClients::TokenKey)
                        .string_len(64)
                        .not_null(),
                )
                .col(timestamp(m, PushClients::CreatedAt).not_null())
                .col(timestamp(m, PushClients::UpdatedAt).not_null())
                .foreign_key(&mut fk_cascade(
                    "fk_push_clients_member",
                    (PushClients::Table, PushClients::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ux_push_clients_token_key")
                .table(PushClients::Table)
                .col(PushClients::TokenKey)
                .unique()
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_push_clients_member")
                .table(PushClients::Table)
                .col(PushClients::MemberId)
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(KakaoUnlinkOutbox::Table)
                .col(id(KakaoUnlinkOutbox::Id))
                .col(
                    ColumnDef::new(KakaoUnlinkOutbox::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(KakaoUnlinkOutbox::KakaoUserId)
                        .string_len(100)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(KakaoUnlinkOutbox::Attempts)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(timestamp(m, KakaoUnlinkOutbox::NextAttemptAt).not_null())
                .col(timestamp(m, KakaoUnlinkOutbox::LockedUntil).null())
                .col(
                    ColumnDef::new(KakaoUnlinkOutbox::LastError)
                        .string_len(500)
                        .null(),
                )
                .col(timestamp(m, KakaoUnlinkOutbox::CreatedAt).not_null())
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_kakao_unlink_outbox_due")
                .table(KakaoUnlinkOutbox::Table)
                .col(KakaoUnlinkOutbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;

        // The default public group (id 1): no owner, so nobody can edit it; never deleted.
        // Seeded once, also when a previous run stopped right after seeding it.
        let seeded = m
            .get_connection()
            .query_one(sea_orm::Statement::from_sql_and_values(
                m.get_database_backend(),
                "SELECT id FROM study_groups WHERE id = ?",
                [ppodok_domain::DEFAULT_GROUP_ID.into()],
            ))
            .await?
            .is_some();
        if seeded {
            return Ok(());
        }
        let now = chrono::Utc::now().naive_utc();
        let code = ppodok_domain::invite::generate_invite_code(&mut rand::rngs::OsRng);
        m.exec_stmt(
            Query::insert()
                .into_table(StudyGroups::Table)
                .columns([
                    StudyGroups::Id,
                    StudyGroups::Name,
                    StudyGroups::IsSecret,
                    StudyGroups::InviteCode,
                    StudyGroups::CreatedAt,
                    StudyGroups::UpdatedAt,
                ])
                .values_panic([
                    ppodok_domain::DEFAULT_GROUP_ID.into(),
                    "뽀독뽀독 전체".into(),
                    false.into(),
                    code.into(),
                    now.into(),
                    now.into(),
                ])
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            KakaoUnlinkOutbox::Table.into_iden(),
            PushClients::Table.into_iden(),
            Todos::Table.into_iden(),
            Ranks::Table.into_iden(),
            Memberships::Table.into_iden(),
            StudyGroups::Table.into_iden(),
            Members::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
