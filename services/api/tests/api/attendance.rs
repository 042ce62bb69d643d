//! Attendance: every second of presence counts once, clamped to the room window, whether the
//! client, the SFU or both report it — to history and to every ranking period.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::helpers::{
    eventually, local_string, slot_after, spawn_app_with, Backend, TestApp, Tokens,
};
use crate::on_both_backends;
use crate::stomp_support::StompJs;

const NOT_IN_ROOM: &str = "사용자가 참여하고 있는 방이 아닙니다.";

struct Booked {
    app: TestApp,
    me: Tokens,
    member_id: i64,
    group_id: i64,
    room_id: i64,
    start: DateTime<Utc>,
}

async fn booked_room(backend: Backend, jobs: bool) -> Booked {
    booked_room_with(backend, |s| {
        s.jobs.enabled = jobs;
        s.jobs.tick_millis = 20;
    })
    .await
}

async fn booked_room_with(
    backend: Backend,
    adjust: impl FnOnce(&mut ppodok_api::config::Settings),
) -> Booked {
    let app = spawn_app_with(backend, adjust).await;
    let me = app.dev_login("attendee").await;
    let member_id = app.member_id(&me.access).await;
    let (group_id, _) = app.create_group(&me.access, "출석", None).await;
    let start = slot_after(app.clock.now(), Duration::hours(1));
    let r = app.book(&me.access, group_id, start).await;
    r.assert_status(201);
    let room_id = r.data()["roomId"].as_i64().unwrap();
    Booked {
        app,
        me,
        member_id,
        group_id,
        room_id,
        start,
    }
}

impl Booked {
    fn at(&self, minutes: i64) {
        self.app.clock.set(self.start + Duration::minutes(minutes));
    }

    async fn enter(&self) -> crate::helpers::Reply {
        self.app
            .post(
                "/api/v1/rooms/histories",
                &self.me.access,
                json!({ "roomId": self.room_id }),
            )
            .await
    }

    async fn exit(&self) -> crate::helpers::Reply {
        self.app
            .patch(
                "/api/v1/rooms/histories",
                &self.me.access,
                json!({ "roomId": self.room_id }),
            )
            .await
    }

    async fn sfu(&self, event: &str, minutes: i64, id: &str) -> crate::helpers::Reply {
        let at = (self.start + Duration::minutes(minutes)).timestamp();
        self.app
            .webhook(json!({
                "event": event,
                "id": id,
                "createdAt": at.to_string(),
                "room": { "sid": "RM_x", "name": self.room_id.to_string() },
                "participant": { "sid": "PA_x", "identity": self.member_id.to_string(), "name": "attendee" }
            }))
            .await
    }

    /// The credited time, asserted equal in history, the all-time rank and each ranking period.
    async fn assert_credited(&self, minutes: i64) {
        let ms = minutes * 60_000;
        let (m, g) = (self.member_id, self.group_id);
        assert_eq!(
            self.app
                .sum("study_records", "duration_ms", &format!("member_id = {m}"))
                .await,
            ms,
            "history"
        );
        assert_eq!(
            self.app
                .sum(
                    "ranks",
                    "duration_ms",
                    &format!("member_id = {m} AND group_id = {g}")
                )
                .await,
            ms,
            "all-time rank"
        );
        for kind in ["day", "week", "month"] {
            let cond = format!("member_id = {m} AND group_id = {g} AND period_kind = '{kind}'");
            assert_eq!(
                self.app.sum("study_totals", "duration_ms", &cond).await,
                ms,
                "{kind} ranking"
            );
        }
        let me = self
            .app
            .get(&format!("/api/v1/members/{g}"), &self.me.access)
            .await;
        let expected = if minutes == 0 {
            "PT0S".to_owned()
        } else {
            ppodok_domain::time::format_iso_duration_ms(ms)
        };
        assert_eq!(me.data()["duration"], expected.as_str());
    }
}

async fn enter_twice_exit_twice_counts_once(backend: Backend) {
    let b = booked_room(backend, false).await;
    b.at(5);
    let r = b.enter().await;
    r.assert_status(201);
    assert_eq!(r.body["code"], "resource.created");
    assert_eq!(
        r.data()["enterTime"],
        local_string(b.start + Duration::minutes(5))
    );
    assert!(r.data()["exitTime"].is_null());
    b.at(7);
    let again = b.enter().await;
    again.assert_status(201);
    assert_eq!(
        again.data()["enterTime"],
        local_string(b.start + Duration::minutes(5)),
        "the open entry stays"
    );
    b.at(15);
    let r = b.exit().await;
    r.assert_status(201);
    assert_eq!(
        r.data()["exitTime"],
        local_string(b.start + Duration::minutes(15))
    );
    b.at(16);
    let r = b.exit().await;
    r.assert_fail(400);
    assert!(r.body["message"].as_str().unwrap().starts_with(NOT_IN_ROOM));
    b.assert_credited(10).await;
}

async fn exit_without_enter_and_enter_after_end_are_refused(backend: Backend) {
    let b = booked_room(backend, false).await;
    b.at(3);
    b.exit().await.assert_fail(400).assert_message(&format!(
        "{NOT_IN_ROOM}memberId :{} roomId :{}",
        b.member_id, b.room_id
    ));
    b.at(26);
    b.enter()
        .await
        .assert_fail(400)
        .assert_message("입장 가능한 시간이 아닙니다.");
    // A member without a reservation cannot enter at all; an unknown room is a 404.
    let other = b.app.dev_login("no-booking").await;
    b.app
        .join(&other.access, b.group_id, None)
        .await
        .assert_status(201);
    b.at(4);
    b.app
        .post(
            "/api/v1/rooms/histories",
            &other.access,
            json!({ "roomId": b.room_id }),
        )
        .await
        .assert_fail(400);
    b.app
        .post(
            "/api/v1/rooms/histories",
            &b.me.access,
            json!({ "roomId": 424242 }),
        )
        .await
        .assert_fail(404)
        .assert_message("존재하지 않는 방 번호입니다. roomId: 424242");
    b.assert_credited(0).await;
}

async fn times_are_clamped_to_the_room_window(backend: Backend) {
    let b = booked_room(backend, false).await;
    b.at(-3);
    let r = b.enter().await;
    assert_eq!(
        r.data()["enterTime"],
        local_string(b.start),
        "early entry counts from the start"
    );
    b.at(10);
    b.exit().await.assert_status(201);
    b.at(20);
    b.enter().await.assert_status(201);
    b.at(40);
    let r = b.exit().await;
    assert_eq!(
        r.data()["exitTime"],
        local_string(b.start + Duration::minutes(25)),
        "late exit clamped to the end"
    );
    b.assert_credited(15).await;
}

async fn presence_webhooks_alone_credit_time(backend: Backend) {
    let b = booked_room(backend, false).await;
    b.at(13);
    b.sfu("participant_joined", 3, "EV_join")
        .await
        .assert_status(200);
    b.sfu("participant_left", 13, "EV_left")
        .await
        .assert_status(200);
    // A redelivered event changes nothing.
    b.sfu("participant_left", 13, "EV_left")
        .await
        .assert_status(200);
    b.sfu("participant_joined", 3, "EV_join")
        .await
        .assert_status(200);
    b.assert_credited(10).await;
    assert_eq!(
        b.app
            .count("reservations", "present_since IS NOT NULL")
            .await,
        0
    );
}

async fn client_and_webhook_for_the_same_interval_count_once(backend: Backend) {
    let b = booked_room(backend, false).await;
    b.at(2);
    b.sfu("participant_joined", 2, "EV_1")
        .await
        .assert_status(200);
    b.at(3);
    b.enter().await.assert_status(201);
    b.at(10);
    b.exit().await.assert_status(201);
    b.at(12);
    b.sfu("participant_left", 12, "EV_2")
        .await
        .assert_status(200);
    b.assert_credited(10).await;

    // Overlapping the other way round: union of [14, 16] and [15, 22] is 8 minutes.
    b.at(14);
    b.enter().await.assert_status(201);
    b.at(15);
    b.sfu("participant_joined", 15, "EV_3")
        .await
        .assert_status(200);
    b.at(16);
    b.exit().await.assert_status(201);
    b.at(22);
    b.sfu("participant_left", 22, "EV_4")
        .await
        .assert_status(200);
    b.assert_credited(18).await;
}

/// Waits until the presence job has closed every presence.
async fn closed_by_the_job(app: &TestApp) {
    let closed = eventually(std::time::Duration::from_secs(10), || async {
        app.count("reservations", "present_since IS NOT NULL").await == 0
    })
    .await;
    assert!(closed, "dangling presence closed");
}

/// The member's last STOMP liveness as the database holds it.
async fn seen_at(app: &TestApp, member_id: i64) -> Option<chrono::NaiveDateTime> {
    use sea_orm::EntityTrait;
    ppodok_api::db::entities::member_liveness::Entity::find_by_id(member_id)
        .one(&app.db)
        .await
        .unwrap()
        .map(|l| l.seen_at)
}

/// Waits until a STOMP session of the member has recorded liveness at the clock's current time.
async fn evidence_recorded_now(app: &TestApp, member_id: i64) {
    let now = app.clock.now_naive();
    let seen = eventually(std::time::Duration::from_secs(10), || async {
        seen_at(app, member_id).await.is_some_and(|t| t >= now)
    })
    .await;
    assert!(seen, "the live session recorded its evidence at {now}");
}

async fn an_enter_followed_by_silence_is_credited_only_to_its_last_evidence(backend: Backend) {
    let b = booked_room(backend, true).await;
    b.at(5);
    b.enter().await.assert_status(201);
    // The tab is closed: no exit, no video, no live session. The Enter is the only evidence.
    b.at(31);
    closed_by_the_job(&b.app).await;
    b.assert_credited(0).await;
}

async fn a_session_that_stops_answering_is_credited_to_its_last_touch(backend: Backend) {
    let b = booked_room(backend, true).await;
    b.at(5);
    b.enter().await.assert_status(201);
    // A live STOMP session of the member is evidence until it goes away (at minute 8 here).
    b.at(8);
    let session = StompJs::connect(&b.app, Some(&b.me.access), &[])
        .await
        .ready()
        .await;
    evidence_recorded_now(&b.app, b.member_id).await;
    session.close().await;
    b.at(31);
    closed_by_the_job(&b.app).await;
    b.assert_credited(3).await;
}

/// Enter at 5, a STOMP session kept alive through the room on `b.app`, the room closed by the
/// presence job of `closer`: the whole room (5 → 25) is credited.
async fn a_live_session_earns_the_room(b: &Booked, closer: &TestApp) {
    b.at(5);
    b.enter().await.assert_status(201);
    let session = StompJs::connect(&b.app, Some(&b.me.access), &[])
        .await
        .ready()
        .await;
    // At the end (25) the job may run before the session's touch lands: the evidence (24) is
    // recent, so it waits rather than closing there; its next run sees the touch at 25.
    for minute in [10, 17, 24, 25] {
        b.at(minute);
        evidence_recorded_now(&b.app, b.member_id).await;
    }
    b.at(31);
    closed_by_the_job(closer).await;
    b.assert_credited(20).await;
    session.close().await;
}

async fn a_live_session_through_the_room_earns_all_of_it(backend: Backend) {
    let b = booked_room_with(backend, |s| {
        s.jobs.enabled = true;
        s.jobs.tick_millis = 20;
        s.rooms.presence_touch_millis = 20;
    })
    .await;
    a_live_session_earns_the_room(&b, &b.app).await;
}

/// Replica A holds the STOMP session and runs no jobs; replica B runs the presence job and sees
/// A's evidence through the database. (MariaDB: SQLite is the single-replica embedded mode.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_on_one_replica_counts_for_the_job_on_another() {
    let b = booked_room_with(Backend::MariaDb, |s| {
        s.jobs.enabled = false;
        s.rooms.presence_touch_millis = 20;
    })
    .await;
    let job_replica = b
        .app
        .spawn_replica_with(|s| {
            s.jobs.enabled = true;
            s.jobs.tick_millis = 20;
        })
        .await;
    a_live_session_earns_the_room(&b, &job_replica).await;
}

async fn video_is_evidence_until_the_sfu_says_left(backend: Backend) {
    let b = booked_room(backend, true).await;
    b.at(5);
    b.enter().await.assert_status(201);
    b.sfu("participant_joined", 6, "EV_j1")
        .await
        .assert_status(200);
    // On video and never reported gone: credited to the room's end.
    b.at(31);
    closed_by_the_job(&b.app).await;
    b.assert_credited(20).await;
}

async fn video_left_ends_the_credit_there(backend: Backend) {
    let b = booked_room(backend, true).await;
    b.at(5);
    b.enter().await.assert_status(201);
    b.sfu("participant_joined", 6, "EV_j2")
        .await
        .assert_status(200);
    b.at(15);
    b.sfu("participant_left", 15, "EV_l2")
        .await
        .assert_status(200);
    b.at(31);
    closed_by_the_job(&b.app).await;
    b.assert_credited(10).await;
}

async fn leaving_before_the_start_credits_nothing(backend: Backend) {
    let b = booked_room(backend, true).await;
    b.at(-12);
    b.enter().await.assert_status(201);
    b.at(-10);
    let r = b.exit().await;
    r.assert_status(201);
    assert!(r.data().is_null(), "{}", r.body);
    assert_eq!(
        b.app
            .count(
                "reservations",
                "present_since IS NOT NULL OR client_present = true"
            )
            .await,
        0,
        "the early exit closed the presence"
    );
    // Entering again inside the window credits only what is inside it.
    b.at(5);
    b.enter().await.assert_status(201);
    b.at(10);
    b.exit().await.assert_status(201);
    // The room ends and the presence job runs: nothing more is credited.
    let metric = "ppodok_api_job_runs_total{job=\"close_presence\"}";
    let runs = b.app.metric(metric).await;
    b.at(31);
    let ran = eventually(std::time::Duration::from_secs(10), || async {
        b.app.metric(metric).await > runs
    })
    .await;
    assert!(ran, "the presence job ran after the room ended");
    b.assert_credited(5).await;
}

async fn the_sfu_leaving_closes_a_client_that_never_said_goodbye(backend: Backend) {
    let b = booked_room(backend, false).await;
    b.at(1);
    b.enter().await.assert_status(201);
    b.sfu("participant_joined", 1, "EV_a")
        .await
        .assert_status(200);
    b.at(9);
    b.sfu("participant_left", 9, "EV_b")
        .await
        .assert_status(200);
    b.assert_credited(8).await;
    b.at(10);
    b.exit().await.assert_fail(400);
}

async fn webhooks_need_the_shared_secret(backend: Backend) {
    let b = booked_room(backend, false).await;
    let body = json!({ "event": "participant_joined", "room": { "name": b.room_id.to_string() }, "participant": { "identity": b.member_id.to_string() } }).to_string();
    let forged = ppodok_tokens::livekit::LivekitKeys::new(
        "devkey",
        "not-the-secret-not-the-secret-not-the-secret",
    );
    for auth in [
        None,
        Some("garbage".to_owned()),
        Some(forged.sign_webhook(body.as_bytes(), Utc::now().timestamp())),
    ] {
        let mut req = b
            .app
            .http
            .post(b.app.url("/api/v1/internal/sfu/webhook"))
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(b.app.count("reservations", "sfu_present = true").await, 0);
}

on_both_backends!(
    enter_twice_exit_twice_counts_once,
    exit_without_enter_and_enter_after_end_are_refused,
    times_are_clamped_to_the_room_window,
    presence_webhooks_alone_credit_time,
    client_and_webhook_for_the_same_interval_count_once,
    an_enter_followed_by_silence_is_credited_only_to_its_last_evidence,
    a_session_that_stops_answering_is_credited_to_its_last_touch,
    a_live_session_through_the_room_earns_all_of_it,
    video_is_evidence_until_the_sfu_says_left,
    video_left_ends_the_credit_there,
    leaving_before_the_start_credits_nothing,
    the_sfu_leaving_closes_a_client_that_never_said_goodbye,
    webhooks_need_the_shared_secret,
);
