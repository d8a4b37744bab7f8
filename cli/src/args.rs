//! Command-line arguments for a process: each is read as a YAML value, so `6` is a number,
//! `[1, 2]` a list and `hello` a string; the runtime then converts it to the parameter's type.

use serde_json::Value;

pub fn parse(arg: &str) -> Value {
    // YAML reads an empty string, `~` and `null` as null; an empty argument is an empty string.
    if arg.is_empty() {
        return Value::String(String::new());
    }
    // Past wasmproc's YAML bounds (nesting, aliases), it is text too: parsing a deeply nested
    // value took libyaml time quadratic in its depth.
    if wasmproc_runtime::yaml_bounds::check(arg).is_err() {
        return Value::String(arg.to_string());
    }
    serde_norway::from_str(arg).unwrap_or_else(|_| Value::String(arg.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde_json::json;

    #[test]
    fn reads_yaml_scalars_and_collections() {
        assert_eq!(parse("6"), json!(6));
        assert_eq!(parse("-1.5"), json!(-1.5));
        assert_eq!(parse("text"), json!("text"));
        assert_eq!(parse("[1, 2]"), json!([1, 2]));
        assert_eq!(parse("{a: 1}"), json!({"a": 1}));
        assert_eq!(parse(""), json!(""));
        assert_eq!(parse("null"), json!(null));
    }

    #[test]
    fn keeps_text_that_is_not_yaml_as_a_string() {
        assert_eq!(parse("a: b: c"), json!("a: b: c"));
        assert_eq!(parse("[unclosed"), json!("[unclosed"));
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(parse(&deep), json!(deep));
    }
}
