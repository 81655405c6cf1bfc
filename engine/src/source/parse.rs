//! Parsing of one input record (a flat NDJSON object, or a CSV record split into fields by
//! [`CsvRecords`]) straight into the columns of a batch. A record that does not fit the schema
//! leaves the batch unchanged and returns why. A CSV field is typed by the schema whether it
//! was quoted or not (`"1"` is the int 1).
//!
//! HOT PATH: runs per record. No allocation except a reused scratch buffer for strings with
//! escapes; error messages are built only for malformed records. No locks, no logging.

use serde::{Deserialize, Serialize};

use crate::record::{Batch, Column, DataType, SchemaRef};
use crate::source::csv::{CsvProblem, CsvRecords, CsvStep, CSV_RECORD_BYTES_MAX};

/// The text format of a file or socket source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One flat JSON object per line.
    Ndjson,
    /// Comma-separated fields in schema order, RFC 4180: a field with a comma, a double
    /// quote or a line break is double-quoted, with its quotes doubled.
    Csv,
}

/// Parses lines of one format into batches of one schema.
#[derive(Debug)]
pub struct LineParser {
    format: Format,
    schema: SchemaRef,
    seen: Vec<bool>,
    scratch: String,
    /// Splits a CSV record given to [`Self::parse`] into fields.
    csv: Option<CsvRecords>,
}

enum Token<'a> {
    Str(&'a str),
    Escaped,
    Number(&'a str),
    Bool(bool),
    Null,
}

impl LineParser {
    /// Creates a parser.
    pub fn new(format: Format, schema: SchemaRef) -> Self {
        let seen = vec![false; schema.len()];
        Self {
            format,
            schema,
            seen,
            scratch: String::new(),
            csv: None,
        }
    }

    /// Appends the record in `line` (one NDJSON line without its newline, or one CSV record)
    /// to `out`, or returns why not. Readers of CSV streams use [`CsvRecords`] and
    /// [`Self::store_csv`] instead, since a CSV record may span lines.
    pub fn parse(&mut self, line: &[u8], out: &mut Batch) -> Result<(), String> {
        if self.format == Format::Csv {
            return self.parse_csv_record(line, out);
        }
        let len = out.len();
        match self.parse_json(line, out) {
            Ok(()) => {
                out.commit_row();
                Ok(())
            }
            Err(e) => {
                out.rollback_to(len);
                Err(e)
            }
        }
    }

    fn store(&mut self, field: usize, token: Token<'_>, out: &mut Batch) -> Result<(), String> {
        store(&self.schema, &self.scratch, field, token, out)
    }

    fn parse_json(&mut self, line: &[u8], out: &mut Batch) -> Result<(), String> {
        self.seen.iter_mut().for_each(|s| *s = false);
        let mut p = Cursor { s: line, i: 0 };
        p.ws();
        p.expect(b'{')?;
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            loop {
                p.ws();
                let key_start = p.i;
                let key = match p.string(&mut self.scratch)? {
                    Token::Str(k) => self.schema.index_of(k),
                    _ => self.schema.index_of(&self.scratch),
                };
                p.ws();
                p.expect(b':')?;
                p.ws();
                let token = p.value(&mut self.scratch)?;
                if let Some(field) = key {
                    if self.seen[field] {
                        let name = String::from_utf8_lossy(&line[key_start..p.i]);
                        return Err(format!("duplicate key near `{name}`"));
                    }
                    self.seen[field] = true;
                    self.store(field, token, out)?;
                }
                p.ws();
                match p.next() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err(format!("expected `,` or `}}` at byte {}", p.i)),
                }
            }
        }
        p.ws();
        if p.i != line.len() {
            return Err(format!("unexpected text after the object at byte {}", p.i));
        }
        if let Some(missing) = self.seen.iter().position(|s| !s) {
            return Err(format!(
                "missing field `{}`",
                self.schema.fields()[missing].name
            ));
        }
        Ok(())
    }

    fn parse_csv_record(&mut self, text: &[u8], out: &mut Batch) -> Result<(), String> {
        let mut csv = self
            .csv
            .take()
            .unwrap_or_else(|| CsvRecords::new(self.schema.len()));
        csv.reset();
        let (step, used) = csv.read(text, 0, u64::MAX);
        let result = match step {
            CsvStep::Record if text[used..].iter().any(|b| *b != b'\n' && *b != b'\r') => {
                Err("more than one CSV record".to_owned())
            }
            CsvStep::Record => self.store_csv(&csv, out),
            _ if csv.finish() => self.store_csv(&csv, out),
            _ => Err("no CSV record".to_owned()),
        };
        self.csv = Some(csv);
        result
    }

    /// Appends the complete record `csv` holds to `out`, or returns why not (the batch is
    /// then unchanged).
    pub fn store_csv(&mut self, csv: &CsvRecords, out: &mut Batch) -> Result<(), String> {
        let n = self.schema.len();
        match csv.problem() {
            Some(CsvProblem::TooLong) => {
                return Err(format!("record longer than {CSV_RECORD_BYTES_MAX} bytes"))
            }
            Some(CsvProblem::TooManyFields) => {
                return Err(format!("expected {n} comma-separated fields, found more"))
            }
            None if csv.fields() != n => {
                return Err(format!(
                    "expected {n} comma-separated fields, found {}",
                    csv.fields()
                ))
            }
            None => {}
        }
        // One UTF-8 check for the whole record; a field boundary inside a character (its
        // bytes valid only together with the next field's) is caught by `get`.
        let Self {
            schema, scratch, ..
        } = self;
        let invalid = |field: usize| {
            let name = &schema.fields()[field].name;
            format!("field `{name}`: invalid UTF-8")
        };
        let record = std::str::from_utf8(csv.field_bytes()).map_err(|e| {
            let bad = (0..n).find(|f| csv.field_end(*f) > e.valid_up_to());
            invalid(bad.unwrap_or(0))
        })?;
        let len = out.len();
        let mut from = 0;
        for field in 0..n {
            let to = csv.field_end(field);
            let Some(text) = record.get(from..to) else {
                out.rollback_to(len);
                return Err(invalid(field));
            };
            from = to;
            let token = match schema.fields()[field].data_type {
                DataType::String => Token::Str(text),
                DataType::Bool => match text.trim_ascii() {
                    "true" => Token::Bool(true),
                    "false" => Token::Bool(false),
                    other => Token::Number(other),
                },
                _ => Token::Number(text.trim_ascii()),
            };
            if let Err(e) = store(schema, scratch, field, token, out) {
                out.rollback_to(len);
                return Err(e);
            }
        }
        out.commit_row();
        Ok(())
    }
}

/// Appends `token` to column `field` of `out` as the schema's type for it, or says why it
/// does not fit; `scratch` holds the text of an escaped string token.
fn store(
    schema: &SchemaRef,
    scratch: &str,
    field: usize,
    token: Token<'_>,
    out: &mut Batch,
) -> Result<(), String> {
    let f = &schema.fields()[field];
    let column = &mut out.columns_mut()[field];
    let bad = |what: &str| format!("field `{}`: expected {}, found {what}", f.name, f.data_type);
    match (column, token) {
        (Column::Int(c) | Column::Timestamp(c), Token::Number(n)) => {
            c.push(n.parse::<i64>().map_err(|_| bad(&format!("`{n}`")))?);
        }
        (Column::Float(c), Token::Number(n)) => {
            c.push(n.parse::<f64>().map_err(|_| bad(&format!("`{n}`")))?);
        }
        (Column::Bool(c), Token::Bool(b)) => c.push(b),
        (Column::Str(c), Token::Str(s)) => c.push(s),
        (Column::Str(c), Token::Escaped) => c.push(scratch),
        (_, Token::Null) => return Err(bad("null")),
        (_, Token::Str(_) | Token::Escaped) => return Err(bad("a string")),
        (_, Token::Bool(_)) => return Err(bad("a bool")),
        (_, Token::Number(n)) => return Err(bad(&format!("number `{n}`"))),
    }
    Ok(())
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(format!(
                "expected `{}` at byte {}",
                c as char,
                self.i.saturating_sub(1)
            ))
        }
    }

    fn value(&mut self, scratch: &mut String) -> Result<Token<'a>, String> {
        match self.peek() {
            Some(b'"') => self.string(scratch),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Token::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Token::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Token::Null)
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| b"+-.eE".contains(&c) || c.is_ascii_digit())
                {
                    self.i += 1;
                }
                // Number characters are ASCII, so this slice is valid UTF-8.
                Ok(Token::Number(
                    std::str::from_utf8(&self.s[start..self.i]).unwrap_or(""),
                ))
            }
            _ => Err(format!(
                "expected a value at byte {} (nested values are not supported)",
                self.i
            )),
        }
    }

    /// Reads a JSON string; returns it borrowed, or `Escaped` with the text in `scratch`.
    fn string(&mut self, scratch: &mut String) -> Result<Token<'a>, String> {
        self.expect(b'"')?;
        let start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    let s =
                        std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "invalid UTF-8")?;
                    self.i += 1;
                    return Ok(Token::Str(s));
                }
                b'\\' => break,
                _ => self.i += 1,
            }
        }
        scratch.clear();
        scratch.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "invalid UTF-8")?);
        loop {
            let run = self.i;
            while self.peek().is_some_and(|c| c != b'"' && c != b'\\') {
                self.i += 1;
            }
            scratch
                .push_str(std::str::from_utf8(&self.s[run..self.i]).map_err(|_| "invalid UTF-8")?);
            match self.next() {
                Some(b'"') => return Ok(Token::Escaped),
                Some(b'\\') => {
                    let c = match self.next() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode()?,
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    };
                    scratch.push(c);
                }
                _ => return Err("unterminated string".into()),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        let text = std::str::from_utf8(digits).map_err(|_| "bad \\u escape")?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|_| "bad \\u escape".into())
    }

    fn unicode(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
            self.i += 2;
            let lo = self.hex4()?;
            0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| "invalid \\u code point".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{OwnedValue, Schema};

    fn schema() -> SchemaRef {
        Schema::of(&[
            ("id", DataType::Int),
            ("name", DataType::String),
            ("price", DataType::Float),
            ("ok", DataType::Bool),
        ])
        .unwrap()
    }

    #[test]
    fn json_objects_in_any_order_with_escapes() {
        let mut p = LineParser::new(Format::Ndjson, schema());
        let mut b = Batch::new(schema());
        p.parse(
            br#"{"name":"a\"b\u00e9","price":1.5,"extra":[1],"id":3,"ok":true}"#,
            &mut b,
        )
        .unwrap_err();
        p.parse(
            br#" {"name":"a\"b\u00e9","price":1.5,"extra":"x","id":3,"ok":true} "#,
            &mut b,
        )
        .unwrap();
        assert_eq!(
            b.to_rows()[0],
            [
                OwnedValue::Int(3),
                OwnedValue::Str("a\"bé".into()),
                OwnedValue::Float(1.5),
                OwnedValue::Bool(true)
            ]
        );
    }

    #[test]
    fn malformed_lines_say_why_and_leave_no_trace() {
        let mut p = LineParser::new(Format::Ndjson, schema());
        let mut b = Batch::new(schema());
        let cases: [(&[u8], &str); 5] = [
            (br#"{"id":1,"name":"x","price":2}"#, "missing field `ok`"),
            (
                br#"{"id":"1","name":"x","price":2,"ok":true}"#,
                "field `id`: expected int",
            ),
            (
                br#"{"id":1,"name":"x","price":2,"ok":true"#,
                "expected `,` or `}`",
            ),
            (br#"{"id":1,"id":2}"#, "duplicate key"),
            (b"not json", "expected `{`"),
        ];
        for (line, why) in cases {
            let err = p.parse(line, &mut b).unwrap_err();
            assert!(err.contains(why), "{err} should contain {why}");
            assert_eq!(b.len(), 0);
            assert!(b.columns().iter().all(|c| c.is_empty()));
        }
    }

    #[test]
    fn csv_rows_with_quotes() {
        let mut p = LineParser::new(Format::Csv, schema());
        let mut b = Batch::new(schema());
        p.parse(br#"7,"x, ""y""",2.5,false"#, &mut b).unwrap();
        assert_eq!(b.value(0, 1).to_string(), "x, \"y\"");
        // Quoting is syntax: quoted numbers and bools are typed by the schema.
        p.parse(br#""8","a","3.5"," true""#, &mut b).unwrap();
        assert_eq!(b.value(1, 0), crate::record::Value::Int(8));
        assert_eq!(b.value(1, 3), crate::record::Value::Bool(true));
        b.rollback_to(1);
        assert!(p
            .parse(b"7,x,2.5", &mut b)
            .unwrap_err()
            .contains("4 comma-separated"));
        assert!(p.parse(b"7,x,2.5,false,9", &mut b).is_err());
        assert!(p
            .parse(b"x,x,2.5,false", &mut b)
            .unwrap_err()
            .contains("field `id`"));
        assert_eq!(b.len(), 1);
    }
}
