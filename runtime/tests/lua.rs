//! Lua scripts as processes, where a scenario cannot look: links from a failing script to a
//! WebAssembly process, and monitoring a script from Rust.
#![cfg(feature = "lua")]

mod common;

use std::path::Path;
use std::sync::Arc;

use wasmproc_runtime::{ErrorKind, Exit, Mailbox, Runtime, SpawnOptions};

fn runtime() -> Arc<Runtime> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/apps/host.yaml");
    Arc::new(Runtime::load(&manifest).expect("the manifest loads"))
}

/// Spawns `source` as a script named `name` on the one-worker host, monitored by `mailbox`.
fn spawn_script(
    runtime: &Arc<Runtime>,
    source: &str,
    name: &str,
    args: &[serde_json::Value],
    mailbox: &Mailbox,
) -> wasmproc_runtime::Pid {
    runtime
        .spawn_lua(
            source,
            name,
            "host:one_worker",
            args,
            &SpawnOptions::default(),
            Some(mailbox),
        )
        .unwrap()
}

fn receive(mailbox: &mut Mailbox) -> Exit {
    common::receive(mailbox).expect("an EXIT within 10 s")
}

#[test]
fn a_failing_script_takes_the_guests_linked_to_it_down() {
    let runtime = runtime();
    let mut mailbox = Mailbox::new();
    let sleeper = runtime
        .spawn_monitored(
            "host:sleeper",
            "host:one_worker",
            &[60_000.into()],
            &mailbox,
        )
        .unwrap();
    let script = spawn_script(
        &runtime,
        "local sleeper = ...\nassert(process.link(sleeper))\nerror('boom')",
        "linker.lua",
        &[sleeper.to_string().into()],
        &mailbox,
    );
    let mut exits = [receive(&mut mailbox), receive(&mut mailbox)];
    exits.sort_by_key(|e| e.from);
    let [slept, scripted] = exits;
    assert_eq!(slept.from, sleeper);
    assert_eq!(scripted.from, script);
    let error = scripted.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ScriptError);
    assert!(error.message.contains("linker.lua:3: boom"), "{error}");
    let error = slept.outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::LinkDown);
    assert!(
        error
            .message
            .contains(&format!("linked process {script} failed"))
            && error.message.contains("boom"),
        "{error}"
    );
}

#[test]
fn a_script_that_ends_well_leaves_its_linked_guests_running() {
    let runtime = runtime();
    let mut mailbox = Mailbox::new();
    let sleeper = runtime
        .spawn_monitored("host:sleeper", "host:one_worker", &[200.into()], &mailbox)
        .unwrap();
    let script = spawn_script(
        &runtime,
        "assert(process.link(...))\nreturn 'done'",
        "ok.lua",
        &[sleeper.to_string().into()],
        &mailbox,
    );
    let first = receive(&mut mailbox);
    assert_eq!((first.from, first.outcome), (script, Ok("done".into())));
    let second = receive(&mut mailbox);
    assert_eq!((second.from, second.outcome), (sleeper, Ok(200.into())));
}

#[test]
fn a_cancel_sent_by_a_script_names_the_script() {
    let runtime = runtime();
    let mut mailbox = Mailbox::new();
    let listen = "local e = process.receive('10s')\n\
                  return { kind = e.kind, from = tostring(e.from), reason = e.reason }";
    let listener = spawn_script(&runtime, listen, "listener.lua", &[], &mailbox);
    let canceller = spawn_script(
        &runtime,
        "assert(process.cancel(..., 'enough'))",
        "canceller.lua",
        &[listener.to_string().into()],
        &mailbox,
    );
    let mut exits = [receive(&mut mailbox), receive(&mut mailbox)];
    exits.sort_by_key(|e| e.from);
    assert_eq!(exits[1].outcome, Ok(serde_json::Value::Null));
    assert_eq!(
        exits[0].outcome,
        Ok(serde_json::json!({
            "kind": "pid.cancel",
            "from": canceller.to_string(),
            "reason": "enough",
        }))
    );
}

#[test]
fn require_never_reads_a_host_file_whatever_package_path_says() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.lua"), "return 'leaked'").unwrap();
    std::fs::write(dir.path().join("secret.env"), "return 'leaked'").unwrap();
    let runtime = runtime();
    let mut mailbox = Mailbox::new();
    let source = format!(
        "package.path = {dir:?} .. '/?.lua;' .. {dir:?} .. '/?.env'\n\
         package.cpath = {dir:?} .. '/?.so'\n\
         return require('secret')",
        dir = dir.path().display().to_string()
    );
    spawn_script(&runtime, &source, "reader.lua", &[], &mailbox);
    let error = receive(&mut mailbox).outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::ScriptError);
    assert!(
        error.message.contains("module 'secret' not found") && !error.message.contains("leaked"),
        "{error}"
    );
}

#[test]
fn a_binary_chunk_is_refused_as_a_script() {
    // A compiled chunk's header (what luac writes): Lua does not verify bytecode, and a
    // corrupted chunk crashed the host.
    let source = "\x1bLuaT\x00\x19\u{93}\r\n\x1a\n\x04\x08\x08xV\x00\x00";
    let runtime = runtime();
    let err = runtime
        .spawn_lua(
            source,
            "compiled.luac",
            "host:one_worker",
            &[],
            &SpawnOptions::default(),
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("binary chunk"), "{err}");
}
