//! Text made from what a binary or a guest chose, bounded while it is written: an error's text
//! (`error_text`), a type's WIT spelling, a signature, a `validate` report's exports.
//!
//! Such text quotes names, and a small binary can make it huge: a trap's backtrace names up to
//! 20 frames by module and function from the name section, each name up to 100,000 bytes
//! (wasmparser's bound), so a 180 KB module recursing without end trapped with a 3.6 MB
//! message; a type of 2^17 copies of one record (a tuple of tuples, each type defined once) is
//! spelled out whole, so a 1.4 KB component had a 134 MB `validate` report, and with longer
//! names it took all the memory (found attacking, 2026-12-07). Writing into a
//! `BoundedText` stops at its bound: the `Display` or the recursion writing into it ends
//! there, before the rest is made.

use std::fmt::{self, Write};

/// Bytes of an error's text an EXIT keeps: a real backtrace of 20 frames with long demangled
/// names is a few KiB.
pub const MAX_ERROR_TEXT: usize = 64 << 10;

/// Text that refuses to grow past its bound: the write that would is cut at a character
/// boundary and fails, which ends whatever is writing into it.
pub(crate) struct BoundedText {
    text: String,
    max: usize,
    cut: bool,
}

impl BoundedText {
    /// What `write` writes, at most `max` bytes, and where it was cut `… (cut at max bytes)`.
    pub(crate) fn of(max: usize, write: impl FnOnce(&mut BoundedText) -> fmt::Result) -> String {
        let mut text = BoundedText {
            text: String::new(),
            max,
            cut: false,
        };
        // An error is the bound (nothing else fails writing into a String).
        let _ = write(&mut text);
        if text.cut {
            let _ = write!(text.text, "… (cut at {max} bytes)");
        }
        text.text
    }
}

impl Write for BoundedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.text.len();
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

/// `error`'s chain, cause first then each context (a trap, then its backtrace), one per line,
/// at most [`MAX_ERROR_TEXT`] bytes. A wasm backtrace is written here, not by wasmtime, so that
/// the names it quotes stay on their lines: a function named `f\nvalid: yes` put a line of the
/// binary's choosing into the message (each name has its control characters escaped).
pub(crate) fn error_text(error: &wasmtime::Error) -> String {
    let parts: Vec<&dyn std::error::Error> = error.chain().collect();
    let backtrace = error.downcast_ref::<wasmtime::WasmBacktrace>();
    BoundedText::of(MAX_ERROR_TEXT, |text| {
        for (i, part) in parts.iter().rev().enumerate() {
            if i > 0 {
                text.write_char('\n')?;
            }
            match backtrace.filter(|_| is_backtrace(*part)) {
                Some(backtrace) => write_backtrace(text, backtrace)?,
                None => write!(text, "{part}")?,
            }
        }
        Ok(())
    })
}

/// wasmtime's first line of a backtrace, which a chain's backtrace part begins with.
const BACKTRACE_HEADER: &str = "error while executing at wasm backtrace:";

/// Whether `part` of a chain is its wasm backtrace (read no further than its first line).
fn is_backtrace(part: &dyn std::error::Error) -> bool {
    BoundedText::of(BACKTRACE_HEADER.len(), |head| write!(head, "{part}"))
        .starts_with(BACKTRACE_HEADER)
}

/// `backtrace` as wasmtime writes it, each module and function name escaped.
fn write_backtrace(text: &mut BoundedText, backtrace: &wasmtime::WasmBacktrace) -> fmt::Result {
    use crate::printable::printable;
    text.write_str(BACKTRACE_HEADER)?;
    for (i, frame) in backtrace.frames().iter().enumerate() {
        write!(text, "\n  {i:>3}: ")?;
        if let Some(offset) = frame.module_offset() {
            write!(text, "{offset:#8x} - ")?;
        }
        let module = frame.module().name().unwrap_or("<unknown>");
        let mut function = String::new();
        wasmtime_environ::demangle_function_name_or_index(
            &mut function,
            frame.func_name(),
            frame.func_index() as usize,
        )?;
        write!(text, "{}!{}", printable(module), printable(&function))?;
    }
    Ok(())
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

    #[test]
    fn a_writer_stops_at_the_first_write_past_the_bound() {
        let mut writes = 0;
        let text = BoundedText::of(10, |text| {
            for _ in 0..1_000 {
                writes += 1;
                text.write_str("abcd")?;
            }
            Ok(())
        });
        assert_eq!(text, "abcdabcdab… (cut at 10 bytes)");
        assert_eq!(writes, 3);
        assert_eq!(BoundedText::of(10, |text| text.write_str("short")), "short");
    }
}
