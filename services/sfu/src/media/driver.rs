//! The SFU's own event loop around `rtc`'s sans-I/O PeerConnection.
//!
//! One [`Shared`] per PeerConnection holds the core behind a plain mutex. Whoever changes the
//! core sends what it queued right away, on the calling thread: a forwarded packet goes from
//! `write_rtp` through the interceptors and SRTP to the socket without a queue, a task switch or
//! an await. The driver task ([`drive`]) owns the receiving half of the sockets and the timers:
//! it feeds datagrams in (a burst at a time), drains what the core read and reported, and sleeps
//! until the core's next deadline or until a caller wakes it after changing something.
//!
//! On close (or when the [`super::Peer`] is dropped) the core is taken out and dropped, which
//! frees its buffers and its sockets even while downtracks that named it are still around.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_RTX;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};

use super::interceptors::{asks_for_keyframe, WireHandle};
use super::nat::{nat_1to1_candidates, NatMapping};
use super::outbox;
use super::own_srtp::{OwnSrtp, WitnessedKeys};
use super::peer::{IncomingData, MAX_DATA_MESSAGE};
use super::track::{rid_label, IncomingPacket, IncomingTrack, PacketHandler};
use super::{Kind, MediaError, MediaEvent, PeerState, Role, RtpPacket};
use crate::forward::{layer_of_rid, Layer};

/// How long the driver sleeps when the core wants no timer.
const IDLE: Duration = Duration::from_secs(60);
/// The shortest gap between two timer passes when the core keeps asking for one in the past.
const MIN_TIMER_GAP: Duration = Duration::from_millis(1);
/// Datagrams read from one socket before the core's outputs are drained.
const READ_BURST: usize = 32;
/// Room for any datagram a WebRTC peer sends (they stay below the path MTU).
const DATAGRAM: usize = 2048;
/// Packets queued from the wire to a published track's forwarder; more are dropped (UDP has
/// nothing to push back on).
const TRACK_QUEUE: usize = 256;

/// One PeerConnection's core and its routes, shared by the [`super::Peer`], its downtracks and
/// its driver. `None` once closed.
///
/// In this order (`repr(C)`): the forwarding path reads `connected`, takes the lock and reads the
/// core's first fields for every packet and subscriber, so they share a cache line.
#[repr(C)]
pub(super) struct Shared {
    /// Set once DTLS is up (the PeerConnection reached `connected`): until then SRTP has no
    /// keys and a packet written is lost.
    connected: AtomicBool,
    /// Where the own send path's state lives once it is on (see [`Core::own_addresses`]), for
    /// the fan-out to prefetch; 0 before.
    own_state: [AtomicUsize; 5],
    core: Mutex<Option<Core>>,
    wake: Notify,
}

/// One UDP socket of a PeerConnection: the sending half (non-blocking) and its address. Shared
/// with the selected pair's [`Path`] and with the outbox until a burst's datagrams have left.
struct Socket {
    local: SocketAddr,
    send: Arc<std::net::UdpSocket>,
}

/// One PeerConnection and what the SFU keeps beside it. What a forwarded packet reads comes first
/// (`repr(C)`), and the PeerConnection is boxed: its
/// ≈ 9 KB would otherwise sit between the lock and the send path's fields.
#[repr(C)]
pub(super) struct Core {
    /// Whether this PeerConnection protects and sends its outgoing RTP itself.
    own: OwnEgress,
    /// The selected candidate pair, as `rtc` last addressed a datagram other than a STUN check
    /// (those go to every pair it checks).
    path: Option<Path>,
    /// Senders removed from the PeerConnection, checked per packet instead of `rtc`'s
    /// transceivers. Short: `rtc` gives a removed sender's transceiver (and id) to the next
    /// sender of its kind, which leaves the list.
    removed: Vec<RTCRtpSenderId>,
    pub(super) pc: Box<RTCPeerConnection>,
    sockets: Vec<Socket>,
    /// Host candidates are added once, with the first local description.
    gathered: bool,
    /// Data channels this side created (LiveKit's server channels, for sending only).
    own_channels: Vec<RTCDataChannelId>,
    routes: Routes,
}

/// Where a PeerConnection's own media goes: the selected pair and the socket bound to its local
/// address, held here so a send reads nothing else.
struct Path {
    local: SocketAddr,
    peer: SocketAddr,
    socket: Arc<std::net::UdpSocket>,
}

/// A PeerConnection's own send path for its media (see [`super::own_srtp`]).
pub(super) enum OwnEgress {
    /// `rtc` protects and sends everything (every PeerConnection but the SFU's subscriber ones,
    /// and those whose keys could not be matched).
    Off,
    /// Until DTLS is up: what the handshake shows, and the chain's send state.
    Waiting(WitnessedKeys, WireHandle),
    /// Media is protected with this context and sent past `rtc`'s pipeline.
    On(Box<OwnSrtp>, WireHandle),
}

/// Where what the core reads goes.
#[derive(Default)]
struct Routes {
    /// Received tracks, by track id.
    incoming: HashMap<String, Incoming>,
    /// Sent tracks' keyframe requests, by track id: the sender they belong to and the signal.
    keyframes: HashMap<String, (RTCRtpSenderId, mpsc::Sender<()>)>,
    /// Data channels the remote opened, and whether each is the reliable one.
    channels: HashMap<RTCDataChannelId, bool>,
    /// Whether some route's backlog waits for the driver (checked once per drain).
    backlogged: bool,
}

struct Incoming {
    receiver: RTCRtpReceiverId,
    /// The track's queue: its packets until a handler is set, and its end (dropped with the
    /// route) always.
    packets: mpsc::Sender<IncomingPacket>,
    /// Once set, packets go to it on the driver's task, right after the read.
    handler: Option<PacketHandler>,
    /// Packets read before the handler was set, for the driver to hand to it before any newer
    /// one.
    backlog: Vec<IncomingPacket>,
    /// Per SSRC: its layer and rid label, and whether it carries media (not a repair stream
    /// such as RTX). A handful at most (three layers and their repair streams), so a scan.
    streams: Vec<(u32, (Layer, &'static str, bool))>,
}

/// What draining the core produced, for the driver to hand on once it has let the core go.
#[derive(Default)]
struct Drained {
    data: Vec<IncomingData>,
    packets: Vec<(PacketHandler, IncomingPacket)>,
}

/// Where the driver reports.
pub(super) struct Sink {
    pub(super) role: Role,
    pub(super) nat_1to1: Arc<[NatMapping]>,
    pub(super) events: mpsc::UnboundedSender<MediaEvent>,
    pub(super) data: mpsc::Sender<IncomingData>,
}

/// Binds the UDP sockets of one PeerConnection: one on `ip`, or, for a wildcard, one per usable
/// interface (a wildcard socket's own address is no candidate a peer could use), all on `port`
/// (0 = ephemeral).
pub(super) fn bind(ip: IpAddr, port: u16) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let mut ips = Vec::new();
    if ip.is_unspecified() {
        if let Ok(interfaces) = rtc::shared::ifaces::ifaces() {
            for addr in interfaces.into_iter().filter_map(|i| i.addr) {
                let a = addr.ip();
                let usable = a.is_ipv4() == ip.is_ipv4()
                    && !a.is_loopback()
                    && !a.is_unspecified()
                    && !is_link_local(&a);
                if usable && !ips.contains(&a) {
                    ips.push(a);
                }
            }
        }
    }
    if ips.is_empty() {
        ips.push(ip);
    }
    ips.into_iter()
        .map(|ip| {
            let socket = std::net::UdpSocket::bind((ip, port))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect()
}

/// A socket to send on beside `receive`, bound to the same address, so a datagram sent on it
/// leaves from the candidate the peer knows. Why not `receive` itself (or a `dup` of it): the
/// runtime's epoll waits on `receive`, and every datagram sent on a socket that someone waits on
/// wakes its wait queue when the kernel frees it (`sock_wfree`: 3.6 % of the SFU's samples at
/// 8 × 4 × 16, for a readiness nobody asked for). Nobody waits on this one. Both sockets share the
/// port through `SO_REUSEPORT`, set on `receive` only now, after its bind: anything binding the
/// port without having set it first (another PeerConnection's probe and bind) is still refused.
/// A classic BPF program on the pair's group hands every datagram that arrives to its first
/// member, `receive`. The group exists only once this socket is bound, so the program follows
/// the bind: a datagram arriving between the two could land here unread, but no peer knows the
/// port yet (its candidates go out after the PeerConnection starts). If the socket beside cannot be
/// made, `receive` is left as it was, with `SO_REUSEPORT` off (the caller falls back to a `dup`).
#[cfg(target_os = "linux")]
fn send_socket_beside(
    receive: &std::net::UdpSocket,
    local: SocketAddr,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::SockRef;
    SockRef::from(receive).set_reuse_port(true)?;
    let beside = bind_beside(receive, local);
    if beside.is_err() {
        // Else any socket of this user that sets it could share the port and take its datagrams.
        let _ = SockRef::from(receive).set_reuse_port(false);
    }
    beside
}

/// [`send_socket_beside`]'s socket, with `receive` already in the port's reuseport group.
#[cfg(target_os = "linux")]
fn bind_beside(
    receive: &std::net::UdpSocket,
    local: SocketAddr,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, SockRef, Socket, Type};
    let send = Socket::new(
        Domain::for_address(local),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if local.is_ipv6() {
        send.set_only_v6(SockRef::from(receive).only_v6()?)?;
    }
    send.set_reuse_port(true)?;
    send.bind(&local.into())?;
    // `ret #0`: the group's member at index 0, the first bound (`receive`).
    let first = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: first.len() as u16,
        filter: first.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the option takes a `sock_fprog`, and the instruction it points to outlives the call.
    unsafe {
        super::set_socket_option(
            &send,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &program,
        )
    }?;
    Ok(send.into())
}

/// Elsewhere there is no reuseport program to keep arriving datagrams on the receiving socket:
/// the PeerConnection sends on a `dup` of it.
#[cfg(not(target_os = "linux"))]
fn send_socket_beside(
    _receive: &std::net::UdpSocket,
    _local: SocketAddr,
) -> std::io::Result<std::net::UdpSocket> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Registers `socket` with the runtime for read readiness only. With write interest too (what
/// `tokio::net::UdpSocket` registers), every datagram sent, once the kernel frees it, queues a
/// writable event on the runtime's epoll and wakes a parked worker for a readiness nobody waits
/// on: sends never wait (a full buffer loses the datagram).
fn watch_reads(socket: std::net::UdpSocket) -> std::io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the `AsyncFd` owns the socket, whose descriptor stays open and the same until the
    // `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
        .map_err(std::io::Error::from)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => (ip.segments()[0] & 0xffc0) == 0xfe80,
    }
}

impl Shared {
    /// Wraps `pc` with its sockets and starts its driver on `runtime`, or on the current one.
    /// With `send_beside`, it sends on a socket of its own beside each receiving one (see
    /// [`send_socket_beside`]); else on a `dup` of it.
    pub(super) fn start(
        pc: RTCPeerConnection,
        sockets: Vec<std::net::UdpSocket>,
        sink: Sink,
        runtime: Option<&tokio::runtime::Handle>,
        own: OwnEgress,
        send_beside: bool,
    ) -> Result<Arc<Self>, MediaError> {
        // Entered for the rest of this call: the sockets are registered with that runtime's I/O
        // driver, and `tokio::spawn` below starts the driver task on it.
        let _entered = runtime.map(|r| r.enter());
        let mut sending = Vec::with_capacity(sockets.len());
        let mut receiving = Vec::with_capacity(sockets.len());
        for socket in sockets {
            let local = socket.local_addr().map_err(super::rtc_err)?;
            let beside = if send_beside {
                send_socket_beside(&socket, local)
                    .inspect_err(|e| {
                        tracing::debug!(error = %e, "no send socket beside the receiving one; sending on it");
                    })
                    .ok()
            } else {
                None
            };
            let send = match beside {
                Some(send) => send,
                None => socket.try_clone().map_err(super::rtc_err)?,
            };
            let recv = watch_reads(socket).map_err(super::rtc_err)?;
            sending.push(Socket {
                local,
                send: Arc::new(send),
            });
            receiving.push((local, recv));
        }
        let shared = Arc::new(Self {
            connected: AtomicBool::new(false),
            own_state: Default::default(),
            core: Mutex::new(Some(Core {
                own,
                path: None,
                removed: Vec::new(),
                pc: Box::new(pc),
                sockets: sending,
                gathered: false,
                own_channels: Vec::new(),
                routes: Routes::default(),
            })),
            wake: Notify::new(),
        });
        tokio::spawn(drive(shared.clone(), receiving, sink));
        Ok(shared)
    }

    /// Keeps where `core`'s own send state lives, once it has a selected pair (it never moves;
    /// a pair switched to another local socket leaves one prefetch stale, which costs nothing).
    pub(super) fn note_own_state(&self, core: &Core) {
        if self.own_state[4].load(Ordering::Relaxed) == 0 {
            for (slot, address) in self.own_state.iter().zip(core.own_addresses()) {
                slot.store(address, Ordering::Relaxed);
            }
        }
    }

    /// Asks for the own send state's first lines (nothing before it is on).
    pub(super) fn prefetch_own_state(&self) {
        for slot in &self.own_state {
            super::prefetch(slot.load(Ordering::Relaxed));
        }
    }

    /// Whether packets written now can be protected and sent (DTLS is up).
    pub(super) fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The core, whatever a panicking holder left (the SFU's one policy for poisoned locks: the
    /// data stays usable; a PeerConnection in a bad state fails its own calls).
    pub(super) fn lock(&self) -> MutexGuard<'_, Option<Core>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the open core, sends what it queued, and wakes the driver so that it picks up
    /// new timers and events.
    pub(super) fn with_core<T>(
        &self,
        f: impl FnOnce(&mut Core, Instant) -> Result<T, MediaError>,
    ) -> Result<T, MediaError> {
        let out = {
            let mut guard = self.lock();
            let core = guard.as_mut().ok_or(MediaError::Closed)?;
            let out = f(core, Instant::now());
            core.flush();
            out
        };
        self.wake.notify_one();
        out
    }

    /// The descriptors the core sends on (beside the driver's receiving ones, or `dup`s of them).
    #[cfg(all(test, target_os = "linux"))]
    pub(super) fn sending_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.lock()
            .as_ref()
            .map(|core| core.sockets.iter().map(|s| s.send.as_raw_fd()).collect())
            .unwrap_or_default()
    }

    /// Whether the PeerConnection protects and sends its media itself (see `own_srtp`).
    #[cfg(test)]
    pub(super) fn protects_media_itself(&self) -> bool {
        self.lock()
            .as_ref()
            .is_some_and(|core| matches!(core.own, OwnEgress::On(..)))
    }

    /// Accounts `packet` as sent (send history, reports) without putting it on the wire: a
    /// packet lost on the way, for the resend tests.
    #[cfg(test)]
    pub(super) fn lose(&self, packet: &RtpPacket) {
        if let Some(Core {
            own: OwnEgress::On(_, wire),
            ..
        }) = self.lock().as_ref()
        {
            wire.sent(Instant::now(), packet.clone(), None);
        }
    }

    /// Wakes the driver (to pick up what a caller changed under the lock).
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Closes the PeerConnection (its DTLS close and SCTP abort go out) and drops the core.
    pub(super) fn close(&self) {
        let core = self.lock().take();
        if let Some(mut core) = core {
            if let Err(e) = core.pc.close() {
                tracing::debug!(error = %e, "closing a PeerConnection");
            }
            core.flush();
        }
        self.wake.notify_one();
    }
}

impl Core {
    /// Sends everything the core has queued. A full socket buffer loses the datagram, as the
    /// network would.
    pub(super) fn flush(&mut self) {
        while let Some(out) = self.pc.poll_write() {
            let (local, peer) = (out.transport.local_addr, out.transport.peer_addr);
            // RFC 7983: a first byte of 0–3 is STUN; anything else `rtc` sends (DTLS, SRTP,
            // SRTCP) goes on the selected pair.
            if out.message.first().is_some_and(|b| *b > 3) {
                self.follow_path(local, peer);
            }
            send_datagram(&self.sockets, local, peer, &out.message);
        }
        if matches!(self.own, OwnEgress::On(..)) {
            self.send_own_resends();
        }
    }

    /// Where the own send path's state lives: its SRTP context (two lines), the send history's
    /// shared state, the link counts it bumps, and the selected pair's socket, whose count the
    /// outbox bumps (0 before a pair is selected); zeros while it is off.
    fn own_addresses(&self) -> [usize; 5] {
        match &self.own {
            OwnEgress::On(srtp, wire) => {
                let srtp = &**srtp as *const OwnSrtp as usize;
                let [state, link] = wire.addresses();
                // An `Arc`'s counts sit just before what it points to (a layout `std` does not
                // promise: a wrong guess only wastes a prefetch).
                let socket = self.path.as_ref().map_or(0, |p| {
                    Arc::as_ptr(&p.socket) as usize - 2 * std::mem::size_of::<usize>()
                });
                [srtp, srtp + 64, state, link, socket]
            }
            _ => [0; 5],
        }
    }

    /// Follows `rtc` to the pair it now sends on.
    fn follow_path(&mut self, local: SocketAddr, peer: SocketAddr) {
        if self
            .path
            .as_ref()
            .is_some_and(|p| p.local == local && p.peer == peer)
        {
            return;
        }
        if let Some(socket) = socket_for(&self.sockets, local) {
            self.path = Some(Path {
                local,
                peer,
                socket: socket.send.clone(),
            });
        }
    }

    /// Whether `sender` is still on the PeerConnection (cheaper than asking `rtc`).
    pub(super) fn sends(&self, sender: RTCRtpSenderId) -> bool {
        !self.removed.contains(&sender)
    }

    /// Adds a downtrack's sender: `rtc` may have reused a removed one's id.
    pub(super) fn sender_added(&mut self, sender: RTCRtpSenderId) {
        self.removed.retain(|s| *s != sender);
    }

    /// Removes a downtrack's sender (takes effect with the next offer).
    pub(super) fn remove_sender(&mut self, sender: RTCRtpSenderId) -> Result<(), MediaError> {
        self.pc.remove_track(sender).map_err(super::rtc_err)?;
        if !self.removed.contains(&sender) {
            self.removed.push(sender);
        }
        Ok(())
    }

    /// Sends `packet` with this PeerConnection's own SRTP context, once it has one (DTLS is up
    /// and the keys matched `rtc`'s); hands it back when `rtc` is to send it.
    pub(super) fn send_own(
        &mut self,
        packet: RtpPacket,
        hint: &super::interceptors::SendHint,
    ) -> Option<RtpPacket> {
        if let OwnEgress::Waiting(keys, wire) = &self.own {
            if !keys.exported() {
                return Some(packet);
            }
            // The profile and this side's role as `rtc` negotiated them (its transport stats).
            let stats = self
                .pc
                .get_stats(Instant::now(), rtc::statistics::StatsSelector::None);
            let negotiated = stats.transport().map(|t| {
                (
                    t.srtp_cipher.clone(),
                    t.dtls_role == rtc::peer_connection::transport::RTCDtlsRole::Client,
                )
            });
            let derived = negotiated
                .as_ref()
                .and_then(|(cipher, is_client)| OwnSrtp::derive(keys, cipher, *is_client));
            keys.forget();
            self.own = match derived {
                Some(srtp) => {
                    wire.protect_media_here();
                    OwnEgress::On(Box::new(srtp), wire.clone())
                }
                None => {
                    wire.leave_media_to_rtc();
                    let cipher = negotiated.map(|(cipher, _)| cipher);
                    tracing::warn!(
                        ?cipher,
                        "the SRTP keys did not match; rtc protects this PeerConnection's media"
                    );
                    OwnEgress::Off
                }
            };
        }
        let Core { own, path, .. } = self;
        let OwnEgress::On(srtp, wire) = own else {
            return Some(packet);
        };
        let now = Instant::now();
        // Never handed back from here on: `rtc`'s context must not protect this SSRC too.
        let sent = match path {
            Some(path) => outbox::seal_and_send(&path.socket, path.peer, |out| {
                srtp.protect_onto(&packet, out)
            }),
            None => {
                // Sealed all the same, unsent: its rollover counter keeps count of the sequence.
                let _ = srtp.protect(&packet);
                false
            }
        };
        if !sent {
            tracing::debug!(
                ssrc = packet.header.ssrc,
                "an RTP packet was not sent: not protected, or no selected pair yet"
            );
        }
        wire.sent(now, packet, Some(hint));
        None
    }

    /// Sends the resends a NACK asked for on media SSRCs (see [`WireHandle::take_resends`]).
    fn send_own_resends(&mut self) {
        let Core { own, path, .. } = self;
        let OwnEgress::On(srtp, wire) = own else {
            return;
        };
        let mut resends = Vec::new();
        wire.take_resends(&mut resends);
        for packet in resends {
            if let Some(path) = &*path {
                outbox::seal_and_send(&path.socket, path.peer, |out| {
                    srtp.protect_onto(&packet, out)
                });
            }
        }
    }

    /// Adds a host candidate per socket and ends gathering, once (after the first local
    /// description; they reach the client as trickled candidates).
    pub(super) fn gather(&mut self) {
        if std::mem::replace(&mut self.gathered, true) {
            return;
        }
        for socket in &self.sockets {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: socket.local.ip().to_string(),
                    port: socket.local.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host();
            let init = candidate.map_err(|e| e.to_string()).and_then(|c| {
                RTCIceCandidate::from(&c)
                    .to_json()
                    .map_err(|e| e.to_string())
            });
            match init {
                Ok(init) => {
                    if let Err(e) = self.pc.add_local_candidate(init) {
                        tracing::warn!(error = %e, "cannot add a host candidate");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot describe a host candidate"),
            }
        }
        if let Err(e) = self.pc.add_local_candidate(RTCIceCandidateInit::default()) {
            tracing::debug!(error = %e, "cannot end gathering");
        }
    }

    /// Creates a data channel of this side's; returns its id.
    pub(super) fn create_channel(
        &mut self,
        label: &str,
        init: rtc::data_channel::RTCDataChannelInit,
    ) -> Result<RTCDataChannelId, MediaError> {
        let id = self
            .pc
            .create_data_channel(label, Some(init))
            .map_err(super::rtc_err)?
            .id();
        self.own_channels.push(id);
        Ok(id)
    }

    /// Hands `track_id`'s packets to `handler` from now on, `backlog` (what was read before)
    /// first (see [`IncomingTrack::deliver_inline`]).
    pub(super) fn deliver_inline(
        &mut self,
        track_id: &str,
        handler: PacketHandler,
        backlog: Vec<IncomingPacket>,
    ) {
        if let Some(route) = self.routes.incoming.get_mut(track_id) {
            route.handler = Some(handler);
            route.backlog = backlog;
            self.routes.backlogged |= !route.backlog.is_empty();
        }
    }

    /// Routes a sent track's keyframe requests to `signal` (replacing an earlier sender's).
    pub(super) fn route_keyframes(
        &mut self,
        track_id: &str,
        sender: RTCRtpSenderId,
        signal: mpsc::Sender<()>,
    ) {
        self.routes
            .keyframes
            .insert(track_id.to_owned(), (sender, signal));
    }

    /// Forgets a sent track's keyframe route if it is still `sender`'s.
    pub(super) fn unroute_keyframes(&mut self, track_id: &str, sender: RTCRtpSenderId) {
        if self
            .routes
            .keyframes
            .get(track_id)
            .is_some_and(|(s, _)| *s == sender)
        {
            self.routes.keyframes.remove(track_id);
        }
    }

    fn read(&mut self, now: Instant, local: SocketAddr, peer: SocketAddr, bytes: &[u8]) {
        let datagram = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: peer,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: BytesMut::from(bytes),
        };
        if let Err(e) = self.pc.handle_read(datagram) {
            tracing::trace!(error = %e, "a datagram was refused");
        }
    }

    /// Drains the core's events and reads until it has none, then sends what they queued.
    fn drain(&mut self, shared: &Weak<Shared>, sink: &Sink, out: &mut Drained) {
        if std::mem::take(&mut self.routes.backlogged) {
            for route in self.routes.incoming.values_mut() {
                if let Some(handler) = &route.handler {
                    out.packets
                        .extend(route.backlog.drain(..).map(|p| (handler.clone(), p)));
                }
            }
        }
        loop {
            let mut any = false;
            while let Some(event) = self.pc.poll_event() {
                any = true;
                self.on_event(event, shared, sink);
            }
            while let Some(message) = self.pc.poll_read() {
                any = true;
                self.on_read(message, out);
            }
            if !any {
                break;
            }
        }
        self.flush();
    }

    fn on_event(&mut self, event: RTCPeerConnectionEvent, shared: &Weak<Shared>, sink: &Sink) {
        match event {
            RTCPeerConnectionEvent::OnIceCandidateEvent(event) => {
                let init = match event.candidate.to_json() {
                    Ok(init) => init,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot describe a local candidate");
                        return;
                    }
                };
                for candidate in nat_1to1_candidates(&init.candidate, &sink.nat_1to1) {
                    let init = RTCIceCandidateInit {
                        candidate,
                        ..init.clone()
                    };
                    match serde_json::to_string(&init) {
                        Ok(init_json) => {
                            let _ = sink.events.send(MediaEvent::Candidate {
                                role: sink.role,
                                init_json,
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot serialise a local candidate"),
                    }
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                if state == RTCPeerConnectionState::Connected {
                    if let Some(shared) = shared.upgrade() {
                        shared.connected.store(true, Ordering::Release);
                    }
                }
                let state = match state {
                    RTCPeerConnectionState::Connected => PeerState::Connected,
                    RTCPeerConnectionState::Disconnected => PeerState::Disconnected,
                    RTCPeerConnectionState::Failed => PeerState::Failed,
                    RTCPeerConnectionState::Closed => PeerState::Closed,
                    _ => PeerState::Connecting,
                };
                let _ = sink.events.send(MediaEvent::State {
                    role: sink.role,
                    state,
                });
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                let Some(channel) = self.pc.data_channel(id) else {
                    return;
                };
                // Ours (created here) are for sending only; the client's carry its data.
                if self.own_channels.contains(&id) {
                    return;
                }
                match channel.label() {
                    "_reliable" => {
                        self.routes.channels.insert(id, true);
                    }
                    "_lossy" => {
                        self.routes.channels.insert(id, false);
                    }
                    other => tracing::debug!(label = other, "ignoring a data channel"),
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(id)) => {
                self.routes.channels.remove(&id);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                // Simulcast opens a track once per layer: the first one announces it.
                if self.routes.incoming.contains_key(&init.track_id) {
                    return;
                }
                let Some(receiver) = self.pc.rtp_receiver(init.receiver_id) else {
                    return;
                };
                let track = receiver.track();
                let kind = match track.kind() {
                    RtpCodecKind::Audio => Kind::Audio,
                    _ => Kind::Video,
                };
                let stream_id = track.stream_id().clone();
                let (tx, rx) = mpsc::channel(TRACK_QUEUE);
                self.routes.incoming.insert(
                    init.track_id.clone(),
                    Incoming {
                        receiver: init.receiver_id,
                        packets: tx,
                        handler: None,
                        backlog: Vec::new(),
                        streams: Vec::new(),
                    },
                );
                let _ = sink.events.send(MediaEvent::Track(IncomingTrack {
                    track_id: init.track_id,
                    stream_id,
                    kind,
                    packets: rx,
                    core: shared.clone(),
                    receiver: init.receiver_id,
                }));
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) => {
                // Its forwarder sees the end of the track once the queue is drained.
                self.routes.incoming.remove(&track_id);
            }
            _ => {}
        }
    }

    fn on_read(&mut self, message: TaggedRTCMessage, out: &mut Drained) {
        match message.message {
            RTCMessage::RtpPacket(track_id, packet) => {
                let Core { pc, routes, .. } = self;
                let Some(route) = routes.incoming.get_mut(&track_id) else {
                    return;
                };
                let ssrc = packet.header.ssrc;
                let known = route.streams.iter().find(|(s, _)| *s == ssrc);
                let (layer, rid, media) = match known {
                    Some(&(_, known)) => known,
                    None => {
                        let Some(receiver) = pc.rtp_receiver(route.receiver) else {
                            return;
                        };
                        let track = receiver.track();
                        let rid = track.rid(ssrc).map(String::as_str);
                        let media = track
                            .codec(ssrc)
                            .is_none_or(|c| !c.mime_type.eq_ignore_ascii_case(MIME_TYPE_RTX));
                        let known = (layer_of_rid(rid), rid_label(rid), media);
                        route.streams.push((ssrc, known));
                        known
                    }
                };
                if media {
                    let packet = IncomingPacket { layer, rid, packet };
                    match &route.handler {
                        Some(handler) => out.packets.push((handler.clone(), packet)),
                        None => {
                            let _ = route.packets.try_send(packet);
                        }
                    }
                }
            }
            RTCMessage::RtcpPacket(track_id, packets) => {
                if let Some((_, signal)) = self.routes.keyframes.get(&track_id) {
                    if packets.iter().any(|p| asks_for_keyframe(p.as_ref())) {
                        // A request already pending covers this one.
                        let _ = signal.try_send(());
                    }
                }
            }
            RTCMessage::DataChannelMessage(id, message) => {
                let Some(&reliable) = self.routes.channels.get(&id) else {
                    return;
                };
                if message.data.len() > MAX_DATA_MESSAGE {
                    tracing::warn!(
                        len = message.data.len(),
                        "dropping an oversized data message"
                    );
                    return;
                }
                out.data.push(IncomingData {
                    reliable,
                    bytes: message.data.to_vec(),
                });
            }
            _ => {}
        }
    }
}

/// Sends `datagram` to `peer` from the socket bound to `local` (the first one if none is). A
/// full socket buffer loses the datagram, as the network would.
fn send_datagram(sockets: &[Socket], local: SocketAddr, peer: SocketAddr, datagram: &[u8]) {
    if let Some(socket) = socket_for(sockets, local) {
        outbox::send_one(&socket.send, peer, datagram);
    }
}

/// The socket bound to `local` (the first one if none is).
fn socket_for(sockets: &[Socket], local: SocketAddr) -> Option<&Socket> {
    sockets
        .iter()
        .find(|s| s.local == local)
        .or(sockets.first())
}

/// The receiving half of a PeerConnection's sockets: each one's address, registered for read
/// readiness.
type Receivers = Vec<(SocketAddr, AsyncFd<std::net::UdpSocket>)>;

/// Waits until one of `sockets` is readable: its index and its readiness, which the reader
/// clears by reading until the socket would block.
async fn readable_any(
    sockets: &Receivers,
) -> (
    usize,
    std::io::Result<AsyncFdReadyGuard<'_, std::net::UdpSocket>>,
) {
    std::future::poll_fn(|cx| {
        for (i, (_, socket)) in sockets.iter().enumerate() {
            if let Poll::Ready(ready) = socket.poll_read_ready(cx) {
                return Poll::Ready((i, ready));
            }
        }
        Poll::Pending
    })
    .await
}

/// The driver: reads datagrams, fires timers, and delivers what the core reports, until the
/// PeerConnection is closed or dropped.
async fn drive(this: Arc<Shared>, sockets: Receivers, sink: Sink) {
    let weak = Arc::downgrade(&this);
    let mut buf = vec![0u8; DATAGRAM];
    let mut out = Drained::default();
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    let mut last_timer: Option<Instant> = None;
    loop {
        let deadline = {
            let mut guard = this.lock();
            let Some(core) = guard.as_mut() else { break };
            core.drain(&weak, &sink, &mut out);
            core.pc.poll_timeout()
        };
        // Outside the lock: forwarding takes the subscribers' locks, and a keyframe request
        // from one of them may need this PeerConnection's.
        // The burst's forwarded datagrams leave together once every packet is handed on.
        outbox::batched(|| {
            for (handler, packet) in out.packets.drain(..) {
                handler(packet);
            }
        });
        // Waiting here pushes back on the client's SCTP stream (the session reads slowly).
        for message in out.data.drain(..) {
            if sink.data.send(message).await.is_err() {
                break;
            }
        }
        let now = Instant::now();
        let mut deadline = deadline.unwrap_or(now + IDLE);
        // A core that keeps asking for a timer in the past is served at most once a millisecond.
        if let Some(last) = last_timer.filter(|_| deadline <= now) {
            deadline = deadline.max(last + MIN_TIMER_GAP);
        }
        sleep.as_mut().reset(deadline.into());
        tokio::select! {
            biased;
            () = this.wake.notified() => {}
            (i, ready) = readable_any(&sockets) => {
                let now = Instant::now();
                let local = sockets[i].0;
                let mut guard = this.lock();
                let Some(core) = guard.as_mut() else { break };
                // Readiness fails only once the runtime's I/O driver is gone (shutdown).
                let Ok(mut ready) = ready else { break };
                // Up to a burst, then the core's outputs are drained; a socket left readable
                // is picked up again on the next pass.
                for _ in 0..READ_BURST {
                    match ready.try_io(|socket| socket.get_ref().recv_from(&mut buf)) {
                        Ok(Ok((n, from))) => core.read(now, local, from, &buf[..n]),
                        // An ICMP error for an earlier send: nothing to read.
                        Ok(Err(e)) => tracing::trace!(error = %e, "a receive failed"),
                        // Drained: readiness cleared until the next datagram.
                        Err(_would_block) => break,
                    }
                }
            }
            () = &mut sleep => {
                let now = Instant::now();
                last_timer = Some(now);
                let mut guard = this.lock();
                let Some(core) = guard.as_mut() else { break };
                if let Err(e) = core.pc.handle_timeout(now) {
                    tracing::debug!(error = %e, "a PeerConnection timer failed");
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::super::link::connected_link;
    use super::super::outbox::send_one;
    use super::send_socket_beside;
    use std::time::Duration;

    /// The events `fd` is registered for in this process's epoll instances (the runtimes'), from
    /// the kernel's own account of them (`/proc/self/fdinfo`); `None` if it is in none.
    fn epoll_events_of(fd: i32) -> Option<u32> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
            let is_epoll = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]");
            if !is_epoll {
                continue;
            }
            let info = entry.file_name();
            let Ok(info) =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", info.to_string_lossy()))
            else {
                continue;
            };
            // Lines such as "tfd:       12 events: 80002001 data: ...".
            for line in info.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let ["tfd:", tfd, "events:", events, ..] = fields[..] {
                    if tfd.parse() == Ok(fd) {
                        return u32::from_str_radix(events, 16).ok();
                    }
                }
            }
        }
        None
    }

    /// Every descriptor of this process open on the same socket as `fd` (`fd` included).
    fn descriptors_of_the_socket_of(fd: i32) -> Vec<i32> {
        let socket = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("an open socket");
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .flatten()
            .filter(|entry| std::fs::read_link(entry.path()).is_ok_and(|t| t == socket))
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The local address of the socket open on `fd`, if it is one.
    fn local_address_of(fd: i32) -> Option<std::net::SocketAddr> {
        // SAFETY: `fd` is open for the borrow's length (the test holds the PeerConnection).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        socket2::SockRef::from(&fd).local_addr().ok()?.as_socket()
    }

    /// A connected SFU PeerConnection's sockets wake the runtime when a datagram arrives and not
    /// when one it sent leaves: the forwarding path sends tens of thousands a second, and each
    /// writable event, or each wakeup of a watched socket's wait queue as the kernel frees a sent
    /// datagram, would cost for nothing. So the receiving socket is watched once, for reads only,
    /// and the socket it sends on beside it (same address) is watched by nobody.
    #[tokio::test]
    async fn a_peerconnections_sockets_wake_the_runtime_for_reads_only() {
        const EPOLLIN: u32 = 0x001;
        const EPOLLOUT: u32 = 0x004;
        let link = connected_link(false).await;
        let sending = link.sfu_pc.shared().sending_fds();
        assert!(!sending.is_empty(), "the PeerConnection has its sockets");
        let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        for fd in sending {
            let sent_on = descriptors_of_the_socket_of(fd);
            let watched: Vec<u32> = sent_on.iter().filter_map(|&d| epoll_events_of(d)).collect();
            assert!(
                watched.is_empty(),
                "the sending socket is not watched: {watched:x?}"
            );
            // The receiving socket: another socket on the same address.
            let local = local_address_of(fd).expect("a bound socket");
            let registered: Vec<u32> = open
                .iter()
                .filter(|d| !sent_on.contains(d) && local_address_of(**d) == Some(local))
                .filter_map(|&d| epoll_events_of(d))
                .collect();
            assert_eq!(
                registered.len(),
                1,
                "the receiving socket is watched once: {registered:x?}"
            );
            let events = registered[0];
            assert_ne!(
                events & EPOLLIN,
                0,
                "read readiness is watched: {events:#x}"
            );
            assert_eq!(events & EPOLLOUT, 0, "write readiness is not: {events:#x}");
        }
        link.sfu_pc.close().await;
        link.client_pc.close().await;
    }

    /// A client's PeerConnection (load generators, tests) keeps plain sockets, as a browser's:
    /// it sends on its receiving socket, which is in no reuseport group. Such a group's pick for
    /// every datagram arriving on loopback is charged to whoever sends it, here the SFU.
    #[tokio::test]
    async fn a_client_sends_on_its_receiving_socket_and_shares_no_port() {
        let link = connected_link(false).await;
        let sending = link.client_pc.shared().sending_fds();
        assert!(!sending.is_empty(), "the PeerConnection has its sockets");
        for fd in sending {
            let watched: Vec<u32> = descriptors_of_the_socket_of(fd)
                .into_iter()
                .filter_map(epoll_events_of)
                .collect();
            assert_eq!(watched.len(), 1, "sent on the watched socket: {watched:x?}");
            // SAFETY: `fd` stays open while the test holds the PeerConnection.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            assert!(
                !socket2::SockRef::from(&borrowed).reuse_port().unwrap(),
                "the port is not shared"
            );
        }
        link.sfu_pc.close().await;
        link.client_pc.close().await;
    }

    /// What a PeerConnection sends leaves from its receiving socket's address; every datagram
    /// that arrives, from any number of peers, reaches the receiving socket and none the sending
    /// one; and the port stays the PeerConnection's (a plain bind of it is refused).
    #[test]
    fn the_send_socket_shares_the_address_and_never_takes_a_datagram() {
        let receive = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = receive.local_addr().unwrap();
        let send = send_socket_beside(&receive, local).unwrap();
        assert_eq!(send.local_addr().unwrap(), local);
        assert_eq!(
            std::net::UdpSocket::bind(local).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        let peers: Vec<_> = (0..32)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut buf = [0u8; 8];
        for (i, peer) in peers.iter().enumerate() {
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            send_one(&send, peer.local_addr().unwrap(), &[i as u8]);
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((n, from, buf[0]), (1, local, i as u8));
            peer.send_to(&[i as u8], local).unwrap();
        }
        // Each peer's datagram is read from the receiving socket (a datagram steered to the
        // sending one would leave this read waiting, and fail it).
        receive
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut senders = Vec::new();
        for _ in &peers {
            let (_, from) = receive.recv_from(&mut buf).expect("every datagram arrives");
            senders.push(from);
        }
        senders.sort();
        let mut expected: Vec<_> = peers.iter().map(|p| p.local_addr().unwrap()).collect();
        expected.sort();
        assert_eq!(senders, expected);
        assert_eq!(
            send.recv_from(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    }

    /// When no socket can be bound beside it, the receiving socket's port is not left open to
    /// sharing: a socket that sets `SO_REUSEPORT` first is still refused it.
    #[test]
    fn a_failed_send_socket_leaves_the_port_unshared() {
        let receive = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = receive.local_addr().unwrap();
        // An address held by a socket that shares nothing: the bind beside it fails.
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = send_socket_beside(&receive, taken.local_addr().unwrap()).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        assert!(!socket2::SockRef::from(&receive).reuse_port().unwrap());
        let intruder = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        intruder.set_reuse_port(true).unwrap();
        assert_eq!(
            intruder.bind(&port.into()).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
    }
}
