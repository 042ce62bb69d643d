//! Schema migrations, portable across SQLite and MySQL/MariaDB.

use sea_orm_migration::prelude::*;

mod m0001_identity_groups_todos;
mod m0002_rooms_study;
mod m0003_member_sessions;
mod m0004_calendar_version;
mod m0005_push_reminders;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_identity_groups_todos::Migration),
            Box::new(m0002_rooms_study::Migration),
            Box::new(m0003_member_sessions::Migration),
            Box::new(m0004_calendar_version::Migration),
            Box::new(m0005_push_reminders::Migration),
        ]
    }
}

/// Creates a table unless it exists, in utf8mb4 on MySQL/MariaDB whatever the database's default
/// (a latin1 server default used to fail the first Korean insert). MySQL DDL is not transactional,
/// so a migration that stopped midway is run again whole: every step must accept what is there.
pub(crate) async fn create_table(
    m: &SchemaManager<'_>,
    mut stmt: TableCreateStatement,
) -> Result<(), DbErr> {
    stmt.if_not_exists();
    if m.get_database_backend() != sea_orm::DatabaseBackend::MySql {
        return m.create_table(stmt).await;
    }
    stmt.engine("InnoDB")
        .character_set("utf8mb4")
        .collate("utf8mb4_unicode_ci");
    let name = match stmt.get_table_name() {
        Some(TableRef::Table(t)) => Some(t.to_string()),
        _ => None,
    };
    m.create_table(stmt).await?;
    // A table left by an interrupted run of an older build may be in the server's default
    // charset: convert it (cheap, since such a table was never used).
    if let Some(name) = name {
        ensure_utf8mb4(m.get_connection(), &name).await?;
    }
    Ok(())
}

/// Converts a MySQL table to utf8mb4 unless it is already (a table left by an interrupted run of
/// an older build, or the migration ledger, may be in the server's default charset).
pub(crate) async fn ensure_utf8mb4<C: sea_orm::ConnectionTrait + ?Sized>(
    db: &C,
    table: &str,
) -> Result<(), DbErr> {
    let other_charset = db
        .query_one(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::MySql,
            "SELECT table_collation AS c FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = ? \
             AND table_collation NOT LIKE 'utf8mb4%'",
            [table.into()],
        ))
        .await?
        .is_some();
    if other_charset {
        db.execute_unprepared(&format!(
            "ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .await?;
    }
    Ok(())
}

/// Creates an index unless it exists (MySQL has no `IF NOT EXISTS` for indexes: error 1061).
pub(crate) async fn create_index(
    m: &SchemaManager<'_>,
    mut stmt: IndexCreateStatement,
) -> Result<(), DbErr> {
    if m.get_database_backend() != sea_orm::DatabaseBackend::MySql {
        stmt.if_not_exists();
        return m.create_index(stmt).await;
    }
    match m.create_index(stmt).await {
        Err(e) if e.to_string().contains("Duplicate key name") => Ok(()),
        other => other,
    }
}

/// Adds a column unless a previous, interrupted run added it already.
pub(crate) async fn add_column(
    m: &SchemaManager<'_>,
    table: &str,
    column: &str,
    stmt: TableAlterStatement,
) -> Result<(), DbErr> {
    if m.has_column(table, column).await? {
        return Ok(());
    }
    m.alter_table(stmt).await
}

/// A UTC timestamp column with microseconds on MySQL (its plain DATETIME drops fractions).
pub(crate) fn timestamp(manager: &SchemaManager, name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    match manager.get_database_backend() {
        sea_orm::DatabaseBackend::MySql => col.custom(Alias::new("DATETIME(6)")),
        _ => col.date_time(),
    };
    col
}

/// `BIGINT AUTO_INCREMENT PRIMARY KEY` on every backend.
pub(crate) fn id(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}
