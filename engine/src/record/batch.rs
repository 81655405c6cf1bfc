//! Batches: a schema plus one column per field, all of the same length.
//!
//! HOT PATH: rows are appended column by column into buffers that are cleared and reused, so
//! steady-state processing does not allocate per record. No locks, no logging.

use crate::error::EngineError;
use crate::record::column::Column;
use crate::record::schema::SchemaRef;
use crate::record::value::{write_json_string, OwnedValue, Value};

/// The most records a source or operator puts in one batch.
pub const BATCH_RECORDS_MAX: usize = 1024;

/// A columnar batch of records sharing one schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    schema: SchemaRef,
    columns: Vec<Column>,
    len: usize,
}

impl Batch {
    /// Creates an empty batch for `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type))
            .collect();
        Self {
            schema,
            columns,
            len: 0,
        }
    }

    /// Builds a batch from full columns; checks that their types and lengths match `schema`.
    pub fn from_columns(schema: SchemaRef, columns: Vec<Column>) -> Result<Self, EngineError> {
        if columns.len() != schema.len() {
            return Err(EngineError::Plan(format!(
                "batch has {} columns but its schema has {}",
                columns.len(),
                schema.len()
            )));
        }
        let len = columns.first().map_or(0, Column::len);
        for (column, field) in columns.iter().zip(schema.fields()) {
            if column.data_type() != field.data_type || column.len() != len {
                return Err(EngineError::Plan(format!(
                    "column `{}` is {} with {} rows, expected {} with {len} rows",
                    field.name,
                    column.data_type(),
                    column.len(),
                    field.data_type
                )));
            }
        }
        Ok(Self {
            schema,
            columns,
            len,
        })
    }

    /// Returns the schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns column `i`.
    pub fn column(&self, i: usize) -> &Column {
        &self.columns[i]
    }

    /// Returns all columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Gives mutable access to the columns to append a row field by field. Every column must
    /// get exactly one value, then [`Self::commit_row`] is called; [`Self::rollback_to`] undoes
    /// a half-written row.
    pub fn columns_mut(&mut self) -> &mut [Column] {
        &mut self.columns
    }

    /// Counts the row written through [`Self::columns_mut`].
    pub fn commit_row(&mut self) {
        self.len += 1;
        debug_assert!(
            self.columns.iter().all(|c| c.len() == self.len),
            "ragged batch"
        );
    }

    /// Counts `n` rows appended column by column through [`Self::columns_mut`].
    pub fn commit_rows(&mut self, n: usize) {
        self.len += n;
        debug_assert!(
            self.columns.iter().all(|c| c.len() == self.len),
            "ragged batch"
        );
    }

    /// Drops rows from `len` on, including a half-written row.
    pub fn rollback_to(&mut self, len: usize) {
        for column in &mut self.columns {
            column.truncate(len);
        }
        self.len = len.min(self.len);
    }

    /// Removes every row, keeping the buffers.
    pub fn clear(&mut self) {
        self.rollback_to(0);
    }

    /// Appends a row of values; rejects a wrong count or wrong types and leaves the batch as
    /// it was.
    pub fn push_row(&mut self, row: &[Value<'_>]) -> Result<(), EngineError> {
        if row.len() != self.columns.len() {
            return Err(EngineError::Plan(format!(
                "row has {} values but the schema ({}) has {} fields",
                row.len(),
                self.schema,
                self.columns.len()
            )));
        }
        for (i, value) in row.iter().enumerate() {
            if !self.columns[i].push(*value) {
                self.rollback_to(self.len);
                return Err(EngineError::Plan(format!(
                    "value {value} for field `{}` is {}, expected {}",
                    self.schema.fields()[i].name,
                    value.data_type(),
                    self.schema.fields()[i].data_type
                )));
            }
        }
        self.commit_row();
        Ok(())
    }

    /// Appends row `i` of `other`, which must have the same column types.
    pub fn push_row_from(&mut self, other: &Self, i: usize) {
        for (column, source) in self.columns.iter_mut().zip(&other.columns) {
            column.push_from(source, i);
        }
        self.commit_row();
    }

    /// Appends every row of `other`, which must have the same column types.
    pub fn append(&mut self, other: &Self) {
        self.append_rows(other, 0..other.len);
    }

    /// Appends rows `rows` of `other`, which must have the same column types.
    pub fn append_rows(&mut self, other: &Self, rows: std::ops::Range<usize>) {
        for (column, source) in self.columns.iter_mut().zip(&other.columns) {
            column.extend_from_range(source, rows.clone());
        }
        self.len += rows.len();
    }

    /// Appends row `rows.start + i` to `parts[targets[i]]` for every row of `rows`; all parts
    /// have this batch's column types. Works column by column, so the type dispatch is per
    /// column, not per value.
    pub fn scatter(&self, rows: std::ops::Range<usize>, targets: &[u32], parts: &mut [Self]) {
        debug_assert_eq!(targets.len(), rows.len(), "one target per row");
        let first = rows.start;
        for (c, column) in self.columns.iter().enumerate() {
            match column {
                Column::Int(v) | Column::Timestamp(v) => {
                    for (row, t) in targets.iter().enumerate() {
                        let row = first + row;
                        if let Column::Int(o) | Column::Timestamp(o) =
                            &mut parts[*t as usize].columns[c]
                        {
                            o.push(v[row]);
                        }
                    }
                }
                Column::Float(v) => {
                    for (row, t) in targets.iter().enumerate() {
                        let row = first + row;
                        if let Column::Float(o) = &mut parts[*t as usize].columns[c] {
                            o.push(v[row]);
                        }
                    }
                }
                Column::Bool(v) => {
                    for (row, t) in targets.iter().enumerate() {
                        let row = first + row;
                        if let Column::Bool(o) = &mut parts[*t as usize].columns[c] {
                            o.push(v[row]);
                        }
                    }
                }
                Column::Str(v) => {
                    for (row, t) in targets.iter().enumerate() {
                        let row = first + row;
                        if let Column::Str(o) = &mut parts[*t as usize].columns[c] {
                            o.push(v.get(row));
                        }
                    }
                }
            }
        }
        for t in targets {
            parts[*t as usize].len += 1;
        }
        debug_assert!(parts
            .iter()
            .all(|p| p.columns.iter().all(|c| c.len() == p.len)));
    }

    /// Returns field `field` of row `row`.
    pub fn value(&self, row: usize, field: usize) -> Value<'_> {
        self.columns[field].get(row)
    }

    /// Copies the rows out (for tests and small results).
    pub fn to_rows(&self) -> Vec<Vec<OwnedValue>> {
        (0..self.len)
            .map(|r| {
                self.columns
                    .iter()
                    .map(|c| c.get(r).to_owned_value())
                    .collect()
            })
            .collect()
    }

    /// Appends row `row` as one JSON object line (without the newline) to `out`.
    pub fn write_json_row(&self, row: usize, out: &mut String) {
        out.push('{');
        for (i, field) in self.schema.fields().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(&field.name, out);
            out.push(':');
            self.columns[i].get(row).write_json(out);
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::schema::{DataType, Schema};

    #[test]
    fn bad_rows_leave_the_batch_unchanged() {
        let schema = Schema::of(&[("a", DataType::Int), ("b", DataType::String)]).unwrap();
        let mut batch = Batch::new(schema);
        batch.push_row(&[Value::Int(1), Value::Str("x")]).unwrap();
        let err = batch
            .push_row(&[Value::Int(2), Value::Bool(true)])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("field `b` is bool, expected string"),
            "{err}"
        );
        assert!(batch.push_row(&[Value::Int(2)]).is_err());
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.column(0).len(), 1);
        let mut line = String::new();
        batch.write_json_row(0, &mut line);
        assert_eq!(line, r#"{"a":1,"b":"x"}"#);
    }

    #[test]
    fn scatter_keeps_row_order_per_part() {
        let schema = Schema::of(&[("a", DataType::Int), ("b", DataType::String)]).unwrap();
        let mut batch = Batch::new(schema.clone());
        for (a, b) in [(1, "p"), (2, "q"), (3, "r"), (4, "s")] {
            batch.push_row(&[Value::Int(a), Value::Str(b)]).unwrap();
        }
        let mut parts = vec![Batch::new(schema.clone()), Batch::new(schema)];
        batch.scatter(0..4, &[1, 0, 1, 1], &mut parts);
        assert_eq!(
            parts[0].to_rows(),
            [[OwnedValue::Int(2), OwnedValue::Str("q".into())]]
        );
        let firsts: Vec<_> = parts[1]
            .to_rows()
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(
            firsts,
            [OwnedValue::Int(1), OwnedValue::Int(3), OwnedValue::Int(4)]
        );
    }
}
