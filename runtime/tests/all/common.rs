//! Helpers shared by the runtime's integration tests.

use std::time::Duration;

use wasmproc_runtime::{Event, Exit, Mailbox};

/// The next EXIT in `mailbox`, waiting up to 10 s.
pub fn receive(mailbox: &mut Mailbox) -> Option<Exit> {
    mailbox
        .receive_blocking(Some(Duration::from_secs(10)))
        .unwrap()
        .and_then(Event::into_exit)
}

/// The committed guest binaries (`guests/dist`).
pub fn dist() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/dist")
}
