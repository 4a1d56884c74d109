//! Proxy counters, shared by the worker threads (relaxed atomics: each is an
//! independent tally), and the stats listener that serves them as
//! twemproxy's JSON or as Prometheus text.

use crate::config::Config;
use parking_lot::RwLock;
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct ServerStats {
    pub name: String,
    pub requests: AtomicU64,
    pub request_bytes: AtomicU64,
    pub responses: AtomicU64,
    pub response_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub eof: AtomicU64,
    pub ejections: AtomicU64,
    /// Unix time of the last ejection, in microseconds (twemproxy's unit).
    pub ejected_at: AtomicU64,
    pub in_flight: AtomicI64,
    pub connections: AtomicI64,
    /// Workers that owe this primary invalidations or await their answers:
    /// while any does, no worker reads from it (`mirror`). Not reported.
    pub invalidating: AtomicI64,
}

#[derive(Debug, Default)]
pub struct PoolStats {
    pub name: String,
    pub client_connections: AtomicI64,
    pub client_eof: AtomicU64,
    pub client_err: AtomicU64,
    pub requests: AtomicU64,
    pub request_bytes: AtomicU64,
    pub responses: AtomicU64,
    pub response_bytes: AtomicU64,
    pub forward_error: AtomicU64,
    pub fragments: AtomicU64,
    pub server_ejects: AtomicU64,
    pub backup_answers: AtomicU64,
    /// An `erasure: K+M` pool: `ec` is reported.
    pub erasure: bool,
    pub ec: EcStats,
    pub servers: Vec<ServerStats>,
}

/// Counters of an erasure-coded pool (issue #14).
#[derive(Debug, Default)]
pub struct EcStats {
    /// Shards (and whole copies, stubs, tombstones) sent by writes.
    pub shards_written: AtomicU64,
    /// Valid shards that reads received.
    pub shards_read: AtomicU64,
    /// Reads that found some server without a good shard of the winner.
    pub degraded_reads: AtomicU64,
    /// Shards rewritten by reads that found them missing, stale or corrupt.
    pub repairs: AtomicU64,
    /// Reads whose newest version could not be decoded (answered as misses).
    pub decode_failures: AtomicU64,
    /// Bytes of value not stored against M+1 whole copies, over coded writes.
    pub bytes_saved: AtomicU64,
    /// `repair` scrubs finished, and the keys they read.
    pub scrubs: AtomicU64,
    pub scrubbed_keys: AtomicU64,
}

impl EcStats {
    fn fields(&self) -> [(&'static str, &AtomicU64); 8] {
        [
            ("ec_shards_written", &self.shards_written),
            ("ec_shards_read", &self.shards_read),
            ("ec_degraded_reads", &self.degraded_reads),
            ("ec_repairs", &self.repairs),
            ("ec_decode_failures", &self.decode_failures),
            ("ec_bytes_saved", &self.bytes_saved),
            ("ec_scrubs", &self.scrubs),
            ("ec_scrubbed_keys", &self.scrubbed_keys),
        ]
    }
}

fn copy(from: &AtomicU64, to: &AtomicU64) {
    to.store(from.load(Relaxed), Relaxed);
}

#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub pools: Vec<PoolStats>,
    pub total_connections: AtomicU64,
    pub curr_connections: AtomicI64,
}

impl Stats {
    pub fn new(cfg: &Config) -> Stats {
        Stats {
            started: Instant::now(),
            pools: cfg
                .pools
                .iter()
                .map(|p| PoolStats {
                    name: p.name.clone(),
                    erasure: p.erasure.is_some(),
                    servers: p
                        .servers
                        .iter()
                        .map(|s| ServerStats {
                            name: s.name.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            total_connections: AtomicU64::new(0),
            curr_connections: AtomicI64::new(0),
        }
    }

    /// A reload's counters: uptime, totals and every pool's and server's
    /// tallies continue from `old` where the name survives, so a SIGHUP
    /// does not zero what monitoring graphs. Connection gauges start at 0
    /// because the workers re-add the connections they carry over;
    /// `in_flight` is carried because requests already sent on a carried
    /// connection are answered after the switch. Increments made between
    /// this copy and a worker's switch to the new set are not carried.
    pub fn carried_over(cfg: &Config, old: &Stats) -> Stats {
        let mut new = Stats::new(cfg);
        new.started = old.started;
        copy(&old.total_connections, &new.total_connections);
        for np in &mut new.pools {
            let Some(op) = old.pools.iter().find(|o| o.name == np.name) else {
                continue;
            };
            for (from, to) in [
                (&op.client_eof, &np.client_eof),
                (&op.client_err, &np.client_err),
                (&op.requests, &np.requests),
                (&op.request_bytes, &np.request_bytes),
                (&op.responses, &np.responses),
                (&op.response_bytes, &np.response_bytes),
                (&op.forward_error, &np.forward_error),
                (&op.fragments, &np.fragments),
                (&op.server_ejects, &np.server_ejects),
                (&op.backup_answers, &np.backup_answers),
            ] {
                copy(from, to);
            }
            for ((_, from), (_, to)) in op.ec.fields().into_iter().zip(np.ec.fields()) {
                copy(from, to);
            }
            for ns in &mut np.servers {
                let Some(os) = op.servers.iter().find(|o| o.name == ns.name) else {
                    continue;
                };
                for (from, to) in [
                    (&os.requests, &ns.requests),
                    (&os.request_bytes, &ns.request_bytes),
                    (&os.responses, &ns.responses),
                    (&os.response_bytes, &ns.response_bytes),
                    (&os.errors, &ns.errors),
                    (&os.timeouts, &ns.timeouts),
                    (&os.eof, &ns.eof),
                    (&os.ejections, &ns.ejections),
                    (&os.ejected_at, &ns.ejected_at),
                ] {
                    copy(from, to);
                }
                ns.in_flight.store(os.in_flight.load(Relaxed), Relaxed);
            }
        }
        new
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// twemproxy's stats JSON: service, uptime, then one object per pool
    /// with one object per server.
    pub fn json(&self) -> String {
        let mut top = Map::new();
        top.insert("service".into(), json!("mnemo-proxy"));
        top.insert("source".into(), json!(hostname()));
        top.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        top.insert("uptime".into(), json!(self.started.elapsed().as_secs()));
        top.insert("timestamp".into(), json!(Self::unix_now()));
        top.insert(
            "total_connections".into(),
            json!(self.total_connections.load(Relaxed)),
        );
        top.insert(
            "curr_connections".into(),
            json!(self.curr_connections.load(Relaxed)),
        );
        for p in &self.pools {
            let mut pm = Map::new();
            pm.insert("client_eof".into(), json!(p.client_eof.load(Relaxed)));
            pm.insert("client_err".into(), json!(p.client_err.load(Relaxed)));
            pm.insert(
                "client_connections".into(),
                json!(p.client_connections.load(Relaxed)),
            );
            pm.insert("server_ejects".into(), json!(p.server_ejects.load(Relaxed)));
            pm.insert("forward_error".into(), json!(p.forward_error.load(Relaxed)));
            pm.insert("fragments".into(), json!(p.fragments.load(Relaxed)));
            pm.insert("requests".into(), json!(p.requests.load(Relaxed)));
            pm.insert("request_bytes".into(), json!(p.request_bytes.load(Relaxed)));
            pm.insert("responses".into(), json!(p.responses.load(Relaxed)));
            pm.insert(
                "response_bytes".into(),
                json!(p.response_bytes.load(Relaxed)),
            );
            pm.insert(
                "backup_answers".into(),
                json!(p.backup_answers.load(Relaxed)),
            );
            if p.erasure {
                for (name, v) in p.ec.fields() {
                    pm.insert(name.into(), json!(v.load(Relaxed)));
                }
            }
            for s in &p.servers {
                let sm: Map<String, Value> = [
                    ("server_eof", json!(s.eof.load(Relaxed))),
                    ("server_err", json!(s.errors.load(Relaxed))),
                    ("server_timedout", json!(s.timeouts.load(Relaxed))),
                    ("server_connections", json!(s.connections.load(Relaxed))),
                    ("server_ejected_at", json!(s.ejected_at.load(Relaxed))),
                    // twemproxy's name for requests awaiting a reply.
                    ("in_queue", json!(s.in_flight.load(Relaxed))),
                    ("server_ejections", json!(s.ejections.load(Relaxed))),
                    ("requests", json!(s.requests.load(Relaxed))),
                    ("request_bytes", json!(s.request_bytes.load(Relaxed))),
                    ("responses", json!(s.responses.load(Relaxed))),
                    ("response_bytes", json!(s.response_bytes.load(Relaxed))),
                    ("in_flight", json!(s.in_flight.load(Relaxed))),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                pm.insert(s.name.clone(), Value::Object(sm));
            }
            top.insert(p.name.clone(), Value::Object(pm));
        }
        Value::Object(top).to_string()
    }

    /// The same counters in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut o = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        o.push_str("# TYPE mnemo_proxy_uptime_seconds gauge\n");
        o.push_str(&format!(
            "mnemo_proxy_uptime_seconds {}\n",
            self.started.elapsed().as_secs()
        ));
        o.push_str("# TYPE mnemo_proxy_connections_total counter\n");
        o.push_str(&format!(
            "mnemo_proxy_connections_total {}\n",
            self.total_connections.load(Relaxed)
        ));
        o.push_str("# TYPE mnemo_proxy_connections gauge\n");
        o.push_str(&format!(
            "mnemo_proxy_connections {}\n",
            self.curr_connections.load(Relaxed)
        ));
        type PoolGet = fn(&PoolStats) -> i64;
        let pool_metrics: [(&str, &str, PoolGet); 10] = [
            ("client_connections", "gauge", |p| {
                p.client_connections.load(Relaxed)
            }),
            ("client_eof_total", "counter", |p| {
                p.client_eof.load(Relaxed) as i64
            }),
            ("client_errors_total", "counter", |p| {
                p.client_err.load(Relaxed) as i64
            }),
            ("requests_total", "counter", |p| {
                p.requests.load(Relaxed) as i64
            }),
            ("request_bytes_total", "counter", |p| {
                p.request_bytes.load(Relaxed) as i64
            }),
            ("responses_total", "counter", |p| {
                p.responses.load(Relaxed) as i64
            }),
            ("response_bytes_total", "counter", |p| {
                p.response_bytes.load(Relaxed) as i64
            }),
            ("forward_errors_total", "counter", |p| {
                p.forward_error.load(Relaxed) as i64
            }),
            ("server_ejects_total", "counter", |p| {
                p.server_ejects.load(Relaxed) as i64
            }),
            ("backup_answers_total", "counter", |p| {
                p.backup_answers.load(Relaxed) as i64
            }),
        ];
        for (name, kind, get) in pool_metrics {
            o.push_str(&format!("# TYPE mnemo_proxy_pool_{name} {kind}\n"));
            for p in &self.pools {
                o.push_str(&format!(
                    "mnemo_proxy_pool_{name}{{pool=\"{}\"}} {}\n",
                    esc(&p.name),
                    get(p)
                ));
            }
        }
        for (i, (name, _)) in EcStats::default().fields().into_iter().enumerate() {
            if !self.pools.iter().any(|p| p.erasure) {
                break;
            }
            o.push_str(&format!("# TYPE mnemo_proxy_pool_{name}_total counter\n"));
            for p in self.pools.iter().filter(|p| p.erasure) {
                o.push_str(&format!(
                    "mnemo_proxy_pool_{name}_total{{pool=\"{}\"}} {}\n",
                    esc(&p.name),
                    p.ec.fields()[i].1.load(Relaxed)
                ));
            }
        }
        type ServerGet = fn(&ServerStats) -> i64;
        let server_metrics: [(&str, &str, ServerGet); 11] = [
            ("requests_total", "counter", |s| {
                s.requests.load(Relaxed) as i64
            }),
            ("request_bytes_total", "counter", |s| {
                s.request_bytes.load(Relaxed) as i64
            }),
            ("responses_total", "counter", |s| {
                s.responses.load(Relaxed) as i64
            }),
            ("response_bytes_total", "counter", |s| {
                s.response_bytes.load(Relaxed) as i64
            }),
            ("errors_total", "counter", |s| s.errors.load(Relaxed) as i64),
            ("timeouts_total", "counter", |s| {
                s.timeouts.load(Relaxed) as i64
            }),
            ("eof_total", "counter", |s| s.eof.load(Relaxed) as i64),
            ("ejections_total", "counter", |s| {
                s.ejections.load(Relaxed) as i64
            }),
            ("ejected_at_seconds", "gauge", |s| {
                (s.ejected_at.load(Relaxed) / 1_000_000) as i64
            }),
            ("in_flight", "gauge", |s| s.in_flight.load(Relaxed)),
            ("connections", "gauge", |s| s.connections.load(Relaxed)),
        ];
        for (name, kind, get) in server_metrics {
            o.push_str(&format!("# TYPE mnemo_proxy_server_{name} {kind}\n"));
            for p in &self.pools {
                for s in &p.servers {
                    o.push_str(&format!(
                        "mnemo_proxy_server_{name}{{pool=\"{}\",server=\"{}\"}} {}\n",
                        esc(&p.name),
                        esc(&s.name),
                        get(s)
                    ));
                }
            }
        }
        o
    }

    /// `STAT` lines for a `stats` command sent to the proxy itself.
    pub fn stat_lines(&self, out: &mut Vec<u8>) {
        let mut line = |k: &str, v: String| {
            out.extend_from_slice(format!("STAT {k} {v}\r\n").as_bytes());
        };
        line("pid", std::process::id().to_string());
        line("uptime", self.started.elapsed().as_secs().to_string());
        line("time", Self::unix_now().to_string());
        line(
            "version",
            format!("mnemo-proxy-{}", env!("CARGO_PKG_VERSION")),
        );
        line(
            "curr_connections",
            self.curr_connections.load(Relaxed).to_string(),
        );
        line(
            "total_connections",
            self.total_connections.load(Relaxed).to_string(),
        );
        for p in &self.pools {
            let n = &p.name;
            line(
                &format!("{n}:requests"),
                p.requests.load(Relaxed).to_string(),
            );
            line(
                &format!("{n}:responses"),
                p.responses.load(Relaxed).to_string(),
            );
            line(
                &format!("{n}:forward_error"),
                p.forward_error.load(Relaxed).to_string(),
            );
            line(
                &format!("{n}:server_ejects"),
                p.server_ejects.load(Relaxed).to_string(),
            );
            line(
                &format!("{n}:backup_answers"),
                p.backup_answers.load(Relaxed).to_string(),
            );
            if p.erasure {
                for (name, v) in p.ec.fields() {
                    line(&format!("{n}:{name}"), v.load(Relaxed).to_string());
                }
            }
            for s in &p.servers {
                let sn = &s.name;
                line(
                    &format!("{n}:{sn}:requests"),
                    s.requests.load(Relaxed).to_string(),
                );
                line(
                    &format!("{n}:{sn}:errors"),
                    s.errors.load(Relaxed).to_string(),
                );
                line(
                    &format!("{n}:{sn}:timeouts"),
                    s.timeouts.load(Relaxed).to_string(),
                );
                line(
                    &format!("{n}:{sn}:ejections"),
                    s.ejections.load(Relaxed).to_string(),
                );
                line(
                    &format!("{n}:{sn}:in_flight"),
                    s.in_flight.load(Relaxed).to_string(),
                );
            }
        }
        out.extend_from_slice(b"END\r\n");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Serve stats until the process exits. A client that sends an HTTP `GET`
/// gets Prometheus text at `/metrics` and JSON elsewhere; one that sends
/// nothing gets the raw JSON, as twemproxy's stats port does.
pub fn serve(listener: TcpListener, current: Arc<RwLock<Arc<Stats>>>) {
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let stats = current.read().clone();
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let req = &buf[..n];
        let reply = if req.starts_with(b"GET ") {
            let path = req[4..].split(|&c| c == b' ').next().unwrap_or(b"/");
            let (ctype, body) = if path.starts_with(b"/metrics") {
                ("text/plain; version=0.0.4", stats.prometheus())
            } else {
                ("application/json", stats.json())
            };
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            stats.json()
        };
        let _ = s.write_all(reply.as_bytes());
    }
}
