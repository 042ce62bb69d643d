//! Group rules: secret groups, invite codes, colours, owner edit, leave cascade, races.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_backends;

async fn secret_groups_store_a_hash_and_need_the_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("host").await;
    let guest = app.dev_login("visitor").await;
    let (g, _) = app
        .create_group(&owner.access, "비밀", Some("open-sesame"))
        .await;
    let stored: Vec<(Option<String>,)> = {
        use sea_orm::{ConnectionTrait, Statement};
        let rows = app
            .db
            .query_all(Statement::from_string(
                app.db.get_database_backend(),
                format!("SELECT password_hash FROM study_groups WHERE id = {g}"),
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| (r.try_get::<Option<String>>("", "password_hash").unwrap(),))
            .collect()
    };
    let hash = stored[0].0.clone().unwrap();
    assert!(
        hash.starts_with("$argon2id$"),
        "argon2 hash, not the password: {hash}"
    );
    assert!(!hash.contains("open-sesame"));

    app.join(&guest.access, g, Some("wrong"))
        .await
        .assert_fail(400)
        .assert_message("비밀번호가 일치하지 않습니다.");
    let r = app.join(&guest.access, g, Some("open-sesame")).await;
    r.assert_status(201);
    assert_eq!(r.body["code"], "resource.created");
    assert_eq!(r.data()["secret"], true);
    // Joining again is idempotent: no error, no second membership.
    app.join(&guest.access, g, Some("open-sesame"))
        .await
        .assert_status(201);
    assert_eq!(
        app.count("memberships", &format!("group_id = {g}")).await,
        2
    );
    assert_eq!(app.count("ranks", &format!("group_id = {g}")).await, 2);
}

async fn invite_codes_are_generated_unique_and_join_without_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("inviter").await;
    let friend = app.dev_login("friend").await;
    let r = app
        .post(
            "/api/v1/groups",
            &owner.access,
            json!({ "groupName": "초대", "secret": true, "password": "pw-1234", "path": "chosen" }),
        )
        .await;
    r.assert_status(201);
    let code = r.data()["path"].as_str().unwrap().to_owned();
    assert_ne!(code, "chosen", "clients do not choose invite codes");
    assert_eq!(code.len(), 16);
    let (_, other) = app.create_group(&owner.access, "또 하나", None).await;
    assert_ne!(code, other);

    let p = app
        .get(&format!("/api/v1/groups/path?path={code}"), &friend.access)
        .await;
    p.assert_status(200);
    assert_eq!(p.data()["groupName"], "초대");
    app.get("/api/v1/groups/path?path=NoSuchCode123", &friend.access)
        .await
        .assert_fail(400)
        .assert_message("유효하지 않은 초대 코드입니다. : NoSuchCode123");
    app.post(
        "/api/v1/groups/path",
        &friend.access,
        json!({ "path": code }),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/v1/groups/path",
        &friend.access,
        json!({ "path": code }),
    )
    .await
    .assert_fail(400)
    .assert_message("이미 가입한 그룹입니다.");
}

/// The existing web client proposes a 10-character code at creation and shows its own invite
/// link at once: a strong, unused code is kept and that link works; a weak or taken one is
/// replaced by a server code, which the response carries.
async fn a_strong_client_code_is_kept_and_a_weak_or_taken_one_replaced(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("code-chooser").await;
    let friend = app.dev_login("code-follower").await;
    let create = |name: &'static str, path: &'static str| {
        let app = &app;
        let token = owner.access.clone();
        async move {
            let r = app
                .post(
                    "/api/v1/groups",
                    &token,
                    json!({ "groupName": name, "secret": false, "password": null, "path": path }),
                )
                .await;
            r.assert_status(201);
            r.data()["path"].as_str().unwrap().to_owned()
        }
    };
    let strong = "Q7vTz2LmK9";
    assert_eq!(create("클라이언트 코드", strong).await, strong);
    let p = app
        .get(
            &format!("/api/v1/groups/path?path={strong}"),
            &friend.access,
        )
        .await;
    p.assert_status(200);
    assert_eq!(p.data()["groupName"], "클라이언트 코드");
    app.post(
        "/api/v1/groups/path",
        &friend.access,
        json!({ "path": strong }),
    )
    .await
    .assert_status(201);

    for weak in ["Q7vTz2LmK", "Q7vTz2LmK9-", "Q7vTz2 LmK9", strong] {
        let code = create("약한 코드", weak).await;
        assert_ne!(code, weak, "{weak} is replaced");
        assert_eq!(code.len(), 16, "a server code for {weak}");
        assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
        let p = app
            .get(&format!("/api/v1/groups/path?path={code}"), &friend.access)
            .await;
        p.assert_status(200);
        assert_eq!(p.data()["groupName"], "약한 코드");
    }
    // The taken code still leads to the first group only.
    assert_eq!(
        app.count("study_groups", &format!("invite_code = '{strong}'"))
            .await,
        1
    );
}

async fn colour_and_owner_edit(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("painter").await;
    let guest = app.dev_login("guest2").await;
    let (g, _) = app.create_group(&owner.access, "색칠", None).await;
    let r = app
        .patch(
            "/api/v1/groups/color",
            &owner.access,
            json!({ "groupId": g, "color": "secondary" }),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.data()["color"], "secondary");
    let mine = app.get("/api/v1/groups", &owner.access).await;
    let entry = mine
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["groupId"] == g)
        .unwrap()
        .clone();
    assert_eq!(entry["color"], "secondary");
    app.patch(
        "/api/v1/groups/color",
        &owner.access,
        json!({ "groupId": 424242, "color": "accent" }),
    )
    .await
    .assert_fail(404)
    .assert_message("존재하지 않는 그룹입니다. groupId: 424242");

    // Making it secret needs a password; then omitting it keeps the old one.
    app.patch(
        "/api/v1/groups",
        &owner.access,
        json!({ "groupId": g, "groupName": "색칠", "secret": true }),
    )
    .await
    .assert_fail(400);
    let r = app
        .patch("/api/v1/groups", &owner.access, json!({ "groupId": g, "groupName": " 새 이름 ", "secret": true, "password": "first-pw" }))
        .await;
    r.assert_status(200);
    assert_eq!(r.data()["groupName"], "새 이름");
    app.patch(
        "/api/v1/groups",
        &owner.access,
        json!({ "groupId": g, "groupName": "새 이름", "secret": true }),
    )
    .await
    .assert_status(200);
    app.join(&guest.access, g, Some("first-pw"))
        .await
        .assert_status(201);
    // Making it public drops the password.
    app.patch(
        "/api/v1/groups",
        &owner.access,
        json!({ "groupId": g, "groupName": "공개", "secret": false }),
    )
    .await
    .assert_status(200);
    assert_eq!(
        app.count(
            "study_groups",
            &format!("id = {g} AND password_hash IS NULL AND is_secret = false")
        )
        .await,
        1
    );
    app.patch(
        "/api/v1/groups",
        &owner.access,
        json!({ "groupId": 1, "groupName": "탈취", "secret": false }),
    )
    .await
    .assert_fail(400)
    .assert_message("그룹장이 아닙니다.");
}

async fn leaving_passes_ownership_and_deletes_emptied_groups(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.dev_login("founder").await;
    let b = app.dev_login("second").await;
    let c = app.dev_login("third").await;
    let (g, _) = app.create_group(&a.access, "릴레이", None).await;
    app.join(&b.access, g, None).await.assert_status(201);
    app.join(&c.access, g, None).await.assert_status(201);
    app.post(
        "/api/v1/todos",
        &b.access,
        json!({ "groupId": g, "content": "b's" }),
    )
    .await
    .assert_status(201);
    let b_id = app.member_id(&b.access).await;

    app.delete("/api/v1/groups", &a.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    assert_eq!(
        app.count("study_groups", &format!("id = {g} AND owner_id = {b_id}"))
            .await,
        1,
        "longest member inherits"
    );
    let edit = |t: String| {
        let app = &app;
        async move {
            app.patch(
                "/api/v1/groups",
                &t,
                json!({ "groupId": g, "groupName": "x", "secret": false }),
            )
            .await
        }
    };
    edit(b.access.clone()).await.assert_status(200);
    edit(c.access.clone()).await.assert_fail(400);

    app.delete("/api/v1/groups", &b.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    assert_eq!(
        app.count("todos", &format!("group_id = {g}")).await,
        0,
        "leaver's todos go"
    );
    app.delete("/api/v1/groups", &c.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    assert_eq!(
        app.count("study_groups", &format!("id = {g}")).await,
        0,
        "empty group deleted"
    );
    assert_eq!(app.count("ranks", &format!("group_id = {g}")).await, 0);
    app.join(&a.access, g, None).await.assert_fail(404);

    // The default group cannot be left.
    app.delete("/api/v1/groups", &a.access, json!({ "groupId": 1 }))
        .await
        .assert_fail(400)
        .assert_message("기본 그룹은 탈퇴할 수 없어요.");
}

async fn rejoining_starts_a_fresh_rank_and_todo_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("stay").await;
    let m = app.dev_login("come-and-go").await;
    let (g, _) = app.create_group(&owner.access, "들락날락", None).await;
    app.join(&m.access, g, None).await.assert_status(201);
    app.post(
        "/api/v1/todos",
        &m.access,
        json!({ "groupId": g, "content": "old" }),
    )
    .await
    .assert_status(201);
    app.delete("/api/v1/groups", &m.access, json!({ "groupId": g }))
        .await
        .assert_status(200);
    app.join(&m.access, g, None).await.assert_status(201);
    assert_eq!(
        app.get(&format!("/api/v1/todos?groupId={g}"), &m.access)
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let me = app.get(&format!("/api/v1/members/{g}"), &m.access).await;
    assert_eq!(me.data()["duration"], "PT0S");
}

async fn concurrent_joins_make_one_membership(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("popular").await;
    let fan = app.dev_login("eager").await;
    let (g, _) = app.create_group(&owner.access, "인기", None).await;
    let joins = (0..12).map(|_| app.join(&fan.access, g, None));
    for r in futures::future::join_all(joins).await {
        r.assert_status(201);
    }
    let fan_id = app.member_id(&fan.access).await;
    assert_eq!(
        app.count(
            "memberships",
            &format!("group_id = {g} AND member_id = {fan_id}")
        )
        .await,
        1
    );
    assert_eq!(
        app.count("ranks", &format!("group_id = {g} AND member_id = {fan_id}"))
            .await,
        1
    );
}

async fn last_two_members_leaving_at_once_delete_the_group(backend: Backend) {
    let app = spawn_app(backend).await;
    for round in 0..4 {
        let a = app.dev_login(&format!("leaver-a{round}")).await;
        let b = app.dev_login(&format!("leaver-b{round}")).await;
        let (g, _) = app.create_group(&a.access, "동시 탈퇴", None).await;
        app.join(&b.access, g, None).await.assert_status(201);
        let (ra, rb) = tokio::join!(
            app.delete("/api/v1/groups", &a.access, json!({ "groupId": g })),
            app.delete("/api/v1/groups", &b.access, json!({ "groupId": g }))
        );
        ra.assert_status(200);
        rb.assert_status(200);
        assert_eq!(
            app.count("study_groups", &format!("id = {g}")).await,
            0,
            "round {round}"
        );
    }
}

on_both_backends!(
    secret_groups_store_a_hash_and_need_the_password,
    invite_codes_are_generated_unique_and_join_without_password,
    a_strong_client_code_is_kept_and_a_weak_or_taken_one_replaced,
    colour_and_owner_edit,
    leaving_passes_ownership_and_deletes_emptied_groups,
    rejoining_starts_a_fresh_rank_and_todo_list,
    concurrent_joins_make_one_membership,
    last_two_members_leaving_at_once_delete_the_group,
);
