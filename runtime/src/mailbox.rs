//! A monitor's inbox: EXITs and the other events of the processes it watches, in the order
//! they were sent. A Lua script's own mailbox is bounded by the bytes its unreceived events
//! hold (`lua::MAILBOX_BYTES`): a script can fill it itself (monitoring an ended process
//! again and again sends it that EXIT each time; it can cancel itself in a loop), and what
//! waits there is host memory, outside its Lua state's limit. Others are unbounded: their
//! owner is the host's own code, which receives what it asked for.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::event::Event;

/// Where a mailbox's events are sent. Boxed: a channel allocates its first block of 32 slots
/// when it is made, and slots of `Event` (192 bytes) made every mailbox 6 KiB before its first
/// event; every Lua script has one (10,000 waiting scripts: 6.2 KiB of their 65 KiB each).
#[derive(Clone)]
pub(crate) struct Address {
    tx: mpsc::UnboundedSender<Box<Sent>>,
    /// A bounded mailbox's count; none for an unbounded one (nothing counted as it sends).
    held: Option<Arc<Held>>,
}

/// An event on its way, with what it counts against its mailbox's bound (counted once, as it
/// is sent: an EXIT's value may be large; 0 in an unbounded mailbox).
struct Sent {
    event: Event,
    bytes: usize,
}

/// What a bounded mailbox holds, shared by its addresses and itself.
struct Held {
    bytes: AtomicUsize,
    bound: usize,
    /// An event was refused: the mailbox's owner is told at its next look.
    overflowed: AtomicBool,
}

impl Address {
    /// Sends `event`, unless the mailbox is gone, or bounded and full: then the event is
    /// dropped, and the mailbox remembers it overflowed.
    pub(crate) fn send(&self, event: Event) {
        let Some(held) = &self.held else {
            let _ = self.tx.send(Box::new(Sent { event, bytes: 0 }));
            return;
        };
        let bytes = event.bytes();
        let before = held.bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > held.bound {
            held.bytes.fetch_sub(bytes, Ordering::Relaxed);
            held.overflowed.store(true, Ordering::Relaxed);
            return;
        }
        if self.tx.send(Box::new(Sent { event, bytes })).is_err() {
            held.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Whether both send to the same mailbox.
    pub(crate) fn same_mailbox(&self, other: &Address) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Whether the mailbox, bounded, refused an event for want of room.
    #[cfg(feature = "lua")]
    pub(crate) fn overflowed(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|held| held.overflowed.load(Ordering::Relaxed))
    }
}

/// Where a monitor's events arrive.
pub struct Mailbox {
    tx: Address,
    rx: mpsc::UnboundedReceiver<Box<Sent>>,
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Mailbox {
    /// An empty mailbox, monitoring nothing yet.
    pub fn new() -> Self {
        Mailbox::with_held(None)
    }

    /// An empty mailbox whose unreceived events may hold at most `bound` bytes.
    #[cfg(feature = "lua")]
    pub(crate) fn bounded(bound: usize) -> Self {
        Mailbox::with_held(Some(Arc::new(Held {
            bytes: AtomicUsize::new(0),
            bound,
            overflowed: AtomicBool::new(false),
        })))
    }

    fn with_held(held: Option<Arc<Held>>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Mailbox {
            tx: Address { tx, held },
            rx,
        }
    }

    pub(crate) fn address(&self) -> Address {
        self.tx.clone()
    }

    /// `sent`'s event, received: its bytes no longer count against the bound.
    fn received(&self, sent: Sent) -> Event {
        if let Some(held) = &self.tx.held {
            held.bytes.fetch_sub(sent.bytes, Ordering::Relaxed);
        }
        sent.event
    }

    /// The next event, or `None` when `timeout` passes first. Needs a tokio runtime with time.
    pub async fn receive(&mut self, timeout: Duration) -> Option<Event> {
        let event = tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()?;
        Some(self.received(*event))
    }

    /// The next event, however long it takes.
    pub async fn next(&mut self) -> Event {
        // Never closed: the mailbox holds a sender itself.
        match self.rx.recv().await {
            Some(sent) => self.received(*sent),
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
            None => Ok(self.rx.blocking_recv().map(|sent| self.received(*sent))),
            Some(timeout) => Ok(tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?
                .block_on(self.receive(timeout))),
        }
    }

    /// The next event if one is already there.
    pub fn try_receive(&mut self) -> Option<Event> {
        let sent = self.rx.try_recv().ok()?;
        Some(self.received(*sent))
    }
}

#[cfg(all(test, feature = "lua"))]
mod tests {
    use super::*;
    use crate::event::Pid;

    fn cancel(reason: &str) -> Event {
        Event::Cancel {
            from: Some(Pid(1)),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_bounded_mailbox_refuses_what_outgrows_it_and_counts_received_events_out() {
        let one = cancel("x").bytes();
        let mut mailbox = Mailbox::bounded(3 * one);
        let address = mailbox.address();
        for _ in 0..3 {
            address.send(cancel("x"));
        }
        assert!(!address.overflowed());
        // A fourth does not fit: dropped, and said.
        address.send(cancel("x"));
        assert!(address.overflowed());
        let mut received = 0;
        while mailbox.try_receive().is_some() {
            received += 1;
        }
        assert_eq!(received, 3);
        // Received, the three give their room back.
        for _ in 0..3 {
            address.send(cancel("x"));
        }
        assert_eq!(std::iter::from_fn(|| mailbox.try_receive()).count(), 3);
        // Bytes, not events: one large event takes the room of many small ones.
        address.send(cancel(&"y".repeat(3 * one)));
        assert!(mailbox.try_receive().is_none());
    }

    #[test]
    fn an_unbounded_mailbox_takes_everything() {
        let mut mailbox = Mailbox::new();
        let address = mailbox.address();
        address.send(cancel(&"y".repeat(1 << 20)));
        assert!(!address.overflowed());
        assert!(mailbox.try_receive().is_some());
    }
}
