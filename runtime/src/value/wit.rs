//! WIT spellings of component types, for messages and `validate`.
//!
//! A type is spelled out whole (records inline), so a type defined once and used twice in the
//! next, and so on, doubles at each level: written into a `BoundedText`, the spelling stops at
//! [`MAX_TYPE_TEXT`] (see `bounded_text`).

use std::fmt::{self, Write};

use wasmtime::component::types::Type;

use crate::bounded_text::BoundedText;

/// Bytes of a type's spelling: real types are a few hundred.
pub const MAX_TYPE_TEXT: usize = 4 << 10;

/// The WIT spelling of a type, for messages and `validate`, at most `MAX_TYPE_TEXT` (4 KiB).
pub fn type_name(ty: &Type) -> String {
    BoundedText::of(MAX_TYPE_TEXT, |out| write_type(out, ty))
}

/// Writes `ty`'s spelling into `out`, stopping at the first write `out` refuses.
pub(crate) fn write_type(out: &mut dyn Write, ty: &Type) -> fmt::Result {
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
        return out.write_str(simple);
    }
    let list = |out: &mut dyn Write, items: &mut dyn Iterator<Item = Type>| -> fmt::Result {
        for (i, t) in items.enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            write_type(out, &t)?;
        }
        Ok(())
    };
    let names = |out: &mut dyn Write, items: &mut dyn Iterator<Item = &str>| -> fmt::Result {
        for (i, name) in items.enumerate() {
            if i > 0 {
                out.write_str(", ")?;
            }
            out.write_str(name)?;
        }
        Ok(())
    };
    match ty {
        Type::List(l) => {
            out.write_str("list<")?;
            write_type(out, &l.ty())?;
            out.write_char('>')?;
        }
        Type::FixedLengthList(l) => {
            out.write_str("list<")?;
            write_type(out, &l.ty())?;
            write!(out, ", {}>", l.len())?;
        }
        Type::Map(m) => {
            out.write_str("map<")?;
            write_type(out, &m.key())?;
            out.write_str(", ")?;
            write_type(out, &m.value())?;
            out.write_char('>')?;
        }
        Type::Tuple(t) => {
            out.write_str("tuple<")?;
            list(out, &mut t.types())?;
            out.write_char('>')?;
        }
        Type::Option(o) => {
            out.write_str("option<")?;
            write_type(out, &o.ty())?;
            out.write_char('>')?;
        }
        Type::Result(r) => {
            out.write_str("result")?;
            match (r.ok(), r.err()) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.write_char('<')?;
                    write_type(out, &ok)?;
                    out.write_char('>')?;
                }
                (ok, Some(err)) => {
                    out.write_char('<')?;
                    match ok {
                        Some(ok) => write_type(out, &ok)?,
                        None => out.write_char('_')?,
                    }
                    out.write_str(", ")?;
                    write_type(out, &err)?;
                    out.write_char('>')?;
                }
            }
        }
        Type::Record(r) => {
            out.write_str("record { ")?;
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write!(out, "{}: ", f.name)?;
                write_type(out, &f.ty)?;
            }
            out.write_str(" }")?;
        }
        Type::Variant(v) => {
            out.write_str("variant { ")?;
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                out.write_str(c.name)?;
                if let Some(t) = c.ty {
                    out.write_char('(')?;
                    write_type(out, &t)?;
                    out.write_char(')')?;
                }
            }
            out.write_str(" }")?;
        }
        Type::Enum(e) => {
            out.write_str("enum { ")?;
            names(out, &mut e.names())?;
            out.write_str(" }")?;
        }
        Type::Flags(f) => {
            out.write_str("flags { ")?;
            names(out, &mut f.names())?;
            out.write_str(" }")?;
        }
        // Simple types returned above.
        _ => {}
    }
    Ok(())
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
