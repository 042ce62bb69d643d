//! HTTP on the signalling port: health, metrics, token validation, the `/rtc/v1` refusal that
//! makes livekit-client 2.23 fall back to `/rtc`, and the `/rtc` WebSocket upgrade.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ppodok_tokens::livekit::{AccessClaims, AccessError, LivekitKeys};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::signal::{self, SignalContext};

pub struct HttpState {
    pub keys: LivekitKeys,
    pub signal: Arc<SignalContext>,
    /// This node's segment in node-addressed signalling, `/sfu/<node_id>/rtc…`.
    pub node_id: String,
    /// The node registry and placement checks (several nodes); `None` = this node is alone.
    pub registry: Option<Arc<crate::registry::Registry>>,
}

type Body = Full<Bytes>;

fn with_cors(mut res: Response<Body>) -> Response<Body> {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3600"),
    );
    res
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_owned())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    with_cors(res)
}

/// The token from `access_token` or `Authorization: Bearer`.
fn token_of(req: &Request<Incoming>) -> Option<String> {
    if let Some(q) = req.uri().query() {
        if let Some((_, v)) =
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "access_token")
        {
            return Some(v.into_owned());
        }
    }
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned())
}

async fn admit(
    state: &HttpState,
    req: &Request<Incoming>,
) -> Result<AccessClaims, Box<Response<Body>>> {
    let refuse = |msg: &str| {
        state.signal.metrics.joins_refused.inc();
        text(StatusCode::UNAUTHORIZED, msg)
    };
    let Some(token) = token_of(req) else {
        return Err(Box::new(refuse("no access token")));
    };
    let claims = state.keys.verify_access_token(&token).map_err(|e| {
        Box::new(match e {
            AccessError::Invalid => refuse("invalid token: signature, issuer or expiry"),
            AccessError::NoRoomJoin => refuse("permissions denied: no room join grant"),
            AccessError::NoRoom => refuse("permissions denied: no room in the token"),
            AccessError::NoIdentity => refuse("permissions denied: no identity in the token"),
        })
    })?;
    // A room that cannot take this participant refuses here, before any JoinResponse;
    // livekit-client reads the reason from /rtc/validate (403 = NotAllowed with this text).
    let room = claims.video.as_ref().map(|g| g.room.as_str()).unwrap_or("");
    if let Err(e) = state.signal.hub.admits(room, &claims.sub) {
        state.signal.metrics.joins_refused.inc();
        return Err(Box::new(text(StatusCode::FORBIDDEN, &e.to_string())));
    }
    // Likewise a server with no media port left (the session checks again, as the ports may
    // go meanwhile, and then refuses with a leave before its JoinResponse).
    if !state.signal.media.has_free_port() {
        state.signal.metrics.joins_refused.inc();
        tracing::warn!(room, "join refused: no UDP port free for media");
        return Err(Box::new(text(
            StatusCode::FORBIDDEN,
            "server busy: no media port free, try again later",
        )));
    }
    // Several nodes: only the node the room is placed on takes it. The reason tells the client
    // to fetch a new token, which names the right node.
    if let Some(registry) = &state.registry {
        if let Err(refusal) = registry.check_join(room).await {
            state.signal.metrics.joins_refused.inc();
            return Err(Box::new(text(StatusCode::FORBIDDEN, &refusal.to_string())));
        }
    }
    Ok(claims)
}

/// `POST /admin/drain`: this node takes no new rooms and finishes the ones it has. Authorised
/// like the server API, by an API-key-signed token with the `roomCreate` grant (node-wide power).
fn drain(state: &HttpState, req: &Request<Incoming>) -> Option<Response<Body>> {
    let registry = state.registry.clone()?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let allowed = state
        .keys
        .verify_api_token(token)
        .ok()
        .and_then(|claims| claims.video)
        .is_some_and(|grant| grant.room_create);
    if !allowed {
        return Some(text(
            StatusCode::UNAUTHORIZED,
            "an API token with the roomCreate grant is required",
        ));
    }
    tokio::spawn(async move { registry.start_drain().await });
    Some(text(StatusCode::ACCEPTED, "draining"))
}

/// `POST /twirp/livekit.RoomService/<Method>`: the server API.
async fn twirp(state: Arc<HttpState>, method: &str, req: Request<Incoming>) -> Response<Body> {
    let header = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(header::CONTENT_TYPE);
    let authorization = header(header::AUTHORIZATION);
    let body = match Limited::new(req.into_body(), crate::twirp::MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let mut res = Response::new(Full::new(Bytes::from_static(
                br#"{"code":"malformed","msg":"the body is unreadable or too large"}"#,
            )));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return res;
        }
    };
    let reply = crate::twirp::serve(
        &state.signal.hub,
        &state.keys,
        &state.signal.metrics,
        crate::twirp::Request {
            method,
            content_type: content_type.as_deref(),
            authorization: authorization.as_deref(),
            body: &body,
        },
    );
    let mut res = Response::new(Full::new(Bytes::from(reply.body)));
    *res.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    res
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, want: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(want))
                })
                .unwrap_or(false)
        })
    };
    has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
        && req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

/// True when the client offers a WebSocket subprotocol. LiveKit signalling has none, and a
/// browser aborts a handshake whose answer names none of its offers, so such a client gets a
/// prompt 400 instead of a 101 it would reject.
fn offers_subprotocol(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .any(|v| {
            v.to_str()
                .map_or(true, |s| s.split(',').any(|p| !p.trim().is_empty()))
        })
}

async fn upgrade(state: Arc<HttpState>, mut req: Request<Incoming>) -> Response<Body> {
    if offers_subprotocol(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket subprotocol: LiveKit signalling uses none",
        );
    }
    let claims = match admit(&state, &req).await {
        Ok(claims) => claims,
        Err(res) => return *res,
    };
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    // A resuming client (`reconnect=1&sid=…`) gets its session back if it is still there.
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let resume = matches!(param("reconnect"), Some("1") | Some("true")).then(|| {
        let room = claims.video.as_ref().map(|g| g.room.as_str()).unwrap_or("");
        state
            .signal
            .hub
            .resume_target(room, &claims.sub, param("sid").unwrap_or(""))
    });
    // livekit-client sends `auto_subscribe=0` for `autoSubscribe: false`.
    let auto_subscribe = !matches!(param("auto_subscribe"), Some("0") | Some("false"));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ctx = state.signal.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut config = WebSocketConfig::default();
                config.max_message_size = Some(1 << 20);
                config.max_frame_size = Some(1 << 20);
                // Signal messages are small; tungstenite's 128 KiB default read buffer is
                // zeroed on every read and held per participant.
                config.read_buffer_size = 4096;
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    WsRole::Server,
                    Some(config),
                )
                .await;
                ctx.metrics.signal_connections.inc();
                match resume {
                    None => signal::run(ws, ctx, claims, auto_subscribe).await,
                    Some(Some(session)) => {
                        if let Err(returned) = session.send(Box::new(ws)).await {
                            // The session ended meanwhile.
                            if let Ok(ws) = returned
                                .0
                                .downcast::<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>()
                            {
                                signal::refuse_resume(*ws, &ctx.metrics).await;
                            }
                        }
                    }
                    Some(None) => signal::refuse_resume(ws, &ctx.metrics).await,
                }
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}

pub async fn route(
    state: Arc<HttpState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut path = req.uri().path().trim_end_matches('/').to_owned();
    // Node-addressed signalling through the router: `/sfu/<this node>/rtc…` is `/rtc…` here
    // (the router passes paths on unchanged: the ALB cannot rewrite them). Nothing else of the
    // node is reachable that way, and another node's id is not found.
    if let Some(rest) = path
        .strip_prefix("/sfu/")
        .and_then(|p| p.strip_prefix(state.node_id.as_str()))
    {
        if rest == "/rtc" || rest.starts_with("/rtc/") {
            path = rest.to_owned();
        }
    }
    let method = req.method().clone();
    if method == Method::OPTIONS {
        let mut res = text(StatusCode::NO_CONTENT, "");
        *res.body_mut() = Full::new(Bytes::new());
        return Ok(res);
    }
    if let Some(m) = path.strip_prefix(crate::twirp::PREFIX) {
        if method == Method::POST {
            let m = m.to_owned();
            return Ok(twirp(state, &m, req).await);
        }
    }
    let res = match path.as_str() {
        "" if method == Method::GET || method == Method::HEAD => text(StatusCode::OK, "OK"),
        "/health" | "/video/health" => text(StatusCode::OK, "OK"),
        "/metrics" => {
            let mut res = text(
                StatusCode::OK,
                &state
                    .signal
                    .metrics
                    .render(state.signal.media.media_thread_tasks()),
            );
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            res
        }
        "/admin/drain" if method == Method::POST => {
            drain(&state, &req).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found"))
        }
        "/rtc/validate" => match admit(&state, &req).await {
            Ok(_) => text(StatusCode::OK, "success"),
            Err(res) => *res,
        },
        // Single-PeerConnection mode is not implemented: a plain 404 (with CORS, so the
        // browser's validate fetch can read it) makes livekit-client retry on /rtc.
        "/rtc/v1" | "/rtc/v1/validate" => text(StatusCode::NOT_FOUND, "not found"),
        "/rtc" if is_websocket_upgrade(&req) => upgrade(state, req).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(res)
}
