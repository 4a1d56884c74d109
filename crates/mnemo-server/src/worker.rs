//! Worker threads: one mio event loop each, owning its connections for
//! their whole life. New sockets arrive from the acceptor over a channel,
//! with a mio `Waker` to interrupt `poll`.

use crate::batch::{Batch, Req};
use crate::bufbudget::BufBudget;
use crate::conn::{Conn, Drive, Env};
use crate::dispatch::Ctx;
use crate::shared::{ConnInfo, Shared};
use crate::stats::WorkerStats;
use crate::watch;
use mio::{Events, Interest, Poll, Token, Waker};
use mnemo_net::{Key, Slots, Stream};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAKER: Token = Token(usize::MAX);
/// How often a worker wakes for housekeeping (idle_timeout, gauges).
const TICK: Duration = Duration::from_secs(1);
/// Longest a stopping worker waits for its clients to take their replies.
const STOP_FLUSH: Duration = Duration::from_secs(2);

/// A socket accepted for a worker, with its `stats conns` entry.
pub struct NewConn {
    pub stream: Stream,
    pub info: Arc<ConnInfo>,
}

/// The acceptor's end of a worker.
pub struct WorkerHandle {
    pub tx: Sender<NewConn>,
    pub waker: Arc<Waker>,
    pub join: JoinHandle<()>,
}

struct Slot {
    conn: Conn,
    queued: bool,
    /// In `Worker::sends` for this round.
    send_queued: bool,
    /// The socket is registered with the worker's ring at this slot's
    /// index.
    fixed: bool,
}

struct Worker {
    id: usize,
    poll: Poll,
    rx: Receiver<NewConn>,
    shared: Arc<Shared>,
    ws: Arc<WorkerStats>,
    ts: Arc<mnemo_engine::ThreadStats>,
    /// Connections, keyed by their mio token: an event left over from a
    /// closed connection cannot reach the one that reuses its slot.
    slots: Slots<Slot>,
    yielded: VecDeque<Key>,
    /// Spare read buffers: connections give theirs back when idle.
    rbuf_pool: Vec<Vec<u8>>,
    /// Batched socket I/O, when the kernel has io_uring and it is wanted.
    batch: Option<Batch>,
    /// While set, connections leave their replies for the round's batched
    /// send instead of writing them.
    defer_send: bool,
    /// This round's ready connections: key, readable, writable.
    ready: Vec<(Key, bool, bool)>,
    /// Connections whose replies wait for the round's batched send.
    sends: Vec<Key>,
    reqs: Vec<Req>,
    results: Vec<(usize, i32)>,
    /// `-o read_buf_mem_limit`, when set.
    budget: Option<BufBudget>,
}

/// Starts worker `id`.
pub fn spawn(id: usize, shared: Arc<Shared>) -> io::Result<WorkerHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = channel();
    let ws = Arc::clone(&shared.workers[id]);
    let ts = shared.engine.new_thread_stats();
    let budget = BufBudget::new(shared.settings.read_buf_mem_limit, shared.settings.threads);
    let mut w = Worker {
        id,
        poll,
        rx,
        shared,
        ws,
        ts,
        slots: Slots::new(),
        yielded: VecDeque::new(),
        rbuf_pool: Vec::new(),
        batch: None,
        defer_send: false,
        ready: Vec::new(),
        sends: Vec::new(),
        reqs: Vec::new(),
        results: Vec::new(),
        budget,
    };
    let join = std::thread::Builder::new()
        .name(format!("mnemo-worker-{id}"))
        .spawn(move || w.run())?;
    Ok(WorkerHandle { tx, waker, join })
}

impl Worker {
    fn run(&mut self) {
        if self.shared.settings.io_uring {
            // Made here: the ring belongs to the thread that submits.
            let table = self.shared.settings.maxconns.min(1 << 16);
            match Batch::new(table) {
                Ok(b) => {
                    if self.shared.verbose() > 1 {
                        eprintln!("<worker {}: batched socket I/O (io_uring)", self.id);
                    }
                    self.batch = Some(b);
                }
                Err(e) => {
                    if self.shared.verbose() > 0 {
                        eprintln!(
                            "<worker {}: io_uring unavailable ({e}); one system call per read and write",
                            self.id
                        );
                    }
                }
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        if self.shared.repl.is_some() {
            crate::repl::node::batch_records();
        }
        loop {
            let timeout = if self.yielded.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    eprintln!("mnemo: worker poll failed: {e}");
                    break;
                }
            }
            let batching = self.batch.is_some();
            self.defer_send = batching;
            self.ready.clear();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    self.adopt();
                    continue;
                }
                let Some(k) = Key::from_token(ev.token()) else {
                    continue;
                };
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_write_closed();
                if ev.is_read_closed() || ev.is_error() {
                    // Request bytes and the FIN can arrive as one edge; the
                    // connection must read on to the EOF or it is never closed.
                    if let Some(slot) = self.slots.get_mut(k) {
                        slot.conn.set_peer_closed();
                    }
                }
                if batching {
                    self.ready.push((k, readable, writable));
                } else {
                    self.drive(k, readable, writable);
                }
            }
            if batching {
                self.batched_reads();
                for k in 0..self.ready.len() {
                    let (i, readable, writable) = self.ready[k];
                    self.drive(i, readable, writable);
                }
            }
            // Connections that used up their -R budget get another turn
            // after everyone with fresh events has had one.
            for _ in 0..self.yielded.len() {
                if let Some(k) = self.yielded.pop_front() {
                    if let Some(slot) = self.slots.get_mut(k) {
                        slot.queued = false;
                        self.drive(k, false, false);
                    }
                }
            }
            // This turn's writes reach the backlog before their replies
            // are sent (batched) and before the worker waits again.
            if let Some(r) = self.shared.repl.as_deref() {
                r.node.flush_pending();
            }
            if batching {
                self.batched_sends();
            }
            if self.shared.stopping.load(Relaxed) {
                break;
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.housekeeping();
            }
        }
        self.finish_replies(&mut events);
        for k in self.slots.keys() {
            self.close(k);
        }
    }

    /// SIGTERM/SIGINT: replies already gathered for requests we read are
    /// delivered before the sockets close (bounded by STOP_FLUSH, so a
    /// client that never reads cannot hold the exit up).
    fn finish_replies(&mut self, events: &mut Events) {
        let deadline = Instant::now() + STOP_FLUSH;
        loop {
            let mut pending = false;
            for i in 0..self.slots.index_bound() {
                let Some(k) = self.slots.key_at(i) else {
                    continue;
                };
                if let Some(done) = self.with_conn(k, false, |slot, env| slot.conn.stop_flush(env))
                {
                    pending |= !done;
                }
            }
            if !pending || Instant::now() >= deadline {
                return;
            }
            let _ = self.poll.poll(events, Some(Duration::from_millis(5)));
        }
    }

    /// Takes the sockets the acceptor queued for us.
    fn adopt(&mut self) {
        while let Ok(mut nc) = self.rx.try_recv() {
            // Registered under the key the slot will have, before the
            // connection exists: a failure leaves the table untouched.
            let key = self.slots.vacant_key();
            if let Err(e) = self.poll.registry().register(
                &mut nc.stream,
                key.to_token(),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                if self.shared.verbose() > 0 {
                    eprintln!("mnemo: cannot register connection: {e}");
                }
                self.forget(&nc.info);
                continue;
            }
            if self.shared.verbose() > 1 {
                eprintln!("<{} new auto-negotiating client connection", nc.info.fd);
            }
            if self.shared.log.wants(watch::CONNEVENTS) {
                self.log_conn(&nc.info, None);
            }
            let conn = Conn::new(
                nc.stream,
                nc.info,
                self.shared.settings.engine.item_size_max,
            );
            let fixed = match self.batch.as_mut() {
                Some(b) => b.register(key.index(), conn.raw_fd()),
                None => false,
            };
            let k = self.slots.insert(Slot {
                conn,
                queued: false,
                send_queued: false,
                fixed,
            });
            debug_assert_eq!(k, key, "insert fills the vacant slot");
            // The socket may already hold a request; edge-triggered
            // readiness would not report bytes that arrived before
            // registration on every platform, so try at once.
            self.drive(k, true, true);
        }
    }

    /// Runs `f` on connection `k` with what it borrows from the worker;
    /// `None` if it is gone.
    fn with_conn<R>(
        &mut self,
        k: Key,
        defer_send: bool,
        f: impl FnOnce(&mut Slot, &mut Env) -> R,
    ) -> Option<R> {
        let slot = self.slots.get_mut(k)?;
        let mut env = Env {
            ctx: Ctx {
                shared: &self.shared,
                ts: &self.ts,
                ws: &self.ws,
                fd: slot.conn.info.fd,
                ring: self.id,
                budget: self.budget.as_ref(),
                pending_output: false,
            },
            rbuf_pool: &mut self.rbuf_pool,
            defer_send,
        };
        Some(f(slot, &mut env))
    }

    fn drive(&mut self, i: Key, readable: bool, writable: bool) {
        let defer = self.defer_send;
        let Some((step, send, yielded)) = self.with_conn(i, defer, |slot, env| {
            let step = slot.conn.drive(env, readable, writable);
            let send = !slot.send_queued && slot.conn.send_target().is_some();
            slot.send_queued |= send;
            let yielded = step == Drive::Yield && !slot.queued;
            slot.queued |= yielded;
            (step, send, yielded)
        }) else {
            return;
        };
        if send {
            self.sends.push(i);
        }
        if yielded {
            self.yielded.push_back(i);
        }
        match step {
            Drive::Close => self.close(i),
            Drive::Watch(flags) => self.hand_to_logger(i, flags),
            Drive::Repl(hello) => self.hand_to_repl(i, *hello),
            Drive::Wait | Drive::Yield => {}
        }
    }

    /// `watch`: the connection leaves this loop (and the ring) for the
    /// logger thread, which only writes to it from now on.
    /// Takes a removed slot's socket out of this worker's poll and ring and
    /// gives back its buffer budget: what leaving the worker means, whether
    /// the connection closes or moves to the logger thread.
    fn detach(&mut self, i: Key, slot: &mut Slot) {
        let _ = self.poll.registry().deregister(&mut slot.conn.stream);
        if slot.fixed {
            if let Some(b) = self.batch.as_mut() {
                b.unregister(i.index());
            }
        }
        if let Some(b) = self.budget.as_ref() {
            slot.conn.release_budget(b);
        }
    }

    fn hand_to_logger(&mut self, i: Key, flags: u16) {
        let Some(mut slot) = self.slots.remove(i) else {
            self.shared.log.unadmit();
            return;
        };
        self.detach(i, &mut slot);
        let Conn { stream, info, .. } = slot.conn;
        watch::adopt(&self.shared, stream, info, flags);
    }

    /// `mn_repl HELLO`: the connection leaves this loop for a
    /// replication sender thread of its own.
    fn hand_to_repl(&mut self, i: Key, hello: crate::repl::Handoff) {
        let Some(mut slot) = self.slots.remove(i) else {
            return;
        };
        self.detach(i, &mut slot);
        let Conn { stream, info, .. } = slot.conn;
        crate::repl::sender::adopt(Arc::clone(&self.shared), stream, info, hello);
    }

    /// A `watch connevents` line for connection `info`; `reason` for a
    /// close.
    fn log_conn(&self, info: &ConnInfo, reason: Option<&'static str>) {
        let (rip, rport, transport) = watch::lines::endpoint(&info.addr);
        let line = watch::lines::ConnLine {
            rip,
            rport,
            transport,
            cfd: info.fd,
            reason,
        };
        self.shared.log.log(self.id, watch::CONNEVENTS, |out| {
            watch::lines::conn(out, &line)
        });
    }

    /// Runs the round's `reqs` through the ring into `results`.
    fn run_batch(&mut self) {
        self.results.clear();
        let Some(batch) = self.batch.as_mut() else {
            return;
        };
        if self.reqs.is_empty() {
            return;
        }
        // SAFETY: every request was made this round, just before this
        // call, from a connection in `self.slots`: a receive into the free
        // tail of its read buffer (`Conn::prefill_target`), a send of its
        // queued reply bytes (`Conn::send_target`). Each connection is in
        // the list at most once (epoll reports a descriptor once per wait;
        // `send_queued` keeps a connection out of `sends` twice), and none
        // runs, closes or touches its buffers between then and the end of
        // `run`. The buffers are heap allocations of the connections, so
        // they stay put even if the slot table grows.
        if let Err(e) = unsafe { batch.run(&self.reqs, &mut self.results) } {
            fatal_batch(e);
        }
    }

    /// Issues the first read of every ready connection in one submission;
    /// each connection then finds its bytes buffered when it runs. A
    /// connection that got a read this way is driven as not readable
    /// unless that read filled its buffer (the socket may hold more).
    fn batched_reads(&mut self) {
        self.reqs.clear();
        for k in 0..self.ready.len() {
            let (i, readable, writable) = self.ready[k];
            if !readable {
                continue;
            }
            let req = self.with_conn(i, true, |slot, env| {
                let fd = slot.conn.raw_fd();
                let dst = slot.conn.prefill_target(env)?;
                Some(Req {
                    conn: i,
                    fd,
                    addr: dst.as_mut_ptr() as usize,
                    len: dst.len(),
                    send: false,
                    fixed: slot.fixed,
                })
            });
            if let Some(Some(req)) = req {
                self.reqs.push(req);
                // prefill_target recorded the readiness; the read's result
                // decides whether the connection reads again.
                self.ready[k] = (i, false, writable);
            }
        }
        self.run_batch();
        for k in 0..self.results.len() {
            let (r, res) = self.results[k];
            let (i, len) = (self.reqs[r].conn, self.reqs[r].len);
            self.with_conn(i, true, |slot, env| slot.conn.prefill_done(env, res, len));
        }
    }

    /// Sends the replies the round's connections left queued, in one
    /// submission, then lets each finished connection run on (it may have
    /// more buffered requests, or give its read buffer back).
    fn batched_sends(&mut self) {
        self.defer_send = false;
        self.reqs.clear();
        for &i in &self.sends {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            slot.send_queued = false;
            if let Some(bytes) = slot.conn.send_target() {
                self.reqs.push(Req {
                    conn: i,
                    fd: slot.conn.raw_fd(),
                    addr: bytes.as_ptr() as usize,
                    len: bytes.len(),
                    send: true,
                    fixed: slot.fixed,
                });
            }
        }
        self.sends.clear();
        self.run_batch();
        for k in 0..self.results.len() {
            let (r, res) = self.results[k];
            let i = self.reqs[r].conn;
            match self.with_conn(i, false, |slot, env| slot.conn.send_done(env, res)) {
                Some(Ok(true)) => self.drive(i, false, false),
                Some(Err(_)) => self.close(i),
                Some(Ok(false)) | None => {}
            }
        }
    }

    fn close(&mut self, i: Key) {
        self.close_why(i, None);
    }

    /// Closes connection `i`; `why` names the reason `watch connevents`
    /// reports when it is not the connection's own (normal or error).
    fn close_why(&mut self, i: Key, why: Option<&'static str>) {
        let Some(mut slot) = self.slots.remove(i) else {
            return;
        };
        if self.shared.log.wants(watch::CONNEVENTS) && !self.shared.stopping.load(Relaxed) {
            let reason = why.unwrap_or(if slot.conn.normal_close {
                "normal"
            } else {
                "error"
            });
            self.log_conn(&slot.conn.info, Some(reason));
        }
        self.detach(i, &mut slot);
        if slot.conn.watch_pending() {
            // Closed before it could become a watcher.
            self.shared.log.unadmit();
        }
        if self.shared.verbose() > 1 {
            eprintln!("<{} connection closed.", slot.conn.info.fd);
        }
        self.forget(&slot.conn.info);
    }

    fn forget(&self, info: &ConnInfo) {
        self.shared.conns.lock().remove(&info.fd);
        self.shared.global.curr_conns.fetch_sub(1, Relaxed);
    }

    /// Once a second: close idle clients, refresh buffer gauges.
    fn housekeeping(&mut self) {
        let idle = self.shared.settings.idle_timeout;
        let now = self.shared.engine.clock().now();
        let (mut rcount, mut rbytes, mut wcount, mut wbytes) = (0u64, 0u64, 0u64, 0u64);
        let mut kick = Vec::new();
        for (i, slot) in self.slots.iter() {
            let (r, w) = (slot.conn.rbuf_bytes() as u64, slot.conn.wbuf_bytes() as u64);
            rcount += u64::from(r > 0);
            rbytes += r;
            wcount += u64::from(w > 0);
            wbytes += w;
            if idle > 0 && slot.conn.is_idle() {
                let last = slot.conn.info.last_cmd.load(Relaxed);
                if now.saturating_sub(last) > idle {
                    kick.push(i);
                }
            }
        }
        let free: u64 = self.rbuf_pool.iter().map(|b| b.capacity() as u64).sum();
        self.ws
            .read_buf_count
            .set(rcount + self.rbuf_pool.len() as u64);
        self.ws.read_buf_bytes.set(rbytes + free);
        self.ws.read_buf_bytes_free.set(free);
        self.ws.response_obj_count.set(wcount);
        self.ws.response_obj_bytes.set(wbytes);
        for i in kick {
            self.ws.idle_kicks.incr();
            self.close_why(i, Some("idle_timeout"));
        }
    }
}

/// The ring failed in a way that leaves it unknown whether the kernel
/// still holds connection buffers; carrying on could let it write into
/// memory that has been reused.
fn fatal_batch(e: io::Error) -> ! {
    eprintln!("mnemo: io_uring submission failed: {e}");
    std::process::abort();
}
