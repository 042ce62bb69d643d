//! Scheduled jobs run once per period across replicas, and survive a replica dying mid-run.

use chrono::Duration;

use crate::helpers::{eventually, spawn_app_with, Backend};
use crate::on_both_backends;

/// Every job of the enum, enumerated from it (not a copied list that could miss one).
fn jobs() -> Vec<&'static str> {
    use sea_orm::Iterable;
    ppodok_api::jobs::Job::iter().map(|j| j.name()).collect()
}

async fn each_job_runs_once_per_period_across_two_replicas(backend: Backend) {
    let one = spawn_app_with(backend, |s| {
        s.jobs.tick_millis = 10;
        s.jobs.close_presence_every_secs = 60;
        s.jobs.expire_rooms_every_secs = 120;
        s.jobs.warm_cache_every_secs = 300;
        s.jobs.stop_idle_timers_every_secs = 90;
    })
    .await;
    let two = one.spawn_replica().await;
    let periods = 4;
    for p in 0..periods {
        if p > 0 {
            one.clock.advance(Duration::days(1));
        }
        // Wait until every job has completed the current period somewhere.
        let done = eventually(std::time::Duration::from_secs(20), || async {
            one.count("job_runs", "completed_at IS NULL").await == 0
                && one.count("job_runs", "1 = 1").await >= (jobs().len() * (p + 1)) as i64
        })
        .await;
        assert!(done, "period {p} completed");
    }
    assert!(jobs().contains(&"stop_idle_timers"));
    for job in jobs() {
        let completed = one
            .count(
                "job_runs",
                &format!("job_name = '{job}' AND completed_at IS NOT NULL"),
            )
            .await;
        let metric = format!("ppodok_api_job_runs_total{{job=\"{job}\"}}");
        let runs = one.metric(&metric).await + two.metric(&metric).await;
        assert_eq!(
            completed, periods as i64,
            "{job}: one completed run per period"
        );
        assert_eq!(
            runs, periods as f64,
            "{job}: ran {runs} times over {periods} periods on two replicas"
        );
    }
}

async fn a_period_left_by_a_dead_replica_is_run_by_another(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.jobs.enabled = false;
        s.jobs.tick_millis = 10;
    })
    .await;
    // A replica took the lease for the current period and died before finishing it.
    let day = ppodok_domain::periods::DayBoundary::new("Asia/Seoul".parse().unwrap(), 0)
        .unwrap()
        .day_of(app.clock.now());
    let expired = (app.clock.now() - Duration::minutes(5)).naive_utc();
    use sea_orm::{ActiveModelTrait, Set};
    ppodok_api::db::entities::job_run::ActiveModel {
        job_name: Set("purge_done_todos".into()),
        period_key: Set(day.to_string()),
        owner: Set("dead-replica".into()),
        lease_until: Set(expired),
        completed_at: Set(None),
    }
    .insert(&app.db)
    .await
    .unwrap();
    let mut settings = app.settings.clone();
    settings.jobs.enabled = true;
    let _survivor = crate::helpers::start_server(settings, app.clock.clone()).await;
    let taken_over = eventually(std::time::Duration::from_secs(20), || async {
        app.count("job_runs", "job_name = 'purge_done_todos' AND completed_at IS NOT NULL AND owner <> 'dead-replica'").await == 1
    })
    .await;
    assert!(
        taken_over,
        "the expired lease was taken over and the run completed"
    );
}

async fn purge_clears_todos_done_before_today(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.jobs.tick_millis = 10).await;
    let t = app.dev_login("tidy").await;
    let done = app
        .post(
            "/api/v1/todos",
            &t.access,
            serde_json::json!({ "groupId": 1, "content": "done" }),
        )
        .await
        .data()["todoId"]
        .as_i64()
        .unwrap();
    app.post(
        "/api/v1/todos",
        &t.access,
        serde_json::json!({ "groupId": 1, "content": "open" }),
    )
    .await
    .assert_status(201);
    app.patch(
        "/api/v1/todos",
        &t.access,
        serde_json::json!({ "todoId": done, "done": true }),
    )
    .await
    .assert_status(200);
    let before = app
        .count(
            "job_runs",
            "job_name = 'purge_done_todos' AND completed_at IS NOT NULL",
        )
        .await;
    // Tomorrow, the daily purge removes what was done yesterday and keeps open todos.
    app.clock.advance(Duration::days(1));
    let ran = eventually(std::time::Duration::from_secs(20), || async {
        app.count(
            "job_runs",
            "job_name = 'purge_done_todos' AND completed_at IS NOT NULL",
        )
        .await
            > before
    })
    .await;
    assert!(ran);
    assert_eq!(app.count("todos", &format!("id = {done}")).await, 0);
    assert_eq!(app.count("todos", "content = 'open'").await, 1);
}

/// The scheduler itself stops a timer left running, at the idle cap.
async fn the_scheduler_stops_an_idle_timer_at_the_cap(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.jobs.tick_millis = 10;
        s.study.timer_idle_cap_minutes = 60;
    })
    .await;
    let t = app.dev_login("idle").await;
    app.post(
        "/api/v1/timers/start",
        &t.access,
        serde_json::json!({ "groupId": 1 }),
    )
    .await
    .assert_status(201);
    app.clock.advance(Duration::hours(3));
    let stopped = eventually(std::time::Duration::from_secs(10), || async {
        app.get("/api/v1/timers/current", &t.access)
            .await
            .data()
            .is_null()
    })
    .await;
    assert!(stopped, "the idle timer was stopped by the job");
    let member = app.member_id(&t.access).await;
    assert_eq!(
        app.sum(
            "study_records",
            "duration_ms",
            &format!("member_id = {member}")
        )
        .await,
        3_600_000,
        "credited up to the cap"
    );
}

on_both_backends!(
    the_scheduler_stops_an_idle_timer_at_the_cap,
    each_job_runs_once_per_period_across_two_replicas,
    a_period_left_by_a_dead_replica_is_run_by_another,
    purge_clears_todos_done_before_today,
);
