//! The one wasmtime configuration every process runs under.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine};

use crate::error::Error;
use crate::loader::Loader;

/// How often the epoch advances: the unit of preemption and of wall-clock checks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A guest runs at most this many ticks (5–10 ms) before it yields to the scheduler: long
/// enough that a short call never yields (a synchronous guest is one Step), short enough that
/// a spinning guest cannot starve the others.
pub const SLICE_TICKS: u64 = 2;

/// An engine for asynchronous component execution with epoch preemption and fuel metering.
pub fn new() -> Result<Engine, Error> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(true);
    Engine::new(&config).map_err(|e| Error::EngineStart {
        reason: format!("{e:#}"),
    })
}

/// A loader (compile cache) over a fresh engine.
pub fn loader() -> Result<Loader, Error> {
    Ok(Loader::new(new()?))
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wasmproc epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .ok()
        };
        if thread.is_none() {
            tracing::error!("cannot start the epoch thread: guests will not be preempted");
        }
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
