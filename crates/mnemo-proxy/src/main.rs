//! mnemo-proxy: a memcached proxy configured like twemproxy (nutcracker).
//!
//! Documented answers to commands without a key:
//! - `version`: the proxy's version (`VERSION mnemo-proxy-X`).
//! - `stats`: the proxy's counters as `STAT` lines (per pool and server).
//! - `flush_all`: sent to every server of the pool and of its backup; `OK`
//!   when all answered `OK`, else the first error.
//! - `verbosity`: `OK`, not forwarded.
//! - `quit` closes the connection; `shutdown`, `slabs`, `lru_crawler`,
//!   `cache_memlimit` and `stats <group>` are refused (`ERROR`).

use mnemo_proxy::{acceptor, config, stats, tls, worker};

use clap::Parser;
use parking_lot::RwLock;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "mnemo-proxy",
    version,
    about = "memcached proxy with twemproxy's configuration"
)]
struct Args {
    /// Configuration file (twemproxy YAML).
    #[arg(short = 'c', long = "conf-file", default_value = "conf/nutcracker.yml")]
    conf: String,
    /// Test the configuration for syntax errors and exit.
    #[arg(short = 't', long = "test-conf")]
    test: bool,
    /// Stats port (twemproxy's JSON; Prometheus text at GET /metrics).
    #[arg(short = 's', long = "stats-port", default_value_t = 22222)]
    stats_port: u16,
    /// Stats listening address.
    #[arg(short = 'a', long = "stats-addr", default_value = "0.0.0.0")]
    stats_addr: String,
    /// Worker threads, each with its own event loop (default: one per CPU
    /// this process may run on).
    #[arg(long = "threads")]
    threads: Option<usize>,
    /// Pid file.
    #[arg(short = 'p', long = "pid-file")]
    pid_file: Option<String>,
    /// Log file (default stderr).
    #[arg(short = 'o', long = "output")]
    output: Option<String>,
    /// Logging level (accepted for nutcracker compatibility).
    #[arg(short = 'v', long = "verbose", default_value_t = 5)]
    verbose: u8,
}

static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::Relaxed);
}

fn load(path: &str) -> Result<config::Config, String> {
    let src =
        std::fs::read_to_string(path).map_err(|e| format!("configuration file '{path}': {e}"))?;
    let mut cfg = config::parse(&src).map_err(|e| format!("configuration file '{path}' {e}"))?;
    // Certificates are read with the file, so -t checks them and a
    // SIGHUP picks up renewed ones (or is refused as a whole).
    tls::load(&mut cfg).map_err(|e| format!("configuration file '{path}': {e}"))?;
    Ok(cfg)
}

fn main() -> ExitCode {
    // Before anything listens: a SIGHUP that arrives once clients can
    // connect must reload, not kill (SIGHUP's default action).
    // SAFETY: installing a handler is sound when the handler is
    // async-signal-safe: `on_hup` only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGHUP,
            on_hup as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    // A write to a client or server that has gone must fail with EPIPE,
    // which the event loops handle, not kill the process.
    // SAFETY: SIG_IGN runs no code in the signal context.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let args = Args::parse();
    // -v is accepted so nutcracker command lines work; the proxy logs only
    // startup, reloads and errors, whatever the level.
    let _ = args.verbose;
    if let Some(o) = &args.output {
        // Logs go where nutcracker's -o sends them: redirect stderr.
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(o)
        {
            Ok(f) => {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 on two valid descriptors; the file stays open
                // for the life of the process through fd 2.
                unsafe { libc::dup2(f.as_raw_fd(), 2) };
            }
            Err(e) => {
                eprintln!("mnemo-proxy: cannot open log file '{o}': {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cfg = match load(&args.conf) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mnemo-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.test {
        println!(
            "mnemo-proxy: configuration file '{}' syntax is ok",
            args.conf
        );
        return ExitCode::SUCCESS;
    }
    if let Some(p) = &args.pid_file {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            eprintln!("mnemo-proxy: cannot write pid file '{p}': {e}");
            return ExitCode::FAILURE;
        }
    }
    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let stats = Arc::new(stats::Stats::new(&cfg));
    let current = Arc::new(RwLock::new(stats.clone()));
    let stats_listener =
        match std::net::TcpListener::bind((args.stats_addr.as_str(), args.stats_port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "mnemo-proxy: cannot listen for stats on {}:{}: {e}",
                    args.stats_addr, args.stats_port
                );
                return ExitCode::FAILURE;
            }
        };
    {
        let current = current.clone();
        std::thread::spawn(move || stats::serve(stats_listener, current));
    }
    let cfg = Arc::new(cfg);
    let mut workers = Vec::new();
    for id in 0..threads {
        let (tx, rx) = mpsc::channel();
        let (w, waker) = match worker::Worker::new(id, &cfg, stats.clone(), rx) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("mnemo-proxy: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        std::thread::Builder::new()
            .name(format!("mnemo-proxy-{id}"))
            .spawn(move || w.run())
            .map_err(|e| eprintln!("mnemo-proxy: thread: {e}"))
            .ok();
        workers.push(acceptor::WorkerHandle { tx, waker });
    }
    // The main thread accepts for every pool and hands clients out; it
    // also watches for SIGHUP, which interrupts its wait.
    let mut acceptor = match acceptor::Acceptor::new(&cfg, workers) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mnemo-proxy: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "mnemo-proxy: running with {threads} worker(s), {} pool(s)",
        cfg.pools.len()
    );
    loop {
        acceptor.run_for(Duration::from_millis(50));
        if !HUP.swap(false, Ordering::Relaxed) {
            continue;
        }
        match load(&args.conf) {
            Ok(new) => {
                let new = Arc::new(new);
                let st = Arc::new(stats::Stats::carried_over(&new, &current.read()));
                *current.write() = st.clone();
                acceptor.reload(new, st);
                eprintln!("mnemo-proxy: reloaded '{}'", args.conf);
            }
            Err(e) => {
                eprintln!("mnemo-proxy: reload refused, keeping the running configuration: {e}")
            }
        }
    }
}
