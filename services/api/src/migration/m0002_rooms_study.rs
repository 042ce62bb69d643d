//! Rooms and reservations (with presence), study records and period totals, focus timers, job
//! leases, processed webhook ids, and members' study-day settings.

use super::{id, timestamp};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_rooms_study"
    }
}

#[derive(DeriveIden)]
enum Members {
    Table,
    Id,
    TimeZone,
    DayBoundaryMinutes,
}

#[derive(DeriveIden)]
enum StudyGroups {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Id,
    GroupId,
    StartAt,
    EndAt,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Reservations {
    Table,
    Id,
    RoomId,
    MemberId,
    GroupId,
    StartAt,
    EndAt,
    ClientPresent,
    ClientEnteredAt,
    SfuPresent,
    PresentSince,
    CreditedMs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StudyRecords {
    Table,
    Id,
    MemberId,
    GroupId,
    RoomId,
    Source,
    StartedAt,
    EndedAt,
    DurationMs,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StudyTotals {
    Table,
    Id,
    GroupId,
    MemberId,
    PeriodKind,
    PeriodStart,
    DurationMs,
}

#[derive(DeriveIden)]
enum FocusTimers {
    Table,
    MemberId,
    GroupId,
    StartedAt,
    SegmentStartedAt,
    AccumulatedMs,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    JobName,
    PeriodKey,
    Owner,
    LeaseUntil,
    CompletedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    EventId,
    ReceivedAt,
}

fn fk(
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

fn index(
    name: &str,
    table: impl IntoIden + 'static,
    cols: Vec<DynIden>,
    unique: bool,
) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table);
    for c in cols {
        i.col(c);
    }
    if unique {
        i.unique();
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER.
        super::add_column(
            m,
            "members",
            "time_zone",
            Table::alter()
                .table(Members::Table)
                .add_column(ColumnDef::new(Members::TimeZone).string_len(64).null())
                .to_owned(),
        )
        .await?;
        super::add_column(
            m,
            "members",
            "day_boundary_minutes",
            Table::alter()
                .table(Members::Table)
                .add_column(ColumnDef::new(Members::DayBoundaryMinutes).integer().null())
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(Rooms::Table)
                .col(id(Rooms::Id))
                .col(ColumnDef::new(Rooms::GroupId).big_integer().not_null())
                .col(timestamp(m, Rooms::StartAt).not_null())
                .col(timestamp(m, Rooms::EndAt).not_null())
                .col(ColumnDef::new(Rooms::CreatedBy).big_integer().null())
                .col(timestamp(m, Rooms::CreatedAt).not_null())
                .foreign_key(&mut fk(
                    "fk_rooms_group",
                    (Rooms::Table, Rooms::GroupId),
                    (StudyGroups::Table, StudyGroups::Id),
                ))
                .to_owned(),
        )
        .await?;
        // One room per slot of a group: concurrent first bookings cannot make two.
        super::create_index(
            m,
            index(
                "ux_rooms_group_start",
                Rooms::Table,
                vec![Rooms::GroupId.into_iden(), Rooms::StartAt.into_iden()],
                true,
            ),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ix_rooms_end",
                Rooms::Table,
                vec![Rooms::EndAt.into_iden()],
                false,
            ),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(Reservations::Table)
                .col(id(Reservations::Id))
                .col(
                    ColumnDef::new(Reservations::RoomId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Reservations::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Reservations::GroupId)
                        .big_integer()
                        .not_null(),
                )
                .col(timestamp(m, Reservations::StartAt).not_null())
                .col(timestamp(m, Reservations::EndAt).not_null())
                .col(
                    ColumnDef::new(Reservations::ClientPresent)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(timestamp(m, Reservations::ClientEnteredAt).null())
                .col(
                    ColumnDef::new(Reservations::SfuPresent)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(timestamp(m, Reservations::PresentSince).null())
                .col(
                    ColumnDef::new(Reservations::CreditedMs)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(timestamp(m, Reservations::CreatedAt).not_null())
                .foreign_key(&mut fk(
                    "fk_reservations_room",
                    (Reservations::Table, Reservations::RoomId),
                    (Rooms::Table, Rooms::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_reservations_member",
                    (Reservations::Table, Reservations::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        // One reservation per member and room: a retried join is not a second booking.
        super::create_index(
            m,
            index(
                "ux_reservations_room_member",
                Reservations::Table,
                vec![
                    Reservations::RoomId.into_iden(),
                    Reservations::MemberId.into_iden(),
                ],
                true,
            ),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ix_reservations_member_start",
                Reservations::Table,
                vec![
                    Reservations::MemberId.into_iden(),
                    Reservations::StartAt.into_iden(),
                ],
                false,
            ),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ix_reservations_present_end",
                Reservations::Table,
                vec![
                    Reservations::PresentSince.into_iden(),
                    Reservations::EndAt.into_iden(),
                ],
                false,
            ),
        )
        .await?;

        // Credited study: history survives rooms, groups and memberships, so no foreign keys but the member.
        super::create_table(
            m,
            Table::create()
                .table(StudyRecords::Table)
                .col(id(StudyRecords::Id))
                .col(
                    ColumnDef::new(StudyRecords::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(StudyRecords::GroupId).big_integer().null())
                .col(ColumnDef::new(StudyRecords::RoomId).big_integer().null())
                .col(
                    ColumnDef::new(StudyRecords::Source)
                        .string_len(16)
                        .not_null(),
                )
                .col(timestamp(m, StudyRecords::StartedAt).not_null())
                .col(timestamp(m, StudyRecords::EndedAt).not_null())
                .col(
                    ColumnDef::new(StudyRecords::DurationMs)
                        .big_integer()
                        .not_null(),
                )
                .col(timestamp(m, StudyRecords::CreatedAt).not_null())
                .foreign_key(&mut fk(
                    "fk_study_records_member",
                    (StudyRecords::Table, StudyRecords::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ix_study_records_member_start",
                StudyRecords::Table,
                vec![
                    StudyRecords::MemberId.into_iden(),
                    StudyRecords::StartedAt.into_iden(),
                ],
                false,
            ),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(StudyTotals::Table)
                .col(id(StudyTotals::Id))
                .col(
                    ColumnDef::new(StudyTotals::GroupId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(StudyTotals::MemberId)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(StudyTotals::PeriodKind)
                        .string_len(8)
                        .not_null(),
                )
                .col(ColumnDef::new(StudyTotals::PeriodStart).date().not_null())
                .col(
                    ColumnDef::new(StudyTotals::DurationMs)
                        .big_integer()
                        .not_null(),
                )
                .foreign_key(&mut fk(
                    "fk_study_totals_group",
                    (StudyTotals::Table, StudyTotals::GroupId),
                    (StudyGroups::Table, StudyGroups::Id),
                ))
                .foreign_key(&mut fk(
                    "fk_study_totals_member",
                    (StudyTotals::Table, StudyTotals::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ux_study_totals_period_member",
                StudyTotals::Table,
                vec![
                    StudyTotals::GroupId.into_iden(),
                    StudyTotals::PeriodKind.into_iden(),
                    StudyTotals::PeriodStart.into_iden(),
                    StudyTotals::MemberId.into_iden(),
                ],
                true,
            ),
        )
        .await?;
        // Top-N and "my rank" of a period are index range scans on this.
        super::create_index(
            m,
            index(
                "ix_study_totals_ranking",
                StudyTotals::Table,
                vec![
                    StudyTotals::GroupId.into_iden(),
                    StudyTotals::PeriodKind.into_iden(),
                    StudyTotals::PeriodStart.into_iden(),
                    StudyTotals::DurationMs.into_iden(),
                ],
                false,
            ),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ix_study_totals_member",
                StudyTotals::Table,
                vec![
                    StudyTotals::MemberId.into_iden(),
                    StudyTotals::GroupId.into_iden(),
                ],
                false,
            ),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(FocusTimers::Table)
                .col(
                    ColumnDef::new(FocusTimers::MemberId)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(FocusTimers::GroupId).big_integer().null())
                .col(timestamp(m, FocusTimers::StartedAt).not_null())
                .col(timestamp(m, FocusTimers::SegmentStartedAt).null())
                .col(
                    ColumnDef::new(FocusTimers::AccumulatedMs)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(timestamp(m, FocusTimers::UpdatedAt).not_null())
                .foreign_key(&mut fk(
                    "fk_focus_timers_member",
                    (FocusTimers::Table, FocusTimers::MemberId),
                    (Members::Table, Members::Id),
                ))
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(JobRuns::Table)
                .col(ColumnDef::new(JobRuns::JobName).string_len(64).not_null())
                .col(ColumnDef::new(JobRuns::PeriodKey).string_len(64).not_null())
                .col(ColumnDef::new(JobRuns::Owner).string_len(64).not_null())
                .col(timestamp(m, JobRuns::LeaseUntil).not_null())
                .col(timestamp(m, JobRuns::CompletedAt).null())
                .primary_key(
                    Index::create()
                        .col(JobRuns::JobName)
                        .col(JobRuns::PeriodKey),
                )
                .to_owned(),
        )
        .await?;

        super::create_table(
            m,
            Table::create()
                .table(WebhookEvents::Table)
                .col(
                    ColumnDef::new(WebhookEvents::EventId)
                        .string_len(128)
                        .not_null()
                        .primary_key(),
                )
                .col(timestamp(m, WebhookEvents::ReceivedAt).not_null())
                .to_owned(),
        )
        .await?;
        super::create_index(
            m,
            index(
                "ix_webhook_events_received",
                WebhookEvents::Table,
                vec![WebhookEvents::ReceivedAt.into_iden()],
                false,
            ),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookEvents::Table.into_iden(),
            JobRuns::Table.into_iden(),
            FocusTimers::Table.into_iden(),
            StudyTotals::Table.into_iden(),
            StudyRecords::Table.into_iden(),
            Reservations::Table.into_iden(),
            Rooms::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        m.alter_table(
            Table::alter()
                .table(Members::Table)
                .drop_column(Members::DayBoundaryMinutes)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Members::Table)
                .drop_column(Members::TimeZone)
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
