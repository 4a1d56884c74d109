//! twemproxy's YAML configuration, with its keys and defaults, plus
//! `backup: POOL`.
//!
//! The file is a mapping of pool names to mappings of scalars and one list
//! (`servers`). It is read by a small reader for exactly that shape of YAML
//! (block mappings and sequences, flow sequences, quoted scalars, comments)
//! rather than a general YAML crate, because every error, including the
//! semantic ones (a bad weight, an unknown hash, a dangling backup), must
//! name the offending line, and YAML crates with serde do not keep spans for
//! values once they are deserialised.

use mnemo_client::{Addr, Distribution, Hash};
use std::collections::HashMap;
use std::time::Duration;

/// One `host:port:weight [name]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    pub addr: Addr,
    pub weight: u32,
    /// The ketama identity: the given name, else `host` for port 11211,
    /// else `host:port` (twemproxy's rule).
    pub name: String,
    /// `host:port:weight` as written, the key twemproxy's stats use.
    pub pname: String,
}

/// A pool's settings; fields are twemproxy's with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConf {
    pub name: String,
    pub listen: Option<Addr>,
    pub hash: Hash,
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: Distribution,
    /// Server timeout; None waits forever (twemproxy's -1 default).
    pub timeout: Option<Duration>,
    pub backlog: i32,
    pub preconnect: bool,
    pub server_connections: u32,
    pub auto_eject_hosts: bool,
    pub server_retry_timeout: Duration,
    pub server_failure_limit: u32,
    pub client_connections: u32,
    /// SO_KEEPALIVE on server connections (twemproxy's meaning).
    pub tcpkeepalive: bool,
    pub servers: Vec<ServerConf>,
    /// Name of the pool that mirrors this one's writes and answers its
    /// failed gets.
    pub backup: Option<String>,
    /// `erasure: K+M`: K data and M parity shards per value (issue #14).
    pub erasure: Option<(u8, u8)>,
    /// `erasure_min_size`: smaller values are copied whole on M+1 servers.
    pub erasure_min_size: usize,
    /// TLS towards the servers and on the listener (`crate::tls`).
    pub tls: crate::tls::PoolTls,
}

/// Values from this size on are coded by default. Below it the per-item
/// overhead of K+M items (memcached's item header and the key on every
/// server, plus the 32-byte shard header) eats the saving. Measured with
/// five memcached 1.6.18 behind the proxy, bytes held per byte of value,
/// 3+2 against 3 whole copies (the `bytes` stat; slab chunks in brackets):
/// 128 B 1.06x (1.06x), 256 B 0.88x (0.83x), 512 B 0.75x (0.67x),
/// 1 KB 0.66x (0.68x), 2 KB 0.61x (0.68x), 16 KB 0.56x (0.55x). From 1 KB
/// the saving is a third or more, Cocytus's range; below it, it shrinks
/// fast while a coded read still needs K shards instead of one copy.
pub const DEFAULT_ERASURE_MIN_SIZE: usize = 1024;

/// A whole configuration: pools in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub pools: Vec<PoolConf>,
}

impl Config {
    /// Index of the pool named `name`.
    pub fn pool_index(&self, name: &str) -> Option<usize> {
        self.pools.iter().position(|p| p.name == name)
    }

    /// Index of each pool's backup pool.
    pub fn backup_index(&self, pool: usize) -> Option<usize> {
        self.pools[pool]
            .backup
            .as_deref()
            .and_then(|b| self.pool_index(b))
    }
}

/// A configuration error with the 1-based line it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    pub line: usize,
    pub text: String,
    pub msg: String,
}

impl std::fmt::Display for ConfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.msg)
        } else {
            write!(
                f,
                "line {}: {}: '{}'",
                self.line,
                self.msg,
                self.text.trim_end()
            )
        }
    }
}

/// A scalar with the line it came from.
#[derive(Debug, Clone)]
struct Scalar {
    line: usize,
    value: String,
}

#[derive(Debug)]
enum Value {
    Scalar(Scalar),
    List(usize, Vec<Scalar>),
}

struct Reader<'a> {
    lines: Vec<(usize, usize, &'a str)>,
    all: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn new(src: &'a str) -> Result<Self, ConfError> {
        let all: Vec<&str> = src.lines().collect();
        let mut lines = Vec::new();
        for (i, raw) in all.iter().enumerate() {
            let no = i + 1;
            if raw.contains('\t') && raw.trim_start().len() != raw.len() && raw.starts_with('\t') {
                return Err(err(no, raw, "tabs are not allowed for indentation in YAML"));
            }
            let content = strip_comment(raw);
            let trimmed = content.trim_end();
            if trimmed.trim().is_empty() || trimmed.trim() == "---" {
                continue;
            }
            let indent = trimmed.len() - trimmed.trim_start().len();
            lines.push((no, indent, trimmed.trim_start()));
        }
        Ok(Reader { lines, all })
    }

    fn text(&self, line: usize) -> &str {
        self.all.get(line.wrapping_sub(1)).copied().unwrap_or("")
    }
}

fn err(line: usize, text: &str, msg: impl Into<String>) -> ConfError {
    ConfError {
        line,
        text: text.to_string(),
        msg: msg.into(),
    }
}

/// Remove a `#` comment that is not inside quotes.
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if i == 0 || s[..i].ends_with(' ') => return &s[..i],
            _ => {}
        }
    }
    s
}

fn unquote(s: &str, line: usize, text: &str) -> Result<String, ConfError> {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(rest) = s.strip_prefix(q) {
            return match rest.strip_suffix(q) {
                Some(inner) => Ok(inner.to_string()),
                None => Err(err(line, text, "unterminated quoted string")),
            };
        }
    }
    Ok(s.to_string())
}

/// Split `key: value` (the colon must be followed by a space or the end).
fn split_key(s: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"') | (None, '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ':') if s[i + 1..].is_empty() || s[i + 1..].starts_with(' ') => {
                return Some((s[..i].trim(), s[i + 1..].trim()))
            }
            _ => {}
        }
    }
    None
}

type RawPool = (Scalar, Vec<(Scalar, Value)>);

fn read_yaml(src: &str) -> Result<(Vec<RawPool>, Reader<'_>), ConfError> {
    let r = Reader::new(src)?;
    let mut pools: Vec<RawPool> = Vec::new();
    let mut i = 0;
    while i < r.lines.len() {
        let (no, indent, s) = r.lines[i];
        let text = r.text(no);
        if indent != 0 {
            return Err(err(no, text, "expected a pool name at column 1"));
        }
        let (name, rest) = split_key(s).ok_or_else(|| err(no, text, "expected 'pool_name:'"))?;
        if !rest.is_empty() {
            return Err(err(no, text, "a pool must be a mapping of settings"));
        }
        let name = unquote(name, no, text)?;
        if name.is_empty() {
            return Err(err(no, text, "empty pool name"));
        }
        i += 1;
        let mut entries: Vec<(Scalar, Value)> = Vec::new();
        let mut key_indent = None;
        while i < r.lines.len() && r.lines[i].1 > 0 {
            let (kno, kind, ks) = r.lines[i];
            let ktext = r.text(kno);
            match key_indent {
                None => key_indent = Some(kind),
                Some(k) if k != kind => {
                    return Err(err(kno, ktext, "bad indentation"));
                }
                _ => {}
            }
            let (k, v) = split_key(ks).ok_or_else(|| err(kno, ktext, "expected 'key: value'"))?;
            let key = Scalar {
                line: kno,
                value: unquote(k, kno, ktext)?,
            };
            i += 1;
            let value = if v.is_empty() {
                // A block sequence follows, indented or at the key's column.
                let mut items = Vec::new();
                while i < r.lines.len() && r.lines[i].1 >= kind && r.lines[i].2.starts_with('-') {
                    let (ino, _, is) = r.lines[i];
                    let itext = r.text(ino);
                    let item = is[1..].trim();
                    if item.is_empty() {
                        return Err(err(ino, itext, "empty list item"));
                    }
                    items.push(Scalar {
                        line: ino,
                        value: unquote(item, ino, itext)?,
                    });
                    i += 1;
                }
                if items.is_empty() {
                    return Err(err(kno, ktext, "missing value"));
                }
                Value::List(kno, items)
            } else if let Some(inner) = v.strip_prefix('[') {
                let inner = inner
                    .strip_suffix(']')
                    .ok_or_else(|| err(kno, ktext, "unterminated flow sequence"))?;
                let mut items = Vec::new();
                for part in inner.split(',') {
                    if part.trim().is_empty() {
                        continue;
                    }
                    items.push(Scalar {
                        line: kno,
                        value: unquote(part, kno, ktext)?,
                    });
                }
                Value::List(kno, items)
            } else {
                Value::Scalar(Scalar {
                    line: kno,
                    value: unquote(v, kno, ktext)?,
                })
            };
            if entries.iter().any(|(e, _)| e.value == key.value) {
                return Err(err(kno, ktext, format!("'{}' is a duplicate", key.value)));
            }
            entries.push((key, value));
        }
        if pools.iter().any(|(p, _)| p.value == name) {
            return Err(err(no, text, format!("pool '{name}' is defined twice")));
        }
        pools.push((
            Scalar {
                line: no,
                value: name,
            },
            entries,
        ));
    }
    if pools.is_empty() {
        return Err(err(0, "", "configuration has no pools"));
    }
    Ok((pools, r))
}

fn parse_bool(s: &Scalar, text: &str) -> Result<bool, ConfError> {
    match s.value.as_str() {
        "true" | "yes" | "True" | "TRUE" => Ok(true),
        "false" | "no" | "False" | "FALSE" => Ok(false),
        _ => Err(err(s.line, text, "is not \"true\" or \"false\"")),
    }
}

fn parse_num(s: &Scalar, text: &str) -> Result<i64, ConfError> {
    s.value
        .parse::<i64>()
        .map_err(|_| err(s.line, text, "is not a number"))
}

/// Parse `host:port:weight [name]` or `/path:weight [name]`.
pub fn parse_server(s: &str) -> Result<ServerConf, String> {
    let (spec, name) = match s.rsplit_once(' ') {
        Some((a, n)) if !n.is_empty() => (a.trim(), Some(n.to_string())),
        _ => (s.trim(), None),
    };
    let bad = || {
        "has an invalid \"hostname:port:weight [name]\" or \"/path/unix_socket:weight [name]\" format string".to_string()
    };
    let (addr_part, weight) = spec.rsplit_once(':').ok_or_else(bad)?;
    let weight: u32 = weight.parse().map_err(|_| {
        "has an invalid weight in \"hostname:port:weight [name]\" format string".to_string()
    })?;
    if weight == 0 {
        return Err("has a zero weight in \"hostname:port:weight [name]\" format string".into());
    }
    let (addr, default_name) = if addr_part.starts_with('/') {
        (Addr::Unix(addr_part.into()), addr_part.to_string())
    } else {
        let (host, port) = addr_part.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(|| {
            "has an invalid port in \"hostname:port:weight [name]\" format string".to_string()
        })?;
        if host.is_empty() {
            return Err(bad());
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = mnemo_client::ring::ketama_name(&host, port);
        (Addr::Tcp { host, port }, name)
    };
    Ok(ServerConf {
        addr,
        weight,
        name: name.unwrap_or(default_name),
        pname: spec.to_string(),
    })
}

/// Parse and validate a configuration file's text.
pub fn parse(src: &str) -> Result<Config, ConfError> {
    let (raw, r) = read_yaml(src)?;
    let mut pools = Vec::new();
    let mut backup_lines = HashMap::new();
    for (name, entries) in &raw {
        let mut p = PoolConf {
            name: name.value.clone(),
            listen: None,
            hash: Hash::Fnv1a_64,
            hash_tag: None,
            distribution: Distribution::Ketama,
            timeout: None,
            backlog: 512,
            preconnect: false,
            server_connections: 1,
            auto_eject_hosts: false,
            server_retry_timeout: Duration::from_millis(30_000),
            server_failure_limit: 2,
            client_connections: 0,
            tcpkeepalive: false,
            servers: Vec::new(),
            backup: None,
            erasure: None,
            erasure_min_size: DEFAULT_ERASURE_MIN_SIZE,
            tls: Default::default(),
        };
        let mut erasure_line = 0;
        let mut min_size_line = 0;
        for (k, v) in entries {
            let text = r.text(k.line);
            let scalar = |v: &Value| match v {
                Value::Scalar(s) => Ok(s.clone()),
                Value::List(l, _) => Err(err(*l, text, "expects a single value, not a list")),
            };
            match k.value.as_str() {
                "listen" => {
                    let s = scalar(v)?;
                    // twemproxy allows "/path 0666" for unix sockets.
                    let a = s.value.split(' ').next().unwrap_or("");
                    p.listen = Some(
                        Addr::parse(a)
                            .ok_or_else(|| err(s.line, text, "has an invalid listen address"))?,
                    );
                }
                "hash" => {
                    let s = scalar(v)?;
                    p.hash = Hash::from_name(&s.value)
                        .ok_or_else(|| err(s.line, text, "is not a valid hash"))?;
                }
                "hash_tag" => {
                    let s = scalar(v)?;
                    let b = s.value.as_bytes();
                    if b.len() != 2 {
                        return Err(err(
                            s.line,
                            text,
                            "is not a valid hash tag string with two characters",
                        ));
                    }
                    p.hash_tag = Some([b[0], b[1]]);
                }
                "distribution" => {
                    let s = scalar(v)?;
                    p.distribution = Distribution::from_name(&s.value)
                        .ok_or_else(|| err(s.line, text, "is not a valid distribution"))?;
                }
                "timeout" => {
                    let s = scalar(v)?;
                    let n = parse_num(&s, text)?;
                    p.timeout = match n {
                        n if n > 0 => Some(Duration::from_millis(n as u64)),
                        -1 => None,
                        _ => return Err(err(s.line, text, "is not a positive timeout in msec")),
                    };
                }
                "backlog" => {
                    let s = scalar(v)?;
                    p.backlog = i32::try_from(parse_num(&s, text)?)
                        .map_err(|_| err(s.line, text, "is out of range"))?;
                }
                "client_connections" => {
                    let s = scalar(v)?;
                    p.client_connections = u32::try_from(parse_num(&s, text)?)
                        .map_err(|_| err(s.line, text, "is out of range"))?;
                }
                "server_connections" => {
                    let s = scalar(v)?;
                    let n = parse_num(&s, text)?;
                    if !(1..=1024).contains(&n) {
                        return Err(err(s.line, text, "must be between 1 and 1024"));
                    }
                    p.server_connections = n as u32;
                }
                "server_retry_timeout" => {
                    let s = scalar(v)?;
                    let n = parse_num(&s, text)?;
                    if n <= 0 {
                        return Err(err(s.line, text, "is not a positive timeout in msec"));
                    }
                    p.server_retry_timeout = Duration::from_millis(n as u64);
                }
                "server_failure_limit" => {
                    let s = scalar(v)?;
                    let n = parse_num(&s, text)?;
                    if n <= 0 || n > u32::MAX as i64 {
                        return Err(err(s.line, text, "is not a positive number"));
                    }
                    p.server_failure_limit = n as u32;
                }
                "preconnect" => p.preconnect = parse_bool(&scalar(v)?, text)?,
                "auto_eject_hosts" => p.auto_eject_hosts = parse_bool(&scalar(v)?, text)?,
                "redis" => {
                    let s = scalar(v)?;
                    if parse_bool(&s, text)? {
                        return Err(err(
                            s.line,
                            text,
                            "redis pools are not supported by mnemo-proxy",
                        ));
                    }
                }
                "tcpkeepalive" => p.tcpkeepalive = parse_bool(&scalar(v)?, text)?,
                // Listeners always use SO_REUSEPORT (one per worker).
                "reuseport" => {
                    parse_bool(&scalar(v)?, text)?;
                }
                "redis_db" | "redis_auth" => {
                    scalar(v)?;
                }
                "backup" => {
                    let s = scalar(v)?;
                    backup_lines.insert(p.name.clone(), s.line);
                    p.backup = Some(s.value);
                }
                "erasure" => {
                    let s = scalar(v)?;
                    let bad = || err(s.line, text, "is not K+M with K >= 1 and M >= 1");
                    let (k, m) = s.value.split_once('+').ok_or_else(bad)?;
                    let k: u8 = k.trim().parse().map_err(|_| bad())?;
                    let m: u8 = m.trim().parse().map_err(|_| bad())?;
                    if k == 0 || m == 0 {
                        return Err(bad());
                    }
                    erasure_line = s.line;
                    p.erasure = Some((k, m));
                }
                "erasure_min_size" => {
                    let s = scalar(v)?;
                    let n = parse_num(&s, text)?;
                    if !(0..=1 << 30).contains(&n) {
                        return Err(err(s.line, text, "is not a size in bytes"));
                    }
                    min_size_line = s.line;
                    p.erasure_min_size = n as usize;
                }
                "servers" => {
                    let items = match v {
                        Value::List(_, items) => items,
                        Value::Scalar(s) => {
                            return Err(err(s.line, text, "expects a list of servers"))
                        }
                    };
                    for it in items {
                        let sc = parse_server(&it.value)
                            .map_err(|m| err(it.line, r.text(it.line), m))?;
                        // twemproxy rejects two servers with one name: they
                        // would share ketama points.
                        if p.servers.iter().any(|s| s.name == sc.name) {
                            return Err(err(
                                it.line,
                                r.text(it.line),
                                "has a duplicate server name",
                            ));
                        }
                        p.servers.push(sc);
                    }
                }
                // TLS keys: their own module, one arm here.
                other if crate::tls::is_key(other) => {
                    let s = scalar(v)?;
                    crate::tls::set(&mut p.tls, other, &s.value)
                        .map_err(|m| err(s.line, text, m))?;
                }
                other => {
                    return Err(err(k.line, text, format!("unknown directive \"{other}\"")));
                }
            }
        }
        if p.servers.is_empty() {
            return Err(err(name.line, r.text(name.line), "pool has no servers"));
        }
        match p.erasure {
            Some((k, m)) => {
                let need = usize::from(k) + usize::from(m);
                if need > p.servers.len() {
                    return Err(err(
                        erasure_line,
                        r.text(erasure_line),
                        format!(
                            "needs K+M = {need} distinct servers, the pool has {}",
                            p.servers.len()
                        ),
                    ));
                }
                if p.backup.is_some() {
                    let l = backup_lines.get(&p.name).copied().unwrap_or(0);
                    return Err(err(
                        l,
                        r.text(l),
                        "an erasure-coded pool cannot have a backup pool (its parity shards are its redundancy)",
                    ));
                }
            }
            None if min_size_line > 0 => {
                return Err(err(
                    min_size_line,
                    r.text(min_size_line),
                    "erasure_min_size needs erasure: K+M in the same pool",
                ));
            }
            None => {}
        }
        crate::tls::check(&p).map_err(|m| err(name.line, r.text(name.line), m))?;
        pools.push(p);
    }
    let cfg = Config { pools };
    // Cross-pool checks: backups exist, listen addresses are distinct, and
    // every pool that is not someone's backup has a listen address.
    for p in &cfg.pools {
        if let Some(b) = &p.backup {
            let line = backup_lines.get(&p.name).copied().unwrap_or(0);
            if b == &p.name {
                return Err(err(line, r.text(line), "a pool cannot be its own backup"));
            }
            if cfg.pool_index(b).is_none() {
                return Err(err(
                    line,
                    r.text(line),
                    format!("backup pool '{b}' is not defined"),
                ));
            }
        }
    }
    for (i, p) in cfg.pools.iter().enumerate() {
        let pool_line = raw[i].0.line;
        match &p.listen {
            None => {
                if !cfg
                    .pools
                    .iter()
                    .any(|q| q.backup.as_deref() == Some(&p.name))
                {
                    return Err(err(
                        pool_line,
                        r.text(pool_line),
                        "pool has no listen address and is no pool's backup",
                    ));
                }
            }
            Some(a) => {
                if cfg.pools[..i].iter().any(|q| q.listen.as_ref() == Some(a)) {
                    return Err(err(
                        pool_line,
                        r.text(pool_line),
                        format!("listen address {a} is used by two pools"),
                    ));
                }
            }
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# two pools
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: \"{}\"
  distribution: ketama
  auto_eject_hosts: true
  timeout: 400
  redis: false
  server_retry_timeout: 2000
  server_failure_limit: 1
  backup: beta
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:2 cache-b   # named
beta:
  servers: [127.0.0.1:11213:1, /tmp/mc.sock:3]
";

    #[test]
    fn good_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.pools.len(), 2);
        let a = &c.pools[0];
        assert_eq!(a.listen, Addr::parse("127.0.0.1:22121"));
        assert_eq!(a.hash, Hash::Fnv1a_64);
        assert_eq!(a.hash_tag, Some(*b"{}"));
        assert_eq!(a.timeout, Some(Duration::from_millis(400)));
        assert!(a.auto_eject_hosts);
        assert_eq!(a.server_failure_limit, 1);
        assert_eq!(a.servers[0].name, "127.0.0.1");
        assert_eq!(a.servers[1].name, "cache-b");
        assert_eq!(a.servers[1].weight, 2);
        assert_eq!(a.servers[1].pname, "127.0.0.1:11212:2");
        assert_eq!(c.backup_index(0), Some(1));
        let b = &c.pools[1];
        assert_eq!(b.listen, None);
        assert_eq!(b.servers[0].name, "127.0.0.1:11213");
        assert_eq!(b.servers[1].addr, Addr::Unix("/tmp/mc.sock".into()));
        // Defaults are twemproxy's.
        assert_eq!(b.hash, Hash::Fnv1a_64);
        assert_eq!(b.distribution, Distribution::Ketama);
        assert_eq!(b.timeout, None);
        assert_eq!(b.server_failure_limit, 2);
        assert_eq!(b.server_retry_timeout, Duration::from_secs(30));
        assert_eq!(b.server_connections, 1);
    }

    fn bad(src: &str, line: usize, needle: &str) {
        match parse(src) {
            Ok(c) => panic!("accepted {src:?}: {c:?}"),
            Err(e) => {
                assert_eq!(e.line, line, "{e}");
                assert!(e.to_string().contains(needle), "{e}");
            }
        }
    }

    #[test]
    fn erasure_settings_are_read_and_checked() {
        let five = "  servers:\n   - h:1:1\n   - h:2:1\n   - h:3:1\n   - h:4:1\n   - h:5:1\n";
        let c = parse(&format!(
            "a:\n  listen: 127.0.0.1:1\n  erasure: 3+2\n  erasure_min_size: 4096\n{five}"
        ))
        .unwrap();
        assert_eq!(c.pools[0].erasure, Some((3, 2)));
        assert_eq!(c.pools[0].erasure_min_size, 4096);
        let c = parse(&format!(
            "a:\n  listen: 127.0.0.1:1\n  erasure: 4+1\n{five}"
        ))
        .unwrap();
        assert_eq!(c.pools[0].erasure_min_size, DEFAULT_ERASURE_MIN_SIZE);
        let c = parse(&format!("a:\n  listen: 127.0.0.1:1\n{five}")).unwrap();
        assert_eq!(c.pools[0].erasure, None);
        for (e, needle) in [
            ("3+3", "needs K+M = 6 distinct servers, the pool has 5"),
            ("0+2", "K >= 1"),
            ("3+0", "K >= 1"),
            ("3", "K+M"),
            ("a+b", "K+M"),
            ("300+2", "K+M"),
        ] {
            bad(
                &format!("a:\n  listen: 127.0.0.1:1\n  erasure: {e}\n{five}"),
                3,
                needle,
            );
        }
        bad(
            &format!("a:\n  listen: 127.0.0.1:1\n  erasure_min_size: 10\n{five}"),
            3,
            "needs erasure",
        );
        bad(
            &format!("a:\n  listen: 127.0.0.1:1\n  erasure_min_size: -1\n  erasure: 3+2\n{five}"),
            3,
            "size in bytes",
        );
        bad(
            &format!(
                "a:\n  listen: 127.0.0.1:1\n  erasure: 3+2\n  backup: b\n{five}b:\n  servers:\n   - h:9:1\n"
            ),
            4,
            "cannot have a backup",
        );
    }

    #[test]
    fn bad_configs_name_their_line() {
        bad(
            "a:\n  listen: 127.0.0.1:1\n  hash: sha1\n  servers:\n   - h:1:1\n",
            3,
            "not a valid hash",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  servers:\n   - h:1:0\n",
            4,
            "zero weight",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  servers:\n   - h:99999:1\n",
            4,
            "invalid port",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  servers:\n   - nonsense\n",
            4,
            "format string",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  bogus: 1\n  servers:\n   - h:1:1\n",
            3,
            "unknown directive",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  timeout: soon\n  servers:\n   - h:1:1\n",
            3,
            "not a number",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  backup: zz\n  servers:\n   - h:1:1\n",
            3,
            "not defined",
        );
        bad("a:\n  listen: 127.0.0.1:1\n", 1, "no servers");
        bad("a:\n  servers:\n   - h:1:1\n", 1, "no listen");
        bad(
            "a:\n  listen: 127.0.0.1:1\n   hash: md5\n  servers:\n   - h:1:1\n",
            3,
            "indentation",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  auto_eject_hosts: maybe\n  servers:\n   - h:1:1\n",
            3,
            "true",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  hash_tag: \"{\"\n  servers:\n   - h:1:1\n",
            3,
            "two characters",
        );
        bad(
            "a:\n  listen: 127.0.0.1:1\n  servers:\n   - h:1:1\n   - h:1:2\n",
            5,
            "duplicate",
        );
        bad("  a:\n", 1, "column 1");
        bad("", 0, "no pools");
    }
}
