//! mnemo-proxy's TLS, both sides: towards memcached 1.6.18 `-Z` backends
//! (the reference TLS server) and on its own listener, with mnemo-client's
//! TLS as the client. Certificates are made at test time (rcgen).

mod common;

use common::*;
use mnemo_client::{Client, ClientTlsOptions, Error, Options, Protocol, ServerSpec, Stored, Tls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A CA, server and client certificates signed by it, and a stranger CA.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_p = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL (memcached) takes a leaf whose issuer is
        // its own subject for a self-signed certificate.
        ca_p.distinguished_name
            .push(DnType::CommonName, "mnemo test CA");
        let ca = ca_p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.0.join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "mc.test".to_string()],
            ),
            ("client", vec!["client".to_string()]),
        ] {
            let k = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            let c = p.signed_by(&k, &ca, &ca_key).unwrap();
            std::fs::write(dir.0.join(format!("{name}.pem")), c.pem()).unwrap();
            std::fs::write(dir.0.join(format!("{name}.key")), k.serialize_pem()).unwrap();
        }
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.0.join("other.pem"), other.cert.pem()).unwrap();
        Pki { dir }
    }
    fn p(&self, f: &str) -> PathBuf {
        self.dir.0.join(f)
    }
    fn s(&self, f: &str) -> String {
        self.p(f).display().to_string()
    }
}

/// memcached -Z with the PKI's server certificate; `extra` joins `-o`.
fn memcached_tls(pki: &Pki, extra: &str) -> Proc {
    let port = free_port();
    let mut o = format!(
        "ssl_chain_cert={},ssl_key={}",
        pki.s("server.pem"),
        pki.s("server.key")
    );
    if !extra.is_empty() {
        o.push(',');
        o.push_str(extra);
    }
    let child = Command::new("/usr/bin/memcached")
        .args(["-Z", "-o", &o, "-p", &port.to_string()])
        .args(["-l", "127.0.0.1", "-U", "0", "-m", "32", "-u", "root"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn memcached");
    wait_port(port, "memcached -Z");
    Proc { child, port }
}

/// A client of `port` (the proxy or a memcached), over TLS if `tls`.
fn client(port: u16, tls: Option<ClientTlsOptions>, protocol: Protocol) -> Client {
    let opts = Options {
        protocol,
        io_timeout: Some(Duration::from_secs(5)),
        tls: tls.map(|t| Tls::new(&t).unwrap()),
        ..Options::default()
    };
    Client::new(
        vec![ServerSpec::new(&format!("127.0.0.1:{port}")).unwrap()],
        opts,
    )
    .unwrap()
}

fn trusting(pki: &Pki) -> ClientTlsOptions {
    ClientTlsOptions {
        ca_cert: Some(pki.p("ca.pem")),
        ..Default::default()
    }
}

fn with_cert(pki: &Pki) -> ClientTlsOptions {
    ClientTlsOptions {
        cert: Some(pki.p("client.pem")),
        key: Some(pki.p("client.key")),
        ..trusting(pki)
    }
}

/// The pool's TLS keys towards its servers: verified against the CA,
/// presenting the client certificate.
fn server_tls_keys(pki: &Pki) -> String {
    format!(
        "  server_tls: true\n  server_tls_ca: {}\n  server_tls_cert: {}\n  server_tls_key: {}\n",
        pki.s("ca.pem"),
        pki.s("client.pem"),
        pki.s("client.key")
    )
}

fn listen_tls_keys(pki: &Pki, verify: u8) -> String {
    format!(
        "  listen_tls: true\n  listen_tls_cert: {}\n  listen_tls_key: {}\n  listen_tls_ca: {}\n  listen_tls_verify: {verify}\n",
        pki.s("server.pem"),
        pki.s("server.key"),
        pki.s("ca.pem")
    )
}

fn conf(lp: u16, extra: &str, servers: &[&Proc]) -> String {
    let lines: String = servers
        .iter()
        .map(|p| format!("   - 127.0.0.1:{}:1\n", p.port))
        .collect();
    format!("tls:\n  listen: 127.0.0.1:{lp}\n  hash: md5\n{extra}  servers:\n{lines}")
}

/// Sets, gets and a multi-get spread over the servers, values from a few
/// bytes to several TLS records, through `c`.
fn exercise(c: &Client, tag: &str) -> Vec<String> {
    let keys: Vec<String> = (0..60).map(|i| format!("{tag}:{i}")).collect();
    let val = |i: usize| format!("{i}-").repeat(1 + i * i * 7);
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            c.set(k.as_bytes(), val(i).as_bytes(), i as u32, 0).unwrap(),
            Stored::Stored,
            "{k}"
        );
    }
    let it = c.get(keys[59].as_bytes()).unwrap().unwrap();
    assert_eq!(it.value, val(59).as_bytes());
    assert_eq!(it.flags, 59);
    let mut refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    refs.push(b"missing");
    let got = c.get_multi(&refs).unwrap();
    for (i, g) in got.iter().take(60).enumerate() {
        assert_eq!(g.as_ref().unwrap().value, val(i).as_bytes(), "{}", keys[i]);
    }
    assert!(got[60].is_none());
    keys
}

#[test]
fn backends_over_tls_with_a_client_certificate() {
    let pki = Pki::new("tls-backends");
    // The servers require a client certificate: the proxy presents one.
    let verify = format!("ssl_verify_mode=2,ssl_ca_cert={}", pki.s("ca.pem"));
    let m = [memcached_tls(&pki, &verify), memcached_tls(&pki, &verify)];
    let lp = free_port();
    let file = pki
        .dir
        .file("p.yml", &conf(lp, &server_tls_keys(&pki), &[&m[0], &m[1]]));
    let _p = proxy(&file, lp);
    // Plain clients, text and binary, of a proxy speaking TLS to servers.
    let c = client(lp, None, Protocol::Text);
    let keys = exercise(&c, "t");
    let cb = client(lp, None, Protocol::Binary);
    exercise(&cb, "b");
    // The keys really went to both servers, over TLS.
    let direct: Vec<Client> = m
        .iter()
        .map(|s| client(s.port, Some(with_cert(&pki)), Protocol::Text))
        .collect();
    let mut per = [0, 0];
    for k in &keys {
        for (i, d) in direct.iter().enumerate() {
            if d.get(k.as_bytes()).unwrap().is_some() {
                per[i] += 1;
            }
        }
    }
    assert_eq!(per[0] + per[1], keys.len());
    assert!(per[0] > 0 && per[1] > 0, "{per:?}");
    // A pipelined burst through the plain side: answers in order.
    let mut conn = Conn::new(lp);
    let mut burst = Vec::new();
    for k in keys.iter().take(20) {
        burst.extend_from_slice(format!("get {k}\r\n").as_bytes());
    }
    conn.send(&burst);
    for k in keys.iter().take(20) {
        let v = conn.values();
        assert!(v.starts_with(&format!("VALUE {k} ")), "{k}: {v}");
    }
}

#[test]
fn backend_with_an_untrusted_certificate_fails_requests_not_the_proxy() {
    let pki = Pki::new("tls-untrusted");
    let m = memcached_tls(&pki, "");
    let lp = free_port();
    let keys = format!(
        "  timeout: 2000\n  server_tls: true\n  server_tls_ca: {}\n",
        pki.s("other.pem")
    );
    let file = pki.dir.file("p.yml", &conf(lp, &keys, &[&m]));
    let _p = proxy(&file, lp);
    let mut c = Conn::new(lp);
    let r = c.set("k", "v");
    assert!(r.starts_with("SERVER_ERROR"), "{r}");
    assert!(c.get("k").starts_with("SERVER_ERROR"));
    assert_eq!(c.cmd("version\r\n").split(' ').next(), Some("VERSION"));
}

#[test]
fn tls_clients_of_a_plain_backend_and_client_certificates() {
    let pki = Pki::new("tls-clients");
    let m = [memcached(), memcached()];
    let lp = free_port();
    let file = pki.dir.file(
        "p.yml",
        &conf(lp, &listen_tls_keys(&pki, 0), &[&m[0], &m[1]]),
    );
    let p = proxy(&file, lp);
    for proto in [Protocol::Text, Protocol::Binary] {
        let c = client(lp, Some(trusting(&pki)), proto);
        exercise(&c, &format!("{proto:?}"));
    }
    // Answers far larger than the socket buffers: the proxy's writes block
    // with encrypted records queued, which go out on writable events, the
    // last of them included (the client reads nothing until all is sent).
    let c = client(lp, Some(trusting(&pki)), Protocol::Text);
    let big = vec![b'B'; 500_000];
    assert_eq!(c.set(b"big", &big, 0, 0).unwrap(), Stored::Stored);
    let mut pl = c.pipeline();
    for _ in 0..20 {
        pl.push(mnemo_client::Op::Get(b"big".to_vec()));
    }
    for r in pl.run() {
        match r {
            Ok(mnemo_client::OpResult::Value(Some(it))) => assert_eq!(it.value.len(), big.len()),
            other => panic!("{other:?}"),
        }
    }
    // A client that reads slowly keeps the proxy's socket full, so its
    // last answer ends up queued as encrypted records behind a full
    // socket: those must still go out on the next writable event.
    {
        let cfg = mnemo_net::tls::client_config(&trusting(&pki)).unwrap();
        let addr = mnemo_net::Addr::parse(&format!("127.0.0.1:{lp}")).unwrap();
        let mut s = mnemo_net::BlockingStream::connect_tls(
            &addr,
            Duration::from_secs(2),
            Some(Duration::from_secs(5)),
            cfg,
            None,
        )
        .unwrap();
        s.write_all(&b"get big\r\n".repeat(6)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let want = 6 * (b"VALUE big 0 500000\r\n".len() + 500_002 + 5);
        let mut got = 0;
        let mut tail = Vec::new();
        let mut b = vec![0u8; 16 * 1024];
        while got < want {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "closed after {got} of {want} bytes");
            got += n;
            tail.extend_from_slice(&b[..n]);
            let cut = tail.len().saturating_sub(8);
            tail.drain(..cut);
            std::thread::sleep(Duration::from_micros(500));
        }
        assert_eq!(got, want);
        assert!(tail.ends_with(b"END\r\n"));
    }
    // A plain client gets no memcached answer from a TLS listener.
    let mut raw = TcpStream::connect(("127.0.0.1", lp)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"version\r\n").unwrap();
    let mut b = [0u8; 64];
    let n = raw.read(&mut b).unwrap_or(0);
    assert!(!b[..n].starts_with(b"VERSION"), "{:?}", &b[..n]);
    drop(p);

    // listen_tls_verify: 2 requires a client certificate.
    let lp = free_port();
    let file = pki
        .dir
        .file("q.yml", &conf(lp, &listen_tls_keys(&pki, 2), &[&m[0]]));
    let _p = proxy(&file, lp);
    let anon = client(lp, Some(trusting(&pki)), Protocol::Text);
    assert!(anon.set(b"k", b"v", 0, 0).is_err());
    let c = client(lp, Some(with_cert(&pki)), Protocol::Text);
    assert_eq!(c.set(b"k", b"v", 0, 0).unwrap(), Stored::Stored);
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
    // A certificate from a stranger CA is refused too.
    let stranger = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
    std::fs::write(pki.p("x.pem"), stranger.cert.pem()).unwrap();
    std::fs::write(pki.p("x.key"), stranger.key_pair.serialize_pem()).unwrap();
    let bad = client(
        lp,
        Some(ClientTlsOptions {
            cert: Some(pki.p("x.pem")),
            key: Some(pki.p("x.key")),
            ..trusting(&pki)
        }),
        Protocol::Text,
    );
    assert!(matches!(bad.get(b"k"), Err(Error::Io(_) | Error::Timeout)));
}

#[test]
fn tls_on_both_sides() {
    let pki = Pki::new("tls-both");
    let verify = format!("ssl_verify_mode=2,ssl_ca_cert={}", pki.s("ca.pem"));
    let m = [memcached_tls(&pki, &verify), memcached_tls(&pki, "")];
    let lp = free_port();
    let keys = format!("{}{}", server_tls_keys(&pki), listen_tls_keys(&pki, 1));
    let file = pki.dir.file("p.yml", &conf(lp, &keys, &[&m[0], &m[1]]));
    let _p = proxy(&file, lp);
    let c = client(lp, Some(with_cert(&pki)), Protocol::Text);
    exercise(&c, "both");
    // A megabyte-sized value crosses both TLS legs in many records.
    let big = vec![b'z'; 1_000_000];
    assert_eq!(c.set(b"big", &big, 0, 0).unwrap(), Stored::Stored);
    assert_eq!(c.get(b"big").unwrap().unwrap().value, big);
    // Request mode (1) admits a client without a certificate.
    let anon = client(lp, Some(trusting(&pki)), Protocol::Binary);
    assert_eq!(anon.get(b"big").unwrap().unwrap().value.len(), big.len());
    // A pipeline of mixed operations keeps its order. Kept under one TLS
    // record per server: memcached 1.6.18 -Z stalls on a burst whose last
    // record holds more than its read buffer takes (the rest waits inside
    // OpenSSL with no socket event to fetch it; Python's ssl module shows
    // the same against memcached directly).
    let mut pl = c.pipeline();
    for i in 0..50 {
        let k = format!("pl{i}").into_bytes();
        pl.push(mnemo_client::Op::Set {
            key: k.clone(),
            value: vec![b'p'; i],
            flags: 0,
            exptime: 0,
        });
        pl.push(mnemo_client::Op::Get(k));
    }
    let res = pl.run();
    assert_eq!(res.len(), 100);
    for (i, r) in res.iter().enumerate() {
        assert!(r.is_ok(), "op {i}: {r:?}");
    }
}

#[test]
fn garbage_instead_of_a_handshake_closes_that_client_only() {
    let pki = Pki::new("tls-garbage");
    let m = memcached();
    let lp = free_port();
    let file = pki
        .dir
        .file("p.yml", &conf(lp, &listen_tls_keys(&pki, 0), &[&m]));
    let _p = proxy(&file, lp);
    let good = client(lp, Some(trusting(&pki)), Protocol::Text);
    assert_eq!(good.set(b"k", b"v", 0, 0).unwrap(), Stored::Stored);
    for junk in [
        &b"get k\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5][..],
        &[0xff; 4096][..],
    ] {
        let mut raw = TcpStream::connect(("127.0.0.1", lp)).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(junk).unwrap();
        // The proxy may answer with a TLS alert; then it closes.
        let mut got = Vec::new();
        let _ = raw.read_to_end(&mut got);
        assert!(!got.starts_with(b"VALUE"), "{got:?}");
        assert!(got.len() < 64, "{} bytes", got.len());
    }
    // A client that connects and says nothing does not hold others up.
    let _silent = TcpStream::connect(("127.0.0.1", lp)).unwrap();
    assert_eq!(good.get(b"k").unwrap().unwrap().value, b"v");
    let again = client(lp, Some(trusting(&pki)), Protocol::Text);
    assert_eq!(again.get(b"k").unwrap().unwrap().value, b"v");
}

#[test]
fn bad_tls_settings_stop_the_start() {
    let pki = Pki::new("tls-conf");
    let m = memcached();
    let lp = free_port();
    let keys = "  listen_tls: true\n  listen_tls_cert: /nonexistent/cert.pem\n";
    let file = pki.dir.file("p.yml", &conf(lp, keys, &[&m]));
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-proxy"))
        .args(["-t", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listen_tls") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
    let file = pki
        .dir
        .file("q.yml", &conf(lp, &listen_tls_keys(&pki, 2), &[&m]));
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-proxy"))
        .args(["-t", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// SIGHUP with a new file; `marker` is a port only the new file listens
/// on, so its opening says the reload is in.
fn reload(p: &Proxy, file: &std::path::Path, text: &str, marker: u16) {
    std::fs::write(file, text).unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc_kill(p.proc.child.id() as i32, 1) };
    wait_port(marker, "reloaded marker pool");
}

#[test]
fn reload_applies_new_tls_settings_to_listeners_and_server_connections() {
    let pki = Pki::new("tls-reload");
    let m = memcached_tls(&pki, "");
    let lp = free_port();
    let marker = |port: u16| {
        format!(
            "marker{port}:\n  listen: 127.0.0.1:{port}\n  servers:\n   - 127.0.0.1:{}:1\n",
            m.port
        )
    };
    let unverified = "  server_tls: true\n  server_tls_skip_verify: true\n";
    let file = pki.dir.file("p.yml", &conf(lp, unverified, &[&m]));
    let p = proxy(&file, lp);
    let mut c = Conn::new(lp);
    assert_eq!(c.set("k", "v"), "STORED\r\n");

    // Verification on, against a name the certificate does not carry, and
    // a TLS listener: the open server connection was made without checks
    // and must not serve on; the plain client accepted before stays.
    let (m1, m2) = (free_port(), free_port());
    let strict = format!(
        "  server_tls: true\n  server_tls_ca: {}\n  server_tls_name: elsewhere.test\n{}",
        pki.s("ca.pem"),
        listen_tls_keys(&pki, 0)
    );
    reload(&p, &file, &(conf(lp, &strict, &[&m]) + &marker(m1)), m1);
    let r = c.get("k");
    assert!(r.starts_with("SERVER_ERROR"), "{r}");
    let tc = client(lp, Some(trusting(&pki)), Protocol::Text);
    assert!(tc.versions()[0].is_ok());

    // The right name: served again, to the old plain client and to TLS ones.
    let good = strict.replace("elsewhere.test", "mc.test");
    reload(&p, &file, &(conf(lp, &good, &[&m]) + &marker(m2)), m2);
    assert_eq!(c.get("k"), "VALUE k 0 1\r\nv\r\nEND\r\n");
    assert_eq!(tc.get(b"k").unwrap().unwrap().value, b"v");
}
