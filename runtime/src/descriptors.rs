//! The host's file descriptors, which guests' files and sockets share with the host's own (its
//! listeners and connections, the compiled-code cache, manifests, memory images, wake-ups).
//!
//! The kernel gives a process `RLIMIT_NOFILE` of them. Nothing else bounded what guests took:
//! one preview 1 guest opening a file in a loop held 19,985 of the 20,000 this machine allows
//! (found attacking, 2026-12-07), and meanwhile the host could accept no connection and open
//! no file, and every other guest's opens failed.
//!
//! So a guest may open a file or a socket only while the lowest free descriptor is below the
//! guests' share of the soft limit (3/4). The kernel hands out the lowest free number, so
//! guests' descriptors fill the numbers below the share and the numbers above it stay the
//! host's: a guest's open takes a free number below the share or is refused, and never raises
//! the total past the share or past what the host itself reached. Asking costs two system calls
//! (an `eventfd` and its close) and keeps no count of closes, which happen wherever
//! wasmtime-wasi drops a file or a stream.
//!
//! A process may also hold at most [`MAX_OPEN_FILES`] open files at once, like a POSIX
//! process's default limit, so that one guest cannot take the whole share from the others
//! (`OpenFiles`), and at most [`MAX_SOCKETS`] sockets (those it created or accepted and still
//! holds as sockets: a connection's streams kept after its socket was dropped are bounded by the
//! share and its handles only).

use std::sync::{Arc, Weak};

/// The files (and directories) one process may hold open at once.
pub const MAX_OPEN_FILES: usize = 1024;

/// The sockets one process may hold at once.
pub const MAX_SOCKETS: usize = 1024;

/// Whether a resource table's `entry` is a socket (WASI 0.2's or 0.3's).
pub(crate) fn is_socket(entry: &dyn std::any::Any) -> bool {
    entry.is::<wasmtime_wasi::p2::TcpSocket>()
        || entry.is::<wasmtime_wasi::p2::UdpSocket>()
        || entry.is::<wasmtime_wasi::sockets::TcpSocket>()
        || entry.is::<wasmtime_wasi::sockets::UdpSocket>()
}

/// A component process's open files: what its descriptors and their streams share, held
/// weakly, so that a file counts until its descriptor and every stream reading or writing it
/// are gone (wasmtime-wasi closes it then).
#[derive(Debug, Default)]
pub(crate) struct OpenFiles(Vec<Weak<std::fs::File>>);

impl OpenFiles {
    /// Whether the process may open one more file. Files closed since are forgotten only when
    /// the bound is reached, which keeps each open's cost constant over time.
    pub(crate) fn may_open(&mut self) -> bool {
        if self.0.len() >= MAX_OPEN_FILES {
            self.0.retain(|file| file.strong_count() > 0);
        }
        self.0.len() < MAX_OPEN_FILES
    }

    /// Counts `file`, which the process just opened.
    pub(crate) fn opened(&mut self, file: &Arc<std::fs::File>) {
        self.0.push(Arc::downgrade(file));
    }
}

/// The file a WASI descriptor holds open.
pub(crate) fn file_of(descriptor: &wasmtime_wasi::filesystem::Descriptor) -> &Arc<std::fs::File> {
    match descriptor {
        wasmtime_wasi::filesystem::Descriptor::File(file) => &file.file,
        wasmtime_wasi::filesystem::Descriptor::Dir(dir) => &dir.dir,
    }
}

/// Whether a preview 1 process, whose WASI resources are in `table`, may open one more file:
/// its descriptors are counted there (preview 1 has no streams that outlive them).
pub(crate) fn p1_may_open(table: &mut wasmtime::component::ResourceTable) -> bool {
    crate::store_data::held(table, |entry| {
        entry.is::<wasmtime_wasi::filesystem::Descriptor>()
    }) < MAX_OPEN_FILES
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one, as Go's runtime does at start: the soft
/// limit (1,024 on many systems) is kept low for programs that still use `select`, which
/// wasmproc does not. Returns the soft limit before and after, or `None` when it was left.
pub fn raise_soft_limit() -> Option<(u64, u64)> {
    let mut limit = rlimit()?;
    if limit.rlim_cur >= limit.rlim_max {
        return None;
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `setrlimit` reads the struct it is given, which lives across the call.
    (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0)
        .then_some((before, limit.rlim_max))
}

/// This process's `RLIMIT_NOFILE`.
fn rlimit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the struct it is given, which lives across the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The part of the soft limit guests may use, as a fraction: 3/4.
pub(crate) const GUESTS_SHARE: (u64, u64) = (3, 4);

/// Whether a guest may open one more file or socket now; a refusal is logged (within a budget:
/// guests decide how often they ask).
pub(crate) fn guest_may_open() -> bool {
    let Some(limit) = soft_limit() else {
        return true;
    };
    let share = limit / GUESTS_SHARE.1 * GUESTS_SHARE.0;
    let may = lowest_free().is_some_and(|fd| fd < share);
    if !may {
        crate::log_budget::warn_within!(
            REFUSALS,
            target: "wasmproc::descriptors",
            "guests' opens refused for want of file descriptors",
            "a guest's open was refused: guests hold {share} of the host's {limit} file descriptors (RLIMIT_NOFILE)",
        );
    }
    may
}

static REFUSALS: crate::log_budget::LogBudget = crate::log_budget::LogBudget::new();

/// The soft `RLIMIT_NOFILE`, or `None` when there is none.
fn soft_limit() -> Option<u64> {
    rlimit()
        .map(|limit| limit.rlim_cur)
        .filter(|&soft| soft != libc::RLIM_INFINITY)
}

/// The lowest free descriptor number, or `None` when none is free (or the kernel refused).
fn lowest_free() -> Option<u64> {
    // SAFETY: `eventfd` takes no pointers; the descriptor it returns is ours and closed here.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: as above.
    unsafe { libc::close(fd) };
    Some(fd as u64)
}
