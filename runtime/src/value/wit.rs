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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_spelled_as_wit_writes_it() {
        let spelled = [
            ("bool", "bool"),
            ("s8", "s8"),
            ("u8", "u8"),
            ("s16", "s16"),
            ("u16", "u16"),
            ("s32", "s32"),
            ("u32", "u32"),
            ("s64", "s64"),
            ("u64", "u64"),
            ("f32", "f32"),
            ("f64", "f64"),
            ("char", "char"),
            ("string", "string"),
            ("error-context", "error-context"),
            ("(own $res)", "own<resource>"),
            ("(borrow $res)", "borrow<resource>"),
            ("(future u8)", "future"),
            ("(stream u8)", "stream"),
            ("(list (list u8))", "list<list<u8>>"),
            ("(list u8 4)", "list<u8, 4>"),
            ("(map string u8)", "map<string, u8>"),
            ("(tuple u8 string bool)", "tuple<u8, string, bool>"),
            ("(option s32)", "option<s32>"),
            ("(result)", "result"),
            ("(result u8)", "result<u8>"),
            ("(result (error string))", "result<_, string>"),
            ("(result u8 (error string))", "result<u8, string>"),
            ("$rec", "record { a: u32, b: string, c: option<u8> }"),
            ("$var", "variant { a, b(string) }"),
            ("$enum", "enum { x, y }"),
            ("$flags", "flags { r, w }"),
        ];
        let types: Vec<&str> = spelled.iter().map(|(wat, _)| *wat).collect();
        let names: Vec<String> = crate::value::tests::param_types(&types)
            .iter()
            .map(type_name)
            .collect();
        let expected: Vec<&str> = spelled.iter().map(|(_, name)| *name).collect();
        assert_eq!(names, expected);
    }
}
