//! An error's text as an EXIT carries it: its causes, first the deepest, cut at
//! [`MAX_ERROR_TEXT`] while it is written.
//!
//! A trap's text quotes the binary: its backtrace names up to 20 frames by module and function,
//! from the name section, each name up to 100,000 bytes (wasmparser's bound). A 200 KB binary
//! recursing without end trapped with a 4 MB message, which every monitor's mailbox then held
//! until read, outside `max_value` and `max_memory` (found attacking, 2026-12-07).

use std::fmt::{self, Write};

/// Bytes of an error's text an EXIT keeps: a real backtrace of 20 frames with long demangled
/// names is a few KiB.
pub const MAX_ERROR_TEXT: usize = 64 << 10;

/// `error`'s chain, cause first then each context (a trap, then its backtrace), one per line,
/// at most [`MAX_ERROR_TEXT`] bytes and a mark where it was cut. Never longer while it is made:
/// the parts are written into the bound, not formatted whole and cut after.
pub(crate) fn error_text(error: &wasmtime::Error) -> String {
    let mut text = Bounded {
        text: String::new(),
        cut: false,
    };
    let parts: Vec<&dyn std::error::Error> = error.chain().collect();
    for (i, part) in parts.iter().rev().enumerate() {
        let separated = if i == 0 {
            Ok(())
        } else {
            text.write_char('\n')
        };
        if separated.and_then(|()| write!(text, "{part}")).is_err() {
            break;
        }
    }
    if text.cut {
        let _ = write!(text.text, "… (cut at {MAX_ERROR_TEXT} bytes)");
    }
    text.text
}

/// Text that refuses to grow past [`MAX_ERROR_TEXT`]: the write that would is cut at a
/// character boundary and fails, which ends the `Display` writing into it.
struct Bounded {
    text: String,
    cut: bool,
}

impl Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_ERROR_TEXT - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_comes_first_and_the_text_stops_at_the_bound() {
        let error = wasmtime::Error::msg("the cause").context("a context");
        assert_eq!(error_text(&error), "the cause\na context");

        let long = "é".repeat(MAX_ERROR_TEXT);
        let error = wasmtime::Error::msg("cause")
            .context(long.clone())
            .context(long);
        let text = error_text(&error);
        let mark = format!("… (cut at {MAX_ERROR_TEXT} bytes)");
        assert!(text.starts_with("cause\né"), "{}", &text[..20]);
        assert!(text.ends_with(&mark));
        assert!(text.len() <= MAX_ERROR_TEXT + mark.len(), "{}", text.len());
        assert!(text.len() > MAX_ERROR_TEXT - 2);
    }
}
