//! Text from a binary or a guest, made safe to show on a terminal.
//!
//! A binary's names (exports, imports, its name section, which trap backtraces quote) and a
//! guest's strings (error results, output) may hold any Unicode, control characters too. Printed
//! raw in a report, `ESC [2J` clears the reader's screen, `ESC ]0;...BEL` retitles the window,
//! `ESC ]52;...` writes the clipboard on terminals that allow it, `CR` and newlines forge the
//! report's own lines (an export named `run\nvalid:   yes`), and bidirectional overrides reorder
//! what is read ("Trojan Source"). Each such character is shown as a Rust escape instead
//! (`\u{1b}`); everything printable, any script, is kept as it is.

use std::fmt;

/// `text` for a one-line field (a name, a type): every control character escaped, newlines
/// and tabs too.
pub fn printable<T: fmt::Display>(text: T) -> Printable<T> {
    Printable { text, lines: false }
}

/// `text` for a message that may span lines (an error with a backtrace): newlines and tabs
/// kept, every other control character escaped.
pub fn printable_lines<T: fmt::Display>(text: T) -> Printable<T> {
    Printable { text, lines: true }
}

/// Text shown with its control characters escaped (see [`printable`]).
#[derive(Clone, Copy, Debug)]
pub struct Printable<T> {
    text: T,
    lines: bool,
}

impl<T: fmt::Display> fmt::Display for Printable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(
            Escaping {
                out: f,
                lines: self.lines
            },
            "{}",
            self.text
        )
    }
}

/// Writes what it is given to `out`, its control characters escaped.
struct Escaping<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    lines: bool,
}

impl Escaping<'_, '_> {
    fn escapes(&self, c: char) -> bool {
        let layout = self.lines && (c == '\n' || c == '\t');
        (c.is_control() && !layout) || is_bidi_control(c)
    }
}

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, mut rest: &str) -> fmt::Result {
        // Runs of printable text are written whole: most text has nothing to escape.
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| self.escapes(c)) {
            self.out.write_str(&rest[..at])?;
            write!(self.out, "\\u{{{:x}}}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.out.write_str(rest)
    }
}

/// Characters that change the direction text is shown in (Unicode's bidirectional formatting
/// characters): they reorder what follows them, so that a line reads otherwise than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// JSON text (`serde_json`'s) with the control characters JSON allows raw in strings escaped
/// too: `serde_json` escapes those below U+0020 only, not DEL, the C1 controls (U+0080 to
/// U+009F: U+009B is the escape sequence introducer of terminals that read 8-bit controls) or
/// bidirectional overrides. Outside strings JSON has none of these, so each becomes `\uXXXX` in
/// the string it was in, and the document means the same.
pub fn json_printable(json: String) -> String {
    // Whitespace between tokens stays (inside strings serde_json escaped it already).
    let escapes = |c: char| (c.is_control() && !c.is_ascii_whitespace()) || is_bidi_control(c);
    if !json.contains(escapes) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escapes(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_printable_text_is_kept() {
        let hostile =
            "run\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nvalid:   yes\u{9b}31m\u{202e}txt.exe\u{7f}";
        let shown = printable(hostile).to_string();
        assert_eq!(
            shown,
            "run\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{a}valid:   yes\\u{9b}31m\\u{202e}txt.exe\\u{7f}"
        );
        assert!(!shown.contains(|c: char| c.is_control()), "{shown}");
        assert_eq!(
            printable("héllo, 世界 🦀 \\n").to_string(),
            "héllo, 世界 🦀 \\n"
        );
        assert_eq!(printable("").to_string(), "");
    }

    #[test]
    fn a_message_keeps_its_lines_but_not_the_other_controls() {
        let trap = "wasm trap: unreachable\n    0: 0x21 - m!f\u{1b}[31m\tx\r";
        assert_eq!(
            printable_lines(trap).to_string(),
            "wasm trap: unreachable\n    0: 0x21 - m!f\\u{1b}[31m\tx\\u{d}"
        );
    }

    #[test]
    fn json_keeps_its_meaning_with_every_control_escaped() {
        let value = serde_json::json!({ "name": "a\u{1b}b\u{9b}c\u{202e}d\u{7f}\n" });
        let json = json_printable(serde_json::to_string_pretty(&value).unwrap());
        assert!(
            !json.contains(|c: char| c.is_control() && c != '\n'),
            "{json}"
        );
        assert!(
            json.contains("\\u009b") && json.contains("\\u202e"),
            "{json}"
        );
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back, value);
        let plain = serde_json::to_string(&serde_json::json!([1, "x"])).unwrap();
        assert_eq!(json_printable(plain.clone()), plain);
    }
}
