//! Database access: connection, migrations, entities and the multi-row operations that must
//! stay in one transaction.

pub mod entities;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};
use sea_orm_migration::MigratorTrait;

use crate::config::DatabaseSettings;

/// The service's connections: `write` takes every transaction and write; `read` serves reads
/// that need no transaction (the hot path: authentication misses, calendar version and
/// computation). On MariaDB both are the same pool, sized by `database.max_connections`. On
/// SQLite (WAL) `write` is one connection (SQLite has one writer; a single connection queues
/// writers instead of failing them with SQLITE_BUSY when two upgrade from read to write at once)
/// and `read` is a pool of `database.sqlite_readers` read-only connections, so readers never
/// queue behind each other nor behind a writer.
#[derive(Clone)]
pub struct Databases {
    pub write: DatabaseConnection,
    pub read: DatabaseConnection,
    /// False when `read` is `write` (MariaDB, in-memory SQLite).
    pub separate_read: bool,
}

/// How long an SQLite connection waits for a lock before failing with SQLITE_BUSY.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn options(settings: &DatabaseSettings, max: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(settings.url.clone());
    options
        .max_connections(max.max(1))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .sqlx_logging(false);
    options
}

/// Connects, brings the schema up to date, and opens the read pool.
pub async fn connect_and_migrate(settings: &DatabaseSettings) -> Result<Databases, DbErr> {
    let file = sqlite_file_path(&settings.url);
    if let Some(path) = &file {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("creating {dir:?}: {e}")))?;
            }
        }
    }
    let is_sqlite = settings.url.starts_with("sqlite:");
    let mut write = options(
        settings,
        if is_sqlite {
            1
        } else {
            settings.max_connections
        },
    );
    write.map_sqlx_sqlite_opts(|o| {
        o.journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
    });
    let db = Database::connect(write).await?;
    crate::migration::Migrator::up(&db, None).await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::MySql {
        crate::migration::ensure_utf8mb4(&db, "seaql_migrations").await?;
    }
    // An in-memory SQLite database exists on its one connection only.
    if !is_sqlite || file.is_none() {
        return Ok(Databases {
            write: db.clone(),
            read: db,
            separate_read: false,
        });
    }
    let mut read = options(settings, settings.sqlite_readers);
    read.map_sqlx_sqlite_opts(|o| {
        o.read_only(true)
            .create_if_missing(false)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
    });
    let read = Database::connect(read).await?;
    Ok(Databases {
        write: db,
        read,
        separate_read: true,
    })
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
