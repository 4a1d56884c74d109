//! `stats replication` (docs/REPLICATION.md section 8), and the TLS
//! client configuration links use under `-Z`. The general `stats` is
//! unchanged; with replication off `stats replication` is the `ERROR`
//! memcached gives any unknown sub-command.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::LinkStats;
use crate::shared::Shared;
use crate::stats::stat_line;

fn link_lines(out: &mut Vec<u8>, prefix: &str, s: &LinkStats) {
    let line = |out: &mut Vec<u8>, name: &str, v: &dyn std::fmt::Display| {
        stat_line(out, &format!("{prefix}:{name}"), v)
    };
    line(out, "state", &s.state().text());
    line(out, "node_id", &s.node_id.load(Relaxed));
    line(out, "lag_ops", &s.lag_ops.load(Relaxed));
    line(out, "lag_ms", &s.lag_ms.load(Relaxed));
    line(out, "bytes_in", &s.bytes_in.load(Relaxed));
    line(out, "bytes_out", &s.bytes_out.load(Relaxed));
    line(out, "partial_resyncs", &s.partial_resyncs.load(Relaxed));
    line(out, "full_resyncs", &s.full_resyncs.load(Relaxed));
    line(out, "applied", &s.applied.load(Relaxed));
    line(out, "ignored", &s.ignored.load(Relaxed));
}

/// Writes the block, ending with `END`.
pub fn write(sh: &Shared, out: &mut Vec<u8>) {
    let Some(r) = sh.repl.as_deref() else {
        out.extend_from_slice(b"END\r\n");
        return;
    };
    let node = &r.node;
    stat_line(out, "repl_node_id", node.id().get());
    let (replid, next, first, held) = {
        let b = node.backlog().lock();
        (b.replid(), b.next_offset(), b.first_offset(), b.len())
    };
    stat_line(out, "repl_replid", format_args!("{replid:016x}"));
    stat_line(out, "repl_offset", next);
    stat_line(out, "repl_backlog_size", r.settings.backlog_bytes);
    stat_line(out, "repl_backlog_bytes", held);
    stat_line(out, "repl_backlog_first_offset", first);
    let (n, bytes, horizon) = node.tombstone_stats();
    stat_line(out, "repl_tombstones", n);
    stat_line(out, "repl_tombstone_bytes", bytes);
    stat_line(out, "repl_tombstone_ttl", r.settings.tombstone_ttl_s);
    stat_line(out, "repl_tombstone_horizon", horizon / 1000);
    stat_line(out, "repl_forgotten_version", node.horizon());
    stat_line(
        out,
        "repl_horizon_refused",
        node.stats.horizon_refused.load(Relaxed),
    );
    stat_line(
        out,
        "repl_horizon_swept",
        node.stats.horizon_swept.load(Relaxed),
    );
    stat_line(out, "repl_counters", node.counters.tracked());
    stat_line(out, "repl_flush_barrier", node.barrier());
    stat_line(out, "repl_flush_pending", node.pending_flushes());
    stat_line(out, "repl_conflicts", node.stats.conflicts.load(Relaxed));
    for p in &r.peers {
        link_lines(out, &format!("peer:{}", p.addr.name()), &p.stats);
    }
    let replicas: Vec<_> = r.replicas.lock().iter().map(Arc::clone).collect();
    for x in replicas {
        link_lines(out, &format!("replica:{}", x.addr), &x.stats);
    }
    out.extend_from_slice(b"END\r\n");
}

/// Connects the client side of a link under `-Z`: the server's
/// `ssl_ca_cert` verifies the peer (no CA configured: the link is
/// encrypted but the peer unauthenticated, as a test setup has it), and
/// the server's own certificate is presented when `ssl_verify_mode` asks
/// peers for one.
pub fn tls_connect(
    sh: &Shared,
    addr: &mnemo_net::Addr,
    timeout: std::time::Duration,
) -> Result<mnemo_net::BlockingStream, String> {
    let t = &sh.settings.ssl;
    let present = t.verify_mode != mnemo_net::tls::VerifyMode::None;
    let o = mnemo_net::ClientTlsOptions {
        ca_cert: t.ca_cert.as_ref().map(Into::into),
        cert: present
            .then(|| t.chain_cert.as_ref().map(Into::into))
            .flatten(),
        key: present.then(|| t.key.as_ref().map(Into::into)).flatten(),
        server_name: None,
        insecure_skip_verify: t.ca_cert.is_none(),
        min_version: t.min_version,
    };
    let cfg = mnemo_net::tls::client_config(&o).map_err(|e| format!("TLS: {e}"))?;
    mnemo_net::BlockingStream::connect_tls(addr, timeout, Some(timeout), cfg, None)
        .map_err(|e| format!("TLS connect: {e}"))
}
