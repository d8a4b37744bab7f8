//! A hibernated stack's live words, kept as what differs from a template: processes asleep at
//! the same place hold mostly the same words (return addresses, frame offsets from the
//! stack's start, constants, zeros), so each keeps a bit per word and the words that differ.
//! Measured on 100,000 sleepers asleep in a WASI call: 54-82 of 293 words differ.
//!
//! A word that points into its own stack is compared and kept as its offset from the stack's
//! start (each stack is at its own address), and written back against the stack it returns
//! to, which is the same one. The template of a live length is the first image of that
//! length among one program's processes; a program keeps at most [`MAX_TEMPLATES`], of at
//! most [`MAX_TEMPLATE_WORDS`] (an image of another length keeps every word). Per program, so
//! that a guest choosing how deep it sleeps can only make its own program's images larger.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::lock::lock;

/// Templates a program keeps, and the longest: bounded (at most 128 KiB a program), as a
/// guest chooses how deep it sleeps. A process asleep in a WASI call has ~300 live words.
const MAX_TEMPLATES: usize = 16;
const MAX_TEMPLATE_WORDS: usize = 1024;

const WORD: usize = std::mem::size_of::<u64>();

/// A program's templates: the first image of each live length among its processes, its
/// words as [`Normal`] values.
#[derive(Default)]
pub(crate) struct Templates(Mutex<Vec<Arc<Template>>>);

struct Template {
    words: Box<[u64]>,
    /// A bit per word: it is an offset into the stack, not a value.
    in_stack: Box<[u64]>,
}

/// A word as compared: an offset from the stack's start if it points into the stack, else
/// its value.
#[derive(Clone, Copy, PartialEq)]
struct Normal {
    in_stack: bool,
    word: u64,
}

impl Normal {
    fn of(word: u64, stack: &Range<usize>) -> Normal {
        match usize::try_from(word) {
            Ok(at) if stack.contains(&at) => Normal {
                in_stack: true,
                word: (at - stack.start) as u64,
            },
            _ => Normal {
                in_stack: false,
                word,
            },
        }
    }

    fn word(self, stack: &Range<usize>) -> u64 {
        if self.in_stack {
            stack.start as u64 + self.word
        } else {
            self.word
        }
    }
}

impl Template {
    fn of(words: &[u64], stack: &Range<usize>) -> Template {
        let mut in_stack = vec![0u64; words.len().div_ceil(64)].into_boxed_slice();
        let words = words
            .iter()
            .enumerate()
            .map(|(i, &word)| {
                let normal = Normal::of(word, stack);
                in_stack[i / 64] |= u64::from(normal.in_stack) << (i % 64);
                normal.word
            })
            .collect();
        Template { words, in_stack }
    }

    fn normal(&self, i: usize) -> Normal {
        Normal {
            in_stack: self.in_stack[i / 64] >> (i % 64) & 1 == 1,
            word: self.words[i],
        }
    }

    /// The template among `templates` for images as long as `words`, made from them if there
    /// is none yet and room for one.
    fn for_words(
        templates: &Templates,
        words: &[u64],
        stack: &Range<usize>,
    ) -> Option<Arc<Template>> {
        let mut templates = lock(&templates.0);
        if let Some(template) = templates.iter().find(|t| t.words.len() == words.len()) {
            return Some(template.clone());
        }
        if templates.len() == MAX_TEMPLATES || words.len() > MAX_TEMPLATE_WORDS {
            return None;
        }
        let template = Arc::new(Template::of(words, stack));
        templates.push(template.clone());
        Some(template)
    }
}

/// The live words of a suspended stack, from `from` to the stack's top.
pub(super) struct Image {
    from: usize,
    len: u32,
    /// Shifts kept (see [`MAX_SHIFTS`]).
    shifts: u32,
    template: Option<Arc<Template>>,
    /// A bit per word, set where it differs from the template (every bit without one); where
    /// there are shifts, a code of 4 bits per word that differs (0: kept as it is; k: the
    /// template's word plus the k-th shift); the shifts; then the words kept as they are, in
    /// order.
    packed: Box<[u64]>,
}

/// The most shifts an image keeps: a word that differs from its template by one of them
/// costs 4 bits, not 8 bytes. A process's own objects (its store, its instance, its task)
/// are at addresses of their own, and the words that point into one of them differ from
/// the template's by the same amount: 70 words that differ took 12 shifts and 9 words kept
/// as they are, measured on a Rust guest asleep in a WASI call.
const MAX_SHIFTS: usize = 15;

/// 4-bit codes in a word.
const CODES_PER_WORD: usize = 16;

impl Image {
    /// The words of `stack` from `from` (8-aligned, inside it) to its top, against the
    /// program's `templates`.
    pub(super) fn take(templates: &Templates, stack: &Range<usize>, from: usize) -> Image {
        let len = (stack.end - from) / WORD;
        let words: Vec<u64> = (0..len)
            // SAFETY: inside the stack, aligned (checked by the caller), and nothing else
            // touches it while its fiber is suspended. Read as integers: bytes some frame
            // never wrote are whatever the memory holds, as a copy of them would be.
            .map(|i| unsafe { ((from + i * WORD) as *const u64).read_volatile() })
            .collect();
        let template = Template::for_words(templates, &words, stack);
        let differs = |i: usize| {
            template
                .as_ref()
                .is_none_or(|t| t.normal(i) != Normal::of(words[i], stack))
        };
        let bits = len.div_ceil(64);
        let mut differing = vec![0u64; bits];
        let kept: Vec<usize> = (0..len).filter(|&i| differs(i)).collect();
        for &i in &kept {
            differing[i / 64] |= 1 << (i % 64);
        }
        let shift_of = |i: usize| {
            let template = template.as_ref().expect("shifts are against a template");
            words[i].wrapping_sub(template.normal(i).word(stack))
        };
        let shifts = match template {
            Some(_) => common_shifts(kept.iter().map(|&i| shift_of(i)).collect()),
            None => Vec::new(),
        };
        let codes: Vec<usize> = match shifts.is_empty() {
            true => Vec::new(),
            false => kept
                .iter()
                .map(|&i| {
                    shifts
                        .iter()
                        .position(|&s| s == shift_of(i))
                        .map_or(0, |k| k + 1)
                })
                .collect(),
        };
        let literal = |n: usize| codes.get(n).is_none_or(|&code| code == 0);
        let code_words = codes.len().div_ceil(CODES_PER_WORD);
        let literals = (0..kept.len()).filter(|&n| literal(n)).count();
        // Sized exactly: grown by pushes, a deep stack's would pass glibc's threshold for a
        // mapping of its own (128 KiB) on its way.
        let mut packed = Vec::with_capacity(bits + code_words + shifts.len() + literals);
        packed.extend_from_slice(&differing);
        packed.extend(codes.chunks(CODES_PER_WORD).map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u64, |word, (j, &code)| word | (code as u64) << (4 * j))
        }));
        packed.extend_from_slice(&shifts);
        packed.extend(
            kept.iter()
                .enumerate()
                .filter(|&(n, _)| literal(n))
                .map(|(_, &i)| words[i]),
        );
        Image {
            from,
            len: len as u32,
            shifts: shifts.len() as u32,
            template,
            packed: packed.into_boxed_slice(),
        }
    }

    /// The words back where they were in `stack`, the one they were taken from.
    pub(super) fn put_back(self, stack: &Range<usize>) {
        let len = self.len as usize;
        let bits = len.div_ceil(64);
        let differing = &self.packed[..bits];
        let kept = differing
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum::<usize>();
        let code_words = match self.shifts {
            0 => 0,
            _ => kept.div_ceil(CODES_PER_WORD),
        };
        let codes = &self.packed[bits..bits + code_words];
        let shifts = &self.packed[bits + code_words..bits + code_words + self.shifts as usize];
        let mut literals = self.packed[bits + code_words + shifts.len()..].iter();
        let mut n = 0;
        for i in 0..len {
            let word = match &self.template {
                Some(template) if differing[i / 64] >> (i % 64) & 1 == 0 => {
                    template.normal(i).word(stack)
                }
                Some(template) if !codes.is_empty() => {
                    let code = codes[n / CODES_PER_WORD] >> (4 * (n % CODES_PER_WORD)) & 0xf;
                    n += 1;
                    match code {
                        0 => *literals.next().expect("a word kept for every code 0"),
                        k => template
                            .normal(i)
                            .word(stack)
                            .wrapping_add(shifts[k as usize - 1]),
                    }
                }
                _ => *literals.next().expect("a word kept for every bit set"),
            };
            // SAFETY: the same words of the same stack, whose fiber has not run since.
            unsafe { ((self.from + i * WORD) as *mut u64).write(word) };
        }
    }

    /// The bytes it holds on the heap (besides the shared template).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.packed.len() * WORD
    }
}

/// The shifts worth keeping among `shifts` (one per word that differs): the most common, of
/// those shared by two words or more (one word's own shift saves nothing).
fn common_shifts(mut shifts: Vec<u64>) -> Vec<u64> {
    shifts.sort_unstable();
    let mut runs: Vec<(usize, u64)> = shifts
        .chunk_by(|a, b| a == b)
        .filter(|run| run.len() >= 2)
        .map(|run| (run.len(), run[0]))
        .collect();
    runs.sort_unstable_by(|a, b| b.cmp(a));
    runs.into_iter()
        .take(MAX_SHIFTS)
        .map(|(_, shift)| shift)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `memory` as the range of a stack.
    fn stack_of(memory: &mut [u64]) -> Range<usize> {
        let start = memory.as_mut_ptr() as usize;
        start..start + memory.len() * WORD
    }

    #[test]
    fn an_image_like_the_template_keeps_only_what_differs_and_comes_back_whole() {
        // Two stacks asleep at the same place: the same constants and offsets into their own
        // stacks, two values that differ.
        let fill = |memory: &mut [u64], seed: u64| {
            let stack = stack_of(memory);
            for (i, word) in memory.iter_mut().enumerate() {
                *word = match i % 4 {
                    0 => 0,
                    1 => 0x5555_0000 + i as u64,
                    2 => (stack.start + 8 * ((i + 5) % 200)) as u64,
                    _ => 0x7f00_dead_0000 + i as u64,
                };
            }
            memory[10] = seed;
            memory[150] = seed.rotate_left(17);
        };
        let mut first = vec![0u64; 200];
        let mut second = vec![0u64; 200];
        fill(&mut first, 1);
        fill(&mut second, 2);
        let (a, b) = (stack_of(&mut first), stack_of(&mut second));
        let want = (first.clone(), second.clone());
        let templates = Templates::default();
        let taken_a = Image::take(&templates, &a, a.start);
        let taken_b = Image::take(&templates, &b, b.start);
        assert_eq!(
            taken_a.held(),
            4 * WORD,
            "the template's own image: the bits only"
        );
        assert_eq!(
            taken_b.held(),
            4 * WORD + 2 * WORD,
            "the bits, and the two that differ"
        );
        first.iter_mut().for_each(|w| *w = 0);
        second.iter_mut().for_each(|w| *w = 0);
        taken_a.put_back(&a);
        taken_b.put_back(&b);
        assert!(first == want.0 && second == want.1);
    }

    #[test]
    fn words_shifted_alike_from_the_template_keep_only_their_shift() {
        // The template's words point at objects of its own process; the image's at the same
        // objects of another, 40 of them shifted by one amount, 20 by another; 3 differ
        // otherwise.
        let objects = |base: u64| -> Vec<u64> {
            (0..100u64)
                .map(|i| match i % 5 {
                    0 | 1 => base + 8 * i,
                    2 => 0x7f00_0000_0000 + 2 * base + i,
                    _ => i,
                })
                .collect()
        };
        let mut first = objects(0x5555_0000);
        let mut second = objects(0x6666_0000);
        for (k, i) in [3, 8, 13].into_iter().enumerate() {
            second[i] = 1000 + k as u64;
        }
        let (a, b) = (stack_of(&mut first), stack_of(&mut second));
        let templates = Templates::default();
        let _template = Image::take(&templates, &a, a.start);
        let want = second.clone();
        let taken = Image::take(&templates, &b, b.start);
        // 2 words of bits; 63 codes (4 words); 2 shifts; 3 words as they are.
        assert_eq!(taken.held(), (2 + 4 + 2 + 3) * WORD);
        second.iter_mut().for_each(|w| *w = 0);
        taken.put_back(&b);
        assert_eq!(second, want);
    }

    #[test]
    fn the_most_common_shifts_are_kept_and_a_words_own_is_not() {
        let mut shifts = vec![5, 9, 9, 1, 5, 5, 7];
        shifts.extend((100..140).flat_map(|s| [s, s]));
        let kept = common_shifts(shifts);
        assert_eq!(kept.len(), MAX_SHIFTS);
        assert_eq!(kept[0], 5, "the most common first");
        assert!(
            !kept.contains(&1) && !kept.contains(&7),
            "each one word's own"
        );
    }

    #[test]
    fn an_image_unlike_its_template_keeps_every_word_and_comes_back_whole() {
        let mut first = vec![7u64; 130];
        let mut second: Vec<u64> = (0..130u64).map(|i| i * 0x1_0000_0001 + 1).collect();
        let (a, b) = (stack_of(&mut first), stack_of(&mut second));
        let templates = Templates::default();
        let _template = Image::take(&templates, &a, a.start);
        let want = second.clone();
        let taken = Image::take(&templates, &b, b.start);
        assert_eq!(taken.held(), (3 + 130) * WORD, "the bits, and every word");
        second.iter_mut().for_each(|w| *w = 0);
        taken.put_back(&b);
        assert_eq!(second, want);
    }

    #[test]
    fn a_program_that_filled_its_templates_does_not_change_anothers_images() {
        let mut words: Vec<u64> = (0..100u64).map(|i| i << 40).collect();
        let stack = stack_of(&mut words);
        let filled = Templates::default();
        for i in 0..MAX_TEMPLATES {
            let _ = Image::take(&filled, &stack, stack.start + i * WORD);
        }
        let other = Templates::default();
        let _ = Image::take(&other, &stack, stack.start + 90 * WORD);
        let from = stack.start + 90 * WORD;
        let bits = WORD;
        assert_eq!(
            Image::take(&filled, &stack, from).held(),
            bits + 10 * WORD,
            "no room left"
        );
        assert_eq!(
            Image::take(&other, &stack, from).held(),
            bits,
            "its own template"
        );
    }
}
