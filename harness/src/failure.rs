//! A failing scenario names its file, the step (index and name), what was expected and what
//! came. Failures stay data until shown; their words are written here once, and tests
//! (`harness/tests/failures.rs`) match them.

use std::fmt;
use std::path::PathBuf;

use wasmproc_runtime::lua::ScriptError;
use wasmproc_runtime::ErrorKind;

use wasmproc_runtime::Kinded;

/// Why a scenario failed.
#[derive(Debug)]
pub enum Failure {
    /// Before any step: the manifest (or its expected error), the directories, the engine, the
    /// HTTP server or the clock.
    Setup { file: PathBuf, message: String },
    /// Step `index` (named `name` in the scenario) failed.
    Step {
        file: PathBuf,
        index: usize,
        name: &'static str,
        error: StepError,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Setup { file, message } => write!(f, "{}: {message}", file.display()),
            Failure::Step {
                file,
                index,
                name,
                error,
            } => write!(f, "{}: steps[{index}] ({name}): {error}", file.display()),
        }
    }
}

/// Why one step failed.
#[derive(Debug)]
pub enum StepError {
    /// The runtime refused a call the scenario expected to succeed; `call` names it where the
    /// step's name alone does not (a spawn's entry, a script).
    Refused {
        call: Option<String>,
        kind: ErrorKind,
        message: String,
    },
    /// The host the step names (or the manifest's only one) cannot be used; its message
    /// alone is shown.
    Host { kind: ErrorKind, message: String },
    /// A `lua:` step's script ended with an error the scenario did not expect.
    ScriptFailed(Box<ScriptError>),
    /// An error came, of another kind than expected.
    WrongKind {
        expected: ErrorKind,
        got: ErrorKind,
        message: String,
    },
    /// An error of the expected kind came without `text` in its message.
    WithoutText {
        kind: ErrorKind,
        text: String,
        message: String,
    },
    /// An error of kind `expected` was expected, but the call went through: `done` says how.
    NotRefused { done: String, expected: ErrorKind },
    /// `expected …, got …`.
    Mismatch { expected: String, got: String },
    /// The step checks the EXIT of `alias`, which has not arrived.
    NotReceived { alias: String },
    /// A rule on what came does not hold; the sentence says which.
    Unmet(String),
    /// A file the step reads or checks could not be; `doing` says what the step wanted of it.
    Io {
        path: String,
        doing: Option<&'static str>,
        error: std::io::Error,
    },
    /// `error` concerns `place` (a file in a directory the scenario bound).
    At {
        place: String,
        error: Box<StepError>,
    },
    /// `error`, then what the scenario has seen (`what`: `event`, `aliases`), to show why.
    Seen {
        error: Box<StepError>,
        what: &'static str,
        seen: String,
    },
}

impl StepError {
    pub fn refused(error: wasmproc_runtime::Error) -> StepError {
        StepError::Refused {
            call: None,
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// Refused, naming the `call` refused.
    pub fn refused_call(call: String, error: wasmproc_runtime::Error) -> StepError {
        StepError::Refused {
            call: Some(call),
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    pub fn host(error: wasmproc_runtime::Error) -> StepError {
        StepError::Host {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    pub fn mismatch(expected: impl Into<String>, got: impl Into<String>) -> StepError {
        StepError::Mismatch {
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub fn at(self, place: String) -> StepError {
        StepError::At {
            place,
            error: Box::new(self),
        }
    }

    pub fn seen(self, what: &'static str, seen: String) -> StepError {
        StepError::Seen {
            error: Box::new(self),
            what,
            seen,
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Refused {
                call: None,
                kind,
                message,
            } => Kinded::new(*kind, message).fmt(f),
            StepError::Refused {
                call: Some(call),
                kind,
                message,
            } => write!(f, "{call} was refused: {}", Kinded::new(*kind, message)),
            StepError::Host { message, .. } => f.write_str(message),
            StepError::ScriptFailed(error) => write!(f, "the script failed: {error}"),
            StepError::WrongKind {
                expected,
                got,
                message,
            } => write!(
                f,
                "expected an error of kind `{expected}`, got `{got}`: {message}"
            ),
            StepError::WithoutText {
                kind,
                text,
                message,
            } => write!(
                f,
                "expected the `{kind}` message to contain {text:?}, got: {message}"
            ),
            StepError::NotRefused { done, expected } => {
                write!(f, "{done}, but an error of kind `{expected}` was expected")
            }
            StepError::Mismatch { expected, got } => write!(f, "expected {expected}, got {got}"),
            StepError::NotReceived { alias } => {
                write!(f, "no EXIT from `{alias}` has been received yet")
            }
            StepError::Unmet(sentence) => f.write_str(sentence),
            StepError::Io {
                path,
                doing: None,
                error,
            } => write!(f, "{path}: {error}"),
            StepError::Io {
                path,
                doing: Some(doing),
                error,
            } => write!(f, "{path}: {doing}: {error}"),
            StepError::At { place, error } => write!(f, "{place}: {error}"),
            StepError::Seen { error, what, seen } => write!(f, "{error}\n  {what}: {seen}"),
        }
    }
}
