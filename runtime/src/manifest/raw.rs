//! The manifest's YAML shapes, as serde reads them. Fields an entry needs are `Option`s here:
//! [`super::parse`] checks them, so that the messages are Wippy's (`fs is required`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    /// Wippy manifests carry a format version; it is accepted and not interpreted.
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) version: Option<Value>,
    pub(super) namespace: String,
    #[serde(default)]
    pub(super) entries: Vec<Mapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub(super) directory: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) meta: Option<RawMeta>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWasm {
    pub(super) fs: Option<String>,
    pub(super) path: Option<String>,
    pub(super) hash: Option<String>,
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) imports: Vec<String>,
    #[serde(default)]
    pub(super) wasi: Option<RawWasi>,
    #[serde(default)]
    pub(super) limits: Option<RawLimits>,
    #[serde(default)]
    pub(super) network: Option<RawNetwork>,
    #[serde(default)]
    pub(super) meta: Option<RawMeta>,
}

/// `network: { allow: [rules], listen: [rules] }` (see [`crate::network::policy`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    pub(super) allow: Option<Vec<String>>,
    #[serde(default)]
    pub(super) listen: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default)]
    pub(super) max_execution_ms: Option<u64>,
    /// Bytes, as a number or with a unit (`64MiB`).
    #[serde(default)]
    pub(super) max_memory: Option<Value>,
    #[serde(default)]
    pub(super) fuel: Option<u64>,
    /// Bytes, as `max_memory`.
    #[serde(default)]
    pub(super) max_value: Option<Value>,
    /// Bytes, as `max_memory`.
    #[serde(default)]
    pub(super) max_written: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWasi {
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) cwd: Option<String>,
    #[serde(default)]
    pub(super) env: Vec<RawEnvBinding>,
    #[serde(default)]
    pub(super) mounts: Vec<RawMount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvBinding {
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    pub(super) fs: Option<String>,
    pub(super) guest: Option<String>,
    #[serde(default)]
    pub(super) read_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvVariable {
    pub(super) variable: Option<String>,
    #[serde(default)]
    pub(super) storage: Option<String>,
    #[serde(default)]
    pub(super) default: Option<String>,
    #[serde(default)]
    pub(super) readonly: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) meta: Option<RawMeta>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvStorage {
    #[serde(default)]
    pub(super) values: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) meta: Option<RawMeta>,
}

/// Kinds with nothing to configure.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlain {
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) meta: Option<RawMeta>,
}

/// `meta` is free-form in Wippy; only `command` means something to wasmproc.
#[derive(Deserialize)]
pub(super) struct RawMeta {
    #[serde(default)]
    pub(super) command: Option<RawCommand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    pub(super) name: Option<String>,
    pub(super) short: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    #[serde(default)]
    pub(super) host: Option<RawHostConfig>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) meta: Option<RawMeta>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHostConfig {
    pub(super) workers: Option<usize>,
    pub(super) queue_size: Option<usize>,
    #[serde(default)]
    pub(super) pool: Option<RawHostPool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHostPool {
    pub(super) processes: Option<u32>,
    pub(super) memory: Option<Value>,
    pub(super) keep_resident: Option<Value>,
}

/// `http.endpoint`: `handler: ns:name`, `addr: host:port`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpEndpoint {
    pub(super) handler: Option<String>,
    #[serde(default)]
    pub(super) addr: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) meta: Option<RawMeta>,
}
