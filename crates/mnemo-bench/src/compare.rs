//! `mnemo-bench compare`: two servers (or proxies) under the same workload.
//!
//! Each server runs pinned to one core (via `taskset`) and the load to
//! another, so they do not steal each other's CPU. Rounds alternate A B A B to
//! spread drift (thermal, page cache, other tenants) over both sides, and the
//! verdict is the median of the per-round ratios. Server CPU comes from
//! /proc/<pid>/stat, which works the same for servers and proxies.

use crate::cpu::CpuProbe;
use crate::report::{self, Summary};
use crate::runner::{self, Target};
use crate::WorkloadArgs;
use clap::Args;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Command for server A, split on whitespace. `{port}` is replaced by a
    /// free port; without it `-p PORT -l 127.0.0.1` is appended (unless
    /// --a-addr is given). `{backends}` / `{backendN}` name the backends.
    #[arg(long = "a", value_name = "CMD")]
    a: String,
    /// Command for server B (same rules as --a).
    #[arg(long = "b", value_name = "CMD")]
    b: String,
    /// Address A listens on when its command sets it itself (e.g. nutcracker's config).
    #[arg(long, value_name = "HOST:PORT")]
    a_addr: Option<SocketAddr>,
    /// Address B listens on when its command sets it itself.
    #[arg(long, value_name = "HOST:PORT")]
    b_addr: Option<SocketAddr>,
    /// Rounds of A then B.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cores the servers under test are pinned to (taskset list: 1, 0-1, 0,2).
    #[arg(long, default_value = "1")]
    server_core: CpuList,
    /// Cores the load generator is pinned to.
    #[arg(long, default_value = "0")]
    load_core: CpuList,
    /// Do not pin anything (no taskset).
    #[arg(long)]
    no_pin: bool,
    /// Proxy mode: command for each backend server (gets `-p PORT -l 127.0.0.1`).
    #[arg(long, value_name = "CMD")]
    backend: Option<String>,
    /// Proxy mode: how many backends to start, shared by A and B.
    #[arg(long, default_value_t = 2)]
    backends: usize,
    /// Proxy mode: fixed backend ports (e.g. to match a proxy config file).
    #[arg(long, value_delimiter = ',', value_name = "PORT,...")]
    backend_ports: Vec<u16>,
    /// Cores the backends are pinned to (default: the load cores).
    #[arg(long)]
    backend_core: Option<CpuList>,
    #[command(flatten)]
    work: WorkloadArgs,
}

/// A child process that is killed when dropped, so no server outlives a run.
struct Proc {
    name: String,
    child: Child,
    /// The child's stderr goes here (a pipe nobody drains could block it);
    /// shown if it dies at start.
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already-exited children make kill fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn substitute(word: &str, port: Option<u16>, backends: &[SocketAddr]) -> String {
    let mut w = word.to_string();
    if let Some(p) = port {
        w = w.replace("{port}", &p.to_string());
    }
    let all: Vec<String> = backends.iter().map(|b| b.to_string()).collect();
    w = w.replace("{backends}", &all.join(","));
    for (i, b) in all.iter().enumerate() {
        w = w.replace(&format!("{{backend{i}}}"), b);
    }
    w
}

fn start(
    cmd: &str,
    core: Option<&CpuList>,
    fixed: Option<SocketAddr>,
    backends: &[SocketAddr],
    port: Option<u16>,
) -> Result<(Proc, SocketAddr), String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let Some(program) = words.first() else {
        return Err("empty server command".into());
    };
    let port = match (fixed, port) {
        (Some(a), _) => a.port(),
        (None, Some(p)) => p,
        (None, None) => free_port()?,
    };
    let mut args: Vec<String> = words
        .iter()
        .map(|w| substitute(w, Some(port), backends))
        .collect();
    if fixed.is_none() && !cmd.contains("{port}") {
        args.extend([
            "-p".into(),
            port.to_string(),
            "-l".into(),
            "127.0.0.1".into(),
        ]);
    }
    let mut c = match core {
        Some(core) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(&core.text).args(&args);
            c
        }
        None => {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let addr = fixed.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
    // Otherwise the readiness check below would find the squatter and the
    // bench would measure the wrong server.
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        return Err(format!(
            "something already listens on {addr}; cannot start {cmd:?}"
        ));
    }
    let log = std::env::temp_dir().join(format!(
        "mnemo-bench-{}-{}.log",
        std::process::id(),
        addr.port()
    ));
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    let child = c.spawn().map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let mut p = Proc {
        name: program.rsplit('/').next().unwrap_or(program).to_string(),
        child,
        log,
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            let said = std::fs::read_to_string(&p.log).unwrap_or_default();
            let said = said.trim();
            let mut from = said.len().saturating_sub(500);
            while !said.is_char_boundary(from) {
                from += 1;
            }
            let tail = &said[from..];
            return Err(format!("{cmd:?} exited at start ({status}): {tail}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok((p, addr));
        }
        if Instant::now() > give_up {
            return Err(format!("{cmd:?} did not listen on {addr} within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A taskset-style CPU list: `1`, `0-1`, `0,2-3`.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuList {
    text: String,
    cpus: Vec<usize>,
}

impl std::str::FromStr for CpuList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad CPU list {s:?} (e.g. 1, 0-1, 0,2)");
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if a > b || b >= libc::CPU_SETSIZE as usize {
                return Err(bad());
            }
            cpus.extend(a..=b);
        }
        Ok(CpuList {
            text: s.to_string(),
            cpus,
        })
    }
}

fn pin_self(cores: &CpuList) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (indices are
    // checked against CPU_SETSIZE when parsed), and sched_setaffinity(0, ..)
    // only reads it. Threads spawned later inherit the mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &cores.cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "pinning load to cores {}: {}",
                cores.text,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(serde::Serialize)]
struct Round {
    a: Summary,
    b: Summary,
    ratio_ops_per_s: f64,
    ratio_ops_per_cpu_s: Option<f64>,
}

#[derive(serde::Serialize)]
struct CompareReport {
    a: String,
    b: String,
    rounds: Vec<Round>,
    median_ratio_ops_per_s: f64,
    median_ratio_ops_per_cpu_s: Option<f64>,
}

fn line(tag: &str, name: &str, s: &Summary) -> String {
    let cpu = s.server_cpu.as_ref().map_or("cpu ?".to_string(), |c| {
        format!("cpu {:.2} s  {:>9.0} ops/cpu-s", c.total_s, c.ops_per_cpu_s)
    });
    let bench = s.bench_cpu_s.map_or(String::new(), |b| {
        format!("  bench cpu {:.0}%", 100.0 * b / s.seconds)
    });
    format!(
        "  {tag} {name:<12} {:>9.0} ops/s  {cpu}  p50 {:.1} p99 {:.1} p99.9 {:.1} us  hits {} misses {}{bench}",
        s.ops_per_s, s.latency.p50_us, s.latency.p99_us, s.latency.p999_us, s.counts.hits, s.counts.misses
    )
}

pub fn run(args: &CompareArgs) -> Result<(), String> {
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let pin = !args.no_pin;
    let backend_core = args.backend_core.as_ref().unwrap_or(&args.load_core);
    let mut backend_procs = Vec::new();
    let mut backend_addrs = Vec::new();
    if let Some(cmd) = &args.backend {
        for i in 0..args.backends {
            let port = args.backend_ports.get(i).copied();
            let (p, addr) = start(cmd, pin.then_some(backend_core), None, &[], port)?;
            backend_procs.push(p);
            backend_addrs.push(addr);
        }
    }
    let (pa, addr_a) = start(
        &args.a,
        pin.then_some(&args.server_core),
        args.a_addr,
        &backend_addrs,
        None,
    )?;
    let (pb, addr_b) = start(
        &args.b,
        pin.then_some(&args.server_core),
        args.b_addr,
        &backend_addrs,
        None,
    )?;
    if pin {
        pin_self(&args.load_core)?;
    }
    let (name_a, name_b) = (pa.name.clone(), pb.name.clone());
    if !args.work.json {
        println!("A = {}  ({addr_a}, pid {})", args.a, pa.child.id());
        println!("B = {}  ({addr_b}, pid {})", args.b, pb.child.id());
        if !backend_addrs.is_empty() {
            let b: Vec<String> = backend_addrs.iter().map(|a| a.to_string()).collect();
            println!("backends: {}", b.join(", "));
        }
    }
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let one = |addr: SocketAddr, pid: u32| -> Result<Summary, String> {
            let mut w = args.work.clone();
            // Each server is filled once, in its first round.
            w.fill = args.work.fill && r == 0;
            w.quiet = true;
            let cfg = w.config(Target::Tcp(addr), CpuProbe::Proc(pid))?;
            let o = runner::run(&cfg)?;
            Ok(report::summarize(&cfg, &o))
        };
        let a = one(addr_a, pa.child.id())?;
        if crate::stop::requested() {
            return Err("interrupted".into());
        }
        let b = one(addr_b, pb.child.id())?;
        if crate::stop::requested() {
            return Err("interrupted".into());
        }
        let ratio_ops_per_s = a.ops_per_s / b.ops_per_s.max(1e-9);
        let ratio_ops_per_cpu_s = match (&a.server_cpu, &b.server_cpu) {
            (Some(x), Some(y)) if y.ops_per_cpu_s > 0.0 => Some(x.ops_per_cpu_s / y.ops_per_cpu_s),
            _ => None,
        };
        if !args.work.json {
            println!("round {}", r + 1);
            println!("{}", line("A", &name_a, &a));
            println!("{}", line("B", &name_b, &b));
            match ratio_ops_per_cpu_s {
                Some(c) => println!("  A/B ops/s {ratio_ops_per_s:.3}  ops/cpu-s {c:.3}"),
                None => println!("  A/B ops/s {ratio_ops_per_s:.3}"),
            }
        }
        for s in [&a, &b] {
            if s.counts.lost > 0 || s.counts.failed_connections > 0 {
                return Err(format!(
                    "round {}: {} lost, {} connections failed against {}: {}",
                    r + 1,
                    s.counts.lost,
                    s.counts.failed_connections,
                    s.target,
                    s.counts.first_failure.as_deref().unwrap_or("?")
                ));
            }
        }
        rounds.push(Round {
            a,
            b,
            ratio_ops_per_s,
            ratio_ops_per_cpu_s,
        });
    }
    let mut ops: Vec<f64> = rounds.iter().map(|r| r.ratio_ops_per_s).collect();
    let mut cpu: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.ratio_ops_per_cpu_s)
        .collect();
    let median_cpu = (cpu.len() == rounds.len()).then(|| median(&mut cpu));
    let report = CompareReport {
        a: args.a.clone(),
        b: args.b.clone(),
        median_ratio_ops_per_s: median(&mut ops),
        median_ratio_ops_per_cpu_s: median_cpu,
        rounds,
    };
    if args.work.json {
        let s = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{s}");
    } else {
        print!(
            "median A/B over {} rounds: ops/s {:.3}",
            report.rounds.len(),
            report.median_ratio_ops_per_s
        );
        match report.median_ratio_ops_per_cpu_s {
            Some(c) => println!("  ops per server cpu-second {c:.3}"),
            None => println!("  (server cpu unavailable)"),
        }
    }
    drop((pa, pb, backend_procs));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let c: Result<CpuList, _> = "0,2-3".parse();
        assert_eq!(c.map(|c| c.cpus), Ok(vec![0, 2, 3]));
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("x".parse::<CpuList>().is_err());
        assert!("99999".parse::<CpuList>().is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn substitutes_placeholders() {
        let b: Vec<SocketAddr> = vec![
            "127.0.0.1:1"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0; 4], 0))),
            "127.0.0.1:2"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0; 4], 0))),
        ];
        assert_eq!(
            substitute("--backends={backends}", Some(5), &b),
            "--backends=127.0.0.1:1,127.0.0.1:2"
        );
        assert_eq!(substitute("{backend1}", None, &b), "127.0.0.1:2");
        assert_eq!(substitute("-p{port}", Some(77), &b), "-p77");
    }
}
