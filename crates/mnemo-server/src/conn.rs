//! One client connection: an explicit state machine over bounded buffers.
//!
//! States (memcached's names, shown by `stats conns`):
//! - `NewCmd`: accepted, nothing received yet (or yielding after `-R`).
//! - `Read`: read what the socket has into the read buffer; also what a
//!   connection waiting for its next request shows, as in memcached, whose
//!   `conn_waiting` turns into `conn_read` as soon as the wait is armed.
//! - `ParseCmd`: parse and execute every complete request in the buffer
//!   (at most `-R` per event), appending replies to the one output buffer.
//! - `Nread`: a storage command whose value is not all here yet; the
//!   command line stays in the buffer and is parsed again only once `need`
//!   bytes have arrived (no copy of the key). Shown while waiting for the
//!   rest of the value, too.
//! - `Swallow`: discard the data of a value that can never be stored
//!   (shown while waiting for more of it).
//! - `Mwrite`: write the gathered replies (one `write` per batch).
//! - `Closing`: done; the worker drops the connection.
//!
//! What the bytes mean is not decided here: `ParseCmd` hands the front of
//! the read buffer to [`dispatch::step`] and applies the [`Outcome`] it
//! returns (consume, wait for `need` bytes, read a value into its item,
//! swallow, pause for output to drain, close).
//!
//! Buffers are bounded: the read buffer grows past its 16 KB start only for
//! a value that is allowed (`-I` plus the command line) or a multi-get line
//! (up to [`MAX_GET_LINE`]); the output buffer shrinks back after a flush.

mod budget;

use crate::dispatch::{self, Ctx, Front, Outcome, Resume, Session, GET_PAUSE_BYTES};
use crate::out::Out;
use crate::shared::{ConnInfo, ConnState};
use mnemo_engine::{MetadumpCursor, Reserved};
use mnemo_net::{ReadBuf, Stream};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Initial read buffer (memcached's READ_BUFFER_SIZE).
pub const READ_BUFFER_SIZE: usize = 16 * 1024;
/// Longest `get` line we buffer; memcached's is unbounded, ours is not.
pub const MAX_GET_LINE: usize = 2 * 1024 * 1024;
/// Output buffers bigger than this are given back once flushed.
const SHRINK_ABOVE: usize = 256 * 1024;
/// Most idle read buffers a worker keeps for reuse.
pub const RBUF_POOL_MAX: usize = 256;
/// A storage command line is at most this long (key + numbers); used to
/// bound the read buffer while a value is read.
const MAX_STORE_LINE: usize = 2048;

/// Where input processing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Input {
    /// Expecting a command line.
    Command,
    /// A storage command needs this many buffered bytes (line + value + 2).
    Value { need: usize },
    /// This many input bytes still to be discarded.
    Swallow { left: usize },
    /// The get line at the front of the buffer paused (its output hit
    /// `GET_PAUSE_BYTES`); its keys resume `offset` bytes into the line
    /// once the output has drained.
    GetResume { offset: usize },
    /// An `lru_crawler metadump` paused the same way; its line is
    /// consumed and [`Conn::metadump`] holds where it resumes.
    MetadumpResume,
    /// A storage request's value is being read straight into its item
    /// ([`Conn::direct`]); the first `head` buffered bytes are its line (or
    /// binary header and key), and `trailer` bytes follow the value.
    Direct { head: usize, trailer: usize },
}

/// A value read from the socket into the item that will hold it, as
/// memcached's `conn_nread` does: it is cache memory (inside `-m`), not
/// read buffer.
struct DirectValue {
    value: Reserved,
    filled: usize,
}

/// What a connection borrows from its worker while it runs.
pub struct Env<'a> {
    /// What its requests run with.
    pub ctx: Ctx<'a>,
    /// The worker's spare read buffers.
    pub rbuf_pool: &'a mut Vec<Vec<u8>>,
    /// The worker sends replies in one batch after this event round; a
    /// flush leaves them queued for it.
    pub defer_send: bool,
}

/// What the worker should do with the connection after [`Conn::drive`].
#[derive(Debug, PartialEq, Eq)]
pub enum Drive {
    /// Wait for the next readiness event.
    Wait,
    /// The `-R` budget ran out with work left; run again soon.
    Yield,
    /// Close and forget the connection.
    Close,
    /// `watch`: hand the socket to the logger thread as a watcher of these
    /// streams (its admission is taken).
    Watch(u16),
    /// `mn_repl HELLO`: hand the socket to a replication sender thread.
    Repl(Box<crate::repl::Handoff>),
}

pub struct Conn {
    pub stream: Stream,
    pub info: Arc<ConnInfo>,
    /// Requests are parsed in place here; its policy (pooling, when to
    /// compact and how far to grow) is this module's.
    rbuf: ReadBuf,
    wbuf: Out,
    /// The protocol state the requests of this connection run with.
    sess: Session,
    input: Input,
    /// The socket may still have unread bytes (edge-triggered readiness).
    readable: bool,
    /// The peer's FIN has been reported: it raises no further edge, so a
    /// short read must not be taken to mean there is nothing left to read.
    peer_closed: bool,
    /// The socket refused a write; wait for writability.
    write_blocked: bool,
    close_after_write: bool,
    /// Largest value + line the read buffer may have to hold.
    value_limit: usize,
    /// The paused metadump, while `input` is `MetadumpResume`.
    metadump: Option<Box<MetadumpCursor>>,
    /// The item being filled while `input` is `Direct`, and once it is
    /// full until its request runs.
    direct: Option<DirectValue>,
    /// A batched read (see [`Conn::prefill_target`]) found the end of the
    /// stream or an error; the next `fill` reports it.
    prefill_eof: bool,
    /// The output is handed to the worker's batched send and must not
    /// change until [`Conn::send_done`].
    send_deferred: bool,
    /// Some input has arrived: until then `stats conns` shows the
    /// connection as memcached shows a new one, `conn_new_cmd`.
    got_input: bool,
    /// Why it closed, for `watch connevents`: memcached's `NORMAL_CLOSE`
    /// for an end of stream or `quit`, else `ERROR_CLOSE`.
    pub normal_close: bool,
    /// `watch` was accepted: once the output is written the connection
    /// leaves for the logger thread.
    watch: Option<u16>,
    /// `mn_repl HELLO` was accepted: once the output is written the
    /// connection leaves for a replication sender thread.
    repl: Option<Box<crate::repl::Handoff>>,
    /// `-o read_buf_mem_limit` accounting (`bufbudget.rs`): the read
    /// buffer object memcached would hold, and its response objects not
    /// yet written.
    rbuf_held: bool,
    resps_held: usize,
}

impl Conn {
    pub fn new(stream: Stream, info: Arc<ConnInfo>, item_size_max: usize) -> Conn {
        Conn {
            stream,
            sess: Session::stream(Arc::clone(&info)),
            info,
            rbuf: ReadBuf::new(),
            wbuf: Out::new(true),
            input: Input::Command,
            readable: true,
            peer_closed: false,
            write_blocked: false,
            close_after_write: false,
            value_limit: item_size_max + MAX_STORE_LINE + 2,
            metadump: None,
            direct: None,
            prefill_eof: false,
            send_deferred: false,
            got_input: false,
            normal_close: false,
            watch: None,
            repl: None,
            rbuf_held: false,
            resps_held: 0,
        }
    }

    /// Bytes held by the read buffer (for the `read_buf_*` stats).
    pub fn rbuf_bytes(&self) -> usize {
        self.rbuf.capacity()
    }

    /// Bytes held by the output buffer (for the `response_obj_*` stats).
    pub fn wbuf_bytes(&self) -> usize {
        self.wbuf.capacity()
    }

    /// The worker saw the peer close its side (EPOLLRDHUP/EPOLLHUP).
    pub fn set_peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// Whether the connection is between requests (for idle_timeout).
    pub fn is_idle(&self) -> bool {
        self.input == Input::Command && self.rbuf.is_empty() && !self.wbuf.has_unsent()
    }

    /// Stopping: writes the replies already queued, reading nothing more.
    /// `true` once they are written and the peer has acknowledged every
    /// byte (or the socket failed): closing a socket with unread input
    /// sends an RST, which would discard whatever the kernel still holds.
    pub fn stop_flush(&mut self, env: &mut Env) -> bool {
        self.write_blocked = false;
        match self.flush(env) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(_) => return true,
        }
        let fd = self.raw_fd();
        let mut unacked: libc::c_int = 0;
        // SAFETY: TIOCOUTQ on an open socket we own writes one c_int.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unacked) };
        rc != 0 || unacked == 0
    }

    fn set_state(&self, s: ConnState) {
        self.info.set_state(s);
    }

    /// The state `stats conns` shows while the connection waits for
    /// input: memcached's is where its input stands (`conn_nread` part-way
    /// through a value, `conn_swallow` part-way through a discard), else
    /// `conn_read`, or `conn_new_cmd` before anything has arrived.
    fn waiting_state(&self) -> ConnState {
        match self.input {
            Input::Value { .. } | Input::Direct { .. } => ConnState::Nread,
            Input::Swallow { .. } => ConnState::Swallow,
            _ if !self.got_input => ConnState::NewCmd,
            _ => ConnState::Read,
        }
    }

    /// Runs the state machine until it must wait, yield or close.
    pub fn drive(&mut self, env: &mut Env, readable: bool, writable: bool) -> Drive {
        if readable {
            self.readable = true;
        }
        if writable {
            self.write_blocked = false;
        }
        let mut budget = env.ctx.shared.settings.reqs_per_event;
        loop {
            // Mwrite: finish what is queued before taking more input, so a
            // slow reader cannot make us buffer without bound.
            // (A TLS session may hold encrypted output of its own: the
            // tail of the last reply, or handshake records.)
            // While a value too large to store is being discarded, its
            // error (and whatever came before it) waits, as memcached's
            // does in conn_swallow: the client hears nothing until it has
            // sent the whole value, and nothing if it hangs up first.
            let holding = matches!(self.input, Input::Swallow { .. });
            if (self.wbuf.has_unsent() && !holding) || self.stream.wants_write() {
                if self.write_blocked {
                    return Drive::Wait;
                }
                self.set_state(ConnState::Mwrite);
                match self.flush(env) {
                    Ok(true) => {}
                    Ok(false) => return Drive::Wait,
                    Err(_) => return self.closing(),
                }
            }
            if self.close_after_write {
                // (A `watch` leaves the same way, to the logger thread.)
                if let Some(flags) = self.watch {
                    return Drive::Watch(flags);
                }
                if let Some(hello) = self.repl.take() {
                    return Drive::Repl(hello);
                }
                self.normal_close = true;
                return self.closing();
            }

            // ParseCmd / Nread / Swallow on what is buffered.
            match self.process(env, &mut budget) {
                Step::Close => return self.closing(),
                Step::Watch(flags) => {
                    // Replies still queued go out first; then the socket
                    // is the logger thread's.
                    self.watch = Some(flags);
                    self.close_after_write = true;
                    continue;
                }
                Step::CloseAfterWrite => {
                    self.close_after_write = true;
                    continue;
                }
                Step::Repl(hello) => {
                    self.repl = Some(hello);
                    self.close_after_write = true;
                    continue;
                }
                Step::Budget => {
                    env.ctx.ws.conn_yields.incr();
                    if self.wbuf.has_unsent() {
                        // Flush on yield, as memcached does.
                        self.set_state(ConnState::Mwrite);
                        match self.flush(env) {
                            Ok(true) => {}
                            Ok(false) => return Drive::Wait,
                            Err(_) => return self.closing(),
                        }
                    }
                    self.set_state(ConnState::NewCmd);
                    return Drive::Yield;
                }
                Step::NeedInput => {}
                Step::Drain => continue,
            }
            if self.wbuf.has_unsent() && !matches!(self.input, Input::Swallow { .. }) {
                // Replies gathered from this read go out in one write.
                continue;
            }

            if self.resps_held > 0 {
                self.settle_resps(env);
            }
            // Read.
            if !self.readable {
                self.set_state(self.waiting_state());
                self.release_rbuf(env);
                return Drive::Wait;
            }
            self.set_state(ConnState::Read);
            match self.fill(env) {
                Ok(Filled::Data) => {}
                Ok(Filled::WouldBlock) => {
                    self.set_state(self.waiting_state());
                    self.release_rbuf(env);
                    return Drive::Wait;
                }
                Ok(Filled::Eof) => {
                    self.normal_close = true;
                    return self.closing();
                }
                Err(e) => {
                    if mnemo_net::is_handshake_error(&e) {
                        let g = &env.ctx.shared.global;
                        g.ssl_handshake_errors.fetch_add(1, Relaxed);
                    }
                    return self.closing();
                }
                Ok(Filled::Full) | Ok(Filled::Oom) => return self.closing(),
            }
        }
    }

    fn closing(&mut self) -> Drive {
        self.stream.close_notify();
        self.set_state(ConnState::Closing);
        Drive::Close
    }

    /// Writes queued output; `Ok(true)` once all of it is gone.
    fn flush(&mut self, env: &mut Env) -> io::Result<bool> {
        if self.send_deferred {
            return Ok(false);
        }
        // TLS output is encrypted by the session, not sent from the
        // buffer, so it never joins the batched send.
        if env.defer_send && self.wbuf.plain_unsent().is_some() && !self.stream.is_tls() {
            // The worker sends it with the other connections' replies in
            // one submission; the connection waits for that.
            self.send_deferred = true;
            return Ok(false);
        }
        while self.wbuf.has_unsent() {
            match self.wbuf.write_to(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    env.ctx.ws.bytes_written.add(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.stream.wants_write() {
            match self.stream.flush_tls() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        self.wbuf.reset(SHRINK_ABOVE);
        self.sess.output_sent();
        Ok(true)
    }

    /// Gives the read buffer back once it is empty, as memcached does, so
    /// idle connections hold no read memory: standard-size buffers go to
    /// the worker's pool (reused without allocating), bigger ones are freed.
    fn release_rbuf(&mut self, env: &mut Env) {
        if self.rbuf.is_empty() {
            if let (true, Some(b)) = (self.rbuf_held, env.ctx.budget) {
                b.give_rbuf();
                self.rbuf_held = false;
            }
            let buf = self.rbuf.take_storage();
            if buf.len() == READ_BUFFER_SIZE && env.rbuf_pool.len() < RBUF_POOL_MAX {
                env.rbuf_pool.push(buf);
            }
        }
    }

    /// Reads once into free space, making room first.
    fn fill(&mut self, env: &mut Env) -> io::Result<Filled> {
        if self.prefill_eof {
            return Ok(Filled::Eof);
        }
        if let Input::Direct { head, trailer } = self.input {
            return self.fill_direct(env, head, trailer);
        }
        if let Err(f) = self.make_room(env) {
            return Ok(f);
        }
        let n = match read_once(
            &mut self.stream,
            self.rbuf.spare_mut(),
            &mut self.readable,
            self.peer_closed,
        )? {
            Got::Data(n) => n,
            Got::Eof => return Ok(Filled::Eof),
            Got::WouldBlock => return Ok(Filled::WouldBlock),
        };
        self.rbuf.commit(n);
        env.ctx.ws.bytes_read.add(n as u64);
        Ok(Filled::Data)
    }

    /// Makes free space after the buffered bytes for the next read:
    /// compacts, takes a pooled buffer, or grows within the input state's
    /// limit.
    fn make_room(&mut self, env: &mut Env) -> Result<(), Filled> {
        let pending = self.rbuf.len();
        let want = match self.input {
            Input::Value { need } => need.max(pending + 1),
            Input::Swallow { .. } => READ_BUFFER_SIZE,
            Input::Command
            | Input::GetResume { .. }
            | Input::MetadumpResume
            | Input::Direct { .. } => pending + 1,
        };
        if let Some(b) = env.ctx.budget {
            if self.rbuf.capacity() == 0 && !self.rbuf_held {
                if !b.take_rbuf() {
                    env.ctx.ws.read_buf_oom.incr();
                    return Err(Filled::Oom);
                }
                self.rbuf_held = true;
            }
        }
        let rb = &mut self.rbuf;
        if rb.start() > 0
            && (rb.spare_len() < READ_BUFFER_SIZE / 4 || rb.spare_len() + pending < want)
        {
            rb.compact();
        }
        if rb.capacity() == 0 {
            if let Some(buf) = env.rbuf_pool.pop() {
                *rb = ReadBuf::from_storage(buf);
            }
        }
        if rb.capacity() < want.max(READ_BUFFER_SIZE) {
            let limit = match self.input {
                Input::Value { .. } => self.value_limit.max(MAX_GET_LINE),
                _ => MAX_GET_LINE,
            };
            if want > limit {
                return Err(Filled::Full);
            }
            let new_len = want
                .max(READ_BUFFER_SIZE)
                .max((rb.capacity() * 2).min(limit));
            rb.grow_to(new_len);
            if new_len > READ_BUFFER_SIZE && self.rbuf_held {
                // memcached moves a growing buffer out of its cache.
                if let Some(b) = env.ctx.budget {
                    b.give_rbuf();
                }
                self.rbuf_held = false;
            }
        }
        if rb.spare_len() == 0 {
            return Err(Filled::Full);
        }
        Ok(())
    }

    /// Batched I/O: the free space the read that [`Conn::drive`] would
    /// start with goes into, so the worker can issue the reads of every
    /// ready connection in one submission. `None` when this connection
    /// must read for itself (output pending, a value read into its item,
    /// a full buffer).
    ///
    /// The space stays where it is, and nothing else reads or writes it,
    /// until the next call that takes the connection `&mut` (the buffer
    /// moves only in `make_room`); the worker's read into it must complete
    /// before then and be reported through [`Conn::prefill_done`].
    pub fn prefill_target(&mut self, env: &mut Env) -> Option<&mut [u8]> {
        self.readable = true;
        // A TLS stream reads the socket through its session, so its
        // connection reads in `drive`, outside the batch.
        if self.stream.is_tls()
            || self.send_deferred
            || self.prefill_eof
            || self.close_after_write
            || self.wbuf.has_unsent()
            || matches!(self.input, Input::Direct { .. })
            || (env.ctx.budget.is_some() && self.rbuf.capacity() == 0 && !self.rbuf_held)
        {
            return None;
        }
        self.make_room(env).ok()?;
        Some(self.rbuf.spare_mut())
    }

    /// The result of the read issued at [`Conn::prefill_target`]: bytes
    /// read, or a negated errno, as the kernel returns it.
    pub fn prefill_done(&mut self, env: &mut Env, res: i32, asked: usize) {
        match res {
            n if n > 0 => {
                let n = n as usize;
                // As read_once: a short read emptied the socket.
                if n < asked && !self.peer_closed {
                    self.readable = false;
                }
                self.rbuf.commit(n);
                env.ctx.ws.bytes_read.add(n as u64);
            }
            0 => self.prefill_eof = true,
            e if e == -libc::EAGAIN => self.readable = false,
            e if e == -libc::EINTR => {}
            _ => self.prefill_eof = true,
        }
    }

    /// Batched I/O: the reply bytes a deferred flush left for the worker.
    pub fn send_target(&self) -> Option<&[u8]> {
        if self.send_deferred {
            self.wbuf.plain_unsent()
        } else {
            None
        }
    }

    /// The result of the worker's send of [`Conn::send_target`]: bytes
    /// sent, or a negated errno. `Ok(true)` when everything went and the
    /// connection should run on; `Ok(false)` when it waits for
    /// writability.
    pub fn send_done(&mut self, env: &mut Env, res: i32) -> io::Result<bool> {
        self.send_deferred = false;
        match res {
            n if n > 0 => {
                self.wbuf.advance_plain(n as usize);
                env.ctx.ws.bytes_written.add(n as u64);
                if self.wbuf.has_unsent() {
                    // A short send filled the socket buffer.
                    self.write_blocked = true;
                    return Ok(false);
                }
                self.wbuf.reset(SHRINK_ABOVE);
                self.sess.output_sent();
                Ok(true)
            }
            0 => Err(io::ErrorKind::WriteZero.into()),
            e if e == -libc::EAGAIN => {
                self.write_blocked = true;
                Ok(false)
            }
            e if e == -libc::EINTR => Ok(true),
            e => Err(io::Error::from_raw_os_error(-e)),
        }
    }

    /// An accepted `watch` (holding a watcher admission) is waiting for
    /// the output ahead of it to be written.
    pub fn watch_pending(&self) -> bool {
        self.watch.is_some()
    }

    /// The raw descriptor, for batched submissions.
    pub fn raw_fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    /// Reads once into the item of the value being received.
    fn fill_direct(&mut self, env: &mut Env, head: usize, trailer: usize) -> io::Result<Filled> {
        let Some(d) = self.direct.as_mut() else {
            self.input = Input::Value { need: head };
            return Ok(Filled::Data);
        };
        let dst = d.value.unfilled(d.filled);
        let n = match read_once(&mut self.stream, dst, &mut self.readable, self.peer_closed)? {
            Got::Data(n) => n,
            Got::Eof => return Ok(Filled::Eof),
            Got::WouldBlock => return Ok(Filled::WouldBlock),
        };
        d.filled += n;
        env.ctx.ws.bytes_read.add(n as u64);
        if d.filled == d.value.len() {
            // The terminator (if any) is read as usual, after the line,
            // and the request runs once it is in.
            self.input = Input::Value {
                need: head + trailer,
            };
        }
        Ok(Filled::Data)
    }

    /// Starts reading a request's value into `value`: what is buffered
    /// after its first `head` bytes moves into the item, and the read
    /// buffer keeps only the head.
    fn start_direct(&mut self, head: usize, trailer: usize, value: Reserved) {
        let mut d = DirectValue { value, filled: 0 };
        let mut src = &self.rbuf.filled()[head..];
        while !src.is_empty() {
            let dst = d.value.unfilled(d.filled);
            if dst.is_empty() {
                break;
            }
            let n = dst.len().min(src.len());
            dst[..n].copy_from_slice(&src[..n]);
            d.filled += n;
            src = &src[n..];
        }
        debug_assert!(src.is_empty(), "only value bytes were buffered");
        self.rbuf.truncate(head);
        self.input = if d.filled == d.value.len() {
            Input::Value {
                need: head + trailer,
            }
        } else {
            Input::Direct { head, trailer }
        };
        self.direct = Some(d);
    }

    /// Runs the buffered requests through [`dispatch::step`] and moves the
    /// buffer and input state as each [`Outcome`] says.
    fn process(&mut self, env: &mut Env, budget: &mut usize) -> Step {
        loop {
            match self.input {
                Input::Swallow { left } => {
                    self.set_state(ConnState::Swallow);
                    let take = self.rbuf.len().min(left);
                    self.rbuf.consume(take);
                    if take < left {
                        self.input = Input::Swallow { left: left - take };
                        return Step::NeedInput;
                    }
                    self.input = Input::Command;
                }
                Input::Value { need } if self.rbuf.len() < need => {
                    self.set_state(ConnState::Nread);
                    return Step::NeedInput;
                }
                Input::Direct { .. } => {
                    self.set_state(ConnState::Nread);
                    return Step::NeedInput;
                }
                Input::MetadumpResume => {
                    // Runs whether or not input is buffered: the dump's
                    // line is gone, and what follows it waits for the END.
                    // Like a resumed get, it was counted against -R once.
                    if self.wbuf.unsent() >= GET_PAUSE_BYTES {
                        return Step::Drain;
                    }
                    self.set_state(ConnState::ParseCmd);
                    match self.metadump.take() {
                        Some(cursor) => {
                            if !self.metadump_step(env, cursor) {
                                return Step::Drain;
                            }
                        }
                        None => self.input = Input::Command,
                    }
                    continue;
                }
                _ => {}
            }
            if self.rbuf.is_empty() {
                self.input = Input::Command;
                return Step::NeedInput;
            }
            self.got_input = true;
            if *budget == 0 {
                return Step::Budget;
            }
            if self.wbuf.unsent() >= GET_PAUSE_BYTES {
                // Many small requests pile replies up as fast as one big
                // multi-get: write them before taking the next request, so
                // a client that does not read holds at most this much.
                return Step::Drain;
            }
            self.set_state(ConnState::ParseCmd);
            let resume = match self.input {
                Input::Value { .. } => Resume::Value,
                Input::GetResume { offset } => Resume::Get { offset },
                _ => Resume::Fresh,
            };
            let mut acct = None;
            if let Some(b) = env.ctx.budget {
                match self.budget_before(b, resume, env.ctx.ws) {
                    Some(a) => acct = Some(a),
                    None => return Step::Close,
                }
            }
            let buf = self.rbuf.filled();
            let buffered = buf.len();
            let direct = take_full(&mut self.direct);
            let front = Front {
                input: buf,
                resume,
                direct,
            };
            let outcome = dispatch::step(&mut env.ctx, &mut self.sess, front, &mut self.wbuf);
            if let (Some(a), Some(b)) = (acct, env.ctx.budget) {
                self.budget_after(b, a, &outcome);
            }
            // A request counts against -R once, when it is answered: not
            // while it waits for input, nor when a paused get resumes.
            if !matches!(outcome, Outcome::NeedMore { .. } | Outcome::Direct { .. })
                && !matches!(resume, Resume::Get { .. })
            {
                *budget -= 1;
            }
            match outcome {
                Outcome::Done { used } => {
                    self.rbuf.consume(used);
                    self.input = Input::Command;
                }
                Outcome::NeedMore { need: 0 } => return Step::NeedInput,
                Outcome::NeedMore { need } => {
                    // Keep the request; run it again once `need` is here.
                    self.input = Input::Value {
                        need: need.max(buffered + 1),
                    };
                    self.set_state(ConnState::Nread);
                    return Step::NeedInput;
                }
                Outcome::Swallow { used, left } => {
                    self.rbuf.consume(used);
                    self.input = Input::Swallow { left };
                }
                Outcome::Direct {
                    head,
                    trailer,
                    value,
                } => self.start_direct(head, trailer, value),
                Outcome::GetPaused { offset } => {
                    self.input = Input::GetResume { offset };
                    return Step::Drain;
                }
                Outcome::Metadump { used, cursor } => {
                    self.rbuf.consume(used);
                    self.input = Input::Command;
                    if !self.metadump_step(env, cursor) {
                        return Step::Drain;
                    }
                }
                Outcome::CloseAfterWrite { used } => {
                    self.rbuf.consume(used);
                    return Step::CloseAfterWrite;
                }
                Outcome::Close => return Step::Close,
                Outcome::Watch { flags } => return Step::Watch(flags),
                Outcome::Repl { used, hello } => {
                    self.rbuf.consume(used);
                    return Step::Repl(hello);
                }
            }
        }
    }

    /// Runs a metadump until the output is full enough to pause; true,
    /// with the connection back to reading commands, once it is done.
    fn metadump_step(&mut self, env: &mut Env, mut cursor: Box<MetadumpCursor>) -> bool {
        let done = dispatch::metadump_step(&env.ctx, &mut self.sess, &mut cursor, &mut self.wbuf);
        if done {
            self.metadump = None;
            self.input = Input::Command;
        } else {
            self.metadump = Some(cursor);
            self.input = Input::MetadumpResume;
        }
        done
    }
}

enum Got {
    Data(usize),
    Eof,
    WouldBlock,
}

/// One read into `dst` (not empty), retried on EINTR.
fn read_once(
    stream: &mut Stream,
    dst: &mut [u8],
    readable: &mut bool,
    peer_closed: bool,
) -> io::Result<Got> {
    loop {
        match stream.read(dst) {
            Ok(0) => return Ok(Got::Eof),
            Ok(n) => {
                // A short read emptied the socket's queue; new data will
                // raise a fresh edge, so skip the read that would only
                // return EAGAIN. Not once the FIN is in: the read that
                // returns 0 is the only way to learn of it.
                if n < dst.len() && !peer_closed {
                    *readable = false;
                }
                return Ok(Got::Data(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *readable = false;
                return Ok(Got::WouldBlock);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The filled item of the request about to run, if it was read direct.
/// Looks before it takes: moving the (engine-enum) value out and back on
/// every request cost a few instructions each.
#[inline]
fn take_full(direct: &mut Option<DirectValue>) -> Option<Reserved> {
    if direct.as_ref().is_some_and(|d| d.filled == d.value.len()) {
        direct.take().map(|d| d.value)
    } else {
        None
    }
}

enum Step {
    NeedInput,
    /// Output must drain before input processing continues.
    Drain,
    Budget,
    Close,
    CloseAfterWrite,
    Watch(u16),
    Repl(Box<crate::repl::Handoff>),
}

enum Filled {
    Data,
    WouldBlock,
    Eof,
    /// The buffer is at its limit and still holds no complete request.
    Full,
    /// `-o read_buf_mem_limit` left no read buffer for this connection.
    Oom,
}
