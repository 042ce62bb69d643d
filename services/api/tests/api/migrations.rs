//! Migrations on MariaDB: every table in utf8mb4 whatever the database's default (a `CREATE
//! DATABASE` on a latin1 server), and a migration stopped midway is completed by the next boot.

use ppodok_api::clock::Clock;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

use crate::helpers::{
    mysql_admin_url, slot_after, start_server, Backend, KakaoMock, TestApp, TestStore,
};

/// A fresh test schema switched to latin1 before anything runs on it.
async fn latin1_store() -> (TestStore, String) {
    let store = TestStore::create(Backend::MariaDb).await;
    let schema = store.database_url.rsplit('/').next().unwrap().to_owned();
    let admin = Database::connect(mysql_admin_url()).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE `{schema}` CHARACTER SET latin1 COLLATE latin1_swedish_ci"
        ))
        .await
        .unwrap();
    (store, schema)
}

async fn boot(store: &TestStore, kakao: &KakaoMock) -> TestApp {
    let settings = store.settings(kakao);
    let clock = Clock::manual(chrono::Utc::now());
    let base = start_server(settings.clone(), clock.clone()).await;
    TestApp {
        base,
        http: reqwest::Client::new(),
        db: Database::connect(store.database_url.clone()).await.unwrap(),
        kakao: kakao.clone(),
        clock,
        settings,
        store: store.shared(),
    }
}

async fn non_utf8mb4_tables(db: &DatabaseConnection, schema: &str) -> Vec<String> {
    db.query_all(sea_orm::Statement::from_string(
        sea_orm::DatabaseBackend::MySql,
        format!(
            "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = '{schema}' \
             AND table_collation NOT LIKE 'utf8mb4%'"
        ),
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "t").unwrap())
    .collect()
}

/// Korean and a four-byte character survive a round trip, and a booking works.
async fn assert_usable(app: &TestApp) {
    let t = app.dev_login("민지 🍀").await;
    let r = app.get("/api/v1/members", &t.access).await;
    assert_eq!(r.data()["name"], "민지 🍀", "{}", r.body);
    let (g, _) = app.create_group(&t.access, "한국어 그룹 📚", None).await;
    let mine = app.get("/api/v1/groups", &t.access).await;
    assert!(
        mine.body.to_string().contains("한국어 그룹 📚"),
        "{}",
        mine.body
    );
    let start = slot_after(app.clock.now(), chrono::Duration::hours(1));
    app.book(&t.access, g, start).await.assert_status(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_boot_on_a_latin1_database_in_utf8mb4() {
    let (store, schema) = latin1_store().await;
    let kakao = KakaoMock::start().await;
    let app = boot(&store, &kakao).await;
    assert_eq!(
        non_utf8mb4_tables(&app.db, &schema).await,
        Vec::<String>::new()
    );
    assert_eq!(
        app.count("study_groups", "id = 1 AND name = '뽀독뽀독 전체'")
            .await,
        1,
        "the default group is seeded with its Korean name"
    );
    assert_usable(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_is_completed_by_the_next_boot() {
    let (store, schema) = latin1_store().await;
    let kakao = KakaoMock::start().await;
    let first = boot(&store, &kakao).await;
    // Undo the migrations' later half as a crash would have left it: no migration recorded, the
    // seed missing, some tables never created, one column added, one table in the old charset.
    let txn = first.db.begin().await.unwrap();
    for sql in [
        "SET FOREIGN_KEY_CHECKS = 0",
        "DROP TABLE reservations, rooms, study_records, focus_timers, todos, member_sessions",
        "ALTER TABLE study_groups DROP COLUMN calendar_version",
        "ALTER TABLE members DROP COLUMN day_boundary_minutes",
        "DROP TABLE push_reminders",
        "ALTER TABLE push_clients DROP COLUMN auth_secret",
        "DELETE FROM study_groups",
        "ALTER TABLE ranks CONVERT TO CHARACTER SET latin1",
        "DELETE FROM seaql_migrations",
        "SET FOREIGN_KEY_CHECKS = 1",
    ] {
        txn.execute_unprepared(sql).await.unwrap();
    }
    txn.commit().await.unwrap();
    assert_eq!(non_utf8mb4_tables(&first.db, &schema).await, vec!["ranks"]);

    let second = boot(&store, &kakao).await;
    assert_eq!(
        second.count("seaql_migrations", "1 = 1").await,
        5,
        "every migration recorded"
    );
    assert_eq!(
        non_utf8mb4_tables(&second.db, &schema).await,
        Vec::<String>::new()
    );
    assert_eq!(second.count("study_groups", "id = 1").await, 1);
    assert_usable(&second).await;
}
