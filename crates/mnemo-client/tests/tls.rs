//! mnemo-client's TLS against memcached 1.6.18's own (`-Z`), the reference:
//! certificates made at test time (rcgen), servers on ephemeral loopback
//! ports.

use mnemo_client::{
    Addr, Client, ClientTlsOptions, Conn, Error, Options, Protocol, ServerSpec, Stored, Tls,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

/// A CA, a server certificate for 127.0.0.1 and `mc.test`, a client
/// certificate (both signed by the CA) and a stranger CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("mnemo-client-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_p = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL takes a leaf whose issuer is its own
        // subject (rcgen's default name for all) for a self-signed one.
        ca_p.distinguished_name
            .push(DnType::CommonName, "mnemo test CA");
        let ca = ca_p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
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
            std::fs::write(dir.join(format!("{name}.pem")), c.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), k.serialize_pem()).unwrap();
        }
        let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.join("other.pem"), other.cert.pem()).unwrap();
        Pki { dir }
    }
    fn p(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }
    fn s(&self, f: &str) -> String {
        self.p(f).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A memcached child, killed on drop.
struct Memcached {
    child: Child,
    port: u16,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use mnemo_testkit::free_port;

/// `memcached -Z` with the PKI's server certificate; `extra` is appended
/// to the `-o` list (e.g. `ssl_verify_mode=2,ssl_ca_cert=...`).
fn memcached_tls(pki: &Pki, extra: &str) -> Memcached {
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
    let child =
        mnemo_testkit::memcached_unchecked(port, &["-Z", "-o", &o, "-m", "16", "-u", "root"]);
    Memcached { child, port }
}

fn client(ms: &[&Memcached], tls: ClientTlsOptions, protocol: Protocol) -> Result<Client, Error> {
    let specs = ms
        .iter()
        .map(|m| ServerSpec::new(&format!("127.0.0.1:{}", m.port)).unwrap())
        .collect();
    let opts = Options {
        protocol,
        io_timeout: Some(Duration::from_secs(5)),
        tls: Some(Tls::new(&tls)?),
        ..Options::default()
    };
    Client::new(specs, opts)
}

fn trusting(pki: &Pki) -> ClientTlsOptions {
    ClientTlsOptions {
        ca_cert: Some(pki.p("ca.pem")),
        ..Default::default()
    }
}

#[test]
fn get_set_multiget_over_tls_text_and_binary() {
    let pki = Pki::new("basic");
    let m = [memcached_tls(&pki, ""), memcached_tls(&pki, "")];
    for proto in [Protocol::Text, Protocol::Binary] {
        let c = client(&[&m[0], &m[1]], trusting(&pki), proto).unwrap();
        let keys: Vec<String> = (0..40).map(|i| format!("{proto:?}:{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            let v = format!("v{i}").repeat(i * 50 + 1);
            assert_eq!(
                c.set(k.as_bytes(), v.as_bytes(), i as u32, 0).unwrap(),
                Stored::Stored
            );
        }
        let got = c.get(keys[7].as_bytes()).unwrap().unwrap();
        assert_eq!(got.value, "v7".repeat(351).as_bytes());
        assert_eq!(got.flags, 7);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let all = c.get_multi(&refs).unwrap();
        for (i, it) in all.iter().enumerate() {
            let it = it.as_ref().unwrap();
            assert_eq!(it.value, format!("v{i}").repeat(i * 50 + 1).as_bytes());
        }
        // Every key landed somewhere over TLS: both servers took some.
        assert!(c.server_for(keys[0].as_bytes()).is_ok());
        assert_eq!(c.incr(b"missing-counter", 1).unwrap(), None);
        // A value larger than a TLS record (16 KB).
        let big = vec![b'x'; 100_000];
        assert_eq!(c.set(b"big", &big, 0, 0).unwrap(), Stored::Stored);
        assert_eq!(c.get(b"big").unwrap().unwrap().value, big);
    }
    let c = client(&[&m[0]], trusting(&pki), Protocol::Text).unwrap();
    let r = c.meta_set(b"mk", b"mv", b"T0").unwrap();
    assert_eq!(r.status, mnemo_protocol::client::MetaStatus::Hd);
    assert_eq!(c.meta_get(b"mk", b"v").unwrap().value.unwrap(), b"mv");
}

#[test]
fn server_certificate_is_verified() {
    let pki = Pki::new("verify");
    let m = memcached_tls(&pki, "");
    // Trusting another CA: the handshake fails, so does the request.
    let wrong = ClientTlsOptions {
        ca_cert: Some(pki.p("other.pem")),
        ..Default::default()
    };
    let c = client(&[&m], wrong, Protocol::Text).unwrap();
    assert!(matches!(c.get(b"k"), Err(Error::Io(_))));
    // A name the certificate does not carry.
    let misnamed = ClientTlsOptions {
        server_name: Some("elsewhere.test".into()),
        ..trusting(&pki)
    };
    let c = client(&[&m], misnamed, Protocol::Text).unwrap();
    assert!(matches!(c.get(b"k"), Err(Error::Io(_))));
    // One it does carry, though not the address connected to.
    let named = ClientTlsOptions {
        server_name: Some("mc.test".into()),
        ..trusting(&pki)
    };
    let c = client(&[&m], named, Protocol::Text).unwrap();
    assert_eq!(c.set(b"k", b"v", 0, 0).unwrap(), Stored::Stored);
    // Trust nothing but encrypt: accepted only when asked for.
    let insecure = ClientTlsOptions {
        insecure_skip_verify: true,
        ..Default::default()
    };
    let c = client(&[&m], insecure, Protocol::Text).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().value, b"v");
    // Neither a CA nor insecure: nothing to trust, a configuration error.
    assert!(matches!(
        Tls::new(&ClientTlsOptions::default()),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Tls::new(&ClientTlsOptions {
            ca_cert: Some(pki.p("missing.pem")),
            ..Default::default()
        }),
        Err(Error::Config(_))
    ));
}

#[test]
fn client_certificate_when_the_server_requires_one() {
    let pki = Pki::new("mtls");
    for mode in [2, 3] {
        let m = memcached_tls(
            &pki,
            &format!("ssl_verify_mode={mode},ssl_ca_cert={}", pki.s("ca.pem")),
        );
        // Without a certificate memcached ends the session (under TLS 1.3
        // after the client's side of the handshake, so the request fails).
        let c = client(&[&m], trusting(&pki), Protocol::Text).unwrap();
        assert!(c.set(b"k", b"v", 0, 0).is_err(), "mode {mode}");
        let with_cert = ClientTlsOptions {
            cert: Some(pki.p("client.pem")),
            key: Some(pki.p("client.key")),
            ..trusting(&pki)
        };
        // Several connections with one configuration: the later ones
        // would offer the first one's session ticket, which memcached
        // (OpenSSL without a session id context) refuses when it verifies
        // clients; the client does not offer them.
        let t = Tls::new(&with_cert).unwrap();
        let addr = Addr::parse(&format!("127.0.0.1:{}", m.port)).unwrap();
        for i in 0..3 {
            let mut conn = Conn::connect_with(
                &addr,
                Duration::from_secs(2),
                Some(Duration::from_secs(5)),
                Some(&t),
            )
            .unwrap();
            assert!(conn.is_tls());
            conn.buffer(b"version\r\n");
            conn.flush().unwrap();
            let (r, _) = conn.next_reply().unwrap();
            assert!(
                matches!(r, mnemo_protocol::client::Reply::Version(_)),
                "connection {i}: {r:?}"
            );
        }
        let c = client(&[&m], with_cert, Protocol::Text).unwrap();
        assert_eq!(c.set(b"k", b"v", 0, 0).unwrap(), Stored::Stored);
        let got = c.get_multi(&[b"k", b"nope"]).unwrap();
        assert_eq!(got[0].as_ref().unwrap().value, b"v");
        assert!(got[1].is_none());
    }
}

#[test]
fn unix_socket_with_tls_is_refused() {
    let pki = Pki::new("unix");
    let opts = Options {
        tls: Some(Tls::new(&trusting(&pki)).unwrap()),
        ..Options::default()
    };
    let c = Client::new(vec![ServerSpec::new("/nonexistent/mc.sock").unwrap()], opts).unwrap();
    assert!(matches!(c.get(b"k"), Err(Error::Io(_))));
}
