//! An error is shown with its kind first, `error[hash_mismatch]: ...`, as the CLI and Lua show
//! it: the kind is the stable name a scenario's `expect_error` matches, the message only adds
//! context.

use std::fmt;

use wasmproc_runtime::ErrorKind;

/// `error[kind]: message`.
pub struct Kinded<'a> {
    kind: ErrorKind,
    message: &'a dyn fmt::Display,
}

impl<'a> Kinded<'a> {
    pub fn new(kind: ErrorKind, message: &'a dyn fmt::Display) -> Self {
        Kinded { kind, message }
    }
}

impl<'a> From<&'a wasmproc_runtime::Error> for Kinded<'a> {
    fn from(error: &'a wasmproc_runtime::Error) -> Self {
        Kinded::new(error.kind(), error)
    }
}

impl fmt::Display for Kinded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]: {}", self.kind, self.message)
    }
}
