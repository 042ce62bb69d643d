//! Media threads: each runs a single-threaded runtime that drives PeerConnections (their reads,
//! timers and the forwarding those reads set off).
//!
//! A room's PeerConnections share one thread, so that a packet read from a publisher is
//! forwarded to every subscriber on the thread that drives them all: their cores stay in that
//! core's cache, no other thread contends for their locks, and no wakeup crosses threads. Rooms
//! spread over the threads: a room new to the node goes to the thread driving the fewest
//! PeerConnections, and stays there while it has any.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The media threads of one [`super::MediaEngine`]. They stop once it and every PeerConnection
/// placed on them are gone.
pub(super) struct MediaThreads {
    threads: Vec<MediaThread>,
    placements: Mutex<Placements>,
}

struct MediaThread {
    runtime: Handle,
    /// Dropped with the pool, which ends the thread and its runtime.
    _stop: oneshot::Sender<()>,
}

struct Placements {
    /// PeerConnections driven per thread.
    load: Vec<usize>,
    /// Each room's thread and how many of its PeerConnections are there.
    rooms: HashMap<String, (usize, usize)>,
}

/// One PeerConnection's place on a media thread, given back when dropped.
pub(super) struct Placement {
    threads: Arc<MediaThreads>,
    room: String,
    thread: usize,
}

impl MediaThreads {
    /// Starts `count` (at least one) threads named `ppodok-media-<i>`.
    pub(super) fn start(count: usize) -> std::io::Result<Arc<Self>> {
        let count = count.max(1);
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name(format!("ppodok-media-{i}"))
                .spawn(move || {
                    // Either a stop or the pool's sender dropped: both end the thread, and
                    // dropping the runtime drops the drivers still on it.
                    let _ = runtime.block_on(stopped);
                })?;
            threads.push(MediaThread {
                runtime: handle,
                _stop: stop,
            });
        }
        Ok(Arc::new(Self {
            placements: Mutex::new(Placements {
                load: vec![0; count],
                rooms: HashMap::new(),
            }),
            threads,
        }))
    }

    /// A place for a PeerConnection of `room`: the room's thread, or the least loaded one for a
    /// room that has none yet.
    pub(super) fn place(self: &Arc<Self>, room: &str) -> Placement {
        let mut placements = self.lock();
        let thread = match placements.rooms.get_mut(room) {
            Some((thread, count)) => {
                *count += 1;
                *thread
            }
            None => {
                let thread = (0..placements.load.len())
                    .min_by_key(|&i| placements.load[i])
                    .unwrap_or(0);
                placements.rooms.insert(room.to_owned(), (thread, 1));
                thread
            }
        };
        placements.load[thread] += 1;
        Placement {
            threads: self.clone(),
            room: room.to_owned(),
            thread,
        }
    }

    /// Tasks alive on the media threads' runtimes (the drivers), for `sfu_runtime_tasks`.
    pub(super) fn alive_tasks(&self) -> usize {
        self.threads
            .iter()
            .map(|t| t.runtime.metrics().num_alive_tasks())
            .sum()
    }

    /// The SFU's one policy for poisoned locks: the data stays usable.
    fn lock(&self) -> MutexGuard<'_, Placements> {
        self.placements.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Placement {
    /// The runtime of the thread this PeerConnection is driven on.
    pub(super) fn runtime(&self) -> &Handle {
        &self.threads.threads[self.thread].runtime
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        let mut placements = self.threads.lock();
        placements.load[self.thread] -= 1;
        if let Some((_, count)) = placements.rooms.get_mut(&self.room) {
            *count -= 1;
            if *count == 0 {
                placements.rooms.remove(&self.room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_stays_on_its_thread_and_new_rooms_go_to_the_least_loaded() {
        let threads = MediaThreads::start(2).expect("threads");
        let a1 = threads.place("a");
        let a2 = threads.place("a");
        let a3 = threads.place("a");
        assert_eq!((a1.thread, a2.thread, a3.thread), (0, 0, 0));
        let b = threads.place("b");
        let c = threads.place("c");
        assert_eq!((b.thread, c.thread), (1, 1), "thread 1 is the less loaded");
        let d = threads.place("d");
        assert_eq!(d.thread, 1, "thread 0 drives 3, thread 1 2");
        drop((a1, a2, a3));
        assert!(
            !threads.lock().rooms.contains_key("a"),
            "an empty room is forgotten"
        );
        assert_eq!(threads.lock().load, vec![0, 3]);
        let a = threads.place("a");
        assert_eq!(
            a.thread, 0,
            "a room back after it emptied goes where there is room"
        );
    }
}
