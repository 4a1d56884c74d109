//! Runs mnemo-bench against a real memcached on an ephemeral loopback port
//! with tiny bounded workloads, and checks counts (never timings).

use mnemo_testkit::free_port;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_mnemo-bench");

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn memcached(extra: &[&str]) -> Server {
    let mut args = vec!["-t", "1", "-m", "64", "-u", "nobody"];
    args.extend_from_slice(extra);
    if extra.contains(&"-Z") {
        // TLS only: `stats` in plain text cannot name the process.
        let port = free_port();
        let child = mnemo_testkit::memcached_unchecked(port, &args);
        return Server { child, port };
    }
    let (child, port) = mnemo_testkit::memcached(&args);
    Server { child, port }
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .output()
        .expect("run mnemo-bench")
}

fn bench_json(args: &[&str]) -> Value {
    let out = bench(args);
    assert!(
        out.status.success(),
        "mnemo-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn addr(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port)
}

#[test]
fn filled_gets_all_hit_in_every_protocol() {
    let s = memcached(&[]);
    for proto in ["text", "meta", "binary"] {
        for mget in ["1", "8"] {
            let prefix = format!("{proto}{mget}:");
            let v = bench_json(&[
                "-s",
                &addr(&s),
                "-P",
                proto,
                "-c",
                "3",
                "-d",
                "4",
                "-n",
                "600",
                "--keys",
                "500",
                "--fill",
                "--ratio",
                "0:1",
                "-m",
                mget,
                "--key-prefix",
                &prefix,
                "--json",
                "-q",
            ]);
            let m: u64 = mget.parse().unwrap_or(1);
            assert_eq!(u(&v, "fill_keys"), 500, "{proto} {v}");
            assert_eq!(u(&v, "requests_sent"), 600, "{proto}");
            assert_eq!(u(&v, "responses"), 600, "{proto}");
            assert_eq!(u(&v, "gets"), 600);
            assert_eq!(u(&v, "hits"), 600 * m, "{proto} m={m}");
            assert_eq!(u(&v, "misses"), 0, "{proto}");
            assert_eq!(u(&v, "lost"), 0);
            assert_eq!(u(&v, "error_replies"), 0);
        }
    }
}

#[test]
fn unfilled_gets_all_miss_and_sets_are_counted() {
    let s = memcached(&[]);
    for proto in ["text", "meta", "binary"] {
        let prefix = format!("miss{proto}:");
        let v = bench_json(&[
            "-s",
            &addr(&s),
            "-P",
            proto,
            "-c",
            "2",
            "-d",
            "8",
            "-n",
            "400",
            "--ratio",
            "0:1",
            "-m",
            "3",
            "--key-prefix",
            &prefix,
            "--json",
            "-q",
        ]);
        assert_eq!(u(&v, "responses"), 400);
        assert_eq!(u(&v, "hits"), 0, "{proto}");
        assert_eq!(u(&v, "misses"), 1200, "{proto}");

        // Sets only, ranged values: each answered, none an error.
        let v = bench_json(&[
            "-s",
            &addr(&s),
            "-P",
            proto,
            "-c",
            "2",
            "-d",
            "8",
            "-n",
            "400",
            "--ratio",
            "1:0",
            "-v",
            "1-3000",
            "--ttl",
            "100",
            "--key-prefix",
            &prefix,
            "--json",
            "-q",
        ]);
        assert_eq!(u(&v, "sets"), 400);
        assert_eq!(u(&v, "responses"), 400, "{proto}");
        assert_eq!(u(&v, "error_replies"), 0, "{proto}");
    }
}

#[test]
fn mixed_workload_with_threads_counts_add_up() {
    let s = memcached(&[]);
    let v = bench_json(&[
        "-s",
        &addr(&s),
        "-c",
        "6",
        "-t",
        "2",
        "-d",
        "2",
        "-n",
        "3000",
        "--keys",
        "200",
        "--pattern",
        "zipf:0.9",
        "-v",
        "16:3,512:1",
        "--fill",
        "--json",
        "-q",
    ]);
    assert_eq!(u(&v, "responses"), 3000);
    assert_eq!(u(&v, "sets") + u(&v, "gets"), 3000);
    // Every key was filled and nothing is evicted at this size.
    assert_eq!(u(&v, "hits"), u(&v, "gets"));
    assert!(u(&v, "sets") > 0 && u(&v, "gets") > u(&v, "sets"));
    // CPU comes from the server's own `stats`.
    assert!(v["server_cpu"]["total_s"].as_f64().is_some(), "{v}");
    assert!(v["bench_cpu_s"].as_f64().is_some(), "{v}");
}

#[test]
fn open_loop_sends_the_scheduled_number() {
    let s = memcached(&[]);
    let v = bench_json(&[
        "-s",
        &addr(&s),
        "-c",
        "4",
        "--rate",
        "2000",
        "-D",
        "1",
        "--json",
        "-q",
    ]);
    let sent = u(&v, "requests_sent");
    assert_eq!(u(&v, "responses"), sent);
    // One request per 0.5 ms over 1 s.
    assert!((1990..=2010).contains(&sent), "sent {sent}");
    assert_eq!(u(&v, "unsent_due"), 0);
    assert_eq!(v["mode"], "open");
}

#[test]
fn unix_socket() {
    // Directly in the sticky temp dir: memcached drops to `nobody` before it
    // creates the socket, so a private directory would be unwritable.
    let sock = std::env::temp_dir().join(format!("mnemo-bench-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let sock_s = sock.to_string_lossy().to_string();
    let child = Command::new("memcached")
        .args(["-s", &sock_s, "-t", "1", "-m", "64", "-u", "nobody"])
        .stdout(Stdio::null())
        .spawn()
        .expect("memcached");
    let _s = Server { child, port: 0 };
    let give_up = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < give_up, "memcached did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = bench_json(&[
        "--unix", &sock_s, "-P", "binary", "-c", "3", "-d", "3", "-n", "900", "--keys", "50",
        "--fill", "--ratio", "0:1", "--json", "-q",
    ]);
    assert_eq!(u(&v, "responses"), 900);
    assert_eq!(u(&v, "hits"), 900);
    let _ = std::fs::remove_file(&sock);
}

/// A "server" that answers every request with nonsense must make the bench
/// fail loudly rather than count garbage as replies.
#[test]
fn garbage_replies_are_a_failure() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 1024];
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            if c.read(&mut buf).unwrap_or(0) > 0 {
                let _ = c.write_all(b"BANANA\r\n");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let out = bench(&[
        "-s",
        &format!("127.0.0.1:{port}"),
        "-c",
        "1",
        "-n",
        "10",
        "--no-stats",
        "--drain-timeout",
        "1",
        "-q",
    ]);
    let _ = t.join();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), err);
    assert!(all.contains("desync"), "{all}");
}

#[test]
fn compare_two_memcacheds() {
    let out = bench(&[
        "compare",
        "--a",
        "memcached -t 1 -m 64 -u nobody",
        "--b",
        "memcached -t 1 -m 64 -u nobody",
        "--rounds",
        "2",
        "-c",
        "4",
        "-d",
        "4",
        "-n",
        "2000",
        "--keys",
        "300",
        "--fill",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rounds = v["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        for side in ["a", "b"] {
            assert_eq!(u(&r[side], "responses"), 2000);
            assert_eq!(u(&r[side], "hits"), u(&r[side], "gets"));
        }
    }
    assert!(v["median_ratio_ops_per_s"]
        .as_f64()
        .is_some_and(|x| x > 0.0));
}

/// Proxy mode: shared memcached backends on fixed ports, two nutcrackers
/// configured for them. Checks that compare starts everything, that traffic
/// really crosses the proxies to the backends (every filled key is a hit),
/// and that every child is gone afterwards.
#[test]
fn compare_two_proxies_over_shared_backends() {
    let dir = std::env::temp_dir().join(format!("mnemo-bench-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let backends = [free_port(), free_port()];
    let mut sides = Vec::new();
    for name in ["a", "b"] {
        let listen = free_port();
        let conf = dir.join(format!("{name}.yml"));
        let yaml = format!(
            "p:\n  listen: 127.0.0.1:{listen}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             timeout: 2000\n  auto_eject_hosts: false\n  servers:\n   - 127.0.0.1:{}:1\n   - 127.0.0.1:{}:1\n",
            backends[0], backends[1]
        );
        std::fs::write(&conf, yaml).expect("write conf");
        let cmd = format!(
            "nutcracker -v 0 -o {} -c {} -s {} -a 127.0.0.1",
            dir.join(format!("{name}.log")).display(),
            conf.display(),
            free_port()
        );
        sides.push((cmd, format!("127.0.0.1:{listen}")));
    }
    let ports = format!("{},{}", backends[0], backends[1]);
    let out = bench(&[
        "compare",
        "--backend",
        "memcached -t 1 -m 64 -u nobody",
        "--backends",
        "2",
        "--backend-ports",
        &ports,
        "--a",
        &sides[0].0,
        "--a-addr",
        &sides[0].1,
        "--b",
        &sides[1].0,
        "--b-addr",
        &sides[1].1,
        "--rounds",
        "1",
        "-c",
        "4",
        "-d",
        "2",
        "-n",
        "1000",
        "--keys",
        "200",
        "--fill",
        "--ratio",
        "0:1",
        "--json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let r = &v["rounds"][0];
    for side in ["a", "b"] {
        assert_eq!(u(&r[side], "responses"), 1000);
        assert_eq!(u(&r[side], "hits"), 1000, "{side}: {}", r[side]);
    }
    // Everything compare started is gone: nothing listens on the backends.
    for p in backends {
        assert!(
            TcpStream::connect(("127.0.0.1", p)).is_err(),
            "backend {p} still up"
        );
    }
}

/// A server that reads requests and never answers must not hang a
/// request-count run: the bench gives up after --reply-timeout.
#[test]
fn silent_server_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = [0u8; 4096];
            while c.read(&mut buf).unwrap_or(0) > 0 {}
        }
    });
    let out = bench(&[
        "-s",
        &format!("127.0.0.1:{port}"),
        "-P",
        "binary",
        "-c",
        "1",
        "-n",
        "100",
        "--no-stats",
        "--reply-timeout",
        "0.5",
        "-q",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), err);
    assert!(all.contains("no reply"), "{all}");
    drop(out);
    let _ = t.join();
}

/// Killing the server mid-run ends the run with the loss reported.
#[test]
fn server_dying_mid_run_is_reported() {
    let mut s = memcached(&[]);
    let port = s.port.to_string();
    let child = Command::new(BENCH)
        .args([
            "-s",
            &format!("127.0.0.1:{port}"),
            "-c",
            "4",
            "-d",
            "4",
            "-D",
            "5",
        ])
        .args(["--no-stats", "--json", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bench");
    std::thread::sleep(Duration::from_millis(500));
    let _ = s.child.kill();
    let _ = s.child.wait();
    let out = child.wait_with_output().expect("bench output");
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(u(&v, "failed_connections"), 4, "{v}");
    assert!(u(&v, "responses") > 0);
    assert_eq!(
        u(&v, "responses") + u(&v, "lost"),
        u(&v, "requests_sent"),
        "{v}"
    );
}

/// SIGTERM during a compare ends it and takes both servers down with it.
#[test]
fn compare_interrupted_kills_its_servers() {
    use std::io::BufRead;
    let mut child = Command::new(BENCH)
        .args(["compare", "--a", "memcached -t 1 -m 64 -u nobody", "--b"])
        .args(["memcached -t 1 -m 64 -u nobody", "-D", "20", "-c", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bench");
    let stdout = child.stdout.take().expect("stdout");
    let mut pids = Vec::new();
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        // "A = <cmd>  (<addr>, pid <N>)"
        if let Some(p) = line.rsplit("pid ").next().and_then(|t| t.strip_suffix(')')) {
            pids.push(p.parse::<i32>().expect("pid"));
        }
        if pids.len() == 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2);
    for &p in &pids {
        assert!(std::path::Path::new(&format!("/proc/{p}")).exists());
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(!status.success());
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} survived"
        );
    }
}

/// `--tls` against memcached's own TLS (`-Z`), with a CA and a server
/// certificate made here: every protocol, pipelined, counts exact; the
/// server's CPU time read over TLS too (its port speaks nothing else).
#[test]
fn tls_against_memcached() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("mnemo-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "mnemo-bench test CA");
    let ca = p.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    p.distinguished_name
        .push(DnType::CommonName, "mnemo-bench test server");
    let cert = p.signed_by(&key, &ca, &ca_key).expect("cert");
    let path = |f: &str| dir.join(f).to_string_lossy().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).expect("write");
    std::fs::write(path("cert.pem"), cert.pem()).expect("write");
    std::fs::write(path("key.pem"), key.serialize_pem()).expect("write");
    let o = format!(
        "ssl_chain_cert={},ssl_key={}",
        path("cert.pem"),
        path("key.pem")
    );
    let s = memcached(&["-Z", "-o", &o]);
    let server = addr(&s);
    for (proto, trust) in [
        ("text", vec!["--tls-ca", &path("ca.pem")]),
        ("meta", vec!["--tls-insecure"]),
        ("binary", vec!["--tls-ca", &path("ca.pem")]),
    ] {
        let prefix = format!("tls{proto}:");
        let mut args = vec![
            "-s",
            &server,
            "--tls",
            "-P",
            proto,
            "-c",
            "3",
            "-d",
            "8",
            "-n",
            "900",
            "--keys",
            "100",
            "--fill",
            "--ratio",
            "1:2",
            "--key-prefix",
            &prefix,
            "--json",
            "-q",
        ];
        args.extend(trust.iter().copied());
        let v = bench_json(&args);
        assert_eq!(u(&v, "responses"), 900, "{proto} {v}");
        assert_eq!(u(&v, "sets") + u(&v, "gets"), 900, "{proto}");
        assert_eq!(u(&v, "misses"), 0, "{proto}");
        assert_eq!(u(&v, "lost"), 0, "{proto}");
        assert_eq!(u(&v, "error_replies"), 0, "{proto}");
        assert!(v["server_cpu"].is_object(), "{proto}: {v}");
    }
    // A CA that did not sign the server's certificate: refused.
    let out = bench(&[
        "-s",
        &server,
        "--tls",
        "--tls-ca",
        &path("cert.pem"),
        "-n",
        "10",
        "-q",
    ]);
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
