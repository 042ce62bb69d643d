//! Push reminders: Web Push subscriptions next to FCM tokens in `push_clients`, per-member reminder
//! settings, and the reminder outbox (one row per booking, kind and device, removed by the database
//! with the booking or the device: a cancelled booking, a left group or a withdrawal leaves nothing
//! to send). Every step accepts what an interrupted run left behind.

use super::{id, timestamp};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_push_reminders"
    }
}

#[derive(DeriveIden)]
enum PushClients {
    Table,
    Id,
    Kind,
    P256dh,
    AuthSecret,
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum PushSettings {
    Table,
    MemberId,
    Enabled,
    MinutesBefore,
    AtStart,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PushReminders {
    Table,
    Id,
    ReservationId,
    Target,
    DeviceId,
    MemberId,
    RoomId,
    GroupId,
    Kind,
    StartAt,
    DueAt,
    State,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    AttemptId,
    LastError,
    CreatedAt,
    SentAt,
}

fn cascade(
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
        // `fcm` (token = FCM registration token) or `webpush` (token = the subscription endpoint).
        super::add_column(
            m,
            "push_clients",
            "kind",
            Table::alter()
                .table(PushClients::Table)
                .add_column(
                    ColumnDef::new(PushClients::Kind)
                        .string_len(16)
                        .not_null()
                        .default("fcm"),
                )
                .to_owned(),
        )
        .await?;
        super::add_column(
            m,
            "push_clients",
            "p256dh",
            Table::alter()
                .table(PushClients::Table)
                .add_column(ColumnDef::new(PushClients::P256dh).string_len(128).null())
                .to_owned(),
        )
        .await?;
        super::add_column(
            m,
            "push_clients",
            "auth_secret",
            Table::alter()
                .table(PushClients::Table)
                .add_column(
                    ColumnDef::new(PushClients::AuthSecret)
                        .string_len(64)
                        .null(),
                )
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(PushSettings::Table)
                .col(
                    ColumnDef::new(PushSettings::MemberId)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(PushSettings::Enabled).boolean().not_null())
                .col(
                    ColumnDef::new(PushSettings::MinutesBefore)
                        .integer()
                        .not_null(),
                )
                .col(ColumnDef::new(PushSettings::AtStart).boolean().not_null())
                .col(timestamp(m, PushSettings::UpdatedAt).not_null())
                .foreign_key(&mut cascade(
                    "fk_push_settings_member",
                    (PushSettings::Table, PushSettings::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(PushReminders::Table)
                .col(id(PushReminders::Id))
                .col(
                    ColumnDef::new(PushReminders::ReservationId)
                        .big_integer()
                        .not_null(),
                )
                // `d<deviceId>` for a device, `stomp` for the member's open STOMP sessions.
                .col(
                    ColumnDef::new(PushReminders::Target)
                        .string_len(24)
                        .not_null(),
                )
                .col(ColumnDef::new(PushReminders::DeviceId).big_integer().null())
                .col(
                    ColumnDef::new(PushReminders::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(PushReminders::RoomId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(PushReminders::GroupId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(PushReminders::Kind).string_len(8).not_null())
                .col(timestamp(m, PushReminders::StartAt).not_null())
                .col(timestamp(m, PushReminders::DueAt).not_null())
                .col(
                    ColumnDef::new(PushReminders::State)
                        .string_len(12)
                        .not_null(),
                )
                .col(ColumnDef::new(PushReminders::Attempts).integer().not_null())
                .col(timestamp(m, PushReminders::NextAttemptAt).not_null())
                .col(timestamp(m, PushReminders::LeaseUntil).null())
                .col(
                    ColumnDef::new(PushReminders::AttemptId)
                        .string_len(32)
                        .null(),
                )
                .col(
                    ColumnDef::new(PushReminders::LastError)
                        .string_len(255)
                        .null(),
                )
                .col(timestamp(m, PushReminders::CreatedAt).not_null())
                .col(timestamp(m, PushReminders::SentAt).null())
                .foreign_key(&mut cascade(
                    "fk_push_reminders_reservation",
                    (PushReminders::Table, PushReminders::ReservationId),
                    (Reservations::Table, Reservations::Id),
                ))
                .foreign_key(&mut cascade(
                    "fk_push_reminders_device",
                    (PushReminders::Table, PushReminders::DeviceId),
                    (PushClients::Table, PushClients::Id),
                ))
                .to_owned(),
        )
        .await?;
        // Sent once per (booking, kind, target): a second insert of the same reminder is a no-op.
        super::create_index(
            m,
            Index::create()
                .name("ux_push_reminders_key")
                .table(PushReminders::Table)
                .col(PushReminders::ReservationId)
                .col(PushReminders::Kind)
                .col(PushReminders::Target)
                .unique()
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_push_reminders_due")
                .table(PushReminders::Table)
                .col(PushReminders::State)
                .col(PushReminders::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            Index::create()
                .name("ix_push_reminders_device")
                .table(PushReminders::Table)
                .col(PushReminders::DeviceId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(PushReminders::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
        m.drop_table(
            Table::drop()
                .table(PushSettings::Table)
                .if_exists()
                .to_owned(),
        )
        .await?;
        for col in [
            PushClients::AuthSecret,
            PushClients::P256dh,
            PushClients::Kind,
        ] {
            m.alter_table(
                Table::alter()
                    .table(PushClients::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
