//! The input side of a task: several channels read fairly.

use std::future::poll_fn;
use std::task::Poll;

use fungi_common::Message;
use tokio::sync::mpsc::Receiver;

/// Reads the input channels of a task round-robin, so one busy input cannot starve the
/// others. Each channel is one upstream subtask; the index returned identifies it (for
/// per-input watermarks and barrier alignment: a blocked channel is not read until it is
/// unblocked).
#[derive(Debug)]
pub(crate) struct InputGate {
    inputs: Vec<Receiver<Message>>,
    closed: Vec<bool>,
    blocked: Vec<bool>,
    start: usize,
}

impl InputGate {
    pub(crate) fn new(inputs: Vec<Receiver<Message>>) -> Self {
        let closed = vec![false; inputs.len()];
        InputGate {
            blocked: closed.clone(),
            inputs,
            closed,
            start: 0,
        }
    }

    /// Stops reading channel `i` (it delivered the barrier being aligned).
    pub(crate) fn block(&mut self, i: usize) {
        self.blocked[i] = true;
    }

    /// Whether channel `i` is blocked.
    pub(crate) fn is_blocked(&self, i: usize) -> bool {
        self.blocked[i]
    }

    /// Reads every channel again.
    pub(crate) fn unblock_all(&mut self) {
        self.blocked.fill(false);
    }

    pub(crate) fn len(&self) -> usize {
        self.inputs.len()
    }

    /// The next message and the input it came from; `None` once every channel is closed.
    /// Cancel-safe: dropping the future loses no message.
    pub(crate) async fn recv(&mut self) -> Option<(usize, Message)> {
        poll_fn(|cx| {
            let n = self.inputs.len();
            let mut open = false;
            for k in 0..n {
                let i = (self.start + k) % n;
                if self.closed[i] {
                    continue;
                }
                if self.blocked[i] {
                    // Still open, just not read now.
                    open = true;
                    continue;
                }
                match self.inputs[i].poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        self.start = (i + 1) % n;
                        return Poll::Ready(Some((i, m)));
                    }
                    Poll::Ready(None) => self.closed[i] = true,
                    Poll::Pending => open = true,
                }
            }
            if open {
                Poll::Pending
            } else {
                Poll::Ready(None)
            }
        })
        .await
    }
}
