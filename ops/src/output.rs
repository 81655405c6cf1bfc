//! Printing results as tables or JSON.
//!
//! Everything printed from the cluster's state passes through [`emit`], which
//! makes it safe for a terminal: in tables every string (names, messages,
//! task output) has its control characters escaped, so a job named with an
//! escape sequence cannot reprogram the terminal; JSON escapes them as JSON
//! does (`\u001b`), including the C1 and DEL characters serde_json leaves.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::cli::Output;

/// A table with the house look.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}

/// Prints `value` as JSON, or calls `as_table` with a copy of it whose
/// strings have their control characters escaped, to print it readably.
pub fn emit<T: Serialize + DeserializeOwned>(
    output: Output,
    value: &T,
    as_table: impl FnOnce(&T),
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", json_for_terminal(value)?),
        Output::Table => {
            let mut tree = serde_json::to_value(value)?;
            escape_strings(&mut tree);
            let safe: T = serde_json::from_value(tree)?;
            as_table(&safe)
        }
    }
    Ok(())
}

/// `value` as pretty JSON with every control character escaped.
pub fn json_for_terminal<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    // serde_json escapes C0 controls; C1 and DEL can only be inside strings.
    if !text.chars().any(needs_json_escape) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_json_escape(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// A control character other than the newlines of pretty JSON itself.
fn needs_json_escape(c: char) -> bool {
    c.is_control() && c != '\n'
}

/// Escapes the control characters of every string (and object key) in `value`.
fn escape_strings(value: &mut Value) {
    use sluice_consensus::text::escape_controls;
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(escaped) = escape_controls(s) {
                *s = escaped;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(escape_strings),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                escape_strings(&mut item);
                map.insert(escape_controls(&key).into_owned(), item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Formats an optional number, `-` when absent.
pub fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_every_control_character() {
        let text =
            json_for_terminal(&serde_json::json!({"name": "a\u{1b}[2Jb\u{9b}c\u{7f}"})).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back["name"], "a\u{1b}[2Jb\u{9b}c\u{7f}",
            "the data is unchanged"
        );
    }

    #[test]
    fn tables_see_escaped_strings() {
        let mut v = serde_json::json!({"k\u{1b}": ["x\ny", 1], "n": null});
        escape_strings(&mut v);
        assert_eq!(v, serde_json::json!({"k\\u{1b}": ["x\\ny", 1], "n": null}));
    }
}
