//! The seed's `compute` worker: `compute(6, 7)` returns 42.

wit_bindgen::generate!({ world: "compute", path: "../wit" });

struct Compute;

impl Guest for Compute {
    fn compute(a: i32, b: i32) -> i32 {
        // Wrapping: an overflowing product is a value, not a trap, so the host sees an EXIT value.
        a.wrapping_mul(b)
    }
}

export!(Compute);
