//! TLS (`-Z`), against memcached 1.6.18 (Debian's is built with TLS) where
//! memcached has the behaviour: both servers start with the same
//! certificates, made at test time with rcgen (a CA, a server certificate
//! for 127.0.0.1, a client certificate, and a second CA with its own server
//! certificate for reloads), and are spoken to through mnemo-net's TLS
//! `BlockingStream`: text, meta and binary requests, `stats settings`'
//! `ssl_*` lines, `stats`' TLS counters, `notls:` listeners, client
//! certificates, `refresh_certs`, start-up errors, and a client that sends
//! garbage instead of a handshake.
mod support;

use mnemo_net::tls::{self, rustls};
use mnemo_net::{Addr, BlockingStream, ClientTlsOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::{find, show, Kind, Server};

/// Test certificates in a temporary directory, removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("mnemo-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (ca, leaves) in [("ca", &["server", "client"][..]), ("ca2", &["server2"][..])] {
            let ca_key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            // Distinct names: OpenSSL builds chains by them.
            p.distinguished_name
                .push(DnType::CommonName, format!("mnemo test {ca}"));
            let ca_cert = p.self_signed(&ca_key).unwrap();
            std::fs::write(dir.join(format!("{ca}.pem")), ca_cert.pem()).unwrap();
            for leaf in leaves {
                let k = KeyPair::generate().unwrap();
                let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
                p.distinguished_name
                    .push(DnType::CommonName, format!("mnemo test {leaf}"));
                let c = p.signed_by(&k, &ca_cert, &ca_key).unwrap();
                std::fs::write(dir.join(format!("{leaf}.pem")), c.pem()).unwrap();
                std::fs::write(dir.join(format!("{leaf}.key")), k.serialize_pem()).unwrap();
            }
        }
        Pki { dir }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    /// `-Z -o ssl_chain_cert=...,ssl_key=...` plus `more` sub-options.
    fn args(&self, more: &str) -> Vec<String> {
        let mut o = format!(
            "ssl_chain_cert={},ssl_key={}",
            self.path("server.pem"),
            self.path("server.key")
        );
        if !more.is_empty() {
            o.push(',');
            o.push_str(more);
        }
        vec!["-Z".into(), "-o".into(), o]
    }

    fn trust(&self, ca: &str) -> ClientTlsOptions {
        ClientTlsOptions {
            ca_cert: Some(self.dir.join(ca)),
            ..Default::default()
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(kind: Kind, args: &[String]) -> Server {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(kind, &a)
}

/// A TLS connection with memcached-shaped reads.
struct Tls {
    s: BlockingStream,
    pending: Vec<u8>,
}

impl Tls {
    fn connect(port: u16, o: &ClientTlsOptions) -> io::Result<Tls> {
        Tls::connect_with(port, tls::client_config(o).map_err(io::Error::other)?)
    }

    fn connect_with(port: u16, cfg: Arc<rustls::ClientConfig>) -> io::Result<Tls> {
        let addr = Addr::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let s = BlockingStream::connect_tls(
            &addr,
            Duration::from_secs(5),
            Some(Duration::from_secs(5)),
            cfg,
            None,
        )?;
        Ok(Tls {
            s,
            pending: Vec::new(),
        })
    }

    fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.s.write_all(b)?;
        self.s.flush()
    }

    /// Reads until `done(pending)` gives the length of a complete answer.
    fn read_until(&mut self, done: impl Fn(&[u8]) -> Option<usize>) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(n) = done(&self.pending) {
                return Ok(self.pending.drain(..n).collect());
            }
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// Text or meta requests, followed by `mn`; the answers up to its `MN`.
    fn text(&mut self, req: &[u8]) -> io::Result<Vec<u8>> {
        let mut b = req.to_vec();
        b.extend_from_slice(b"mn\r\n");
        self.send(&b)?;
        let mut a = self.read_until(|p| find(p, b"MN\r\n").map(|i| i + 4))?;
        a.truncate(a.len() - 4);
        Ok(a)
    }

    /// Binary requests, followed by a NOOP; the response packets up to its
    /// answer, with the CAS field zeroed (servers draw their own).
    fn binary(&mut self, req: &[u8]) -> io::Result<Vec<u8>> {
        let mut b = req.to_vec();
        b.extend_from_slice(&bin(0x0a, b"", b"", b""));
        self.send(&b)?;
        let mut out = Vec::new();
        loop {
            let mut p = self.read_until(|p| {
                (p.len() >= 24)
                    .then(|| 24 + u32::from_be_bytes([p[8], p[9], p[10], p[11]]) as usize)
                    .filter(|&n| p.len() >= n)
            })?;
            p[16..24].fill(0);
            let noop = p[1] == 0x0a;
            out.extend_from_slice(&p);
            if noop {
                return Ok(out);
            }
        }
    }
}

/// A binary request packet.
fn bin(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, opcode];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// The lines of a `stats` block whose names start with `prefix`.
fn stat_lines(block: &[u8], prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(block)
        .lines()
        .filter(|l| l.starts_with(&format!("STAT {prefix}")))
        .map(str::to_string)
        .collect()
}

fn stat(block: &[u8], name: &str) -> Option<String> {
    stat_lines(block, name)
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")).map(str::to_string))
}

/// The same conversation over TLS with both servers, compared byte for byte.
#[test]
fn text_meta_and_binary_over_tls_match_memcached() {
    let pki = Pki::new("proto");
    let big = vec![b'v'; 300_000];
    let mut set_big = b"set big 5 0 300000\r\n".to_vec();
    set_big.extend_from_slice(&big);
    set_big.extend_from_slice(b"\r\n");
    let mut pipelined = Vec::new();
    for i in 0..200 {
        pipelined.extend_from_slice(format!("set k{i} {i} 0 2\r\nv{}\r\n", i % 10).as_bytes());
    }
    for i in 0..200 {
        pipelined.extend_from_slice(format!("get k{i} k{}\r\n", 199 - i).as_bytes());
    }
    let text_cases: Vec<Vec<u8>> = vec![
        b"set a 1 0 3\r\nabc\r\nget a b\r\nappend a 0 0 2\r\nde\r\nget a\r\n".to_vec(),
        b"incr n 1\r\nset n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\ndelete n\r\ndelete n\r\n"
            .to_vec(),
        b"bogus command\r\nget\r\nset x 0 0 z\r\n".to_vec(),
        b"ms m 2 T0 F7\r\nhi\r\nmg m v f t\r\nma m\r\nmd m q\r\nmg m v\r\nme m\r\n".to_vec(),
        b"verbosity 0\r\nversion\r\n".to_vec(),
        b"get big\r\n".to_vec(),
        pipelined,
    ];
    let mut set_extras = vec![0, 0, 0, 9];
    set_extras.extend_from_slice(&[0, 0, 0, 0]);
    let mut binary_req = bin(0x01, &set_extras, b"bk", b"binary value");
    binary_req.extend_from_slice(&bin(0x00, b"", b"bk", b""));
    binary_req.extend_from_slice(&bin(0x00, b"", b"missing", b""));
    binary_req.extend_from_slice(&bin(0x0b, b"", b"", b""));
    binary_req.extend_from_slice(&bin(0x04, b"", b"bk", b""));
    binary_req.extend_from_slice(&bin(0x0c, b"", b"bk", b""));
    let mut answers = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = start(kind, &pki.args(""));
        let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        let mut got = Vec::new();
        // Alone: memcached 1.6.18 leaves a request that follows a value
        // larger than one TLS record (16 KB) in OpenSSL's buffer until
        // more bytes arrive, so nothing is pipelined behind this one.
        c.send(&set_big).unwrap();
        got.push(c.read_until(|p| find(p, b"\r\n").map(|i| i + 2)).unwrap());
        for case in &text_cases {
            let a = c.text(case).unwrap_or_else(|e| {
                panic!(
                    "{}: {}: {e}",
                    kind.name(),
                    show(&case[..case.len().min(60)])
                )
            });
            got.push(a);
        }
        // A fresh connection for binary: -B auto decides per connection.
        let mut b = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        got.push(b.binary(&binary_req).unwrap());
        answers.push(got);
    }
    for (i, (m, n)) in answers[0].iter().zip(&answers[1]).enumerate() {
        assert_eq!(
            show(n),
            show(m),
            "case {i}: mnemo (left) vs memcached (right)"
        );
    }
    assert_eq!(answers[1][0], b"STORED\r\n");
    assert_eq!(
        answers[1][6].len(),
        "VALUE big 5 300000\r\n".len() + 300_002 + 5
    );
}

#[test]
fn stats_settings_ssl_lines_match_memcached() {
    let pki = Pki::new("settings");
    let more = format!(
        "ssl_ca_cert={},ssl_verify_mode=1,ssl_ciphers=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256,ssl_wbuf_size=32,ssl_session_cache,ssl_kernel_tls,ssl_min_version=3",
        pki.path("ca.pem")
    );
    for args in [pki.args(""), pki.args(&more)] {
        let mut blocks = Vec::new();
        for kind in [Kind::Memcached, Kind::Mnemo] {
            let srv = start(kind, &args);
            let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
            let settings = c.text(b"stats settings\r\n").unwrap();
            let general = c.text(b"stats\r\n").unwrap();
            let names: Vec<String> = String::from_utf8_lossy(&general)
                .lines()
                .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
                .filter(|n| n.starts_with("ssl_") || n.starts_with("time_since"))
                .collect();
            blocks.push((stat_lines(&settings, "ssl_"), names));
        }
        assert_eq!(blocks[1], blocks[0], "mnemo (left) vs memcached (right)");
        assert_eq!(blocks[1].0.len(), 11);
    }
}

/// `ssl_ciphers` limits TLS 1.2 suites (OpenSSL names) and leaves TLS 1.3
/// alone, as memcached's SSL_CTX_set_cipher_list does.
#[test]
fn ssl_ciphers_limit_tls12_as_memcached_s() {
    let pki = Pki::new("ciphers");
    let roots = tls::load_roots(&pki.dir.join("ca.pem")).unwrap();
    let client = |suite: Option<rustls::CipherSuite>| {
        let mut p = rustls::crypto::ring::default_provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match suite {
            Some(s) => {
                p.cipher_suites.retain(|x| x.suite() == s);
                &[&rustls::version::TLS12]
            }
            None => &[&rustls::version::TLS13],
        };
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(p))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        )
    };
    let mut results = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = start(kind, &pki.args("ssl_ciphers=ECDHE-ECDSA-AES256-GCM-SHA384"));
        let mut r = Vec::new();
        for suite in [
            Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
            Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            None,
        ] {
            let ok = Tls::connect_with(srv.port(), client(suite))
                .and_then(|mut c| c.text(b"version\r\n"))
                .is_ok();
            r.push(ok);
        }
        results.push(r);
    }
    assert_eq!(results[1], results[0], "mnemo (left) vs memcached (right)");
    assert_eq!(results[1], [true, false, true]);
}

/// `ssl_keyformat=2`: the key in DER (PKCS#8) serves as the PEM one does.
#[test]
fn der_key_format_as_memcached() {
    let pki = Pki::new("der");
    let pem = std::fs::read_to_string(pki.dir.join("server.key")).unwrap();
    let der = KeyPair::from_pem(&pem).unwrap().serialize_der();
    std::fs::write(pki.dir.join("server.der"), der).unwrap();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let args = vec![
            "-Z".to_string(),
            "-o".into(),
            format!(
                "ssl_chain_cert={},ssl_key={},ssl_keyformat=2",
                pki.path("server.pem"),
                pki.path("server.der")
            ),
        ];
        let srv = start(kind, &args);
        let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        let s = c.text(b"stats settings\r\n").unwrap();
        assert_eq!(
            stat(&s, "ssl_keyformat").as_deref(),
            Some("2"),
            "{}",
            kind.name()
        );
    }
}

/// A PKCS#8 key under a PEM label that names another encoding (`EC PRIVATE
/// KEY` here; gomemcache's `TestTLS` key has `RSA PRIVATE KEY`): OpenSSL
/// reads it whatever the label says, so memcached serves with it, and so
/// does mnemo.
#[test]
fn mislabelled_pem_key_serves_as_memcached() {
    let pki = Pki::new("mislabel");
    let pem = std::fs::read_to_string(pki.dir.join("server.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    std::fs::write(
        pki.dir.join("mislabelled.key"),
        pem.replace("PRIVATE KEY", "EC PRIVATE KEY"),
    )
    .unwrap();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let args = vec![
            "-Z".to_string(),
            "-o".into(),
            format!(
                "ssl_chain_cert={},ssl_key={}",
                pki.path("server.pem"),
                pki.path("mislabelled.key")
            ),
        ];
        let srv = start(kind, &args);
        let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        let r = c.text(b"set k 0 0 1\r\nv\r\nget k\r\n").unwrap();
        assert_eq!(
            show(&r),
            show(b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"),
            "{}",
            kind.name()
        );
    }
}

/// With the session cache, each handshake stores sessions (TLS 1.3: two
/// tickets each, as OpenSSL issues them) and `ssl_new_sessions` counts
/// them as memcached's does; `stats reset` zeroes it.
#[test]
fn ssl_new_sessions_counts_as_memcached() {
    let pki = Pki::new("sessions");
    let mut counts = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = start(kind, &pki.args("ssl_session_cache"));
        let mut seen = Vec::new();
        for _ in 0..2 {
            let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
            seen.push(stat(&c.text(b"stats\r\n").unwrap(), "ssl_new_sessions"));
        }
        let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        c.text(b"stats reset\r\n").unwrap();
        seen.push(stat(&c.text(b"stats\r\n").unwrap(), "ssl_new_sessions"));
        counts.push(seen);
    }
    assert_eq!(counts[1], counts[0], "mnemo (left) vs memcached (right)");
}

/// The general `ssl_*` lines sit where memcached's do: after log_watchers.
#[test]
fn ssl_stats_follow_log_watchers() {
    let pki = Pki::new("order");
    let srv = start(Kind::Mnemo, &pki.args("ssl_session_cache"));
    let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
    let general = String::from_utf8(c.text(b"stats\r\n").unwrap()).unwrap();
    let names: Vec<&str> = general
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .collect();
    let at = names.iter().position(|n| *n == "log_watchers").unwrap();
    assert_eq!(
        &names[at + 1..at + 5],
        [
            "ssl_new_sessions",
            "ssl_handshake_errors",
            "time_since_server_cert_refresh",
            "unexpected_napi_ids"
        ]
    );
    // Without -Z there are none, as in memcached.
    let plain = Server::mnemo(&[]);
    let s = plain.connect().request(b"stats\r\n");
    assert!(find(&s, b"ssl_").is_none());
}

#[test]
fn notls_listener_beside_tls_ones() {
    let pki = Pki::new("notls");
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let plain_port = support::free_port();
        let mut args = pki.args("");
        args.extend(["-l".into(), format!("notls:127.0.0.1:{plain_port}")]);
        let srv = start(kind, &args);
        let mut t = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        assert_eq!(t.text(b"set k 0 0 1\r\nx\r\n").unwrap(), b"STORED\r\n");
        let mut p = support::Client::connect(([127, 0, 0, 1], plain_port).into());
        assert_eq!(
            show(&p.request(b"get k\r\n")),
            "VALUE k 0 1\\r\\nx\\r\\nEND\\r\\n",
            "{}",
            kind.name()
        );
        // The TLS port does not speak plain text.
        let mut raw = support::Client::connect(srv.addr());
        raw.send(b"get k\r\n");
        raw.set_read_timeout(Duration::from_secs(3));
        assert!(find(&raw.read_to_eof().unwrap_or_default(), b"VALUE").is_none());
    }
}

#[test]
fn client_certificates_verified_when_required() {
    let pki = Pki::new("mtls");
    let more = format!("ssl_ca_cert={},ssl_verify_mode=2", pki.path("ca.pem"));
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = start(kind, &pki.args(&more));
        // Without a certificate: refused (under TLS 1.3 the client learns
        // it at its first read).
        let r =
            Tls::connect(srv.port(), &pki.trust("ca.pem")).and_then(|mut c| c.text(b"version\r\n"));
        assert!(r.is_err(), "{}: {r:?}", kind.name());
        // With one the CA signed: served.
        let mut o = pki.trust("ca.pem");
        o.cert = Some(pki.dir.join("client.pem"));
        o.key = Some(pki.dir.join("client.key"));
        let mut c = Tls::connect(srv.port(), &o).unwrap();
        assert_eq!(c.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
        // One from another CA: refused.
        let mut o = pki.trust("ca.pem");
        o.cert = Some(pki.dir.join("server2.pem"));
        o.key = Some(pki.dir.join("server2.key"));
        let r = Tls::connect(srv.port(), &o).and_then(|mut c| c.text(b"version\r\n"));
        assert!(r.is_err(), "{}: {r:?}", kind.name());
    }
    // ssl_verify_mode=1 asks but admits a client without one.
    let more = format!("ssl_ca_cert={},ssl_verify_mode=1", pki.path("ca.pem"));
    let srv = start(Kind::Mnemo, &pki.args(&more));
    let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
    assert_eq!(c.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
}

/// A verify mode without `ssl_ca_cert` starts (memcached's OpenSSL does)
/// and then has nothing to trust: mode 1 serves a client without a
/// certificate, mode 2 serves nobody, and a certificate is always refused.
#[test]
fn verify_modes_without_a_ca_behave_as_memcached_s() {
    let pki = Pki::new("noca");
    let mut with_cert = pki.trust("ca.pem");
    with_cert.cert = Some(pki.dir.join("client.pem"));
    with_cert.key = Some(pki.dir.join("client.key"));
    let mut results = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let mut r = Vec::new();
        for mode in ["1", "2"] {
            let srv = start(kind, &pki.args(&format!("ssl_verify_mode={mode}")));
            for o in [&pki.trust("ca.pem"), &with_cert] {
                let ok = Tls::connect(srv.port(), o)
                    .and_then(|mut c| c.text(b"version\r\n"))
                    .is_ok();
                r.push((mode, o.cert.is_some(), ok));
            }
        }
        results.push(r);
    }
    assert_eq!(results[1], results[0], "mnemo (left) vs memcached (right)");
    assert_eq!(
        results[1],
        [
            ("1", false, true),
            ("1", true, false),
            ("2", false, false),
            ("2", true, false)
        ]
    );
}

#[test]
fn refresh_certs_serves_the_new_certificate_to_new_connections() {
    let pki = Pki::new("refresh");
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let live = pki.dir.join(format!("live-{}", kind.name()));
        std::fs::create_dir_all(&live).unwrap();
        let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
        std::fs::copy(pki.dir.join("server.pem"), &cert).unwrap();
        std::fs::copy(pki.dir.join("server.key"), &key).unwrap();
        let args = vec![
            "-Z".to_string(),
            "-o".into(),
            format!(
                "ssl_chain_cert={},ssl_key={}",
                cert.display(),
                key.display()
            ),
        ];
        let srv = start(kind, &args);
        let mut old = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        assert!(Tls::connect(srv.port(), &pki.trust("ca2.pem")).is_err());
        std::fs::copy(pki.dir.join("server2.pem"), &cert).unwrap();
        std::fs::copy(pki.dir.join("server2.key"), &key).unwrap();
        assert_eq!(old.text(b"refresh_certs\r\n").unwrap(), b"OK\r\n");
        assert_eq!(old.text(b"refresh_certs noreply\r\n").unwrap(), b"");
        // New connections get the new certificate; the open one goes on.
        let mut new = Tls::connect(srv.port(), &pki.trust("ca2.pem")).unwrap();
        assert_eq!(new.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
        assert!(Tls::connect(srv.port(), &pki.trust("ca.pem")).is_err());
        assert_eq!(old.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
        let refreshed = stat(
            &new.text(b"stats\r\n").unwrap(),
            "time_since_server_cert_refresh",
        );
        assert!(refreshed.is_some(), "{}", kind.name());
        // A broken file: the error, even with noreply, and the server keeps
        // serving the last good certificate.
        std::fs::write(&cert, "not a certificate\n").unwrap();
        for req in [&b"refresh_certs\r\n"[..], b"refresh_certs noreply\r\n"] {
            let e = String::from_utf8(new.text(req).unwrap()).unwrap();
            let want = format!("Error loading the certificate chain: {} : ", cert.display());
            assert!(
                e.starts_with(&want) && e.ends_with("\r\n"),
                "{}: {e:?}",
                kind.name()
            );
        }
        let mut again = Tls::connect(srv.port(), &pki.trust("ca2.pem")).unwrap();
        assert_eq!(again.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
    }
}

#[test]
fn refresh_certs_without_tls_matches_memcached() {
    let mut answers = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = Server::start(kind, &[]);
        let mut c = srv.connect();
        answers.push(c.request(b"refresh_certs\r\nrefresh_certs noreply\r\nversion\r\n"));
        c.send(b"mn\r\n");
        answers.last_mut().unwrap().extend(c.read_until(b"MN\r\n"));
    }
    assert_eq!(show(&answers[1]), show(&answers[0]));
    assert_eq!(
        show(&answers[1]),
        "Error TLS not enabled\\r\\nError TLS not enabled\\r\\nVERSION 1.6.18\\r\\nMN\\r\\n"
    );
}

#[test]
fn garbage_instead_of_a_handshake_is_counted_and_closed() {
    let pki = Pki::new("garbage");
    let srv = start(Kind::Mnemo, &pki.args(""));
    for junk in [
        &b"get foo\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
        &[0xff; 4096],
    ] {
        let mut raw = support::Client::connect(srv.addr());
        raw.send(junk);
        raw.set_read_timeout(Duration::from_secs(5));
        // Closed, after at most a TLS alert record.
        let rest = raw.read_to_eof().unwrap_or_else(|b| b);
        assert!(rest.is_empty() || rest[0] == 0x15, "{}", show(&rest));
    }
    let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
    let s = c.text(b"stats\r\n").unwrap();
    assert_eq!(stat(&s, "ssl_handshake_errors").as_deref(), Some("3"));
    // stats reset zeroes it, as memcached's does.
    c.text(b"stats reset\r\n").unwrap();
    let s = c.text(b"stats\r\n").unwrap();
    assert_eq!(stat(&s, "ssl_handshake_errors").as_deref(), Some("0"));
}

#[test]
fn tls13_minimum_refuses_a_tls12_client() {
    let pki = Pki::new("v13");
    let srv = start(Kind::Mnemo, &pki.args("ssl_min_version=3"));
    let roots = tls::load_roots(&pki.dir.join("ca.pem")).unwrap();
    let only12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    assert!(Tls::connect_with(srv.port(), Arc::new(only12)).is_err());
    let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
    assert_eq!(c.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
    // And the default (1.2) takes it.
    let srv = start(Kind::Mnemo, &pki.args(""));
    let only12 = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut c = Tls::connect_with(srv.port(), Arc::new(only12)).unwrap();
    assert_eq!(c.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
}

/// Runs a server binary that is expected to exit at once.
fn run_exit(kind: Kind, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(kind.program());
    cmd.args(support::engine_args(kind));
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        cmd.args(["-u", "root"]);
    }
    let port = support::free_port().to_string();
    cmd.args(["-U", "0", "-l", "127.0.0.1", "-p", &port])
        .args(args);
    let out = support::spawn_retrying(
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )
    .unwrap();
    let mut child = out;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} {args:?} did not exit", kind.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The line of memcached's message that mnemo reproduces (memcached's own
/// OpenSSL error queue lines aside): up to " : " where the reason follows.
fn key_line(err: &str) -> String {
    let line = err
        .lines()
        .find(|l| l.starts_with("Error") || l.starts_with("ERROR") || l.starts_with('\''))
        .or_else(|| err.lines().next())
        .unwrap_or("");
    match line.find(" : ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

#[test]
fn start_up_errors_match_memcached() {
    let pki = Pki::new("startup");
    let chain = format!("ssl_chain_cert={}", pki.path("server.pem"));
    let bad = pki.dir.join("bad.pem");
    std::fs::write(&bad, "hello\n").unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["-Z".into()],
        vec![
            "-Z".into(),
            "-o".into(),
            "ssl_chain_cert=/nonexistent/c.pem".into(),
        ],
        vec![
            "-Z".into(),
            "-o".into(),
            format!("ssl_chain_cert={}", bad.display()),
        ],
        vec![
            "-Z".into(),
            "-o".into(),
            format!("{chain},ssl_key=/nonexistent/k.pem"),
        ],
        vec![
            "-Z".into(),
            "-o".into(),
            format!("{chain},ssl_key={}", pki.path("client.key")),
        ],
        vec![
            "-Z".into(),
            "-o".into(),
            format!(
                "{chain},ssl_key={},ssl_ca_cert=/nonexistent/ca.pem",
                pki.path("server.key")
            ),
        ],
        vec![
            "-Z".into(),
            "-o".into(),
            format!(
                "{chain},ssl_key={},ssl_ciphers=NOSUCHCIPHER",
                pki.path("server.key")
            ),
        ],
        vec![
            "-Z".into(),
            "-o".into(),
            format!("{chain},ssl_key={},ssl_keyformat=5", pki.path("server.key")),
        ],
        vec!["-Z".into(), "-p".into(), "0".into()],
        vec!["-o".into(), "ssl_verify_mode=5".into()],
        vec!["-o".into(), "ssl_verify_mode=x".into()],
        vec!["-o".into(), "ssl_min_version=4".into()],
        vec!["-o".into(), "ssl_keyformat=x".into()],
        vec!["-o".into(), "ssl_chain_cert".into()],
        vec!["-l".into(), "notls:127.0.0.1".into()],
    ];
    for args in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mc_code, mc_err) = run_exit(Kind::Memcached, &a);
        let (mn_code, mn_err) = run_exit(Kind::Mnemo, &a);
        assert_eq!(
            mn_code, mc_code,
            "{args:?}: memcached said {mc_err:?}, mnemo {mn_err:?}"
        );
        assert_eq!(key_line(&mn_err), key_line(&mc_err), "{args:?}");
    }
    // Where mnemo refuses what memcached's OpenSSL would do: said clearly.
    let (code, err) = run_exit(Kind::Mnemo, &["-o", "ssl_min_version=0"]);
    assert_eq!(code, 1);
    assert!(err.contains("TLS 1.0 and 1.1 are not supported"), "{err}");
}

#[test]
fn help_lists_the_ssl_options() {
    let out = Command::new(Kind::Mnemo.program())
        .arg("-h")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for o in [
        "-Z, --enable-ssl",
        "ssl_chain_cert",
        "ssl_verify_mode",
        "ssl_min_version",
    ] {
        assert!(help.contains(o), "{o}");
    }
}

/// Large values pipelined with other requests, both ways: the session's
/// buffered input and output must not stall the connection (memcached
/// 1.6.18 does stall here, see above, so this one is mnemo's alone).
#[test]
fn large_values_pipelined_over_tls() {
    let pki = Pki::new("large");
    let srv = start(Kind::Mnemo, &pki.args(""));
    let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
    let mut req = Vec::new();
    let mut want = Vec::new();
    for (k, n) in [("a", 900_000usize), ("b", 17_000), ("c", 1)] {
        req.extend_from_slice(format!("set {k} 0 0 {n}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(k.as_bytes()[0], n));
        req.extend_from_slice(b"\r\n");
        want.extend_from_slice(b"STORED\r\n");
    }
    req.extend_from_slice(b"get a b c a\r\n");
    let got = c.text(&req).unwrap();
    assert!(
        got.starts_with(&want),
        "{}",
        show(&got[..got.len().min(80)])
    );
    let body = &got[want.len()..];
    assert_eq!(
        body.len(),
        2 * (900_000 + 18 + 2) + (17_000 + 17 + 2) + (1 + 13 + 2) + 5
    );
    assert!(body.ends_with(b"END\r\n"));
    // The connection goes on.
    assert_eq!(c.text(b"version\r\n").unwrap(), b"VERSION 1.6.18\r\n");
}

/// An OpenSSL client (Python's `ssl` module, as pymemcache and most Python
/// clients use it) against both servers: the server's certificate checked
/// against the CA and its name, a client certificate sent (ssl_verify_mode
/// 2), TLS 1.2 and 1.3, text and meta; the transcripts must be the same.
const PY_SSL_CLIENT: &str = r#"
import socket, ssl, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"set py 3 0 5\r\nhello\r\nget py\r\nmg py v f\r\nmn\r\n")
            got = b""
            while not got.endswith(b"MN\r\n"):
                b = s.recv(4096)
                if not b:
                    break
                got += b
            print(s.version(), got)
"#;

#[test]
fn python_openssl_client_matches_memcached() {
    let python = support::require_tool("python3");
    let pki = Pki::new("python");
    let more = format!("ssl_ca_cert={},ssl_verify_mode=2", pki.path("ca.pem"));
    let mut outs = Vec::new();
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = start(kind, &pki.args(&more));
        let out = Command::new(&python)
            .args(["-c", PY_SSL_CLIENT, &srv.port().to_string()])
            .args([
                pki.path("ca.pem"),
                pki.path("client.pem"),
                pki.path("client.key"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            kind.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_eq!(outs[1], outs[0], "mnemo (left) vs memcached (right)");
    assert!(outs[1].starts_with("TLSv1.2 b'STORED"), "{}", outs[1]);
    assert!(outs[1].contains("TLSv1.3 b'STORED"), "{}", outs[1]);
}

/// A watcher on a TLS connection gets its `OK` and its lines through the
/// TLS session, as memcached's does (its logger writes through the
/// connection's own write function).
#[test]
fn watch_over_tls_matches_memcached() {
    let pki = Pki::new("watch");
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let srv = start(kind, &pki.args(""));
        let mut w = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        w.send(b"watch mutations\r\n").unwrap();
        let ok = w.read_until(|p| find(p, b"\r\n").map(|i| i + 2)).unwrap();
        assert_eq!(ok, b"OK\r\n", "{}", kind.name());
        let mut c = Tls::connect(srv.port(), &pki.trust("ca.pem")).unwrap();
        assert_eq!(c.text(b"set k 0 0 1\r\n1\r\n").unwrap(), b"STORED\r\n");
        let line = w.read_until(|p| find(p, b"\n").map(|i| i + 1)).unwrap();
        let line = String::from_utf8_lossy(&line).into_owned();
        assert!(
            line.contains(" type=item_store key=k status=stored cmd=set ttl=0 "),
            "{}: {line}",
            kind.name()
        );
    }
}
