//! What a binary is, before anyone runs it: kind, exports with their WIT signatures, imports by
//! interface family, the grants an entry needs, and its sha256 in the manifest's form. The
//! `validate` command prints this for third-party guests.

use std::collections::BTreeMap;

use serde::Serialize;
use wasmtime::Engine;

use crate::loader::Loader;
use crate::manifest::{Digest, Family};
use crate::value::Signature;

/// What a binary is (in messages: "component", "module", "binary").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    /// A WebAssembly component.
    Component,
    /// A core WebAssembly module (wasip1).
    CoreModule,
    /// Neither: the bytes are not valid WebAssembly.
    Invalid,
}

impl std::fmt::Display for BinaryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BinaryKind::Component => "component",
            BinaryKind::CoreModule => "module",
            BinaryKind::Invalid => "binary",
        })
    }
}

/// A report on one binary.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// What the binary is.
    pub kind: BinaryKind,
    /// `sha256:<hex>`, ready for an entry's `hash:`.
    pub hash: String,
    /// The binary's size in bytes.
    pub size: usize,
    /// Export name (`func` or `interface#func`) → WIT signature.
    pub exports: BTreeMap<String, String>,
    /// Interface family (`wasi:cli`, or the package of an unknown import) → import names.
    pub imports: BTreeMap<String, Vec<String>>,
    /// The smallest `imports:` list that grants every import wasmproc can provide.
    pub grants: Vec<String>,
    /// Imports no grant can satisfy.
    pub unsupported_imports: Vec<String>,
    /// The WASI versions its imports name (`0.2`, `0.3`).
    pub wasi_versions: Vec<String>,
    /// It uses the component model's async ABI (WASI 0.3 guests do): it runs on the engine
    /// with concurrency support.
    pub async_abi: bool,
    /// Why the binary is not runnable, if it is not.
    pub problems: Vec<String>,
}

/// Inspects `bytes`, compiled (not instantiated) on the engine of `loader` that would run them.
pub fn inspect(loader: &Loader, bytes: &[u8]) -> Inspection {
    let mut report = Inspection {
        kind: BinaryKind::Invalid,
        hash: Digest::of(bytes).to_string(),
        size: bytes.len(),
        exports: BTreeMap::new(),
        imports: BTreeMap::new(),
        grants: Vec::new(),
        unsupported_imports: Vec::new(),
        wasi_versions: Vec::new(),
        async_abi: false,
        problems: Vec::new(),
    };
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => inspect_module(loader, bytes, &mut report),
        Some([0, b'a', b's', b'm', ..]) => inspect_component(loader, bytes, &mut report),
        _ => report
            .problems
            .push("not a WebAssembly binary (no `\\0asm` header)".into()),
    }
    report
}

fn inspect_component(loader: &Loader, bytes: &[u8], report: &mut Inspection) {
    let component = match loader.compile_component(bytes) {
        Ok(component) => component,
        Err(e) => {
            report.problems.push(not_compiled("component", &e));
            return;
        }
    };
    report.kind = BinaryKind::Component;
    if let Some(beyond) = component
        .resources_required()
        .as_ref()
        .and_then(crate::loader::beyond_a_process)
    {
        report.problems.push(beyond);
    }
    let engine = component.engine();
    report.async_abi = !Engine::same(engine, loader.engine());
    let mut signatures = Signatures::default();
    for (name, func) in crate::loader::component_functions(&component, engine) {
        let signature = signatures.spell(|| Signature::of(&func).to_string());
        report.exports.insert(name, signature);
    }
    let imports = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect::<Vec<_>>();
    classify_imports(report, imports);
}

/// Bytes of signatures a report spells out; later exports are listed with `…` for theirs. A
/// binary may have 100,000 exports (wasmparser's bound), and one function type of thousands of
/// parameters or a large record, spelled for each export that has it, made the report (held
/// whole in memory) many times the binary's size.
pub const MAX_REPORTED_SIGNATURES: usize = 1 << 20;

/// The signatures a report spelled so far.
#[derive(Default)]
struct Signatures {
    bytes: usize,
}

impl Signatures {
    /// `spell()`, unless the report spelled [`MAX_REPORTED_SIGNATURES`] bytes already.
    fn spell(&mut self, spell: impl FnOnce() -> String) -> String {
        if self.bytes >= MAX_REPORTED_SIGNATURES {
            return format!(
                "… (not shown: this report spelled {MAX_REPORTED_SIGNATURES} bytes of signatures)"
            );
        }
        let signature = spell();
        self.bytes += signature.len();
        signature
    }
}

/// Why a binary did not compile: invalid, or past the compile limits (then it may be valid).
fn not_compiled(what: &str, error: &wasmtime::Error) -> String {
    if error
        .downcast_ref::<crate::compile_isolation::CompileRefused>()
        .is_some()
    {
        format!("not compiled ({what}): {error:#}")
    } else {
        format!("invalid {what}: {error:#}")
    }
}

fn inspect_module(loader: &Loader, bytes: &[u8], report: &mut Inspection) {
    match loader.compile_module(bytes) {
        Ok(module) => {
            report.kind = BinaryKind::CoreModule;
            if let Some(beyond) = crate::loader::beyond_a_process(&module.resources_required()) {
                report.problems.push(beyond);
            }
            let mut signatures = Signatures::default();
            for export in module.exports() {
                let signature = signatures.spell(|| core_signature(&export.ty()));
                report.exports.insert(export.name().to_string(), signature);
            }
            let imports = module
                .imports()
                .map(|i| format!("{}::{}", i.module(), i.name()))
                .collect::<Vec<_>>();
            classify_imports(report, imports);
        }
        Err(e) => report.problems.push(not_compiled("module", &e)),
    }
}

/// A core module export as its WebAssembly text form would declare it: `func (param i32)
/// (result i64)`, `memory 1 16`, `global (mut i32)`, `table 1 (ref null func)`.
fn core_signature(ty: &wasmtime::ExternType) -> String {
    use wasmtime::ExternType;
    fn func(ty: &wasmtime::FuncType) -> String {
        let mut out = String::from("func");
        let params: Vec<String> = ty.params().map(|p| p.to_string()).collect();
        let results: Vec<String> = ty.results().map(|r| r.to_string()).collect();
        if !params.is_empty() {
            out += &format!(" (param {})", params.join(" "));
        }
        if !results.is_empty() {
            out += &format!(" (result {})", results.join(" "));
        }
        out
    }
    let limits = |index: &str, min: u64, max: Option<u64>| {
        let mut out = String::new();
        if !index.is_empty() {
            out += index;
            out += " ";
        }
        out += &min.to_string();
        if let Some(max) = max {
            out += &format!(" {max}");
        }
        out
    };
    match ty {
        ExternType::Func(f) => func(f),
        ExternType::Memory(m) => format!(
            "memory {}{}",
            limits(if m.is_64() { "i64" } else { "" }, m.minimum(), m.maximum()),
            if m.is_shared() { " shared" } else { "" }
        ),
        ExternType::Global(g) => match g.mutability() {
            wasmtime::Mutability::Var => format!("global (mut {})", g.content()),
            wasmtime::Mutability::Const => format!("global {}", g.content()),
        },
        ExternType::Table(t) => format!(
            "table {} {}",
            limits(if t.is_64() { "i64" } else { "" }, t.minimum(), t.maximum()),
            t.element()
        ),
        ExternType::Tag(t) => format!("tag ({})", func(t.ty())),
    }
}

/// Files each import under its family (or, when wasmproc provides none, under its package or
/// module), and derives the minimal grants and the problem of the unsupported ones.
fn classify_imports(report: &mut Inspection, imports: Vec<String>) {
    let mut families = Vec::new();
    let mut versions = std::collections::BTreeSet::new();
    for name in imports {
        let version = wasi_version(&name);
        if let Some(version) = &version {
            versions.insert(version.clone());
        }
        let key = match Family::of_import(&name) {
            Some(family) => {
                families.push(family);
                if version.as_deref() == Some("0.3") && !crate::imports::links_p3(&name) {
                    report.unsupported_imports.push(name.clone());
                }
                family.package().to_string()
            }
            None => {
                report.unsupported_imports.push(name.clone());
                match name.split_once("::") {
                    Some((module, _)) => module.to_string(),
                    None => name.split(['/', '@']).next().unwrap_or(&name).to_string(),
                }
            }
        };
        report.imports.entry(key).or_default().push(name);
    }
    report.grants = minimal_grants(&families);
    report.wasi_versions = versions.into_iter().collect();
    if !report.unsupported_imports.is_empty() {
        report.problems.push(format!(
            "imports that wasmproc cannot provide: {}",
            report.unsupported_imports.join(", ")
        ));
    }
}

/// `0.3` for `wasi:cli/stdout@0.3.0`: the major and minor version of a WASI import.
fn wasi_version(import: &str) -> Option<String> {
    let version = import.strip_prefix("wasi:")?.split_once('@')?.1;
    let mut parts = version.splitn(3, '.');
    Some(format!("{}.{}", parts.next()?, parts.next()?))
}

/// The families to list so that every used one is granted: those no other used family implies.
fn minimal_grants(used: &[Family]) -> Vec<String> {
    let mut grants: Vec<Family> = used
        .iter()
        .copied()
        .filter(|f| {
            !used
                .iter()
                .any(|other| other != f && other.implies().contains(f))
        })
        .collect();
    grants.sort();
    grants.dedup();
    grants.iter().map(|f| f.package().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect(bytes: &[u8]) -> Inspection {
        let pool = crate::engine::Pool {
            processes: 0,
            ..Default::default()
        };
        super::inspect(&crate::engine::loader_with(pool).unwrap(), bytes)
    }

    #[test]
    fn wasi_p3_imports_wasmproc_does_not_link_are_unsupported() {
        let mut report = inspect(&[]);
        classify_imports(
            &mut report,
            vec![
                "wasi:cli/stdout@0.3.0".into(),
                "wasi:cli/stdout@0.2.4".into(),
                "wasi:filesystem/types@0.3.0".into(),
                "wasi:sockets/types@0.3.0".into(),
                "wasi:http/types@0.3.0".into(),
                "wasi:http/client@0.3.0".into(),
                // A middleware's import of another handler: nothing to forward to.
                "wasi:http/handler@0.3.0".into(),
                "wasi:http/types@0.2.4".into(),
            ],
        );
        assert_eq!(report.wasi_versions, ["0.2", "0.3"]);
        assert_eq!(report.unsupported_imports, ["wasi:http/handler@0.3.0"]);
        assert_eq!(
            report.grants,
            ["wasi:cli", "wasi:filesystem", "wasi:sockets", "wasi:http"]
        );
    }

    #[test]
    fn grants_leave_out_what_other_grants_imply() {
        assert_eq!(minimal_grants(&[Family::Io, Family::Cli]), ["wasi:cli"]);
        assert_eq!(
            minimal_grants(&[Family::Io, Family::Clocks, Family::Filesystem, Family::Cli]),
            ["wasi:cli", "wasi:filesystem"]
        );
        assert!(minimal_grants(&[]).is_empty());
    }

    #[test]
    fn core_module_exports_are_shown_as_signatures() {
        let bytes = wat::parse_str(
            r#"(module
                (func (export "add") (param i32 i64) (result f64) f64.const 0)
                (func (export "_start"))
                (memory (export "memory") 1 16)
                (global (export "counter") (mut i32) (i32.const 0))
                (table (export "table") 2 funcref))"#,
        )
        .unwrap();
        let report = inspect(&bytes);
        let exports: Vec<(&str, &str)> = report
            .exports
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            exports,
            [
                ("_start", "func"),
                ("add", "func (param i32 i64) (result f64)"),
                ("counter", "global (mut i32)"),
                ("memory", "memory 1 16"),
                ("table", "table 2 (ref null func)"),
            ]
        );
    }
}
