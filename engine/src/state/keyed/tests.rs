//! Tests of keyed state: lookups, limits, retain, and snapshots shared copy-on-write.

use super::*;

fn strings(keys: &[&str]) -> KeyedState<i64> {
    let mut state = KeyedState::new(DataType::String, 1);
    for (i, k) in keys.iter().enumerate() {
        state.entry(Value::Str(k), |_| 0).unwrap()[0] += i as i64 + 1;
    }
    state
}

/// Stores keys 1..=n all under the hash of 1, as a real 64-bit collision is impractical
/// to find.
fn colliding(n: i64) -> KeyedState<i64> {
    let mut state = KeyedState::new(DataType::Int, 1);
    let h = hash_value(Value::Int(1));
    for k in 1..=n {
        state.push_slot(h, Value::Int(k), std::iter::once(k * 10));
    }
    state.relink();
    state
}

#[test]
fn keys_are_found_by_borrowed_values_and_numbered_in_order() {
    let state = strings(&["q", "a", "zz", "a"]);
    assert_eq!(state.len(), 3);
    assert_eq!(state.key(2), Value::Str("zz"));
    assert_eq!(state.get(Value::Str("a")), Some(&[2 + 4][..]));
    assert_eq!(state.get(Value::Str("b")), None);
    let h = hash_value(Value::Str("zz"));
    assert_eq!(state.find(h, Value::Str("zz")), Some(2));
    assert_eq!(state.hash(2), h);
}

#[test]
fn wide_states_keep_width_values_per_key() {
    let mut state: KeyedState<i64> = KeyedState::new(DataType::Int, 3);
    let (slot, new) = state
        .slot_hashed(hash_value(Value::Int(7)), Value::Int(7), |i| i as i64)
        .unwrap();
    assert_eq!((slot, new), (0, true));
    state.entry(Value::Int(8), |i| 10 * i as i64).unwrap()[2] += 1;
    assert_eq!(state.values(0), [0, 1, 2]);
    assert_eq!(state.values(1), [0, 10, 21]);
    let (slot, new) = state
        .slot_hashed(hash_value(Value::Int(7)), Value::Int(7), |_| 99)
        .unwrap();
    assert_eq!((slot, new), (0, false));
}

#[test]
fn chains_of_keys_sharing_a_hash_are_searched_and_survive_retain() {
    let mut state = colliding(4);
    let h = hash_value(Value::Int(1));
    for k in 1..=4 {
        assert_eq!(state.find(h, Value::Int(k)), Some(k as usize - 1));
    }
    assert_eq!(state.find(h, Value::Int(5)), None);
    state.retain(|k, _| k != Value::Int(2));
    assert_eq!(state.len(), 3);
    for (slot, k) in [1, 3, 4].into_iter().enumerate() {
        assert_eq!(state.find(h, Value::Int(k)), Some(slot));
        assert_eq!(state.values(slot), [k * 10]);
    }
    let (mut walked, mut at) = (Vec::new(), state.heads[&h]);
    while at != NO_SLOT {
        walked.push(at);
        at = state.next[at as usize];
    }
    assert_eq!(walked, [0, 1, 2], "the chain keeps slot order");
}

#[test]
fn retain_drops_keys_with_their_values_and_keeps_the_rest_in_order() {
    let mut state: KeyedState<i64> = KeyedState::new(DataType::String, 2);
    for (k, v) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
        state.entry(Value::Str(k), |i| v * 10 + i as i64).unwrap();
    }
    state.retain(|k, values| {
        values[1] += 100;
        k != Value::Str("a") && k != Value::Str("c")
    });
    assert_eq!(state.len(), 2);
    assert_eq!(state.key(0), Value::Str("b"));
    assert_eq!(state.values(0), [20, 121]);
    assert_eq!(state.get(Value::Str("d")), Some(&[40, 141][..]));
    assert_eq!(state.get(Value::Str("a")), None);
    // The dropped keys come back as new ones.
    let (slot, new) = state
        .slot_hashed(hash_value(Value::Str("a")), Value::Str("a"), |_| 0)
        .unwrap();
    assert_eq!((slot, new), (2, true));
}

#[test]
fn a_new_key_beyond_the_limit_or_of_another_type_is_refused_and_changes_nothing() {
    let mut state: KeyedState<i64> = KeyedState::with_keys_max(DataType::Float, 1, 2);
    for k in [1.0, 2.0] {
        state.entry(Value::Float(k), |_| 0).unwrap()[0] += 1;
    }
    let full = state.entry(Value::Float(3.0), |_| 0).unwrap_err();
    assert_eq!(full, KeyRefused::Full { keys_max: 2 });
    assert_eq!(state.len(), 2);
    // Known keys are still served, and dropping keys makes room again.
    state.entry(Value::Float(1.0), |_| 0).unwrap()[0] += 1;
    state.retain(|k, _| k != Value::Float(1.0));
    let wrong = state.entry(Value::Int(3), |_| 0).unwrap_err();
    assert!(
        matches!(
            &wrong,
            KeyRefused::WrongType {
                expected: DataType::Float,
                ..
            }
        ),
        "an int is not a float key: {wrong:?}"
    );
    assert_eq!(state.len(), 1);
    state.entry(Value::Float(3.0), |_| 0).unwrap();
    let message = full.in_operator("window (session)").to_string();
    assert!(
        message.contains("window (session)") && message.contains("keyed_state_keys_max"),
        "{message}"
    );
}

#[test]
fn ints_and_timestamps_are_one_key() {
    let mut state: KeyedState<u8> = KeyedState::new(DataType::Timestamp, 1);
    state.entry(Value::Timestamp(5), |_| 1).unwrap();
    assert_eq!(state.get(Value::Int(5)), Some(&[1][..]));
    state.entry(Value::Int(6), |_| 2).unwrap();
    assert_eq!(state.key(1), Value::Timestamp(6));
    let nan = Value::Float(f64::NAN);
    assert!(same_key(nan, nan));
}

#[test]
fn clear_keeps_working() {
    let mut state: KeyedState<u8> = KeyedState::new(DataType::String, 1);
    for round in 0..3 {
        for k in ["x", "y", "x", "z"] {
            state.entry(Value::Str(k), |_| 0).unwrap();
        }
        assert_eq!(state.len(), 3, "round {round}");
        assert_eq!(state.key(2), Value::Str("z"));
        state.clear();
        assert!(state.is_empty());
        assert_eq!(state.get(Value::Str("x")), None);
    }
}

#[test]
fn a_state_restored_from_its_snapshot_finds_every_key_in_its_slot() {
    let mut state = strings(&["b", "a", "c", "a"]);
    let snapshot = state.snapshot();
    let pairs: Vec<_> = snapshot
        .iter()
        .map(|(k, v)| (k.to_string(), v[0]))
        .collect();
    assert_eq!(pairs, [("b".into(), 1), ("a".into(), 6), ("c".into(), 3)]);
    let mut rebuilt = KeyedState::restore(snapshot.clone(), DataType::String, 1, 10).unwrap();
    assert_eq!(rebuilt.snapshot(), snapshot);
    for slot in 0..3 {
        let key = state.key(slot);
        assert_eq!(rebuilt.find(hash_value(key), key), Some(slot));
    }
}

#[test]
fn a_restore_refuses_snapshots_the_state_could_not_have_made() {
    let snapshot = strings(&["b", "a", "c"]).snapshot();
    let refusal = |change: &dyn Fn(&mut KeyChunk<i64>), width, keys_max| {
        let mut s = snapshot.clone();
        change(Arc::make_mut(&mut s.chunks[0]));
        KeyedState::restore(s, DataType::String, width, keys_max).unwrap_err()
    };
    let m = refusal(&|c| assert!(c.keys.push(Value::Str("a"))), 1, 10);
    assert!(m.contains("chunk 0: 3 values for 4 keys"), "{m}");
    let m = refusal(
        &|c| {
            assert!(c.keys.push(Value::Str("a")));
            c.values.push(0);
        },
        1,
        10,
    );
    assert!(m.contains("key a is in slots 1 and 3"), "{m}");
    let m = refusal(&|_| {}, 1, 2);
    assert!(m.contains("3 keys, more than the 2"), "{m}");
    let m = refusal(&|_| {}, 2, 10);
    assert!(m.contains("1 values per key, expected 2"), "{m}");
    let m = refusal(&|c| c.keys = Column::new(DataType::Int), 1, 10);
    assert!(m.contains("keys are int, expected string"), "{m}");
    // A key repeated in another chunk is refused too.
    let mut s = snapshot.clone();
    s.chunks.push(s.chunks[0].clone());
    let m = KeyedState::restore(s, DataType::String, 1, 10).unwrap_err();
    assert!(m.contains("key b is in slots 0 and 3"), "{m}");
}

/// A state of several chunks: key `k` (0..n) has values `[k, k]`.
fn chunked(n: usize) -> KeyedState<i64> {
    let mut state = KeyedState::new(DataType::Int, 2);
    for k in 0..n as i64 {
        state.entry(Value::Int(k), |_| k).unwrap();
    }
    state
}

#[test]
fn a_snapshot_shares_the_chunks_and_keeps_its_values_when_the_state_changes() {
    let n = 2 * KEYED_CHUNK_SLOTS + 10;
    let mut state = chunked(n);
    let frozen = state.snapshot();
    assert_eq!(frozen.chunks.len(), 3);
    assert_eq!(frozen.len(), n);
    // Writing a key of the middle chunk and adding one to the last copies those two
    // chunks only; the snapshot still has the values it froze.
    state.values_mut(KEYED_CHUNK_SLOTS + 5)[1] = -1;
    state.entry(Value::Int(-7), |_| 99).unwrap();
    let again = state.snapshot();
    assert!(Arc::ptr_eq(&frozen.chunks[0], &again.chunks[0]));
    assert!(!Arc::ptr_eq(&frozen.chunks[1], &again.chunks[1]));
    assert!(!Arc::ptr_eq(&frozen.chunks[2], &again.chunks[2]));
    let frozen_values: Vec<_> = frozen.iter().map(|(_, v)| v.to_vec()).collect();
    assert!(frozen_values
        .iter()
        .enumerate()
        .all(|(k, v)| *v == [k as i64, k as i64]));
    let restored = KeyedState::restore(frozen, DataType::Int, 2, KEYED_STATE_KEYS_MAX).unwrap();
    assert_eq!(restored.len(), n);
    assert_eq!(restored.get(Value::Int(-7)), None);
    assert_eq!(restored.get(Value::Int(4096 + 5)), Some(&[4101, 4101][..]));
    let restored = KeyedState::restore(again, DataType::Int, 2, KEYED_STATE_KEYS_MAX).unwrap();
    assert_eq!(restored.get(Value::Int(4096 + 5)), Some(&[4101, -1][..]));
    assert_eq!(restored.get(Value::Int(-7)), Some(&[99, 99][..]));
    assert_eq!(restored.len(), n + 1);
}

#[test]
fn a_chunk_no_snapshot_holds_any_more_is_taken_back_without_a_copy() {
    let mut state = chunked(10);
    drop(state.snapshot());
    let before = state.values(0).as_ptr();
    state.values_mut(0)[0] = 5;
    assert_eq!(state.values(0).as_ptr(), before, "the chunk was not copied");
    assert_eq!(state.get(Value::Int(0)), Some(&[5, 0][..]));
}

#[test]
fn retain_and_clear_work_across_chunks_and_shared_chunks() {
    let n = 3 * KEYED_CHUNK_SLOTS;
    let mut state = chunked(n);
    let frozen = state.snapshot();
    state.retain(|k, _| matches!(k, Value::Int(k) if k % 3 == 0));
    assert_eq!(state.len(), n / 3);
    for slot in 0..state.len() {
        let k = 3 * slot as i64;
        assert_eq!(state.key(slot), Value::Int(k));
        assert_eq!(state.get(Value::Int(k)), Some(&[k, k][..]));
        assert_eq!(state.get(Value::Int(k + 1)), None);
    }
    assert_eq!(frozen.len(), n, "the snapshot keeps every key");
    state.clear();
    assert!(state.is_empty());
    let refilled = chunked(KEYED_CHUNK_SLOTS + 1);
    for k in 0..KEYED_CHUNK_SLOTS as i64 + 1 {
        state.entry(Value::Int(k), |_| k).unwrap();
    }
    assert_eq!(state.snapshot(), refilled.clone().snapshot());
}
