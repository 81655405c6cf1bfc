//! Parsing of one input line (a flat NDJSON object or a CSV row) straight into the columns of
//! a batch. A line that does not fit the schema leaves the batch unchanged and returns why.
//!
//! HOT PATH: runs per record. No allocation except a reused scratch buffer for strings with
//! escapes; error messages are built only for malformed records. No locks, no logging.

use serde::{Deserialize, Serialize};

use crate::record::{Batch, Column, DataType, SchemaRef};

/// The text format of a file or socket source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One flat JSON object per line.
    Ndjson,
    /// Comma-separated fields in schema order (double quotes for fields with commas).
    Csv,
}

/// Parses lines of one format into batches of one schema.
#[derive(Debug)]
pub struct LineParser {
    format: Format,
    schema: SchemaRef,
    seen: Vec<bool>,
    scratch: String,
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
        }
    }

    /// Appends the record in `line` (without its newline) to `out`, or returns why not.
    pub fn parse(&mut self, line: &[u8], out: &mut Batch) -> Result<(), String> {
        let len = out.len();
        let result = match self.format {
            Format::Ndjson => self.parse_json(line, out),
            Format::Csv => self.parse_csv(line, out),
        };
        match result {
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
        let f = &self.schema.fields()[field];
        let column = &mut out.columns_mut()[field];
        let bad =
            |what: &str| format!("field `{}`: expected {}, found {what}", f.name, f.data_type);
        match (column, token) {
            (Column::Int(c) | Column::Timestamp(c), Token::Number(n)) => {
                c.push(n.parse::<i64>().map_err(|_| bad(&format!("`{n}`")))?);
            }
            (Column::Float(c), Token::Number(n)) => {
                c.push(n.parse::<f64>().map_err(|_| bad(&format!("`{n}`")))?);
            }
            (Column::Bool(c), Token::Bool(b)) => c.push(b),
            (Column::Str(c), Token::Str(s)) => c.push(s),
            (Column::Str(c), Token::Escaped) => c.push(&self.scratch),
            (_, Token::Null) => return Err(bad("null")),
            (_, Token::Str(_) | Token::Escaped) => return Err(bad("a string")),
            (_, Token::Bool(_)) => return Err(bad("a bool")),
            (_, Token::Number(n)) => return Err(bad(&format!("number `{n}`"))),
        }
        Ok(())
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

    fn parse_csv(&mut self, line: &[u8], out: &mut Batch) -> Result<(), String> {
        let mut p = Cursor { s: line, i: 0 };
        let n = self.schema.len();
        for field in 0..n {
            let token = if p.peek() == Some(b'"') {
                p.csv_quoted(&mut self.scratch)?
            } else {
                let start = p.i;
                while p.peek().is_some_and(|c| c != b',') {
                    p.i += 1;
                }
                let text = std::str::from_utf8(&line[start..p.i]).map_err(|_| "invalid UTF-8")?;
                match self.schema.fields()[field].data_type {
                    DataType::String => Token::Str(text),
                    DataType::Bool => match text.trim() {
                        "true" => Token::Bool(true),
                        "false" => Token::Bool(false),
                        other => Token::Number(other),
                    },
                    _ => Token::Number(text.trim()),
                }
            };
            self.store(field, token, out)?;
            match p.next() {
                Some(b',') if field + 1 < n => {}
                None if field + 1 == n => return Ok(()),
                _ => return Err(format!("expected {n} comma-separated fields")),
            }
        }
        Ok(())
    }
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

    fn csv_quoted(&mut self, scratch: &mut String) -> Result<Token<'a>, String> {
        self.i += 1;
        scratch.clear();
        loop {
            let run = self.i;
            while self.peek().is_some_and(|c| c != b'"') {
                self.i += 1;
            }
            scratch
                .push_str(std::str::from_utf8(&self.s[run..self.i]).map_err(|_| "invalid UTF-8")?);
            match (self.next(), self.peek()) {
                (Some(b'"'), Some(b'"')) => {
                    self.i += 1;
                    scratch.push('"');
                }
                (Some(b'"'), _) => return Ok(Token::Escaped),
                _ => return Err("unterminated quoted field".into()),
            }
        }
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
