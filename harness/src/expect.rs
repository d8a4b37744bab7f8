//! An expectation checks only the fields it gives: an error matches by kind and by every
//! `contains` text, an EXIT by sender, output, step count and value or error. A mismatch says
//! what was expected and what came.

use std::collections::HashMap;

use wasmproc_runtime::{ErrorKind, Exit, Pid};

use crate::failure::StepError;
use crate::scenario::{ErrorExpectation, EventExpectation};

/// An error of `kind` with `message` matches when the kind is equal and every `contains` string
/// is in the message.
pub fn check_error(
    expected: &ErrorExpectation,
    kind: ErrorKind,
    message: &str,
) -> Result<(), StepError> {
    if kind != expected.kind {
        return Err(StepError::WrongKind {
            expected: expected.kind,
            got: kind,
            message: message.to_string(),
        });
    }
    for needle in &expected.contains.0 {
        if !message.contains(needle.as_str()) {
            return Err(StepError::WithoutText {
                kind,
                text: needle.clone(),
                message: message.to_string(),
            });
        }
    }
    Ok(())
}

pub fn check_event(
    expected: &EventExpectation,
    exit: &Exit,
    pids: &HashMap<String, Pid>,
) -> Result<(), StepError> {
    if let Some(alias) = &expected.from {
        // Aliases are checked to exist when the scenario loads.
        if pids.get(alias) != Some(&exit.from) {
            return Err(StepError::mismatch(
                format!("an EXIT from `{alias}`"),
                show(exit),
            ));
        }
    }
    let output = exit.output.clone().unwrap_or_default();
    for (stream, want, got) in [
        ("stdout", &expected.stdout, &output.stdout),
        ("stderr", &expected.stderr, &output.stderr),
    ] {
        if let Some(want) = want {
            if want != got {
                return Err(
                    StepError::mismatch(format!("{stream} {want:?}"), format!("{got:?}"))
                        .seen("event", show(exit)),
                );
            }
        }
    }
    let steps = exit.accounting.steps;
    if expected.steps.is_some_and(|want| want != steps)
        || expected.min_steps.is_some_and(|min| steps < min)
    {
        let want = expected.steps.map_or_else(
            || format!("at least {}", expected.min_steps.unwrap_or(0)),
            |n| n.to_string(),
        );
        return Err(
            StepError::mismatch(format!("{want} steps"), steps.to_string())
                .seen("event", show(exit)),
        );
    }
    match (&exit.outcome, &expected.value, &expected.error) {
        (Ok(value), Some(want), _) if value != want => Err(StepError::mismatch(
            format!("value {want}"),
            value.to_string(),
        )
        .seen("event", show(exit))),
        (Err(error), Some(want), _) => Err(StepError::mismatch(
            format!("value {want}"),
            error.kinded().to_string(),
        )),
        (Err(error), None, Some(want)) => check_error(want, error.kind, &error.message),
        (Ok(value), None, Some(want)) => Err(StepError::mismatch(
            format!("an error of kind `{}`", want.kind),
            format!("value {value}"),
        )),
        _ => Ok(()),
    }
}

/// An EXIT as JSON, the shape the CLI prints, so a failure shows what a user would see.
pub fn show(exit: &Exit) -> String {
    serde_json::to_string(exit).unwrap_or_else(|e| format!("<unprintable EXIT: {e}>"))
}
