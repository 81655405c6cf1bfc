//! Deterministic key hashing, identical on every shard and every machine, so that an
//! exchange routes a key to the same shard wherever it is computed.
//!
//! HOT PATH: called once per record by exchanges and keyed state. No allocation.

use crate::record::value::Value;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(state: u64, word: u64) -> u64 {
    (state.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER)
}

fn finish(h: u64) -> u64 {
    // A final avalanche so that low bits (used for shard selection) depend on all input bits.
    let mut h = h ^ (h >> 33);
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// Hashes a value. Ints and timestamps with the same number hash alike.
pub fn hash_value(value: Value<'_>) -> u64 {
    match value {
        Value::Int(v) | Value::Timestamp(v) => finish(mix(1, v as u64)),
        Value::Float(v) => finish(mix(2, v.to_bits())),
        Value::Bool(v) => finish(mix(3, u64::from(v))),
        Value::Str(s) => {
            let bytes = s.as_bytes();
            let mut h = mix(4, bytes.len() as u64);
            let mut chunks = bytes.chunks_exact(8);
            for chunk in &mut chunks {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                h = mix(h, u64::from_le_bytes(word));
            }
            let mut word = [0u8; 8];
            let rest = chunks.remainder();
            word[..rest.len()].copy_from_slice(rest);
            finish(mix(h, u64::from_le_bytes(word)))
        }
    }
}

/// Maps a hash to one of `targets` targets.
pub fn target_of(hash: u64, targets: usize) -> usize {
    debug_assert!(targets > 0, "no exchange targets");
    // Multiply-shift avoids the cost of a division per record.
    ((u128::from(hash) * targets as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_spread() {
        assert_eq!(hash_value(Value::Str("abc")), hash_value(Value::Str("abc")));
        assert_ne!(hash_value(Value::Str("abc")), hash_value(Value::Str("abd")));
        assert_ne!(
            hash_value(Value::Str("abcdefgh")),
            hash_value(Value::Str("abcdefgh\0"))
        );
        let mut counts = [0usize; 4];
        for k in 0..4000 {
            counts[target_of(hash_value(Value::Int(k)), 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }
}
