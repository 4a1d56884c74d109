//! Server CPU time, so results can be given per server CPU-second: on a small
//! machine the load generator is often the limit, and ops/s alone then says
//! more about the bench than about the server.

use crate::runner::Target;
use std::io::{Read, Write};
use std::time::Duration;

/// Where to read the server's CPU time from.
#[derive(Clone, Debug)]
pub enum CpuProbe {
    None,
    /// The text `stats` command (rusage_user + rusage_system).
    Stats(Target),
    /// /proc/<pid>/stat of a process we started (works for proxies too,
    /// which do not all answer `stats`).
    Proc(u32),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CpuTimes {
    pub user: f64,
    pub system: f64,
}

pub fn read(probe: &CpuProbe) -> Result<Option<CpuTimes>, String> {
    match probe {
        CpuProbe::None => Ok(None),
        CpuProbe::Stats(t) => stats_rusage(t).map(Some),
        CpuProbe::Proc(pid) => proc_times(*pid).map(Some),
    }
}

/// CPU time of this process (all threads), to show when the load generator
/// itself is near the limit.
pub fn own_times() -> Option<CpuTimes> {
    // SAFETY: getrusage fills the zeroed struct we pass; no other effects.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return None;
        }
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(CpuTimes {
        user: secs(ru.ru_utime),
        system: secs(ru.ru_stime),
    })
}

fn stats_rusage(target: &Target) -> Result<CpuTimes, String> {
    let timeout = Some(Duration::from_secs(2));
    let mut buf = Vec::with_capacity(8192);
    let io = |e: std::io::Error| format!("stats from {target}: {e}");
    let mut exchange = |s: &mut dyn ReadWrite| -> Result<(), String> {
        s.write_all(b"stats\r\n").map_err(io)?;
        let mut chunk = [0u8; 4096];
        while !(buf.ends_with(b"END\r\n") || buf.ends_with(b"ERROR\r\n")) {
            let n = s.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(format!("stats from {target}: connection closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 1 << 20 {
                return Err(format!("stats from {target}: reply too long"));
            }
        }
        Ok(())
    };
    match target {
        Target::Tcp(addr) => {
            let mut s =
                std::net::TcpStream::connect_timeout(addr, Duration::from_secs(2)).map_err(io)?;
            s.set_read_timeout(timeout).map_err(io)?;
            exchange(&mut s)?;
        }
        Target::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
            s.set_read_timeout(timeout).map_err(io)?;
            exchange(&mut s)?;
        }
        Target::Tls(addr, t) => {
            let mut s = t.connect(*addr, Duration::from_secs(2)).map_err(io)?;
            exchange(&mut s)?;
        }
    }
    parse_stats(&buf).ok_or_else(|| format!("stats from {target}: no rusage_user/rusage_system"))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn parse_stats(buf: &[u8]) -> Option<CpuTimes> {
    let text = std::str::from_utf8(buf).ok()?;
    let mut user = None;
    let mut system = None;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("STAT") {
            continue;
        }
        match (it.next(), it.next()) {
            (Some("rusage_user"), Some(v)) => user = v.parse::<f64>().ok(),
            (Some("rusage_system"), Some(v)) => system = v.parse::<f64>().ok(),
            _ => {}
        }
    }
    Some(CpuTimes {
        user: user?,
        system: system?,
    })
}

fn proc_times(pid: u32) -> Result<CpuTimes, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    parse_proc_stat(&s).ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))
}

fn parse_proc_stat(s: &str) -> Option<CpuTimes> {
    // The command name may contain spaces and parentheses; fields resume
    // after the last ')'. utime and stime are fields 14 and 15 overall.
    let rest = &s[s.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(CpuTimes {
        user: utime / hz,
        system: stime / hz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats_reply() {
        let r =
            b"STAT pid 1\r\nSTAT rusage_user 1.500000\r\nSTAT rusage_system 0.250000\r\nEND\r\n";
        assert_eq!(
            parse_stats(r),
            Some(CpuTimes {
                user: 1.5,
                system: 0.25
            })
        );
        assert_eq!(parse_stats(b"STAT pid 1\r\nEND\r\n"), None);
    }

    #[test]
    fn parses_proc_stat_with_odd_name() {
        let s = "42 (we ird) name) S 1 2 3 4 5 6 7 8 9 10 300 50 0 0 20 0";
        let t = parse_proc_stat(s);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(
            t,
            Some(CpuTimes {
                user: 300.0 / hz,
                system: 50.0 / hz
            })
        );
    }

    #[test]
    fn reads_own_process_times() {
        assert!(proc_times(std::process::id()).is_ok());
    }
}
