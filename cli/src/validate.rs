//! `wasmproc validate`: what a third-party binary is and whether an entry can run it.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use wasmproc_runtime::manifest::{EntryKind, EntrySpec, Family, Manifest};
use wasmproc_runtime::printable::{json_printable, printable};
use wasmproc_runtime::source_file::read_bytes;
use wasmproc_runtime::{inspect, BinaryKind, Inspection};
use wasmproc_runtime::{EntryId, Error, ErrorKind, Kinded, Loader, MAX_BINARY_BYTES};

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
    // Bounded and regular-only, as the loader reads binaries: a FIFO would never end.
    let bytes = match read_bytes(&args.file, MAX_BINARY_BYTES) {
        Ok(bytes) => bytes,
        Err(e) => {
            let unreadable = format!("{}: {e}", args.file.display());
            let kinded = Kinded::new(ErrorKind::BinaryUnreadable, &unreadable);
            eprintln!("wasmproc: {kinded}");
            return ExitCode::from(2);
        }
    };
    // No pool: one binary, inspected once.
    let loader = match wasmproc_runtime::engine::loader_with(wasmproc_runtime::engine::Pool {
        processes: 0,
        ..Default::default()
    }) {
        Ok(loader) => loader,
        Err(e) => return crate::refused(e.kinded()),
    };
    let mut inspection = inspect(&loader, &bytes);
    let entry = match &args.entry {
        None => None,
        Some(id) => match check_entry(&args, id, &bytes, &loader, &mut inspection) {
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
            Ok(json) => println!("{}", json_printable(json)),
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

/// Adds the entry's problems to the inspection: the loader's own checks (hash, compiling,
/// limits, grants, the method, linking), run on this file as a spawn of the entry would run
/// them on its own.
fn check_entry(
    args: &ValidateArgs,
    id: &str,
    bytes: &[u8],
    loader: &Loader,
    inspection: &mut Inspection,
) -> Result<EntryCheck, String> {
    let path = manifest_path::resolve_here(args.manifest.as_deref())?;
    let manifest = Manifest::load(&path).map_err(|e| e.kinded().to_string())?;
    let unknown = || Error::UnknownEntry { id: id.to_string() };
    let entry_id = EntryId::parse(id).map_err(|_| unknown().kinded().to_string())?;
    let wasm = match manifest.get(&entry_id).map(|e| &e.spec) {
        Some(EntrySpec::Wasm(wasm)) => wasm,
        Some(other) => {
            let wrong = Error::WrongEntryKind {
                id: entry_id.clone(),
                expected: EntryKind::Wasm,
                actual: other.kind(),
            };
            return Err(wrong.kinded().to_string());
        }
        None => return Err(format!("{} in {}", unknown().kinded(), path.display())),
    };
    let (problems, program) = loader.verify(&entry_id, wasm, &args.file, bytes);
    inspection.problems.extend(
        problems
            .iter()
            .map(|e| Kinded::new(e.kind(), e).to_string()),
    );
    if let Some(program) = &program {
        if !args.args.is_empty() {
            let values: Vec<_> = args.args.iter().map(|a| crate::args::parse(a)).collect();
            if let Err(e) = program.signature.args_to_vals(&values) {
                inspection
                    .problems
                    .push(format!("arguments do not fit: {e}"));
            }
        }
    }
    // What a spawn would call: for a core module, `main` may mean its `_start`.
    let method = match inspection.kind {
        BinaryKind::CoreModule => wasm
            .method
            .core_export(|name| inspection.exports.contains_key(name)),
        _ => wasm.method.to_string(),
    };
    let network = wasm
        .imports
        .iter()
        .any(|f| matches!(f, Family::Http | Family::Sockets))
        .then(|| NetworkCheck {
            declared: wasm.network.is_declared(),
            allow: wasm.network.rules().map(str::to_string).collect(),
            listen: wasm.network.listen_rules().map(str::to_string).collect(),
        });
    Ok(EntryCheck {
        id: id.to_string(),
        signature: inspection.exports.get(&method).cloned(),
        method,
        network,
    })
}

/// The report as a reader sees it. What the binary names (exports, imports, types, and the
/// problems that quote them) may hold control characters: each is shown escaped, so that a
/// third-party binary cannot write to the reader's terminal or forge the report's lines (an
/// export named `run\nvalid:   yes`).
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
        println!("  {}: {}", printable(name), printable(signature));
    }
    if i.exports.is_empty() {
        println!("  (none)");
    }
    println!("imports:");
    for (family, names) in &i.imports {
        println!("  {}: {}", printable(family), printable(&names.join(", ")));
    }
    if i.imports.is_empty() {
        println!("  (none)");
    }
    if !i.wasi_versions.is_empty() {
        println!("wasi:    {}", printable(&i.wasi_versions.join(", ")));
    }
    if i.async_abi {
        // WASI 0.3 support in wasmtime-wasi is experimental (see the README).
        println!("async:   uses the component model's async ABI (WASI 0.3 guests do)");
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
                .map(|s| format!(": {}", printable(s)))
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
            println!("  - {}", printable(problem));
        }
    }
}
