//! Fiber stacks and linear memories carved out of a few large mappings: how an engine holds
//! more processes than wasmtime's pooling allocator can within `vm.max_map_count`.
//!
//! Invariant: taking or giving back a stack or a memory never changes a mapping's protection,
//! so the kernel counts one map per chunk (1 GiB, hundreds of processes), not several per
//! process. The pool's own layout costs 2 maps per slot before anything runs (each fiber stack
//! and its guard page) and up to 7 more per live instance; 65,530 maps held ~8,600 sleepers of
//! one memory each.
//!
//! What that gives up, and what stands in for it:
//! - No guard page under a fiber stack. WebAssembly frames are bounded by wasmtime's own check
//!   (`max_wasm_stack`, 512 KiB of the 2 MiB stack); only host code running past the rest
//!   (1.5 MiB, no host call of ours recurses on guest input) would reach the stack below,
//!   another process's, instead of faulting.
//! - No guard region after a linear memory: the engine compiles explicit bounds checks for
//!   every access (`memory_guard_size(0)`), with Spectre mitigation, as the pool's small
//!   reservations already required for all but small constant offsets.
//! - A memory given back is zeroed by `madvise(MADV_DONTNEED)` (its pages read as zero again),
//!   not reset in place: spawns are slower than from a warm pool slot.

use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory};

use crate::lock::lock;

/// What one mapping holds: the kernel's limit counts mappings, so fewer, larger ones.
const CHUNK_BYTES: usize = 1 << 30;

/// The smallest memory block: one WebAssembly page.
const MIN_MEMORY_BYTES: usize = 64 << 10;

/// Stacks kept resident when given back (the most recently used, which the next processes
/// reuse); past these, a stack's pages go back to the system.
const WARM_STACKS: usize = 1024;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// One mapping, readable and writable throughout, never reserved against the commit limit
/// (pages count only once touched).
struct Chunk {
    base: usize,
    len: usize,
}

impl Chunk {
    /// `flags` adds to a private anonymous mapping (`MAP_STACK` for stacks: their chunks stay
    /// apart from memories' in `/proc/self/smaps`).
    fn map(len: usize, flags: libc::c_int) -> io::Result<Chunk> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | flags,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Small pages only, whatever the system's transparent huge page policy: a process
        // touches a few pages of its stack and memory, and a huge page would make each of
        // those 2 MiB resident. Set on the whole chunk, so it splits no map.
        // SAFETY: advice on the mapping just made.
        unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
        Ok(Chunk {
            base: base as usize,
            len,
        })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: the arena owning the chunk is dropped, and with it every block in it (each
        // block holds the arena).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Blocks of one size: carved from chunks in order, reused last given back first (its pages
/// are the likeliest to be resident still).
struct Slab {
    block: usize,
    /// Added to the chunks' mapping flags.
    flags: libc::c_int,
    chunks: Vec<Chunk>,
    /// Blocks carved from the last chunk.
    carved: usize,
    free: Vec<usize>,
}

impl Slab {
    fn new(block: usize, flags: libc::c_int) -> Slab {
        Slab {
            block,
            flags,
            chunks: Vec::new(),
            carved: 0,
            free: Vec::new(),
        }
    }

    fn per_chunk(&self) -> usize {
        (CHUNK_BYTES / self.block).max(1)
    }

    fn take(&mut self) -> io::Result<usize> {
        if let Some(block) = self.free.pop() {
            return Ok(block);
        }
        if self.chunks.is_empty() || self.carved == self.per_chunk() {
            let chunk = Chunk::map(self.per_chunk() * self.block, self.flags)?;
            tracing::debug!(
                block = self.block,
                chunks = self.chunks.len() + 1,
                "arena chunk mapped"
            );
            self.chunks.push(chunk);
            self.carved = 0;
        }
        let chunk = self.chunks.last().expect("a chunk was just mapped");
        let block = chunk.base + self.carved * self.block;
        self.carved += 1;
        Ok(block)
    }
}

/// Gives a block's first `len` bytes back to the system: they read as zero from now on, and
/// are no longer resident. The mapping (and so the map count) is unchanged.
fn discard(base: usize, len: usize) {
    let len = len.next_multiple_of(page_size());
    if len == 0 {
        return;
    }
    // SAFETY: the range lies in a chunk the arena owns, and no one uses the block any more.
    let done = unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if done != 0 {
        // Cannot fail on a private anonymous mapping of ours; were it to, the block would
        // keep stale bytes, so it must not be reused.
        panic!(
            "madvise(MADV_DONTNEED) of an arena block failed: {}",
            io::Error::last_os_error()
        );
    }
}

/// Fiber stacks of one size, without guard pages (see the module's documentation).
pub struct Stacks {
    slab: Mutex<Slab>,
    size: usize,
    /// Stacks are zeroed when given back (`async_stack_zeroing`).
    zeroing: bool,
}

impl Stacks {
    /// Stacks of `size` bytes (rounded up to whole pages), the size the engine asks for.
    pub fn new(size: usize, zeroing: bool) -> Arc<Stacks> {
        let size = size.next_multiple_of(page_size());
        Arc::new(Stacks {
            slab: Mutex::new(Slab::new(size, libc::MAP_STACK)),
            size,
            zeroing,
        })
    }

    /// Mappings made so far.
    #[cfg(test)]
    fn chunks(&self) -> usize {
        lock(&self.slab).chunks.len()
    }
}

struct Stack {
    stacks: Arc<Stacks>,
    base: usize,
}

/// A handle wasmtime can hold: the engine's configuration owns it.
pub struct StackSource {
    pub stacks: Arc<Stacks>,
    /// Its stores use one fiber each, so a waiting process's stack may be hibernated (see
    /// [`crate::hibernation`]): the main engine's, not the concurrent one's.
    pub hibernates: bool,
}

// SAFETY: every stack is a distinct, page-aligned block of a readable and writable mapping,
// zero when first handed out (fresh anonymous pages), owned by its `Stack` until dropped.
unsafe impl StackCreator for StackSource {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let stacks = &self.stacks;
        if size > stacks.size {
            wasmtime::bail!(
                "a fiber stack of {size} bytes was asked of an arena of {}",
                stacks.size
            );
        }
        let base = lock(&stacks.slab).take()?;
        let _ = zeroed; // Given back zeroed when the engine asks for zeroing (see `Drop`).
        if self.hibernates {
            crate::hibernation::stack_made(base..base + stacks.size);
        }
        Ok(Box::new(Stack {
            stacks: stacks.clone(),
            base,
        }))
    }
}

// SAFETY: as above; the range is exactly the block.
unsafe impl StackMemory for Stack {
    fn top(&self) -> *mut u8 {
        (self.base + self.stacks.size) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.base..self.base + self.stacks.size
    }

    fn guard_range(&self) -> Range<*mut u8> {
        // None: see the module's documentation.
        std::ptr::null_mut()..std::ptr::null_mut()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut slab = lock(&self.stacks.slab);
        if self.stacks.zeroing || slab.free.len() >= WARM_STACKS {
            discard(self.base, self.stacks.size);
        }
        slab.free.push(self.base);
    }
}

/// Linear memories in blocks of 64 KiB × 2^k, at most `max` bytes each, without guard regions
/// (see the module's documentation).
pub struct Memories {
    classes: Mutex<Vec<Slab>>,
    max: usize,
    /// Its stores' memories may be hibernated (see [`crate::hibernation`]): the main engine's,
    /// as for [`StackSource::hibernates`].
    hibernates: bool,
}

impl Memories {
    pub fn new(max: usize, hibernates: bool) -> Arc<Memories> {
        Arc::new(Memories {
            classes: Mutex::new(Vec::new()),
            max,
            hibernates,
        })
    }

    /// Mappings made so far.
    #[cfg(test)]
    fn chunks(&self) -> usize {
        lock(&self.classes).iter().map(|s| s.chunks.len()).sum()
    }

    /// The class of the smallest block that holds `bytes`.
    fn class(bytes: usize) -> usize {
        let blocks = bytes.div_ceil(MIN_MEMORY_BYTES).max(1);
        blocks.next_power_of_two().trailing_zeros() as usize
    }

    fn take(&self, class: usize) -> io::Result<usize> {
        let mut classes = lock(&self.classes);
        while classes.len() <= class {
            let block = MIN_MEMORY_BYTES << classes.len();
            classes.push(Slab::new(block, 0));
        }
        classes[class].take()
    }

    /// Gives back a block whose first `used` bytes may have been written.
    fn give(&self, class: usize, base: usize, used: usize) {
        discard(base, used);
        lock(&self.classes)[class].free.push(base);
    }
}

/// A handle wasmtime can hold: the engine's configuration owns it.
pub struct MemorySource(pub Arc<Memories>);

// SAFETY: every memory is a distinct block of a readable and writable mapping, zero when handed
// out (fresh, or discarded when given back), at least as large as asked, owned by its
// `Memory` until dropped. No guard region is promised: the engine is configured without one.
unsafe impl MemoryCreator for MemorySource {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let memories = &self.0;
        if guard_size_in_bytes != 0 {
            return Err(format!(
                "arena memories have no guard region ({guard_size_in_bytes} bytes asked)"
            ));
        }
        let max = maximum.unwrap_or(usize::MAX).min(memories.max);
        let reserved = reserved_size_in_bytes.unwrap_or(0);
        if minimum > max || reserved > memories.max {
            return Err(format!(
                "a memory of {minimum} bytes (reserving {reserved}) does not fit the pool's {} bytes",
                memories.max
            ));
        }
        let class = Memories::class(minimum.max(reserved));
        let base = memories.take(class).map_err(|e| e.to_string())?;
        let memory = Box::new(Memory {
            memories: memories.clone(),
            base,
            class,
            size: minimum,
            max,
        });
        if memories.hibernates {
            let at = std::ptr::NonNull::from(&*memory).addr();
            crate::hibernation::memory_made(MemoryPlace(at));
        }
        Ok(memory)
    }
}

/// Where an arena memory's description lives (its box, which wasmtime holds and never moves),
/// for hibernation to find the block it occupies now: a memory that grows past its block moves
/// to another.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) struct MemoryPlace(std::num::NonZeroUsize);

impl MemoryPlace {
    /// A place that is never read, for tests.
    #[cfg(test)]
    pub(crate) fn at(n: std::num::NonZeroUsize) -> MemoryPlace {
        MemoryPlace(n)
    }

    /// The bytes the guest may have written (the block's accessible part), and the whole
    /// block (the rest of it reads as zero and is not resident).
    ///
    /// # Safety
    /// The memory is alive (its store is), and nothing grows it meanwhile (its store is not
    /// in use).
    pub(crate) unsafe fn extent(self) -> (Range<usize>, Range<usize>) {
        // SAFETY: the caller's promise; `Memory` is boxed at creation and dropped whole.
        let memory = unsafe { &*(self.0.get() as *const Memory) };
        (
            memory.base..memory.base + memory.size,
            memory.base..memory.base + memory.byte_capacity(),
        )
    }
}

struct Memory {
    memories: Arc<Memories>,
    base: usize,
    class: usize,
    /// Accessible bytes: what the guest may have written.
    size: usize,
    max: usize,
}

// SAFETY: `as_ptr` is the block's start, valid for `byte_capacity` bytes while the memory
// lives; growth within the block keeps the base, growth past it moves the bytes to a larger
// block (the engine allows memories to move).
unsafe impl LinearMemory for Memory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        MIN_MEMORY_BYTES << self.class
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.max {
            wasmtime::bail!(
                "a memory cannot grow to {new_size} bytes: its pool slot holds {}",
                self.max
            );
        }
        if new_size > self.byte_capacity() {
            let class = Memories::class(new_size);
            let base = self.memories.take(class)?;
            // SAFETY: two distinct blocks, the new one at least `size` long and all zero.
            unsafe { copy_held(self.base, base, self.size) };
            self.memories.give(self.class, self.base, self.size);
            (self.base, self.class) = (base, class);
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base as *mut u8
    }
}

/// The first `len` bytes of the block at `from` to the block at `to`, which reads as zero: only
/// the pages that hold data, as the rest are zero too. Copied whole, a memory that grows past
/// its block would make every page of its old size resident in the new one (a Rust guest's
/// first move copies its 1.1 MiB, most of it never touched).
///
/// # Safety
/// Two distinct page-aligned blocks of the arena's, `len` bytes long at least, the second all
/// zero.
unsafe fn copy_held(from: usize, to: usize, len: usize) {
    let copy = |at: usize, n: usize| {
        // SAFETY: the caller's promise; `at..at + n` lies in the first `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(at as *const u8, (to + (at - from)) as *mut u8, n) }
    };
    let page = crate::pagemap::page_size();
    let copied = page.and_then(|page| {
        crate::pagemap::held_pages(&(from..from + len), &mut |at| {
            let n = page.min(from + len - at);
            // SAFETY: as for `copy`; a page the guest only read is all zero, and copying it
            // would make its copy resident.
            let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, n) };
            if bytes.iter().any(|&b| b != 0) {
                copy(at, n);
            }
            true
        })
    });
    if copied.is_none() {
        // The pages cannot be told (or the read failed midway): all of them.
        copy(from, len);
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if self.memories.hibernates {
            crate::hibernation::memory_gone();
        }
        self.memories.give(self.class, self.base, self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps() -> usize {
        std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().count())
            .unwrap_or(0)
    }

    #[test]
    fn classes_are_the_smallest_power_of_two_pages_that_hold_the_size() {
        assert_eq!(Memories::class(0), 0);
        assert_eq!(Memories::class(1), 0);
        assert_eq!(Memories::class(64 << 10), 0);
        assert_eq!(Memories::class((64 << 10) + 1), 1);
        assert_eq!(Memories::class(17 * (64 << 10)), 5);
    }

    #[test]
    fn a_memory_given_back_reads_as_zero_when_taken_again() {
        let source = MemorySource(Memories::new(4 << 20, false));
        let ty = MemoryType::new(1, None);
        let mut memory = source
            .new_memory(ty.clone(), 64 << 10, None, Some(0), 0)
            .unwrap();
        let first = memory.as_ptr();
        // SAFETY: within the memory's size.
        unsafe { first.add(100).write(7) };
        memory.grow_to(3 << 20).unwrap();
        // Moved to a larger block, its bytes with it.
        // SAFETY: within the memory's size.
        assert_eq!(unsafe { memory.as_ptr().add(100).read() }, 7);
        assert!(memory.grow_to(5 << 20).is_err(), "past the pool's maximum");
        drop(memory);
        let again = source.new_memory(ty, 64 << 10, None, Some(0), 0).unwrap();
        assert_eq!(again.as_ptr(), first, "the block given back is reused");
        // SAFETY: within the memory's size.
        assert_eq!(unsafe { again.as_ptr().add(100).read() }, 0);
        assert!(source
            .new_memory(MemoryType::new(1, None), 1, None, None, 4096)
            .is_err());
    }

    #[test]
    fn a_memory_that_moves_as_it_grows_takes_only_its_pages_that_hold_data_along() {
        let source = MemorySource(Memories::new(4 << 20, false));
        let mut memory = source
            .new_memory(MemoryType::new(1, None), 64 << 10, None, Some(0), 0)
            .unwrap();
        // SAFETY: within the memory's size.
        unsafe {
            memory.as_ptr().add(100).write(7);
            memory.as_ptr().add(40 << 10).write(9);
            let _ = memory.as_ptr().add(20 << 10).read_volatile();
        }
        memory.grow_to(3 << 20).unwrap();
        let moved = memory.as_ptr() as usize;
        // SAFETY: within the memory's size.
        unsafe {
            assert_eq!(memory.as_ptr().add(100).read(), 7);
            assert_eq!(memory.as_ptr().add(40 << 10).read(), 9);
        }
        if crate::pagemap::page_size() == Some(4096) {
            let resident = crate::pagemap::tests::resident_pages(&(moved..moved + (64 << 10)));
            // The two written; not the one read (zero), nor the 13 never touched.
            assert_eq!(resident, 2, "pages resident after the move");
        }
    }

    #[test]
    fn thousands_of_stacks_and_memories_take_a_few_maps() {
        let before = maps();
        let stacks = StackSource {
            stacks: Stacks::new(256 << 10, false),
            hibernates: false,
        };
        let memories = MemorySource(Memories::new(1 << 20, false));
        let held: Vec<_> = (0..5_000)
            .map(|_| {
                let stack = stacks.new_stack(256 << 10, false).unwrap();
                let memory = memories
                    .new_memory(MemoryType::new(1, None), 64 << 10, None, Some(0), 0)
                    .unwrap();
                // SAFETY: the top word of the stack, the first of the memory.
                unsafe {
                    stack.top().sub(8).write(1);
                    memory.as_ptr().write(1);
                }
                (stack, memory)
            })
            .collect();
        let chunks = stacks.stacks.chunks() + memories.0.chunks();
        assert!(chunks <= 4, "{chunks} chunks");
        // Other tests run beside this one and map too: a margin, far below 2 per process.
        assert!(maps() < before + 200, "{} maps for 5,000", maps() - before);
        drop(held);
    }
}
