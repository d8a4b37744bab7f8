//! A monitor's inbox: EXITs and the other events of the processes it watches, in the order
//! they were sent. Unbounded: a process sends its monitors one EXIT, and the runtime's own
//! events are as few; see the process API for what guests may send.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::event::Event;

/// Where a mailbox's events are sent. Boxed: a channel allocates its first block of 32 slots
/// when it is made, and slots of `Event` (192 bytes) made every mailbox 6 KiB before its first
/// event; every Lua script has one (10,000 waiting scripts: 6.2 KiB of their 65 KiB each).
pub(crate) type Address = mpsc::UnboundedSender<Box<Event>>;

/// Where a monitor's events arrive.
pub struct Mailbox {
    tx: Address,
    rx: mpsc::UnboundedReceiver<Box<Event>>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Mailbox {
    /// An empty mailbox, monitoring nothing yet.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Mailbox { tx, rx }
    }

    pub(crate) fn address(&self) -> Address {
        self.tx.clone()
    }

    /// The next event, or `None` when `timeout` passes first. Needs a tokio runtime with time.
    pub async fn receive(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
            .map(|event| *event)
    }

    /// The next event, however long it takes.
    pub async fn next(&mut self) -> Event {
        // Never closed: the mailbox holds a sender itself.
        match self.rx.recv().await {
            Some(event) => *event,
            None => std::future::pending().await,
        }
    }

    /// The next event, waited for on the calling thread (which must not be running async
    /// code): `None` when `timeout` passes first; no timeout waits as long as it takes. The
    /// error is a timer that could not start.
    pub fn receive_blocking(
        &mut self,
        timeout: Option<Duration>,
    ) -> std::io::Result<Option<Event>> {
        match timeout {
            // Never closed: the mailbox holds a sender itself.
            None => Ok(self.rx.blocking_recv().map(|event| *event)),
            Some(timeout) => Ok(tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?
                .block_on(self.receive(timeout))),
        }
    }

    /// The next event if one is already there.
    pub fn try_receive(&mut self) -> Option<Event> {
        self.rx.try_recv().ok().map(|event| *event)
    }
}
