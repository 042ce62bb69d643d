//! Loss on the way to a subscriber: the SFU answers the browser's NACKs from its send buffer,
//! so the picture survives a lossy last mile.
//!
//! The SFU announces its media ports on 127.0.0.2 (NAT 1:1) while listening on 127.0.0.1; a UDP
//! relay in between owns 127.0.0.2 and drops some of the video it carries towards the browser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;

use crate::helpers::{spawn_sfu_with, Browser};

const T: Duration = Duration::from_secs(30);
/// Media ports the SFU may use in this test (one per PeerConnection, with room to spare).
const PORTS: u16 = 12;
/// Every this-many-th video packet towards a browser is lost.
const DROP_EVERY: u64 = 25;

#[derive(Default)]
struct RelayCounts {
    video_down: AtomicU64,
    dropped: AtomicU64,
}

/// RTP (not RTCP, STUN or DTLS) whose payload is big enough to be video: RFC 7983 demultiplexing,
/// then RFC 5761 (RTCP packet types 192–223 sit where an RTP marker bit and payload type would).
fn is_video_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 400
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}

/// Relays 127.0.0.2:port ↔ 127.0.0.1:port for every port of `base..base+PORTS`, one upstream
/// socket per browser address (so the SFU sees each browser as one peer), dropping every
/// [`DROP_EVERY`]th video packet on its way to a browser. `None` if a port is taken.
async fn spawn_relay(base: u16, counts: Arc<RelayCounts>) -> Option<()> {
    let mut fronts = Vec::new();
    for port in base..base + PORTS {
        fronts.push((port, UdpSocket::bind(("127.0.0.2", port)).await.ok()?));
    }
    for (port, front) in fronts {
        let front = Arc::new(front);
        let sfu: SocketAddr = ([127, 0, 0, 1], port).into();
        let peers: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, browser)) = front.recv_from(&mut buf).await {
                let up = {
                    let mut peers = peers.lock().await;
                    if let Some(up) = peers.get(&browser) {
                        up.clone()
                    } else {
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        up.connect(sfu).await.unwrap();
                        peers.insert(browser, up.clone());
                        let (front, up2, counts) = (front.clone(), up.clone(), counts.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 2048];
                            while let Ok(n) = up2.recv(&mut buf).await {
                                let datagram = &buf[..n];
                                if is_video_rtp(datagram) {
                                    let i = counts.video_down.fetch_add(1, Ordering::Relaxed);
                                    if i % DROP_EVERY == DROP_EVERY - 1 {
                                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                                        continue;
                                    }
                                }
                                let _ = front.send_to(datagram, browser).await;
                            }
                        });
                        up
                    }
                };
                let _ = up.send(&buf[..n]).await;
            }
        });
    }
    Some(())
}

#[tokio::test]
async fn lost_video_is_resent_on_the_subscribers_nack_and_the_picture_survives() {
    let counts = Arc::new(RelayCounts::default());
    let mut base = 0;
    for _ in 0..20 {
        let candidate = 20_000 + (rand::random::<u16>() % 3000) * PORTS;
        if spawn_relay(candidate, counts.clone()).await.is_some() {
            base = candidate;
            break;
        }
    }
    assert_ne!(base, 0, "no free block of ports on 127.0.0.2 for the relay");
    let sfu = spawn_sfu_with(|s| {
        s.rtc.bind_ip = [127, 0, 0, 1].into();
        s.rtc.udp_port_min = base;
        s.rtc.udp_port_max = base + PORTS - 1;
        s.rtc.nat_1to1_ips = vec!["127.0.0.2".into()];
    })
    .await;
    let mut alice = Browser::launch("publish", &sfu.ws_url(), &sfu.token("alice", "r"), 120).await;
    alice.wait_event("connected", T).await;
    // Bob keeps his candidates to himself: the SFU can reach him only through the relay.
    let mut bob = Browser::launch_with_env(
        "connect",
        &sfu.ws_url(),
        &sfu.token("bob", "r"),
        120,
        &[("SFU_BROWSER_HIDE_CANDIDATES", "1")],
    )
    .await;
    bob.wait_event("connected", T).await;
    // Only the highest layer: most packets, so most losses to recover.
    bob.command("quality high", T).await;
    let first = bob
        .wait_inbound("alice", "camera", T, |v| {
            v["framesDecoded"].as_u64() > Some(0)
        })
        .await;
    let start_dropped = counts.dropped.load(Ordering::Relaxed);
    let n = first["framesDecoded"].as_u64().unwrap();
    // Long enough for a few hundred video packets to cross, and a few dozen to be lost.
    let later = bob
        .wait_inbound("alice", "camera", Duration::from_secs(60), |v| {
            v["framesDecoded"].as_u64() > Some(n + 150)
        })
        .await;
    let dropped = counts.dropped.load(Ordering::Relaxed);
    eprintln!(
        "relay: {} video packets down, {dropped} dropped; bob's inbound-rtp: {later}",
        counts.video_down.load(Ordering::Relaxed)
    );
    assert!(
        dropped - start_dropped >= 10,
        "the relay lost too little to test anything ({dropped}): did media bypass it?"
    );
    let nacks = later["nackCount"].as_u64().unwrap();
    assert!(nacks >= 5, "the browser sent {nacks} NACKs: {later}");
    let retransmits = sfu
        .wait_metric("sfu_rtp_retransmits_total", T, |v| v >= 5.0)
        .await
        .unwrap();
    let nacked = sfu.metric("sfu_nacked_packets_total").await.unwrap();
    let received = sfu.metric("sfu_nacks_received_total").await.unwrap();
    eprintln!("sfu: {received} NACKs for {nacked} packets, {retransmits} resent");
    assert!(received >= 5.0 && nacked >= 5.0);
    // Resent packets fill the holes: far fewer are lost for good than the relay dropped.
    let lost = later["packetsLost"].as_i64().unwrap();
    assert!(
        (lost as u64) * 4 < dropped,
        "{lost} packets stayed lost of {dropped} dropped: {later}"
    );
    // Every forwarded packet's time through the SFU is in the histogram.
    let forwarded = sfu
        .metric("sfu_rtp_packets_out_total{kind=\"video\"}")
        .await
        .unwrap();
    let timed = sfu
        .metric("sfu_forward_latency_seconds_count")
        .await
        .unwrap();
    assert!(
        timed >= forwarded && forwarded > 100.0,
        "{timed} timed, {forwarded} forwarded"
    );
    // Bob's link loses video: his connection quality drops, for himself and for Alice.
    let poor = |v: &serde_json::Value| {
        v["event"] == "connectionQuality"
            && v["identity"] == "bob"
            && (v["quality"] == "poor" || v["quality"] == "lost")
    };
    let seen = bob.wait_for("bob's quality poor", T, poor).await;
    eprintln!("bob's own connection quality: {seen}");
    alice
        .wait_for("bob's quality poor, seen by alice", T, poor)
        .await;
    assert!(
        sfu.metric("sfu_connection_quality_total{quality=\"poor\"}")
            .await
            >= Some(1.0)
    );
    alice.close().await;
    bob.close().await;
}
