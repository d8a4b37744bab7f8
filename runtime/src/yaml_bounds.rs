//! Bounds on the YAML wasmproc reads (manifests, scenarios, command-line values), checked in
//! linear time before serde_norway sees the text.
//!
//! This walk reads the events with the same libyaml serde_norway uses, keeps only a stack of
//! open collections and the size of each anchored node, and stops at the first event past a
//! bound. The text is then parsed a second time by serde_norway, within bounds: both passes
//! are linear. A syntax error is left to serde_norway, which words it better.
//!
//! Why: serde_norway reads a whole document's events before it deserializes anything, and
//! libyaml's scanner does work proportional to the open nesting for every token, so text
//! nested 100,000 deep took 44 s to be refused (40,000: 3.7 s) although serde_norway's own
//! recursion limit (128) would refuse it. And an alias repeats its anchor's whole node: a
//! small file whose aliases repeat aliases ("billion laughs") expands to more nodes than
//! memory holds (serde_norway only bounds the number of alias uses, at 100 per event).

use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt;
use std::mem::MaybeUninit;

use unsafe_libyaml_norway as unsafe_sys;

/// Collections open inside each other (sequences and mappings, through aliases too). Real
/// manifests and scenarios nest fewer than 10 deep; serde_norway refuses past 128.
pub const MAX_DEPTH: usize = 64;

/// Nodes that aliases may add by repeating their anchors, in one document.
pub const MAX_ALIAS_NODES: u64 = 100_000;

/// Bytes of YAML text in one file.
pub const MAX_BYTES: u64 = 16 << 20;

/// Text past a bound, located like serde_norway's errors (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Which bound, and its value.
    pub message: String,
}

impl fmt::Display for BoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Checks `text` against [`MAX_BYTES`], [`MAX_DEPTH`] and [`MAX_ALIAS_NODES`]. Text that is
/// not valid YAML passes (serde_norway reports it) up to where it stops being YAML.
pub fn check(text: &str) -> Result<(), BoundError> {
    if text.len() as u64 > MAX_BYTES {
        return Err(BoundError {
            line: 1,
            column: 1,
            message: format!(
                "{} bytes of YAML, more than the {} MiB wasmproc reads",
                text.len(),
                MAX_BYTES >> 20
            ),
        });
    }
    let mut parser = Parser::new(text);
    let mut walk = Walk::default();
    loop {
        let Some(event) = parser.next() else {
            return Ok(());
        };
        if walk.event(&event)? {
            return Ok(());
        }
    }
}

/// One collection being read: how many nodes it holds so far (aliases expanded) and how deep
/// it goes below itself.
struct Open {
    anchor: Option<Vec<u8>>,
    nodes: u64,
    height: usize,
}

/// A finished anchored node, as an alias repeats it.
#[derive(Clone, Copy)]
struct Anchored {
    nodes: u64,
    height: usize,
}

#[derive(Default)]
struct Walk {
    open: Vec<Open>,
    anchors: HashMap<Vec<u8>, Option<Anchored>>,
    alias_nodes: u64,
}

impl Walk {
    /// Takes one event; true at the end of the stream.
    fn event(&mut self, event: &Event) -> Result<bool, BoundError> {
        let fail = |message: String| BoundError {
            line: event.line + 1,
            column: event.column + 1,
            message,
        };
        match &event.kind {
            EventKind::End => return Ok(true),
            EventKind::Other => {}
            EventKind::Start { anchor } => {
                if self.open.len() >= MAX_DEPTH {
                    return Err(fail(format!(
                        "nested more than {MAX_DEPTH} collections deep"
                    )));
                }
                if let Some(anchor) = anchor {
                    // Known from here on, but only usable once complete.
                    self.anchors.insert(anchor.clone(), None);
                }
                self.open.push(Open {
                    anchor: anchor.clone(),
                    nodes: 1,
                    height: 1,
                });
            }
            EventKind::Scalar { anchor } => {
                if let Some(anchor) = anchor {
                    self.anchors.insert(
                        anchor.clone(),
                        Some(Anchored {
                            nodes: 1,
                            height: 0,
                        }),
                    );
                }
                self.add(Anchored {
                    nodes: 1,
                    height: 0,
                });
            }
            EventKind::Alias { anchor } => {
                let repeated = match self.anchors.get(anchor) {
                    Some(Some(repeated)) => *repeated,
                    Some(None) => {
                        return Err(fail(format!(
                            "alias `*{}` is inside the node it names",
                            String::from_utf8_lossy(anchor)
                        )))
                    }
                    // An unknown anchor: serde_norway says so.
                    None => return Ok(true),
                };
                if self.open.len() + repeated.height > MAX_DEPTH {
                    return Err(fail(format!(
                        "alias `*{}` nests more than {MAX_DEPTH} collections deep",
                        String::from_utf8_lossy(anchor)
                    )));
                }
                self.alias_nodes = self.alias_nodes.saturating_add(repeated.nodes);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(fail(format!(
                        "aliases repeat more than {MAX_ALIAS_NODES} nodes (alias `*{}`)",
                        String::from_utf8_lossy(anchor)
                    )));
                }
                self.add(repeated);
            }
            EventKind::Close => {
                if let Some(closed) = self.open.pop() {
                    let node = Anchored {
                        nodes: closed.nodes,
                        height: closed.height,
                    };
                    if let Some(anchor) = closed.anchor {
                        self.anchors.insert(anchor, Some(node));
                    }
                    self.add(node);
                }
            }
        }
        Ok(false)
    }

    /// Counts a finished node into the collection holding it.
    fn add(&mut self, node: Anchored) {
        if let Some(parent) = self.open.last_mut() {
            parent.nodes = parent.nodes.saturating_add(node.nodes);
            parent.height = parent.height.max(node.height + 1);
        }
    }
}

enum EventKind {
    Start {
        anchor: Option<Vec<u8>>,
    },
    Close,
    Scalar {
        anchor: Option<Vec<u8>>,
    },
    Alias {
        anchor: Vec<u8>,
    },
    /// The end of the stream, or a syntax error.
    End,
    /// Stream and document starts and ends.
    Other,
}

struct Event {
    kind: EventKind,
    line: usize,
    column: usize,
}

/// libyaml's event parser over borrowed text, as serde_norway drives it.
struct Parser<'a> {
    // Boxed: libyaml's state is large, and it stays at one address while it is used.
    sys: Box<MaybeUninit<unsafe_sys::yaml_parser_t>>,
    _text: &'a str,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        let mut sys = Box::new(MaybeUninit::<unsafe_sys::yaml_parser_t>::uninit());
        // SAFETY: `yaml_parser_initialize` fills the parser in place (it only fails when
        // allocation fails, which aborts in Rust); the input is borrowed for 'a, which the
        // parser does not outlive.
        unsafe {
            let parser = sys.as_mut_ptr();
            if unsafe_sys::yaml_parser_initialize(parser).fail {
                std::process::abort();
            }
            unsafe_sys::yaml_parser_set_encoding(parser, unsafe_sys::YAML_UTF8_ENCODING);
            unsafe_sys::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        }
        Parser { sys, _text: text }
    }

    /// The next event, or None after the stream's end or an error.
    fn next(&mut self) -> Option<Event> {
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialized by `new`; `yaml_parser_parse` initializes the
        // event when it succeeds, and the event is read and then deleted before returning;
        // anchors are NUL-terminated strings owned by the event, copied out before it is
        // deleted.
        unsafe {
            let parser = self.sys.as_mut_ptr();
            if unsafe_sys::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                return None;
            }
            let event = event.as_mut_ptr();
            let kind = match (*event).type_ {
                unsafe_sys::YAML_STREAM_END_EVENT | unsafe_sys::YAML_NO_EVENT => EventKind::End,
                unsafe_sys::YAML_SEQUENCE_START_EVENT => EventKind::Start {
                    anchor: anchor((*event).data.sequence_start.anchor),
                },
                unsafe_sys::YAML_MAPPING_START_EVENT => EventKind::Start {
                    anchor: anchor((*event).data.mapping_start.anchor),
                },
                unsafe_sys::YAML_SEQUENCE_END_EVENT | unsafe_sys::YAML_MAPPING_END_EVENT => {
                    EventKind::Close
                }
                unsafe_sys::YAML_SCALAR_EVENT => EventKind::Scalar {
                    anchor: anchor((*event).data.scalar.anchor),
                },
                unsafe_sys::YAML_ALIAS_EVENT => match anchor((*event).data.alias.anchor) {
                    Some(anchor) => EventKind::Alias { anchor },
                    None => EventKind::End,
                },
                _ => EventKind::Other,
            };
            let mark = (*event).start_mark;
            unsafe_sys::yaml_event_delete(event);
            Some(Event {
                kind,
                line: mark.line as usize,
                column: mark.column as usize,
            })
        }
    }
}

/// An event's anchor (or an alias's), copied out of libyaml's NUL-terminated string.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string that outlives the call.
unsafe fn anchor(ptr: *const u8) -> Option<Vec<u8>> {
    // SAFETY: as the caller promises.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr.cast()) }.to_bytes().to_vec())
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialized by `new`, deleted once.
        unsafe { unsafe_sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_yaml_passes() {
        check("a: [1, {b: c}]\nd: &x {e: 1}\nf: *x\n").unwrap();
        check("").unwrap();
        check("[unclosed").unwrap();
    }

    #[test]
    fn nesting_past_the_limit_is_refused_where_it_happens() {
        check(&format!(
            "{}{}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        ))
        .unwrap();
        let err = check(&"[".repeat(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!((err.line, err.column), (1, MAX_DEPTH + 1), "{err}");
        assert!(err.message.contains("nested more than 64"), "{err}");
        // Block nesting counts too: `- - - x` is three sequences.
        check(&format!("{}x", "- ".repeat(MAX_DEPTH))).unwrap();
        let err = check(&format!("{}x", "- ".repeat(MAX_DEPTH + 1))).unwrap_err();
        assert!(err.message.contains("nested more than 64"), "{err}");
    }

    #[test]
    fn aliases_count_the_nodes_they_repeat() {
        // Nine times nine times ... nine: 9^6 = 531,441 scalars from a 200-byte text.
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e"]
            .iter()
            .zip(["b", "c", "d", "e", "f"])
        {
            text += &format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{prev}"); 9].join(", ")
            );
        }
        let err = check(&text).unwrap_err();
        assert!(err.message.contains("aliases repeat more than"), "{err}");
        // An alias that deepens past the limit.
        let deep = format!(
            "a: &a {}{}\nb: {}*a{}\n",
            "[".repeat(40),
            "]".repeat(40),
            "[".repeat(30),
            "]".repeat(30)
        );
        assert!(check(&deep)
            .unwrap_err()
            .message
            .contains("nests more than"));
    }

    #[test]
    fn an_alias_nests_as_deep_as_the_node_written_out_would() {
        // `b:` holds `outer` lists around an alias of 40 nested lists, under the document's
        // map: 1 + outer + 40 collections, the limit at outer = 23.
        let inner = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let aliased = |outer: usize| {
            format!(
                "a: &a {inner}\nb: {}*a{}\n",
                "[".repeat(outer),
                "]".repeat(outer)
            )
        };
        let written_out = |outer: usize| {
            format!(
                "a: {inner}\nb: {}{inner}{}\n",
                "[".repeat(outer),
                "]".repeat(outer)
            )
        };
        let limit = MAX_DEPTH - 41;
        for text in [aliased(limit), written_out(limit)] {
            check(&text).unwrap();
        }
        for text in [aliased(limit + 1), written_out(limit + 1)] {
            assert!(check(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn an_alias_inside_its_own_node_is_refused() {
        let err = check("a: &a [1, *a]\n").unwrap_err();
        assert!(err.message.contains("inside the node it names"), "{err}");
    }
}
