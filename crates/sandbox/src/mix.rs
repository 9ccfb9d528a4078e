//! Deterministic made-up values for the receiving side: every generated
//! payment, item and transaction is a pure function of a seed and its index,
//! so that tests can compute what an answer must add up to.

/// A well-mixed 64-bit hash of `(seed, n)` (splitmix64's finaliser).
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(n)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
