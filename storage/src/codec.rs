//! Encoding of values stored in RocksDB.
//!
//! Values use postcard (compact, serde-based); log keys use big-endian `u64`
//! so RocksDB's byte order is log order.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a log index as a key that sorts in index order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Decodes a key written by [`index_key`].
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_in_index_order() {
        let indexes = [0u64, 1, 255, 256, 65_535, 1 << 40, u64::MAX];
        for pair in indexes.windows(2) {
            assert!(index_key(pair[0]) < index_key(pair[1]), "{pair:?}");
            assert_eq!(key_index(&index_key(pair[0])), Some(pair[0]));
        }
        assert_eq!(key_index(b"short"), None);
    }
}
