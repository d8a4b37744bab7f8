//! Lua 5.4's pattern matching (`string.find`, `match`, `gmatch`, `gsub`), with a budget.
//!
//! Invariant: no call into this module runs longer than its budget, whatever the pattern and
//! subject. Lua's own matcher backtracks without limit inside one C call, where no hook runs:
//! `string.find(string.rep('a', 100000), '.-.-.-.-.-b')` held a worker for good and could not be
//! terminated. Here the matcher looks at the thread's CPU time every [`CLOCK_EVERY`] steps:
//! - a search may run at most [`Budget::attempt`], then fails with "pattern too complex": a
//!   pattern that backtracks that much at one position is an attack or a bug (it is the bound
//!   on anything a script does where it cannot be preempted);
//! - between two attempts, a search that has run [`Budget::slice`] stops and says where to go
//!   on ([`Search::Continue`]), so that a long scan of a large subject is cut into short calls
//!   that the script's preemption can come between.
//!
//! The matcher is a port of `lstrlib.c` (same semantics and error messages); positions are
//! byte offsets, 0-based and half-open here, converted to Lua's 1-based ones by the caller.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use super::cpu_time;

/// Lua's `LUA_MAXCAPTURES`.
pub(super) const MAX_CAPTURES: usize = 32;
/// Lua's `MAXCCALLS` for the matcher: how deep its recursion may go.
const MAX_DEPTH: u32 = 200;
const ESC: u8 = b'%';

/// Matcher steps between two looks at the clock (a step is one pattern item tried at one
/// subject position: a few nanoseconds optimized, ~100 in a debug build).
pub(super) const CLOCK_EVERY: u64 = 4096;

/// How long one search may run.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    /// How long a search may run inside one attempt before the pattern is refused as too
    /// complex.
    pub attempt: Duration,
    /// How long a search runs before it returns [`Search::Continue`] between two attempts.
    pub slice: Duration,
}

impl Budget {
    /// An attempt may run as long as a script may compute where it cannot be preempted; a
    /// slice is a millisecond.
    pub(super) const SCRIPT: Budget = Budget {
        attempt: super::preempt::UNPREEMPTIBLE,
        slice: Duration::from_millis(1),
    };
}

/// One capture of a successful match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Capture {
    /// A substring, by its byte range in the subject.
    Text(Range<usize>),
    /// A position capture `()`: the 0-based offset it stood at.
    Position(usize),
}

/// The outcome of [`search`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Search {
    /// A match of `range`, with the pattern's captures (empty when it has none).
    Found {
        range: Range<usize>,
        captures: Vec<Capture>,
    },
    /// No match from the start position on.
    NotFound,
    /// The slice's steps are spent: search again from this position (with the same
    /// `lastmatch`).
    Continue(usize),
}

/// Why a pattern could not be matched; the messages are Lua's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PatternError {
    /// The pattern does not parse.
    Malformed(&'static str),
    /// Recursion deeper than Lua allows.
    TooDeep,
    /// A search ran past [`Budget::attempt`] inside one attempt.
    TooComplex(Duration),
    TooManyCaptures,
    InvalidCaptureIndex(usize),
    InvalidPatternCapture,
    UnfinishedCapture,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Malformed(what) => write!(f, "malformed pattern ({what})"),
            PatternError::TooDeep => f.write_str("pattern too complex"),
            PatternError::TooComplex(limit) => write!(
                f,
                "pattern too complex (one match attempt ran past {} ms; wasmproc bounds \
                 pattern matching so that a script cannot hold its worker)",
                limit.as_millis()
            ),
            PatternError::TooManyCaptures => f.write_str("too many captures"),
            PatternError::InvalidCaptureIndex(i) => write!(f, "invalid capture index %{i}"),
            PatternError::InvalidPatternCapture => f.write_str("invalid pattern capture"),
            PatternError::UnfinishedCapture => f.write_str("unfinished capture"),
        }
    }
}

/// A capture being built: `len` is [`UNFINISHED`], [`POSITION`] or a length.
#[derive(Clone, Copy)]
struct Slot {
    init: usize,
    len: isize,
}

const UNFINISHED: isize = -1;
const POSITION: isize = -2;

struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    level: usize,
    captures: [Slot; MAX_CAPTURES],
    depth: u32,
    /// Steps since the search began, and when to look at the clock next.
    steps: u64,
    next_look: u64,
    /// The thread's CPU time when the search began.
    began: Duration,
    attempt_limit: Duration,
}

type Step = Result<Option<usize>, PatternError>;

impl<'a> Matcher<'a> {
    /// The pattern byte at `p`, or 0 past its end (as C reads the string's terminator).
    fn p(&self, p: usize) -> u8 {
        self.pat.get(p).copied().unwrap_or(0)
    }

    fn s(&self, s: usize) -> u8 {
        self.src.get(s).copied().unwrap_or(0)
    }

    fn tick(&mut self, n: u64) -> Result<(), PatternError> {
        self.steps += n;
        if self.steps >= self.next_look {
            self.next_look = self.steps + CLOCK_EVERY;
            if cpu_time::now() - self.began > self.attempt_limit {
                return Err(PatternError::TooComplex(self.attempt_limit));
            }
        }
        Ok(())
    }

    fn class_end(&self, mut p: usize) -> Result<usize, PatternError> {
        let c = self.p(p);
        p += 1;
        match c {
            ESC => {
                if p >= self.pat.len() {
                    return Err(PatternError::Malformed("ends with '%'"));
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.p(p) == b'^' {
                    p += 1;
                }
                loop {
                    // look for a ']'
                    if p >= self.pat.len() {
                        return Err(PatternError::Malformed("missing ']'"));
                    }
                    let c = self.p(p);
                    p += 1;
                    if c == ESC && p < self.pat.len() {
                        p += 1; // skip escapes (e.g. '%]')
                    }
                    if self.p(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        if s >= self.src.len() {
            return false;
        }
        let c = self.src[s];
        match self.p(p) {
            b'.' => true,
            ESC => match_class(c, self.p(p + 1)),
            b'[' => self.match_bracket_class(c, p, ep - 1),
            pc => pc == c,
        }
    }

    /// `p` is at the '[', `ec` at the closing ']'.
    fn match_bracket_class(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.p(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            if self.p(p) == ESC {
                p += 1;
                if match_class(c, self.p(p)) {
                    return sig;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.p(p - 2) <= c && c <= self.p(p) {
                    return sig;
                }
            } else if self.p(p) == c {
                return sig;
            }
        }
        !sig
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Step {
        if p + 1 >= self.pat.len() {
            return Err(PatternError::Malformed("missing arguments to '%b'"));
        }
        if s >= self.src.len() || self.src[s] != self.p(p) {
            return Ok(None);
        }
        let (open, close) = (self.p(p), self.p(p + 1));
        let mut depth = 1;
        let mut i = s + 1;
        while i < self.src.len() {
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    self.tick((i - s) as u64)?;
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
            i += 1;
        }
        self.tick((i - s) as u64)?;
        Ok(None)
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Step {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            i += 1;
        }
        self.tick(i as u64)?;
        // keep trying to match with the most repetitions
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Step {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if self.single_match(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: isize) -> Step {
        let level = self.level;
        if level >= MAX_CAPTURES {
            return Err(PatternError::TooManyCaptures);
        }
        self.captures[level] = Slot { init: s, len: what };
        self.level = level + 1;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.level -= 1;
        }
        Ok(res)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Step {
        let l = self.capture_to_close()?;
        self.captures[l].len = (s - self.captures[l].init) as isize;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.captures[l].len = UNFINISHED;
        }
        Ok(res)
    }

    fn capture_to_close(&self) -> Result<usize, PatternError> {
        (0..self.level)
            .rev()
            .find(|&l| self.captures[l].len == UNFINISHED)
            .ok_or(PatternError::InvalidPatternCapture)
    }

    fn check_capture(&self, l: u8) -> Result<usize, PatternError> {
        let index = l.wrapping_sub(b'1') as usize;
        if l < b'1' || index >= self.level || self.captures[index].len == UNFINISHED {
            return Err(PatternError::InvalidCaptureIndex(
                (l as usize).wrapping_sub(b'0' as usize),
            ));
        }
        Ok(index)
    }

    fn match_capture(&mut self, s: usize, l: u8) -> Step {
        let l = self.check_capture(l)?;
        let Slot { init, len } = self.captures[l];
        let len = len.max(0) as usize;
        self.tick(len as u64)?;
        if self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }

    fn do_match(&mut self, s: usize, p: usize) -> Step {
        if self.depth == 0 {
            return Err(PatternError::TooDeep);
        }
        self.depth -= 1;
        let res = self.match_items(s, p);
        self.depth += 1;
        res
    }

    /// `match` of lstrlib.c, its tail calls as a loop.
    fn match_items(&mut self, mut s: usize, mut p: usize) -> Step {
        loop {
            self.tick(1)?;
            if p == self.pat.len() {
                return Ok(Some(s));
            }
            match self.p(p) {
                b'(' => {
                    return if self.p(p + 1) == b')' {
                        self.start_capture(s, p + 2, POSITION)
                    } else {
                        self.start_capture(s, p + 1, UNFINISHED)
                    };
                }
                b')' => return self.end_capture(s, p + 1),
                b'$' if p + 1 == self.pat.len() => {
                    return Ok((s == self.src.len()).then_some(s));
                }
                ESC if self.p(p + 1) == b'b' => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                        continue;
                    }
                    None => return Ok(None),
                },
                ESC if self.p(p + 1) == b'f' => {
                    p += 2;
                    if self.p(p) != b'[' {
                        return Err(PatternError::Malformed("missing '[' after '%f' in pattern"));
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.s(s - 1) };
                    if !self.match_bracket_class(previous, p, ep - 1)
                        && self.match_bracket_class(self.s(s), p, ep - 1)
                    {
                        p = ep;
                        continue;
                    }
                    return Ok(None);
                }
                ESC if self.p(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.p(p + 1))? {
                        Some(end) => {
                            s = end;
                            p += 2;
                            continue;
                        }
                        None => return Ok(None),
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = self.p(ep);
                    if !self.single_match(s, p, ep) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = ep + 1; // accept empty
                            continue;
                        }
                        return Ok(None);
                    }
                    match suffix {
                        b'?' => {
                            if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                return Ok(Some(end));
                            }
                            p = ep + 1;
                        }
                        b'+' => return self.max_expand(s + 1, p, ep),
                        b'*' => return self.max_expand(s, p, ep),
                        b'-' => return self.min_expand(s, p, ep),
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        }
    }

    fn captures(&self) -> Result<Vec<Capture>, PatternError> {
        self.captures[..self.level]
            .iter()
            .map(|slot| match slot.len {
                UNFINISHED => Err(PatternError::UnfinishedCapture),
                POSITION => Ok(Capture::Position(slot.init)),
                len => Ok(Capture::Text(slot.init..slot.init + len as usize)),
            })
            .collect()
    }
}

fn match_class(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace: also \v (0x0b), which Rust's is_ascii_whitespace leaves out
        b's' => c.is_ascii_whitespace() || c == 0x0b,
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_lowercase() {
        res
    } else {
        !res
    }
}

/// Whether `pat` has none of Lua's special characters (then `find` searches it plainly).
pub(super) fn is_plain(pat: &[u8]) -> bool {
    !pat.iter().any(|c| b"^$*+?.([%-".contains(c))
}

/// Tries `pat` at each position of `src` from `from` on (only at `from` when `anchor`), as
/// lstrlib.c's find/match/gmatch/gsub loops do; a match ending at `lastmatch` is skipped (how
/// gmatch and gsub avoid matching the same empty string twice).
pub(super) fn search(
    src: &[u8],
    pat: &[u8],
    from: usize,
    anchor: bool,
    lastmatch: Option<usize>,
    budget: Budget,
) -> Result<Search, PatternError> {
    let mut m = Matcher {
        src,
        pat,
        level: 0,
        captures: [Slot { init: 0, len: 0 }; MAX_CAPTURES],
        depth: MAX_DEPTH,
        steps: 0,
        next_look: CLOCK_EVERY,
        began: cpu_time::now(),
        attempt_limit: budget.attempt,
    };
    let mut looked = 0u64;
    let mut start = from;
    while start <= src.len() {
        m.level = 0;
        if let Some(end) = m.do_match(start, 0)? {
            if Some(end) != lastmatch {
                return Ok(Search::Found {
                    range: start..end,
                    captures: m.captures()?,
                });
            }
        }
        if anchor {
            break;
        }
        start += 1;
        if m.steps - looked >= CLOCK_EVERY {
            looked = m.steps;
            if cpu_time::now() - m.began >= budget.slice && start <= src.len() {
                return Ok(Search::Continue(start));
            }
        }
    }
    Ok(Search::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Budget = Budget {
        attempt: Duration::from_secs(3600),
        slice: Duration::from_secs(3600),
    };

    type Match = (Range<usize>, Vec<Capture>);

    fn find(src: &str, pat: &str) -> Result<Option<Match>, PatternError> {
        let (anchor, pat) = match pat.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, pat),
        };
        match search(src.as_bytes(), pat.as_bytes(), 0, anchor, None, ROOMY)? {
            Search::Found { range, captures } => Ok(Some((range, captures))),
            Search::NotFound => Ok(None),
            Search::Continue(_) => unreachable!("no slice"),
        }
    }

    fn text(src: &str, pat: &str) -> Option<Vec<String>> {
        let (range, caps) = find(src, pat).unwrap()?;
        if caps.is_empty() {
            return Some(vec![src[range].to_string()]);
        }
        Some(
            caps.into_iter()
                .map(|c| match c {
                    Capture::Text(r) => src[r].to_string(),
                    Capture::Position(p) => format!("@{}", p + 1),
                })
                .collect(),
        )
    }

    #[test]
    fn matches_as_lua_does() {
        // Each expectation is what Lua 5.4's string.match returns for the same arguments.
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            ("hello world", "o w", Some(&["o w"])),
            ("hello world", "(%w+) (%w+)", Some(&["hello", "world"])),
            ("  trim me  ", "^%s*(.-)%s*$", Some(&["trim me"])),
            ("key = value", "(%w+)%s*=%s*(%w+)", Some(&["key", "value"])),
            ("f(a(b)c)d", "%b()", Some(&["(a(b)c)"])),
            ("THE (quick) fox", "%f[%a]%a+", Some(&["THE"])),
            ("abc", "()b()", Some(&["@2", "@3"])),
            ("abab", "(ab)%1", Some(&["ab"])),
            ("aaa", "a-b", None),
            ("aaab", "a-b", Some(&["aaab"])),
            ("x = 1.5e3", "[%d%.e]+", Some(&["1.5e3"])),
            ("a]b", "[]]", Some(&["]"])),
            ("a-b", "[a%-]+", Some(&["a-"])),
            ("123abc", "^%d+$", None),
            (
                "2024-01-02",
                "(%d+)-(%d+)-(%d+)",
                Some(&["2024", "01", "02"]),
            ),
            ("color colour", "colou?r", Some(&["color"])),
            ("", "x*", Some(&[""])),
            ("a\x0bb", "%s", Some(&["\x0b"])),
            ("a.b", "%.", Some(&["."])),
            ("[tag]", "%[(.-)%]", Some(&["tag"])),
            ("end$", "d%$", Some(&["d$"])),
            ("a$b", "$b", Some(&["$b"])),
            // Control characters, and their complement.
            ("a\tb", "%c", Some(&["\t"])),
            ("\x01\x7fab\x02", "%C+", Some(&["ab"])),
            ("abc", "%c", None),
        ];
        for (src, pat, want) in cases {
            let got = text(src, pat);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "string.match({src:?}, {pat:?})");
        }
    }

    #[test]
    fn malformed_patterns_get_luas_messages() {
        let cases = [
            ("%", "malformed pattern (ends with '%')"),
            ("[a", "malformed pattern (missing ']')"),
            ("%b", "malformed pattern (missing arguments to '%b')"),
            (
                "%fa",
                "malformed pattern (missing '[' after '%f' in pattern)",
            ),
            ("(a", "unfinished capture"),
            ("a)", "invalid pattern capture"),
            ("%1", "invalid capture index %1"),
        ];
        for (pat, message) in cases {
            let err = find("a", pat).expect_err(pat);
            assert_eq!(err.to_string(), message, "pattern {pat:?}");
        }
        let many = "()".repeat(MAX_CAPTURES + 1);
        assert_eq!(find("a", &many).unwrap_err(), PatternError::TooManyCaptures);
    }

    #[test]
    fn backtracking_is_refused_within_the_attempt_budget() {
        // Lua's own matcher runs this for hours: O(n^5) steps at the first position alone.
        let src = "a".repeat(100_000);
        let budget = Budget::SCRIPT;
        let began = cpu_time::now();
        let err = search(src.as_bytes(), b".-.-.-.-.-b", 0, false, None, budget).unwrap_err();
        assert_eq!(err, PatternError::TooComplex(budget.attempt));
        assert!(
            cpu_time::now() - began >= budget.attempt,
            "it ran its budget, no less"
        );
    }

    #[test]
    fn a_long_scan_is_cut_into_slices_that_resume_where_they_stopped() {
        let src = format!("{}7", "a".repeat(1_000_000));
        let budget = Budget {
            attempt: Duration::from_secs(3600),
            slice: Duration::ZERO,
        };
        let mut from = 0;
        let mut calls = 0;
        let found = loop {
            calls += 1;
            match search(src.as_bytes(), b"%d", from, false, None, budget).unwrap() {
                Search::Continue(at) => {
                    assert!(at > from, "a slice makes progress");
                    from = at;
                }
                other => break other,
            }
        };
        assert_eq!(
            found,
            Search::Found {
                range: 1_000_000..1_000_001,
                captures: vec![]
            }
        );
        assert!(calls >= 5, "the scan was sliced ({calls} calls)");
    }

    #[test]
    fn deep_recursion_is_refused() {
        let src = "a".repeat(300);
        let pat = "a?".repeat(300);
        let err = find(&src, &pat).unwrap_err();
        assert_eq!(err, PatternError::TooDeep);
    }

    #[test]
    fn lastmatch_skips_an_empty_match_at_the_previous_end() {
        // gsub("abc", "x*", "-") must not match empty twice at the same place.
        let r = search(b"abc", b"x*", 1, false, Some(1), ROOMY).unwrap();
        assert_eq!(
            r,
            Search::Found {
                range: 2..2,
                captures: vec![]
            }
        );
    }
}
