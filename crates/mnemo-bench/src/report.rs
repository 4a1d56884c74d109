//! Turning an `Outcome` into figures, for people and for scripts.

use crate::runner::{Counts, Load, Outcome, RunConfig};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerCpu {
    pub user_s: f64,
    pub system_s: f64,
    pub total_s: f64,
    pub ops_per_cpu_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub target: String,
    pub protocol: crate::workload::Protocol,
    pub mode: String,
    pub threads: usize,
    pub connections: usize,
    pub depth: Option<usize>,
    pub rate: Option<f64>,
    pub key_count: u64,
    pub key_pattern: String,
    pub multiget: u16,
    pub fill_keys: Option<u64>,
    pub fill_seconds: Option<f64>,
    pub fill_error_replies: Option<u64>,
    pub seconds: f64,
    pub requests_sent: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub ops_per_s: f64,
    pub keys_per_s: f64,
    pub latency: Latency,
    pub server_cpu: Option<ServerCpu>,
    pub server_cpu_error: Option<String>,
    /// The load generator's own CPU seconds over the measured phase; near
    /// `seconds` x its cores means the bench, not the server, is the limit.
    pub bench_cpu_s: Option<f64>,
    pub unsent_due: u64,
    /// Open loop: lateness of sends against the schedule (generator delay).
    pub send_lag: Option<Latency>,
}

fn latency(h: &hdrhistogram::Histogram<u64>) -> Latency {
    let us = |ns: u64| ns as f64 / 1000.0;
    if h.is_empty() {
        return Latency {
            p50_us: 0.0,
            p90_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            mean_us: 0.0,
        };
    }
    Latency {
        p50_us: us(h.value_at_quantile(0.50)),
        p90_us: us(h.value_at_quantile(0.90)),
        p99_us: us(h.value_at_quantile(0.99)),
        p999_us: us(h.value_at_quantile(0.999)),
        max_us: us(h.max()),
        mean_us: h.mean() / 1000.0,
    }
}

pub fn summarize(cfg: &RunConfig, o: &Outcome) -> Summary {
    let m = &o.measured;
    let secs = m.elapsed.as_secs_f64().max(1e-9);
    let server_cpu = match (o.cpu_before, o.cpu_after) {
        (Some(b), Some(a)) => {
            let user = a.user - b.user;
            let system = a.system - b.system;
            let total = user + system;
            Some(ServerCpu {
                user_s: user,
                system_s: system,
                total_s: total,
                ops_per_cpu_s: if total > 0.0 {
                    m.counts.responses as f64 / total
                } else {
                    0.0
                },
            })
        }
        _ => None,
    };
    let (mode, depth, rate) = match cfg.load {
        Load::Closed { depth } => ("closed".to_string(), Some(depth), None),
        Load::Open { rate, .. } => ("open".to_string(), None, Some(rate)),
    };
    Summary {
        target: cfg.target.to_string(),
        protocol: cfg.spec.protocol,
        mode,
        threads: cfg.threads,
        connections: cfg.connections,
        depth,
        rate,
        key_count: cfg.spec.key_count,
        key_pattern: cfg.spec.pattern.to_string(),
        multiget: cfg.spec.multiget,
        fill_keys: o.fill.as_ref().map(|f| f.counts.responses),
        fill_seconds: o.fill.as_ref().map(|f| f.elapsed.as_secs_f64()),
        fill_error_replies: o.fill.as_ref().map(|f| f.counts.error_replies),
        seconds: secs,
        requests_sent: m.sent,
        counts: m.counts.clone(),
        ops_per_s: m.counts.responses as f64 / secs,
        keys_per_s: (m.counts.sets + m.counts.hits + m.counts.misses) as f64 / secs,
        latency: latency(&m.hist),
        server_cpu,
        server_cpu_error: o.cpu_error.clone(),
        bench_cpu_s: o.bench_cpu,
        unsent_due: m.unsent_due,
        send_lag: (!m.send_lag.is_empty()).then(|| latency(&m.send_lag)),
    }
}

pub fn print_human(s: &Summary) {
    let l = &s.latency;
    let shape = match (s.depth, s.rate) {
        (Some(d), _) => format!("closed loop, depth {d}"),
        (_, Some(r)) => format!("open loop, {r:.0} req/s target"),
        _ => String::new(),
    };
    println!(
        "target {}  protocol {:?}  {}  threads {}  connections {}",
        s.target, s.protocol, shape, s.threads, s.connections
    );
    if let (Some(k), Some(t)) = (s.fill_keys, s.fill_seconds) {
        let errs = s.fill_error_replies.unwrap_or(0);
        if errs > 0 {
            println!("fill      {k} keys in {t:.2} s  ({errs} sets answered with an error)");
        } else {
            println!("fill      {k} keys in {t:.2} s");
        }
    }
    println!(
        "requests  sent {}  answered {}  (sets {}, gets {})  lost {}  error replies {}",
        s.requests_sent,
        s.counts.responses,
        s.counts.sets,
        s.counts.gets,
        s.counts.lost,
        s.counts.error_replies
    );
    println!(
        "keys      hits {}  misses {}  ({:.1}% hit)",
        s.counts.hits,
        s.counts.misses,
        100.0 * s.counts.hits as f64 / (s.counts.hits + s.counts.misses).max(1) as f64
    );
    println!(
        "rate      {:.0} ops/s over {:.2} s  ({:.0} keys/s)",
        s.ops_per_s, s.seconds, s.keys_per_s
    );
    println!(
        "latency   p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  (mean {:.1} us)",
        l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us
    );
    match (&s.server_cpu, &s.server_cpu_error) {
        (Some(c), _) => println!(
            "server    cpu {:.3} s (user {:.3}, sys {:.3})  {:.0} ops per server cpu-second",
            c.total_s, c.user_s, c.system_s, c.ops_per_cpu_s
        ),
        (None, Some(e)) => println!("server    cpu unknown: {e}"),
        (None, None) => {}
    }
    if let Some(b) = s.bench_cpu_s {
        println!(
            "bench     cpu {b:.3} s over {:.2} s wall ({:.0}% of one core)",
            s.seconds,
            100.0 * b / s.seconds
        );
    }
    if let Some(g) = &s.send_lag {
        println!(
            "send lag  p50 {:.1} us  p99 {:.1} us  max {:.1} us  (generator lateness, included above)",
            g.p50_us, g.p99_us, g.max_us
        );
    }
    if s.unsent_due > 0 {
        println!(
            "behind    {} requests were due but unsent at the end: target rate not reached",
            s.unsent_due
        );
    }
    if s.counts.failed_connections > 0 {
        println!(
            "failures  {} connections failed; first: {}",
            s.counts.failed_connections,
            s.counts.first_failure.as_deref().unwrap_or("?")
        );
    } else if let Some(f) = &s.counts.first_failure {
        println!("failures  {f}");
    }
}
