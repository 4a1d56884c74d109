//! Real clients against mnemo (and, to prove the scripts, memcached):
//! pylibmc (libmemcached, binary protocol) from Debian's python3-pylibmc,
//! and the pure-Python `meta-memcache` client (meta protocol) from PyPI.
//! Each does set/get/cas/incr/delete and checks every answer itself.
mod support;

use std::process::Command;
use support::{Kind, Server};

/// pylibmc is a Debian package, built for the system interpreter.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn python_with(module: &str, candidates: &[&str]) -> String {
    for py in candidates {
        let ok = Command::new(py)
            .args(["-c", &format!("import {module}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return py.to_string();
        }
    }
    panic!(
        "no Python interpreter among {candidates:?} can import {module}; \
         install it (python3-pylibmc from Debian, meta-memcache from PyPI) \
         or run scripts/test.sh, which installs them"
    );
}

fn run_script(python: &str, script: &str, port: u16) -> String {
    let out = Command::new(python)
        .args(["-c", script, &port.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client script failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PYLIBMC_SCRIPT: &str = r#"
import sys, pylibmc
port = sys.argv[1]
mc = pylibmc.Client(["127.0.0.1:" + port], binary=True, behaviors={"cas": True})
assert mc.set("pk1", "hello") is True
assert mc.get("pk1") == "hello", mc.get("pk1")
assert mc.get("pk-missing") is None
assert mc.add("pk1", "x") is False
assert mc.replace("pk1", "world") is True
assert mc.append("pk1", "!") is True
assert mc.prepend("pk1", "<") is True
assert mc.get("pk1") == "<world!"
val, cas = mc.gets("pk1")
assert val == "<world!"
assert mc.cas("pk1", "swapped", cas) is True
assert mc.cas("pk1", "again", cas) is False
assert mc.get("pk1") == "swapped"
assert mc.set("pn", 10) is True
assert mc.incr("pn", 5) == 15
assert mc.decr("pn", 20) == 0
mc.set_multi({"pa": "1", "pb": "2", "pc": "3"})
got = mc.get_multi(["pa", "pb", "pc", "pz"])
assert got == {"pa": "1", "pb": "2", "pc": "3"}, got
assert mc.delete("pa") is True
assert mc.delete("pa") is False
assert mc.touch("pb", 100) is True
big = "x" * 300000
assert mc.set("pbig", big) is True
assert mc.get("pbig") == big
assert mc.flush_all() is True
assert mc.get("pb") is None
print("OK")
"#;

const META_SCRIPT: &str = r#"
import sys
from meta_memcache import CacheClient, ServerAddress, connection_pool_factory_builder
port = int(sys.argv[1])
c = CacheClient.cache_client_from_servers(
    servers=[ServerAddress(host="127.0.0.1", port=port)],
    connection_pool_factory_fn=connection_pool_factory_builder(),
)
assert c.set(key="mk1", value="hello", ttl=100) is True
assert c.get(key="mk1") == "hello", c.get(key="mk1")
assert c.get(key="mk-missing") is None
v, cas = c.get_cas(key="mk1")
assert v == "hello" and cas is not None, (v, cas)
assert c.set(key="mk1", value="swapped", ttl=100, cas_token=cas) is True
assert c.set(key="mk1", value="again", ttl=100, cas_token=cas) is False
assert c.get(key="mk1") == "swapped"
assert c.delta_initialize(key="mn", delta=1, initial_value=10, initial_ttl=100) is True
assert c.delta_and_get(key="mn", delta=5) == 15
assert c.delete(key="mk1") is True
assert c.delete(key="mk1") is False
assert c.get(key="mk1") is None
c.set(key="bin\x01key with space", value=b"raw\x00bytes", ttl=0)
assert c.get(key="bin\x01key with space") == b"raw\x00bytes"
got = c.multi_get(keys=["mn", "nope"])
assert len(got) == 2 and None in got.values(), got
print("OK")
"#;

fn check(kind: Kind, python: &str, script: &str) {
    let server = Server::start(kind, &[]);
    let out = run_script(python, script, server.port());
    assert_eq!(out.trim(), "OK", "{}", kind.name());
}

#[test]
fn pylibmc_binary_protocol() {
    let py = python_with("pylibmc", &[SYSTEM_PYTHON, "python3"]);
    check(Kind::Memcached, &py, PYLIBMC_SCRIPT);
    check(Kind::Mnemo, &py, PYLIBMC_SCRIPT);
}

#[test]
fn meta_memcache_client() {
    let py = python_with("meta_memcache", &["python3", SYSTEM_PYTHON]);
    check(Kind::Memcached, &py, META_SCRIPT);
    check(Kind::Mnemo, &py, META_SCRIPT);
}
