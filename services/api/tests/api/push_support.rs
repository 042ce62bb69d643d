//! Local push providers playing the documented protocols, for the reminder tests:
//! - FCM HTTP v1: the OAuth2 token endpoint verifies the RS256 JWT bearer grant against the test
//!   service account's public key; `POST /v1/projects/{project}/messages:send` checks the bearer
//!   token it issued. Per-token scripted answers (429 + Retry-After, 500, 404 UNREGISTERED…).
//! - A Web Push service: stores what it receives; the tests decrypt it with Mozilla's `ece`
//!   (RFC 8291, with the subscription's private key and auth secret) and verify the VAPID JWT.
//!
//! Keys are made with `openssl` (the commands the README gives operators).

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

pub const FCM_PROJECT: &str = "ppodok-test";
pub const FCM_CLIENT_EMAIL: &str = "push@ppodok-test.iam.gserviceaccount.com";
pub const VAPID_SUBJECT: &str = "mailto:push-test@ppodok.invalid";

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl is installed");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}");
    out.stdout
}

/// The test service account's RSA key pair: (private PKCS#8 PEM, public PEM).
pub fn service_account_key() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let public = openssl(&["pkey", "-pubout"], Some(&private));
        (
            String::from_utf8(private).unwrap(),
            String::from_utf8(public).unwrap(),
        )
    })
}

/// A VAPID key as the README makes it: a P-256 key in PKCS#8 PEM.
pub fn vapid_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let sec1 = openssl(
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            None,
        );
        String::from_utf8(openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&sec1))).unwrap()
    })
}

/// A scripted answer of the fake FCM send endpoint.
#[derive(Clone, Debug)]
pub enum FcmReply {
    Ok,
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    ServerError,
    /// 404 with `errorCode: UNREGISTERED` (how FCM v1 reports a dead token).
    Unregistered,
}

#[derive(Default)]
pub struct FcmState {
    pub token_requests: u32,
    pub issued: Vec<String>,
    /// Every send request: (registration token, message), whatever was answered.
    pub attempts: Vec<(String, Value)>,
    /// Messages answered 200.
    pub accepted: Vec<(String, Value)>,
    /// Per registration token, answers to give before the default (200).
    pub script: HashMap<String, VecDeque<FcmReply>>,
    /// Sends refused because the bearer token was wrong.
    pub bad_bearer: u32,
    /// A process to SIGKILL when the first message is accepted (before answering).
    pub kill_on_accept: Option<u32>,
    /// How long each send takes to answer.
    pub delay: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct FakeFcm {
    pub base: String,
    pub state: Arc<Mutex<FcmState>>,
}

#[derive(serde::Deserialize)]
struct Grant {
    iss: String,
    scope: String,
    aud: String,
    iat: i64,
    exp: i64,
}

impl FakeFcm {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FcmState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let data = web::Data::from(state.clone());
        let token_url = web::Data::new(format!("{base}/token"));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(token_url.clone())
                .route("/token", web::post().to(fcm_token))
                .route(
                    "/v1/projects/{project}/messages:send",
                    web::post().to(fcm_send),
                )
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { base, state }
    }

    pub fn script(&self, token: &str, replies: &[FcmReply]) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(token.to_owned(), replies.iter().cloned().collect());
    }

    pub fn accepted(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn attempts_for(&self, token: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .attempts
            .iter()
            .filter(|(t, _)| t == token)
            .count()
    }

    pub fn accepted_for(&self, token: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .filter(|(t, _)| t == token)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

async fn fcm_token(
    state: web::Data<Mutex<FcmState>>,
    token_url: web::Data<String>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let refuse = |why: &str| {
        HttpResponse::BadRequest()
            .json(json!({ "error": "invalid_grant", "error_description": why }))
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse("grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("assertion");
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(service_account_key().1.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[token_url.as_str()]);
    validation.set_issuer(&[FCM_CLIENT_EMAIL]);
    let Ok(grant) = jsonwebtoken::decode::<Grant>(assertion, &key, &validation) else {
        return refuse("Invalid JWT Signature.");
    };
    let claims = grant.claims;
    if claims.scope != "https://www.googleapis.com/auth/firebase.messaging"
        || claims.exp - claims.iat > 3600
        || claims.iss != FCM_CLIENT_EMAIL
        || claims.aud != *token_url.as_str()
    {
        return refuse("claims");
    }
    let mut s = state.lock().unwrap();
    s.token_requests += 1;
    let token = format!("ya29.test-{}", uuid::Uuid::new_v4().simple());
    s.issued.push(token.clone());
    HttpResponse::Ok()
        .json(json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" }))
}

async fn fcm_send(
    state: web::Data<Mutex<FcmState>>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    let bearer = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let delay = state.lock().unwrap().delay;
    if let Some(d) = delay {
        actix_web::rt::time::sleep(d).await;
    }
    let (reply, kill) = {
        let mut s = state.lock().unwrap();
        if path.as_str() != FCM_PROJECT || !s.issued.contains(&bearer) {
            s.bad_bearer += 1;
            return HttpResponse::Unauthorized().json(json!({ "error": {
                "code": 401, "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials." } }));
        }
        let token = body["message"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        s.attempts.push((token.clone(), body.0.clone()));
        let reply = s
            .script
            .get_mut(&token)
            .and_then(VecDeque::pop_front)
            .unwrap_or(FcmReply::Ok);
        let kill = match reply {
            FcmReply::Ok => {
                s.accepted.push((token, body.0.clone()));
                s.kill_on_accept.take()
            }
            _ => None,
        };
        (reply, kill)
    };
    if let Some(pid) = kill {
        // The provider has the message; the sender dies before hearing so.
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    match reply {
        FcmReply::Ok => HttpResponse::Ok().json(json!({
            "name": format!("projects/{FCM_PROJECT}/messages/{}", uuid::Uuid::new_v4().simple())
        })),
        FcmReply::RateLimited(secs) => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", secs.to_string()))
            .json(
                json!({ "error": { "code": 429, "status": "RESOURCE_EXHAUSTED",
                "message": "Quota exceeded.",
                "details": [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                              "errorCode": "QUOTA_EXCEEDED" }] } }),
            ),
        FcmReply::ServerError => HttpResponse::InternalServerError().json(
            json!({ "error": { "code": 500, "status": "INTERNAL", "message": "Internal error." } }),
        ),
        FcmReply::Unregistered => HttpResponse::NotFound().json(json!({ "error": {
            "code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
            "details": [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                          "errorCode": "UNREGISTERED" }] } })),
    }
}

// ---------------------------------------------------------------------------------------------

/// What the Web Push service received on one subscription.
#[derive(Clone, Debug)]
pub struct PushDelivery {
    pub subscription: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub struct PushServiceState {
    pub deliveries: Vec<PushDelivery>,
    /// Per subscription id, statuses to answer before the default (201).
    pub script: HashMap<String, VecDeque<u16>>,
}

#[derive(Clone)]
pub struct FakePushService {
    pub base: String,
    pub state: Arc<Mutex<PushServiceState>>,
}

impl FakePushService {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(PushServiceState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/push/{id}", web::post().to(push_receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { base, state }
    }

    pub fn deliveries_for(&self, id: &str) -> Vec<PushDelivery> {
        self.state
            .lock()
            .unwrap()
            .deliveries
            .iter()
            .filter(|d| d.subscription == id)
            .cloned()
            .collect()
    }

    pub fn script(&self, id: &str, statuses: &[u16]) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(id.to_owned(), statuses.iter().copied().collect());
    }
}

async fn push_receive(
    state: web::Data<Mutex<PushServiceState>>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut s = state.lock().unwrap();
    s.deliveries.push(PushDelivery {
        subscription: path.clone(),
        headers,
        body: body.to_vec(),
    });
    let status = s
        .script
        .get_mut(path.as_str())
        .and_then(VecDeque::pop_front)
        .unwrap_or(201);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

/// A browser's push subscription: a real P-256 key pair and auth secret (Mozilla's `ece`).
pub struct BrowserSubscription {
    pub id: String,
    pub endpoint: String,
    keys: Box<dyn ece::LocalKeyPair>,
    pub auth: [u8; 16],
}

impl BrowserSubscription {
    pub fn new(service: &FakePushService) -> Self {
        let (keys, auth) = ece::generate_keypair_and_auth_secret().unwrap();
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            endpoint: format!("{}/push/{id}", service.base),
            id,
            keys,
            auth,
        }
    }

    /// `JSON.stringify(pushSubscription)`.
    pub fn json(&self) -> Value {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": b64.encode(self.keys.pub_as_raw().unwrap()),
                "auth": b64.encode(self.auth),
            }
        })
    }

    /// Decrypts an `aes128gcm` body with this subscription's private key and auth secret.
    pub fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        let components = self.keys.raw_components().unwrap();
        ece::decrypt(&components, &self.auth, body).expect("aes128gcm payload decrypts")
    }
}

#[derive(serde::Deserialize)]
pub struct VapidClaims {
    pub aud: String,
    pub exp: i64,
    pub sub: String,
}

/// Verifies `Authorization: vapid t=<jwt>, k=<key>` (RFC 8292): the key is `expected_key`, the JWT is
/// ES256-signed by it. Returns the claims.
pub fn verify_vapid(authorization: &str, expected_key: &str) -> VapidClaims {
    use base64::Engine;
    let rest = authorization.strip_prefix("vapid ").expect("vapid scheme");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').expect("name=value");
        match name {
            "t" => t = Some(value.to_owned()),
            "k" => k = Some(value.to_owned()),
            _ => {}
        }
    }
    let (t, k) = (t.expect("t="), k.expect("k="));
    assert_eq!(k, expected_key, "k= is the served VAPID public key");
    let point = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&k)
        .unwrap();
    assert_eq!((point.len(), point[0]), (65, 4));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        &b64.encode(&point[1..33]),
        &b64.encode(&point[33..65]),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    jsonwebtoken::decode::<VapidClaims>(&t, &key, &validation)
        .expect("VAPID JWT verifies against its public key")
        .claims
}
