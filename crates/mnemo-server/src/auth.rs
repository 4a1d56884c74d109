//! Authentication: SASL PLAIN for the binary protocol (`-S`, checked
//! against the `user:password` file named by `MEMCACHED_SASL_PWDB`) and
//! memcached's ASCII authentication tokens (`-Y authfile`).

use crate::dispatch::Outcome;
use std::io::{BufRead, BufReader};

/// memcached's MAX_ENTRY_LEN for password-file lines.
const MAX_ENTRY_LEN: usize = 256;
/// memcached keeps at most this many `-Y` entries.
const MAX_AUTHFILE_ENTRIES: usize = 8;

/// Checks a SASL PLAIN message (`[authzid] NUL authcid NUL passwd`).
/// The password file is read on every attempt, as memcached does, so
/// edits take effect without a restart.
pub fn sasl_plain(msg: &[u8]) -> bool {
    let mut parts = msg.splitn(3, |&b| b == 0);
    let (Some(authz), Some(user), Some(pass)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    // Cyrus refuses to act for another identity with PLAIN.
    if !authz.is_empty() && authz != user {
        return false;
    }
    if user.is_empty() || user.contains(&0) || pass.contains(&0) {
        return false;
    }
    let Some(path) = std::env::var_os("MEMCACHED_SASL_PWDB") else {
        return false;
    };
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    check_pwdb(BufReader::new(file), user, pass)
}

/// memcached's `sasl_server_userdb_checkpass`: the first line for `user`
/// decides; the password must be followed by `:`, a line end, or nothing.
fn check_pwdb(r: impl BufRead, user: &[u8], pass: &[u8]) -> bool {
    if user.len() + pass.len() > MAX_ENTRY_LEN - 4 {
        return false;
    }
    for line in r.split(b'\n') {
        let Ok(line) = line else { return false };
        let Some(rest) = line.strip_prefix(user) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        return match rest.strip_prefix(pass) {
            Some(after) => matches!(after.first(), None | Some(b':') | Some(b'\r')),
            None => false,
        };
    }
    false
}

/// The `-Y` file: up to 8 `user:pass` lines, loaded at start-up.
#[derive(Clone, Debug, Default)]
pub struct AuthFile {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AuthFile {
    /// Loads the file; an error names what is wrong, for the start-up
    /// message.
    pub fn load(path: &str) -> Result<AuthFile, String> {
        let data = std::fs::read(path)
            .map_err(|e| format!("Could not open authfile [{path}] for reading, error {e}"))?;
        Self::parse(&data).map_err(|()| {
            format!("Authfile [{path}] has a malformed entry. Should be 'user:password'")
        })
    }

    fn parse(data: &[u8]) -> Result<AuthFile, ()> {
        let mut entries = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let line = &line[..line.len().min(MAX_ENTRY_LEN - 1)];
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(());
            };
            let pass = &line[colon + 1..];
            let pend = pass
                .iter()
                .position(|&b| b == b'\r' || b == 0)
                .unwrap_or(pass.len());
            entries.push((line[..colon].to_vec(), pass[..pend].to_vec()));
            if entries.len() == MAX_AUTHFILE_ENTRIES {
                break;
            }
        }
        Ok(AuthFile { entries })
    }

    /// The first `user:pass` entry: what a replication link presents to
    /// its peer (docs/REPLICATION.md section 5).
    pub fn first(&self) -> Option<(&[u8], &[u8])> {
        self.entries.first().map(|(u, p)| (&u[..], &p[..]))
    }

    /// memcached's `authfile_check`.
    pub fn check(&self, user: &[u8], pass: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|(u, p)| constant_eq(u, user) && constant_eq(p, pass))
    }
}

/// A token bigger than this cannot name a user and password from the file
/// (memcached's entries are at most 256 bytes); its bytes are discarded
/// rather than buffered.
const MAX_TOKEN_DATA: usize = 4096;

/// memcached's `try_read_command_asciiauth`: until authenticated, the only
/// request is `set <any> <any> <any> <len>` whose data is `user pass`.
pub fn ascii_auth(file: &AuthFile, buf: &[u8], authed: &mut bool, out: &mut Vec<u8>) -> Outcome {
    use mnemo_protocol::text::{strtoul32, Tokens};
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > 2048 {
            Outcome::Close
        } else {
            Outcome::NeedMore { need: 0 }
        };
    };
    let line = &buf[..nl];
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let t = Tokens::new(line);
    let size = match strtoul32(t.get(4)) {
        Some(n) if t.len() >= 5 && t.get(0) == b"set" => n as usize,
        _ => {
            out.extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
            return Outcome::Done { used: nl + 1 };
        }
    };
    if size > MAX_TOKEN_DATA {
        out.extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
        return Outcome::Swallow {
            used: nl + 1,
            left: size + 2,
        };
    }
    let need = nl + 1 + size + 2;
    if buf.len() < need {
        return Outcome::NeedMore { need };
    }
    let data = &buf[nl + 1..need];
    if &data[size..] != b"\r\n" {
        out.extend_from_slice(b"CLIENT_ERROR bad command line termination\r\n");
        return Outcome::Done { used: need };
    }
    let data = &data[..size];
    let data = &data[..data.iter().position(|&b| b == 0).unwrap_or(data.len())];
    let t = Tokens::new(data);
    if t.len() < 2 {
        out.extend_from_slice(b"CLIENT_ERROR bad authentication token format\r\n");
    } else if file.check(t.get(0), t.get(1)) {
        *authed = true;
        out.extend_from_slice(b"STORED\r\n");
    } else {
        out.extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
    }
    Outcome::Done { used: need }
}

/// Compares without an early exit on the first differing byte.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwdb_lines() {
        let db = b"alice:secret\nbob:pw:extra\ncarol:x\r\n";
        assert!(check_pwdb(&db[..], b"alice", b"secret"));
        assert!(!check_pwdb(&db[..], b"alice", b"secre"));
        assert!(check_pwdb(&db[..], b"bob", b"pw"));
        assert!(check_pwdb(&db[..], b"carol", b"x"));
        assert!(!check_pwdb(&db[..], b"dave", b"x"));
        assert!(!check_pwdb(&db[..], b"ali", b"secret"));
    }

    #[test]
    fn authfile_entries() {
        let f = AuthFile::parse(b"u1:p1\nu2:p2\r\n").unwrap();
        assert!(f.check(b"u1", b"p1"));
        assert!(f.check(b"u2", b"p2"));
        assert!(!f.check(b"u1", b"p2"));
        assert!(AuthFile::parse(b"nocolon\n").is_err());
    }

    #[test]
    fn ascii_tokens() {
        let f = AuthFile::parse(b"u1:p1\n").unwrap();
        let mut authed = false;
        let mut out = Vec::new();
        assert!(matches!(
            ascii_auth(&f, b"get foo\r\n", &mut authed, &mut out),
            Outcome::Done { used: 9 }
        ));
        assert_eq!(out, b"CLIENT_ERROR unauthenticated\r\n");
        out.clear();
        let req = b"set x 0 0 5\r\nu1 p1\r\n";
        assert!(matches!(
            ascii_auth(&f, &req[..15], &mut authed, &mut out),
            Outcome::NeedMore { need: 20 }
        ));
        assert!(matches!(
            ascii_auth(&f, req, &mut authed, &mut out),
            Outcome::Done { used: 20 }
        ));
        assert_eq!(out, b"STORED\r\n");
        assert!(authed);
    }
}
