//! Rows of a batch as RocksDB values, for operators that keep rows (joins): a row is its
//! values in postcard, read back into a batch of the same schema.

use crate::error::EngineError;
use crate::record::{Batch, OwnedValue, Value};

/// Appends row `row` of `batch` to `out`.
pub fn encode_row(batch: &Batch, row: usize, out: &mut Vec<u8>) -> Result<(), EngineError> {
    let values: Vec<OwnedValue> = (0..batch.columns().len())
        .map(|c| batch.value(row, c).to_owned_value())
        .collect();
    let bytes = std::mem::take(out);
    *out = postcard::to_extend(&values, bytes)
        .map_err(|e| EngineError::State(format!("cannot encode a row: {e}")))?;
    Ok(())
}

/// Appends the row `bytes` holds to `batch`; refuses bytes that are not a row of the
/// batch's schema.
pub fn decode_row_into(bytes: &[u8], batch: &mut Batch) -> Result<(), EngineError> {
    let values: Vec<OwnedValue> = postcard::from_bytes(bytes)
        .map_err(|e| EngineError::State(format!("a stored row does not decode: {e}")))?;
    let values: Vec<Value<'_>> = values.iter().map(OwnedValue::as_value).collect();
    batch
        .push_row(&values)
        .map_err(|e| EngineError::State(format!("a stored row does not fit: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DataType, Schema};

    #[test]
    fn rows_round_trip_and_a_row_of_another_schema_is_refused() {
        let s = Schema::of(&[("k", DataType::String), ("ts", DataType::Timestamp)]).unwrap();
        let mut b = Batch::new(s.clone());
        b.push_row(&[Value::Str("a"), Value::Timestamp(7)]).unwrap();
        let mut bytes = Vec::new();
        encode_row(&b, 0, &mut bytes).unwrap();
        let mut back = Batch::new(s);
        decode_row_into(&bytes, &mut back).unwrap();
        assert_eq!(back.to_rows(), b.to_rows());
        let other = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let e = decode_row_into(&bytes, &mut Batch::new(other)).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert!(decode_row_into(&[0xff], &mut back).is_err());
    }
}
