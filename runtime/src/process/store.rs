//! A WebAssembly process's store: Init (a fresh store and instance, metered and limited),
//! Step (the export's call, its result converted), Close (the store handed to `release` with
//! its pool slot), and what a failure inside it means (a trap, a limit, an exit code).

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::Val;
use wasmtime::Store;

use super::{release, Usage};
use crate::engine::SLICE_TICKS;
use crate::error::ErrorKind;
use crate::event::ExitError;
use crate::limits::{Limits, MemoryLimiter};
use crate::loader::{Program, Target};
use crate::store_data::{ComponentData, Limited, ModuleData, SpawnContext};
use crate::value::{Signature, TooLarge};
use crate::write_quota::WriteQuota;

pub(super) async fn init_step_close(
    program: &Program,
    params: &[Val],
    state: SpawnContext,
    limits: &Limits,
    usage: &mut Usage,
    slot: Option<OwnedSemaphorePermit>,
) -> Result<Value, ExitError> {
    // Init: a fresh store and instance; the arguments and WASI context were captured at
    // spawn. Close: the store (instance, memories, tables) goes to `release` with the pool
    // `slot` it holds at the end of each arm (or is dropped with it on an early error).
    let fuel = starting_fuel(program.counts_fuel, limits);
    let limiter = MemoryLimiter::new(limits.max_memory);
    usage.memory = Some(limiter.usage.clone());
    let written = WriteQuota::of(limits.max_written);
    usage.written = written.clone();
    let result = match (state, &program.target) {
        (SpawnContext::Component { wasi }, Target::Component { pre, export }) => {
            let mut store = new_store(
                pre.engine(),
                ComponentData::new(
                    wasi,
                    limiter,
                    written,
                    program.http_policy.clone(),
                    program.name_lookup,
                ),
            );
            meter(&mut store, fuel)?;
            store.set_hostcall_fuel(program.lift_fuel);
            store.set_max_component_handles(crate::limits::MAX_HANDLES);
            let result = call(pre, *export, program, params, &mut store).await;
            usage.fuel_used = fuel_used(&store, fuel);
            release::later(release::Store::Component(store), slot);
            result
        }
        (SpawnContext::Module { p1 }, Target::Module { pre, func }) => {
            let mut store = new_store(
                pre.module().engine(),
                ModuleData {
                    p1,
                    limiter,
                    written,
                },
            );
            meter(&mut store, fuel)?;
            store.set_hostcall_fuel(program.lift_fuel);
            // Boxed: inline, this arm's state would double the size of every process's
            // future, components' included.
            let result = Box::pin(call_module(pre, func, params, &mut store)).await;
            usage.fuel_used = fuel_used(&store, fuel);
            release::later(release::Store::Module(store), slot);
            result
        }
        _ => Err(wasmtime::Error::msg(
            "the process's context does not match its binary's kind",
        )),
    };
    result.map_err(|e| guest_error(e, limits))
}

/// A store for `state`, its memory limited by the state's limiter. The state is passed
/// straight in, never bound to a local of the async run: such a local stays in the process's
/// future (which tokio copies when it spawns and ends a task) after it moved out.
pub(crate) fn new_store<T: Limited>(engine: &wasmtime::Engine, state: T) -> Store<T> {
    let mut store = Store::new(engine, state);
    // A closure that captures nothing: wasmtime boxes it without allocating.
    store.limiter(|state| -> &mut dyn wasmtime::ResourceLimiter { state.limiter() });
    store
}

/// The fuel a store starts with where its engine `counts` fuel: its `limits.fuel`, or all
/// there is; `None` where fuel is not counted.
pub(crate) fn starting_fuel(counts: bool, limits: &Limits) -> Option<u64> {
    counts.then(|| limits.fuel.unwrap_or(u64::MAX))
}

/// The store's [`starting_fuel`], and the epoch deadline that makes the guest yield every
/// slice.
pub(crate) fn meter<T>(store: &mut Store<T>, fuel: Option<u64>) -> Result<(), ExitError> {
    if let Some(fuel) = fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| ExitError::new(ErrorKind::HostFailure, format!("cannot set fuel: {e}")))?;
    }
    store.set_epoch_deadline(SLICE_TICKS);
    store.epoch_deadline_callback(crate::preemption::end_of_slice);
    Ok(())
}

/// What a store that started with `fuel` used of it (unknown where fuel is not counted).
fn fuel_used<T>(store: &Store<T>, fuel: Option<u64>) -> Option<u64> {
    let left = store.get_fuel().ok()?;
    fuel.map(|fuel| fuel - left)
}

async fn call(
    pre: &wasmtime::component::InstancePre<ComponentData>,
    export: wasmtime::component::ComponentExportIndex,
    program: &Program,
    params: &[Val],
    store: &mut Store<ComponentData>,
) -> wasmtime::Result<Value> {
    // Not boxed, although instantiation's future is most of a process's task (1.2 of 1.9 KiB)
    // and tokio copies the task when it spawns it: a box of that size is past glibc's thread
    // cache, and allocating it cost a spawn more than the copy (measured: 1% of a spawn's CPU).
    let instance = pre.instantiate_async(&mut *store).await?;
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(vanished)?;
    // Step: a component function has at most one result (no allocation for it).
    let mut one = [Val::Bool(false)];
    let mut many;
    let results: &mut [Val] = match program.signature.results.len() {
        n @ (0 | 1) => &mut one[..n],
        n => {
            many = vec![Val::Bool(false); n];
            &mut many
        }
    };
    match func.call_async(&mut *store, params, results).await {
        Ok(()) => {
            Signature::result_value_within(results, program.max_value).map_err(wasmtime::Error::new)
        }
        Err(e) => exited_or_failed(e),
    }
}

/// A core module's export, with the arguments converted to its core types (the loader checked
/// they are i32, i64, f32 or f64).
async fn call_module(
    pre: &wasmtime::InstancePre<ModuleData>,
    func: &str,
    params: &[Val],
    store: &mut Store<ModuleData>,
) -> wasmtime::Result<Value> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let func = instance.get_func(&mut *store, func).ok_or_else(vanished)?;
    let core: Vec<wasmtime::Val> = params
        .iter()
        .map(|v| match v {
            Val::S64(n) => wasmtime::Val::I64(*n),
            Val::Float32(f) => wasmtime::Val::F32(f.to_bits()),
            Val::Float64(f) => wasmtime::Val::F64(f.to_bits()),
            Val::S32(n) => wasmtime::Val::I32(*n),
            _ => wasmtime::Val::I32(0),
        })
        .collect();
    let mut results = vec![wasmtime::Val::I32(0); func.ty(&*store).results().len()];
    match func.call_async(&mut *store, &core, &mut results).await {
        Ok(()) => {
            let values: Vec<Val> = results
                .iter()
                .map(|v| match v {
                    wasmtime::Val::I64(n) => Val::S64(*n),
                    wasmtime::Val::F32(bits) => Val::Float32(f32::from_bits(*bits)),
                    wasmtime::Val::F64(bits) => Val::Float64(f64::from_bits(*bits)),
                    wasmtime::Val::I32(n) => Val::S32(*n),
                    _ => Val::Bool(false),
                })
                .collect();
            Ok(Signature::result_value(&values))
        }
        Err(e) => exited_or_failed(e),
    }
}

fn vanished() -> wasmtime::Error {
    wasmtime::Error::msg("the checked export vanished from the instance")
}

/// `exit(0)` is a successful end without a value; anything else is the guest's error.
fn exited_or_failed(e: wasmtime::Error) -> wasmtime::Result<Value> {
    match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(code) if code.0 == 0 => Ok(Value::Null),
        _ => Err(e),
    }
}

/// How a failed instantiation or call ends the process: an exit code, the fuel limit, a trap,
/// or (anything else) a host failure.
pub(crate) fn guest_error(error: wasmtime::Error, limits: &Limits) -> ExitError {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return ExitError {
            kind: ErrorKind::ExitCode,
            message: format!("the guest exited with code {}", exit.0),
            code: Some(exit.0),
        };
    }
    // Cause first ("wasm trap: wasm `unreachable` instruction executed"), then its context
    // (the wasm backtrace), bounded: the backtrace quotes the binary's names.
    let message = crate::bounded_text::error_text(&error);
    if error
        .downcast_ref::<crate::error::GuestBrokeARule>()
        .is_some()
    {
        return ExitError::new(ErrorKind::Trap, message);
    }
    if let Some(too_large) = error.downcast_ref::<TooLarge>() {
        return ExitError::new(ErrorKind::LimitExceeded, too_large.to_string());
    }
    // wasmtime's own bound on what one lift copies from the guest (its type is private):
    // the result, or a host call's arguments, past the fuel `max_value` gave the store.
    if message.contains("fuel allocated for hostcalls has been exhausted") {
        return ExitError::new(
            ErrorKind::LimitExceeded,
            format!(
                "limits.max_value ({} bytes) exceeded: the guest passed the host more than it allows in one go (its result, or a host call's arguments): {message}",
                limits.max_value()
            ),
        );
    }
    if error
        .downcast_ref::<crate::network::http_parts::TooManyHttpParts>()
        .is_some()
    {
        return ExitError::new(ErrorKind::LimitExceeded, message);
    }
    // The store limiter's counts (`limits::MEMORIES_PER_PROCESS`...), as wasmtime words them
    // ("resource limit exceeded: memory count too high at 3").
    if message.contains("resource limit exceeded:") && message.contains("count too high") {
        return ExitError::new(
            ErrorKind::LimitExceeded,
            crate::limits::per_process_share(&message),
        );
    }
    // wasmtime's bound on live handles, set from `MAX_HANDLES` (its error type is private).
    if message.contains("store handle limit exceeded") {
        return ExitError::new(
            ErrorKind::LimitExceeded,
            format!(
                "a process holds at most {} live handles (resources, streams, futures, subtasks): {message}",
                crate::limits::MAX_HANDLES
            ),
        );
    }
    match (error.downcast_ref::<wasmtime::Trap>(), limits.fuel) {
        (Some(wasmtime::Trap::OutOfFuel), Some(fuel)) => ExitError::new(
            ErrorKind::LimitExceeded,
            format!("fuel ({fuel}) exhausted: {message}"),
        ),
        (Some(_), _) => ExitError::new(ErrorKind::Trap, message),
        (None, _) => ExitError::new(ErrorKind::HostFailure, message),
    }
}
