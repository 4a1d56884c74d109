//! A client over a pool of servers: keys placed by a [`Placement`], a small
//! pool of connections per server, failure counting and ejection.

use crate::conn::{Addr, Conn};
use crate::hash::Hash;
use crate::ring::{ketama_name, Distribution, Node, Placement};
use crate::{Error, Tls};
use mnemo_net::{Health, HealthPolicy};
use mnemo_protocol::binary::Opcode;
use mnemo_protocol::client::{self, binary, MetaStatus, Reply, StoreCmd};
use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// One server of a client.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub addr: Addr,
    pub weight: u32,
    /// Overrides the ketama identity (twemproxy's optional server name).
    pub name: Option<String>,
}

impl ServerSpec {
    /// `host:port` (or a unix socket path) with weight 1.
    pub fn new(addr: &str) -> Result<ServerSpec, Error> {
        Ok(ServerSpec {
            addr: Addr::parse(addr).ok_or_else(|| Error::Config(format!("bad address {addr}")))?,
            weight: 1,
            name: None,
        })
    }

    pub fn weight(mut self, w: u32) -> Self {
        self.weight = w.max(1);
        self
    }

    /// The string the ring hashes for this server.
    pub fn ring_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match &self.addr {
            Addr::Tcp { host, port } => ketama_name(host, *port),
            Addr::Unix(p) => p.display().to_string(),
        }
    }
}

/// Wire protocol of a client's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The text protocol (meta commands included).
    Text,
    /// The binary protocol; meta commands are not available on it.
    Binary,
}

/// Client settings; the defaults follow twemproxy's where it has one.
#[derive(Debug, Clone)]
pub struct Options {
    pub protocol: Protocol,
    pub hash: Hash,
    pub distribution: Distribution,
    pub hash_tag: Option<[u8; 2]>,
    pub connect_timeout: Duration,
    /// Bound on each read and write; None waits forever.
    pub io_timeout: Option<Duration>,
    /// Idle connections kept per server.
    pub pool_size: usize,
    pub auto_eject: bool,
    pub failure_limit: u32,
    pub retry_timeout: Duration,
    /// TLS on every connection (None: plain TCP). Build it once with
    /// [`Tls::new`]; clones share the configuration.
    pub tls: Option<Tls>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protocol: Protocol::Text,
            hash: Hash::Md5,
            distribution: Distribution::Ketama,
            hash_tag: None,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Some(Duration::from_secs(1)),
            pool_size: 4,
            auto_eject: false,
            failure_limit: 2,
            retry_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// A retrieved item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub flags: u32,
    pub cas: Option<u64>,
}

/// Outcome of a storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    NotStored,
    Exists,
    NotFound,
}

/// A meta reply, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaReply {
    pub status: MetaStatus,
    pub flags: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl MetaReply {
    /// The value of one return flag, e.g. `flag(b'c')` for the CAS.
    pub fn flag(&self, f: u8) -> Option<&[u8]> {
        client::meta_flag(&self.flags, f)
    }
}

struct Server {
    spec: ServerSpec,
    idle: Mutex<Vec<Conn>>,
    /// Failures and ejection (auto_eject only); locked briefly, never
    /// across I/O or while another server's is held.
    health: Mutex<Health>,
}

/// A memcached client over several servers. Cheap to share between threads
/// (`&Client` is enough); each call borrows a pooled connection.
pub struct Client {
    servers: Vec<Server>,
    placement: RwLock<Placement>,
    opts: Options,
}

impl Client {
    pub fn new(servers: Vec<ServerSpec>, opts: Options) -> Result<Client, Error> {
        if servers.is_empty() {
            return Err(Error::Config("no servers".into()));
        }
        let nodes = servers
            .iter()
            .map(|s| Node {
                name: s.ring_name(),
                weight: s.weight,
            })
            .collect();
        let placement = Placement::new(opts.hash, opts.distribution, opts.hash_tag, nodes);
        Ok(Client {
            servers: servers
                .into_iter()
                .map(|spec| Server {
                    spec,
                    idle: Mutex::new(Vec::new()),
                    health: Mutex::new(Health::new()),
                })
                .collect(),
            placement: RwLock::new(placement),
            opts,
        })
    }

    /// The index of the server that owns `key`.
    pub fn server_for(&self, key: &[u8]) -> Result<usize, Error> {
        self.readmit_due();
        self.placement.read().server_for(key).ok_or(Error::NoServer)
    }

    /// The address of server `i`.
    pub fn server_addr(&self, i: usize) -> Option<&Addr> {
        self.servers.get(i).map(|s| &s.spec.addr)
    }

    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Bring back ejected servers whose retry time has come.
    fn readmit_due(&self) {
        if !self.opts.auto_eject {
            return;
        }
        let now = Instant::now();
        let mut due = false;
        for s in &self.servers {
            due |= s.health.lock().readmit_if_due(now);
        }
        if due {
            self.rebuild();
        }
    }

    fn rebuild(&self) {
        let live: Vec<bool> = self
            .servers
            .iter()
            .map(|s| !s.health.lock().is_ejected())
            .collect();
        self.placement.write().rebuild(|i| live[i]);
    }

    fn checkout(&self, i: usize) -> Result<Conn, Error> {
        let s = &self.servers[i];
        if let Some(c) = s.idle.lock().pop() {
            return Ok(c);
        }
        match Conn::connect_with(
            &s.spec.addr,
            self.opts.connect_timeout,
            self.opts.io_timeout,
            self.opts.tls.as_ref(),
        ) {
            Ok(c) => Ok(c),
            Err(e) => {
                self.failed(i);
                Err(e)
            }
        }
    }

    fn checkin(&self, i: usize, c: Conn) {
        let s = &self.servers[i];
        s.health.lock().succeeded();
        if !c.is_idle() {
            return;
        }
        let mut idle = s.idle.lock();
        if idle.len() < self.opts.pool_size {
            idle.push(c);
        }
    }

    fn health_policy(&self) -> HealthPolicy {
        HealthPolicy {
            auto_eject: self.opts.auto_eject,
            failure_limit: self.opts.failure_limit,
            retry_timeout: self.opts.retry_timeout,
            // As twemproxy: a server failing again while out (direct calls
            // such as `stats` still reach it) waits a full retry again.
            extend_ejection: true,
        }
    }

    /// Count a failure; past the limit, eject the server from the ring.
    fn failed(&self, i: usize) {
        let ejected = self.servers[i]
            .health
            .lock()
            .failed(&self.health_policy(), Instant::now());
        if ejected {
            self.rebuild();
        }
    }

    /// Run `f` on a connection to server `i`; a transport error drops the
    /// connection (its stream position is unknown) and counts a failure.
    fn with_conn<T>(
        &self,
        i: usize,
        f: impl FnOnce(&mut Conn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut c = self.checkout(i)?;
        match f(&mut c) {
            Ok(v) => {
                self.checkin(i, c);
                Ok(v)
            }
            Err(e) => {
                if e.is_transport() {
                    self.failed(i);
                } else {
                    self.checkin(i, c);
                }
                Err(e)
            }
        }
    }

    fn keyed<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(&mut Conn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if !client::valid_key(key) {
            return Err(Error::BadKey);
        }
        let i = self.server_for(key)?;
        self.with_conn(i, f)
    }

    /// `get`: the item, or None on a miss.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>, Error> {
        Ok(self.get_multi(&[key])?.pop().flatten())
    }

    fn binary(&self) -> bool {
        self.opts.protocol == Protocol::Binary
    }

    fn no_meta(&self) -> Result<(), Error> {
        if self.binary() {
            return Err(Error::Config("meta commands need the text protocol".into()));
        }
        Ok(())
    }

    /// `gets`: like get, with the CAS unique.
    pub fn gets(&self, key: &[u8]) -> Result<Option<Item>, Error> {
        if self.binary() {
            // Binary gets always carry the CAS.
            return self.get(key);
        }
        self.keyed(key, |c| {
            client::encode_gets(c.out(), [key]);
            c.flush()?;
            let mut items = read_values(c)?;
            Ok(items.pop())
        })
    }

    /// Multi-get: one pipelined `get` per server, all sent before any reply
    /// is read; the answer lists the keys in the order asked, None for
    /// misses.
    pub fn get_multi(&self, keys: &[&[u8]]) -> Result<Vec<Option<Item>>, Error> {
        if keys.iter().any(|k| !client::valid_key(k)) {
            return Err(Error::BadKey);
        }
        let mut by_server: Vec<Vec<usize>> = vec![Vec::new(); self.servers.len()];
        for (ki, k) in keys.iter().enumerate() {
            by_server[self.server_for(k)?].push(ki);
        }
        let mut conns = Vec::new();
        for (si, kis) in by_server.iter().enumerate() {
            if kis.is_empty() {
                continue;
            }
            let mut c = self.checkout(si)?;
            if self.binary() {
                crate::bin::encode_multi(c.out(), kis.iter().map(|&ki| keys[ki]));
            } else {
                client::encode_get(c.out(), kis.iter().map(|&ki| keys[ki]));
            }
            if let Err(e) = c.flush() {
                self.failed(si);
                return Err(e);
            }
            conns.push((si, c));
        }
        let mut out: Vec<Option<Item>> = vec![None; keys.len()];
        for (si, mut c) in conns {
            let got = if self.binary() {
                crate::bin::read_multi(&mut c)
            } else {
                read_values(&mut c)
            };
            match got {
                Ok(items) => {
                    // Replies follow request order and skip misses.
                    let kis = &by_server[si];
                    let mut pos = 0;
                    for it in items {
                        while pos < kis.len() && keys[kis[pos]] != it.key.as_slice() {
                            pos += 1;
                        }
                        if pos == kis.len() {
                            return Err(Error::Unexpected("value for a key not asked".into()));
                        }
                        out[kis[pos]] = Some(it);
                        pos += 1;
                    }
                    self.checkin(si, c);
                }
                Err(e) => {
                    if e.is_transport() {
                        self.failed(si);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn store_cmd(
        &self,
        cmd: StoreCmd,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<Stored, Error> {
        let bin = self.binary();
        self.keyed(key, |c| {
            if bin {
                crate::bin::encode_store(c.out(), cmd, key, value, flags, exptime, 0);
                c.flush()?;
                return crate::bin::read_store(c, cmd, 0);
            }
            client::encode_store(c.out(), cmd, key, flags, exptime, value, false);
            c.flush()?;
            read_stored(c)
        })
    }

    pub fn set(&self, key: &[u8], value: &[u8], flags: u32, exptime: i64) -> Result<Stored, Error> {
        self.store_cmd(StoreCmd::Set, key, value, flags, exptime)
    }
    pub fn add(&self, key: &[u8], value: &[u8], flags: u32, exptime: i64) -> Result<Stored, Error> {
        self.store_cmd(StoreCmd::Add, key, value, flags, exptime)
    }
    pub fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
    ) -> Result<Stored, Error> {
        self.store_cmd(StoreCmd::Replace, key, value, flags, exptime)
    }
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<Stored, Error> {
        self.store_cmd(StoreCmd::Append, key, value, 0, 0)
    }
    pub fn prepend(&self, key: &[u8], value: &[u8]) -> Result<Stored, Error> {
        self.store_cmd(StoreCmd::Prepend, key, value, 0, 0)
    }

    pub fn cas(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        exptime: i64,
        cas: u64,
    ) -> Result<Stored, Error> {
        let bin = self.binary();
        self.keyed(key, |c| {
            if bin {
                crate::bin::encode_store(c.out(), StoreCmd::Set, key, value, flags, exptime, cas);
                c.flush()?;
                return crate::bin::read_store(c, StoreCmd::Set, cas);
            }
            client::encode_cas(c.out(), key, flags, exptime, value, cas, false);
            c.flush()?;
            read_stored(c)
        })
    }

    /// `delete`: true if the key existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, Error> {
        let bin = self.binary();
        self.keyed(key, |c| {
            if bin {
                binary::encode_delete(c.out(), Opcode::Delete, key, 0, 0);
                c.flush()?;
                return crate::bin::read_found(c);
            }
            client::encode_delete(c.out(), key, false);
            c.flush()?;
            match c.next_reply()? {
                (Reply::Deleted, _) => Ok(true),
                (Reply::NotFound, _) => Ok(false),
                (r, b) => Err(unexpected(&r, b)),
            }
        })
    }

    /// `incr`/`decr`: the new value, or None if the key does not exist.
    pub fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>, Error> {
        self.arith(true, key, delta)
    }
    pub fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>, Error> {
        self.arith(false, key, delta)
    }
    fn arith(&self, incr: bool, key: &[u8], delta: u64) -> Result<Option<u64>, Error> {
        let bin = self.binary();
        self.keyed(key, |c| {
            if bin {
                crate::bin::encode_arith(c.out(), incr, key, delta);
                c.flush()?;
                return crate::bin::read_arith(c);
            }
            client::encode_arith(c.out(), incr, key, delta, false);
            c.flush()?;
            match c.next_reply()? {
                (Reply::Number(n), _) => Ok(Some(n)),
                (Reply::NotFound, _) => Ok(None),
                (r, b) => Err(unexpected(&r, b)),
            }
        })
    }

    /// `touch`: true if the key existed.
    pub fn touch(&self, key: &[u8], exptime: i64) -> Result<bool, Error> {
        let bin = self.binary();
        self.keyed(key, |c| {
            if bin {
                binary::encode_touch(c.out(), key, crate::bin::exptime(exptime), 0);
                c.flush()?;
                return crate::bin::read_found(c);
            }
            client::encode_touch(c.out(), key, exptime, false);
            c.flush()?;
            match c.next_reply()? {
                (Reply::Touched, _) => Ok(true),
                (Reply::NotFound, _) => Ok(false),
                (r, b) => Err(unexpected(&r, b)),
            }
        })
    }

    /// `version` of every server, in server order.
    pub fn versions(&self) -> Vec<Result<String, Error>> {
        (0..self.servers.len())
            .map(|i| {
                self.with_conn(i, |c| {
                    if self.binary() {
                        return crate::bin::version(c);
                    }
                    client::encode_version(c.out());
                    c.flush()?;
                    match c.next_reply()? {
                        (Reply::Version(v), b) => Ok(String::from_utf8_lossy(&b[v]).into_owned()),
                        (r, b) => Err(unexpected(&r, b)),
                    }
                })
            })
            .collect()
    }

    /// `flush_all` on every server.
    pub fn flush_all(&self) -> Result<(), Error> {
        for i in 0..self.servers.len() {
            self.with_conn(i, |c| {
                if self.binary() {
                    return crate::bin::flush_all(c);
                }
                client::encode_flush_all(c.out(), None, false);
                c.flush()?;
                match c.next_reply()? {
                    (Reply::Ok, _) => Ok(()),
                    (r, b) => Err(unexpected(&r, b)),
                }
            })?;
        }
        Ok(())
    }

    /// `stats` of server `i` as (name, value) pairs.
    pub fn stats(&self, i: usize) -> Result<Vec<(String, String)>, Error> {
        if i >= self.servers.len() {
            return Err(Error::NoServer);
        }
        self.with_conn(i, |c| {
            if self.binary() {
                return crate::bin::stats(c);
            }
            client::encode_stats(c.out(), None);
            c.flush()?;
            let mut v = Vec::new();
            loop {
                match c.next_reply()? {
                    (Reply::Stat { name, value }, b) => v.push((
                        String::from_utf8_lossy(&b[name]).into_owned(),
                        String::from_utf8_lossy(&b[value]).into_owned(),
                    )),
                    (Reply::End, _) => return Ok(v),
                    (r, b) => return Err(unexpected(&r, b)),
                }
            }
        })
    }

    /// Meta get: `flags` is the raw flag text, e.g. `b"v f c"`.
    pub fn meta_get(&self, key: &[u8], flags: &[u8]) -> Result<MetaReply, Error> {
        self.no_meta()?;
        self.keyed(key, |c| {
            client::encode_meta_get(c.out(), key, flags);
            c.flush()?;
            read_meta(c)
        })
    }

    /// Meta set of `value` with raw flags (e.g. `b"T60 F3"`).
    pub fn meta_set(&self, key: &[u8], value: &[u8], flags: &[u8]) -> Result<MetaReply, Error> {
        self.no_meta()?;
        self.keyed(key, |c| {
            client::encode_meta_set(c.out(), key, value, flags);
            c.flush()?;
            read_meta(c)
        })
    }

    /// Meta delete.
    pub fn meta_delete(&self, key: &[u8], flags: &[u8]) -> Result<MetaReply, Error> {
        self.no_meta()?;
        self.keyed(key, |c| {
            client::encode_meta_delete(c.out(), key, flags);
            c.flush()?;
            read_meta(c)
        })
    }

    /// Meta arithmetic (`ma`), e.g. flags `b"MI D5 v"`.
    pub fn meta_arith(&self, key: &[u8], flags: &[u8]) -> Result<MetaReply, Error> {
        self.no_meta()?;
        self.keyed(key, |c| {
            client::encode_meta_arith(c.out(), key, flags);
            c.flush()?;
            read_meta(c)
        })
    }

    /// Start a pipeline: queue many operations, then [`Pipeline::run`] sends
    /// each server its share in one write and reads the replies back.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            client: self,
            ops: Vec::new(),
        }
    }
}

/// One queued operation of a [`Pipeline`].
#[derive(Debug, Clone)]
pub enum Op {
    Get(Vec<u8>),
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        flags: u32,
        exptime: i64,
    },
    Delete(Vec<u8>),
    Incr(Vec<u8>, u64),
    Decr(Vec<u8>, u64),
    Touch(Vec<u8>, i64),
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Get(k) | Op::Delete(k) | Op::Incr(k, _) | Op::Decr(k, _) | Op::Touch(k, _) => k,
            Op::Set { key, .. } => key,
        }
    }
}

/// The answer to one pipelined operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Value(Option<Item>),
    Stored(Stored),
    /// delete/touch: whether the key existed.
    Found(bool),
    Number(Option<u64>),
}

/// Pipelined operations over all servers.
pub struct Pipeline<'c> {
    client: &'c Client,
    ops: Vec<Op>,
}

impl Pipeline<'_> {
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Send every server its operations in one write, then read the
    /// replies; results come back in the order the operations were pushed.
    /// A failed server fails only its own operations.
    pub fn run(self) -> Vec<Result<OpResult, Error>> {
        let c = self.client;
        let mut results: Vec<Option<Result<OpResult, Error>>> = vec![None; self.ops.len()];
        let mut by_server: Vec<Vec<usize>> = vec![Vec::new(); c.servers.len()];
        for (i, op) in self.ops.iter().enumerate() {
            if !client::valid_key(op.key()) {
                results[i] = Some(Err(Error::BadKey));
                continue;
            }
            match c.server_for(op.key()) {
                Ok(s) => by_server[s].push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (si, idx) in by_server.iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let bin = c.binary();
            let r = c.with_conn(si, |conn| {
                for &i in idx {
                    if bin {
                        crate::bin::encode_op(conn.out(), &self.ops[i]);
                    } else {
                        encode_op(conn.out(), &self.ops[i]);
                    }
                }
                conn.flush()?;
                let mut local = Vec::with_capacity(idx.len());
                for &i in idx {
                    local.push(if bin {
                        crate::bin::read_op(conn, &self.ops[i])
                    } else {
                        read_op(conn, &self.ops[i])
                    });
                }
                // A server error answers one operation; a broken stream
                // poisons the rest, and the connection must not be reused.
                if let Some(Err(e)) = local
                    .iter()
                    .find(|r| matches!(r, Err(e) if e.is_transport()))
                {
                    return Err(e.clone());
                }
                Ok(local)
            });
            match r {
                Ok(local) => {
                    for (&i, r) in idx.iter().zip(local) {
                        results[i] = Some(r);
                    }
                }
                Err(e) => {
                    for &i in idx {
                        results[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::NoServer)))
            .collect()
    }
}

fn encode_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Get(k) => client::encode_get(out, [k.as_slice()]),
        Op::Set {
            key,
            value,
            flags,
            exptime,
        } => client::encode_store(out, StoreCmd::Set, key, *flags, *exptime, value, false),
        Op::Delete(k) => client::encode_delete(out, k, false),
        Op::Incr(k, d) => client::encode_arith(out, true, k, *d, false),
        Op::Decr(k, d) => client::encode_arith(out, false, k, *d, false),
        Op::Touch(k, e) => client::encode_touch(out, k, *e, false),
    }
}

fn read_op(c: &mut Conn, op: &Op) -> Result<OpResult, Error> {
    match op {
        Op::Get(_) => Ok(OpResult::Value(read_values(c)?.pop())),
        Op::Set { .. } => Ok(OpResult::Stored(read_stored(c)?)),
        Op::Delete(_) | Op::Touch(..) => match c.next_reply()? {
            (Reply::Deleted | Reply::Touched, _) => Ok(OpResult::Found(true)),
            (Reply::NotFound, _) => Ok(OpResult::Found(false)),
            (r, b) => Err(unexpected(&r, b)),
        },
        Op::Incr(..) | Op::Decr(..) => match c.next_reply()? {
            (Reply::Number(n), _) => Ok(OpResult::Number(Some(n))),
            (Reply::NotFound, _) => Ok(OpResult::Number(None)),
            (r, b) => Err(unexpected(&r, b)),
        },
    }
}

fn read_values(c: &mut Conn) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    loop {
        match c.next_reply()? {
            (
                Reply::Value {
                    key,
                    flags,
                    data,
                    cas,
                },
                b,
            ) => items.push(Item {
                key: b[key].to_vec(),
                value: b[data].to_vec(),
                flags,
                cas,
            }),
            (Reply::End, _) => return Ok(items),
            (r, b) => return Err(unexpected(&r, b)),
        }
    }
}

fn read_stored(c: &mut Conn) -> Result<Stored, Error> {
    match c.next_reply()? {
        (Reply::Stored, _) => Ok(Stored::Stored),
        (Reply::NotStored, _) => Ok(Stored::NotStored),
        (Reply::Exists, _) => Ok(Stored::Exists),
        (Reply::NotFound, _) => Ok(Stored::NotFound),
        (r, b) => Err(unexpected(&r, b)),
    }
}

fn read_meta(c: &mut Conn) -> Result<MetaReply, Error> {
    match c.next_reply()? {
        (
            Reply::Meta {
                status,
                flags,
                data,
            },
            b,
        ) => Ok(MetaReply {
            status,
            flags: b[flags].to_vec(),
            value: data.map(|d| b[d].to_vec()),
        }),
        (r, b) => Err(unexpected(&r, b)),
    }
}

/// Turn an error reply into its error, anything else into Unexpected.
fn unexpected(r: &Reply, b: &[u8]) -> Error {
    match r {
        Reply::Error => Error::Server("ERROR".into()),
        Reply::ClientError(m) => Error::Client(String::from_utf8_lossy(&b[m.clone()]).into_owned()),
        Reply::ServerError(m) => Error::Server(String::from_utf8_lossy(&b[m.clone()]).into_owned()),
        other => Error::Unexpected(format!("{other:?}")),
    }
}
