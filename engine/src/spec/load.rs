//! Loading a job spec from TOML: syntax and shape errors carry the line and column from
//! toml's error span and say what was expected; plan errors (bad expression, unknown column)
//! point at the `[[source]]`, `[[operator]]` or `[[sink]]` table they come from.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::EngineError;
use crate::spec::job::{JobSpec, SinkSpec, SourceSpec};
use crate::spec::plan::{plan, plan_portable, Plan, SpecItem};

/// Converts a byte offset in `text` to a 1-based (line, column).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    source: Vec<toml::Spanned<toml::Value>>,
    #[serde(default)]
    operator: Vec<toml::Spanned<toml::Value>>,
    #[serde(default)]
    sink: Vec<toml::Spanned<toml::Value>>,
    #[serde(default)]
    stream: Vec<toml::Spanned<toml::Value>>,
    #[serde(default)]
    watermark: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    late_sink: Option<toml::Spanned<toml::Value>>,
    #[serde(default)]
    dead_letter: Option<toml::Spanned<toml::Value>>,
}

fn item_span(text: &str, item: SpecItem) -> Option<Range<usize>> {
    let spans: Spans = toml::from_str(text).ok()?;
    let item = match item {
        SpecItem::Job => return None,
        SpecItem::Source(i) => spans.source.get(i),
        SpecItem::Operator(i) => spans.operator.get(i),
        SpecItem::Sink(i) => spans.sink.get(i),
        SpecItem::Stream(i) => spans.stream.get(i),
        SpecItem::Watermark => spans.watermark.as_ref(),
        SpecItem::LateSink => spans.late_sink.as_ref(),
        SpecItem::DeadLetter => spans.dead_letter.as_ref(),
    };
    item.map(toml::Spanned::span)
}

fn describe(item: SpecItem) -> String {
    match item {
        SpecItem::Job => "job".to_owned(),
        SpecItem::Source(i) => format!("[[source]] #{}", i + 1),
        SpecItem::Operator(i) => format!("[[operator]] #{}", i + 1),
        SpecItem::Sink(i) => format!("[[sink]] #{}", i + 1),
        SpecItem::Stream(i) => format!("[[stream]] #{}", i + 1),
        SpecItem::Watermark => "[watermark]".to_owned(),
        SpecItem::LateSink => "late_sink".to_owned(),
        SpecItem::DeadLetter => "dead_letter".to_owned(),
    }
}

/// Parses a job spec from TOML text, without planning it.
pub fn parse_spec(text: &str) -> Result<JobSpec, EngineError> {
    toml::from_str::<JobSpec>(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
        EngineError::Spec {
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

/// Parses and checks a job spec from TOML text; every error has a position. Relative paths
/// stay relative to the current directory.
pub fn load_spec(text: &str) -> Result<Plan, EngineError> {
    load_spec_at(text, None, plan)
}

/// As [`load_spec`] but without looking at the files the job names: for a job submitted to
/// run elsewhere (`sluice job submit --stream`), whose input and output paths are the agents'
/// and are checked there when the job starts.
pub fn load_spec_portable(text: &str) -> Result<Plan, EngineError> {
    load_spec_at(text, None, plan_portable)
}

/// Makes the relative file paths of `spec` relative to `base`.
fn resolve_paths(spec: &mut JobSpec, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    let sources = spec
        .sources
        .iter_mut()
        .chain(spec.streams.iter_mut().flat_map(|s| s.sources.iter_mut()));
    for source in sources {
        if let SourceSpec::File { path, .. } = source {
            fix(path);
        }
    }
    for sink in spec.sinks.iter_mut().chain(spec.late_sink.as_mut()) {
        if let SinkSpec::File { path, .. } = sink {
            fix(path);
        }
    }
    if let Some(p) = spec.dead_letter.as_mut() {
        fix(p);
    }
}

type Planner = fn(&JobSpec) -> Result<Plan, (SpecItem, EngineError)>;

fn load_spec_at(text: &str, base: Option<&Path>, planner: Planner) -> Result<Plan, EngineError> {
    let mut spec = parse_spec(text)?;
    if let Some(base) = base {
        resolve_paths(&mut spec, base);
    }
    planner(&spec).map_err(|(item, err)| {
        let span = item_span(text, item);
        // Point at the expression itself when the error is about one, else at the table.
        let at = match (&span, &err) {
            (Some(s), EngineError::Expr { expr, .. }) => text
                .get(s.clone())
                .and_then(|t| t.find(expr.as_str()))
                .map(|p| s.start + p),
            _ => None,
        };
        let (line, column) = at
            .or(span.map(|s| s.start))
            .map_or((1, 1), |offset| line_column(text, offset));
        let err = match err {
            EngineError::Spec { message, .. } => message,
            other => other.to_string(),
        };
        EngineError::Spec {
            line,
            column,
            message: format!("{}: {err}", describe(item)),
        }
    })
}

/// Reads, parses and checks a job spec file. Relative file paths in it (sources, sinks, the
/// dead-letter file) are relative to the directory of the spec file.
pub fn load_spec_file(path: &Path) -> Result<Plan, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    load_spec_at(&text, Some(path.parent().unwrap_or(Path::new("."))), plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec submitted to run elsewhere names the agents' files: it is checked for
    /// everything but them, and the local check still refuses a missing input.
    #[test]
    fn a_portable_load_does_not_look_at_the_files() {
        let text = "name = \"remote\"\n[[source]]\nkind = \"file\"\npath = \"/nonexistent/sluice-input.ndjson\"\nformat = \"ndjson\"\nfields = [{ name = \"x\", type = \"int\" }]\n[[sink]]\nkind = \"stdout\"\n";
        load_spec_portable(text).unwrap();
        let err = load_spec(text).unwrap_err().to_string();
        assert!(err.contains("sluice-input.ndjson"), "{err}");
    }

    const GOOD: &str = r#"
name = "q2"
parallelism = 2

[[source]]
kind = "nexmark"
events = 1000

[[operator]]
filter = "auction % 123 = 0"

[[operator]]
map = ["auction", "price"]

[[sink]]
kind = "blackhole"
"#;

    #[test]
    fn a_good_spec_plans() {
        let plan = load_spec(GOOD).unwrap();
        assert_eq!(plan.spec.parallelism, 2);
        assert_eq!(plan.output_schema.to_string(), "auction int, price int");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = load_spec("name = \"x\"\nparallelism = \n").unwrap_err();
        let EngineError::Spec { line, column, .. } = err else {
            panic!("{err}")
        };
        assert_eq!((line, column), (2, 15));
    }

    #[test]
    fn shape_errors_say_what_was_expected() {
        let text = GOOD.replace("filter = ", "filtr = ");
        let err = load_spec(&text).unwrap_err().to_string();
        assert!(err.contains("line 10") && err.contains("filtr"), "{err}");
        assert!(err.contains("filter"), "lists the expected variants: {err}");
        let text = GOOD.replace("parallelism = 2", "parallelism = \"two\"");
        let err = load_spec(&text).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("expected usize"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_in_sources_sinks_and_windows_are_rejected() {
        let text = GOOD.replace(
            "kind = \"blackhole\"",
            "kind = \"file\"\npath = \"x\"\nformt = \"csv\"",
        );
        let err = load_spec(&text).unwrap_err().to_string();
        assert!(err.contains("formt"), "{err}");
        let text = GOOD.replace(
            "map = [\"auction\", \"price\"]",
            "window = { kind = \"sliding\", size_ms = 10, aggregate = [\"count(*)\"] }",
        );
        let err = load_spec(&text).unwrap_err().to_string();
        assert!(
            err.contains("needs `slide_ms`") && err.contains("line 12"),
            "{err}"
        );
        let text = GOOD.replace(
            "map = [\"auction\", \"price\"]",
            "window = { kind = \"tumbling\", size_ms = 10, aggregate = [\"count(*)\"], alowed_lateness_ms = 5 }",
        );
        let err = load_spec(&text).unwrap_err().to_string();
        assert!(err.contains("alowed_lateness_ms"), "{err}");
    }

    #[test]
    fn plan_errors_point_at_the_operator() {
        let text = GOOD.replace("auction % 123 = 0", "auktion % 123 = 0");
        let err = load_spec(&text).unwrap_err();
        let EngineError::Spec { line, message, .. } = &err else {
            panic!("{err}")
        };
        assert!(
            message.contains("[[operator]] #1") && message.contains("unknown column `auktion`"),
            "{err}"
        );
        assert_eq!(*line, 10, "{err}");
    }
}
