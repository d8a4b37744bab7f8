//! Helpers shared by the runtime's integration tests.

use std::time::Duration;

use wasmproc_runtime::{Event, Exit, Mailbox};

/// The next EXIT in `mailbox`, waiting up to 10 s.
pub fn receive(mailbox: &mut Mailbox) -> Option<Exit> {
    let clock = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    clock
        .block_on(mailbox.receive(Duration::from_secs(10)))
        .and_then(Event::into_exit)
}
