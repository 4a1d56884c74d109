//! The load engine: worker threads, each with one mio poll and many
//! non-blocking connections, driving closed-loop (connections x depth) or
//! open-loop (fixed rate) traffic.
//!
//! Per request the hot path does: append the encoded request to the
//! connection's reused output buffer, push (kind, time) on a preallocated
//! ring, and later scan the reply in place in the read buffer. Writes are
//! one syscall per batch and reads one per readiness event (plus the
//! final EAGAIN), never one per request.

use crate::cpu::{self, CpuProbe, CpuTimes};
use crate::scan::{scan, Scan};
use crate::timer::Timer;
use crate::workload::{Gen, Kind, Protocol, Spec};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use mnemo_net::{BlockingStream, Fill, ReadBuf, Stream};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub use crate::target::{Target, TlsClient};

#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// Each connection keeps `depth` requests in flight.
    Closed { depth: usize },
    /// `rate` requests/s in total, latency counted from the intended send
    /// time. A connection holds at most `max_outstanding` requests; past that
    /// the schedule backs up (and its delay is still charged to latency).
    Open { rate: f64, max_outstanding: usize },
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: Target,
    pub spec: Spec,
    pub threads: usize,
    pub connections: usize,
    pub load: Load,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub fill: bool,
    pub fill_depth: usize,
    pub seed: u64,
    pub progress: bool,
    pub cpu: CpuProbe,
    pub drain_timeout: Duration,
    pub reply_timeout: Duration,
    /// Unmeasured run of the workload after the fill.
    pub warmup: Option<Duration>,
}

/// Replies and failures of one phase of one or all threads; the run's
/// summary reports them under the same names.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub responses: u64,
    pub sets: u64,
    pub gets: u64,
    pub hits: u64,
    pub misses: u64,
    pub error_replies: u64,
    /// Requests that never got a reply (connection failed or drain timed out).
    pub lost: u64,
    pub failed_connections: u64,
    pub first_failure: Option<String>,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        self.responses += o.responses;
        self.sets += o.sets;
        self.gets += o.gets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.error_replies += o.error_replies;
        self.lost += o.lost;
        self.failed_connections += o.failed_connections;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&o.first_failure);
        }
    }
}

/// Counts from one phase of one or all threads.
#[derive(Clone, Debug)]
pub struct PhaseStats {
    pub sent: u64,
    pub counts: Counts,
    /// Open loop: requests that were due by the end but never sent because
    /// every connection was at --max-outstanding (the target rate was not met).
    pub unsent_due: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
    /// Open loop: how late each request was handed to the socket relative to
    /// its scheduled time. Large values mean the generator, not the server,
    /// is adding latency.
    pub send_lag: Histogram<u64>,
}

impl PhaseStats {
    fn new() -> Self {
        PhaseStats {
            sent: 0,
            counts: Counts::default(),
            unsent_due: 0,
            elapsed: Duration::ZERO,
            hist: new_hist(),
            send_lag: new_hist(),
        }
    }

    fn merge(&mut self, o: &PhaseStats) {
        self.sent += o.sent;
        self.counts.merge(&o.counts);
        self.unsent_due += o.unsent_due;
        self.elapsed = self.elapsed.max(o.elapsed);
        // Same bounds everywhere, so adding cannot fail; saturate if it did.
        let _ = self.hist.add(&o.hist);
        let _ = self.send_lag.add(&o.send_lag);
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 1 hour at 3 significant digits; constant, valid bounds.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// The whole run's result.
#[derive(Debug)]
pub struct Outcome {
    pub fill: Option<PhaseStats>,
    pub measured: PhaseStats,
    pub cpu_before: Option<CpuTimes>,
    pub cpu_after: Option<CpuTimes>,
    pub cpu_error: Option<String>,
    /// This process's CPU seconds during the measured phase.
    pub bench_cpu: Option<f64>,
}

/// Progress counters a worker publishes for the once-a-second line.
#[repr(align(128))]
#[derive(Default)]
struct Live {
    responses: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

struct Shared {
    barrier: Barrier,
    live: Vec<Live>,
}

pub fn run(cfg: &RunConfig) -> Result<Outcome, String> {
    cfg.spec.validate()?;
    if cfg.threads == 0 || cfg.connections == 0 {
        return Err("--threads and --connections must be at least 1".into());
    }
    if cfg.connections < cfg.threads {
        return Err("--connections must be at least --threads".into());
    }
    let depth = match cfg.load {
        Load::Closed { depth } => depth,
        Load::Open {
            max_outstanding, ..
        } => max_outstanding,
    };
    // In-flight rings are preallocated at this size per connection.
    if depth.max(cfg.fill_depth) > MAX_DEPTH {
        return Err(format!(
            "--depth, --fill-depth and --max-outstanding are limited to {MAX_DEPTH}"
        ));
    }
    if cfg.duration.is_none() && cfg.requests.is_none() {
        return Err("give --duration or --requests".into());
    }
    let shared = Arc::new(Shared {
        barrier: Barrier::new(cfg.threads + 1),
        live: (0..cfg.threads).map(|_| Live::default()).collect(),
    });
    let mut handles = Vec::with_capacity(cfg.threads);
    for t in 0..cfg.threads {
        let cfg = cfg.clone();
        let shared = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || worker(&cfg, t, &shared))
            .map_err(|e| format!("spawning thread: {e}"))?;
        handles.push(h);
    }
    if cfg.fill && cfg.progress {
        eprintln!("filling {} keys ...", cfg.spec.key_count);
    }
    if let (Some(w), true) = (cfg.warmup, cfg.progress) {
        eprintln!("warming up for {:.1} s ...", w.as_secs_f64());
    }
    // Workers connect and fill, then meet here; the server's CPU is read
    // between fill and measurement so the fill does not count.
    shared.barrier.wait();
    let (cpu_before, mut cpu_error) = match cpu::read(&cfg.cpu) {
        Ok(c) => (c, None),
        Err(e) => (None, Some(e)),
    };
    let own_before = cpu::own_times();
    let start = Instant::now();
    shared.barrier.wait();

    if cfg.progress {
        progress_loop(&handles, &shared, start);
    }
    let mut fill = PhaseStats::new();
    let mut measured = PhaseStats::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((f, m))) => {
                if let Some(f) = f {
                    fill.merge(&f);
                }
                measured.merge(&m);
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("worker thread panicked".to_string()),
        }
    }
    let bench_cpu = match (own_before, cpu::own_times()) {
        (Some(b), Some(a)) => Some(a.user + a.system - b.user - b.system),
        _ => None,
    };
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let cpu_after = if cpu_before.is_some() {
        match cpu::read(&cfg.cpu) {
            Ok(c) => c,
            Err(e) => {
                cpu_error = Some(e);
                None
            }
        }
    } else {
        None
    };
    Ok(Outcome {
        fill: cfg.fill.then_some(fill),
        measured,
        cpu_before,
        cpu_after,
        cpu_error,
        bench_cpu,
    })
}

fn progress_loop(
    handles: &[std::thread::JoinHandle<WorkerResult>],
    shared: &Shared,
    start: Instant,
) {
    let sum = |f: fn(&Live) -> &AtomicU64| -> u64 {
        shared
            .live
            .iter()
            .map(|l| f(l).load(Ordering::Relaxed))
            .sum()
    };
    let mut last = (0u64, 0u64, 0u64);
    let mut tick = 1u64;
    loop {
        let next = start + Duration::from_secs(tick);
        while Instant::now() < next {
            if handles.iter().all(|h| h.is_finished()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(next - Instant::now().min(next)));
        }
        let r = sum(|l| &l.responses);
        let h = sum(|l| &l.hits);
        let m = sum(|l| &l.misses);
        let e = sum(|l| &l.errors);
        eprintln!(
            "[{tick:>4}s] {:>10} ops/s  hits/s {:>10}  misses/s {:>9}  total {:>12}  errors {}",
            r - last.0,
            h - last.1,
            m - last.2,
            r,
            e
        );
        last = (r, h, m);
        tick += 1;
    }
}

type WorkerResult = Result<(Option<PhaseStats>, PhaseStats), String>;

fn worker(cfg: &RunConfig, t: usize, shared: &Shared) -> WorkerResult {
    let threads = cfg.threads as u64;
    let conns = cfg.connections / cfg.threads + usize::from(t < cfg.connections % cfg.threads);
    let mut gen = Gen::new(&cfg.spec, cfg.seed, t as u64, threads);
    let mut w = Worker::connect(cfg, conns);
    let fill = match (&mut w, cfg.fill) {
        (Ok(w), true) => {
            let k = cfg.spec.key_count;
            let lo = k * t as u64 / threads;
            let hi = k * (t as u64 + 1) / threads;
            let mut src = FillSource {
                gen: &mut gen,
                next: lo,
                end: hi,
            };
            let load = Load::Closed {
                depth: cfg.fill_depth.max(1),
            };
            Some(w.drive(&mut src, load, None, None))
        }
        _ => None,
    };
    let load = match cfg.load {
        Load::Open {
            rate,
            max_outstanding,
        } => Load::Open {
            rate: rate / threads as f64,
            max_outstanding,
        },
        c => c,
    };
    let fill_ok = match &fill {
        Some(f) => f.counts.responses == f.sent && f.counts.failed_connections == 0,
        None => true,
    };
    if let (Ok(w), Some(d), true) = (&mut w, cfg.warmup, fill_ok) {
        // Same traffic, unmeasured, so caches and connections are warm and
        // the first round of a compare is not penalised.
        let mut src = WorkSource {
            gen: &mut gen,
            remaining: None,
        };
        w.drive(&mut src, load, Some(d), None);
    }
    shared.barrier.wait();
    shared.barrier.wait();
    let mut w = w?;
    if let Some(f) = &fill {
        if f.counts.responses != f.sent || f.counts.failed_connections > 0 {
            return Err(format!(
                "fill phase: {} replies lost, {} connections failed: {}",
                f.sent - f.counts.responses,
                f.counts.failed_connections,
                f.counts.first_failure.as_deref().unwrap_or("unknown")
            ));
        }
    }
    let share = |n: u64| n / threads + u64::from((t as u64) < n % threads);
    let mut src = WorkSource {
        gen: &mut gen,
        remaining: cfg.requests.map(share),
    };
    let measured = w.drive(&mut src, load, cfg.duration, Some(&shared.live[t]));
    Ok((fill, measured))
}

trait Source {
    fn next(&mut self, out: &mut Vec<u8>) -> Option<Kind>;
}

struct FillSource<'a> {
    gen: &'a mut Gen,
    next: u64,
    end: u64,
}

impl Source for FillSource<'_> {
    fn next(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        if self.next >= self.end {
            return None;
        }
        self.next += 1;
        Some(self.gen.set(self.next - 1, out))
    }
}

struct WorkSource<'a> {
    gen: &'a mut Gen,
    remaining: Option<u64>,
}

impl Source for WorkSource<'_> {
    fn next(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        if let Some(r) = &mut self.remaining {
            if *r == 0 {
                return None;
            }
            *r -= 1;
        }
        Some(self.gen.next(out))
    }
}

struct Conn {
    stream: Stream,
    out: Vec<u8>,
    out_pos: usize,
    inb: ReadBuf,
    /// (what was asked, send or intended time in ns since the phase epoch)
    ring: VecDeque<(Kind, u64)>,
    dead: bool,
    /// Already on the open loop's to-flush list this round.
    queued: bool,
}

struct Worker {
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    protocol: Protocol,
    drain_timeout: Duration,
    reply_timeout: Duration,
    /// Open loop only; its token is `conns.len()`.
    timer: Option<Timer>,
}

const READ_BUF: usize = 64 * 1024;
const MAX_DEPTH: usize = 1 << 16;

impl Worker {
    fn connect(cfg: &RunConfig, n: usize) -> Result<Worker, String> {
        let poll = Poll::new().map_err(|e| format!("creating poll: {e}"))?;
        let ring_cap = match cfg.load {
            Load::Closed { depth } => depth.max(cfg.fill_depth),
            Load::Open {
                max_outstanding, ..
            } => max_outstanding.max(cfg.fill_depth),
        };
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let err = |e: io::Error| format!("connecting to {}: {e}", cfg.target);
            let blocking = match &cfg.target {
                Target::Tcp(addr) => {
                    let s = std::net::TcpStream::connect_timeout(addr, Duration::from_secs(3))
                        .map_err(err)?;
                    s.set_nodelay(true).map_err(err)?;
                    BlockingStream::Tcp(s)
                }
                Target::Unix(p) => {
                    BlockingStream::Unix(std::os::unix::net::UnixStream::connect(p).map_err(err)?)
                }
                // The timeouts connect_tls sets stop mattering once the
                // socket is non-blocking below.
                Target::Tls(addr, t) => t.connect(*addr, Duration::from_secs(3)).map_err(err)?,
            };
            let mut stream = blocking.into_nonblocking().map_err(err)?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("registering connection: {e}"))?;
            conns.push(Conn {
                stream,
                out: Vec::with_capacity(64 * 1024),
                out_pos: 0,
                inb: ReadBuf::with_capacity(READ_BUF),
                ring: VecDeque::with_capacity(ring_cap),
                dead: false,
                queued: false,
            });
        }
        let timer = match cfg.load {
            Load::Open { .. } => Some(
                Timer::new(poll.registry(), Token(n))
                    .map_err(|e| format!("creating timerfd: {e}"))?,
            ),
            Load::Closed { .. } => None,
        };
        Ok(Worker {
            timer,
            poll,
            events: Events::with_capacity(1024),
            conns,
            protocol: cfg.spec.protocol,
            drain_timeout: cfg.drain_timeout,
            reply_timeout: cfg.reply_timeout,
        })
    }

    /// Runs one phase until the source is exhausted or `duration` passes,
    /// then waits (bounded) for the replies still in flight.
    fn drive(
        &mut self,
        src: &mut dyn Source,
        load: Load,
        duration: Option<Duration>,
        live: Option<&Live>,
    ) -> PhaseStats {
        let mut st = PhaseStats::new();
        let epoch = Instant::now();
        let deadline = duration.map(|d| epoch + d);
        let mut inflight = 0u64;
        let mut sending = true;
        let mut exhausted = false;
        let mut drain_deadline = epoch;
        let mut published = (0u64, 0u64, 0u64, 0u64);
        // (responses seen, when that count last changed)
        let mut progress = (0u64, epoch);
        // Open loop schedule: request k is due at k * interval ns.
        let (interval_ns, cap) = match load {
            Load::Open {
                rate,
                max_outstanding,
            } => (1e9 / rate.max(1e-9), max_outstanding.max(1)),
            Load::Closed { depth } => (0.0, depth.max(1)),
        };
        let open = matches!(load, Load::Open { .. });
        let mut k: u64 = 0;
        let mut rr = 0usize;
        let mut dirty: Vec<usize> = Vec::with_capacity(self.conns.len());
        // The send time (ns since epoch) the timerfd is set for, if any.
        let mut armed_for: Option<u64> = None;

        if !open {
            for i in 0..self.conns.len() {
                let now_ns = epoch.elapsed().as_nanos() as u64;
                exhausted |= self.top_up(i, src, cap, now_ns, &mut st, &mut inflight);
                self.flush(i, &mut st, &mut inflight);
            }
        }
        loop {
            let now = Instant::now();
            let now_ns = (now - epoch).as_nanos() as u64;
            // Open loop: send what is due, but nothing due after the end.
            let send_until = match duration {
                Some(d) => now_ns.min((d.as_nanos() as u64).saturating_sub(1)),
                None => now_ns,
            };
            let mut blocked = false;
            if open && sending {
                while (k as f64 * interval_ns) as u64 <= send_until {
                    let n = self.conns.len();
                    let Some(i) = (0..n)
                        .map(|j| (rr + j) % n)
                        .find(|&i| !self.conns[i].dead && self.conns[i].ring.len() < cap)
                    else {
                        // Every connection is at --max-outstanding: only a
                        // reply can free one, so wait for replies below.
                        blocked = true;
                        break;
                    };
                    rr = (i + 1) % n;
                    let c = &mut self.conns[i];
                    let Some(kind) = src.next(&mut c.out) else {
                        exhausted = true;
                        break;
                    };
                    let intended = (k as f64 * interval_ns) as u64;
                    c.ring.push_back((kind, intended));
                    if live.is_some() {
                        st.send_lag
                            .saturating_record(now_ns.saturating_sub(intended).max(1));
                    }
                    count_sent(&mut st, kind);
                    inflight += 1;
                    k += 1;
                    if !c.queued {
                        c.queued = true;
                        dirty.push(i);
                    }
                }
                for &i in &dirty {
                    self.conns[i].queued = false;
                    self.flush(i, &mut st, &mut inflight);
                }
                dirty.clear();
            }
            let stop = crate::stop::requested();
            if sending && (stop || exhausted || deadline.is_some_and(|d| now >= d)) {
                sending = false;
                if let (true, false, false, Some(d)) = (open, exhausted, stop, duration) {
                    // Requests with k * interval < d were due.
                    let due = (d.as_nanos() as f64 / interval_ns).ceil() as u64;
                    st.unsent_due = due.saturating_sub(k);
                }
                drain_deadline = now + self.drain_timeout;
            }
            if st.counts.responses != progress.0 || inflight == 0 {
                progress = (st.counts.responses, now);
            } else if now - progress.1 >= self.reply_timeout {
                // A server that swallows requests (e.g. an unsupported
                // protocol) must not hang a request-count run forever.
                st.counts.lost += inflight;
                st.counts.first_failure.get_or_insert_with(|| {
                    format!(
                        "no reply for {:?} with {inflight} outstanding",
                        self.reply_timeout
                    )
                });
                break;
            }
            if self.conns.iter().all(|c| c.dead) {
                st.counts.lost += inflight;
                st.counts
                    .first_failure
                    .get_or_insert_with(|| "all connections failed".to_string());
                break;
            }
            if !sending {
                if inflight == 0 {
                    break;
                }
                if now >= drain_deadline {
                    st.counts.lost += inflight;
                    if st.counts.first_failure.is_none() {
                        st.counts.first_failure =
                            Some(format!("{inflight} replies missing after drain timeout"));
                    }
                    break;
                }
            }
            let timeout = if sending {
                if open && blocked {
                    Duration::from_millis(100)
                } else if open {
                    let due = (k as f64 * interval_ns) as u64;
                    let wait = due.saturating_sub(now_ns);
                    // Within a couple of microseconds the syscalls cost
                    // more than the wait; just go round again.
                    if wait > 2_000 {
                        // Re-arming for the same instant would only add a
                        // syscall per wakeup.
                        if let (Some(t), false) = (&self.timer, armed_for == Some(due)) {
                            if let Err(e) = t.arm(wait) {
                                st.counts
                                    .first_failure
                                    .get_or_insert_with(|| format!("timerfd: {e}"));
                                st.counts.lost += inflight;
                                break;
                            }
                            armed_for = Some(due);
                        }
                        Duration::from_millis(100)
                    } else {
                        Duration::ZERO
                    }
                } else {
                    deadline.map_or(Duration::from_millis(100), |d| {
                        d.saturating_duration_since(now)
                    })
                }
            } else {
                drain_deadline.saturating_duration_since(now)
            }
            .min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                st.counts
                    .first_failure
                    .get_or_insert_with(|| format!("poll: {e}"));
                st.counts.lost += inflight;
                break;
            }
            let mut ready = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for ev in ready.iter() {
                let i = ev.token().0;
                if i == self.conns.len() {
                    if let Some(t) = &self.timer {
                        t.clear();
                    }
                    armed_for = None;
                    continue;
                }
                if i > self.conns.len() || self.conns[i].dead {
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    let hup = ev.is_read_closed() || ev.is_error();
                    self.on_readable(i, epoch, live.is_some(), hup, &mut st, &mut inflight);
                }
                if !open && sending && !self.conns[i].dead {
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    exhausted |= self.top_up(i, src, cap, now_ns, &mut st, &mut inflight);
                }
                if !self.conns[i].dead {
                    self.flush(i, &mut st, &mut inflight);
                }
            }
            ready.clear();
            self.events = ready;
            if let Some(l) = live {
                publish(l, &st, &mut published);
            }
        }
        st.elapsed = epoch.elapsed();
        if let Some(l) = live {
            publish(l, &st, &mut published);
        }
        st
    }

    /// Fills a closed-loop connection back up to `depth`; true when the
    /// source has run dry.
    fn top_up(
        &mut self,
        i: usize,
        src: &mut dyn Source,
        depth: usize,
        now_ns: u64,
        st: &mut PhaseStats,
        inflight: &mut u64,
    ) -> bool {
        let c = &mut self.conns[i];
        if c.dead {
            return false;
        }
        while c.ring.len() < depth {
            let Some(kind) = src.next(&mut c.out) else {
                return true;
            };
            c.ring.push_back((kind, now_ns));
            count_sent(st, kind);
            *inflight += 1;
        }
        false
    }

    fn flush(&mut self, i: usize, st: &mut PhaseStats, inflight: &mut u64) {
        let c = &mut self.conns[i];
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(0) => {
                    self.fail(i, "connection closed while writing".into(), st, inflight);
                    return;
                }
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, format!("write: {e}"), st, inflight);
                    return;
                }
            }
        }
        c.out.clear();
        c.out_pos = 0;
        // TLS: records the socket did not take wait in the session; any
        // later event (writable included) sends them.
        if c.stream.wants_write() {
            match c.stream.flush_tls() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => self.fail(i, format!("write: {e}"), st, inflight),
            }
        }
    }

    fn on_readable(
        &mut self,
        i: usize,
        epoch: Instant,
        record: bool,
        hup: bool,
        st: &mut PhaseStats,
        inflight: &mut u64,
    ) {
        let protocol = self.protocol;
        loop {
            let c = &mut self.conns[i];
            // No limit: one reply bigger than the buffer (a large
            // multi-get) doubles it.
            let drained = match c.inb.fill_from(&mut c.stream, 1, usize::MAX) {
                // A short read drained the socket; with edge-triggered epoll
                // later bytes raise a new event, so skip the EAGAIN read.
                // (Not after a hangup: read on to see the EOF.)
                Ok(Fill::Data { short, .. }) => !hup && short,
                Ok(Fill::Eof) => {
                    let msg = "server closed the connection".to_string();
                    self.fail(i, msg, st, inflight);
                    return;
                }
                Ok(Fill::WouldBlock) => return,
                Ok(Fill::Full) => {
                    self.fail(i, "reply too large".into(), st, inflight);
                    return;
                }
                Err(e) => {
                    self.fail(i, format!("read: {e}"), st, inflight);
                    return;
                }
            };
            let now_ns = epoch.elapsed().as_nanos() as u64;
            while let Some(&(kind, t)) = c.ring.front() {
                match scan(protocol, c.inb.filled(), kind) {
                    Scan::Incomplete => break,
                    Scan::Reply {
                        len,
                        hits,
                        misses,
                        error,
                    } => {
                        c.inb.consume(len);
                        c.ring.pop_front();
                        *inflight -= 1;
                        st.counts.responses += 1;
                        st.counts.hits += hits as u64;
                        st.counts.misses += misses as u64;
                        st.counts.error_replies += error as u64;
                        if record {
                            st.hist.saturating_record(now_ns.saturating_sub(t).max(1));
                        }
                    }
                    Scan::Desync(why) => {
                        self.fail(i, format!("protocol desync: {why}"), st, inflight);
                        return;
                    }
                }
            }
            if !c.inb.is_empty() && c.ring.is_empty() {
                self.fail(i, "reply with no request outstanding".into(), st, inflight);
                return;
            }
            if drained {
                return;
            }
        }
    }

    fn fail(&mut self, i: usize, why: String, st: &mut PhaseStats, inflight: &mut u64) {
        let c = &mut self.conns[i];
        c.dead = true;
        let n = c.ring.len() as u64;
        c.ring.clear();
        st.counts.lost += n;
        *inflight -= n;
        st.counts.failed_connections += 1;
        // Best effort: the fd is closed when the worker drops anyway.
        let _ = self.poll.registry().deregister(&mut c.stream);
        if st.counts.first_failure.is_none() {
            st.counts.first_failure = Some(why);
        }
    }
}

fn count_sent(st: &mut PhaseStats, kind: Kind) {
    st.sent += 1;
    match kind {
        Kind::Set => st.counts.sets += 1,
        Kind::Get(_) => st.counts.gets += 1,
    }
}

fn publish(l: &Live, st: &PhaseStats, last: &mut (u64, u64, u64, u64)) {
    let now = (
        st.counts.responses,
        st.counts.hits,
        st.counts.misses,
        st.counts.error_replies,
    );
    if now != *last {
        l.responses.fetch_add(now.0 - last.0, Ordering::Relaxed);
        l.hits.fetch_add(now.1 - last.1, Ordering::Relaxed);
        l.misses.fetch_add(now.2 - last.2, Ordering::Relaxed);
        l.errors.fetch_add(now.3 - last.3, Ordering::Relaxed);
        *last = now;
    }
}
