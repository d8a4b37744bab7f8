//! WIT spellings of component types, for messages and `validate`.

use std::fmt::Write as _;

use wasmtime::component::types::Type;

/// The WIT spelling of a type, for messages and `validate`.
pub fn type_name(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty);
    out
}

fn write_type(out: &mut String, ty: &Type) {
    let simple = match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::ErrorContext => "error-context",
        Type::Own(_) => "own<resource>",
        Type::Borrow(_) => "borrow<resource>",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        _ => "",
    };
    if !simple.is_empty() {
        out.push_str(simple);
        return;
    }
    let list = |out: &mut String, types: &mut dyn Iterator<Item = Type>| {
        for (i, t) in types.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_type(out, &t);
        }
    };
    match ty {
        Type::List(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            write_type(out, &l.ty());
            let _ = write!(out, ", {}>", l.len());
        }
        Type::Map(m) => {
            out.push_str("map<");
            write_type(out, &m.key());
            out.push_str(", ");
            write_type(out, &m.value());
            out.push('>');
        }
        Type::Tuple(t) => {
            out.push_str("tuple<");
            list(out, &mut t.types());
            out.push('>');
        }
        Type::Option(o) => {
            out.push_str("option<");
            write_type(out, &o.ty());
            out.push('>');
        }
        Type::Result(r) => {
            out.push_str("result");
            match (r.ok(), r.err()) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.push('<');
                    write_type(out, &ok);
                    out.push('>');
                }
                (ok, Some(err)) => {
                    out.push('<');
                    match ok {
                        Some(ok) => write_type(out, &ok),
                        None => out.push('_'),
                    }
                    out.push_str(", ");
                    write_type(out, &err);
                    out.push('>');
                }
            }
        }
        Type::Record(r) => {
            out.push_str("record { ");
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", f.name);
                write_type(out, &f.ty);
            }
            out.push_str(" }");
        }
        Type::Variant(v) => {
            out.push_str("variant { ");
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.name);
                if let Some(t) = c.ty {
                    out.push('(');
                    write_type(out, &t);
                    out.push(')');
                }
            }
            out.push_str(" }");
        }
        Type::Enum(e) => {
            let _ = write!(
                out,
                "enum {{ {} }}",
                e.names().collect::<Vec<_>>().join(", ")
            );
        }
        Type::Flags(f) => {
            let _ = write!(
                out,
                "flags {{ {} }}",
                f.names().collect::<Vec<_>>().join(", ")
            );
        }
        // Simple types returned above.
        _ => {}
    }
}
