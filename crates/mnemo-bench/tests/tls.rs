//! `--tls`: mnemo-bench against memcached 1.6.18 `-Z` with certificates
//! made at test time (rcgen); counts only, never timings.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_mnemo-bench");

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// memcached -Z with a CA-signed certificate for 127.0.0.1 (ca.pem in
/// `dir`) and a stranger CA (other.pem).
fn memcached_tls(tag: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("mnemo-bench-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_p = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // OpenSSL takes a leaf whose issuer is its own subject for self-signed.
    ca_p.distinguished_name
        .push(DnType::CommonName, "mnemo test CA");
    let ca = ca_p.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let k = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "server");
    let c = p.signed_by(&k, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("server.pem"), c.pem()).unwrap();
    std::fs::write(dir.join("server.key"), k.serialize_pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.join("other.pem"), other.cert.pem()).unwrap();
    let port = free_port();
    let o = format!(
        "ssl_chain_cert={},ssl_key={}",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let child = Command::new("memcached")
        .args(["-Z", "-o", &o, "-l", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "0", "-t", "1", "-m", "64", "-u", "nobody"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memcached installed");
    let s = Server { child, port, dir };
    let give_up = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < give_up, "memcached did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH)
        .args(args)
        .output()
        .expect("run mnemo-bench")
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn tls_load_in_every_protocol_with_stats_over_tls() {
    let s = memcached_tls("load");
    let addr = format!("127.0.0.1:{}", s.port);
    let ca = s.dir.join("ca.pem").display().to_string();
    for proto in ["text", "meta", "binary"] {
        for (mget, depth) in [("1", "1"), ("8", "8")] {
            let prefix = format!("{proto}{mget}:");
            let out = bench(&[
                "-s",
                &addr,
                "--tls",
                "--tls-ca",
                &ca,
                "-P",
                proto,
                "-c",
                "3",
                "-d",
                depth,
                "-n",
                "600",
                "--keys",
                "500",
                "--fill",
                "--ratio",
                "1:4",
                "-m",
                mget,
                "--key-prefix",
                &prefix,
                "--json",
                "-q",
            ]);
            assert!(
                out.status.success(),
                "{proto}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            assert_eq!(u(&v, "fill_keys"), 500, "{proto} {v}");
            assert_eq!(u(&v, "responses"), 600, "{proto}");
            assert_eq!(u(&v, "misses"), 0, "{proto}");
            assert_eq!(u(&v, "lost"), 0);
            assert_eq!(u(&v, "error_replies"), 0);
            // The CPU probe's `stats` went over TLS too.
            assert!(v["server_cpu"]["ops_per_cpu_s"].as_f64().is_some(), "{v}");
        }
    }
    // Insecure: no CA, still encrypted.
    let out = bench(&[
        "-s",
        &addr,
        "--tls",
        "--tls-insecure",
        "-n",
        "100",
        "-c",
        "2",
        "--json",
        "-q",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_settings_are_checked() {
    let s = memcached_tls("refuse");
    let addr = format!("127.0.0.1:{}", s.port);
    // Nothing to trust.
    let out = bench(&["-s", &addr, "--tls", "-n", "10", "-q"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca"));
    // A CA that did not sign the server's certificate.
    let other = s.dir.join("other.pem").display().to_string();
    let out = bench(&["-s", &addr, "--tls", "--tls-ca", &other, "-n", "10", "-q"]);
    assert!(!out.status.success());
    // A plain client of a TLS server gets no answers: the run fails.
    let out = bench(&[
        "-s",
        &addr,
        "-n",
        "10",
        "-c",
        "1",
        "--no-stats",
        "--reply-timeout",
        "1",
        "-q",
    ]);
    assert!(!out.status.success());
}
