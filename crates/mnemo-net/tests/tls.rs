//! TLS streams and configurations against each other over loopback, with
//! certificates made at test time (rcgen): a CA, a server certificate for
//! 127.0.0.1 and a client certificate, both signed by the CA.

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use mnemo_net::tls::{self, MinVersion, VerifyMode};
use mnemo_net::{
    is_handshake_error, Addr, BlockingStream, ClientTlsOptions, ServerTls, ServerTlsOptions, Stream,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("mnemo-net-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_p = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            ("server", vec!["127.0.0.1".to_string()]),
            ("client", vec!["client".to_string()]),
        ] {
            let k = KeyPair::generate().unwrap();
            let c = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&k, &ca, &ca_key)
                .unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), c.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), k.serialize_pem()).unwrap();
        }
        // A second server certificate from another CA, for reloads.
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.join("other.pem"), other.cert.pem()).unwrap();
        std::fs::write(dir.join("other.key"), other.key_pair.serialize_pem()).unwrap();
        Pki { dir }
    }
    fn p(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
    fn server_opts(&self) -> ServerTlsOptions {
        ServerTlsOptions {
            chain_cert: Some(self.p("server.pem")),
            key: Some(self.p("server.key")),
            ..Default::default()
        }
    }
    fn client_opts(&self) -> ClientTlsOptions {
        ClientTlsOptions {
            ca_cert: Some(self.p("ca.pem")),
            ..Default::default()
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A one-connection echo server over `Stream::Tls`, driven as the
/// server's loop drives it: edge-triggered, writable interest kept while
/// the session holds output. Returns what the connection ended with.
fn echo_server(tls: ServerTls) -> (u16, std::thread::JoinHandle<io::Result<()>>) {
    echo_server_reading(tls, 1000)
}

/// `echo_server` reading at most `chunk` bytes at a time.
fn echo_server_reading(
    tls: ServerTls,
    chunk: usize,
) -> (u16, std::thread::JoinHandle<io::Result<()>>) {
    let mut l = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut l, Token(0), Interest::READABLE)?;
        let mut ev = Events::with_capacity(8);
        let tcp = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll.poll(&mut ev, Some(Duration::from_secs(10)))?;
                }
                Err(e) => return Err(e),
            }
        };
        let mut s = tls.accept(Stream::Tcp(tcp))?;
        assert!(s.is_tls());
        poll.registry()
            .register(&mut s, Token(1), Interest::READABLE | Interest::WRITABLE)?;
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            poll.poll(&mut ev, Some(Duration::from_secs(10)))?;
            if ev.is_empty() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        pending.extend_from_slice(&buf[..n]);
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while !pending.is_empty() {
                match s.write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if s.wants_write() {
                match s.flush_tls() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                    _ => {}
                }
            }
        }
    });
    (port, h)
}

fn addr(port: u16) -> Addr {
    Addr::Tcp {
        host: "127.0.0.1".into(),
        port,
    }
}

fn connect(port: u16, o: &ClientTlsOptions) -> io::Result<BlockingStream> {
    let cfg = tls::client_config(o).map_err(io::Error::other)?;
    BlockingStream::connect_tls(
        &addr(port),
        Duration::from_secs(5),
        Some(Duration::from_secs(10)),
        cfg,
        None,
    )
}

fn echo_round(c: &mut BlockingStream, len: usize) -> io::Result<()> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    // Written from another thread: a large echo would otherwise fill both
    // directions' buffers.
    let mut back = vec![0u8; len];
    c.write_all(&data)?;
    c.flush()?;
    c.read_exact(&mut back)?;
    assert_eq!(back, data);
    Ok(())
}

#[test]
fn echo_small_and_large_over_tls() {
    let pki = Pki::new("echo");
    let (port, h) = echo_server(ServerTls::new(pki.server_opts()).unwrap());
    let mut c = connect(port, &pki.client_opts()).unwrap();
    assert!(c.tls().is_some());
    echo_round(&mut c, 5).unwrap();
    // Several records and more than the session's 64 KB buffer.
    echo_round(&mut c, 100_000).unwrap();
    drop(c);
    h.join().unwrap().unwrap();
}

/// Reads far smaller than a record, and far larger: a record's plaintext
/// waits in the session across many small reads, and a large read takes
/// several records at once, without the session refusing input.
#[test]
fn small_and_large_reads_of_many_records() {
    let pki = Pki::new("reads");
    for chunk in [1, 7, 100, 16 * 1024 + 3, 200_000] {
        let (port, h) = echo_server_reading(ServerTls::new(pki.server_opts()).unwrap(), chunk);
        let mut c = connect(port, &pki.client_opts()).unwrap();
        echo_round(&mut c, 3).unwrap();
        echo_round(&mut c, 150_000).unwrap();
        drop(c);
        h.join().unwrap().unwrap();
    }
}

#[test]
fn tls13_only_and_insecure_client() {
    let pki = Pki::new("v13");
    let mut o = pki.server_opts();
    o.min_version = MinVersion::Tls13;
    let (port, h) = echo_server(ServerTls::new(o).unwrap());
    let mut c = connect(
        port,
        &ClientTlsOptions {
            insecure_skip_verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.tls().unwrap().protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    echo_round(&mut c, 10).unwrap();
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn untrusted_server_is_refused_by_client() {
    let pki = Pki::new("untrusted");
    let mut o = pki.server_opts();
    o.chain_cert = Some(pki.p("other.pem"));
    o.key = Some(pki.p("other.key"));
    let (port, h) = echo_server(ServerTls::new(o).unwrap());
    assert!(connect(port, &pki.client_opts()).is_err());
    // The server saw the client's alert during the handshake.
    let e = h.join().unwrap().unwrap_err();
    assert!(is_handshake_error(&e), "{e}");
}

#[test]
fn required_client_certificate() {
    let pki = Pki::new("mtls");
    let mut o = pki.server_opts();
    o.ca_cert = Some(pki.p("ca.pem"));
    o.verify_mode = VerifyMode::Require;
    let tls = ServerTls::new(o.clone()).unwrap();
    let (port, h) = echo_server(tls);
    // TLS 1.3: the client's handshake ends before the server has judged
    // its (missing) certificate, so the refusal shows at the first read.
    let r = connect(port, &pki.client_opts()).and_then(|mut c| echo_round(&mut c, 3));
    assert!(r.is_err());
    let e = h.join().unwrap().unwrap_err();
    assert!(is_handshake_error(&e), "{e}");

    let (port, h) = echo_server(ServerTls::new(o).unwrap());
    let mut co = pki.client_opts();
    co.cert = Some(pki.p("client.pem"));
    co.key = Some(pki.p("client.key"));
    let mut c = connect(port, &co).unwrap();
    echo_round(&mut c, 3).unwrap();
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn requested_client_certificate_is_optional() {
    let pki = Pki::new("request");
    let mut o = pki.server_opts();
    o.ca_cert = Some(pki.p("ca.pem"));
    o.verify_mode = VerifyMode::Request;
    let (port, h) = echo_server(ServerTls::new(o).unwrap());
    let mut c = connect(port, &pki.client_opts()).unwrap();
    echo_round(&mut c, 3).unwrap();
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn garbage_instead_of_a_handshake() {
    let pki = Pki::new("garbage");
    let (port, h) = echo_server(ServerTls::new(pki.server_opts()).unwrap());
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"get foo\r\n").unwrap();
    let e = h.join().unwrap().unwrap_err();
    assert!(is_handshake_error(&e), "{e}");
    // The server answered with an alert or closed; either way, no reply.
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    let n = c.read(&mut b).unwrap_or(0);
    assert!(n == 0 || b[0] == 0x15, "{:?}", &b[..n]);
}

#[test]
fn refresh_swaps_the_certificate_for_new_connections() {
    let pki = Pki::new("refresh");
    let dir = pki.p("live");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = |c: &str, k: &str| {
        std::fs::copy(pki.p(c), dir.join("cert.pem")).unwrap();
        std::fs::copy(pki.p(k), dir.join("key.pem")).unwrap();
    };
    copy("other.pem", "other.key");
    let tls = ServerTls::new(ServerTlsOptions {
        chain_cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        ..Default::default()
    })
    .unwrap();
    let before = tls.config();
    copy("server.pem", "server.key");
    tls.refresh().unwrap();
    assert!(!std::sync::Arc::ptr_eq(&before, &tls.config()));
    // A broken file leaves the last good configuration in place.
    std::fs::write(dir.join("cert.pem"), "junk").unwrap();
    let e = tls.refresh().unwrap_err();
    assert!(
        e.0.starts_with("Error loading the certificate chain: "),
        "{e}"
    );
    std::fs::copy(pki.p("server.pem"), dir.join("cert.pem")).unwrap();
    let (port, h) = echo_server(tls);
    let mut c = connect(port, &pki.client_opts()).unwrap();
    echo_round(&mut c, 3).unwrap();
    drop(c);
    h.join().unwrap().unwrap();
}

#[test]
fn configuration_errors_read_as_memcached_s() {
    let pki = Pki::new("errors");
    let none = ServerTlsOptions::default();
    assert_eq!(
        ServerTls::new(none).unwrap_err().0,
        "Error loading the certificate chain: (null) : no ssl_chain_cert given"
    );
    let mut o = pki.server_opts();
    o.chain_cert = Some("/nonexistent/chain.pem".into());
    let e = ServerTls::new(o).unwrap_err().0;
    assert!(
        e.starts_with("Error loading the certificate chain: /nonexistent/chain.pem : "),
        "{e}"
    );
    let mut o = pki.server_opts();
    o.key = Some(pki.p("ca.pem"));
    let e = ServerTls::new(o).unwrap_err().0;
    assert!(e.starts_with("Error loading the key: "), "{e}");
    let mut o = pki.server_opts();
    o.key = Some(pki.p("client.key"));
    let e = ServerTls::new(o).unwrap_err().0;
    assert!(e.starts_with("Error loading the key: "), "{e}");
    let mut o = pki.server_opts();
    o.ca_cert = Some(Path::new("/nonexistent/ca.pem").into());
    let e = ServerTls::new(o).unwrap_err().0;
    assert!(
        e.starts_with("Error loading the CA certificate: /nonexistent/ca.pem : "),
        "{e}"
    );
    let mut o = pki.server_opts();
    o.ciphers = Some("RC4-MD5".into());
    assert_eq!(
        ServerTls::new(o).unwrap_err().0,
        "Error setting the provided cipher(s): RC4-MD5"
    );
    let mut o = pki.server_opts();
    o.ciphers = Some("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:!aNULL".into());
    ServerTls::new(o).unwrap();
}

#[test]
fn verify_modes_without_a_ca_refuse_every_certificate() {
    let pki = Pki::new("noca");
    let mut co = pki.client_opts();
    co.cert = Some(pki.p("client.pem"));
    co.key = Some(pki.p("client.key"));
    for mode in [VerifyMode::Request, VerifyMode::Require] {
        let mut o = pki.server_opts();
        o.verify_mode = mode;
        // Without a certificate: admitted only when it is not required.
        let (port, h) = echo_server(ServerTls::new(o.clone()).unwrap());
        let r = connect(port, &pki.client_opts()).and_then(|mut c| echo_round(&mut c, 3));
        assert_eq!(r.is_ok(), mode == VerifyMode::Request, "{mode:?}: {r:?}");
        let _ = h.join();
        // With one: nothing to verify it against.
        let (port, h) = echo_server(ServerTls::new(o).unwrap());
        let r = connect(port, &co).and_then(|mut c| echo_round(&mut c, 3));
        assert!(r.is_err(), "{mode:?}");
        let e = h.join().unwrap().unwrap_err();
        assert!(is_handshake_error(&e), "{e}");
    }
}

#[test]
fn option_values() {
    assert_eq!(MinVersion::parse("2"), Ok(MinVersion::Tls12));
    assert_eq!(MinVersion::parse("tlsv1.3"), Ok(MinVersion::Tls13));
    assert!(matches!(MinVersion::parse("0"), Err(Some(_))));
    assert!(matches!(MinVersion::parse("tlsv1.1"), Err(Some(_))));
    assert_eq!(MinVersion::parse("4"), Err(None));
    assert_eq!(
        VerifyMode::from_level(3).map(|m| m.openssl_flags()),
        Some(7)
    );
    assert_eq!(VerifyMode::from_level(4), None);
    let all = rustls::crypto::ring::default_provider().cipher_suites;
    let only13 = tls::select_suites("TLS_AES_128_GCM_SHA256", &all).unwrap();
    assert_eq!(only13.len(), 1);
    let high = tls::select_suites("HIGH:!aNULL", &all).unwrap();
    assert_eq!(high.len(), all.len());
    assert!(tls::select_suites("!ALL", &all).is_none());
}

#[test]
fn corrupt_record_after_the_handshake_is_an_error_not_a_handshake_error() {
    let pki = Pki::new("corrupt");
    let (port, h) = echo_server(ServerTls::new(pki.server_opts()).unwrap());
    let mut c = connect(port, &pki.client_opts()).unwrap();
    echo_round(&mut c, 4).unwrap();
    let BlockingStream::Tls(t) = &mut c else {
        panic!("not TLS");
    };
    // An application-data record whose authentication cannot succeed.
    let mut junk = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    junk.extend_from_slice(&[0xab; 0x20]);
    t.sock.write_all(&junk).unwrap();
    let e = h.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(!is_handshake_error(&e), "{e}");
}

/// A non-blocking client as the proxy would run one: connect started,
/// session wrapped at once, request written while the connect and the
/// handshake are still under way, everything driven by readiness.
#[test]
fn nonblocking_client_connects_handshakes_and_echoes() {
    let pki = Pki::new("nbclient");
    let (port, h) = echo_server(ServerTls::new(pki.server_opts()).unwrap());
    let cfg = tls::client_config(&pki.client_opts()).unwrap();
    let name = tls::server_name(None, "127.0.0.1").unwrap();
    let mut s = Stream::tls_client(Stream::connect(&addr(port)).unwrap(), cfg, name).unwrap();
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut s, Token(1), Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    let mut ev = Events::with_capacity(8);
    let msg = b"hello over tls";
    let (mut sent, mut got) = (0, Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < msg.len() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        if sent < msg.len() {
            match s.write(&msg[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        if s.wants_write() {
            match s.flush_tls() {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) => {}
                Err(e) => panic!("flush: {e}"),
            }
        }
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => panic!("closed"),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                ) =>
            {
                poll.poll(&mut ev, Some(Duration::from_millis(100)))
                    .unwrap();
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(got, msg);
    drop(s);
    h.join().unwrap().unwrap();
}
