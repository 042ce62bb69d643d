//! The STOMP 1.2 endpoint at `/bbodok-websocket` (plain WebSocket, as the old client speaks it).
//!
//! CONNECT carries the access token in the `Authorization` native header. Topics: `/topic/{groupId}`
//! (calendar: room upserts and tombstones, the contract's shape), `/topic/{groupId}/presence` (who
//! is in which room), `/user/queue/errors` (this session's failures) and `/user/queue/notifications`
//! (the member's room reminders, for a toast while the page is open). Client messages:
//! `/app/add` and `/app/join`, on the same booking operations as the HTTP endpoints. The handshake
//! answers the highest offered `v1x.stomp` subprotocol it speaks (browsers abort otherwise).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_ws::AggregatedMessage;
use futures::StreamExt;
use ppodok_stomp::subprotocol::{self, Negotiation};
use ppodok_stomp::{parse_message, Command, Frame, Item, Limits};
use serde::Deserialize;
use tokio::time::{sleep_until, Instant};

use crate::error::ApiError;
use crate::limits::Limit;
use crate::realtime::hub::{Outbound, Registration};
use crate::rooms::{self, Cancelled};
use crate::state::AppState;

pub const ENDPOINT: &str = "/bbodok-websocket";
const USER_ERRORS: &str = "/user/queue/errors";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Heart-beat intervals this server offers (send) and asks for (receive), in ms.
const SERVER_HEARTBEAT_MS: u64 = 10_000;
const MAX_SUBSCRIPTIONS: usize = 64;
const RECENT_RECEIPTS: usize = 64;

fn limits() -> Limits {
    Limits::default()
}

pub async fn endpoint(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok());
    let protocol = match subprotocol::negotiate(offered) {
        Negotiation::NoneOffered => None,
        Negotiation::Chosen(protocol) => Some(protocol),
        Negotiation::Refused => {
            return Err(ApiError::BadRequest(
                "지원하지 않는 WebSocket 하위 프로토콜이에요. (v12.stomp, v11.stomp)".into(),
            )
            .into())
        }
    };
    let (mut response, ws, stream) = actix_ws::handle(&req, body)?;
    if let Some(protocol) = protocol {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(protocol),
        );
    }
    let max = limits().max_frame_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    actix_web::rt::spawn(async move {
        let conn = Connection {
            state,
            ws,
            stream,
            subscriptions: HashMap::new(),
            errors_subscription: None,
            seq: 0,
            recent_receipts: VecDeque::new(),
        };
        conn.run().await;
    });
    Ok(response)
}

/// Why a session ends with an ERROR frame.
struct Fatal {
    message: String,
    receipt: Option<String>,
}

impl Fatal {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            receipt: None,
        }
    }
}

struct Authenticated {
    member_id: i64,
    sid: String,
    expires_at: i64,
}

struct Connection {
    state: web::Data<AppState>,
    ws: actix_ws::Session,
    stream: actix_ws::AggregatedMessageStream,
    /// subscription id → destination
    subscriptions: HashMap<String, String>,
    errors_subscription: Option<String>,
    seq: u64,
    recent_receipts: VecDeque<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPayload {
    group_id: i64,
    start_time: String,
    #[serde(default)]
    end_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinPayload {
    room_id: i64,
    group_id: i64,
}

fn heartbeat(header: Option<&str>) -> Result<(u64, u64), Fatal> {
    let Some(h) = header else { return Ok((0, 0)) };
    let (x, y) = h
        .split_once(',')
        .ok_or_else(|| Fatal::new("heart-beat 헤더가 올바르지 않아요."))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Fatal::new("heart-beat 헤더가 올바르지 않아요."))
    };
    Ok((parse(x)?, parse(y)?))
}

/// Topic destinations a member may subscribe to, with the group they belong to.
fn topic_group(destination: &str) -> Option<i64> {
    let rest = destination.strip_prefix("/topic/")?;
    let (group, suffix) = match rest.split_once('/') {
        Some((g, s)) => (g, Some(s)),
        None => (rest, None),
    };
    if !matches!(suffix, None | Some("presence") | Some("timers")) {
        return None;
    }
    group.parse().ok()
}

impl Connection {
    async fn send(&mut self, frame: Frame) -> bool {
        let text = String::from_utf8(frame.to_bytes()).unwrap_or_default();
        self.ws.text(text).await.is_ok()
    }

    async fn fail(mut self, fatal: Fatal) {
        let mut frame = Frame::new(Command::Error)
            .header("message", fatal.message.clone())
            .header("content-type", "application/json")
            .body(serde_json::json!({ "code": "fail", "message": fatal.message }).to_string());
        if let Some(r) = fatal.receipt {
            frame = frame.header("receipt-id", r);
        }
        let _ = self.send(frame).await;
        let _ = self.ws.close(None).await;
    }

    async fn run(mut self) {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let connect = loop {
            tokio::select! {
                _ = sleep_until(deadline) => return self.fail(Fatal::new("CONNECT를 기다리다 시간이 지났어요.")).await,
                msg = self.stream.next() => {
                    let Some(frames) = self.read(msg) else { return };
                    match frames {
                        Err(fatal) => return self.fail(fatal).await,
                        Ok(items) => {
                            let mut frames = items.into_iter().filter_map(|i| match i { Item::Frame(f) => Some(f), Item::Heartbeat => None });
                            if let Some(first) = frames.next() {
                                break first;
                            }
                        }
                    }
                }
            }
        };
        if !matches!(connect.command, Command::Connect | Command::Stomp) {
            return self.fail(Fatal::new("먼저 CONNECT 해야 해요.")).await;
        }
        let (who, send_every, expect_every) = match self.connect(&connect).await {
            Ok(v) => v,
            Err(fatal) => return self.fail(fatal).await,
        };
        let hub = self.state.realtime.hub.clone();
        let cap = self.state.settings.limits.stomp_sessions_per_member;
        let Some(mut reg) = hub.register_capped(who.member_id, &who.sid, cap) else {
            return self
                .fail(Fatal::new("동시에 열 수 있는 실시간 연결 수를 넘었어요."))
                .await;
        };
        let result = self.serve(&who, &mut reg, send_every, expect_every).await;
        hub.unregister(reg.id);
        match result {
            Ok(()) => {
                let _ = self.ws.close(None).await;
            }
            Err(fatal) => self.fail(fatal).await,
        }
    }

    /// The next WebSocket message as STOMP items; None when the socket is gone.
    fn read(
        &mut self,
        msg: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
    ) -> Option<Result<Vec<Item>, Fatal>> {
        match msg? {
            Ok(AggregatedMessage::Text(text)) => Some(self.parse(text.as_bytes())),
            Ok(AggregatedMessage::Binary(bytes)) => Some(self.parse(&bytes)),
            Ok(AggregatedMessage::Ping(_)) | Ok(AggregatedMessage::Pong(_)) => {
                Some(Ok(vec![Item::Heartbeat]))
            }
            Ok(AggregatedMessage::Close(_)) => None,
            Err(e) => Some(Err(Fatal::new(format!("WebSocket 프레임 오류: {e}")))),
        }
    }

    fn parse(&self, data: &[u8]) -> Result<Vec<Item>, Fatal> {
        let items = parse_message(data, &limits())
            .map_err(|e| Fatal::new(format!("잘못된 STOMP 프레임이에요: {e}")))?;
        self.state
            .realtime
            .hub
            .metrics
            .messages_in
            .inc_by(items.len() as u64);
        Ok(items)
    }

    async fn connect(
        &mut self,
        frame: &Frame,
    ) -> Result<(Authenticated, Option<Duration>, Option<Duration>), Fatal> {
        if let Some(versions) = frame.get("accept-version") {
            if !versions
                .split(',')
                .any(|v| matches!(v.trim(), "1.2" | "1.1"))
            {
                return Err(Fatal::new("지원하는 STOMP 버전은 1.2예요."));
            }
        }
        let token = frame
            .get("Authorization")
            .or_else(|| frame.get("authorization"))
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
            .ok_or_else(|| Fatal::new(crate::error::MSG_UNAUTHORIZED))?;
        let (member, claims) = crate::auth::authenticate(&self.state, &token)
            .await
            .map_err(|_| Fatal::new(crate::error::MSG_UNAUTHORIZED))?;
        let (cx, cy) = heartbeat(frame.get("heart-beat"))?;
        let send_every = (cy > 0).then(|| Duration::from_millis(cy.max(SERVER_HEARTBEAT_MS)));
        let expect_every = (cx > 0).then(|| Duration::from_millis(cx.max(SERVER_HEARTBEAT_MS)));
        let version = if frame
            .get("accept-version")
            .is_none_or(|v| v.contains("1.2"))
        {
            "1.2"
        } else {
            "1.1"
        };
        let connected = Frame::new(Command::Connected)
            .header("version", version)
            .header(
                "heart-beat",
                format!("{SERVER_HEARTBEAT_MS},{SERVER_HEARTBEAT_MS}"),
            )
            .header("server", "ppodok")
            .header("user-name", member.id.to_string());
        if !self.send(connected).await {
            return Err(Fatal::new("연결이 끊겼어요."));
        }
        Ok((
            Authenticated {
                member_id: member.id,
                sid: claims.sid,
                expires_at: claims.exp,
            },
            send_every,
            expect_every,
        ))
    }

    async fn serve(
        &mut self,
        who: &Authenticated,
        reg: &mut Registration,
        send_every: Option<Duration>,
        expect_every: Option<Duration>,
    ) -> Result<(), Fatal> {
        let far = Duration::from_secs(86_400 * 365);
        let now_unix = chrono::Utc::now().timestamp();
        let token_expiry =
            Instant::now() + Duration::from_secs((who.expires_at - now_unix).max(0) as u64);
        let mut next_beat = Instant::now() + send_every.unwrap_or(far);
        let mut last_seen = Instant::now();
        // Evidence of presence for attendance: recorded now and every `touch` while the client
        // answers (any frame, heart-beat or the pong to the ping sent with each touch).
        let touch = Duration::from_millis(self.state.settings.rooms.presence_touch_millis.max(10));
        self.touch(who.member_id).await;
        let mut next_touch = Instant::now() + touch;
        loop {
            let silence_limit = last_seen
                + expect_every
                    .map(|d| d * 2 + Duration::from_secs(1))
                    .unwrap_or(far);
            tokio::select! {
                msg = self.stream.next() => {
                    let Some(items) = self.read(msg) else { return Ok(()) };
                    last_seen = Instant::now();
                    for item in items? {
                        if let Item::Frame(frame) = item {
                            if !self.handle(who, reg.id, frame).await? {
                                return Ok(());
                            }
                        }
                    }
                }
                Some(out) = reg.rx.recv() => {
                    if !self.deliver(out).await {
                        return Ok(());
                    }
                }
                _ = reg.closed.changed() => {
                    let reason = reg.closed.borrow().clone().unwrap_or_else(|| "연결을 종료해요.".into());
                    return Err(Fatal::new(reason));
                }
                _ = sleep_until(token_expiry) => return Err(Fatal::new("토큰이 만료되었어요. 다시 연결해 주세요.")),
                _ = sleep_until(next_beat) => {
                    if self.ws.text("\n").await.is_err() {
                        return Ok(());
                    }
                    next_beat = Instant::now() + send_every.unwrap_or(far);
                }
                _ = sleep_until(silence_limit) => return Err(Fatal::new("heart-beat이 끊겼어요.")),
                _ = sleep_until(next_touch) => {
                    if last_seen.elapsed() <= touch * 2 + Duration::from_secs(1) {
                        self.touch(who.member_id).await;
                    }
                    if self.ws.ping(b"").await.is_err() {
                        return Ok(());
                    }
                    next_touch = Instant::now() + touch;
                }
            }
        }
    }

    /// Records that this member's session is alive now (one upsert; failures only logged, the
    /// next touch retries).
    async fn touch(&self, member_id: i64) {
        let now = self.state.clock.now_naive();
        if let Err(e) = crate::attendance::record_liveness(&self.state.db, member_id, now).await {
            tracing::warn!(error = %e, "presence evidence not recorded");
        }
    }

    async fn deliver(&mut self, out: Outbound) -> bool {
        self.seq += 1;
        let frame = Frame::new(Command::Message)
            .header("destination", out.destination.as_ref())
            .header("subscription", out.subscription.as_ref())
            .header("message-id", format!("{}", self.seq))
            .header("content-type", "application/json")
            .body(out.body.as_bytes().to_vec());
        let ok = self.send(frame).await;
        let metrics = &self.state.realtime.hub.metrics;
        metrics.messages_out.inc();
        let latency_us = (crate::events::now_us() - out.published_at_us).max(0);
        metrics.fanout_latency.observe(latency_us as f64 / 1e6);
        ok
    }

    async fn receipt(&mut self, frame: &Frame) -> bool {
        match frame.get("receipt") {
            Some(r) => {
                let r = r.to_owned();
                self.send(Frame::new(Command::Receipt).header("receipt-id", r))
                    .await
            }
            None => true,
        }
    }

    /// Handles one frame; Ok(false) ends the session cleanly (DISCONNECT).
    async fn handle(
        &mut self,
        who: &Authenticated,
        conn: u64,
        frame: Frame,
    ) -> Result<bool, Fatal> {
        let receipt = frame.get("receipt").map(str::to_owned);
        let fatal = |m: &str| Fatal {
            message: m.to_owned(),
            receipt: receipt.clone(),
        };
        match frame.command {
            Command::Subscribe => {
                let (Some(id), Some(destination)) = (frame.get("id"), frame.get("destination"))
                else {
                    return Err(fatal("SUBSCRIBE에는 id와 destination이 필요해요."));
                };
                let (id, destination) = (id.to_owned(), destination.to_owned());
                if self.subscriptions.contains_key(&id) {
                    return Err(fatal("이미 사용 중인 구독 id예요."));
                }
                if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    return Err(fatal("구독이 너무 많아요."));
                }
                if destination == USER_ERRORS {
                    self.errors_subscription = Some(id.clone());
                } else if destination == crate::push::USER_NOTIFICATIONS {
                    // The caller's own queue: another member's cannot be named.
                    let topic = crate::push::member_topic(who.member_id);
                    self.state.realtime.hub.subscribe(conn, &topic, &id);
                } else {
                    let group_id = topic_group(&destination)
                        .ok_or_else(|| fatal("구독할 수 없는 destination이에요."))?;
                    let member =
                        crate::membership::membership_of(&self.state.db, group_id, who.member_id)
                            .await
                            .map_err(|_| fatal(crate::error::MSG_INTERNAL))?;
                    if member.is_none() {
                        return Err(fatal(crate::error::MSG_FORBIDDEN));
                    }
                    self.state.realtime.hub.subscribe(conn, &destination, &id);
                }
                self.subscriptions.insert(id, destination);
            }
            Command::Unsubscribe => {
                let id = frame
                    .get("id")
                    .ok_or_else(|| fatal("UNSUBSCRIBE에는 id가 필요해요."))?
                    .to_owned();
                if let Some(destination) = self.subscriptions.remove(&id) {
                    if destination == USER_ERRORS {
                        self.errors_subscription = None;
                    } else if destination == crate::push::USER_NOTIFICATIONS {
                        let topic = crate::push::member_topic(who.member_id);
                        self.state.realtime.hub.unsubscribe(conn, &topic, &id);
                    } else {
                        self.state.realtime.hub.unsubscribe(conn, &destination, &id);
                    }
                }
            }
            Command::Send => {
                let destination = frame
                    .get("destination")
                    .ok_or_else(|| fatal("SEND에는 destination이 필요해요."))?
                    .to_owned();
                let duplicate = receipt
                    .as_ref()
                    .is_some_and(|r| self.recent_receipts.contains(r));
                if !duplicate {
                    if let Some(r) = &receipt {
                        self.recent_receipts.push_back(r.clone());
                        if self.recent_receipts.len() > RECENT_RECEIPTS {
                            self.recent_receipts.pop_front();
                        }
                    }
                    let limited = self
                        .state
                        .limits
                        .check(Limit::StompSendPerMember, &who.member_id.to_string())
                        .await
                        .map_err(|e| ApiError::from(e).public_message());
                    let outcome = match (limited, destination.as_str()) {
                        (Err(message), _) => Err(message),
                        (Ok(()), "/app/add") => self.add(who.member_id, &frame.body).await,
                        (Ok(()), "/app/join") => self.join(who.member_id, &frame.body).await,
                        _ => return Err(fatal("보낼 수 없는 destination이에요.")),
                    };
                    if let Err(message) = outcome {
                        self.report(message, receipt.clone()).await?;
                    }
                }
            }
            Command::Disconnect => {
                self.receipt(&frame).await;
                return Ok(false);
            }
            Command::Connect | Command::Stomp => return Err(fatal("이미 연결되어 있어요.")),
            _ => return Err(fatal("지원하지 않는 명령이에요.")),
        }
        Ok(self.receipt(&frame).await)
    }

    /// A failed client message: to the session's error queue when it listens there, else ERROR.
    async fn report(&mut self, message: String, receipt: Option<String>) -> Result<(), Fatal> {
        let Some(subscription) = self.errors_subscription.clone() else {
            return Err(Fatal { message, receipt });
        };
        self.seq += 1;
        let frame = Frame::new(Command::Message)
            .header("destination", USER_ERRORS)
            .header("subscription", subscription)
            .header("message-id", format!("{}", self.seq))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "code": "fail", "message": message }).to_string());
        self.send(frame).await;
        Ok(())
    }

    async fn add(&self, member_id: i64, body: &[u8]) -> Result<(), String> {
        let p: AddPayload =
            serde_json::from_slice(body).map_err(|_| crate::error::MSG_BAD_REQUEST.to_owned())?;
        let start_local = ppodok_domain::time::parse_local_datetime(&p.start_time)
            .ok_or_else(|| rooms::MSG_BAD_TIME.to_owned())?;
        if let Some(end) = &p.end_time {
            let end_local = ppodok_domain::time::parse_local_datetime(end)
                .ok_or_else(|| rooms::MSG_BAD_TIME.to_owned())?;
            if self.state.grid.room_end(start_local) != end_local {
                return Err(rooms::MSG_BAD_TIME.to_owned());
            }
        }
        let bookings = self.state.bookings();
        let start = bookings
            .slot_start_utc(start_local)
            .map_err(|e| ApiError::from(e).public_message())?;
        self.state
            .limit_bookings(member_id)
            .await
            .map_err(|e| ApiError::from(e).public_message())?;
        bookings
            .book(member_id, p.group_id, start)
            .await
            .map_err(|e| ApiError::from(e).public_message())?;
        Ok(())
    }

    /// The contract's toggle: books me when I am not in the room, cancels otherwise. Both
    /// underlying operations are idempotent, so a race or a retry never double-books or errors.
    async fn join(&self, member_id: i64, body: &[u8]) -> Result<(), String> {
        let p: JoinPayload =
            serde_json::from_slice(body).map_err(|_| crate::error::MSG_BAD_REQUEST.to_owned())?;
        let room = crate::attendance::find_room(&self.state.db, p.room_id, member_id)
            .await
            .map_err(|e| ApiError::from(e).public_message())?;
        if room.group_id != p.group_id {
            return Err(ApiError::room_not_found(p.room_id).public_message());
        }
        let booked = rooms::reservation_of(&self.state.db, room.id, member_id)
            .await
            .map_err(|e| ApiError::from(e).public_message())?
            .is_some();
        self.state
            .limit_bookings(member_id)
            .await
            .map_err(|e| ApiError::from(e).public_message())?;
        let bookings = self.state.bookings();
        if booked {
            match bookings
                .cancel(member_id, room.id)
                .await
                .map_err(|e| ApiError::from(e).public_message())?
            {
                Cancelled::StillOpen(_) | Cancelled::Removed { .. } | Cancelled::NotBooked(_) => {
                    Ok(())
                }
            }
        } else {
            bookings
                .book(member_id, room.group_id, room.start_at)
                .await
                .map_err(|e| ApiError::from(e).public_message())?;
            Ok(())
        }
    }
}
