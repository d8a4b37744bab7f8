//! `wasmproc validate`: what a third-party binary is and whether an entry can run it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;
use wasmproc_runtime::manifest::{EntryKind, EntrySpec, Family, Manifest};
use wasmproc_runtime::Grants;
use wasmproc_runtime::{inspect, BinaryKind, Inspection};
use wasmproc_runtime::{EntryId, Loader};

use crate::manifest_path;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The binary: a component (or a core module, reported as such).
    file: PathBuf,
    /// Also check the binary against this `process.wasm` entry: hash, grants, method.
    #[arg(long, value_name = "NS:NAME")]
    entry: Option<String>,
    /// The manifest holding --entry (default: wasmproc.yaml here or in a parent).
    #[arg(long, short)]
    manifest: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// With --entry: arguments to check against the method's parameters (each read as a YAML
    /// value, as `spawn` reads them).
    #[arg(long = "arg", value_name = "VALUE", requires = "entry")]
    args: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    file: PathBuf,
    #[serde(flatten)]
    inspection: Inspection,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<EntryCheck>,
    valid: bool,
}

#[derive(Serialize)]
struct EntryCheck {
    id: String,
    method: String,
    /// The method's WIT signature, when the binary exports it.
    signature: Option<String>,
    /// Where it may connect, for an entry granting wasi:http or wasi:sockets.
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<NetworkCheck>,
}

#[derive(Serialize)]
struct NetworkCheck {
    /// Whether the entry writes `network.allow` (else the default, public destinations only).
    declared: bool,
    allow: Vec<String>,
    listen: Vec<String>,
}

pub fn validate(args: ValidateArgs) -> ExitCode {
    let bytes = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!(
                "wasmproc: error[binary_unreadable]: {}: {e}",
                args.file.display()
            );
            return ExitCode::from(2);
        }
    };
    // No pool: one binary, inspected once.
    let loader = match wasmproc_runtime::engine::loader_with(wasmproc_runtime::engine::Pool {
        processes: 0,
        ..Default::default()
    }) {
        Ok(loader) => Arc::new(loader),
        Err(e) => return crate::refused(e.kinded()),
    };
    let mut inspection = inspect(loader.engine(), &bytes);
    let entry = match &args.entry {
        None => None,
        Some(id) => match check_entry(&args, id, &loader, &mut inspection) {
            Ok(check) => Some(check),
            Err(message) => {
                eprintln!("wasmproc: {message}");
                return ExitCode::from(2);
            }
        },
    };
    let report = Report {
        file: args.file.clone(),
        valid: inspection.problems.is_empty(),
        inspection,
        entry,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("wasmproc: cannot print the report: {e}"),
        }
    } else {
        print_human(&report);
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Adds the entry's problems (hash, grants, method) to the inspection.
fn check_entry(
    args: &ValidateArgs,
    id: &str,
    loader: &Arc<Loader>,
    inspection: &mut Inspection,
) -> Result<EntryCheck, String> {
    let path = manifest_path::resolve_here(args.manifest.as_deref())?;
    let manifest = Manifest::load(&path).map_err(|e| e.kinded().to_string())?;
    let entry_id = EntryId::parse(id).map_err(|e| format!("error[unknown_entry]: {e}"))?;
    let wasm = match manifest.get(&entry_id).map(|e| &e.spec) {
        Some(EntrySpec::Wasm(wasm)) => wasm,
        Some(other) => {
            return Err(format!(
                "error[wrong_entry_kind]: `{id}` is a `{}`, not a `{}`",
                other.kind(),
                EntryKind::Wasm
            ))
        }
        None => {
            return Err(format!(
                "error[unknown_entry]: no entry `{id}` in {}",
                path.display()
            ))
        }
    };
    let problems = &mut inspection.problems;
    if wasm.hash.to_string() != inspection.hash {
        problems.push(format!(
            "hash mismatch: the entry expects {}, the file is {}",
            wasm.hash, inspection.hash
        ));
    }
    let grants = Grants::new(&wasm.imports);
    let ungranted: Vec<&String> = inspection
        .imports
        .values()
        .flatten()
        .filter(|import| !grants.allows(import))
        .collect();
    if !ungranted.is_empty() {
        problems.push(format!(
            "imports the entry does not grant: {} (grant: [{}])",
            ungranted
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            inspection.grants.join(", ")
        ));
    }
    // What a spawn would call: for a core module, `main` may mean its `_start`.
    let method = match inspection.kind {
        BinaryKind::CoreModule => wasm
            .method
            .core_export(|name| inspection.exports.contains_key(name)),
        _ => wasm.method.to_string(),
    };
    let signature = inspection.exports.get(&method).cloned();
    if signature.is_some() && !args.args.is_empty() {
        check_args(&manifest, &entry_id, &args.args, loader, problems);
    }
    if signature.is_none() {
        problems.push(format!(
            "method `{method}` is not exported (exports: {})",
            inspection
                .exports
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let network = [Family::Http, Family::Sockets]
        .into_iter()
        .any(|f| grants.has(f))
        .then(|| NetworkCheck {
            declared: wasm.network.is_declared(),
            allow: wasm.network.rules().map(str::to_string).collect(),
            listen: wasm.network.listen_rules().map(str::to_string).collect(),
        });
    Ok(EntryCheck {
        id: id.to_string(),
        method,
        signature,
        network,
    })
}

/// Converts `--arg` values to the method's parameters, as a spawn would.
fn check_args(
    manifest: &Manifest,
    entry: &EntryId,
    args: &[String],
    loader: &Arc<Loader>,
    problems: &mut Vec<String>,
) {
    let runtime = wasmproc_runtime::Runtime::new(manifest.clone(), loader.clone());
    let values: Vec<_> = args.iter().map(|a| crate::args::parse(a)).collect();
    match runtime.program(entry) {
        Ok(program) => {
            if let Err(e) = program.signature.args_to_vals(&values) {
                problems.push(format!("arguments do not fit: {e}"));
            }
        }
        Err(e) => problems.push(format!("cannot load the entry's binary: {e}")),
    }
}

fn print_human(report: &Report) {
    let i = &report.inspection;
    println!("file:    {}", report.file.display());
    println!(
        "kind:    {}",
        serde_json::to_value(i.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    );
    println!("size:    {} bytes", i.size);
    println!("hash:    {}", i.hash);
    println!("exports:");
    for (name, signature) in &i.exports {
        println!("  {name}: {signature}");
    }
    if i.exports.is_empty() {
        println!("  (none)");
    }
    println!("imports:");
    for (family, names) in &i.imports {
        println!("  {family}: {}", names.join(", "));
    }
    if i.imports.is_empty() {
        println!("  (none)");
    }
    println!("grants:  imports: [{}]", i.grants.join(", "));
    if let Some(entry) = &report.entry {
        println!(
            "entry:   {} method `{}`{}",
            entry.id,
            entry.method,
            entry
                .signature
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        );
        if let Some(network) = &entry.network {
            if network.declared {
                println!("network: allow [{}]", network.allow.join(", "));
            } else {
                println!(
                    "network: default (no network.allow): public destinations only; loopback, \
                     private, link-local, CGNAT and unspecified addresses refused"
                );
            }
            if !network.listen.is_empty() {
                println!("         listen [{}]", network.listen.join(", "));
            }
        }
    }
    if i.problems.is_empty() {
        println!("valid:   yes");
    } else {
        println!("valid:   no");
        for problem in &i.problems {
            println!("  - {problem}");
        }
    }
}
