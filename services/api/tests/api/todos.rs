//! Todo lifecycle and contract shapes.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_backends;

async fn todo_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.dev_login("planner").await;
    let r = app
        .post(
            "/api/v1/todos",
            &t.access,
            json!({ "groupId": 1, "content": "영단어 50개" }),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.body["code"], "resource.created");
    assert_eq!(r.body["message"], "새로 생성되었습니다.");
    let first = r.data()["todoId"].as_i64().unwrap();
    assert_eq!(r.data()["done"], false);
    assert_eq!(r.data()["groupId"], 1);
    let second = app
        .post(
            "/api/v1/todos",
            &t.access,
            json!({ "groupId": 1, "content": "수학 2장" }),
        )
        .await
        .data()["todoId"]
        .as_i64()
        .unwrap();

    let list = app.get("/api/v1/todos?groupId=1", &t.access).await;
    let ids: Vec<i64> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["todoId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![first, second], "insertion order");

    let r = app
        .patch(
            "/api/v1/todos",
            &t.access,
            json!({ "todoId": first, "content": "영단어 60개", "done": true }),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.data()["content"], "영단어 60개");
    assert_eq!(r.data()["done"], true);
    assert_eq!(
        app.count("todos", &format!("id = {first} AND done_at IS NOT NULL"))
            .await,
        1
    );
    let r = app
        .patch(
            "/api/v1/todos",
            &t.access,
            json!({ "todoId": first, "done": false }),
        )
        .await;
    assert_eq!(
        r.data()["content"],
        "영단어 60개",
        "omitted content is kept"
    );
    assert_eq!(
        app.count("todos", &format!("id = {first} AND done_at IS NULL"))
            .await,
        1
    );

    let r = app
        .delete("/api/v1/todos", &t.access, json!({ "todoId": first }))
        .await;
    r.assert_status(200);
    assert_eq!(r.body["code"], "resource.deleted");
    assert_eq!(r.body["data"], serde_json::Value::Null);
    // Deleting again is fine; editing a deleted todo is a 404.
    app.delete("/api/v1/todos", &t.access, json!({ "todoId": first }))
        .await
        .assert_status(200);
    app.patch(
        "/api/v1/todos",
        &t.access,
        json!({ "todoId": first, "done": true }),
    )
    .await
    .assert_fail(404)
    .assert_message(&format!("존재하지 않는 todo입니다. todoId: {first}"));
    app.post(
        "/api/v1/todos",
        &t.access,
        json!({ "groupId": 77777, "content": "x" }),
    )
    .await
    .assert_fail(404)
    .assert_message("존재하지 않는 그룹입니다. groupId: 77777");
}

on_both_backends!(todo_lifecycle);
