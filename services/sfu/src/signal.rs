//! One task per signalling WebSocket: LiveKit's `SignalRequest`/`SignalResponse` as binary
//! protobuf frames (JSON text frames are understood too), the join, ping/pong, and the glue
//! between the client's messages, the hub and the participant's two PeerConnections.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use livekit_protocol as lk;
use lk::signal_request::Message as In;
use lk::signal_response::Message as Out;
use ppodok_tokens::livekit::{AccessClaims, LivekitKeys};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::hub::{Hub, ResumeSocket, SessionCommand, SESSION_QUEUE};
use crate::media::{
    DownTrack, IncomingData, IncomingTrack, MediaEngine, MediaEvent, Peer, PeerState, Role,
};
use crate::metrics::Metrics;
use crate::negotiation::{Negotiation, Step};
use crate::router::{run_downtrack, DownSettings, Source, Subscription};
use crate::subscription::{Change, Permissions, Subscriptions};

/// The version reported to clients. livekit-client refuses an empty one and switches features
/// on by it; this is the Go server release whose behaviour we follow.
pub const SERVER_VERSION: &str = "1.13.5";
/// Candidates buffered per PeerConnection before its remote description is known.
const MAX_PENDING_CANDIDATES: usize = 64;

pub struct SignalContext {
    pub hub: Arc<Hub>,
    pub media: Arc<MediaEngine>,
    pub metrics: Metrics,
    pub ping_interval_secs: u32,
    pub ping_timeout_secs: u32,
    pub ice_servers: Vec<lk::IceServer>,
    pub shutdown: watch::Receiver<bool>,
    /// Mints the tokens sent as `refresh_token`.
    pub keys: LivekitKeys,
    /// How often a session gets a refreshed token.
    pub token_refresh_secs: u32,
    /// How long a session whose socket dropped waits for a resume; 0 = no resume.
    pub resume_grace_secs: u32,
}

/// Validity of a refreshed token: LiveKit's 10 minutes, and always beyond the next refresh.
fn refreshed_ttl_secs(refresh_secs: u32) -> i64 {
    (2 * i64::from(refresh_secs)).max(600)
}

/// A new token for the same identity, name, metadata and grant, valid from `now_secs`.
pub fn refresh_token(
    keys: &LivekitKeys,
    claims: &AccessClaims,
    refresh_secs: u32,
    now_secs: i64,
) -> String {
    keys.mint_access_token(
        &claims.sub,
        &claims.name,
        claims.video.clone().unwrap_or_default(),
        now_secs,
        refreshed_ttl_secs(refresh_secs),
    )
}

fn server_info() -> lk::ServerInfo {
    lk::ServerInfo {
        edition: lk::server_info::Edition::Standard as i32,
        version: SERVER_VERSION.to_owned(),
        protocol: 16,
        node_id: "ppodok-sfu".to_owned(),
        ..Default::default()
    }
}

fn client_configuration(ctx: &SignalContext) -> lk::ClientConfiguration {
    let resume = if ctx.resume_grace_secs > 0 {
        lk::ClientConfigSetting::Enabled
    } else {
        // A client that loses the socket rejoins from scratch.
        lk::ClientConfigSetting::Disabled
    };
    lk::ClientConfiguration {
        resume_connection: resume as i32,
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why a session ended.
enum End {
    Client,
    /// Told to leave by the server (replaced, removed, room deleted): already out of the room.
    Removed,
    Timeout,
    Shutdown,
    Transport,
    /// The socket dropped and no resume came within the grace period.
    Expired,
}

/// Messages held for a detached client before the session gives up on it.
const MAX_BACKLOG: usize = 1024;

/// The session's signalling link: the socket is apart from the session, which outlives it for
/// the resume grace period.
enum Link<S> {
    // Boxed: one per session, and it keeps the detached states small.
    Attached(Box<WebSocketStream<S>>),
    /// The socket dropped without a leave; the client may resume until `until`. What the
    /// session sends meanwhile waits in `backlog`, delivered after the `ReconnectResponse`.
    Detached {
        until: Instant,
        backlog: Vec<Out>,
    },
    /// Gone for good (no resume configured, or the backlog overflowed).
    Closed,
}

async fn next_frame<S>(
    link: &mut Link<S>,
) -> Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match link {
        Link::Attached(ws) => ws.next().await,
        _ => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The `leave` for a resume that cannot be honoured: livekit-client rejoins from scratch at once.
pub fn resume_refused() -> lk::SignalResponse {
    lk::SignalResponse {
        message: Some(Out::Leave(lk::LeaveRequest {
            can_reconnect: true,
            reason: lk::DisconnectReason::StateMismatch as i32,
            action: lk::leave_request::Action::Reconnect as i32,
            regions: None,
        })),
    }
}

/// Refuses a join before its `JoinResponse`: livekit-client fails `connect` with a
/// `LeaveRequest` error carrying `reason`, without retrying.
async fn refuse_join<S>(mut ws: WebSocketStream<S>, reason: lk::DisconnectReason)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let leave = lk::SignalResponse {
        message: Some(crate::room::leave_for(reason)),
    };
    let _ = ws
        .send(WsMessage::Binary(leave.encode_to_vec().into()))
        .await;
    let _ = ws.close(None).await;
}

/// Answers a resume for a session that is gone, and closes the socket.
pub async fn refuse_resume<S>(mut ws: WebSocketStream<S>, metrics: &Metrics)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    metrics.resumes.with_label_values(&["refused"]).inc();
    let frame = resume_refused().encode_to_vec();
    let _ = ws.send(WsMessage::Binary(frame.into())).await;
    let _ = ws.close(None).await;
}

struct Session<S> {
    link: Link<S>,
    ctx: Arc<SignalContext>,
    room: String,
    sid: String,
    identity: String,
    subscriber: Option<Peer>,
    publisher: Option<Peer>,
    pending: HashMap<Role, Vec<String>>,
    /// The subscriber offer/answer exchange and each downtrack's place in it.
    negotiation: Negotiation,
    downtracks: HashMap<String, Downtrack>,
    /// Tracks whose media arrived, by the client's cid → track sid.
    receiving: HashMap<String, String>,
    media_tx: mpsc::UnboundedSender<MediaEvent>,
    data_tx: mpsc::Sender<IncomingData>,
    can_publish_data: bool,
    claims: AccessClaims,
    /// Which available tracks this participant receives.
    subscriptions: Subscriptions,
    /// Tracks whose media flows, by sid: what a subscription can attach to.
    available: HashMap<String, Arc<Source>>,
    /// The publisher's id for the audio-level header extension, once its offer named one.
    audio_level_ext: Option<u8>,
    /// When to tell a newly connected client what it missed (see `tell_settled_client`).
    settled_due: Option<Instant>,
    /// This participant's published media, for keyframe requests of its own.
    own_sources: Vec<std::sync::Weak<Source>>,
    /// The ICE username fragment of the publisher's last offer (a new one is an ICE restart).
    publisher_ufrag: Option<String>,
}

/// After a publisher's ICE restart (a resume), keyframes are asked for at these delays: what
/// was lost while the path changed cannot be resent, and a subscriber's decoder would otherwise
/// stall until its own keyframe request (seconds).
const KEYFRAMES_AFTER_ICE_RESTART_MS: [u64; 3] = [300, 1000, 2000];

/// How long after its PeerConnection is up a client counts as settled: livekit-client drops
/// speaker and remote quality updates that arrive before its room is connected, which follows
/// the PeerConnection by a moment.
const SETTLED_AFTER_CONNECT: Duration = Duration::from_secs(1);

/// Data messages queued from a participant's channels before its channels are paused.
const DATA_QUEUE: usize = 256;

/// A track this participant receives.
struct Downtrack {
    source: Arc<Source>,
    down: DownTrack,
    settings: watch::Sender<DownSettings>,
}

fn decode_request(frame: WsMessage) -> Result<Option<In>, String> {
    let req = match frame {
        WsMessage::Binary(data) => lk::SignalRequest::decode(data.as_ref())
            .map_err(|e| format!("malformed protobuf: {e}"))?,
        WsMessage::Text(text) => serde_json::from_str::<lk::SignalRequest>(text.as_str())
            .map_err(|e| format!("malformed JSON: {e}"))?,
        _ => return Ok(None),
    };
    Ok(req.message)
}

/// Runs an admitted client's session to its end.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    ctx: Arc<SignalContext>,
    claims: AccessClaims,
    auto_subscribe: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let grant = claims.video.clone().unwrap_or_default();
    let permission = lk::ParticipantPermission {
        can_subscribe: grant.can_subscribe(),
        can_publish: grant.can_publish(),
        can_publish_data: grant.can_publish_data(),
        can_update_metadata: grant.can_update_own_metadata(),
        hidden: grant.hidden,
        ..Default::default()
    };
    let (hub_tx, mut hub_rx) = mpsc::channel(SESSION_QUEUE);
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let (data_tx, mut data_rx) = mpsc::channel(DATA_QUEUE);
    let can_publish_data = permission.can_publish_data;
    // The subscriber PeerConnection (and its UDP port) before the join: a participant the SFU
    // cannot carry media for is refused before anyone sees it, with the reason.
    let subscriber = match ctx
        .media
        .create_peer(
            &grant.room,
            Role::Subscriber,
            media_tx.clone(),
            data_tx.clone(),
        )
        .await
    {
        Ok(peer) => peer,
        Err(e) => {
            tracing::warn!(room = %grant.room, identity = %claims.sub, error = %e, "join refused: no media transport");
            ctx.metrics.joins_refused.inc();
            refuse_join(ws, lk::DisconnectReason::MediaFailure).await;
            return;
        }
    };
    let joined = match ctx.hub.join(
        &grant.room,
        &claims.sub,
        &claims.name,
        permission,
        now_ms(),
        hub_tx,
    ) {
        Ok(joined) => joined,
        Err(e) => {
            // Lost a race with another join after the HTTP check: refused before any
            // JoinResponse, with the reason.
            tracing::info!(room = %grant.room, identity = %claims.sub, error = %e, "join refused");
            subscriber.close().await;
            refuse_join(ws, lk::DisconnectReason::JoinFailure).await;
            return;
        }
    };
    let (resume_tx, mut resume_rx) = mpsc::channel::<ResumeSocket>(1);
    if ctx.resume_grace_secs > 0 {
        ctx.hub.accept_resumes(&joined.me.sid, resume_tx);
    }
    let _alive = crate::media::Alive::new(ctx.metrics.sessions.clone());
    let mut session = Session {
        link: Link::Attached(Box::new(ws)),
        room: grant.room.clone(),
        sid: joined.me.sid.clone(),
        identity: claims.sub.clone(),
        ctx: ctx.clone(),
        subscriber: None,
        publisher: None,
        pending: HashMap::new(),
        negotiation: Negotiation::new(),
        downtracks: HashMap::new(),
        receiving: HashMap::new(),
        media_tx,
        data_tx,
        can_publish_data,
        claims,
        subscriptions: Subscriptions::new(auto_subscribe),
        available: HashMap::new(),
        audio_level_ext: None,
        settled_due: None,
        own_sources: Vec::new(),
        publisher_ufrag: None,
    };
    tracing::info!(room = %session.room, identity = %session.identity, sid = %session.sid, "participant joined");
    let join = lk::JoinResponse {
        room: Some(joined.room),
        participant: Some(joined.me),
        other_participants: joined.others,
        server_version: SERVER_VERSION.to_owned(),
        server_info: Some(server_info()),
        ice_servers: ctx.ice_servers.clone(),
        subscriber_primary: true,
        ping_interval: ctx.ping_interval_secs as i32,
        ping_timeout: ctx.ping_timeout_secs as i32,
        client_configuration: Some(client_configuration(&ctx)),
        enabled_publish_codecs: vec![
            lk::Codec {
                mime: "video/VP8".into(),
                fmtp_line: String::new(),
            },
            lk::Codec {
                mime: "audio/opus".into(),
                fmtp_line: String::new(),
            },
        ],
        ..Default::default()
    };
    let end = match session.send(Out::Join(join)).await {
        Err(()) => End::Transport,
        Ok(()) => match session.start_subscriber(subscriber).await {
            Err(()) => End::Transport,
            Ok(()) => {
                session
                    .event_loop(&mut hub_rx, &mut media_rx, &mut data_rx, &mut resume_rx)
                    .await
            }
        },
    };
    let reason = match end {
        End::Client => lk::DisconnectReason::ClientInitiated,
        End::Removed => lk::DisconnectReason::UnknownReason,
        End::Shutdown => lk::DisconnectReason::ServerShutdown,
        End::Timeout | End::Transport | End::Expired => lk::DisconnectReason::SignalClose,
    };
    if matches!(end, End::Expired) {
        ctx.metrics.resumes.with_label_values(&["expired"]).inc();
    }
    if !matches!(end, End::Removed) {
        ctx.hub.leave(&session.room, &session.sid, reason);
    }
    for (_, d) in session.downtracks.drain() {
        d.source.detach(&session.sid);
    }
    for peer in [session.subscriber.take(), session.publisher.take()]
        .into_iter()
        .flatten()
    {
        peer.close().await;
    }
    if let Link::Attached(mut ws) = std::mem::replace(&mut session.link, Link::Closed) {
        let _ = (*ws).close(None).await;
    }
    tracing::info!(room = %session.room, identity = %session.identity, sid = %session.sid, ?reason, "participant left");
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Sends to the client, or holds the message while it is away. `Err` only when the session
    /// can no longer reach its client (it then ends).
    async fn send(&mut self, msg: Out) -> Result<(), ()> {
        match &mut self.link {
            Link::Attached(ws) => {
                let frame = lk::SignalResponse { message: Some(msg) }.encode_to_vec();
                if let Err(e) = ws.send(WsMessage::Binary(frame.into())).await {
                    tracing::debug!(sid = %self.sid, error = %e, "signal write failed");
                    return self.detach();
                }
                Ok(())
            }
            Link::Detached { backlog, .. } if backlog.len() < MAX_BACKLOG => {
                backlog.push(msg);
                Ok(())
            }
            Link::Detached { .. } | Link::Closed => {
                self.link = Link::Closed;
                Err(())
            }
        }
    }

    /// The socket is gone without a leave: wait for a resume if configured, else end.
    fn detach(&mut self) -> Result<(), ()> {
        match self.link {
            Link::Detached { .. } => return Ok(()),
            Link::Closed => return Err(()),
            Link::Attached(_) => {}
        }
        if self.ctx.resume_grace_secs == 0 {
            self.link = Link::Closed;
            return Err(());
        }
        tracing::info!(sid = %self.sid, grace_secs = self.ctx.resume_grace_secs, "signal socket lost: waiting for a resume");
        self.ctx
            .metrics
            .resumes
            .with_label_values(&["detached"])
            .inc();
        self.link = Link::Detached {
            until: Instant::now() + Duration::from_secs(u64::from(self.ctx.resume_grace_secs)),
            backlog: Vec::new(),
        };
        Ok(())
    }

    /// A resuming client's new socket: `ReconnectResponse` first, then whatever it missed.
    async fn resume(&mut self, socket: ResumeSocket) -> Result<(), ()> {
        let Ok(ws) = socket.downcast::<WebSocketStream<S>>() else {
            tracing::error!(sid = %self.sid, "a resumed socket of another type");
            return Ok(());
        };
        let backlog = match std::mem::replace(&mut self.link, Link::Attached(ws)) {
            Link::Detached { backlog, .. } => backlog,
            // Resumed before the old socket was noticed gone: the old one is dropped.
            Link::Attached(_) | Link::Closed => Vec::new(),
        };
        tracing::info!(sid = %self.sid, missed = backlog.len(), "signal resumed");
        self.ctx
            .metrics
            .resumes
            .with_label_values(&["resumed"])
            .inc();
        self.send(Out::Reconnect(lk::ReconnectResponse {
            ice_servers: self.ctx.ice_servers.clone(),
            client_configuration: Some(client_configuration(&self.ctx)),
            server_info: Some(server_info()),
            ..Default::default()
        }))
        .await?;
        for msg in backlog {
            self.send(msg).await?;
        }
        Ok(())
    }

    /// The subscriber PC with LiveKit's data channels, and the server's first offer on it.
    async fn start_subscriber(&mut self, mut peer: Peer) -> Result<(), ()> {
        if let Err(e) = peer.create_livekit_data_channels().await {
            tracing::error!(error = %e, "cannot create the data channels");
            return Err(());
        }
        self.subscriber = Some(peer);
        let step = self.negotiation.changed();
        self.take(step).await
    }

    /// Carries out what the negotiation asked for.
    async fn take(&mut self, step: Step) -> Result<(), ()> {
        match step {
            Step::SendOffer(id) => self.send_offer(id).await,
            Step::Wait => Ok(()),
        }
    }

    async fn send_offer(&mut self, id: u32) -> Result<(), ()> {
        let Some(peer) = self.subscriber.as_ref() else {
            tracing::error!(sid = %self.sid, "an offer without a subscriber PeerConnection");
            return Err(());
        };
        let sdp = match peer.create_offer().await {
            Ok(sdp) => sdp,
            Err(e) => {
                tracing::error!(sid = %self.sid, error = %e, "cannot create a subscriber offer");
                return Err(());
            }
        };
        self.send(Out::Offer(lk::SessionDescription {
            r#type: "offer".into(),
            sdp,
            id,
            mid_to_track_id: HashMap::new(),
        }))
        .await
    }

    /// Starts receiving a published track on the subscriber PC.
    async fn subscribe(&mut self, source: Arc<Source>) -> Result<(), ()> {
        if source.participant_sid == self.sid || self.downtracks.contains_key(&source.track_sid) {
            return Ok(());
        }
        let Some(peer) = self.subscriber.as_ref() else {
            return Ok(());
        };
        let down = match peer
            .add_downtrack(source.kind, &source.stream_id(), &source.track_sid)
            .await
        {
            Ok(down) => down,
            Err(e) => {
                tracing::warn!(sid = %self.sid, track = %source.track_sid, error = %e, "cannot add a downtrack");
                return Ok(());
            }
        };
        let (settings, settings_rx) = watch::channel(DownSettings::default());
        let sub = Arc::new(Subscription::new(
            &self.sid,
            down.ssrc,
            source.kind,
            Box::new(down.clone()),
        ));
        source.attach(sub.clone());
        tokio::spawn(run_downtrack(
            Arc::downgrade(&source),
            sub,
            down.clone(),
            settings_rx,
            self.ctx.metrics.clone(),
        ));
        tracing::info!(sid = %self.sid, track = %source.track_sid, from = %source.participant_sid, "subscribed");
        let source_sid = source.track_sid.clone();
        if source.kind == crate::media::Kind::Video {
            let top = Some(crate::forward::MAX_LAYER);
            self.ctx
                .hub
                .want_layer(&self.room, &source_sid, &self.sid, top);
        }
        self.downtracks.insert(
            source.track_sid.clone(),
            Downtrack {
                source,
                down,
                settings,
            },
        );
        let step = self.negotiation.track_added(&source_sid);
        self.take(step).await
    }

    /// A track's media flows: received if wanted and allowed.
    async fn on_available(&mut self, source: Arc<Source>, allowed: bool) -> Result<(), ()> {
        if source.participant_sid == self.sid {
            return Ok(());
        }
        let track_sid = source.track_sid.clone();
        let publisher_sid = source.participant_sid.clone();
        self.available.insert(track_sid.clone(), source);
        if !allowed {
            self.send(Out::SubscriptionPermissionUpdate(
                lk::SubscriptionPermissionUpdate {
                    participant_sid: publisher_sid,
                    track_sid: track_sid.clone(),
                    allowed,
                },
            ))
            .await?;
        }
        let change = self.subscriptions.available(&track_sid, allowed);
        self.apply(change).await
    }

    async fn on_permission(
        &mut self,
        publisher_sid: String,
        track_sid: String,
        allowed: bool,
    ) -> Result<(), ()> {
        let (flipped, change) = self.subscriptions.allowed(&track_sid, allowed);
        if flipped {
            tracing::info!(sid = %self.sid, track = %track_sid, allowed, "subscription permission changed");
            self.ctx
                .metrics
                .permission_updates
                .with_label_values(&[if allowed { "true" } else { "false" }])
                .inc();
            self.send(Out::SubscriptionPermissionUpdate(
                lk::SubscriptionPermissionUpdate {
                    participant_sid: publisher_sid,
                    track_sid,
                    allowed,
                },
            ))
            .await?;
        }
        self.apply(change).await
    }

    /// The participant's own choice (`UpdateSubscription`, or the server API's).
    async fn want(&mut self, track_sids: &[String], subscribe: bool) -> Result<(), ()> {
        self.ctx
            .metrics
            .subscription_changes
            .with_label_values(&[if subscribe {
                "subscribe"
            } else {
                "unsubscribe"
            }])
            .inc();
        for track in track_sids {
            let change = self.subscriptions.want(track, subscribe);
            self.apply(change).await?;
        }
        Ok(())
    }

    async fn apply(&mut self, change: Option<Change>) -> Result<(), ()> {
        match change {
            Some(Change::Subscribe(track)) => match self.available.get(&track) {
                Some(source) => self.subscribe(source.clone()).await,
                None => Ok(()),
            },
            Some(Change::Unsubscribe(track)) => self.unsubscribe(&track).await,
            None => Ok(()),
        }
    }

    async fn unsubscribe(&mut self, track_sid: &str) -> Result<(), ()> {
        let Some(d) = self.downtracks.remove(track_sid) else {
            return Ok(());
        };
        d.source.detach(&self.sid);
        self.ctx
            .hub
            .want_layer(&self.room, track_sid, &self.sid, None);
        if let Some(peer) = self.subscriber.as_ref() {
            if let Err(e) = peer.remove_downtrack(&d.down).await {
                tracing::debug!(sid = %self.sid, track = %track_sid, error = %e, "removing a downtrack");
            }
        }
        tracing::info!(sid = %self.sid, track = %track_sid, "unsubscribed");
        let step = self.negotiation.track_removed(track_sid);
        self.take(step).await
    }

    async fn event_loop(
        &mut self,
        hub_rx: &mut mpsc::Receiver<SessionCommand>,
        media_rx: &mut mpsc::UnboundedReceiver<MediaEvent>,
        data_rx: &mut mpsc::Receiver<IncomingData>,
        resume_rx: &mut mpsc::Receiver<ResumeSocket>,
    ) -> End {
        let timeout = Duration::from_secs(u64::from(self.ctx.ping_timeout_secs));
        let mut deadline = Instant::now() + timeout;
        let mut shutdown = self.ctx.shutdown.clone();
        if *shutdown.borrow() {
            return self.shut_down().await;
        }
        let period = Duration::from_secs(u64::from(self.ctx.token_refresh_secs.max(1)));
        let mut refresh = tokio::time::interval_at(Instant::now() + period, period);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let quality_every = crate::quality::INTERVAL;
        let mut quality = tokio::time::interval_at(Instant::now() + quality_every, quality_every);
        quality.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Attached: the ping deadline; detached: the end of the grace period.
            let wake = match &self.link {
                Link::Detached { until, .. } => *until,
                _ => deadline,
            };
            tokio::select! {
                _ = refresh.tick() => {
                    let token = refresh_token(
                        &self.ctx.keys,
                        &self.claims,
                        self.ctx.token_refresh_secs,
                        now_ms() / 1000,
                    );
                    if self.send(Out::RefreshToken(token)).await.is_err() {
                        return End::Transport;
                    }
                    self.ctx.metrics.tokens_refreshed.inc();
                }
                _ = quality.tick() => self.report_quality(),
                _ = sleep_until_some(self.settled_due) => {
                    self.settled_due = None;
                    if self.tell_settled_client().await.is_err() {
                        return End::Transport;
                    }
                }
                Some(socket) = resume_rx.recv() => {
                    if self.resume(socket).await.is_err() {
                        return End::Transport;
                    }
                    deadline = Instant::now() + timeout;
                }
                frame = next_frame(&mut self.link) => {
                    let frame = match frame {
                        // Closed without a leave: possibly a network change; resumable.
                        Some(Ok(WsMessage::Close(_))) | None => {
                            if self.detach().is_err() {
                                return End::Client;
                            }
                            continue;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "signal read failed");
                            if self.detach().is_err() {
                                return End::Transport;
                            }
                            continue;
                        }
                        Some(Ok(frame)) => frame,
                    };
                    // Any message from the client proves it alive.
                    deadline = Instant::now() + timeout;
                    match decode_request(frame) {
                        Ok(Some(In::Leave(_))) => return End::Client,
                        Ok(Some(msg)) => {
                            if self.handle(msg).await.is_err() {
                                return End::Transport;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            self.ctx.metrics.bad_input.with_label_values(&["signal_frame"]).inc();
                            tracing::warn!(sid = %self.sid, "ignoring a signal frame: {e}");
                        }
                    }
                }
                cmd = hub_rx.recv() => {
                    let result = match cmd {
                        // The hub dropped this session (its queue overflowed).
                        None => return End::Transport,
                        Some(SessionCommand::Signal(msg)) => {
                            let leave = matches!(*msg, Out::Leave(_));
                            if self.send(*msg).await.is_err() {
                                return End::Transport;
                            }
                            if leave {
                                return End::Removed;
                            }
                            Ok(())
                        }
                        Some(SessionCommand::Drop) => {
                            tracing::info!(sid = %self.sid, "dropping the connection");
                            if let Link::Attached(_) = self.link {
                                // Dropping the socket closes it; the client sees a lost link.
                                if self.detach().is_err() {
                                    return End::Transport;
                                }
                            }
                            Ok(())
                        }
                        Some(SessionCommand::Expire) => {
                            tracing::info!(sid = %self.sid, "dropping the connection for good");
                            return End::Expired;
                        }
                        Some(SessionCommand::Subscribe(source, allowed)) => {
                            self.on_available(source, allowed).await
                        }
                        Some(SessionCommand::Unsubscribe(track)) => {
                            self.available.remove(&track);
                            let change = self.subscriptions.withdrawn(&track);
                            self.apply(change).await
                        }
                        Some(SessionCommand::Permission { publisher_sid, track_sid, allowed }) => {
                            self.on_permission(publisher_sid, track_sid, allowed).await
                        }
                        Some(SessionCommand::Want { track_sids, subscribe }) => {
                            self.want(&track_sids, subscribe).await
                        }
                        Some(SessionCommand::Data { reliable, bytes }) => {
                            let sent = match self.subscriber.as_ref() {
                                Some(sub) => sub.send_data(reliable, &bytes).await,
                                None => false,
                            };
                            if !sent {
                                self.ctx.metrics.data_drops.inc();
                            }
                            Ok(())
                        }
                    };
                    if result.is_err() {
                        return End::Transport;
                    }
                }
                Some(data) = data_rx.recv() => self.on_data(data),
                Some(event) = media_rx.recv() => {
                    if self.on_media(event).await.is_err() {
                        return End::Transport;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if let Link::Detached { .. } = self.link {
                        tracing::info!(sid = %self.sid, "no resume within the grace period");
                        return End::Expired;
                    }
                    tracing::info!(sid = %self.sid, "no message within the ping timeout");
                    return End::Timeout;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return self.shut_down().await;
                    }
                }
            }
        }
    }

    /// What a client that has just connected missed: who is speaking, and everyone's connection
    /// quality (from now on it hears of quality changes as they happen).
    async fn tell_settled_client(&mut self) -> Result<(), ()> {
        let speakers = self.ctx.hub.current_speakers(&self.room);
        if !speakers.is_empty() {
            self.send(Out::SpeakersChanged(lk::SpeakersChanged { speakers }))
                .await?;
        }
        if let Some(qualities) = self.ctx.hub.settle_quality(&self.room, &self.sid) {
            self.send(Out::ConnectionQuality(qualities)).await?;
        }
        Ok(())
    }

    /// Judges this participant's connection over the last interval and tells the room.
    fn report_quality(&self) {
        let window = [self.subscriber.as_ref(), self.publisher.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| p.link_stats().take())
            .fold(crate::quality::LinkWindow::default(), |a, b| a.merge(b));
        let level = crate::quality::judge(&window);
        tracing::debug!(sid = %self.sid, ?window, ?level, "connection quality");
        self.ctx
            .metrics
            .quality_reports
            .with_label_values(&[&level.as_str_name().to_ascii_lowercase()])
            .inc();
        self.ctx.hub.report_quality(&self.room, &self.sid, level);
    }

    async fn shut_down(&mut self) -> End {
        let _ = self
            .send(Out::Leave(lk::LeaveRequest {
                can_reconnect: true,
                reason: lk::DisconnectReason::ServerShutdown as i32,
                action: lk::leave_request::Action::Reconnect as i32,
                regions: None,
            }))
            .await;
        End::Shutdown
    }

    fn peer(&self, role: Role) -> Option<&Peer> {
        match role {
            Role::Publisher => self.publisher.as_ref(),
            Role::Subscriber => self.subscriber.as_ref(),
        }
    }

    async fn flush_candidates(&mut self, role: Role) {
        let pending = self.pending.remove(&role).unwrap_or_default();
        if let Some(peer) = self.peer(role) {
            for c in pending {
                if let Err(e) = peer.add_remote_candidate(&c).await {
                    tracing::debug!(sid = %self.sid, ?role, error = %e, "ignoring a candidate");
                }
            }
        }
    }

    /// Handles one client message. `Err` only when the socket failed.
    async fn handle(&mut self, msg: In) -> Result<(), ()> {
        match msg {
            In::Ping(ts) => {
                let _ = ts;
                self.send(Out::Pong(now_ms())).await?;
            }
            In::PingReq(ping) => {
                self.send(Out::PongResp(lk::Pong {
                    last_ping_timestamp: ping.timestamp,
                    timestamp: now_ms(),
                }))
                .await?;
            }
            In::Offer(desc) => self.on_publisher_offer(desc).await?,
            In::Answer(desc) => {
                let Some(sub) = self.subscriber.as_ref() else {
                    tracing::warn!(sid = %self.sid, "answer without a subscriber offer");
                    return Ok(());
                };
                if let Err(stale) = self.negotiation.accepts(desc.id) {
                    tracing::warn!(sid = %self.sid, got = stale.got, want = ?stale.want, "answer to a stale offer ignored");
                    self.ctx
                        .metrics
                        .bad_input
                        .with_label_values(&["stale_answer"])
                        .inc();
                    return Ok(());
                }
                let applied = match sub.apply_answer(&desc.sdp).await {
                    Ok(()) => {
                        self.flush_candidates(Role::Subscriber).await;
                        true
                    }
                    Err(e) => {
                        self.ctx
                            .metrics
                            .bad_input
                            .with_label_values(&["answer"])
                            .inc();
                        tracing::warn!(sid = %self.sid, error = %e, "subscriber answer refused");
                        false
                    }
                };
                let done = self.negotiation.answered(applied);
                for track in &done.negotiated {
                    if let Some(d) = self.downtracks.get(track) {
                        d.settings.send_modify(|s| s.negotiated = true);
                    }
                }
                if let Some(step) = done.next {
                    self.take(step).await?;
                }
            }
            In::Trickle(t) => {
                let role = if t.target == lk::SignalTarget::Subscriber as i32 {
                    Role::Subscriber
                } else {
                    Role::Publisher
                };
                let ready = match self.peer(role) {
                    Some(peer) => peer.has_remote_description().await,
                    None => false,
                };
                if ready {
                    if let Some(peer) = self.peer(role) {
                        if let Err(e) = peer.add_remote_candidate(&t.candidate_init).await {
                            tracing::debug!(sid = %self.sid, ?role, error = %e, "ignoring a candidate");
                        }
                    }
                } else {
                    let queue = self.pending.entry(role).or_default();
                    if queue.len() < MAX_PENDING_CANDIDATES {
                        queue.push(t.candidate_init);
                    }
                }
            }
            In::AddTrack(req) => match self.ctx.hub.add_track(&self.room, &self.sid, &req) {
                Ok(track) => {
                    tracing::info!(sid = %self.sid, cid = %req.cid, track = %track.sid, "track published");
                    self.send(Out::TrackPublished(lk::TrackPublishedResponse {
                        cid: req.cid,
                        track: Some(track),
                    }))
                    .await?;
                }
                Err(e) => {
                    tracing::warn!(sid = %self.sid, cid = %req.cid, error = %e, "add_track refused");
                    self.ctx
                        .metrics
                        .bad_input
                        .with_label_values(&["add_track"])
                        .inc();
                    // livekit-client 2.23 keeps no pending entry for add_track, so this only
                    // informs; its publish fails after its own 10 s timeout.
                    let reason = match e {
                        crate::room::CoreError::NotAllowed => {
                            lk::request_response::Reason::NotAllowed
                        }
                        crate::room::CoreError::UnknownParticipant
                        | crate::room::CoreError::UnknownTrack => {
                            lk::request_response::Reason::NotFound
                        }
                        _ => lk::request_response::Reason::UnclassifiedError,
                    };
                    self.send(Out::RequestResponse(lk::RequestResponse {
                        request_id: 0,
                        reason: reason as i32,
                        message: e.to_string(),
                        request: Some(lk::request_response::Request::AddTrack(req)),
                    }))
                    .await?;
                }
            },
            In::UpdateMetadata(update) => {
                let request_id = update.request_id;
                let change = crate::room::ParticipantChange {
                    metadata: Some(update.metadata.clone()),
                    name: Some(update.name.clone()),
                    attributes: update.attributes.clone(),
                    permission: None,
                };
                let outcome = self.ctx.hub.update_self(&self.room, &self.sid, change);
                let (reason, message) = match &outcome {
                    Ok(_) => (lk::request_response::Reason::Ok, String::new()),
                    Err(e) => {
                        self.ctx
                            .metrics
                            .bad_input
                            .with_label_values(&["update_metadata"])
                            .inc();
                        let reason = match e {
                            crate::room::CoreError::MetadataNotAllowed => {
                                lk::request_response::Reason::NotAllowed
                            }
                            crate::room::CoreError::TooLong(_) => {
                                lk::request_response::Reason::LimitExceeded
                            }
                            _ => lk::request_response::Reason::NotFound,
                        };
                        (reason, e.to_string())
                    }
                };
                // Answered either way, so the client's request settles at once.
                self.send(Out::RequestResponse(lk::RequestResponse {
                    request_id,
                    reason: reason as i32,
                    message,
                    request: Some(lk::request_response::Request::UpdateMetadata(update)),
                }))
                .await?;
            }
            In::Subscription(update) => {
                let mut tracks = update.track_sids;
                tracks.extend(
                    update
                        .participant_tracks
                        .into_iter()
                        .flat_map(|p| p.track_sids),
                );
                tracks.sort();
                tracks.dedup();
                self.want(&tracks, update.subscribe).await?;
            }
            In::SubscriptionPermission(p) => {
                let perms = Permissions::from_proto(&p);
                self.ctx
                    .hub
                    .set_subscription_permission(&self.room, &self.sid, perms);
            }
            In::Mute(m) => {
                if let Err(e) = self
                    .ctx
                    .hub
                    .set_muted(&self.room, &self.sid, &m.sid, m.muted)
                {
                    tracing::debug!(sid = %self.sid, track = %m.sid, error = %e, "mute ignored");
                }
            }
            In::TrackSetting(settings) => {
                for track_sid in &settings.track_sids {
                    let Some(d) = self.downtracks.get(track_sid) else {
                        tracing::debug!(sid = %self.sid, track = %track_sid, "settings for a track not subscribed");
                        continue;
                    };
                    let max_layer = crate::forward::max_layer_for(
                        &d.source.layers,
                        settings.width,
                        settings.height,
                        settings.quality,
                    );
                    tracing::debug!(sid = %self.sid, track = %track_sid, max_layer, paused = settings.disabled, "track settings");
                    d.settings.send_modify(|s| {
                        s.max_layer = max_layer;
                        s.paused = settings.disabled;
                    });
                    if d.source.kind == crate::media::Kind::Video {
                        let want = (!settings.disabled).then_some(max_layer);
                        self.ctx
                            .hub
                            .want_layer(&self.room, track_sid, &self.sid, want);
                    }
                }
            }
            other => {
                tracing::debug!(sid = %self.sid, "signal message not handled: {:?}", std::mem::discriminant(&other));
            }
        }
        Ok(())
    }

    async fn on_publisher_offer(&mut self, desc: lk::SessionDescription) -> Result<(), ()> {
        if self.publisher.is_none() {
            match self
                .ctx
                .media
                .create_peer(
                    &self.room,
                    Role::Publisher,
                    self.media_tx.clone(),
                    self.data_tx.clone(),
                )
                .await
            {
                Ok(peer) => self.publisher = Some(peer),
                Err(e) => {
                    tracing::error!(sid = %self.sid, error = %e, "cannot create the publisher PeerConnection");
                    return Ok(());
                }
            }
        }
        let Some(publisher) = self.publisher.as_ref() else {
            return Ok(());
        };
        match publisher.answer_offer(&desc.sdp).await {
            Ok(sdp) => {
                tracing::trace!(sid = %self.sid, offer = %desc.sdp, answer = %sdp, "publisher negotiation");
                self.send(Out::Answer(lk::SessionDescription {
                    r#type: "answer".into(),
                    sdp,
                    id: desc.id,
                    mid_to_track_id: HashMap::new(),
                }))
                .await?;
                self.flush_candidates(Role::Publisher).await;
                self.detect_unpublished(&desc.sdp);
                self.on_publisher_ice(&desc.sdp);
                if let Some(id) = crate::sdp::extmap_id(&desc.sdp, crate::media::AUDIO_LEVEL_URI) {
                    self.audio_level_ext = Some(id);
                }
            }
            Err(e) => tracing::warn!(sid = %self.sid, error = %e, "publisher offer refused"),
        }
        Ok(())
    }

    /// A publisher offer with a new ICE username fragment restarts ICE: keyframes are asked
    /// for on every published video layer a few times as the new path settles.
    fn on_publisher_ice(&mut self, offer_sdp: &str) {
        let ufrag = crate::sdp::ice_ufrag(offer_sdp);
        let restarted =
            self.publisher_ufrag.is_some() && ufrag.is_some() && self.publisher_ufrag != ufrag;
        if ufrag.is_some() {
            self.publisher_ufrag = ufrag;
        }
        self.own_sources.retain(|s| s.strong_count() > 0);
        if !restarted || self.own_sources.is_empty() {
            return;
        }
        tracing::info!(sid = %self.sid, "publisher ICE restart: asking for keyframes");
        let sources = self.own_sources.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            for ms in KEYFRAMES_AFTER_ICE_RESTART_MS {
                tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
                for source in sources.iter().filter_map(|s| s.upgrade()) {
                    if source.kind == crate::media::Kind::Video {
                        for layer in 0..=crate::forward::MAX_LAYER {
                            source.request_keyframe(layer);
                        }
                    }
                }
            }
        });
    }

    /// A data packet from this client: stamped with its identity and relayed.
    fn on_data(&mut self, data: IncomingData) {
        let bad = |what: &str| self.ctx.metrics.bad_input.with_label_values(&[what]).inc();
        if !self.can_publish_data {
            bad("data_not_allowed");
            return;
        }
        match crate::data::relay(&data.bytes, &self.identity, &self.sid) {
            Ok(relayed) => {
                self.ctx.metrics.data_relayed.inc();
                self.ctx
                    .hub
                    .relay_data(&self.room, &self.sid, relayed, data.reliable);
            }
            Err(e) => {
                tracing::debug!(sid = %self.sid, error = %e, "data packet dropped");
                bad("data");
            }
        }
    }

    /// livekit-client unpublishes by renegotiating without the track: a track whose media was
    /// arriving but that the new offer no longer sends is gone.
    fn detect_unpublished(&mut self, offer_sdp: &str) {
        let sending = crate::sdp::sending_track_ids(offer_sdp);
        let gone: Vec<(String, String)> = self
            .receiving
            .iter()
            .filter(|(cid, _)| !sending.contains(*cid))
            .map(|(c, t)| (c.clone(), t.clone()))
            .collect();
        for (cid, track_sid) in gone {
            tracing::info!(sid = %self.sid, %cid, track = %track_sid, "track unpublished");
            self.receiving.remove(&cid);
            self.ctx.hub.unpublish(&self.room, &self.sid, &track_sid);
        }
    }

    async fn on_media(&mut self, event: MediaEvent) -> Result<(), ()> {
        match event {
            MediaEvent::Candidate { role, init_json } => {
                tracing::trace!(sid = %self.sid, ?role, candidate = %init_json, "local candidate");
                let target = match role {
                    Role::Publisher => lk::SignalTarget::Publisher,
                    Role::Subscriber => lk::SignalTarget::Subscriber,
                };
                self.send(Out::Trickle(lk::TrickleRequest {
                    candidate_init: init_json,
                    target: target as i32,
                    r#final: false,
                }))
                .await?;
            }
            MediaEvent::State { role, state } => {
                tracing::info!(sid = %self.sid, ?role, ?state, "peer connection state");
                if state == PeerState::Failed {
                    tracing::warn!(sid = %self.sid, ?role, "peer connection failed");
                }
                // Active now (LiveKit: once its PeerConnection is up).
                if state == PeerState::Connected && role == Role::Subscriber {
                    self.settled_due = Some(Instant::now() + SETTLED_AFTER_CONNECT);
                }
            }
            MediaEvent::Track(track) => self.on_track(track),
        }
        Ok(())
    }

    fn on_track(&mut self, mut track: IncomingTrack) {
        let published = self
            .ctx
            .hub
            .track_by_cid(&self.room, &self.sid, &track.track_id);
        let Some(info) = published else {
            tracing::warn!(sid = %self.sid, cid = %track.track_id, "media for a track never announced with add_track: not forwarded");
            self.ctx
                .metrics
                .bad_input
                .with_label_values(&["unannounced_track"])
                .inc();
            return;
        };
        tracing::info!(sid = %self.sid, cid = %track.track_id, track = %info.sid, kind = track.kind.as_str(), "media arrived for a published track");
        self.receiving
            .insert(track.track_id.clone(), info.sid.clone());
        let metrics = self.ctx.metrics.clone();
        let hub = self.ctx.hub.clone();
        let room = self.room.clone();
        let layers = info
            .codecs
            .first()
            .map(|c| c.layers.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|l| crate::forward::LayerSize {
                layer: l.quality.clamp(0, i32::from(crate::forward::MAX_LAYER)) as u8,
                width: l.width,
                height: l.height,
            })
            .collect();
        let source = Arc::new(Source::new(
            info.sid.clone(),
            self.sid.clone(),
            track.kind,
            layers,
            track.keyframe_requester(),
            metrics.clone(),
        ));
        self.own_sources.push(Arc::downgrade(&source));
        // Audio levels for active speakers, when the publisher sends them.
        let level = match (track.kind, self.audio_level_ext) {
            (crate::media::Kind::Audio, Some(id)) => {
                Some((Arc::new(crate::speakers::AudioLevel::default()), id))
            }
            _ => None,
        };
        let ingress = Arc::new(Ingress::new(
            track.kind.as_str(),
            metrics,
            level,
            source,
            hub,
            room,
        ));
        let handler = ingress.clone();
        track.deliver_inline(Arc::new(move |packet| handler.packet(packet)));
        // The end of the track. Earlier packets went to the handler first; any still queued here
        // come from a PeerConnection closed before the handler could be set.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    packet = track.next_packet() => match packet {
                        Some(packet) => ingress.packet(packet),
                        None => break,
                    },
                    () = ingress.refused.notified() => break,
                }
            }
            let source = &ingress.source;
            tracing::info!(track = %source.track_sid, "published media ended");
            ingress
                .hub
                .unpublish(&ingress.room, &source.participant_sid, &source.track_sid);
        });
    }
}

/// A published track's way in: counts each packet, reads its audio level, forwards it, and
/// announces the source with its first packet. Called by the publisher's driver for each packet
/// it reads, in order, so it never waits.
struct Ingress {
    kind: &'static str,
    /// Packet and byte counters per rid label ("", q, h, f), resolved on first use.
    counters: [std::sync::OnceLock<(prometheus::IntCounter, prometheus::IntCounter)>; 4],
    metrics: Metrics,
    level: Option<(Arc<crate::speakers::AudioLevel>, u8)>,
    source: Arc<Source>,
    hub: Arc<Hub>,
    room: String,
    announced: std::sync::atomic::AtomicBool,
    /// Cleared, and `refused` signalled, when the hub refuses the source (its participant has
    /// left): nothing more is forwarded, and the track's task unpublishes it.
    live: std::sync::atomic::AtomicBool,
    refused: tokio::sync::Notify,
}

impl Ingress {
    fn new(
        kind: &'static str,
        metrics: Metrics,
        level: Option<(Arc<crate::speakers::AudioLevel>, u8)>,
        source: Arc<Source>,
        hub: Arc<Hub>,
        room: String,
    ) -> Self {
        Self {
            kind,
            counters: Default::default(),
            metrics,
            level,
            source,
            hub,
            room,
            announced: std::sync::atomic::AtomicBool::new(false),
            live: std::sync::atomic::AtomicBool::new(true),
            refused: tokio::sync::Notify::new(),
        }
    }

    fn packet(&self, packet: crate::media::IncomingPacket) {
        use std::sync::atomic::Ordering;
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let slot = match packet.rid {
            "q" => 1,
            "h" => 2,
            "f" => 3,
            _ => 0,
        };
        let (packets, bytes) = self.counters[slot].get_or_init(|| {
            (
                self.metrics
                    .packets_in
                    .with_label_values(&[self.kind, packet.rid]),
                self.metrics
                    .bytes_in
                    .with_label_values(&[self.kind, packet.rid]),
            )
        });
        packets.inc();
        bytes.inc_by(packet.packet.payload.len() as u64);
        if let Some((level, id)) = &self.level {
            crate::speakers::observe(level, &packet.packet, *id);
        }
        // Announce to subscribers with the first packet, so that the layer SSRCs needed for
        // keyframe requests are known as they attach.
        self.source.forward(&packet);
        if !self.announced.swap(true, Ordering::AcqRel) {
            if !self.hub.publish_source(&self.room, self.source.clone()) {
                self.live.store(false, Ordering::Release);
                self.refused.notify_one();
                return;
            }
            if let Some((level, _)) = &self.level {
                self.hub.watch_level(&self.source.track_sid, level.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppodok_tokens::livekit::VideoGrant;

    #[test]
    fn a_refreshed_token_keeps_identity_and_grant_with_a_later_expiry() {
        let keys = LivekitKeys::new("k", "0123456789abcdef0123456789abcdef");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut grant = VideoGrant::join("room-9");
        grant.can_publish = Some(false);
        let original = keys.mint_access_token("7", "Seven", grant.clone(), now - 100, 120);
        let claims = keys.verify_access_token(&original).unwrap();
        let fresh = refresh_token(&keys, &claims, 5, now);
        let got = keys.verify_access_token(&fresh).unwrap();
        assert_eq!(got.sub, "7");
        assert_eq!(got.name, "Seven");
        assert_eq!(got.video, Some(grant));
        assert_eq!(got.exp, now + 600);
        assert!(got.exp > claims.exp);
        // Always valid past the next refresh, even for long periods.
        assert_eq!(refreshed_ttl_secs(3600), 7200);
    }

    /// Media whose publisher left before its first packet arrived: the hub refuses the source,
    /// nobody is offered it, the track's task is told to unpublish, and later packets are dropped
    /// before they are counted or forwarded.
    #[tokio::test]
    async fn a_source_the_hub_refuses_forwards_nothing_more_and_ends_its_track() {
        use std::sync::atomic::Ordering;
        let metrics = Metrics::new();
        let hub = Arc::new(Hub::new(metrics.clone()));
        let permission = lk::ParticipantPermission {
            can_publish: true,
            can_subscribe: true,
            ..Default::default()
        };
        let (alice_tx, _alice_rx) = mpsc::channel(64);
        let alice = hub
            .join("r", "alice", "", permission.clone(), 0, alice_tx)
            .unwrap();
        let (bob_tx, mut bob_rx) = mpsc::channel(64);
        hub.join("r", "bob", "", permission, 0, bob_tx).unwrap();
        hub.leave("r", &alice.me.sid, lk::DisconnectReason::ClientInitiated);
        while bob_rx.try_recv().is_ok() {}

        let source = Arc::new(Source::new(
            "TR_refused".into(),
            alice.me.sid.clone(),
            crate::media::Kind::Audio,
            Vec::new(),
            crate::media::KeyframeRequester::channel().0,
            metrics.clone(),
        ));
        let ingress = Ingress::new("audio", metrics.clone(), None, source, hub, "r".into());
        let packet = || crate::media::IncomingPacket {
            layer: 0,
            rid: "",
            packet: crate::media::RtpPacket::default(),
        };
        ingress.packet(packet());
        assert!(!ingress.live.load(Ordering::Acquire));
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            ingress.refused.notified(),
        )
        .await
        .expect("the track's task is told to unpublish");
        for _ in 0..3 {
            ingress.packet(packet());
        }
        let counted = metrics.packets_in.with_label_values(&["audio", ""]).get();
        assert_eq!(counted, 1, "only the packet that found out was taken in");
        assert!(
            std::iter::from_fn(|| bob_rx.try_recv().ok())
                .all(|c| !matches!(c, SessionCommand::Subscribe(..))),
            "nobody is offered a refused source"
        );
    }
}
