//! `-o read_buf_mem_limit` bookkeeping of a connection (see
//! `bufbudget.rs`): the read buffer object and response objects memcached
//! would hold for it, taken and given back around its requests.

use super::{Conn, Env, Input, Outcome, Resume};
use crate::bufbudget::BufBudget;
use crate::stats::WorkerStats;

impl Conn {
    /// Gives back what the connection holds of the worker's buffer
    /// budget; it is closing or leaving the worker.
    pub fn release_budget(&mut self, b: &BufBudget) {
        if std::mem::take(&mut self.rbuf_held) {
            b.give_rbuf();
        }
        b.give_resps(std::mem::take(&mut self.resps_held));
    }

    /// Output written: memcached frees a response object once its reply is
    /// sent (a request still waiting for its value keeps its own).
    pub(super) fn settle_resps(&mut self, env: &Env) {
        if let Some(b) = env.ctx.budget {
            if self.wbuf.has_unsent() {
                return;
            }
            let keep = usize::from(matches!(
                self.input,
                Input::Value { .. } | Input::Direct { .. }
            ))
            .min(self.resps_held);
            b.give_resps(self.resps_held - keep);
            self.resps_held = keep;
        }
    }

    /// `-o read_buf_mem_limit`, before a request runs: a command takes its
    /// response object once its line is in (memcached's `resp_start`);
    /// `None` when none is left, which closes the connection.
    #[inline(never)]
    pub(super) fn budget_before(
        &self,
        b: &BufBudget,
        resume: Resume,
        ws: &WorkerStats,
    ) -> Option<Acct> {
        let a = Acct {
            resps: b.resps(),
            floor: self.sess.cull_floor,
            took: resume == Resume::Fresh && command_ready(self.rbuf.filled()),
        };
        if a.took && !b.take_resp() {
            ws.response_obj_oom.incr();
            return None;
        }
        Some(a)
    }

    /// After the request: what it took is the connection's until written.
    #[inline(never)]
    pub(super) fn budget_after(&mut self, b: &BufBudget, a: Acct, outcome: &Outcome) {
        if a.took && matches!(outcome, Outcome::NeedMore { need: 0 }) {
            // Not a whole request after all (a binary body).
            b.give_resps(1);
        }
        self.resps_held += b.resps().saturating_sub(a.resps);
        if self.sess.cull_floor != a.floor && self.sess.cull_floor != 0 {
            // A get finished: memcached transmits at once, and every
            // response it had stacked is freed once written.
            b.give_resps(std::mem::take(&mut self.resps_held));
        }
    }
}

/// What [`Conn::budget_before`] noted for [`Conn::budget_after`].
#[derive(Clone, Copy)]
pub(super) struct Acct {
    resps: usize,
    floor: usize,
    took: bool,
}

/// Whether the input starts with a whole command line (text) or header
/// (binary): what memcached has before it takes a response object.
pub(super) fn command_ready(input: &[u8]) -> bool {
    match input.first() {
        Some(&0x80) => input.len() >= 24,
        Some(_) => input.contains(&b'\n'),
        None => false,
    }
}
