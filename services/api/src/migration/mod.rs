//! Schema migrations, portable across SQLite and MySQL/MariaDB.

use sea_orm_migration::prelude::*;

mod m0001_identity_groups_todos;
mod m0002_rooms_study;
mod m0003_member_sessions;
mod m0004_calendar_version;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_identity_groups_todos::Migration),
            Box::new(m0002_rooms_study::Migration),
            Box::new(m0003_member_sessions::Migration),
            Box::new(m0004_calendar_version::Migration),
        ]
    }
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
