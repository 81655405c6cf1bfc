//! Deterministic key hashing, identical on every shard and every machine, so that an
//! exchange routes a key to the same shard wherever it is computed.
//!
//! HOT PATH: called once per record by exchanges and keyed state. No allocation.

use crate::record::column::Column;
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

/// Hashes an int or timestamp; equal to `hash_value(Value::Int(v))`.
#[inline]
pub fn hash_i64(v: i64) -> u64 {
    finish(mix(1, v as u64))
}

/// Hashes a value. Ints and timestamps with the same number hash alike.
#[inline]
pub fn hash_value(value: Value<'_>) -> u64 {
    match value {
        Value::Int(v) | Value::Timestamp(v) => hash_i64(v),
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

/// Replaces `out` with the hash of every value of `column`, in row order. Works column by
/// column, so the type dispatch is per column, not per value.
pub fn hash_column(column: &Column, out: &mut Vec<u64>) {
    out.clear();
    match column {
        Column::Int(v) | Column::Timestamp(v) => out.extend(v.iter().map(|x| hash_i64(*x))),
        other => out.extend((0..other.len()).map(|row| hash_value(other.get(row)))),
    }
}

/// Key groups of a job that does not set `max_parallelism`.
pub const KEY_GROUPS_DEFAULT: usize = 128;

/// The key group (of `groups`) a key's hash belongs to. A job's keys are cut into a fixed
/// number of key groups (its max parallelism) whatever its parallelism, so keyed state can be
/// moved between shards group by group.
pub fn key_group_of(hash: u64, groups: usize) -> usize {
    // Multiply-shift avoids the cost of a division per record.
    ((u128::from(hash) * groups as u128) >> 64) as usize
}

/// The shard (of `shards`) holding key group `group` (of `groups`): each shard holds one
/// contiguous range of groups.
pub fn shard_of_group(group: usize, groups: usize, shards: usize) -> usize {
    debug_assert!(shards > 0 && groups >= shards, "bad key groups");
    group * shards / groups.max(1)
}

/// Maps a hash to one of `targets` shards through its key group (of `groups`).
pub fn target_of(hash: u64, groups: usize, targets: usize) -> usize {
    debug_assert!(targets > 0, "no exchange targets");
    shard_of_group(key_group_of(hash, groups), groups, targets)
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
            counts[target_of(hash_value(Value::Int(k)), KEY_GROUPS_DEFAULT, 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn a_key_group_is_held_whole_by_one_shard_at_any_parallelism() {
        for shards in [1, 2, 3, 7, 128] {
            let mut owner = vec![usize::MAX; KEY_GROUPS_DEFAULT];
            for k in 0..20_000 {
                let h = hash_value(Value::Int(k));
                let (g, s) = (
                    key_group_of(h, KEY_GROUPS_DEFAULT),
                    target_of(h, KEY_GROUPS_DEFAULT, shards),
                );
                assert!(owner[g] == usize::MAX || owner[g] == s, "group {g} split");
                owner[g] = s;
                assert!(s < shards);
            }
            // Contiguous ranges: owners never go down as groups go up.
            let seen: Vec<usize> = owner.iter().copied().filter(|o| *o != usize::MAX).collect();
            assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        }
    }

    #[test]
    fn column_hashes_equal_value_hashes() {
        let ints = Column::Int(vec![1, -7, i64::MAX]);
        let mut out = vec![99];
        hash_column(&ints, &mut out);
        let expected: Vec<_> = [1, -7, i64::MAX]
            .map(|v| hash_value(Value::Timestamp(v)))
            .to_vec();
        assert_eq!(out, expected);
        let mut strs = Column::new(crate::record::DataType::String);
        strs.push(Value::Str("a"));
        strs.push(Value::Str("bc"));
        hash_column(&strs, &mut out);
        assert_eq!(
            out,
            [hash_value(Value::Str("a")), hash_value(Value::Str("bc"))]
        );
    }
}
