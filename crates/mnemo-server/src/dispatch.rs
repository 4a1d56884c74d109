//! One dispatch step for every transport: given the input buffered for a
//! connection (or one datagram) and the protocol state of its sender, run
//! the request at the front and tell the caller what to do next.
//!
//! The pieces:
//! - [`Ctx`]: what a request runs with (the server's shared state, this
//!   thread's counters, who asked).
//! - [`Session`]: what the server remembers about a sender between
//!   requests (protocol, authentication, where culling may start, and
//!   whether it is a stream or a datagram).
//! - [`step`]: picks the protocol and runs one request through
//!   `proto_bin`, `auth` or `proto_text` (which hands meta lines to
//!   `proto_meta`); every one of them answers with an [`Outcome`].
//! - [`run_datagram`]: the UDP loop over one datagram's requests.
//!
//! `conn.rs` turns an [`Outcome`] into buffer and state-machine moves
//! (consume, wait for more, read a value into its item, swallow, pause,
//! close); nothing protocol-specific is left there.

use crate::auth;
use crate::out::Out;
use crate::proto_bin::{self, BinConn};
use crate::proto_text;
use crate::settings::Protocol;
use crate::shared::{ConnInfo, Shared};
use crate::stats::WorkerStats;
use mnemo_engine::{MetadumpCursor, Reserved, ThreadStats};
use std::sync::Arc;

/// Requests bigger than this whose value is still arriving over a stream
/// have it read straight into its item rather than buffered (the read
/// buffer's size). Text, meta and binary storage commands all follow it.
pub const DIRECT_ABOVE: usize = crate::conn::READ_BUFFER_SIZE;

/// Output a stream may queue before a get (or a run of small requests, or
/// a metadump) pauses to let it drain; a line naming one large item many
/// times must not grow memory without bound.
pub const GET_PAUSE_BYTES: usize = 4 * 1024 * 1024;

/// What a request runs with.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub ts: &'a ThreadStats,
    pub ws: &'a WorkerStats,
    /// The requester's descriptor, for `-vv` logging and `watch` lines.
    pub fd: i32,
    /// This thread's `watch` entry buffer (see `watch::Logger::log`).
    pub ring: usize,
    /// `-o read_buf_mem_limit`: the worker's buffer objects.
    pub budget: Option<&'a crate::bufbudget::BufBudget>,
    /// Whether replies are already queued ahead of this request
    /// (`lru_crawler metadump` refuses to run behind them; a binary NOOP's
    /// flush mark lives only as long as the batch). Set by [`step`].
    pub pending_output: bool,
}

/// What the server remembers about one sender between its requests.
pub struct Session {
    /// The protocol, decided by the first byte under `-B auto`.
    pub proto: Option<Protocol>,
    /// Binary SASL state and NOOP flush mark.
    pub bin: BinConn,
    /// `-Y`: the ASCII token was accepted.
    pub ascii_authed: bool,
    /// End of the last retrieval reply in the output. memcached transmits
    /// right after every get, so only replies after this point are still
    /// "unsent" when a later get with an over-long key culls them.
    /// [`Session::output_sent`] resets it.
    pub cull_floor: usize,
    /// The connection's `stats conns` entry; `None` for a datagram.
    info: Option<Arc<ConnInfo>>,
}

impl Session {
    /// A TCP or unix-socket connection's session.
    pub fn stream(info: Arc<ConnInfo>) -> Session {
        Session::fresh(Some(info))
    }

    /// One datagram's session: each datagram stands alone.
    pub fn datagram() -> Session {
        Session::fresh(None)
    }

    fn fresh(info: Option<Arc<ConnInfo>>) -> Session {
        Session {
            proto: None,
            bin: BinConn::default(),
            ascii_authed: false,
            cull_floor: 0,
            info,
        }
    }

    /// The output was written: replies before this point can no longer
    /// be culled, so nothing can.
    #[inline]
    pub fn output_sent(&mut self) {
        self.cull_floor = 0;
    }

    /// A stream (not a datagram): values may be read into their items,
    /// output is bounded by pausing, `quit` and `shutdown` apply, and the
    /// `-Y` handshake is required.
    #[inline]
    pub fn is_stream(&self) -> bool {
        self.info.is_some()
    }

    /// The connection's `stats conns` entry, for a stream.
    #[inline]
    pub fn info(&self) -> Option<&ConnInfo> {
        self.info.as_deref()
    }

    /// Output at which a get stops and hands back its remaining keys: a
    /// stream drains at [`GET_PAUSE_BYTES`]; a datagram sends each key's
    /// reply on its own, as memcached does over UDP.
    #[inline]
    pub fn get_pause(&self) -> usize {
        if self.is_stream() {
            GET_PAUSE_BYTES
        } else {
            0
        }
    }
}

/// How the request at the front of the input comes to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// For the first time.
    Fresh,
    /// Again, now that the value it waited for is buffered (or read into
    /// its item); checks made the first time are not repeated.
    Value,
    /// A paused get's line: its keys resume `offset` bytes into the line.
    Get { offset: usize },
}

/// What the caller does after one step.
pub enum Outcome {
    /// The request was handled; `used` input bytes belong to it.
    Done { used: usize },
    /// Not a whole request yet: at least `need` bytes must be buffered
    /// (0: unknown, read more and try again from the start). A request
    /// that waits for its value this way runs again with
    /// [`Resume::Value`].
    NeedMore { need: usize },
    /// Answered; consume `used` bytes, then discard `left` more.
    Swallow { used: usize, left: usize },
    /// A store whose value is still arriving: keep the first `head` bytes
    /// (its line, or binary header and key), read the value into `value`,
    /// then `trailer` bytes (the text `\r\n`) after the head, and run the
    /// request again with the filled reservation.
    Direct {
        head: usize,
        trailer: usize,
        value: Reserved,
    },
    /// A get filled the output to its pause point: run its line again
    /// with [`Resume::Get`] once the output has gone.
    GetPaused { offset: usize },
    /// An `lru_crawler metadump` passed its checks: consume `used` bytes
    /// and run the dump through [`metadump_step`] until it is done.
    Metadump {
        used: usize,
        cursor: Box<MetadumpCursor>,
    },
    /// Consume `used` bytes, write what is queued, then close (`quit`).
    CloseAfterWrite { used: usize },
    /// `watch` was accepted (an admission is taken): the connection reads
    /// no more commands and goes to the logger thread as a watcher of
    /// these streams.
    Watch { flags: u16 },
    /// `mn_repl HELLO` from a peer (replication on): consume `used`
    /// bytes, write what is queued, then the connection leaves its worker
    /// for a replication sender thread (`repl/sender.rs`).
    Repl {
        used: usize,
        hello: Box<crate::repl::Handoff>,
    },
    /// Close at once, dropping queued output.
    Close,
}

/// The request at the front of the input, as the caller hands it over.
pub struct Front<'a> {
    /// The buffered input, from the request's first byte (not empty).
    pub input: &'a [u8],
    pub resume: Resume,
    /// The filled item of a request that answered [`Outcome::Direct`].
    pub direct: Option<Reserved>,
}

/// Runs the request at the front of the input.
#[inline(always)]
pub fn step(ctx: &mut Ctx, sess: &mut Session, front: Front, out: &mut Out) -> Outcome {
    let input = front.input;
    ctx.pending_output = out.has_unsent();
    let proto = match sess.proto {
        Some(p) => p,
        None => {
            // -B auto: the first byte of the connection decides.
            let p = match ctx.shared.settings.protocol {
                Protocol::Auto if proto_bin::is_binary_start(input[0]) => Protocol::Binary,
                Protocol::Auto => Protocol::Ascii,
                p => p,
            };
            sess.proto = Some(p);
            p
        }
    };
    let ctx = &*ctx;
    if proto == Protocol::Binary {
        let stream = sess.is_stream();
        return proto_bin::step(ctx, &mut sess.bin, stream, input, out, front.direct);
    }
    if !sess.ascii_authed && sess.is_stream() {
        if let Some(file) = ctx.shared.auth.as_ref() {
            // memcached writes every answer of the handshake into one
            // response object until it is sent, so within a batch only
            // the last answer goes out; nothing else is queued here.
            out.cull_to(0);
            return auth::ascii_auth(file, input, &mut sess.ascii_authed, out);
        }
    }
    proto_text::step(ctx, sess, front, out)
}

/// Continues a metadump until the output holds [`GET_PAUSE_BYTES`]; true
/// once it is done (then `cull_floor` moves past it: memcached sends the
/// dump as it goes, so a later culling get must not take it back).
pub fn metadump_step(
    ctx: &Ctx,
    sess: &mut Session,
    cursor: &mut MetadumpCursor,
    out: &mut Out,
) -> bool {
    let done = proto_text::metadump_step(ctx, cursor, out, GET_PAUSE_BYTES);
    if done {
        sess.cull_floor = out.len();
    }
    done
}

/// Runs every request of one datagram (`input`, after its frame header),
/// handing each reply to `send` on its own, as memcached sends each of its
/// response objects. A request must be whole within the datagram.
pub fn run_datagram(ctx: &mut Ctx, mut input: &[u8], out: &mut Out, mut send: impl FnMut(&[u8])) {
    let mut sess = Session::datagram();
    let mut resume = Resume::Fresh;
    while !input.is_empty() {
        out.clear();
        let front = Front {
            input,
            resume,
            direct: None,
        };
        let outcome = step(ctx, &mut sess, front, out);
        send(out);
        resume = Resume::Fresh;
        input = match outcome {
            Outcome::Done { used } => &input[used..],
            Outcome::Swallow { used, left } => input.get(used + left..).unwrap_or(&[]),
            // Each key of a get is its own reply; the last carries END.
            Outcome::GetPaused { offset } => {
                resume = Resume::Get { offset };
                input
            }
            // A datagram holds its whole request and has no connection to
            // close: what remains is dropped.
            Outcome::NeedMore { .. }
            | Outcome::Direct { .. }
            | Outcome::Metadump { .. }
            | Outcome::CloseAfterWrite { .. }
            | Outcome::Watch { .. }
            | Outcome::Repl { .. }
            | Outcome::Close => break,
        };
    }
    out.clear();
}
