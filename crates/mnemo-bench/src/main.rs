//! mnemo-bench: a load generator for memcached-protocol servers and proxies.
//!
//! `mnemo-bench [options]` drives one server; `mnemo-bench compare` starts two
//! servers (or proxies), pins them, and runs the same workload A B A B.

mod compare;
mod cpu;
mod report;
mod runner;
mod scan;
mod stop;
mod target;
mod timer;
mod workload;

use clap::{Args, Parser, Subcommand};
use cpu::CpuProbe;
use runner::{Load, RunConfig, Target};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use workload::{KeyPattern, Protocol, Ratio, Spec, ValueSize};

#[derive(Parser, Debug)]
#[command(
    name = "mnemo-bench",
    version,
    about = "Load generator for memcached-protocol servers and proxies",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Drive one server (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Start two servers or proxies, pin them, and compare them A B A B.
    Compare(Box<compare::CompareArgs>),
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Server address (host:port).
    #[arg(short = 's', long, default_value = "127.0.0.1:11211")]
    server: String,
    /// Connect over this unix socket instead of TCP.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Do not read the server's `stats` for its CPU time.
    #[arg(long)]
    no_stats: bool,
    /// Read server CPU time from /proc/<PID>/stat instead of `stats`.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Speak TLS (memcached's -Z): the server's certificate is checked
    /// against --tls-ca unless --tls-insecure.
    #[arg(long)]
    tls: bool,
    /// PEM file of the CA(s) the server's certificate must chain to.
    #[arg(long, value_name = "PATH", requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// Accept any server certificate (encrypted, not authenticated).
    #[arg(long, requires = "tls")]
    tls_insecure: bool,
    /// Client certificate chain (PEM), for servers with ssl_verify_mode 2/3.
    #[arg(long, value_name = "PATH", requires = "tls")]
    tls_cert: Option<PathBuf>,
    /// Key of --tls-cert (PEM); default: inside the --tls-cert file.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of -s).
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_server_name: Option<String>,
    #[command(flatten)]
    work: WorkloadArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Wire protocol.
    #[arg(short = 'P', long, value_enum, default_value = "text")]
    protocol: Protocol,
    /// Connections in total, spread over the threads.
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(short = 'd', long, default_value_t = 1)]
    depth: usize,
    /// Worker threads.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Open loop: this many requests/s in total, latency from the intended send time.
    #[arg(long, value_name = "REQ_PER_S")]
    rate: Option<f64>,
    /// Open loop: most requests one connection may have in flight.
    #[arg(long, default_value_t = 1024)]
    max_outstanding: usize,
    /// SETS:GETS mix.
    #[arg(long, default_value = "1:10")]
    ratio: Ratio,
    /// Number of distinct keys.
    #[arg(short = 'k', long, default_value_t = 100_000)]
    keys: u64,
    /// Key pattern: sequential, uniform, or zipf:S.
    #[arg(long, default_value = "uniform")]
    pattern: KeyPattern,
    /// Key prefix; the rest of the key is the zero-padded key number.
    #[arg(long, default_value = "mnemo:")]
    key_prefix: String,
    /// Total key length in bytes.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size: N, A-B (uniform), or SIZE:WEIGHT,... (weighted list).
    #[arg(short = 'v', long, default_value = "32")]
    value_size: ValueSize,
    /// Keys per get request (multi-get when above 1).
    #[arg(short = 'm', long, default_value_t = 1)]
    multiget: u16,
    /// Expiry time sent with sets, in seconds (0 = never): N, A-B
    /// (uniform), or TTL:WEIGHT,... (weighted list, e.g. 5:1,300:3,0:1).
    #[arg(long, default_value = "0", value_parser = parse_ttl)]
    ttl: ValueSize,
    /// Set every key once before the measured phase.
    #[arg(long)]
    fill: bool,
    /// Pipeline depth used by the fill phase.
    #[arg(long, default_value_t = 32)]
    fill_depth: usize,
    /// Run the workload unmeasured for this many seconds first (after --fill).
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<f64>,
    /// Measured phase length in seconds (default 10 unless --requests is given).
    #[arg(short = 'D', long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Measured phase length in requests (in total).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds to wait for outstanding replies at the end.
    #[arg(long, default_value_t = 2.0)]
    drain_timeout: f64,
    /// Give up when requests are outstanding and no reply came for this many seconds.
    #[arg(long, default_value_t = 5.0)]
    reply_timeout: f64,
    /// Random seed (runs with the same seed send the same keys).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress line each second.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl WorkloadArgs {
    fn config(&self, target: Target, cpu: CpuProbe) -> Result<RunConfig, String> {
        let secs = |s: f64, what: &str| {
            if s.is_finite() && s > 0.0 && s < 1e7 {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(format!("{what} must be a positive number of seconds"))
            }
        };
        let duration = match (self.duration, self.requests) {
            (Some(d), _) => Some(secs(d, "--duration")?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        };
        let load = match self.rate {
            Some(r) if r.is_finite() && r > 0.0 => Load::Open {
                rate: r,
                max_outstanding: self.max_outstanding.max(1),
            },
            Some(_) => return Err("--rate must be positive".into()),
            None => Load::Closed {
                depth: self.depth.max(1),
            },
        };
        let spec = Spec {
            protocol: self.protocol,
            key_count: self.keys,
            pattern: self.pattern,
            key_prefix: self.key_prefix.clone(),
            key_size: self.key_size,
            value_size: self.value_size.clone(),
            ratio: self.ratio,
            multiget: self.multiget,
            ttl: self.ttl.clone(),
        };
        spec.validate()?;
        Ok(RunConfig {
            target,
            spec,
            threads: self.threads,
            connections: self.connections,
            load,
            duration,
            requests: self.requests,
            fill: self.fill,
            fill_depth: self.fill_depth.max(1),
            seed: self.seed,
            progress: !self.quiet,
            cpu,
            drain_timeout: secs(self.drain_timeout, "--drain-timeout")?,
            reply_timeout: secs(self.reply_timeout, "--reply-timeout")?,
            warmup: self.warmup.map(|w| secs(w, "--warmup")).transpose()?,
        })
    }
}

fn resolve(s: &str) -> Result<std::net::SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("bad server address {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("server address {s:?} resolved to nothing"))
}

/// The TLS client of `--tls`.
fn tls_client(a: &RunArgs) -> Result<runner::TlsClient, String> {
    use mnemo_net::tls;
    let o = tls::ClientTlsOptions {
        ca_cert: a.tls_ca.clone(),
        cert: a.tls_cert.clone(),
        key: a.tls_key.clone(),
        server_name: a.tls_server_name.clone(),
        insecure_skip_verify: a.tls_insecure,
        ..Default::default()
    };
    let config = tls::client_config(&o).map_err(|e| e.to_string())?;
    let host = a
        .server
        .rsplit_once(':')
        .map_or(a.server.as_str(), |(h, _)| h);
    let name = tls::server_name(o.server_name.as_deref(), host).map_err(|e| e.to_string())?;
    Ok(runner::TlsClient { config, name })
}

fn run_one(a: &RunArgs) -> Result<(), String> {
    let target = match (&a.unix, a.tls) {
        (Some(_), true) => return Err("--tls runs over TCP, not --unix".into()),
        (Some(p), false) => Target::Unix(p.clone()),
        (None, false) => Target::Tcp(resolve(&a.server)?),
        (None, true) => Target::Tls(resolve(&a.server)?, tls_client(a)?),
    };
    let cpu = match (a.server_pid, a.no_stats) {
        (Some(pid), _) => CpuProbe::Proc(pid),
        (None, true) => CpuProbe::None,
        (None, false) => CpuProbe::Stats(target.clone()),
    };
    let cfg = a.work.config(target, cpu)?;
    let outcome = runner::run(&cfg)?;
    let summary = report::summarize(&cfg, &outcome);
    if a.work.json {
        let s = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        println!("{s}");
    } else {
        report::print_human(&summary);
    }
    if summary.counts.lost > 0 || summary.counts.failed_connections > 0 {
        return Err(format!(
            "{} requests unanswered, {} connections failed",
            summary.counts.lost, summary.counts.failed_connections
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stop::install();
    let result = match &cli.cmd {
        None => run_one(&cli.run),
        Some(Cmd::Run(a)) => run_one(a),
        Some(Cmd::Compare(c)) => compare::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mnemo-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Counts heap allocations per thread in unit tests, so the hot path's
/// "no allocation per request" is checked rather than assumed.
/// `--ttl`: value sizes' grammar, with errors that say "ttl".
fn parse_ttl(s: &str) -> Result<ValueSize, String> {
    s.parse::<ValueSize>()
        .map_err(|e| e.replace("value size", "ttl"))
}

#[cfg(test)]
pub mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    struct Counting;

    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            System.alloc(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            System.dealloc(p, l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            System.realloc(p, l, n)
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Allocations made by the calling thread so far.
    pub fn allocations() -> u64 {
        COUNT.with(|c| c.get())
    }
}
