//! Database access: connection, migrations, entities and the multi-row operations that must
//! stay in one transaction.

pub mod entities;

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};
use sea_orm_migration::MigratorTrait;

use crate::config::DatabaseSettings;

/// Connects and brings the schema up to date.
pub async fn connect_and_migrate(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    if let Some(path) = sqlite_file_path(&settings.url) {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("creating {dir:?}: {e}")))?;
            }
        }
    }
    let is_sqlite = settings.url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(settings.url.clone());
    options
        // SQLite has one writer; a single pooled connection queues transactions instead of
        // failing them with SQLITE_BUSY when two upgrade from read to write at once.
        .max_connections(if is_sqlite {
            1
        } else {
            settings.max_connections
        })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
        // WAL is a property of the file; foreign keys and busy_timeout are sqlx's defaults.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
    }
    crate::migration::Migrator::up(&db, None).await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::MySql {
        crate::migration::ensure_utf8mb4(&db, "seaql_migrations").await?;
    }
    Ok(db)
}

fn sqlite_file_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// True when `err` is a unique-constraint violation (a concurrent insert won the race).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// True when `err` is a foreign-key violation (the parent row vanished meanwhile).
pub fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// Now, in UTC, as stored.
pub fn now_utc() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}
