//! A fast random source for request ids, trace ids, load-balancing tie-breaks and
//! traffic splits. Not for secrets: it is seeded from the standard library's per-process
//! random hash keys and advanced with splitmix64, one state per thread, no locks.

use std::cell::Cell;
use std::hash::BuildHasher;

fn seed() -> u64 {
    let state = std::collections::hash_map::RandomState::new();
    state.hash_one((std::thread::current().id(), std::time::SystemTime::now()))
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// The next 64 random bits of this thread.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let mut z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A random number below `n` (`n` > 0).
pub(crate) fn below(n: usize) -> usize {
    // Multiply-shift keeps the bias negligible for the small n used here.
    ((u128::from(next_u64()) * n as u128) >> 64) as usize
}
