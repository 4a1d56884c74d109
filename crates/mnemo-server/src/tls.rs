//! memcached's TLS surface in the server: the `-o ssl_*` options with
//! memcached's messages, start-up checks, `notls:` listeners, the
//! `refresh_certs` command, and the `ssl_*` lines of `stats` and `stats
//! settings`. The TLS itself (rustls configurations, the stream) is
//! mnemo-net's; this file only maps memcached's settings onto it.
//!
//! Deliberate differences from memcached, each refused loudly rather than
//! accepted and ignored: TLS 1.0/1.1 (`ssl_min_version` 0 or 1) and OpenSSL
//! engine keys (`ssl_keyformat` other than 1 PEM / 2 DER) do not exist in
//! rustls. `ssl_kernel_tls` is
//! accepted and reported, and TLS stays in user space: what OpenSSL (and
//! so memcached) does whenever the kernel cannot take the session over.

use crate::cli::{CliError, EX_USAGE};
use crate::dispatch::Ctx;
use crate::settings::Settings;
use crate::shared::Shared;
use crate::stats::stat_line;
use mnemo_net::tls::{KeyFormat, MinVersion, VerifyMode};
use mnemo_net::{ServerTls, ServerTlsOptions};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// memcached's `settings.ssl_*`, as given on the command line.
#[derive(Clone, Debug)]
pub struct SslSettings {
    /// `-Z`.
    pub enabled: bool,
    pub chain_cert: Option<String>,
    pub key: Option<String>,
    pub verify_mode: VerifyMode,
    /// OpenSSL's file type number, kept as given (memcached prints it).
    pub keyformat: i64,
    pub ciphers: Option<String>,
    pub ca_cert: Option<String>,
    /// Bytes (the option is in kilobytes). memcached sizes its per-write
    /// copy buffer with it; rustls records are bounded by TLS itself, so
    /// mnemo only reports it.
    pub wbuf_size: u32,
    pub session_cache: bool,
    pub kernel_tls: bool,
    pub min_version: MinVersion,
}

impl Default for SslSettings {
    fn default() -> Self {
        SslSettings {
            enabled: false,
            chain_cert: None,
            key: None,
            verify_mode: VerifyMode::None,
            keyformat: 1,
            ciphers: None,
            ca_cert: None,
            wbuf_size: 16 * 1024,
            session_cache: false,
            kernel_tls: false,
            min_version: MinVersion::Tls12,
        }
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, CliError> {
    Err(CliError {
        message: message.into(),
        code: 1,
    })
}

fn value<'a>(v: Option<&'a str>, name: &str) -> Result<&'a str, CliError> {
    match v {
        Some(v) => Ok(v),
        None => fail(format!("Missing {name} argument")),
    }
}

fn number(v: &str, name: &str) -> Result<i64, CliError> {
    v.trim()
        .parse()
        .or_else(|_| fail(format!("could not parse argument to {name}")))
}

/// One `-o ssl_*` sub-option; `None` if `name` is not one of memcached's.
pub fn suboption(s: &mut Settings, name: &str, v: Option<&str>) -> Option<Result<(), CliError>> {
    let t = &mut s.ssl;
    let r = (|| -> Result<bool, CliError> {
        match name {
            "ssl_chain_cert" => t.chain_cert = Some(value(v, name)?.to_string()),
            "ssl_key" => t.key = Some(value(v, name)?.to_string()),
            "ssl_verify_mode" => {
                let n = number(value(v, name)?, name)?;
                t.verify_mode = match VerifyMode::from_level(n) {
                    Some(m) => m,
                    None => return fail("Invalid ssl_verify_mode. Use help to see valid options."),
                }
            }
            "ssl_keyformat" => t.keyformat = number(value(v, name)?, name)?,
            "ssl_ciphers" => t.ciphers = Some(value(v, name)?.to_string()),
            "ssl_ca_cert" => t.ca_cert = Some(value(v, name)?.to_string()),
            "ssl_wbuf_size" => {
                let kb = number(value(v, name)?, name)?;
                t.wbuf_size = u32::try_from(kb)
                    .ok()
                    .and_then(|kb| kb.checked_mul(1024))
                    .map_or_else(|| fail(format!("could not parse argument to {name}")), Ok)?;
            }
            "ssl_session_cache" => t.session_cache = true,
            "ssl_kernel_tls" => t.kernel_tls = true,
            "ssl_min_version" => {
                let raw = value(v, name)?;
                t.min_version = match MinVersion::parse(raw.trim()) {
                    Ok(m) => m,
                    Err(Some(e)) => return fail(e.to_string()),
                    Err(None) if raw.trim().parse::<i64>().is_err() && !raw.starts_with("tls") => {
                        return fail(format!("could not parse argument to {name}"))
                    }
                    Err(None) => {
                        return fail("Invalid ssl_min_version. Use help to see valid options.")
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })();
    match r {
        Ok(true) => Some(Ok(())),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The `-Z` and `-o ssl_*` part of `-h`.
pub const HELP: &str = "\
-Z, --enable-ssl          enable TLS/SSL
   - ssl_chain_cert:      certificate chain file in PEM format
   - ssl_key:             private key, if not part of the -ssl_chain_cert
   - ssl_keyformat:       private key format (PEM 1 or DER 2) (default: PEM)
   - ssl_verify_mode:     peer certificate verification mode, default is 0(None).
                          valid values are 0(None), 1(Request), 2(Require)
                          or 3(Once)
   - ssl_ciphers:         specify cipher list to be used (TLS 1.2 suites;
                          OpenSSL names, or ALL/DEFAULT/HIGH)
   - ssl_ca_cert:         PEM format file of acceptable client CA's
   - ssl_wbuf_size:       size in kilobytes of per-connection SSL output buffer
                          (default: 16)
   - ssl_session_cache:   enable server-side SSL session cache, to support session
                          resumption
   - ssl_kernel_tls:      accepted; TLS stays in user space (as OpenSSL without
                          kernel support)
   - ssl_min_version:     minimum protocol version to accept (default: tlsv1.2)
                          valid values are 2(tlsv1.2) or 3(tlsv1.3)
                          (TLS 1.0 and 1.1 are not offered)
";

/// The `-l` entry without memcached's `notls:` prefix, and whether the
/// prefix was there.
pub fn split_notls(entry: &str) -> (bool, &str) {
    match entry.strip_prefix("notls:") {
        Some(rest) => (true, rest),
        None => (false, entry),
    }
}

/// Start-up, in memcached's order: a TCP port is needed, then the
/// certificates are loaded. The error is the message and exit status.
pub fn start(s: &Settings) -> Result<Option<Arc<ServerTls>>, (String, i32)> {
    let t = &s.ssl;
    if !t.enabled {
        return Ok(None);
    }
    if s.port == 0 {
        return Err((
            "ERROR: You cannot enable SSL without a TCP port.".into(),
            EX_USAGE,
        ));
    }
    let key_format = match KeyFormat::from_openssl(t.keyformat) {
        Some(f) => f,
        None => {
            return Err((
                format!(
                    "Error loading the key: {} : ssl_keyformat {} is not supported (1 PEM and 2 DER are)",
                    t.key.as_deref().unwrap_or("(null)"),
                    t.keyformat
                ),
                EX_USAGE,
            ))
        }
    };
    let opts = ServerTlsOptions {
        chain_cert: t.chain_cert.as_ref().map(Into::into),
        key: t.key.as_ref().map(Into::into),
        key_format,
        ca_cert: t.ca_cert.as_ref().map(Into::into),
        verify_mode: t.verify_mode,
        min_version: t.min_version,
        ciphers: t.ciphers.clone(),
        session_cache: t.session_cache,
    };
    let tls = ServerTls::new(opts).map_err(|e| (e.to_string(), EX_USAGE))?;
    if t.kernel_tls && s.verbose > 0 {
        eprintln!("ssl_kernel_tls: mnemo keeps TLS in user space (rustls); no kernel offload");
    }
    Ok(Some(Arc::new(tls)))
}

/// `refresh_certs`: re-reads the certificate, key and CA files for new
/// connections. memcached answers OK (unless `noreply`) or the load error,
/// which it sends even with `noreply`.
pub fn refresh_certs(ctx: &Ctx, line: &[u8], out: &mut Vec<u8>) {
    let sh = ctx.shared;
    let noreply = line.split(|&b| b == b' ').rfind(|t| !t.is_empty()) == Some(b"noreply");
    let Some(tls) = &sh.tls else {
        out.extend_from_slice(b"Error TLS not enabled\r\n");
        return;
    };
    match tls.refresh() {
        Ok(()) => {
            sh.ssl_refreshed_at.store(sh.engine.clock().now(), Relaxed);
            if !noreply {
                out.extend_from_slice(b"OK\r\n");
            }
        }
        Err(e) => {
            out.extend_from_slice(e.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// True if the request line is memcached's `refresh_certs` (any arguments).
pub fn is_refresh_certs(line: &[u8]) -> bool {
    line.split(|&b| b == b' ').find(|t| !t.is_empty()) == Some(b"refresh_certs")
}

/// The `ssl_*` lines of `stats`, present only with `-Z`, after
/// `log_watchers` as in memcached.
pub fn general_lines(sh: &Shared, out: &mut Vec<u8>) {
    let Some(tls) = &sh.tls else {
        return;
    };
    let g = &sh.global;
    if sh.settings.ssl.session_cache {
        let n = tls
            .new_sessions()
            .wrapping_sub(g.ssl_new_sessions_base.load(Relaxed));
        stat_line(out, "ssl_new_sessions", n);
    }
    stat_line(
        out,
        "ssl_handshake_errors",
        g.ssl_handshake_errors.load(Relaxed),
    );
    let since = sh
        .engine
        .clock()
        .now()
        .saturating_sub(sh.ssl_refreshed_at.load(Relaxed));
    stat_line(out, "time_since_server_cert_refresh", since);
}

/// `stats reset`'s part: memcached zeroes both TLS counters.
pub fn reset(sh: &Shared) {
    sh.global.ssl_handshake_errors.store(0, Relaxed);
    if let Some(tls) = &sh.tls {
        sh.global
            .ssl_new_sessions_base
            .store(tls.new_sessions(), Relaxed);
    }
}

/// The `ssl_*` lines of `stats settings`, with memcached's spellings of
/// unset values ("(null)" for the paths it prints unchecked, "NULL" for
/// the two it tests).
pub fn settings_lines(s: &Settings, out: &mut Vec<u8>) {
    let t = &s.ssl;
    stat_line(out, "ssl_enabled", if t.enabled { "yes" } else { "no" });
    stat_line(
        out,
        "ssl_chain_cert",
        t.chain_cert.as_deref().unwrap_or("(null)"),
    );
    stat_line(out, "ssl_key", t.key.as_deref().unwrap_or("(null)"));
    stat_line(out, "ssl_verify_mode", t.verify_mode.openssl_flags());
    stat_line(out, "ssl_keyformat", t.keyformat);
    stat_line(out, "ssl_ciphers", t.ciphers.as_deref().unwrap_or("NULL"));
    stat_line(out, "ssl_ca_cert", t.ca_cert.as_deref().unwrap_or("NULL"));
    stat_line(out, "ssl_wbuf_size", t.wbuf_size);
    stat_line(
        out,
        "ssl_session_cache",
        if t.session_cache { "yes" } else { "no" },
    );
    stat_line(
        out,
        "ssl_kernel_tls",
        if t.kernel_tls { "yes" } else { "no" },
    );
    stat_line(out, "ssl_min_version", t.min_version.name());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(name: &str, v: Option<&str>) -> Result<Settings, CliError> {
        let mut s = Settings::default();
        suboption(&mut s, name, v).expect("an ssl option")?;
        Ok(s)
    }

    #[test]
    fn options_and_memcached_s_errors() {
        assert_eq!(
            opt("ssl_verify_mode", Some("5")).unwrap_err().message,
            "Invalid ssl_verify_mode. Use help to see valid options."
        );
        assert_eq!(
            opt("ssl_verify_mode", Some("x")).unwrap_err().message,
            "could not parse argument to ssl_verify_mode"
        );
        assert_eq!(
            opt("ssl_chain_cert", None).unwrap_err().message,
            "Missing ssl_chain_cert argument"
        );
        assert_eq!(
            opt("ssl_min_version", Some("4")).unwrap_err().message,
            "Invalid ssl_min_version. Use help to see valid options."
        );
        assert!(opt("ssl_min_version", Some("0"))
            .unwrap_err()
            .message
            .contains("not supported"));
        assert_eq!(
            opt("ssl_min_version", Some("3")).unwrap().ssl.min_version,
            MinVersion::Tls13
        );
        assert_eq!(
            opt("ssl_wbuf_size", Some("32")).unwrap().ssl.wbuf_size,
            32768
        );
        assert_eq!(
            opt("ssl_verify_mode", Some("2")).unwrap().ssl.verify_mode,
            VerifyMode::Require
        );
        assert!(suboption(&mut Settings::default(), "ssl_bogus", None).is_none());
        assert_eq!(split_notls("notls:127.0.0.1:5"), (true, "127.0.0.1:5"));
        assert_eq!(split_notls("127.0.0.1"), (false, "127.0.0.1"));
        assert!(is_refresh_certs(b"refresh_certs noreply"));
        assert!(!is_refresh_certs(b"refresh_certsx"));
    }
}
