//! The seed's `greet` command: `greet("World")` prints `Hello, World!` and returns it.
//!
//! It writes through `wasi:cli/stdout` directly rather than `println!`: std's stdout goes
//! through the preview1 adapter, which would also import `wasi:filesystem` and `wasi:clocks`,
//! and the seed's entry grants `wasi:cli` only.

use wasip2::cli::stdout::get_stdout;

wit_bindgen::generate!({ world: "greet", path: "../wit" });

struct Greet;

impl Guest for Greet {
    fn greet(name: String) -> String {
        let greeting = format!("Hello, {name}!");
        let line = format!("{greeting}\n");
        // A closed stdout is not the greeting's problem: the value is returned either way.
        let _ = get_stdout().blocking_write_and_flush(line.as_bytes());
        greeting
    }
}

export!(Greet);
