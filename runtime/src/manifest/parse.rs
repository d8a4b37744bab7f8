//! From YAML text to typed entries. Required fields are checked by hand so that the messages
//! are the ones users know from Wippy (`fs is required`), not serde's.

use std::path::{Component, Path, PathBuf};

use serde_norway::{Mapping, Value};

use std::collections::BTreeSet;
use std::time::Duration;

use crate::limits::{parse_size, Limits};

use super::entry::{
    Command, DirectorySpec, Entry, EntryKind, EntrySpec, EnvBinding, EnvStorageSpec,
    EnvVariableSpec, Family, HostPool, HostSpec, HttpEndpointSpec, Method, Mount, Origin, WasiSpec,
    WasmSpec, DEFAULT_HTTP_ADDR,
};
use super::hash::Digest;
use super::location::{yaml_error, EntryLines};
use super::raw::{
    RawDirectory, RawEnvStorage, RawEnvVariable, RawHost, RawHostConfig, RawHostPool,
    RawHttpEndpoint, RawLimits, RawManifest, RawPlain, RawWasi, RawWasm,
};
use super::ManifestError;
use crate::error::ErrorKind;
use crate::id::EntryId;
use crate::network::NetworkPolicy;

const DEFAULT_QUEUE_SIZE: usize = 1024;

pub(super) fn parse_file(text: &str, file: &Path) -> Result<Vec<Entry>, ManifestError> {
    crate::yaml_bounds::check(text).map_err(|e| ManifestError {
        kind: ErrorKind::InvalidManifest,
        file: file.to_path_buf(),
        line: Some(e.line),
        column: Some(e.column),
        entry: None,
        message: e.message,
    })?;
    let raw: RawManifest = serde_norway::from_str(text).map_err(|e| yaml_error(&e, file))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let lines = EntryLines::new(text);
    let mut entries = Vec::with_capacity(raw.entries.len());
    let mut cursor = 0;
    for (index, fields) in raw.entries.into_iter().enumerate() {
        let name = fields
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let line = name.as_deref().and_then(|n| lines.find(n, &mut cursor));
        let origin = Origin {
            file: file.to_path_buf(),
            line,
        };
        let fail = |kind: ErrorKind, entry: Option<String>, message: String| ManifestError {
            kind,
            file: file.to_path_buf(),
            line,
            column: None,
            entry,
            message,
        };
        let Some(name) = name else {
            return Err(fail(
                ErrorKind::InvalidEntry,
                None,
                format!("entries[{index}]: name is required (a string)"),
            ));
        };
        let id = EntryId::parse_in(&name, &raw.namespace).map_err(|e| {
            fail(
                ErrorKind::InvalidEntry,
                None,
                format!("entries[{index}]: {e}"),
            )
        })?;
        if name.contains(':') {
            return Err(fail(
                ErrorKind::InvalidEntry,
                Some(name.clone()),
                "name must not contain `:` (the namespace comes from the file)".into(),
            ));
        }
        let entry_fail =
            |kind: ErrorKind, message: String| fail(kind, Some(id.to_string()), message);
        let spec =
            parse_spec(fields, &id, &raw.namespace, base).map_err(|(k, m)| entry_fail(k, m))?;
        entries.push(Entry { id, origin, spec });
    }
    Ok(entries)
}

type FieldError = (ErrorKind, String);

/// A size in bytes: a whole number, or text with a unit (`64MiB`).
fn size_field(value: Option<Value>, field: &str) -> Result<Option<u64>, FieldError> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            invalid(format!(
                "{field} must be a whole number of bytes or a size, e.g. 64MiB (got {n})"
            ))
        }),
        Some(Value::String(s)) => parse_size(&s)
            .map(Some)
            .map_err(|e| invalid(format!("{field}: {e}"))),
        Some(_) => Err(invalid(format!("{field} must be a size, e.g. 64MiB"))),
    }
}

fn parse_host_pool(raw: RawHostPool) -> Result<HostPool, FieldError> {
    let memory = size_field(raw.memory, "host.pool.memory")?;
    if memory == Some(0) {
        return Err(invalid("host.pool.memory must be greater than 0"));
    }
    Ok(HostPool {
        processes: raw.processes,
        memory,
        keep_resident: size_field(raw.keep_resident, "host.pool.keep_resident")?,
    })
}

fn invalid(message: impl Into<String>) -> FieldError {
    (ErrorKind::InvalidEntry, message.into())
}

fn parse_spec(
    mut fields: Mapping,
    id: &EntryId,
    namespace: &str,
    base: &Path,
) -> Result<EntrySpec, FieldError> {
    fields.remove("name");
    let kind = match fields.remove("kind") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(invalid("kind must be a string")),
        None => return Err(invalid("kind is required")),
    };
    let rest = Value::Mapping(fields);
    let typed = |e: serde_norway::Error| invalid(format!("{kind}: {e}"));
    let Some(known) = EntryKind::parse(&kind) else {
        return Err((
            ErrorKind::UnsupportedEntryKind,
            format!(
                "unsupported kind `{kind}` (supported: {})",
                EntryKind::listed()
            ),
        ));
    };
    match known {
        EntryKind::Directory => {
            let raw: RawDirectory = serde_norway::from_value(rest).map_err(typed)?;
            let directory = required(raw.directory, "directory")?;
            Ok(EntrySpec::Directory(DirectorySpec {
                directory: normalize(&base.join(directory)),
            }))
        }
        EntryKind::Wasm => parse_wasm(
            serde_norway::from_value(rest).map_err(typed)?,
            id,
            namespace,
        ),
        EntryKind::Host => {
            let raw: RawHost = serde_norway::from_value(rest).map_err(typed)?;
            let config = raw.host.unwrap_or(RawHostConfig {
                workers: None,
                queue_size: None,
                pool: None,
            });
            let workers = config.workers.unwrap_or_else(default_workers);
            if workers == 0 {
                return Err(invalid("host.workers must be at least 1"));
            }
            let queue_size = config.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
            if queue_size == 0 {
                return Err(invalid("host.queue_size must be at least 1"));
            }
            let pool = match config.pool {
                Some(raw) => parse_host_pool(raw)?,
                None => HostPool::default(),
            };
            Ok(EntrySpec::Host(HostSpec {
                workers,
                queue_size,
                pool,
            }))
        }
        EntryKind::Terminal => {
            let _: RawPlain = serde_norway::from_value(rest).map_err(typed)?;
            Ok(EntrySpec::Terminal)
        }
        EntryKind::HttpEndpoint => {
            let raw: RawHttpEndpoint = serde_norway::from_value(rest).map_err(typed)?;
            let handler = EntryId::parse_in(&required(raw.handler, "handler")?, namespace)
                .map_err(|e| invalid(format!("handler: {e}")))?;
            let addr = raw.addr.as_deref().unwrap_or(DEFAULT_HTTP_ADDR);
            let addr = addr.parse().map_err(|_| {
                invalid(format!(
                    "addr must be an IP address and port, e.g. {DEFAULT_HTTP_ADDR} (got `{addr}`)"
                ))
            })?;
            Ok(EntrySpec::HttpEndpoint(HttpEndpointSpec { handler, addr }))
        }
        EntryKind::EnvVariable => {
            let raw: RawEnvVariable = serde_norway::from_value(rest).map_err(typed)?;
            let storage = match raw.storage {
                Some(s) => Some(
                    EntryId::parse_in(&s, namespace)
                        .map_err(|e| invalid(format!("storage: {e}")))?,
                ),
                None => None,
            };
            Ok(EntrySpec::EnvVariable(EnvVariableSpec {
                variable: required(raw.variable, "variable")?,
                storage,
                default: raw.default,
                readonly: raw.readonly,
            }))
        }
        EntryKind::EnvStorageOs => {
            let _: RawPlain = serde_norway::from_value(rest).map_err(typed)?;
            Ok(EntrySpec::EnvStorage(EnvStorageSpec::Os))
        }
        EntryKind::EnvStorageStatic | EntryKind::EnvStorageMemory => {
            let raw: RawEnvStorage = serde_norway::from_value(rest).map_err(typed)?;
            let values = raw.values.unwrap_or_default();
            Ok(EntrySpec::EnvStorage(
                if known == EntryKind::EnvStorageStatic {
                    EnvStorageSpec::Static(values)
                } else {
                    EnvStorageSpec::Memory(values)
                },
            ))
        }
    }
}

fn parse_wasm(raw: RawWasm, id: &EntryId, namespace: &str) -> Result<EntrySpec, FieldError> {
    let fs = required(raw.fs, "fs")?;
    let path = required(raw.path, "path")?;
    let hash = required(raw.hash, "hash")?;
    let method = raw.method.ok_or_else(|| invalid("method is required"))?;
    let fs = EntryId::parse_in(&fs, namespace).map_err(|e| invalid(format!("fs: {e}")))?;
    let path = binary_path(&path)?;
    let hash = Digest::parse(&hash)?;
    let method = Method::parse(&method).map_err(invalid)?;
    let imports = raw
        .imports
        .iter()
        .map(|grant| {
            Family::parse(grant).ok_or_else(|| {
                let known: Vec<_> = Family::ALL.iter().map(|f| f.package()).collect();
                invalid(format!(
                    "imports: unknown interface family `{grant}` (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wasi = match raw.wasi {
        Some(wasi) => parse_wasi(wasi, namespace)?,
        None => WasiSpec::default(),
    };
    let limits = match raw.limits {
        Some(limits) => parse_limits(limits)?,
        None => Limits::default(),
    };
    let network = match raw.network {
        None => NetworkPolicy::default_for(id.clone()),
        Some(network) => {
            NetworkPolicy::parse(id.clone(), network.allow.as_deref(), &network.listen)
                .map_err(invalid)?
        }
    };
    let command = match raw.meta.and_then(|m| m.command) {
        None => None,
        Some(command) => Some(Command {
            name: required(command.name, "meta.command.name")?,
            short: command.short,
        }),
    };
    Ok(EntrySpec::Wasm(std::sync::Arc::new(WasmSpec {
        fs,
        path,
        hash,
        method,
        imports,
        wasi,
        limits,
        command,
        network: std::sync::Arc::new(network),
    })))
}

fn parse_limits(raw: RawLimits) -> Result<Limits, FieldError> {
    let positive = |value: Option<u64>, field: &str| match value {
        Some(0) => Err(invalid(format!("limits.{field} must be greater than 0"))),
        other => Ok(other),
    };
    let max_memory = size_field(raw.max_memory, "limits.max_memory")?;
    let max_value = size_field(raw.max_value, "limits.max_value")?;
    let max_written = size_field(raw.max_written, "limits.max_written")?;
    Ok(Limits {
        max_execution: positive(raw.max_execution_ms, "max_execution_ms")?
            .map(Duration::from_millis),
        max_memory: positive(max_memory, "max_memory")?,
        fuel: positive(raw.fuel, "fuel")?,
        max_value: positive(max_value, "max_value")?,
        max_written: positive(max_written, "max_written")?,
    })
}

fn parse_wasi(raw: RawWasi, namespace: &str) -> Result<WasiSpec, FieldError> {
    if let Some(cwd) = &raw.cwd {
        if !cwd.starts_with('/') {
            return Err(invalid(format!("wasi.cwd must be absolute, got `{cwd}`")));
        }
    }
    let mut names = BTreeSet::new();
    let mut env = Vec::with_capacity(raw.env.len());
    for (i, item) in raw.env.into_iter().enumerate() {
        let id = required(item.id, &format!("wasi.env[{i}].id"))?;
        let name = required(item.name, &format!("wasi.env[{i}].name"))?;
        if name.contains('=') {
            return Err(invalid(format!(
                "wasi.env[{i}].name `{name}` must not contain `=`"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(format!(
                "wasi.env[].name must be unique: `{name}` appears twice"
            )));
        }
        let id = EntryId::parse_in(&id, namespace)
            .map_err(|e| invalid(format!("wasi.env[{i}].id: {e}")))?;
        env.push(EnvBinding {
            id,
            name,
            required: item.required,
        });
    }
    let mut guests = BTreeSet::new();
    let mut mounts = Vec::with_capacity(raw.mounts.len());
    for (i, item) in raw.mounts.into_iter().enumerate() {
        let fs = required(item.fs, &format!("wasi.mounts[{i}].fs"))?;
        let guest = required(item.guest, &format!("wasi.mounts[{i}].guest"))?;
        if !guest.starts_with('/') {
            return Err(invalid(format!(
                "wasi.mounts[].guest must be absolute, got `{guest}`"
            )));
        }
        if guest.split('/').any(|part| part == "..") {
            return Err(invalid(format!(
                "wasi.mounts[{i}].guest `{guest}` must not contain `..`"
            )));
        }
        let normalized = normalize(Path::new(&guest)).to_string_lossy().into_owned();
        if !guests.insert(normalized) {
            return Err(invalid(format!(
                "wasi.mounts[].guest must be unique: `{guest}` appears twice"
            )));
        }
        let fs = EntryId::parse_in(&fs, namespace)
            .map_err(|e| invalid(format!("wasi.mounts[{i}].fs: {e}")))?;
        mounts.push(Mount {
            fs,
            guest,
            read_only: item.read_only,
        });
    }
    Ok(WasiSpec {
        args: raw.args,
        cwd: raw.cwd,
        env,
        mounts,
    })
}

fn required(value: Option<String>, field: &str) -> Result<String, FieldError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(invalid(format!("{field} is required"))),
    }
}

/// `path` is inside the `fs.directory` even when written with a leading `/` (the seed writes
/// `/worker.wasm`); `..` could leave it, so it is refused.
fn binary_path(path: &str) -> Result<PathBuf, FieldError> {
    let mut relative = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(format!(
                    "path `{path}` must stay inside its fs.directory (no `..`)"
                )))
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid("path is required"));
    }
    Ok(relative)
}

/// Removes `.` and `dir/..` pairs without touching the file system, so that messages show
/// `guests/dist/compute.wasm` rather than `conformance/apps/../../guests/dist/compute.wasm`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use crate::manifest::{EntrySpec, HostPool, HostSpec, Manifest};
    use std::path::Path;

    #[test]
    fn a_host_and_an_endpoint_without_fields_take_the_defaults() {
        let text = "namespace: t\nentries:\n\
                    - { name: host, kind: process.host }\n\
                    - { name: bins, kind: fs.directory, directory: . }\n\
                    - { name: app, kind: process.wasm, fs: t:bins, path: a.wasm, method: run,\
                        hash: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" }\n\
                    - { name: web, kind: http.endpoint, handler: t:app }\n";
        let manifest = Manifest::parse(text, Path::new("t.yaml")).unwrap();
        let spec = |name: &str| {
            let id = crate::EntryId::parse(&format!("t:{name}")).unwrap();
            manifest.get(&id).unwrap().spec.clone()
        };
        let EntrySpec::Host(host) = spec("host") else {
            panic!("not a host")
        };
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            host,
            HostSpec {
                workers: cpus,
                queue_size: 1024,
                pool: HostPool::default(),
            }
        );
        let EntrySpec::HttpEndpoint(endpoint) = spec("web") else {
            panic!("not an endpoint")
        };
        assert_eq!(endpoint.addr, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn normalize_folds_parent_components() {
        assert_eq!(
            normalize(Path::new("conformance/apps/../../guests/dist")),
            Path::new("guests/dist")
        );
        assert_eq!(normalize(Path::new("./a/./b")), Path::new("a/b"));
        assert_eq!(normalize(Path::new("../x")), Path::new("../x"));
        assert_eq!(normalize(Path::new("a/..")), Path::new("."));
        assert_eq!(normalize(Path::new("/a/../b")), Path::new("/b"));
    }
}
