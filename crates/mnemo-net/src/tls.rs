//! TLS configuration: memcached's `ssl_*` settings turned into rustls
//! configurations, for the server ([`ServerTls`], reloadable) and for
//! clients ([`ClientTlsOptions`] → [`client_config`]).
//!
//! rustls runs on the `ring` provider: no cmake and no system OpenSSL are
//! needed to build, and everything is memory-safe Rust above ring's
//! primitives. rustls speaks TLS 1.2 and 1.3 only, so memcached's
//! `ssl_min_version` 0 and 1 (TLS 1.0/1.1) are refused with an error
//! rather than silently raised.
//!
//! Errors carry memcached's wording ("Error loading the certificate chain:
//! PATH : reason") so that start-up and `refresh_certs` read as memcached's
//! do; the reason after the path is rustls's or the OS's, not OpenSSL's.
//!
//! The server's live configuration sits in an [`ArcSwap`]: every accept
//! takes the current `Arc<ServerConfig>`, and [`ServerTls::refresh`]
//! replaces it whole, so connections already open keep the configuration
//! they were accepted with and new ones see the new certificate.

use crate::stream::Stream;
use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, StoresServerSessions};
use rustls::{
    CipherSuite, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use rustls;

/// A configuration problem, worded as memcached words it (one line, no
/// trailing newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// memcached's `ssl_verify_mode` 0..3: whether the server asks for a
/// client certificate and whether one is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyMode {
    /// 0: no client certificate asked for.
    #[default]
    None,
    /// 1: asked for; verified if sent, a client without one is admitted.
    Request,
    /// 2: required and verified.
    Require,
    /// 3: as 2; OpenSSL's "verify once" only differs on renegotiation,
    /// which neither memcached nor rustls allows.
    Once,
}

impl VerifyMode {
    /// From memcached's option value (0..3).
    pub fn from_level(n: i64) -> Option<VerifyMode> {
        Some(match n {
            0 => VerifyMode::None,
            1 => VerifyMode::Request,
            2 => VerifyMode::Require,
            3 => VerifyMode::Once,
            _ => return None,
        })
    }

    /// The OpenSSL flag word memcached prints in `stats settings`
    /// (SSL_VERIFY_PEER 1, FAIL_IF_NO_PEER_CERT 2, CLIENT_ONCE 4).
    pub fn openssl_flags(self) -> u32 {
        match self {
            VerifyMode::None => 0,
            VerifyMode::Request => 1,
            VerifyMode::Require => 3,
            VerifyMode::Once => 7,
        }
    }
}

/// The lowest protocol version accepted (memcached's `ssl_min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

impl MinVersion {
    /// From memcached's option value: its numbers (2, 3) or the names it
    /// prints (`tlsv1.2`, `tlsv1.3`). TLS 1.0 and 1.1 (0, 1) are refused
    /// with an explanation; anything else is `Err(None)` so the caller can
    /// print memcached's own "Invalid ssl_min_version" line.
    pub fn parse(v: &str) -> Result<MinVersion, Option<TlsError>> {
        match v {
            "2" | "tlsv1.2" => Ok(MinVersion::Tls12),
            "3" | "tlsv1.3" => Ok(MinVersion::Tls13),
            "0" | "1" | "tlsv1.0" | "tlsv1.1" => Err(Some(TlsError(format!(
                "ssl_min_version {v}: TLS 1.0 and 1.1 are not supported (mnemo offers tlsv1.2 and tlsv1.3)"
            )))),
            _ => Err(None),
        }
    }

    /// The name memcached prints in `stats settings`.
    pub fn name(self) -> &'static str {
        match self {
            MinVersion::Tls12 => "tlsv1.2",
            MinVersion::Tls13 => "tlsv1.3",
        }
    }

    fn versions(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => &BOTH,
            MinVersion::Tls13 => &ONLY13,
        }
    }
}

/// How the private key file is encoded: memcached's `ssl_keyformat`, the
/// OpenSSL constants SSL_FILETYPE_PEM (1) and SSL_FILETYPE_ASN1 (2).
/// OpenSSL engines (memcached's third format) have no rustls equivalent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyFormat {
    #[default]
    Pem,
    Der,
}

impl KeyFormat {
    pub fn from_openssl(n: i64) -> Option<KeyFormat> {
        match n {
            1 => Some(KeyFormat::Pem),
            2 => Some(KeyFormat::Der),
            _ => None,
        }
    }
    pub fn openssl_code(self) -> i32 {
        match self {
            KeyFormat::Pem => 1,
            KeyFormat::Der => 2,
        }
    }
}

/// The server's TLS settings, as memcached's `-o ssl_*` options give them.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsOptions {
    /// `ssl_chain_cert`: PEM certificate chain, leaf first. memcached
    /// fails with "(null)" when unset; so does [`server_config`].
    pub chain_cert: Option<PathBuf>,
    /// `ssl_key`; unset: the key is read from the chain file (the help
    /// text's "if not part of the ssl_chain_cert").
    pub key: Option<PathBuf>,
    pub key_format: KeyFormat,
    /// `ssl_ca_cert`: PEM file of the CAs client certificates must chain to.
    pub ca_cert: Option<PathBuf>,
    pub verify_mode: VerifyMode,
    pub min_version: MinVersion,
    /// `ssl_ciphers`: an OpenSSL cipher list; see [`select_suites`].
    pub ciphers: Option<String>,
    /// `ssl_session_cache`: server-side session resumption (off: no
    /// session IDs and no TLS 1.3 tickets, as memcached's cache-off).
    pub session_cache: bool,
}

/// The ring provider with its cipher suites cut to `ciphers` (if given).
fn provider(ciphers: Option<&str>) -> Result<CryptoProvider, TlsError> {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(list) = ciphers {
        p.cipher_suites = select_suites(list, &p.cipher_suites)
            .ok_or_else(|| TlsError(format!("Error setting the provided cipher(s): {list}")))?;
    }
    Ok(p)
}

/// OpenSSL's names for the suites rustls offers.
const OPENSSL_NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// Maps an OpenSSL cipher list onto the suites in `all`, as far as that
/// is meaningful for rustls. Entries are split on `:`, `,` and spaces.
/// OpenSSL (and so memcached, which calls only `SSL_CTX_set_cipher_list`)
/// applies this list to TLS 1.2 only; TLS 1.3 suites stay all enabled
/// unless the list names some by their TLS 1.3 names. Understood: exact
/// suite names (OpenSSL's or IANA's), and `ALL`, `DEFAULT`, `HIGH`,
/// `SECURE` (every suite, all of rustls's being strong). Exclusions (`!x`,
/// `-x`), `+x` reorderings and `@STRENGTH`-style directives are ignored,
/// as are names of ciphers rustls lacks. None if no TLS 1.2 suite is left,
/// which OpenSSL reports as an error too.
pub fn select_suites(
    list: &str,
    all: &[SupportedCipherSuite],
) -> Option<Vec<SupportedCipherSuite>> {
    let mut want12: Vec<CipherSuite> = Vec::new();
    let mut want13: Vec<CipherSuite> = Vec::new();
    let mut every = false;
    for tok in list.split([':', ',', ' ']).filter(|t| !t.is_empty()) {
        if tok.starts_with(['!', '-', '+', '@']) {
            continue;
        }
        if matches!(tok, "ALL" | "DEFAULT" | "HIGH" | "SECURE") {
            every = true;
            continue;
        }
        let named = OPENSSL_NAMES
            .iter()
            .find(|(n, _)| *n == tok)
            .map(|(_, s)| *s)
            .or_else(|| {
                all.iter()
                    .map(|s| s.suite())
                    .find(|s| s.as_str() == Some(tok))
            });
        if let Some(s) = named {
            let is13 = all
                .iter()
                .any(|x| x.suite() == s && matches!(x, SupportedCipherSuite::Tls13(_)));
            if is13 {
                want13.push(s);
            } else {
                want12.push(s);
            }
        }
    }
    let mut out = Vec::new();
    for s in all {
        let keep = match s {
            SupportedCipherSuite::Tls13(_) => want13.is_empty() || want13.contains(&s.suite()),
            SupportedCipherSuite::Tls12(_) => every || want12.contains(&s.suite()),
        };
        if keep {
            out.push(*s);
        }
    }
    let any12 = out
        .iter()
        .any(|s| matches!(s, SupportedCipherSuite::Tls12(_)));
    (any12 || !want13.is_empty()).then_some(out)
}

fn path_text(p: Option<&Path>) -> String {
    p.map_or_else(|| "(null)".to_string(), |p| p.display().to_string())
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_reason)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_reason)?;
    if certs.is_empty() {
        return Err("no certificate found in the file".into());
    }
    Ok(certs)
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        e => format!("{e:?}"),
    }
}

fn load_key(path: &Path, fmt: KeyFormat) -> Result<PrivateKeyDer<'static>, String> {
    match fmt {
        KeyFormat::Pem => PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key found in the file".into()
            }
            e => pem_reason(e),
        }),
        KeyFormat::Der => {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            PrivateKeyDer::try_from(bytes).map_err(|e| e.to_string())
        }
    }
}

/// The provider's signing key for `key`, and `key` as the provider read it.
/// A PEM label names the key's encoding, but OpenSSL reads the key whatever
/// the label says, and some test keys in the wild carry a PKCS#8 body under
/// `RSA PRIVATE KEY` (gomemcache's `TestTLS` key), so memcached serves with
/// them: when the labelled encoding fails, the other two are tried on the
/// same bytes, and the first error is the one reported.
fn load_signing_key(
    prov: &CryptoProvider,
    key: PrivateKeyDer<'static>,
) -> Result<(PrivateKeyDer<'static>, Arc<dyn rustls::sign::SigningKey>), rustls::Error> {
    let first = match prov.key_provider.load_private_key(key.clone_key()) {
        Ok(s) => return Ok((key, s)),
        Err(e) => e,
    };
    let der = key.secret_der().to_vec();
    let others: [PrivateKeyDer<'static>; 3] = [
        PrivatePkcs8KeyDer::from(der.clone()).into(),
        PrivatePkcs1KeyDer::from(der.clone()).into(),
        PrivateSec1KeyDer::from(der).into(),
    ];
    for k in others {
        if std::mem::discriminant(&k) == std::mem::discriminant(&key) {
            continue;
        }
        if let Ok(s) = prov.key_provider.load_private_key(k.clone_key()) {
            return Ok((k, s));
        }
    }
    Err(first)
}

/// Trust anchors from a PEM file of CA certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

/// Builds a server configuration from memcached's settings, checking what
/// memcached's `load_server_certificates` checks, in its order, with its
/// messages. `new_sessions` counts sessions stored by the session cache
/// (memcached's `ssl_new_sessions`).
pub fn server_config(
    o: &ServerTlsOptions,
    new_sessions: Option<Arc<AtomicU64>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain_path = o.chain_cert.as_deref();
    let chain = match chain_path {
        Some(p) => load_certs(p),
        None => Err("no ssl_chain_cert given".to_string()),
    }
    .map_err(|e| {
        TlsError(format!(
            "Error loading the certificate chain: {} : {e}",
            path_text(chain_path)
        ))
    })?;
    let key_path = o.key.as_deref().or(chain_path);
    let key = key_path
        .ok_or_else(|| "no ssl_key given".to_string())
        .and_then(|p| load_key(p, o.key_format))
        .map_err(|e| {
            TlsError(format!(
                "Error loading the key: {} : {e}",
                path_text(key_path)
            ))
        })?;
    let prov = Arc::new(provider(o.ciphers.as_deref())?);
    let (key, signing) = load_signing_key(&prov, key).map_err(|e| {
        TlsError(format!(
            "Error loading the key: {} : {e}",
            path_text(key_path)
        ))
    })?;
    // OpenSSL refuses a key that does not match the certificate while
    // loading it, so memcached reports it as a key error.
    rustls::sign::CertifiedKey::new(chain.clone(), signing)
        .keys_match()
        .map_err(|e| {
            TlsError(format!(
                "Error loading the key: {} : {e}",
                path_text(key_path)
            ))
        })?;
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match &o.ca_cert {
        Some(p) => {
            let roots = load_roots(p).map_err(|e| {
                TlsError(format!(
                    "Error loading the CA certificate: {} : {e}",
                    p.display()
                ))
            })?;
            match o.verify_mode {
                VerifyMode::None => None,
                m => {
                    let b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        prov.clone(),
                    );
                    let b = if m == VerifyMode::Request {
                        b.allow_unauthenticated()
                    } else {
                        b
                    };
                    Some(b.build().map_err(|e| {
                        TlsError(format!(
                            "Error loading the CA certificate: {} : {e}",
                            p.display()
                        ))
                    })?)
                }
            }
        }
        // No CA: as OpenSSL, ask for a certificate and fail every one
        // presented for want of a trust anchor; mode 1 still admits a
        // client that sends none.
        None if o.verify_mode != VerifyMode::None => Some(Arc::new(NoTrustAnchors {
            mandatory: o.verify_mode != VerifyMode::Request,
            algs: prov.signature_verification_algorithms,
        })),
        None => None,
    };
    let b = ServerConfig::builder_with_provider(prov)
        .with_protocol_versions(o.min_version.versions())
        .map_err(|e| TlsError(format!("Error setting the provided cipher(s): {e}")))?;
    let b = match verifier {
        Some(v) => b.with_client_cert_verifier(v),
        None => b.with_no_client_auth(),
    };
    let mut cfg = b
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("Error validating the certificate: {e}")))?;
    if o.session_cache {
        cfg.session_storage = Arc::new(CountingCache {
            inner: ServerSessionMemoryCache::new(1024),
            new_sessions: new_sessions.unwrap_or_default(),
        });
        // OpenSSL's default: two TLS 1.3 tickets per handshake, each a
        // new session in memcached's count.
        cfg.send_tls13_tickets = 2;
    } else {
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    }
    Ok(Arc::new(cfg))
}

/// Client verification with an empty trust store (a verify mode without
/// `ssl_ca_cert`), which rustls's WebPKI verifier refuses to build.
#[derive(Debug)]
struct NoTrustAnchors {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for NoTrustAnchors {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The session cache with memcached's `ssl_new_sessions` count: OpenSSL's
/// new-session callback fires for every session it caches, so does `put`.
#[derive(Debug)]
struct CountingCache {
    inner: Arc<ServerSessionMemoryCache>,
    new_sessions: Arc<AtomicU64>,
}

impl StoresServerSessions for CountingCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.new_sessions.fetch_add(1, Ordering::Relaxed);
        self.inner.put(key, value)
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key)
    }
    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// The server's TLS state: its settings and the configuration new
/// connections get, swapped whole by [`ServerTls::refresh`].
#[derive(Debug)]
pub struct ServerTls {
    opts: ServerTlsOptions,
    current: ArcSwap<ServerConfig>,
    new_sessions: Arc<AtomicU64>,
}

impl ServerTls {
    /// Loads everything once; the error is memcached's start-up message.
    pub fn new(opts: ServerTlsOptions) -> Result<ServerTls, TlsError> {
        let new_sessions = Arc::new(AtomicU64::new(0));
        let cfg = server_config(&opts, Some(new_sessions.clone()))?;
        Ok(ServerTls {
            opts,
            current: ArcSwap::new(cfg),
            new_sessions,
        })
    }

    pub fn options(&self) -> &ServerTlsOptions {
        &self.opts
    }

    /// Re-reads the certificate, key and CA files (memcached's
    /// `refresh_certs`). On error the previous configuration stays.
    pub fn refresh(&self) -> Result<(), TlsError> {
        let cfg = server_config(&self.opts, Some(self.new_sessions.clone()))?;
        self.current.store(cfg);
        Ok(())
    }

    /// The configuration a connection accepted now gets.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Sessions stored by the session cache (`ssl_new_sessions`).
    pub fn new_sessions(&self) -> u64 {
        self.new_sessions.load(Ordering::Relaxed)
    }

    /// Wraps an accepted TCP stream in a server session with the current
    /// configuration; the handshake runs inside its first reads and writes.
    pub fn accept(&self, tcp: Stream) -> io::Result<Stream> {
        Stream::tls_server(tcp, self.config())
    }
}

/// A client's TLS settings.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// PEM file of the CAs the server's certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate chain (PEM) and its key (PEM; unset: read
    /// from the chain file), for servers that verify clients.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (DNS name or IP
    /// address); unset: the host part of the address connected to.
    pub server_name: Option<String>,
    /// Accept any server certificate. For tests and benchmarks only:
    /// the connection is encrypted but the server is not authenticated.
    pub insecure_skip_verify: bool,
    pub min_version: MinVersion,
}

/// Builds a client configuration. Without `ca_cert` and without
/// `insecure_skip_verify` there is nothing to trust, which is an error.
pub fn client_config(o: &ClientTlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let prov = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(o.min_version.versions())
        .map_err(|e| TlsError(e.to_string()))?;
    let b = if o.insecure_skip_verify {
        b.dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(
                prov.signature_verification_algorithms,
            )))
    } else {
        let ca = o.ca_cert.as_deref().ok_or_else(|| {
            TlsError("TLS client: a CA file (or insecure_skip_verify) is needed".into())
        })?;
        let roots = load_roots(ca).map_err(|e| {
            TlsError(format!(
                "Error loading the CA certificate: {} : {e}",
                ca.display()
            ))
        })?;
        b.with_root_certificates(roots)
    };
    let cfg = match &o.cert {
        Some(cp) => {
            let chain = load_certs(cp).map_err(|e| {
                TlsError(format!(
                    "Error loading the certificate chain: {} : {e}",
                    cp.display()
                ))
            })?;
            let kp = o.key.as_deref().unwrap_or(cp);
            let key = load_key(kp, KeyFormat::Pem)
                .map_err(|e| TlsError(format!("Error loading the key: {} : {e}", kp.display())))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| TlsError(format!("Error validating the certificate: {e}")))?
        }
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The name to check the server's certificate against: the configured
/// one, else `host` (an IP address or a DNS name).
pub fn server_name(configured: Option<&str>, host: &str) -> io::Result<ServerName<'static>> {
    let n = configured.unwrap_or(host);
    // "[::1]" as -l and Addr spell IPv6 hosts.
    let n = n.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(n.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TLS server name {n}: {e}"),
        )
    })
}

/// Accepts every server certificate but still checks the handshake
/// signatures, so the session keys are the peer's.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
