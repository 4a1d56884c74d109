//! The proxy's side of the meta protocol. Requests are parsed by
//! `mnemo_protocol::meta` (the project's parser, with memcached's own
//! answers to bad input); what is specific to a proxy lives here: the `q`
//! flag is stripped before forwarding, so that every request has exactly one
//! reply to pair with, and the proxy drops the replies `q` would have
//! suppressed.

use mnemo_protocol::client::MetaStatus;

pub use mnemo_protocol::meta::Cmd as MetaCmd;

/// Whether a reply with this status is suppressed by `q` for `cmd`
/// (memcached 1.6: a miss for mg, the nominal HD for the others, and any
/// success of ma).
pub fn quiet_suppresses(cmd: MetaCmd, status: MetaStatus) -> bool {
    match cmd {
        MetaCmd::Get => status == MetaStatus::En,
        MetaCmd::Set | MetaCmd::Delete => status == MetaStatus::Hd,
        MetaCmd::Arith => matches!(status, MetaStatus::Hd | MetaStatus::Va),
        MetaCmd::Noop | MetaCmd::Debug => false,
    }
}

/// Append `line` without its `q` flag, plus `\r\n`.
pub fn push_without_quiet(out: &mut Vec<u8>, line: &[u8]) {
    let mut first = true;
    for t in line.split(|&c| c == b' ').filter(|t| !t.is_empty()) {
        if t == b"q" {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(t);
        first = false;
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet() {
        let mut o = Vec::new();
        push_without_quiet(&mut o, b"mg k q v O123");
        assert_eq!(o, b"mg k v O123\r\n");
        assert!(quiet_suppresses(MetaCmd::Get, MetaStatus::En));
        assert!(!quiet_suppresses(MetaCmd::Get, MetaStatus::Va));
        assert!(quiet_suppresses(MetaCmd::Set, MetaStatus::Hd));
        assert!(!quiet_suppresses(MetaCmd::Set, MetaStatus::Ns));
        assert!(quiet_suppresses(MetaCmd::Arith, MetaStatus::Va));
    }
}
