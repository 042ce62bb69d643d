//! The authentication epoch: one counter bumped in the same transaction as every change that must
//! end or alter what an in-process session view honours (logout, refresh-token reuse, withdrawal,
//! a member's own data). Replicas compare it with what they applied, so one that missed a pub/sub
//! message (Redis restarted, reconnected, stalled) drops its view instead of trusting it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_auth_epoch"
    }
}

#[derive(DeriveIden)]
enum AuthEpoch {
    Table,
    Id,
    Epoch,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        super::create_table(
            m,
            Table::create()
                .table(AuthEpoch::Table)
                .col(
                    ColumnDef::new(AuthEpoch::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuthEpoch::Epoch)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await?;
        // The one row; a rerun after an interrupted migration finds it there.
        let db = m.get_connection();
        let exists = db
            .query_one(sea_orm::Statement::from_string(
                m.get_database_backend(),
                "SELECT id FROM auth_epoch WHERE id = 1",
            ))
            .await?
            .is_some();
        if !exists {
            db.execute_unprepared("INSERT INTO auth_epoch (id, epoch) VALUES (1, 0)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuthEpoch::Table).to_owned())
            .await
    }
}
