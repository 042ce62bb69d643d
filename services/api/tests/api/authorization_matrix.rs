//! Every endpoint of the foundation, asked by an anonymous caller, a non-member, a member, the
//! group's owner and another group's owner: each gets exactly the documented answer.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    NonMember,
    Member,
    Owner,
    OtherOwner,
}

use Who::*;

const ALL: [Who; 5] = [Anonymous, NonMember, Member, Owner, OtherOwner];

struct Callers {
    non_member: String,
    member: String,
    owner: String,
    other_owner: String,
}

impl Callers {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Anonymous => None,
            NonMember => Some(&self.non_member),
            Member => Some(&self.member),
            Owner => Some(&self.owner),
            OtherOwner => Some(&self.other_owner),
        }
    }
}

struct Matrix<'a> {
    app: &'a TestApp,
    callers: Callers,
}

impl Matrix<'_> {
    /// Sends one request as `who` and checks status (and the message, where given).
    async fn expect(
        &self,
        who: Who,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
        message: Option<&str>,
    ) -> Value {
        let r = self
            .app
            .send(method.clone(), path, self.callers.token(who), body)
            .await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{who:?} {method} {path}: {}",
            r.body
        );
        if let Some(m) = message {
            assert_eq!(r.body["message"], m, "{who:?} {method} {path}");
        }
        if status >= 400 {
            assert_eq!(
                r.body["code"], "fail",
                "{who:?} {method} {path}: {}",
                r.body
            );
        }
        r.body
    }
}

const UNAUTH: &str = "인증이 필요해요.";
const FORBIDDEN: &str = "접근 권한이 없어요.";
const NOT_OWNER: &str = "그룹장이 아닙니다.";
const WRONG_PW: &str = "비밀번호가 일치하지 않습니다.";
const ALREADY: &str = "이미 가입한 그룹입니다.";

async fn authorization_matrix(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.dev_login("owner").await;
    let member = app.dev_login("member").await;
    let non_member = app.dev_login("outsider").await;
    let other_owner = app.dev_login("other-owner").await;
    let member_id = app.member_id(&member.access).await;
    let owner_id = app.member_id(&owner.access).await;
    let outsider_id = app.member_id(&non_member.access).await;
    let (g, code) = app
        .create_group(&owner.access, "비밀 스터디", Some("s3cret-pw"))
        .await;
    let (h, _) = app
        .create_group(&other_owner.access, "다른 그룹", None)
        .await;
    app.join(&member.access, g, Some("s3cret-pw"))
        .await
        .assert_status(201);
    let todo = app
        .post(
            "/api/v1/todos",
            &member.access,
            json!({ "content": "member's todo", "groupId": g }),
        )
        .await;
    let t = todo.data()["todoId"].as_i64().unwrap();
    let callers = Callers {
        non_member: non_member.access.clone(),
        member: member.access.clone(),
        owner: owner.access.clone(),
        other_owner: other_owner.access.clone(),
    };
    let mx = Matrix { app: &app, callers };

    // --- members
    for who in ALL {
        let s = if who == Anonymous { 401 } else { 200 };
        mx.expect(
            who,
            Method::GET,
            "/api/v1/members",
            None,
            s,
            (who == Anonymous).then_some(UNAUTH),
        )
        .await;
    }
    let in_group = format!("/api/v1/members/{g}");
    for (who, s) in [
        (Anonymous, 401),
        (NonMember, 404),
        (Member, 200),
        (Owner, 200),
        (OtherOwner, 404),
    ] {
        mx.expect(who, Method::GET, &in_group, None, s, None).await;
    }
    mx.expect(
        Anonymous,
        Method::POST,
        "/api/v1/members/logout",
        None,
        401,
        Some(UNAUTH),
    )
    .await;
    mx.expect(
        Anonymous,
        Method::DELETE,
        "/api/v1/members",
        None,
        401,
        Some(UNAUTH),
    )
    .await;

    // --- group listings: invite codes only for members
    for who in ALL {
        let body = mx
            .expect(
                who,
                Method::GET,
                "/api/v1/groups/all",
                None,
                if who == Anonymous { 401 } else { 200 },
                None,
            )
            .await;
        if who == Anonymous {
            continue;
        }
        let listed: Vec<&Value> = body["data"].as_array().unwrap().iter().collect();
        assert!(
            listed.iter().all(|grp| grp["path"].is_null()),
            "{who:?} sees no invite code: {body}"
        );
        let sees_g = listed.iter().any(|grp| grp["groupId"] == g);
        assert_eq!(
            sees_g,
            matches!(who, NonMember | OtherOwner),
            "{who:?} joinable listing"
        );
        let sees_h = listed.iter().any(|grp| grp["groupId"] == h);
        assert_eq!(sees_h, who != OtherOwner, "{who:?} joinable listing");
    }
    for who in ALL {
        let body = mx
            .expect(
                who,
                Method::GET,
                "/api/v1/groups",
                None,
                if who == Anonymous { 401 } else { 200 },
                None,
            )
            .await;
        if who == Anonymous {
            continue;
        }
        let mine = body["data"].as_array().unwrap();
        let g_entry = mine.iter().find(|grp| grp["groupId"] == g);
        assert_eq!(
            g_entry.is_some(),
            matches!(who, Member | Owner),
            "{who:?} my groups"
        );
        if let Some(entry) = g_entry {
            assert_eq!(entry["path"], code.as_str(), "members see the invite code");
            assert_eq!(entry["secret"], true);
        }
    }
    let preview = format!("/api/v1/groups/path?path={code}");
    for (who, s, m) in [
        (Anonymous, 401, Some(UNAUTH)),
        (NonMember, 200, None),
        (Member, 400, Some(ALREADY)),
        (Owner, 400, Some(ALREADY)),
        (OtherOwner, 200, None),
    ] {
        mx.expect(who, Method::GET, &preview, None, s, m).await;
    }

    // --- create
    for who in ALL {
        let s = if who == Anonymous { 401 } else { 201 };
        mx.expect(
            who,
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "groupName": "새 그룹", "secret": false })),
            s,
            None,
        )
        .await;
    }

    // --- owner edit
    let edit = json!({ "groupId": g, "groupName": "이름 바꿈", "secret": true });
    for (who, s, m) in [
        (Anonymous, 401, Some(UNAUTH)),
        (NonMember, 400, Some(NOT_OWNER)),
        (Member, 400, Some(NOT_OWNER)),
        (OtherOwner, 400, Some(NOT_OWNER)),
        (Owner, 200, None),
    ] {
        mx.expect(
            who,
            Method::PATCH,
            "/api/v1/groups",
            Some(edit.clone()),
            s,
            m,
        )
        .await;
    }

    // --- colour
    let color = json!({ "groupId": g, "color": "primary" });
    let not_member_of =
        |id: i64| format!("사용자가 참여한 그룹의 id가 아닙니다. 사용자 id : {id} 그룹 id : {g}");
    mx.expect(
        Anonymous,
        Method::PATCH,
        "/api/v1/groups/color",
        Some(color.clone()),
        401,
        Some(UNAUTH),
    )
    .await;
    mx.expect(
        NonMember,
        Method::PATCH,
        "/api/v1/groups/color",
        Some(color.clone()),
        404,
        Some(&not_member_of(outsider_id)),
    )
    .await;
    mx.expect(
        OtherOwner,
        Method::PATCH,
        "/api/v1/groups/color",
        Some(color.clone()),
        404,
        None,
    )
    .await;
    mx.expect(
        Member,
        Method::PATCH,
        "/api/v1/groups/color",
        Some(color.clone()),
        200,
        None,
    )
    .await;
    mx.expect(
        Owner,
        Method::PATCH,
        "/api/v1/groups/color",
        Some(color.clone()),
        200,
        None,
    )
    .await;

    // --- join a secret group by id: the password is required from everyone who is not in
    let join = format!("/api/v1/groups/{g}");
    for (who, s, m) in [
        (Anonymous, 401, Some(UNAUTH)),
        (NonMember, 400, Some(WRONG_PW)),
        (OtherOwner, 400, Some(WRONG_PW)),
        (Member, 201, None),
        (Owner, 201, None),
    ] {
        mx.expect(who, Method::POST, &join, Some(json!({})), s, m)
            .await;
        mx.expect(
            who,
            Method::POST,
            &join,
            Some(json!({ "password": "guess" })),
            if s == 201 { 201 } else { s },
            m,
        )
        .await;
    }
    // --- join by invite code: members are told they are in already
    for (who, s, m) in [
        (Anonymous, 401, Some(UNAUTH)),
        (Member, 400, Some(ALREADY)),
        (Owner, 400, Some(ALREADY)),
    ] {
        mx.expect(
            who,
            Method::POST,
            "/api/v1/groups/path",
            Some(json!({ "path": code })),
            s,
            m,
        )
        .await;
    }

    // --- todos: only the owner of a todo sees or touches it; only members add
    let list = format!("/api/v1/todos?groupId={g}");
    for (who, s) in [
        (Anonymous, 401),
        (NonMember, 403),
        (OtherOwner, 403),
        (Member, 200),
        (Owner, 200),
    ] {
        let body = mx
            .expect(
                who,
                Method::GET,
                &list,
                None,
                s,
                (s == 403).then_some(FORBIDDEN),
            )
            .await;
        if s == 200 {
            let ids: Vec<i64> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["todoId"].as_i64().unwrap())
                .collect();
            assert_eq!(
                ids.contains(&t),
                who == Member,
                "{who:?} sees only own todos"
            );
        }
    }
    for (who, s) in [
        (Anonymous, 401),
        (NonMember, 403),
        (OtherOwner, 403),
        (Member, 201),
        (Owner, 201),
    ] {
        mx.expect(
            who,
            Method::POST,
            "/api/v1/todos",
            Some(json!({ "content": "x", "groupId": g })),
            s,
            None,
        )
        .await;
    }
    let hijack = json!({ "todoId": t, "content": "hijacked", "done": true });
    let todo_missing = format!("존재하지 않는 todo입니다. todoId: {t}");
    for who in [NonMember, Owner, OtherOwner] {
        mx.expect(
            who,
            Method::PATCH,
            "/api/v1/todos",
            Some(hijack.clone()),
            404,
            Some(&todo_missing),
        )
        .await;
        mx.expect(
            who,
            Method::DELETE,
            "/api/v1/todos",
            Some(json!({ "todoId": t })),
            200,
            None,
        )
        .await;
    }
    mx.expect(
        Anonymous,
        Method::PATCH,
        "/api/v1/todos",
        Some(hijack.clone()),
        401,
        Some(UNAUTH),
    )
    .await;
    mx.expect(
        Anonymous,
        Method::DELETE,
        "/api/v1/todos",
        Some(json!({ "todoId": t })),
        401,
        Some(UNAUTH),
    )
    .await;
    assert_eq!(
        app.count(
            "todos",
            &format!("id = {t} AND content = 'member''s todo' AND done = false")
        )
        .await,
        1,
        "others changed nothing"
    );
    mx.expect(
        Member,
        Method::PATCH,
        "/api/v1/todos",
        Some(json!({ "todoId": t, "done": true })),
        200,
        None,
    )
    .await;

    // --- push clients
    for who in ALL {
        let s = if who == Anonymous { 401 } else { 201 };
        mx.expect(
            who,
            Method::POST,
            "/api/v1/clients",
            Some(json!({ "fcmToken": format!("fcm-{who:?}") })),
            s,
            None,
        )
        .await;
    }

    // --- leave: strangers get 404, the member may
    let leave = json!({ "groupId": g });
    mx.expect(
        Anonymous,
        Method::DELETE,
        "/api/v1/groups",
        Some(leave.clone()),
        401,
        Some(UNAUTH),
    )
    .await;
    mx.expect(
        NonMember,
        Method::DELETE,
        "/api/v1/groups",
        Some(leave.clone()),
        404,
        Some(&not_member_of(outsider_id)),
    )
    .await;
    mx.expect(
        OtherOwner,
        Method::DELETE,
        "/api/v1/groups",
        Some(leave.clone()),
        404,
        None,
    )
    .await;
    mx.expect(
        Member,
        Method::DELETE,
        "/api/v1/groups",
        Some(leave.clone()),
        200,
        None,
    )
    .await;
    // ... and the invite code works for anyone holding it, without the password.
    mx.expect(
        NonMember,
        Method::POST,
        "/api/v1/groups/path",
        Some(json!({ "path": code })),
        201,
        None,
    )
    .await;
    mx.expect(
        Member,
        Method::POST,
        "/api/v1/groups/path",
        Some(json!({ "path": code })),
        201,
        None,
    )
    .await;

    // --- a withdrawn member's tokens stop working at once
    let member_refresh = member.refresh.clone();
    mx.expect(
        Member,
        Method::DELETE,
        "/api/v1/members",
        None,
        200,
        Some("삭제되었습니다."),
    )
    .await;
    for (method, path) in [
        (Method::GET, "/api/v1/members".to_owned()),
        (Method::GET, "/api/v1/groups".to_owned()),
        (Method::GET, format!("/api/v1/todos?groupId={g}")),
        (Method::DELETE, "/api/v1/members".to_owned()),
    ] {
        mx.expect(Member, method, &path, None, 401, Some(UNAUTH))
            .await;
    }
    assert_eq!(
        app.refresh(&member_refresh).await.body["code"],
        "INVALID REFRESH TOKEN"
    );
    assert_eq!(
        app.count("memberships", &format!("member_id = {member_id}"))
            .await,
        0
    );
    assert_eq!(
        app.count(
            "study_groups",
            &format!("id = {g} AND owner_id = {owner_id}")
        )
        .await,
        1
    );
}

on_both_backends!(authorization_matrix);
