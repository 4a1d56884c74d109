//! The replication options on mnemo's command line. They are mnemo's own
//! (memcached has none), so they are long-only, matched exactly and never
//! by prefix: `--t 4` must stay memcached's `--threads 4` and `--n` its
//! `--napi-ids`. Any of them turns replication on; a value that cannot
//! work is refused at start (exit 64) with the option's name, rather than
//! accepted and ignored.

use crate::cli::{CliError, EX_USAGE};

// Letters from Unicode's private use area: no short option can be typed
// as one by accident, and `cli.rs` keys every option by a char.
pub const PEER: char = '\u{e001}';
pub const NODE_ID: char = '\u{e002}';
pub const BACKLOG_SIZE: char = '\u{e003}';
pub const TOMBSTONE_TTL: char = '\u{e004}';
pub const TOMBSTONE_MAX_BYTES: char = '\u{e005}';

/// (long name, key), for `cli.rs`'s table; each takes a value.
pub const LONG: [(&str, char); 5] = [
    ("peer", PEER),
    ("node-id", NODE_ID),
    ("repl-backlog-size", BACKLOG_SIZE),
    ("tombstone-ttl", TOMBSTONE_TTL),
    ("tombstone-max-bytes", TOMBSTONE_MAX_BYTES),
];

/// Default `--repl-backlog-size`: 16 MB (docs/REPLICATION.md section 6).
pub const DEFAULT_BACKLOG: usize = 16 << 20;
/// Default `--tombstone-ttl`: a day, to outlast a partition.
pub const DEFAULT_TOMBSTONE_TTL_S: u64 = 86_400;
/// Default `--tombstone-max-bytes`: the tombstone table's memory bound.
pub const DEFAULT_TOMBSTONE_BYTES: usize = 64 << 20;
/// The smallest backlog accepted: one frame of a small item.
const MIN_BACKLOG: usize = 4096;
/// The smallest tombstone bound accepted: a few hundred deletes.
const MIN_TOMBSTONE_BYTES: usize = 64 << 10;

/// One `--peer`: where to connect, as given (for log lines and stats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub host: String,
    pub port: u16,
}

impl PeerAddr {
    pub fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the options asked for; `None` in `Settings` when none was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplSettings {
    pub peers: Vec<PeerAddr>,
    /// `--node-id`; 0 until given (then derived from the port at start).
    pub node_id: u8,
    pub backlog_bytes: usize,
    pub tombstone_ttl_s: u64,
    pub tombstone_bytes: usize,
}

impl Default for ReplSettings {
    fn default() -> Self {
        ReplSettings {
            peers: Vec::new(),
            node_id: 0,
            backlog_bytes: DEFAULT_BACKLOG,
            tombstone_ttl_s: DEFAULT_TOMBSTONE_TTL_S,
            tombstone_bytes: DEFAULT_TOMBSTONE_BYTES,
        }
    }
}

/// Whether `c` keys one of these options (matched exactly, not by prefix).
pub fn is_replication(c: char) -> bool {
    LONG.iter().any(|&(_, k)| k == c)
}

fn name_of(c: char) -> &'static str {
    LONG.iter().find(|&&(_, k)| k == c).map_or("?", |&(n, _)| n)
}

fn bad(c: char, why: String) -> CliError {
    CliError {
        message: format!("mnemo: --{}: {why}", name_of(c)),
        code: EX_USAGE,
    }
}

/// `HOST:PORT`, `[v6]:PORT`.
fn parse_peer(v: &str) -> Result<PeerAddr, String> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("\"{v}\" is not HOST:PORT"))?;
        (h, p)
    } else {
        v.rsplit_once(':')
            .ok_or_else(|| format!("\"{v}\" is not HOST:PORT"))?
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("\"{v}\" has no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("\"{v}\": port must be 1..65535"))?;
    Ok(PeerAddr {
        host: host.to_string(),
        port,
    })
}

/// A byte size with an optional k/m/g suffix.
fn parse_bytes(v: &str) -> Option<usize> {
    let (digits, mult) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1usize << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// Takes one option's value into `r`.
pub fn apply(r: &mut ReplSettings, c: char, v: &str) -> Result<(), CliError> {
    match c {
        PEER => r.peers.push(parse_peer(v).map_err(|e| bad(c, e))?),
        NODE_ID => {
            r.node_id = v
                .parse::<u8>()
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| bad(c, format!("\"{v}\": node id must be 1..255")))?
        }
        BACKLOG_SIZE => {
            r.backlog_bytes = parse_bytes(v)
                .filter(|&n| (MIN_BACKLOG..=1 << 40).contains(&n))
                .ok_or_else(|| {
                    bad(
                        c,
                        format!("\"{v}\": a size from 4k to 1024g (suffix k, m or g)"),
                    )
                })?
        }
        TOMBSTONE_TTL => {
            r.tombstone_ttl_s = v
                .parse::<u64>()
                .ok()
                .filter(|&n| (1..=365 * 86_400).contains(&n))
                .ok_or_else(|| bad(c, format!("\"{v}\": seconds, 1 to 31536000")))?
        }
        TOMBSTONE_MAX_BYTES => {
            r.tombstone_bytes = parse_bytes(v)
                .filter(|&n| (MIN_TOMBSTONE_BYTES..=1 << 40).contains(&n))
                .ok_or_else(|| {
                    bad(
                        c,
                        format!("\"{v}\": a size from 64k to 1024g (suffix k, m or g)"),
                    )
                })?
        }
        _ => return Err(bad(c, "unknown replication option".into())),
    }
    Ok(())
}

/// Checks the whole: called once every option is in. `use_cas` false
/// (`-C`) cannot carry versions.
pub fn finish(r: &mut ReplSettings, use_cas: bool, port: i32) -> Result<(), CliError> {
    if !use_cas {
        return Err(CliError {
            message: "mnemo: replication needs CAS: -C cannot be used with --peer".into(),
            code: EX_USAGE,
        });
    }
    if r.node_id == 0 {
        // Nodes on one host differ by port; the low byte is a fair
        // default, and --node-id settles any clash.
        r.node_id = match (port & 0xff) as u8 {
            0 => 1,
            n => n,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{parse, Action, EX_USAGE};

    fn refused(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => {
                // Ours exit 64; getopt's own complaints keep memcached's.
                if e.message.starts_with("mnemo: --") || e.message.contains("-C cannot") {
                    assert_eq!(e.code, EX_USAGE, "{args:?}");
                }
                e.message
            }
            Ok(a) => panic!("{args:?} should be refused, got {a:?}"),
        }
    }

    fn settings(args: &[&str]) -> crate::settings::Settings {
        match parse(args.iter().copied()) {
            Ok(Action::Run(s)) => *s,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn replication_options_are_taken_and_checked() {
        let s = settings(&[
            "-p",
            "7001",
            "--peer",
            "127.0.0.1:7002",
            "--peer=[::1]:7003",
            "--repl-backlog-size=2m",
            "--tombstone-ttl",
            "60",
            "--tombstone-max-bytes=1g",
        ]);
        let r = s.repl.expect("replication on");
        assert_eq!(r.peers.len(), 2);
        assert_eq!(r.peers[1].name(), "[::1]:7003");
        assert_eq!(r.backlog_bytes, 2 << 20);
        assert_eq!(r.tombstone_ttl_s, 60);
        assert_eq!(r.tombstone_bytes, 1 << 30);
        // No --node-id: the port's low byte (7001 & 255 = 89).
        assert_eq!(r.node_id, 89);
        assert!(settings(&["-p", "0"]).repl.is_none());
        assert_eq!(
            settings(&["--node-id", "7"]).repl.map(|r| r.node_id),
            Some(7)
        );
        for (args, want) in [
            (
                &["--peer", "nohost"][..],
                "--peer: \"nohost\" is not HOST:PORT",
            ),
            (&["--peer", "h:0"][..], "port must be 1..65535"),
            (&["--peer", ":11211"][..], "has no host"),
            (&["--node-id", "0"][..], "node id must be 1..255"),
            (&["--node-id", "256"][..], "node id must be 1..255"),
            (&["--repl-backlog-size", "12"][..], "--repl-backlog-size:"),
            (&["--repl-backlog-size", "x"][..], "--repl-backlog-size:"),
            (&["--tombstone-ttl", "0"][..], "--tombstone-ttl:"),
            (
                &["--tombstone-max-bytes", "1k"][..],
                "--tombstone-max-bytes:",
            ),
            (
                &["--tombstone-max-bytes", "-5"][..],
                "--tombstone-max-bytes:",
            ),
            (
                &["-C", "--peer", "h:1"][..],
                "-C cannot be used with --peer",
            ),
        ] {
            let m = refused(args);
            assert!(m.contains(want), "{args:?}: {m}");
        }
        assert!(refused(&["--peer"]).contains("requires an argument"));
    }

    #[test]
    fn they_take_no_prefixes_and_leave_memcacheds_prefixes_alone() {
        assert!(refused(&["--pee", "x"]).contains("unrecognized"));
        assert!(refused(&["--tombstone", "1"]).contains("unrecognized"));
        // Before these options existed `--t` was `--threads` and `--n`
        // `--napi-ids`, as in memcached; they still are.
        match parse(["--t", "3"]) {
            Ok(Action::Run(s)) => assert_eq!(s.threads, 3),
            other => panic!("{other:?}"),
        }
        assert!(refused(&["--n", "1"]).contains("-N"));
    }
}
