//! memcached's command line, parsed the way its `getopt_long` loop does:
//! clustered short flags (`-vv`, `-dA`), attached or separate values
//! (`-p11211`, `-p 11211`), long forms with `=` or a separate value and
//! unambiguous prefixes (`--port`, `--mem=64`), `-o a,b=c` sub-options.
//!
//! It is hand-written rather than clap-derived because memcached's option
//! grammar (repeatable `-v`, `-l` accumulation, `-o` sub-options with their
//! own errors) is not clap's, and byte-compatible flags are the point.
//! Unlike memcached's `atoi`, malformed numbers are refused with a message
//! instead of silently becoming 0.

use crate::settings::{Protocol, Settings};

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    Run(Box<Settings>),
    Help,
    Version,
    License,
}

/// A command-line error: the message to print and the exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

/// sysexits.h EX_USAGE, which memcached uses for configuration errors.
pub const EX_USAGE: i32 = 64;

fn fail<T>(message: impl Into<String>) -> Result<T, CliError> {
    Err(CliError {
        message: message.into(),
        code: 1,
    })
}

fn usage_fail<T>(message: impl Into<String>) -> Result<T, CliError> {
    Err(CliError {
        message: message.into(),
        code: EX_USAGE,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

/// (long name, short letter, argument).
const LONG: &[(&str, char, Arg)] = &[
    ("unix-mask", 'a', Arg::Required),
    ("enable-shutdown", 'A', Arg::None),
    ("enable-ssl", 'Z', Arg::None),
    ("port", 'p', Arg::Required),
    ("unix-socket", 's', Arg::Required),
    ("udp-port", 'U', Arg::Required),
    ("memory-limit", 'm', Arg::Required),
    ("disable-evictions", 'M', Arg::None),
    ("conn-limit", 'c', Arg::Required),
    ("lock-memory", 'k', Arg::None),
    ("help", 'h', Arg::None),
    ("license", 'i', Arg::None),
    ("version", 'V', Arg::None),
    ("enable-coredumps", 'r', Arg::None),
    ("verbose", 'v', Arg::Optional),
    ("daemon", 'd', Arg::None),
    ("listen", 'l', Arg::Required),
    ("user", 'u', Arg::Required),
    ("pidfile", 'P', Arg::Required),
    ("slab-growth-factor", 'f', Arg::Required),
    ("slab-min-size", 'n', Arg::Required),
    ("threads", 't', Arg::Required),
    ("enable-largepages", 'L', Arg::None),
    ("max-reqs-per-event", 'R', Arg::Required),
    ("disable-cas", 'C', Arg::None),
    ("listen-backlog", 'b', Arg::Required),
    ("protocol", 'B', Arg::Required),
    ("max-item-size", 'I', Arg::Required),
    ("enable-sasl", 'S', Arg::None),
    ("disable-flush-all", 'F', Arg::None),
    ("disable-dumping", 'X', Arg::None),
    ("disable-watch", 'W', Arg::None),
    ("auth-file", 'Y', Arg::Required),
    ("memory-file", 'e', Arg::Required),
    ("extended", 'o', Arg::Required),
    ("napi-ids", 'N', Arg::Required),
];

fn short_arg(c: char) -> Option<Arg> {
    match c {
        'a' | 'p' | 's' | 'U' | 'm' | 'c' | 'l' | 'u' | 'P' | 'f' | 'n' | 't' | 'D' | 'R' | 'b'
        | 'B' | 'I' | 'Y' | 'e' | 'o' | 'N' => Some(Arg::Required),
        'A' | 'Z' | 'M' | 'k' | 'h' | 'i' | 'V' | 'r' | 'v' | 'd' | 'L' | 'C' | 'S' | 'F' | 'X'
        | 'W' => Some(Arg::None),
        _ => None,
    }
}

fn num<T: std::str::FromStr>(flag: char, v: &str) -> Result<T, CliError> {
    v.trim().parse().or_else(|_| {
        fail(format!(
            "Invalid value for -{flag}: \"{v}\" is not a valid number"
        ))
    })
}

/// `-p`/`-U`: a port, 0 (off) or -1 (any free port). memcached takes any
/// int and fails later, at bind time, on the ones no socket can use.
fn port(flag: char, v: &str) -> Result<i32, CliError> {
    match num::<i32>(flag, v)? {
        p @ -1..=65535 => Ok(p),
        _ => fail(format!(
            "Invalid value for -{flag}: \"{v}\" is not a valid number"
        )),
    }
}

/// Parses `argv[1..]`.
pub fn parse<I, S>(args: I) -> Result<Action, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut opts: Vec<(char, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            if i < args.len() {
                return fail(format!("unexpected argument \"{}\"", args[i]));
            }
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let repl = crate::repl::options::LONG.iter();
            let exact_repl = repl
                .map(|&(n, c)| (n, c, Arg::Required))
                .find(|e| e.0 == name);
            let matches: Vec<_> = match LONG.iter().find(|(n, _, _)| *n == name) {
                Some(exact) => vec![*exact],
                // mnemo's own options match exactly only (repl/options.rs).
                None if exact_repl.is_some() => exact_repl.into_iter().collect(),
                None => LONG
                    .iter()
                    .filter(|(n, _, _)| n.starts_with(name))
                    .copied()
                    .collect(),
            };
            let (lname, c, kind) = match matches.as_slice() {
                [one] => *one,
                [] => return fail(format!("mnemo: unrecognized option '--{name}'")),
                _ => return fail(format!("mnemo: option '--{name}' is ambiguous")),
            };
            let value = match kind {
                Arg::None => {
                    if inline.is_some() {
                        return fail(format!(
                            "mnemo: option '--{lname}' doesn't allow an argument"
                        ));
                    }
                    None
                }
                Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => return fail(format!("mnemo: option '--{lname}' requires an argument")),
                },
            };
            opts.push((c, value));
            continue;
        }
        if let Some(cluster) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars: Vec<char> = cluster.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                match short_arg(c) {
                    None => return fail(format!("mnemo: invalid option -- '{c}'")),
                    Some(Arg::Required) => {
                        let rest: String = chars[j..].iter().collect();
                        let value = if !rest.is_empty() {
                            rest
                        } else if i < args.len() {
                            i += 1;
                            args[i - 1].clone()
                        } else {
                            return fail(format!("mnemo: option requires an argument -- '{c}'"));
                        };
                        opts.push((c, Some(value)));
                        j = chars.len();
                    }
                    Some(_) => opts.push((c, None)),
                }
            }
            continue;
        }
        return fail(format!("unexpected argument \"{a}\""));
    }
    apply(opts)
}

fn apply(opts: Vec<(char, Option<String>)>) -> Result<Action, CliError> {
    let mut s = Settings::default();
    let mut slab_chunk_changed = false;
    let mut protocol_specified = false;
    let (mut tcp_specified, mut udp_specified) = (false, false);
    for (c, v) in opts {
        let v = v.unwrap_or_default();
        match c {
            'A' => s.shutdown_command = true,
            'Z' => s.ssl.enabled = true,
            'a' => {
                s.access = u32::from_str_radix(v.trim(), 8)
                    .or_else(|_| fail(format!("Invalid value for -a: \"{v}\" is not an octal mask")))?
            }
            'U' => {
                s.udp_port = port('U', &v)?;
                udp_specified = true;
            }
            'p' => {
                s.port = port('p', &v)?;
                tcp_specified = true;
            }
            's' => s.socket_path = Some(v),
            'm' => {
                let mb: usize = num('m', &v)?;
                s.engine.mem_limit = mb
                    .checked_mul(1024 * 1024)
                    .map_or_else(|| fail("Invalid value for -m: too large"), Ok)?;
            }
            'M' => s.engine.evict_to_free = false,
            'c' => {
                let n: i64 = num('c', &v)?;
                if n <= 0 {
                    return fail("Maximum connections must be greater than 0");
                }
                s.maxconns = n as usize;
            }
            'h' => return Ok(Action::Help),
            'i' => return Ok(Action::License),
            'V' => return Ok(Action::Version),
            'k' => s.lock_memory = true,
            'v' => s.verbose += 1,
            'l' => {
                s.inter = Some(match s.inter.take() {
                    // memcached skips an address it already has.
                    Some(prev) if prev.contains(v.as_str()) => prev,
                    Some(prev) => format!("{prev},{v}"),
                    None => v,
                })
            }
            'd' => s.daemonize = true,
            'r' => s.maxcore = true,
            'R' => {
                let n: i64 = num('R', &v)?;
                if n <= 0 {
                    return fail("Number of requests per event must be greater than 0");
                }
                s.reqs_per_event = n as usize;
            }
            'u' => s.user = Some(v),
            'P' => s.pid_file = Some(v),
            'e' => s.engine.memory_file = Some(std::path::PathBuf::from(v)),
            'f' => {
                let f: f64 = num('f', &v)?;
                if f <= 1.0 {
                    return fail("Factor must be greater than 1");
                }
                s.engine.growth_factor = f;
            }
            'n' => {
                let n: usize = num('n', &v)?;
                if n == 0 {
                    return fail("Chunk size must be greater than 0");
                }
                s.engine.chunk_size = n;
            }
            't' => {
                let n: i64 = num('t', &v)?;
                if n <= 0 {
                    return fail("Number of threads must be greater than 0");
                }
                if n > 64 {
                    eprintln!(
                        "WARNING: Setting a high number of worker threads is not recommended.\n Set this value to the number of cores in your machine or less."
                    );
                }
                s.threads = n as usize;
            }
            'D' => {
                let Some(&d) = v.as_bytes().first() else {
                    return fail("No delimiter specified");
                };
                s.prefix_delimiter = d;
                s.detail_enabled = true;
            }
            'L' => {
                return fail(
                    "Cannot enable large pages on this system\n(There is no support as of this version)",
                )
            }
            'C' => s.engine.use_cas = false,
            'b' => s.backlog = num('b', &v)?,
            'B' => {
                protocol_specified = true;
                s.protocol = match v.as_str() {
                    "auto" => Protocol::Auto,
                    "binary" => Protocol::Binary,
                    "ascii" => Protocol::Ascii,
                    _ => {
                        return usage_fail(format!(
                            "Invalid value for binding protocol: {v}\n -- should be one of auto, binary, or ascii"
                        ))
                    }
                }
            }
            'I' => s.engine.item_size_max = parse_size('I', &v)?,
            'S' => s.sasl = true,
            'F' => s.flush_enabled = false,
            'X' => s.dump_enabled = false,
            'W' => s.watch_enabled = false,
            'Y' => s.auth_file = Some(v.clone()),
            'N' => return usage_fail("mnemo does not support -N (NAPI ids)"),
            'o' => {
                for sub in v.split(',').filter(|x| !x.is_empty()) {
                    extended(&mut s, sub, &mut slab_chunk_changed)?;
                }
            }
            c if crate::repl::options::is_replication(c) => {
                return Err(crate::repl::options::refuse(c))
            }
            other => return fail(format!("Illegal argument \"{other}\"")),
        }
    }
    auth_protocols(&mut s, protocol_specified)?;
    // memcached: a UDP port given without -p is the TCP port too.
    if udp_specified && s.udp_port != 0 && !tcp_specified {
        s.port = s.udp_port;
    }
    finish(&mut s, slab_chunk_changed)?;
    Ok(Action::Run(Box::new(s)))
}

/// memcached's rules tying `-S` to the binary protocol and `-Y` to ASCII.
fn auth_protocols(s: &mut Settings, protocol_specified: bool) -> Result<(), CliError> {
    if s.sasl {
        if !protocol_specified {
            s.protocol = Protocol::Binary;
        } else if s.protocol != Protocol::Binary {
            return usage_fail("ERROR: You cannot allow the ASCII protocol while using SASL.");
        }
        if s.udp_port != 0 {
            return usage_fail("ERROR: Cannot enable UDP while using binary SASL authentication.");
        }
    }
    if s.auth_file.is_some() {
        if !protocol_specified {
            s.protocol = Protocol::Ascii;
        } else if s.protocol != Protocol::Ascii {
            return usage_fail(
                "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.",
            );
        }
    }
    Ok(())
}

/// `-I 8m`, `-I 512k`, `-I 2097152`.
fn parse_size(flag: char, v: &str) -> Result<usize, CliError> {
    let (digits, mult) = match v.as_bytes().last() {
        Some(b'k' | b'K') => (&v[..v.len() - 1], 1024),
        Some(b'm' | b'M') => (&v[..v.len() - 1], 1024 * 1024),
        _ => (v, 1),
    };
    let n: usize = num(flag, digits)?;
    n.checked_mul(mult)
        .map_or_else(|| fail(format!("Invalid value for -{flag}: too large")), Ok)
}

fn need<'a>(value: Option<&'a str>, msg: &str) -> Result<&'a str, CliError> {
    value.map_or_else(|| fail(msg.to_string()), Ok)
}

fn sub_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, CliError> {
    v.trim().parse().or_else(|_| {
        fail(format!(
            "Invalid value for -o {name}: \"{v}\" is not a valid number"
        ))
    })
}

fn extended(s: &mut Settings, sub: &str, slab_chunk_changed: &mut bool) -> Result<(), CliError> {
    let (name, value) = match sub.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (sub, None),
    };
    let e = &mut s.engine;
    match name {
        "maxconns_fast" => s.maxconns_fast = true,
        "no_maxconns_fast" => s.maxconns_fast = false,
        "hashpower" => {
            let v: i64 = sub_num(name, need(value, "Missing numeric argument for hashpower")?)?;
            if v < 12 {
                return fail(format!("Initial hashtable multiplier of {v} is too low"));
            }
            if v > 32 {
                return fail(format!(
                    "Initial hashtable multiplier of {v} is too high\nChoose a value based on \"STAT hash_power_level\" from a running instance"
                ));
            }
            e.hashpower_init = v as u32;
            s.hashpower_set = true;
        }
        "no_hashexpand" => {}
        "slab_reassign" => e.slab_reassign = true,
        "no_slab_reassign" => e.slab_reassign = false,
        "slab_automove" => {
            e.slab_automove = match value {
                None => 1,
                Some(v) => {
                    let n: i64 = sub_num(name, v)?;
                    if !(0..=2).contains(&n) {
                        return fail("slab_automove must be between 0 and 2");
                    }
                    n as u32
                }
            }
        }
        "no_slab_automove" => e.slab_automove = 0,
        "slab_automove_ratio" => {
            let r: f64 = sub_num(name, need(value, "Missing slab_automove_ratio argument")?)?;
            if r <= 0.0 || r > 1.0 {
                return fail("slab_automove_ratio must be > 0 and < 1");
            }
            e.slab_automove_ratio = r;
        }
        "slab_automove_freeratio" => {
            let r: f64 = sub_num(
                name,
                need(value, "Missing slab_automove_freeratio argument")?,
            )?;
            if !(0.0..=1.0).contains(&r) {
                return fail("slab_automove_freeratio must be between 0 and 1");
            }
            s.slab_automove_freeratio = r;
        }
        "slab_automove_window" => {
            let w: u32 = sub_num(name, need(value, "Missing slab_automove_window argument")?)?;
            if w < 3 {
                return fail("slab_automove_window must be > 2");
            }
            e.slab_automove_window = w;
        }
        "tail_repair_time" => {
            let t: u32 = sub_num(
                name,
                need(value, "Missing numeric argument for tail_repair_time")?,
            )?;
            if t < 10 {
                return fail("Cannot set tail_repair_time to less than 10 seconds");
            }
            e.tail_repair_time = t;
        }
        "hash_algorithm" => {
            s.hash_algorithm = match need(value, "Missing hash_algorithm argument")? {
                "jenkins" => "jenkins",
                "murmur3" => "murmur3",
                "xxh3" => "xxh3",
                _ => return fail("Unknown hash_algorithm option (jenkins, murmur3, xxh3)"),
            }
        }
        "lru_crawler" => e.lru_crawler = true,
        "no_lru_crawler" => e.lru_crawler = false,
        "lru_crawler_sleep" => {
            let v: u32 = sub_num(name, need(value, "Missing lru_crawler_sleep value")?)?;
            if v > 1_000_000 {
                return fail("LRU crawler sleep must be between 0 and 1 second");
            }
            e.lru_crawler_sleep = v;
        }
        "lru_crawler_tocrawl" => {
            let v = need(value, "Missing lru_crawler_tocrawl value")?;
            e.lru_crawler_tocrawl = mnemo_protocol::text::strtoul32(v.as_bytes()).map_or_else(
                || fail("lru_crawler_tocrawl takes a numeric 32bit value"),
                Ok,
            )?;
        }
        "lru_maintainer" => {
            e.lru_maintainer = true;
            e.lru_segmented = true;
        }
        "no_lru_maintainer" => {
            e.lru_maintainer = false;
            e.lru_segmented = false;
        }
        "hot_lru_pct" | "warm_lru_pct" => {
            let v: i64 = sub_num(name, need(value, &format!("Missing {name} argument"))?)?;
            if !(1..80).contains(&v) {
                return fail(format!("{name} must be > 1 and < 80"));
            }
            if name == "hot_lru_pct" {
                e.hot_lru_pct = v as u32;
            } else {
                e.warm_lru_pct = v as u32;
            }
        }
        "hot_max_factor" | "warm_max_factor" => {
            let v: f64 = sub_num(name, need(value, &format!("Missing {name} argument"))?)?;
            if v <= 0.0 {
                return fail(format!("{name} must be > 0"));
            }
            if name == "hot_max_factor" {
                e.hot_max_factor = v;
            } else {
                e.warm_max_factor = v;
            }
        }
        "temporary_ttl" => {
            e.temp_lru = true;
            e.temporary_ttl = sub_num(name, need(value, "Missing temporary_ttl argument")?)?;
        }
        "idle_timeout" => {
            s.idle_timeout = sub_num(
                name,
                need(value, "Missing numeric argument for idle_timeout")?,
            )?
        }
        "watcher_logbuf_size" | "worker_logbuf_size" => {
            let v: u32 = sub_num(name, need(value, &format!("Missing {name} argument"))?)?;
            let bytes = v.saturating_mul(1024);
            if name == "watcher_logbuf_size" {
                s.watcher_logbuf_size = bytes;
            } else {
                s.worker_logbuf_size = bytes;
            }
        }
        "slab_chunk_max" => {
            let v: usize = sub_num(name, need(value, "Missing slab_chunk_max argument")?)?;
            // memcached's help says kilobytes, but it stores the number as
            // bytes; do what it does, not what it says.
            e.slab_chunk_max = v;
            *slab_chunk_changed = true;
        }
        "track_sizes" => s.track_sizes = true,
        // mnemo's own: batched socket I/O (see batch.rs), on by default.
        "io_uring" => s.io_uring = true,
        "no_io_uring" => s.io_uring = false,
        // mnemo's own: slab pages on transparent huge pages (arena.rs).
        // mnemo's own; a bad value is refused as memcached refuses one
        // for its keyword-valued hash_algorithm (message, exit 1).
        "engine" => {
            let v = need(value, "Missing engine argument")?;
            e.engine = match mnemo_engine::EngineKind::parse(v) {
                Some(k) => k,
                None => return fail("Unknown engine option (slab, segment)"),
            }
        }
        "hugepages" => e.huge_pages = true,
        "no_hugepages" => e.huge_pages = false,
        "no_inline_ascii_resp"
        | "inline_ascii_resp"
        | "modern"
        | "drop_privileges"
        | "no_drop_privileges"
        | "resp_obj_mem_limit" => {}
        "read_buf_mem_limit" => {
            // Megabytes, kept in bytes in memcached's unsigned int: a limit
            // of 4096 MB or more wraps there, and so it does here.
            let mb: u32 = sub_num(name, need(value, "Missing read_buf_mem_limit argument")?)?;
            s.read_buf_mem_limit = mb.wrapping_mul(1024 * 1024);
        }
        "no_chunked_items" => {
            e.slab_chunk_max = e.page_size;
            *slab_chunk_changed = true;
        }
        "no_modern" => {
            if !*slab_chunk_changed {
                e.slab_chunk_max = e.page_size;
            }
            e.slab_reassign = false;
            e.slab_automove = 0;
            s.maxconns_fast = false;
            e.lru_segmented = false;
            s.hash_algorithm = "jenkins";
            e.lru_crawler = false;
            e.lru_maintainer = false;
        }
        n if n.starts_with("ssl_") => match crate::tls::suboption(s, n, value) {
            Some(r) => r?,
            None => return fail(format!("Illegal suboption \"{sub}\"")),
        },
        _ => return fail(format!("Illegal suboption \"{sub}\"")),
    }
    Ok(())
}

/// memcached's cross-checks after all options are read.
fn finish(s: &mut Settings, slab_chunk_changed: bool) -> Result<(), CliError> {
    let e = &mut s.engine;
    if e.item_size_max < 1024 {
        return usage_fail("Item max size cannot be less than 1024 bytes.");
    }
    if e.item_size_max > e.mem_limit / 2 {
        return usage_fail("Cannot set item size limit higher than 1/2 of memory max.");
    }
    if e.item_size_max > 1024 * 1024 * 1024 {
        return usage_fail("Cannot set item size limit higher than a gigabyte.");
    }
    if e.item_size_max > 1024 * 1024 && !slab_chunk_changed {
        e.slab_chunk_max = 0;
    }
    let chunk_max = e.chunk_max();
    if chunk_max > e.item_size_max {
        return usage_fail(format!(
            "slab_chunk_max (bytes: {chunk_max}) cannot be larger than -I (item_size_max {})",
            e.item_size_max
        ));
    }
    if chunk_max == 0 || !e.item_size_max.is_multiple_of(chunk_max) {
        return usage_fail(format!(
            "-I (item_size_max: {}) must be evenly divisible by slab_chunk_max (bytes: {chunk_max})",
            e.item_size_max
        ));
    }
    if !e.page_size.is_multiple_of(chunk_max) {
        return usage_fail(format!(
            "slab_chunk_max (bytes: {chunk_max}) must divide evenly into {} (slab_page_size)",
            e.page_size
        ));
    }
    if e.hot_lru_pct + e.warm_lru_pct > 80 {
        return usage_fail("hot_lru_pct + warm_lru_pct cannot be more than 80% combined");
    }
    if e.temp_lru && !e.lru_maintainer {
        return usage_fail("temporary_ttl requires lru_maintainer to be enabled");
    }
    if s.socket_path.is_some() && s.inter.is_some() {
        // memcached ignores -l with -s; say so rather than surprise.
        eprintln!("WARNING: -l is ignored when -s is given");
    }
    Ok(())
}

/// The `-h` text.
pub fn usage() -> String {
    let d = Settings::default();
    format!(
        "{identity}
-p, --port=<num>          TCP port to listen on (default: {port})
-U, --udp-port=<num>      UDP port to listen on (default: 0, off)
-s, --unix-socket=<file>  UNIX socket to listen on (disables network support)
-a, --unix-mask=<mask>    access mask for UNIX socket, in octal (default: 700)
-A, --enable-shutdown     enable ascii \"shutdown\" command
-l, --listen=<addr>       interface to listen on (default: INADDR_ANY)
-d, --daemon              run as a daemon
-r, --enable-coredumps    maximize core file limit
-u, --user=<user>         assume identity of <username> (only when run as root)
-m, --memory-limit=<num>  item memory in megabytes (default: 64)
-M, --disable-evictions   return error on memory exhausted instead of evicting
-c, --conn-limit=<num>    max simultaneous connections (default: {maxconns})
-k, --lock-memory         lock down all paged memory
-v, --verbose             verbose (print errors/warnings while in event loop)
-vv                       very verbose (also print client commands/responses)
-vvv                      extremely verbose (internal state transitions)
-h, --help                print this help and exit
-i, --license             print license and exit
-V, --version             print version and exit
-P, --pidfile=<file>      save PID in <file>, only used with -d option
-f, --slab-growth-factor=<num> chunk size growth factor (default: 1.25)
-n, --slab-min-size=<bytes> min space used for key+value+flags (default: 48)
-D <char>     Use <char> as the delimiter between key prefixes and IDs.
              This is used for per-prefix stats reporting. The default is
              \":\" (colon). If this option is specified, stats collection
              is turned on automatically; if not, then it may be turned on
              by sending the \"stats detail on\" command to the server.
-t, --threads=<num>       number of threads to use (default: {threads})
-R, --max-reqs-per-event  maximum number of requests per event, limits the
                          requests processed per connection to prevent
                          starvation (default: {rpe})
-C, --disable-cas         disable use of CAS
-b, --listen-backlog=<num> set the backlog queue limit (default: {backlog})
-B, --protocol=<name>     protocol - one of ascii, binary, or auto (default: auto-negotiate)
-I, --max-item-size=<num> adjusts max item size
                          (default: 1m, min: 1k, max: 1024m)
-F, --disable-flush-all   disable flush_all command
-X, --disable-dumping     disable stats cachedump and lru_crawler metadump
-W  --disable-watch       disable watch commands (live logging)
-e, --memory-file=<file>  mmap a file for item memory (use a ram disk).
                          restartable cache: stop with SIGUSR1 or
                          \"shutdown graceful\" and start again with the same file
-o, --extended            comma separated list of extended options
                          most options have a 'no_' prefix to disable
   - maxconns_fast:       immediately close new connections after limit (default: enabled)
   - hashpower:           an integer multiplier for how large the hash
                          table should be. normally grows at runtime.
   - tail_repair_time:    time in seconds for how long to wait before
                          forcefully killing LRU tail item.
   - hash_algorithm:      accepted for compatibility: jenkins, murmur3, xxh3
   - no_lru_crawler:      disable LRU Crawler background thread.
   - lru_crawler_sleep:   microseconds to sleep between items (default: 100)
   - lru_crawler_tocrawl: max items to crawl per slab per run (default: 0, unlimited)
   - no_lru_maintainer:   disable new LRU system + background thread.
   - hot_lru_pct:         pct of slab memory to reserve for hot lru. (default: 20)
   - warm_lru_pct:        pct of slab memory to reserve for warm lru. (default: 40)
   - hot_max_factor:      items idle > cold lru age * drop from hot lru. (default: 0.20)
   - warm_max_factor:     items idle > cold lru age * this drop from warm. (default: 2.00)
   - temporary_ttl:       TTL's below get separate LRU, can't be evicted. (default: 61)
   - idle_timeout:        timeout for idle connections. (default: 0, no timeout)
   - slab_chunk_max:      maximum slab size in kilobytes. (default: 512)
   - slab_reassign, slab_automove=<0|1|2>, slab_automove_ratio, slab_automove_window
   - track_sizes:         enable dynamic reports for 'stats sizes' command.
   - modern:              enables options which will be default in future.
   - no_modern:           uses defaults of previous major version (1.4.x)
   - no_io_uring:         one recv and one send system call per connection
                          instead of batching them through io_uring (mnemo)
   - hugepages:           slab pages on transparent huge pages: fewer TLB
                          misses, more RSS (mnemo)
   - engine:              storage engine: slab (default, memcached's
                          design) or segment (mnemo)
{tls}",
        tls = crate::tls::HELP,
        identity = crate::shared::IDENTITY,
        port = d.port,
        maxconns = d.maxconns,
        threads = d.threads,
        rpe = d.reqs_per_event,
        backlog = d.backlog,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Settings {
        match parse(args.iter().copied()) {
            Ok(Action::Run(s)) => *s,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn err(args: &[&str]) -> CliError {
        match parse(args.iter().copied()) {
            Err(e) => e,
            Ok(a) => panic!("{args:?} should fail, got {a:?}"),
        }
    }

    #[test]
    fn defaults_match_memcached() {
        let s = run(&[]);
        assert_eq!(s.port, 11211);
        assert_eq!(s.maxconns, 1024);
        assert_eq!(s.threads, 4);
        assert_eq!(s.reqs_per_event, 20);
        assert_eq!(s.engine.mem_limit, 64 << 20);
        assert_eq!(s.engine.item_size_max, 1 << 20);
        assert_eq!(s.backlog, 1024);
    }

    #[test]
    fn ports_as_memcached_keeps_them() {
        use crate::settings::bind_port;
        let s = run(&["-p", "-1", "-U", "-1"]);
        assert_eq!((s.port, s.udp_port), (-1, -1));
        assert_eq!(bind_port(-1), Some(0));
        assert_eq!(bind_port(0), None);
        assert_eq!(bind_port(11211), Some(11211));
        // A UDP port given without -p is the TCP port too; -U 0 is not.
        assert_eq!(run(&["-U", "-1"]).port, -1);
        assert_eq!(run(&["-U", "4000"]).port, 4000);
        assert_eq!(run(&["-U", "0"]).port, 11211);
        assert_eq!(run(&["-U", "4000", "-p", "5000"]).port, 5000);
        assert_eq!(run(&["-p", "5000", "-U", "4000"]).port, 5000);
        for bad in ["-2", "65536", "x"] {
            err(&["-p", bad]);
            err(&["-U", bad]);
        }
    }

    #[test]
    fn short_long_and_clustered() {
        let s = run(&[
            "-p", "1234", "-m64", "-t", "2", "-vv", "-A", "-c", "10", "-I", "2m",
        ]);
        assert_eq!((s.port, s.threads, s.verbose, s.maxconns), (1234, 2, 2, 10));
        assert!(s.shutdown_command);
        assert_eq!(s.engine.item_size_max, 2 << 20);
        let s = run(&[
            "--port=99",
            "--memory-limit",
            "128",
            "--threads=3",
            "--verbose",
            "-dv",
        ]);
        assert_eq!((s.port, s.threads, s.verbose), (99, 3, 2));
        assert!(s.daemonize);
        assert_eq!(s.engine.mem_limit, 128 << 20);
        // Unambiguous prefixes, as getopt_long allows.
        assert_eq!(run(&["--conn=7"]).maxconns, 7);
        let s = run(&[
            "-l",
            "127.0.0.1",
            "-l",
            "::1",
            "-l",
            "127.0.0.1",
            "-I",
            "512k",
        ]);
        assert_eq!(s.inter.as_deref(), Some("127.0.0.1,::1"));
        assert_eq!(s.engine.item_size_max, 512 * 1024);
    }

    #[test]
    fn extended_options() {
        let s = run(&[
            "-o",
            "slab_reassign,slab_automove=2,idle_timeout=5,hashpower=20,modern",
        ]);
        assert!(s.engine.slab_reassign);
        assert_eq!(s.engine.slab_automove, 2);
        assert_eq!(s.idle_timeout, 5);
        assert_eq!(s.engine.hashpower_init, 20);
        let s = run(&["-o", "no_modern"]);
        assert!(!s.maxconns_fast && !s.engine.slab_reassign);
        assert!(!s.engine.lru_segmented && !s.engine.lru_maintainer);
        assert!(!run(&["-o", "no_lru_maintainer"]).engine.lru_segmented);
        assert!(
            run(&["-o", "no_lru_maintainer,lru_maintainer"])
                .engine
                .lru_segmented
        );
        let s = run(&[
            "-o",
            "temporary_ttl=30,hot_lru_pct=10,warm_lru_pct=50,tail_repair_time=20",
        ]);
        assert!(s.engine.temp_lru);
        assert_eq!(s.engine.temporary_ttl, 30);
        assert_eq!(err(&["-o", "bogus"]).message, "Illegal suboption \"bogus\"");
        assert_eq!(err(&["-o", "hashpower=2"]).code, 1);
        assert!(err(&["-o", "hot_lru_pct=50,warm_lru_pct=50"])
            .message
            .contains("80%"));
        assert!(run(&[]).io_uring, "batched socket I/O is the default");
        assert!(!run(&["-o", "no_io_uring"]).io_uring);
        assert!(run(&["-o", "no_io_uring,io_uring"]).io_uring);
        assert!(!run(&[]).engine.huge_pages, "huge pages cost RSS: opt in");
        assert!(run(&["-o", "hugepages"]).engine.huge_pages);
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(err(&["-z"]).message, "mnemo: invalid option -- 'z'");
        assert_eq!(
            err(&["-p"]).message,
            "mnemo: option requires an argument -- 'p'"
        );
        assert!(err(&["-p", "abc"]).message.contains("-p"));
        assert!(err(&["--nope"]).message.contains("unrecognized"));
        assert_eq!(
            err(&["-c", "0"]).message,
            "Maximum connections must be greater than 0"
        );
        assert_eq!(err(&["-f", "1.0"]).message, "Factor must be greater than 1");
        assert_eq!(err(&["-I", "100"]).code, EX_USAGE);
        assert_eq!(err(&["-m", "1", "-I", "1m"]).code, EX_USAGE);
        assert!(err(&["stray"]).message.contains("stray"));
        assert!(matches!(parse(["-h"]), Ok(Action::Help)));
        assert!(matches!(parse(["-V"]), Ok(Action::Version)));
    }
}
