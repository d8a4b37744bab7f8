//! Misbehaving guests for scheduler and limit scenarios.

use std::hint::black_box;

wit_bindgen::generate!({ world: "hostile", path: "../wit" });

struct Hostile;

impl Guest for Hostile {
    fn sleep(ms: u32) -> u32 {
        let nanos = u64::from(ms) * 1_000_000;
        wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
        ms
    }

    fn spin() -> u64 {
        let mut x: u64 = 1;
        loop {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    fn grow(pages: u32) -> i32 {
        core::arch::wasm32::memory_grow(0, pages as usize) as i32
    }

    fn bomb() -> u32 {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(black_box(vec![1u8; 1 << 20]));
            if blocks.len() == u32::MAX as usize {
                return blocks.len() as u32;
            }
        }
    }

    fn crash() -> u32 {
        core::arch::wasm32::unreachable()
    }

    fn flood(kib: u32) -> u64 {
        Self::write_all(kib)
    }

    fn recurse(depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        // The buffer makes each frame big; black_box keeps the recursion from being folded.
        let frame = black_box([depth as u8; 256]);
        black_box(Self::recurse(depth - 1)) + u32::from(frame[0] & 1)
    }
}

impl Hostile {
    fn write_all(kib: u32) -> u64 {
        let stdout = wasip2::cli::stdout::get_stdout();
        // blocking-write-and-flush takes at most 4096 bytes a call.
        let chunk = [b'x'; 4096];
        let mut written = 0u64;
        let mut left = u64::from(kib) * 1024;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if stdout.blocking_write_and_flush(&chunk[..n]).is_err() {
                break;
            }
            written += n as u64;
            left -= n as u64;
        }
        written
    }
}

export!(Hostile);
