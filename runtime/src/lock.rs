//! Locks that a panic does not spoil: every update under them leaves what they guard
//! consistent (entries inserted or removed whole), so a lock held by a thread that panicked is
//! still usable, and the host goes on.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
