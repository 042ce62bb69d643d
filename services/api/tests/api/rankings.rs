//! Group rankings: the contract's `/ranks` and the paged `/rankings` with my own rank; order,
//! shared ranks on ties, periods (today, this week, this month, all time), authorisation.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp, Tokens};
use crate::on_both_backends;
use crate::study_support::{kst, study};

struct Member {
    id: i64,
    tokens: Tokens,
}

/// A group created by the first name and joined by the others.
async fn group_of(app: &TestApp, names: &[&str]) -> (i64, Vec<Member>) {
    let mut members = Vec::new();
    for name in names {
        let tokens = app.dev_login(name).await;
        let id = app.member_id(&tokens.access).await;
        members.push(Member { id, tokens });
    }
    let (group, _) = app
        .create_group(&members[0].tokens.access, "랭킹", None)
        .await;
    for m in &members[1..] {
        app.join(&m.tokens.access, group, None)
            .await
            .assert_status(201);
    }
    (group, members)
}

fn ids(entries: &Value) -> Vec<i64> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("an array: {entries}"))
        .iter()
        .map(|e| e["memberId"].as_i64().unwrap())
        .collect()
}

fn field<'a>(entries: &'a Value, name: &str) -> Vec<&'a Value> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e[name])
        .collect()
}

async fn rankings_order_ties_and_my_rank(backend: Backend) {
    let app = spawn_app(backend).await;
    app.clock.set(kst(2026, 3, 4, 12, 0));
    let (group, m) = group_of(&app, &["ace", "bee", "cat", "dot"]).await;
    let at = |h| kst(2026, 3, 4, h, 0);
    study(
        &app,
        m[0].id,
        Some(group),
        at(8),
        at(8) + chrono::Duration::minutes(50),
    )
    .await;
    study(
        &app,
        m[2].id,
        Some(group),
        at(9),
        at(9) + chrono::Duration::minutes(30),
    )
    .await;
    study(
        &app,
        m[1].id,
        Some(group),
        at(9),
        at(9) + chrono::Duration::minutes(30),
    )
    .await;
    // Time in another group does not count here.
    study(&app, m[3].id, Some(1), at(7), at(10)).await;

    // Contract shape: every member, by all-time time, ties by member id.
    let r = app
        .get(
            &format!("/api/v1/ranks?groupId={group}"),
            &m[3].tokens.access,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["code"], "success");
    assert_eq!(ids(r.data()), vec![m[0].id, m[1].id, m[2].id, m[3].id]);
    assert_eq!(
        field(r.data(), "duration"),
        vec!["PT50M", "PT30M", "PT30M", "PT0S"]
    );
    let first = &r.data()[0];
    assert_eq!(first["nickname"], "ace");
    assert!(first.as_object().unwrap().contains_key("profile"));
    assert_eq!(first.as_object().unwrap().len(), 4, "{first}");

    let r = app
        .get(
            &format!("/api/v1/rankings?groupId={group}"),
            &m[3].tokens.access,
        )
        .await;
    r.assert_status(200);
    let data = r.data();
    assert_eq!(data["period"], "all");
    assert!(data["from"].is_null() && data["to"].is_null());
    assert_eq!(
        ids(&data["entries"]),
        vec![m[0].id, m[1].id, m[2].id, m[3].id]
    );
    assert_eq!(field(&data["entries"], "rank"), vec![1, 2, 2, 4]);
    assert_eq!(data["entries"][1]["nickname"], "bee");
    assert_eq!(data["me"], json!({ "rank": 4, "duration": "PT0S" }));

    // Top 2 only; my rank is still counted (a tie shares the rank).
    let r = app
        .get(
            &format!("/api/v1/rankings?groupId={group}&limit=2"),
            &m[2].tokens.access,
        )
        .await;
    assert_eq!(ids(&r.data()["entries"]), vec![m[0].id, m[1].id]);
    assert_eq!(r.data()["me"], json!({ "rank": 2, "duration": "PT30M" }));
}

async fn periods_count_only_their_own_time(backend: Backend) {
    let app = spawn_app(backend).await;
    // Wednesday 4 March 2026.
    app.clock.set(kst(2026, 3, 4, 12, 0));
    let (group, m) = group_of(&app, &["last-week", "today", "yesterday", "idle"]).await;
    let g = Some(group);
    study(
        &app,
        m[0].id,
        g,
        kst(2026, 2, 25, 20, 0),
        kst(2026, 2, 25, 21, 0),
    )
    .await;
    study(
        &app,
        m[1].id,
        g,
        kst(2026, 3, 4, 9, 0),
        kst(2026, 3, 4, 9, 20),
    )
    .await;
    study(
        &app,
        m[2].id,
        g,
        kst(2026, 3, 3, 9, 0),
        kst(2026, 3, 3, 9, 10),
    )
    .await;
    let url = |period: &str| format!("/api/v1/rankings?groupId={group}&period={period}");
    let token = &m[0].tokens.access;

    let r = app.get(&url("day"), token).await;
    r.assert_status(200);
    assert_eq!(r.data()["period"], "day");
    assert_eq!(r.data()["from"], "2026-03-04");
    assert_eq!(r.data()["to"], "2026-03-04");
    assert_eq!(ids(&r.data()["entries"]), vec![m[1].id]);
    assert_eq!(r.data()["entries"][0]["duration"], "PT20M");
    assert_eq!(r.data()["me"], json!({ "rank": 2, "duration": "PT0S" }));

    let r = app.get(&url("week"), token).await;
    assert_eq!(r.data()["from"], "2026-03-02");
    assert_eq!(r.data()["to"], "2026-03-08");
    assert_eq!(ids(&r.data()["entries"]), vec![m[1].id, m[2].id]);
    assert_eq!(field(&r.data()["entries"], "rank"), vec![1, 2]);
    assert_eq!(r.data()["me"]["rank"], 3);

    let r = app.get(&url("month"), token).await;
    assert_eq!(r.data()["from"], "2026-03-01");
    assert_eq!(r.data()["to"], "2026-03-31");
    assert_eq!(ids(&r.data()["entries"]), vec![m[1].id, m[2].id]);

    let r = app.get(&url("all"), token).await;
    assert_eq!(
        ids(&r.data()["entries"]),
        vec![m[0].id, m[1].id, m[2].id, m[3].id]
    );
    assert_eq!(r.data()["me"], json!({ "rank": 1, "duration": "PT1H" }));

    // The contract endpoint takes the same periods.
    let r = app
        .get(&format!("/api/v1/ranks?groupId={group}&period=week"), token)
        .await;
    assert_eq!(ids(r.data()), vec![m[1].id, m[2].id]);
    assert_eq!(field(r.data(), "duration"), vec!["PT20M", "PT10M"]);

    // Next Monday the week starts over; last week's ranking is gone from "week".
    app.clock.set(kst(2026, 3, 9, 0, 1));
    let r = app.get(&url("week"), token).await;
    assert_eq!(r.data()["from"], "2026-03-09");
    assert_eq!(ids(&r.data()["entries"]), Vec::<i64>::new());
    assert_eq!(r.data()["me"]["rank"], 1);

    // A member who left no longer ranks in the group's periods.
    app.clock.set(kst(2026, 3, 4, 12, 0));
    app.delete(
        "/api/v1/groups",
        &m[2].tokens.access,
        json!({ "groupId": group }),
    )
    .await
    .assert_status(200);
    let r = app.get(&url("week"), token).await;
    assert_eq!(ids(&r.data()["entries"]), vec![m[1].id]);
    assert_eq!(r.data()["me"]["rank"], 2);
}

async fn rankings_are_for_members_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (group, m) = group_of(&app, &["insider"]).await;
    let outsider = app.dev_login("outsider").await;
    for path in [
        format!("/api/v1/ranks?groupId={group}"),
        format!("/api/v1/rankings?groupId={group}"),
        format!("/api/v1/rankings?groupId={group}&period=week"),
    ] {
        app.get(&path, &outsider.access).await.assert_fail(403);
    }
    app.get("/api/v1/ranks?groupId=987654", &outsider.access)
        .await
        .assert_fail(404)
        .assert_message("존재하지 않는 그룹입니다. groupId: 987654");
    app.get("/api/v1/rankings?groupId=987654", &outsider.access)
        .await
        .assert_fail(404);
    let token = &m[0].tokens.access;
    for path in [
        "/api/v1/ranks".to_owned(),
        "/api/v1/ranks?groupId=abc".to_owned(),
        format!("/api/v1/ranks?groupId={group}&period=year"),
        format!("/api/v1/rankings?groupId={group}&period=fortnight"),
        format!("/api/v1/rankings?groupId={group}&limit=0"),
        format!("/api/v1/rankings?groupId={group}&limit=-3"),
        // Out of the documented 1..=200: refused, not silently capped.
        format!("/api/v1/rankings?groupId={group}&limit=201"),
        format!("/api/v1/rankings?groupId={group}&limit=9223372036854775808"),
        format!("/api/v1/rankings?groupId={group}&period="),
    ] {
        let r = app.get(&path, token).await;
        assert_eq!(r.status.as_u16(), 400, "{path}: {}", r.body);
        r.assert_fail(400);
    }
    app.get(
        &format!("/api/v1/rankings?groupId={group}&limit=200"),
        token,
    )
    .await
    .assert_status(200);
}

on_both_backends!(
    rankings_order_ties_and_my_rank,
    periods_count_only_their_own_time,
    rankings_are_for_members_only,
);
