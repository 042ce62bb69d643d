//! Forwarded media, sent a burst at a time.
//!
//! A driver hands the packets it read in one wakeup to their forwarders inside [`batched`]. The
//! SRTP datagrams those produce are kept on the thread's outbox instead of going out one system
//! call each, and leave when the burst is done: those for the same socket and peer (the packets
//! of one video frame to one subscriber) together, as one UDP GSO send where the kernel has it
//! (the segments split again on the way out; one route lookup, one buffer through the stack for
//! the lot). Anywhere else, and outside a burst, a datagram goes out at once.
//!
//! A burst is at most the driver's read burst times the fan-out; past [`MAX_KEPT`] datagrams or
//! [`MAX_BYTES`] the outbox is sent early, so its memory stays bounded whatever the load.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Datagrams kept before the outbox is sent early.
const MAX_KEPT: usize = 512;
/// Bytes kept before the outbox is sent early.
const MAX_BYTES: usize = 512 * 1024;
/// Segments in one GSO send (the kernel takes at most 64).
const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send (one IP datagram's worth, less its headers).
const MAX_GSO_BYTES: usize = 60_000;

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
    static BATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Cleared for good once the kernel refuses a GSO send for a reason other than the path's MTU (no
/// UDP GSO, or a route through IPsec or a device that cannot take it): from then on every
/// datagram goes on its own.
static GSO: AtomicBool = AtomicBool::new(true);

/// A datagram waiting: the socket and peer it goes to, and its bytes in the outbox's buffer.
struct Kept {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    bytes: Range<usize>,
}

#[derive(Default)]
struct Outbox {
    kept: Vec<Kept>,
    buffer: Vec<u8>,
    /// Reused by [`Outbox::send_all`]: the order datagrams leave in.
    order: Vec<u32>,
}

/// Runs `f` with sends kept on this thread's outbox, then sends them. Nested calls send with the
/// outermost.
pub(super) fn batched<T>(f: impl FnOnce() -> T) -> T {
    if BATCHING.with(Cell::get) {
        return f();
    }
    BATCHING.with(|b| b.set(true));
    // Cleared and sent even if `f` panics (the driver's task would be gone, its datagrams not);
    // a panic with the outbox borrowed leaves it to the next burst rather than panic again.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            BATCHING.with(|b| b.set(false));
            OUTBOX.with(|o| {
                if let Ok(mut outbox) = o.try_borrow_mut() {
                    outbox.send_all();
                }
            });
        }
    }
    let _done = Done;
    f()
}

/// Sends `datagram` to `peer` on `socket`, now or with the burst (see [`batched`]). A full
/// socket buffer loses it, as the network would.
#[cfg(test)]
pub(super) fn send(socket: &Arc<UdpSocket>, peer: SocketAddr, datagram: &[u8]) {
    seal_and_send(socket, peer, |out| {
        out.extend_from_slice(datagram);
        Some(datagram.len())
    });
}

/// Sends what `seal` appends to the buffer it is given (its length, or `None` for nothing) to
/// `peer` on `socket`, now or with the burst (see [`batched`]): sealed straight into the outbox,
/// it is not copied again. A full socket buffer loses it, as the network would.
pub(super) fn seal_and_send(
    socket: &Arc<UdpSocket>,
    peer: SocketAddr,
    seal: impl FnOnce(&mut Vec<u8>) -> Option<usize>,
) -> bool {
    let batching = BATCHING.with(Cell::get);
    OUTBOX.with(|o| {
        let mut outbox = o.borrow_mut();
        let start = outbox.buffer.len();
        let Some(len) = seal(&mut outbox.buffer) else {
            return false;
        };
        if !batching {
            // Outside a burst it leaves at once, from where it was sealed.
            send_one(socket, peer, &outbox.buffer[start..start + len]);
            outbox.buffer.truncate(start);
            return true;
        }
        outbox.kept.push(Kept {
            socket: socket.clone(),
            peer,
            bytes: start..start + len,
        });
        if outbox.kept.len() >= MAX_KEPT || outbox.buffer.len() >= MAX_BYTES {
            outbox.send_all();
        }
        true
    })
}

/// Sends one datagram; a full buffer loses it, as the network would.
pub(super) fn send_one(socket: &UdpSocket, peer: SocketAddr, datagram: &[u8]) {
    if let Err(e) = socket.send_to(datagram, peer) {
        if e.kind() != std::io::ErrorKind::WouldBlock {
            tracing::trace!(error = %e, "a datagram was not sent");
        }
    }
}

impl Outbox {
    /// Sends everything kept: per socket and peer in the order kept, runs of equal-sized
    /// datagrams (the last may be shorter) as one GSO send each.
    fn send_all(&mut self) {
        let Outbox {
            kept,
            buffer,
            order,
        } = self;
        order.clear();
        order.extend(0..kept.len() as u32);
        // Stable: each subscriber's datagrams keep their order.
        order.sort_by_key(|&i| {
            let k = &kept[i as usize];
            (Arc::as_ptr(&k.socket) as usize, k.peer)
        });
        let mut i = 0;
        while i < order.len() {
            let first = &kept[order[i] as usize];
            let size = first.bytes.len();
            let mut run = 1;
            let mut total = size;
            while i + run < order.len() && run < MAX_SEGMENTS {
                let next = &kept[order[i + run] as usize];
                let len = next.bytes.len();
                if !Arc::ptr_eq(&next.socket, &first.socket)
                    || next.peer != first.peer
                    || len > size
                    || total + len > MAX_GSO_BYTES
                {
                    break;
                }
                run += 1;
                total += len;
                // A shorter one can only end a run.
                if len < size {
                    break;
                }
            }
            let group = &order[i..i + run];
            if run == 1 || !send_segments(kept, buffer, group, size) {
                for &k in group {
                    let k = &kept[k as usize];
                    send_one(&k.socket, k.peer, &buffer[k.bytes.clone()]);
                }
            }
            i += run;
        }
        kept.clear();
        buffer.clear();
    }
}

/// Sends the datagrams `group` names (same socket and peer, each `size` bytes but the last) as one
/// UDP GSO send. False if that is not to be had here, for the caller to send them one by one.
#[cfg(target_os = "linux")]
fn send_segments(kept: &[Kept], buffer: &[u8], group: &[u32], size: usize) -> bool {
    use std::os::fd::AsRawFd;
    if !GSO.load(Ordering::Relaxed) {
        return false;
    }
    let first = &kept[group[0] as usize];
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_SEGMENTS];
    for (slot, &k) in iov.iter_mut().zip(group) {
        let bytes = &buffer[kept[k as usize].bytes.clone()];
        *slot = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
    }
    let peer = socket2::SockAddr::from(first.peer);
    // One control message: UDP_SEGMENT and the segment size (u16).
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid `msghdr`; every pointer set below outlives the `sendmsg`.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_name = peer.as_ptr() as *mut libc::c_void;
    header.msg_namelen = peer.len();
    header.msg_iov = iov.as_mut_ptr();
    header.msg_iovlen = group.len() as _;
    header.msg_control = control.as_mut_ptr().cast();
    // SAFETY: `CMSG_SPACE` only computes a size.
    header.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as _;
    // SAFETY: the control buffer (32 bytes, 8-aligned) holds one header and a u16, as
    // `msg_controllen` says; `CMSG_FIRSTHDR` of it is therefore non-null and in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
    }
    // SAFETY: `header` and what it points to are valid for the call.
    let sent = unsafe { libc::sendmsg(first.socket.as_raw_fd(), &header, 0) };
    if sent >= 0 {
        return true;
    }
    let e = std::io::Error::last_os_error();
    match (e.kind(), e.raw_os_error()) {
        // A full buffer loses the run, as the network would.
        (std::io::ErrorKind::WouldBlock, _) => true,
        // Segments too large for the path's MTU: these go one by one (fragmented, as they would
        // have been without GSO), later runs still together.
        (_, Some(libc::EMSGSIZE)) => false,
        _ => {
            tracing::debug!(error = %e, "no UDP GSO here; datagrams go one by one");
            GSO.store(false, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn send_segments(_: &[Kept], _: &[u8], _: &[u32], _: usize) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn receiver() -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let address = socket.local_addr().unwrap();
        (socket, address)
    }

    /// `n` datagrams from `socket`, each as its length and its bytes' distinct values (short to
    /// print when they differ from what was sent).
    fn received(socket: &UdpSocket, n: usize) -> Vec<(usize, Vec<u8>)> {
        let mut buf = [0u8; 4096];
        (0..n)
            .map(|_| {
                let len = socket.recv(&mut buf).expect("a datagram");
                summary(&buf[..len])
            })
            .collect()
    }

    fn summary(datagram: &[u8]) -> (usize, Vec<u8>) {
        let mut values = datagram.to_vec();
        values.dedup();
        (datagram.len(), values)
    }

    /// Inside a burst nothing leaves until the burst ends; then each peer gets its datagrams
    /// whole and in the order they were sent (a frame's equal-sized packets and a shorter last
    /// one as one GSO send, a longer one after them on its own), and every datagram once.
    #[test]
    fn a_burst_leaves_at_its_end_each_peer_in_order() {
        let (a, a_addr) = receiver();
        let (b, b_addr) = receiver();
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let other = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let to_a: Vec<Vec<u8>> = [1000, 1000, 1000, 400, 1200, 1200]
            .iter()
            .enumerate()
            .map(|(i, &len)| vec![i as u8; len])
            .collect();
        let to_b: Vec<Vec<u8>> = (0..3).map(|i| vec![100 + i; 900]).collect();
        batched(|| {
            for (i, datagram) in to_a.iter().enumerate() {
                send(&socket, a_addr, datagram);
                if let Some(datagram) = to_b.get(i) {
                    send(&other, b_addr, datagram);
                }
            }
            a.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(
                a.recv(&mut buf).unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock,
                "nothing left before the burst's end"
            );
            a.set_nonblocking(false).unwrap();
        });
        let sent = |datagrams: &[Vec<u8>]| datagrams.iter().map(|d| summary(d)).collect::<Vec<_>>();
        assert_eq!(received(&a, to_a.len()), sent(&to_a));
        assert_eq!(received(&b, to_b.len()), sent(&to_b));
        for socket in [&a, &b] {
            socket.set_nonblocking(true).unwrap();
            assert_eq!(
                socket.recv(&mut [0u8; 1]).unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock,
                "every datagram once"
            );
        }
        assert!(GSO.load(Ordering::Relaxed), "this kernel sends with GSO");
    }

    /// A frame's equal-sized packets to one peer leave as one GSO send, not one by one: a
    /// receiver that asks for GRO gets each run whole, with its segment size, as the kernel
    /// carried it (a run sent one datagram at a time would arrive as separate datagrams).
    #[test]
    fn equal_sized_datagrams_to_one_peer_leave_as_one_gso_send() {
        use std::os::fd::AsRawFd;
        let (a, a_addr) = receiver();
        // SAFETY: `UDP_GRO` takes an int.
        unsafe { crate::media::set_socket_option(&a, libc::SOL_UDP, libc::UDP_GRO, &1_i32) }
            .expect("UDP_GRO");
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        batched(|| {
            for (i, len) in [1000, 1000, 1000, 400, 1200, 1200].into_iter().enumerate() {
                send(&socket, a_addr, &vec![i as u8; len]);
            }
        });
        // (bytes, segment size) of each receive; no segment size for a plain datagram.
        let mut got = Vec::new();
        for _ in 0..2 {
            let mut buf = vec![0u8; 65536];
            let mut control = [0u64; 8];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: all-zero is a valid `msghdr`; its pointers outlive the `recvmsg`.
            let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
            header.msg_iov = &mut iov;
            header.msg_iovlen = 1;
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `header` describes live buffers of the lengths it gives.
            let n = unsafe { libc::recvmsg(a.as_raw_fd(), &mut header, 0) };
            assert!(n > 0, "a receive: {}", std::io::Error::last_os_error());
            let mut segment = None;
            // SAFETY: the kernel filled `control` up to `msg_controllen`; the macros stay in it.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&header);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                        segment = Some(std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg).cast::<u16>(),
                        ));
                    }
                    cmsg = libc::CMSG_NXTHDR(&header, cmsg);
                }
            }
            got.push((n as usize, segment));
        }
        assert_eq!(got, vec![(3400, Some(1000)), (2400, Some(1200))]);
    }

    /// Outside a burst a datagram leaves at once, and a burst's outbox is sent early once it
    /// holds its bound, so its memory stays bounded.
    #[test]
    fn outside_a_burst_a_datagram_leaves_at_once_and_the_outbox_stays_bounded() {
        let (a, a_addr) = receiver();
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        send(&socket, a_addr, b"now");
        assert_eq!(received(&a, 1), vec![summary(b"now")]);
        batched(|| {
            for i in 0..MAX_KEPT + 3 {
                send(&socket, a_addr, &(i as u32).to_be_bytes());
            }
            OUTBOX.with(|o| assert_eq!(o.borrow().kept.len(), 3, "sent early at the bound"));
            // The first ones are on their way before the burst ends.
            assert_eq!(received(&a, 1), vec![summary(&0u32.to_be_bytes())]);
        });
        OUTBOX.with(|o| assert!(o.borrow().kept.is_empty(), "all sent at the end"));
    }
}
