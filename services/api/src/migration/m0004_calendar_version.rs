//! A calendar version per group, bumped in the same transaction as every change to the group's
//! rooms. Cache keys carry it, so a committed change is visible to the next read on every replica
//! whatever happened to Redis (restarted empty, unreachable, or a replica that died after commit).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_calendar_version"
    }
}

#[derive(DeriveIden)]
enum StudyGroups {
    Table,
    CalendarVersion,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.has_column("study_groups", "calendar_version").await? {
            return Ok(());
        }
        m.alter_table(
            Table::alter()
                .table(StudyGroups::Table)
                .add_column(
                    ColumnDef::new(StudyGroups::CalendarVersion)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(StudyGroups::Table)
                .drop_column(StudyGroups::CalendarVersion)
                .to_owned(),
        )
        .await
    }
}
