//! The one wasmtime configuration every process runs under.

use wasmtime::{Config, Engine};

use crate::error::Error;
use crate::loader::Loader;

/// An engine for asynchronous component execution.
pub fn new() -> Result<Engine, Error> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    Engine::new(&config).map_err(|e| Error::EngineStart {
        reason: format!("{e:#}"),
    })
}

/// A loader (compile cache) over a fresh engine.
pub fn loader() -> Result<Loader, Error> {
    Ok(Loader::new(new()?))
}
