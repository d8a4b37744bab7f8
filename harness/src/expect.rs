//! Comparing what came with what a scenario expects, and saying how they differ.

use std::collections::HashMap;

use wasmproc_runtime::{ErrorKind, Exit, Pid};

use crate::kinded::Kinded;
use crate::run::show;
use crate::scenario::{ErrorExpectation, EventExpectation};

/// An error of `kind` with `message` matches when the kind is equal and every `contains` string
/// is in the message.
pub fn check_error(
    expected: &ErrorExpectation,
    kind: ErrorKind,
    message: &str,
) -> Result<(), String> {
    if kind != expected.kind {
        return Err(format!(
            "expected an error of kind `{}`, got `{kind}`: {message}",
            expected.kind
        ));
    }
    for needle in &expected.contains.0 {
        if !message.contains(needle.as_str()) {
            return Err(format!(
                "expected the `{kind}` message to contain {needle:?}, got: {message}"
            ));
        }
    }
    Ok(())
}

pub fn check_event(
    expected: &EventExpectation,
    exit: &Exit,
    pids: &HashMap<String, Pid>,
) -> Result<(), String> {
    if let Some(alias) = &expected.from {
        // Aliases are checked to exist when the scenario loads.
        if pids.get(alias) != Some(&exit.from) {
            return Err(format!(
                "expected an EXIT from `{alias}`, got {}",
                show(exit)
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
                return Err(format!(
                    "expected {stream} {want:?}, got {got:?}\n  event: {}",
                    show(exit)
                ));
            }
        }
    }
    let steps = exit.accounting.steps;
    if expected.steps.is_some_and(|want| want != steps)
        || expected.min_steps.is_some_and(|min| steps < min)
    {
        return Err(format!(
            "expected {} steps, got {steps}\n  event: {}",
            expected.steps.map_or_else(
                || format!("at least {}", expected.min_steps.unwrap_or(0)),
                |n| n.to_string()
            ),
            show(exit)
        ));
    }
    match (&exit.outcome, &expected.value, &expected.error) {
        (Ok(value), Some(want), _) if value != want => Err(format!(
            "expected value {want}, got {value}\n  event: {}",
            show(exit)
        )),
        (Err(error), Some(want), _) => Err(format!(
            "expected value {want}, got {}",
            Kinded::new(error.kind, &error.message)
        )),
        (Err(error), None, Some(want)) => check_error(want, error.kind, &error.message),
        (Ok(value), None, Some(want)) => Err(format!(
            "expected an error of kind `{}`, got value {value}",
            want.kind
        )),
        _ => Ok(()),
    }
}
