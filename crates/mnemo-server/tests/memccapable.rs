//! libmemcached's `memccapable` conformance checker against mnemo.
//!
//! Both the ASCII and the binary runs execute. The same runner against
//! memcached itself proves the runner and its verdict parsing are sound.
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{require_tool, Kind, Server};

/// memccapable's own per-operation timeout, in seconds (its `-t`).
const IO_TIMEOUT_SECS: &str = "5";
/// A wall-clock bound on the whole run: a server that stalls in a way the
/// per-operation timeout misses still cannot hang the test suite.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs memccapable against a fresh `kind` server with the protocol flag
/// (`-a` ASCII only, `-b` binary only) and asserts every test passed.
fn run(kind: Kind, protocol_flag: &str) {
    let tool = require_tool("memccapable");
    let server = Server::start(kind, &[]);
    let port = server.port().to_string();
    let mut child = Command::new(&tool)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            IO_TIMEOUT_SECS,
            protocol_flag,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    // Drain both pipes on threads so a chatty run cannot block on a full pipe
    // while we wait for it.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let report = format!(
        "memccapable {protocol_flag} against {} (args {:?}):\n{stdout}{stderr}\nserver output:\n{}",
        kind.name(),
        server.args(),
        server.log()
    );
    let Some(status) = status else {
        panic!("memccapable did not finish within {RUN_LIMIT:?}\n{report}");
    };

    // memccapable prints one "<name> [pass]" line per test; anything else
    // ([FAIL], [skip], a crash message) is a failure.
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_end().ends_with(']'))
        .collect();
    let not_passed: Vec<&str> = results
        .iter()
        .copied()
        .filter(|l| !l.trim_end().ends_with("[pass]"))
        .collect();
    assert!(
        status.success(),
        "memccapable exited with {status}\n{report}"
    );
    assert!(
        not_passed.is_empty(),
        "memccapable tests not passed: {not_passed:?}\n{report}"
    );
    assert!(
        !results.is_empty() && stdout.contains("All tests passed"),
        "memccapable reported no passing run\n{report}"
    );
}

#[test]
fn memccapable_ascii_mnemo() {
    run(Kind::Mnemo, "-a");
}

/// Harness check: the reference server passes the same run.
#[test]
fn memccapable_ascii_memcached_reference() {
    run(Kind::Memcached, "-a");
}

/// The binary protocol (issue #4).
#[test]
fn memccapable_binary_mnemo() {
    run(Kind::Mnemo, "-b");
}
