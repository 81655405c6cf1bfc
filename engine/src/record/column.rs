//! Columns: one typed vector per field.
//!
//! HOT PATH: columns are appended to per record. No per-record allocation (buffers are
//! reused across batches), no locks, no logging.

use serde::{Deserialize, Serialize};

use crate::record::schema::DataType;
use crate::record::value::Value;

/// Strings of a column packed into one buffer; `ends[i]` is the end offset of string `i`.
///
/// Serialised as its buffer and offsets; reading it back checks that the offsets are
/// ordered, end at the buffer's end and fall on character boundaries, so a corrupt
/// checkpoint cannot make [`Self::get`] panic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StrColumnParts")]
pub struct StrColumn {
    data: String,
    ends: Vec<usize>,
}

/// The serialised form of a [`StrColumn`], checked before it becomes one.
#[derive(Deserialize)]
struct StrColumnParts {
    data: String,
    ends: Vec<usize>,
}

impl TryFrom<StrColumnParts> for StrColumn {
    type Error = String;

    fn try_from(parts: StrColumnParts) -> Result<Self, String> {
        let StrColumnParts { data, ends } = parts;
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            if end < start || end > data.len() || !data.is_char_boundary(end) {
                return Err(format!(
                    "string {i} of a column ends at byte {end}, which is not a string end                      after byte {start} in its {}-byte buffer",
                    data.len()
                ));
            }
            start = end;
        }
        if start != data.len() {
            return Err(format!(
                "a string column's buffer has {} bytes after its last string",
                data.len() - start
            ));
        }
        Ok(Self { data, ends })
    }
}

impl StrColumn {
    /// Returns string `i`.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Appends a string.
    pub fn push(&mut self, s: &str) {
        self.data.push_str(s);
        self.ends.push(self.data.len());
    }

    /// Gives access to the string buffer to build a value in place; call [`Self::finish`]
    /// once the value is complete.
    pub fn buffer(&mut self) -> &mut String {
        &mut self.data
    }

    /// Ends the value built in place through [`Self::buffer`].
    pub fn finish(&mut self) {
        self.ends.push(self.data.len());
    }

    /// Returns the number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Returns the byte length of string `i`.
    pub fn byte_len(&self, i: usize) -> usize {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.ends[i] - start
    }

    /// Returns the packed bytes of strings `rows` (their concatenation).
    pub fn packed(&self, rows: std::ops::Range<usize>) -> &str {
        if rows.is_empty() {
            return "";
        }
        let start = if rows.start == 0 {
            0
        } else {
            self.ends[rows.start - 1]
        };
        &self.data[start..self.ends[rows.end - 1]]
    }

    /// Returns whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Removes every string, keeping the buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Keeps the strings `i` for which `keep(i)` is true, in their order.
    pub fn retain_rows(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut data = String::with_capacity(self.data.len());
        let mut ends = Vec::with_capacity(self.ends.len());
        for i in 0..self.ends.len() {
            if keep(i) {
                data.push_str(self.get(i));
                ends.push(data.len());
            }
        }
        self.data = data;
        self.ends = ends;
    }

    /// Keeps the first `len` strings.
    pub fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            let end = if len == 0 { 0 } else { self.ends[len - 1] };
            self.data.truncate(end);
            self.ends.truncate(len);
        }
    }
}

/// One column of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Column {
    /// Ints.
    Int(Vec<i64>),
    /// Floats.
    Float(Vec<f64>),
    /// Bools.
    Bool(Vec<bool>),
    /// Strings.
    Str(StrColumn),
    /// Timestamps (epoch milliseconds).
    Timestamp(Vec<i64>),
}

impl Column {
    /// Creates an empty column of type `data_type`.
    pub fn new(data_type: DataType) -> Self {
        match data_type {
            DataType::Int => Self::Int(Vec::new()),
            DataType::Float => Self::Float(Vec::new()),
            DataType::Bool => Self::Bool(Vec::new()),
            DataType::String => Self::Str(StrColumn::default()),
            DataType::Timestamp => Self::Timestamp(Vec::new()),
        }
    }

    /// Returns the type of the column.
    pub fn data_type(&self) -> DataType {
        match self {
            Self::Int(_) => DataType::Int,
            Self::Float(_) => DataType::Float,
            Self::Bool(_) => DataType::Bool,
            Self::Str(_) => DataType::String,
            Self::Timestamp(_) => DataType::Timestamp,
        }
    }

    /// Returns the number of values.
    pub fn len(&self) -> usize {
        match self {
            Self::Int(v) | Self::Timestamp(v) => v.len(),
            Self::Float(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Str(v) => v.len(),
        }
    }

    /// Returns whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximately how many bytes of memory the column's buffers take.
    pub fn state_bytes(&self) -> u64 {
        let bytes = match self {
            Self::Int(v) | Self::Timestamp(v) => v.capacity() * 8,
            Self::Float(v) => v.capacity() * 8,
            Self::Bool(v) => v.capacity(),
            Self::Str(v) => v.data.capacity() + v.ends.capacity() * 8,
        };
        (std::mem::size_of::<Self>() + bytes) as u64
    }

    /// Removes every value, keeping the buffers.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Keeps the first `len` values.
    pub fn truncate(&mut self, len: usize) {
        match self {
            Self::Int(v) | Self::Timestamp(v) => v.truncate(len),
            Self::Float(v) => v.truncate(len),
            Self::Bool(v) => v.truncate(len),
            Self::Str(v) => v.truncate(len),
        }
    }

    /// Keeps the values `i` for which `keep(i)` is true, in their order.
    pub fn retain_rows(&mut self, keep: impl FnMut(usize) -> bool) {
        fn retain<T>(v: &mut Vec<T>, mut keep: impl FnMut(usize) -> bool) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep(i - 1)
            });
        }
        match self {
            Self::Int(v) | Self::Timestamp(v) => retain(v, keep),
            Self::Float(v) => retain(v, keep),
            Self::Bool(v) => retain(v, keep),
            Self::Str(v) => v.retain_rows(keep),
        }
    }

    /// Returns value `i`.
    pub fn get(&self, i: usize) -> Value<'_> {
        match self {
            Self::Int(v) => Value::Int(v[i]),
            Self::Float(v) => Value::Float(v[i]),
            Self::Bool(v) => Value::Bool(v[i]),
            Self::Str(v) => Value::Str(v.get(i)),
            Self::Timestamp(v) => Value::Timestamp(v[i]),
        }
    }

    /// Returns value `i` as an i64 for int and timestamp columns.
    pub fn get_i64(&self, i: usize) -> Option<i64> {
        match self {
            Self::Int(v) | Self::Timestamp(v) => Some(v[i]),
            _ => None,
        }
    }

    /// Appends `value`; returns false (and appends nothing) if its type does not match.
    /// Ints are accepted by float columns and ints by timestamp columns and vice versa.
    pub fn push(&mut self, value: Value<'_>) -> bool {
        match (self, value) {
            (Self::Int(c), Value::Int(v) | Value::Timestamp(v)) => c.push(v),
            (Self::Timestamp(c), Value::Timestamp(v) | Value::Int(v)) => c.push(v),
            (Self::Float(c), Value::Float(v)) => c.push(v),
            (Self::Float(c), Value::Int(v)) => c.push(v as f64),
            (Self::Bool(c), Value::Bool(v)) => c.push(v),
            (Self::Str(c), Value::Str(v)) => c.push(v),
            _ => return false,
        }
        true
    }

    /// Appends value `i` of `other`, which must have the same type.
    pub fn push_from(&mut self, other: &Self, i: usize) {
        match (self, other) {
            (Self::Int(c), Self::Int(o)) | (Self::Timestamp(c), Self::Timestamp(o)) => {
                c.push(o[i]);
            }
            (Self::Float(c), Self::Float(o)) => c.push(o[i]),
            (Self::Bool(c), Self::Bool(o)) => c.push(o[i]),
            (Self::Str(c), Self::Str(o)) => c.push(o.get(i)),
            (c, o) => {
                debug_assert!(
                    false,
                    "push_from {:?} into {:?}",
                    o.data_type(),
                    c.data_type()
                );
            }
        }
    }

    /// Appends every value of `other` (same type) to this column.
    pub fn extend_from(&mut self, other: &Self) {
        self.extend_from_range(other, 0..other.len());
    }

    /// Appends values `rows` of `other` (same type) to this column.
    pub fn extend_from_range(&mut self, other: &Self, rows: std::ops::Range<usize>) {
        match (self, other) {
            (Self::Int(c), Self::Int(o)) | (Self::Timestamp(c), Self::Timestamp(o)) => {
                c.extend_from_slice(&o[rows]);
            }
            (Self::Float(c), Self::Float(o)) => c.extend_from_slice(&o[rows]),
            (Self::Bool(c), Self::Bool(o)) => c.extend_from_slice(&o[rows]),
            (Self::Str(c), Self::Str(o)) => c.extend_from_range(o, rows),
            (c, o) => {
                debug_assert!(false, "extend {:?} with {:?}", c.data_type(), o.data_type());
            }
        }
    }
}

impl StrColumn {
    /// Appends strings `rows` of `other` with one copy of their packed bytes.
    fn extend_from_range(&mut self, other: &Self, rows: std::ops::Range<usize>) {
        if rows.is_empty() {
            return;
        }
        let from = if rows.start == 0 {
            0
        } else {
            other.ends[rows.start - 1]
        };
        let base = self.data.len();
        self.data
            .push_str(&other.data[from..other.ends[rows.end - 1]]);
        self.ends
            .extend(other.ends[rows].iter().map(|end| base + (end - from)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_truncate_and_reuse() {
        let mut c = StrColumn::default();
        c.push("ab");
        c.push("");
        c.push("cde");
        assert_eq!((c.get(0), c.get(1), c.get(2)), ("ab", "", "cde"));
        c.truncate(1);
        assert_eq!(c.len(), 1);
        c.push("x");
        assert_eq!(c.get(1), "x");
    }

    #[test]
    fn ranges_of_strings_are_copied_whole() {
        let mut a = Column::new(DataType::String);
        for s in ["ab", "", "cde", "f"] {
            assert!(a.push(Value::Str(s)));
        }
        let mut b = Column::new(DataType::String);
        assert!(b.push(Value::Str("x")));
        b.extend_from_range(&a, 1..3);
        b.extend_from_range(&a, 3..3);
        b.extend_from_range(&a, 0..1);
        let got: Vec<_> = (0..b.len()).map(|i| b.get(i).to_string()).collect();
        assert_eq!(got, ["x", "", "cde", "ab"]);
    }

    #[test]
    fn a_serialised_string_column_is_checked_when_read_back() {
        let mut c = Column::new(DataType::String);
        for s in ["é", "", "xyz"] {
            assert!(c.push(Value::Str(s)));
        }
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(postcard::from_bytes::<Column>(&bytes).unwrap(), c);
        let parts = |data: &str, ends: Vec<usize>| {
            StrColumn::try_from(StrColumnParts {
                data: data.into(),
                ends,
            })
        };
        assert!(parts("éxyz", vec![2, 2, 5]).is_ok());
        let inside_a_char = parts("éxyz", vec![1, 5]).unwrap_err();
        assert!(inside_a_char.contains("byte 1"), "{inside_a_char}");
        assert!(parts("éxyz", vec![5, 2]).is_err(), "unordered");
        assert!(parts("éxyz", vec![2, 9]).is_err(), "past the buffer");
        assert!(parts("éxyz", vec![2])
            .unwrap_err()
            .contains("3 bytes after"));
    }

    #[test]
    fn push_checks_types() {
        let mut c = Column::new(DataType::Float);
        assert!(c.push(Value::Int(2)));
        assert!(!c.push(Value::Str("no")));
        assert_eq!(c.get(0), Value::Float(2.0));
        assert_eq!(c.len(), 1);
    }
}
