//! Test harness: the real application on port 0 with a fresh database (a SQLite file, or a new
//! MariaDB schema plus a Redis key prefix), a local server playing Kakao's documented API, and
//! small HTTP helpers.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ppodok_api::{clock::Clock, config::Settings, startup::Application};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{json, Value};

pub const MYSQL_ADMIN_URL_DEFAULT: &str = "mysql://root@127.0.0.1:3306";
pub const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";
pub const KAKAO_ADMIN_KEY: &str = "test-admin-key";
pub const KAKAO_REST_KEY: &str = "test-rest-key";
pub const LIVEKIT_SECRET: &str = "livekit-test-secret-livekit-test-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MariaDb,
}

/// Generates one `#[tokio::test]` per backend for each scenario `async fn name(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::MariaDb).await
                }
            )*
        }
    };
}

pub fn mysql_admin_url() -> String {
    std::env::var("PPODOK_TEST_MYSQL_URL").unwrap_or_else(|_| MYSQL_ADMIN_URL_DEFAULT.into())
}

pub fn redis_url() -> String {
    std::env::var("PPODOK_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL_DEFAULT.into())
}

#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A fresh, isolated store for one test; dropped with the test.
pub struct TestStore {
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    mysql_schema: Option<String>,
    sqlite_file: Option<std::path::PathBuf>,
}

impl TestStore {
    pub async fn create(backend: Backend) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let file = std::env::temp_dir().join(format!("ppodok-test-{id}.sqlite"));
                Self {
                    database_url: format!("sqlite://{}?mode=rwc", file.display()),
                    redis_url: String::new(),
                    redis_prefix: String::new(),
                    mysql_schema: None,
                    sqlite_file: Some(file),
                }
            }
            Backend::MariaDb => {
                let schema = format!("ppodok_t_{id}");
                let admin = Database::connect(mysql_admin_url())
                    .await
                    .expect("MariaDB at 127.0.0.1:3306");
                admin
                    .execute_unprepared(&format!(
                        "CREATE DATABASE `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    ))
                    .await
                    .expect("create test schema");
                admin.close().await.ok();
                Self {
                    database_url: format!("{}/{schema}", mysql_admin_url()),
                    redis_url: redis_url(),
                    redis_prefix: format!("ppodok-test:{id}:"),
                    mysql_schema: Some(schema),
                    sqlite_file: None,
                }
            }
        }
    }

    /// Settings for an app on this store, talking to `kakao`.
    pub fn settings(&self, kakao: &KakaoMock) -> Settings {
        let mut s = Settings::defaults();
        s.server.port = 0;
        s.server.workers = 2;
        s.database.url = self.database_url.clone();
        s.database.acquire_timeout_secs = 3;
        s.redis.url = self.redis_url.clone();
        s.redis.key_prefix = self.redis_prefix.clone();
        s.auth.jwt_secret = "test-secret-test-secret-test-secret!".into();
        s.kakao.token_url = format!("{}/oauth/token", kakao.base);
        s.kakao.user_info_url = format!("{}/v2/user/me", kakao.base);
        s.kakao.unlink_url = format!("{}/v1/user/unlink", kakao.base);
        s.kakao.rest_api_key = KAKAO_REST_KEY.into();
        s.kakao.admin_key = KAKAO_ADMIN_KEY.into();
        s.kakao.unlink_poll_secs = 1;
        s.kakao.unlink_backoff_base_ms = 50;
        s.livekit.api_secret = LIVEKIT_SECRET.into();
        // Every test logs in from 127.0.0.1 many times; the limit tests set their own budgets.
        s.limits.login_per_ip.burst = 100_000;
        s.limits.refresh_per_ip.burst = 100_000;
        s.limits.booking_per_member.burst = 100_000;
        s
    }
}

impl TestStore {
    /// A handle on the same store that does not drop it (the original owns the cleanup).
    pub fn shared(&self) -> TestStore {
        TestStore {
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            mysql_schema: None,
            sqlite_file: None,
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        if let Some(schema) = self.mysql_schema.take() {
            let prefix = self.redis_prefix.clone();
            let redis = self.redis_url.clone();
            // Drop runs outside any async context we may block; use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(mysql_admin_url()).await {
                        let _ = admin
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{schema}`"))
                            .await;
                    }
                    delete_redis_prefix(&redis, &prefix).await;
                });
            })
            .join();
        }
    }
}

async fn delete_redis_prefix(url: &str, prefix: &str) {
    use fred::prelude::*;
    let Ok(config) = Config::from_url(url) else {
        return;
    };
    let Ok(client) = Builder::from_config(config).build() else {
        return;
    };
    if client.init().await.is_err() {
        return;
    }
    let mut cursor = "0".to_string();
    loop {
        let res: Result<(String, Vec<String>), _> = client
            .custom(
                fred::cmd!("SCAN"),
                vec![
                    cursor.clone(),
                    "MATCH".into(),
                    format!("{prefix}*"),
                    "COUNT".into(),
                    "1000".into(),
                ],
            )
            .await;
        let Ok((next, keys)) = res else { break };
        if !keys.is_empty() {
            let _: Result<i64, _> = client.del(keys).await;
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let _ = client.quit().await;
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// A connection of the test's own, for assertions on stored rows.
    pub db: DatabaseConnection,
    pub kakao: KakaoMock,
    /// The app's clock: starts at the real now; tests move it.
    pub clock: Clock,
    /// The settings the app was built with (a replica can be built from them).
    pub settings: Settings,
    pub store: TestStore,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        ppodok_telemetry::init(ppodok_telemetry::LogFormat::Text, &filter);
    }
    let store = TestStore::create(backend).await;
    let kakao = KakaoMock::start().await;
    let mut settings = store.settings(&kakao);
    adjust(&mut settings);
    let clock = Clock::manual(chrono::Utc::now());
    let base = start_server(settings.clone(), clock.clone()).await;
    let db = Database::connect(store.database_url.clone())
        .await
        .expect("test db connection");
    TestApp {
        base,
        http: reqwest::Client::new(),
        db,
        kakao,
        clock,
        settings,
        store,
    }
}

/// Builds and starts an application; returns its base URL.
pub async fn start_server(settings: Settings, clock: Clock) -> String {
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// Status and parsed JSON body of a response (Null when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    #[track_caller]
    pub fn assert_fail(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["code"], "fail", "body: {}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {}",
            self.body
        );
        self
    }

    #[track_caller]
    pub fn assert_message(&self, message: &str) -> &Self {
        assert_eq!(self.body["message"], message, "body: {}", self.body);
        self
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self
    }
}

impl TestApp {
    /// A second API process on the same database, Redis and clock (another replica).
    pub async fn spawn_replica(&self) -> TestApp {
        self.spawn_replica_with(|_| {}).await
    }

    /// A replica whose settings differ from this app's by `adjust`.
    pub async fn spawn_replica_with(&self, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        adjust(&mut settings);
        let base = start_server(settings, self.clock.clone()).await;
        let db = Database::connect(self.store.database_url.clone())
            .await
            .expect("test db connection");
        TestApp {
            base,
            http: reqwest::Client::new(),
            db,
            kakao: self.kakao.clone(),
            clock: self.clock.clone(),
            settings: self.settings.clone(),
            store: self.store.shared(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the app");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::DELETE, path, Some(token), Some(body))
            .await
    }

    pub async fn dev_login(&self, name: &str) -> Tokens {
        let r = self
            .send(
                Method::POST,
                "/api/v1/members/dev-login",
                None,
                Some(json!({ "name": name })),
            )
            .await;
        r.assert_status(200);
        tokens_of(&r)
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        let resp = self
            .http
            .post(self.url("/api/v1/members/tokens"))
            .header("X-BBODOK-REFRESH-TOKEN", refresh_token)
            .send()
            .await
            .expect("request reaches the app");
        let status = resp.status();
        Reply {
            status,
            body: resp.json().await.unwrap_or(Value::Null),
        }
    }

    pub async fn member_id(&self, token: &str) -> i64 {
        let r = self.get("/api/v1/members", token).await;
        r.assert_status(200);
        r.data()["memberId"].as_i64().expect("memberId")
    }

    /// Creates a group and returns `(groupId, inviteCode)`.
    pub async fn create_group(
        &self,
        token: &str,
        name: &str,
        password: Option<&str>,
    ) -> (i64, String) {
        let r = self
            .post(
                "/api/v1/groups",
                token,
                json!({ "groupName": name, "secret": password.is_some(), "password": password }),
            )
            .await;
        r.assert_status(201);
        (
            r.data()["groupId"].as_i64().unwrap(),
            r.data()["path"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn join(&self, token: &str, group_id: i64, password: Option<&str>) -> Reply {
        self.post(
            &format!("/api/v1/groups/{group_id}"),
            token,
            json!({ "password": password }),
        )
        .await
    }

    /// Counts rows of `table` matching a SQL condition.
    pub async fn count(&self, table: &str, condition: &str) -> i64 {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one(sea_orm::Statement::from_string(
                backend,
                format!("SELECT COUNT(*) AS n FROM {table} WHERE {condition}"),
            ))
            .await
            .expect("count query")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("count column")
    }
}

pub fn tokens_of(r: &Reply) -> Tokens {
    Tokens {
        access: r.data()["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned(),
        refresh: r.data()["refreshToken"]
            .as_str()
            .expect("refreshToken")
            .to_owned(),
    }
}

/// Waits for `condition` to hold, checking it repeatedly until `timeout` passes. For effects of
/// background work (the outbox worker), where there is nothing to await.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Kakao, as documented: POST /oauth/token (form), GET|POST /v2/user/me (Bearer),
// POST /v1/user/unlink (KakaoAK admin key, form target_id_type/target_id).

#[derive(Clone, Debug)]
pub struct KakaoUser {
    pub id: i64,
    pub nickname: String,
    pub email: Option<String>,
    pub image: Option<String>,
}

#[derive(Default)]
pub struct KakaoState {
    /// authorisation code → user
    pub codes: HashMap<String, KakaoUser>,
    /// forms received at the token endpoint
    pub token_requests: Vec<HashMap<String, String>>,
    /// unlink calls answered with 500 before the next one succeeds
    pub failing_unlinks: u32,
    /// every unlink call: (authorization header, form)
    pub unlink_calls: Vec<(String, HashMap<String, String>)>,
    /// target ids successfully unlinked
    pub unlinked: Vec<String>,
    /// make the token endpoint answer 503
    pub down: bool,
}

#[derive(Clone)]
pub struct KakaoMock {
    pub base: String,
    pub state: Arc<Mutex<KakaoState>>,
}

impl KakaoMock {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(KakaoState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/oauth/token", web::post().to(kakao_token))
                .route("/v2/user/me", web::get().to(kakao_me))
                .route("/v2/user/me", web::post().to(kakao_me))
                .route("/v1/user/unlink", web::post().to(kakao_unlink))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { base, state }
    }

    pub fn add_code(&self, code: &str, user: KakaoUser) {
        self.state
            .lock()
            .unwrap()
            .codes
            .insert(code.to_owned(), user);
    }
}

async fn kakao_token(
    state: web::Data<Mutex<KakaoState>>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let mut s = state.lock().unwrap();
    s.token_requests.push(form.0.clone());
    if s.down {
        return HttpResponse::ServiceUnavailable().body("maintenance");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let ok = form.get("grant_type").map(String::as_str) == Some("authorization_code")
        && form.get("client_id").map(String::as_str) == Some(KAKAO_REST_KEY)
        && s.codes.contains_key(&code);
    if !ok {
        return HttpResponse::BadRequest().json(json!({
            "error": "invalid_grant",
            "error_description": format!("authorization code not found for code={code}"),
            "error_code": "KOE320"
        }));
    }
    HttpResponse::Ok().json(json!({
        "token_type": "bearer",
        "access_token": format!("kakao-access-{code}"),
        "expires_in": 21599,
        "refresh_token": format!("kakao-refresh-{code}"),
        "refresh_token_expires_in": 5183999
    }))
}

async fn kakao_me(state: web::Data<Mutex<KakaoState>>, req: HttpRequest) -> HttpResponse {
    let s = state.lock().unwrap();
    let auth = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let user = auth
        .strip_prefix("Bearer kakao-access-")
        .and_then(|code| s.codes.get(code));
    match user {
        None => HttpResponse::Unauthorized().json(json!({ "msg": "this access token does not exist", "code": -401 })),
        Some(u) => HttpResponse::Ok().json(json!({
            "id": u.id,
            "connected_at": "2023-06-10T01:02:03Z",
            "properties": { "nickname": u.nickname },
            "kakao_account": {
                "profile_nickname_needs_agreement": false,
                "profile": { "nickname": u.nickname, "profile_image_url": u.image, "is_default_image": u.image.is_none() },
                "has_email": u.email.is_some(),
                "email": u.email
            }
        })),
    }
}

async fn kakao_unlink(
    state: web::Data<Mutex<KakaoState>>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let mut s = state.lock().unwrap();
    let auth = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    s.unlink_calls.push((auth.clone(), form.0.clone()));
    if auth != format!("KakaoAK {KAKAO_ADMIN_KEY}") {
        return HttpResponse::Unauthorized().json(json!({ "msg": "wrong appKey", "code": -401 }));
    }
    if s.failing_unlinks > 0 {
        s.failing_unlinks -= 1;
        return HttpResponse::InternalServerError()
            .json(json!({ "msg": "internal error", "code": -1 }));
    }
    if form.get("target_id_type").map(String::as_str) != Some("user_id") {
        return HttpResponse::BadRequest().json(json!({ "msg": "target_id_type", "code": -2 }));
    }
    let target = form.get("target_id").cloned().unwrap_or_default();
    s.unlinked.push(target.clone());
    HttpResponse::Ok().json(json!({ "id": target.parse::<i64>().unwrap_or_default() }))
}

// ---------------------------------------------------------------------------------------------

/// A TCP forwarder between the app and a real server, which a test can cut to make that server
/// unreachable.
pub struct TcpProxy {
    pub port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl TcpProxy {
    pub async fn start(upstream: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let registry = tasks.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(acceptor);
        Self { port, tasks }
    }

    /// Closes the listener and every forwarded connection.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time and rooms

/// Service-zone local time of a UTC instant, in the contract's format (millisecond precision).
pub fn local_string(t: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{DurationRound, TimeDelta};
    let zone: chrono_tz::Tz = "Asia/Seoul".parse().unwrap();
    let t = t.duration_trunc(TimeDelta::milliseconds(1)).unwrap();
    ppodok_domain::time::format_local_datetime(t.with_timezone(&zone).naive_local())
}

/// The first :00/:30 slot at least `lead` after `now`.
pub fn slot_after(
    now: chrono::DateTime<chrono::Utc>,
    lead: chrono::Duration,
) -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    let t = now + lead;
    let floored = t.duration_trunc(TimeDelta::minutes(30)).unwrap();
    if floored < t {
        floored + TimeDelta::minutes(30)
    } else {
        floored
    }
}

impl TestApp {
    /// Books the slot starting at `start` in `group_id`.
    pub async fn book(
        &self,
        token: &str,
        group_id: i64,
        start: chrono::DateTime<chrono::Utc>,
    ) -> Reply {
        self.post(
            "/api/v1/rooms/reservations",
            token,
            json!({ "groupId": group_id, "startTime": local_string(start) }),
        )
        .await
    }

    /// Reads a counter or gauge from `/metrics` (summing its label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, name)
    }

    /// Signs and posts an SFU webhook event.
    pub async fn webhook(&self, event: Value) -> Reply {
        let body = event.to_string();
        let keys = ppodok_tokens::livekit::LivekitKeys::new("devkey", LIVEKIT_SECRET);
        let auth = keys.sign_webhook(body.as_bytes(), chrono::Utc::now().timestamp());
        let resp = self
            .http
            .post(self.url("/api/v1/internal/sfu/webhook"))
            .header("Authorization", auth)
            .header("Content-Type", "application/webhook+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        Reply {
            status,
            body: resp.json().await.unwrap_or(Value::Null),
        }
    }

    /// Sum of a numeric column over matching rows (0 when none).
    pub async fn sum(&self, table: &str, column: &str, condition: &str) -> i64 {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one(sea_orm::Statement::from_string(
                backend,
                format!("SELECT CAST(COALESCE(SUM({column}), 0) AS SIGNED) AS n FROM {table} WHERE {condition}"),
            ))
            .await
            .expect("sum query")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("sum column")
    }
}

pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

// ---------------------------------------------------------------------------------------------

/// A `redis-server` of the test's own on a free port, which the test may stop, resume and restart
/// (never the shared one). Killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(port).await;
        Self { port, child }
    }

    async fn spawn(port: u16) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let up = eventually(std::time::Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "private redis-server listens on {port}");
        child
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing (a stall).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server and starts an empty one on the same port.
    pub async fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port).await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
