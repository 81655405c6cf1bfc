//! The seed example: words to upper case, drop "A", reduce by concatenation.

use sluice_engine::builder::StreamEnv;
use sluice_engine::record::{Batch, DataType, OwnedValue, Schema, Value};
use sluice_engine::spec::load_spec;

const WORDS: [&str; 7] = ["hello", "a", "world", "A", "again", "b", "a"];

fn words() -> Batch {
    let schema = Schema::of(&[("word", DataType::String)]).unwrap();
    let mut batch = Batch::new(schema);
    for w in WORDS {
        batch.push_row(&[Value::Str(w)]).unwrap();
    }
    batch
}

fn strings(rows: Vec<Vec<OwnedValue>>) -> Vec<String> {
    rows.into_iter().map(|r| r[0].to_string()).collect()
}

#[test]
fn seed_example_with_the_builder() {
    let report = StreamEnv::new("seed")
        .from_batch("words", words())
        .map(&["upper(word) AS word"])
        .filter("word <> 'A'")
        .reduce("word", "concat", " ")
        .collect()
        .execute()
        .unwrap();
    // Upper case: HELLO A WORLD A AGAIN B A; without "A": HELLO WORLD AGAIN B; the reduce
    // emits its running value after every record.
    assert_eq!(
        strings(report.collected_rows()),
        [
            "HELLO",
            "HELLO WORLD",
            "HELLO WORLD AGAIN",
            "HELLO WORLD AGAIN B"
        ]
    );
    assert_eq!(report.records_in, 7);
    assert_eq!(report.records_out, 4);
}

#[test]
fn seed_example_on_three_shards_gathers_the_keyless_reduce() {
    let report = StreamEnv::new("seed")
        .parallelism(3)
        .from_batch("words", words())
        .map(&["upper(word) AS word"])
        .filter("word <> 'A'")
        .reduce("word", "concat", " ")
        .collect()
        .execute()
        .unwrap();
    let out = strings(report.collected_rows());
    assert_eq!(out.len(), 4);
    // Shards interleave, so only the final value's words are fixed, not their order.
    let mut last: Vec<_> = out
        .iter()
        .max_by_key(|s| s.len())
        .unwrap()
        .split(' ')
        .collect();
    last.sort_unstable();
    assert_eq!(last, ["AGAIN", "B", "HELLO", "WORLD"]);
}

#[test]
fn seed_example_from_toml_with_key_by() {
    let text = r#"
name = "seed"
parallelism = 2

[[source]]
kind = "values"
fields = [{ name = "word", type = "string" }]
rows = [["hello"], ["a"], ["world"], ["A"], ["hello"], ["a"]]

[[operator]]
map = ["upper(word) AS word"]

[[operator]]
filter = "word <> 'A'"

[[operator]]
key_by = "word"

[[operator]]
reduce = { column = "word", fn = "concat", separator = "+" }

[[sink]]
kind = "collect"
"#;
    let plan = load_spec(text).unwrap();
    let report = sluice_engine::runtime::run_plan(plan).unwrap();
    let mut out = strings(report.collected_rows());
    out.sort();
    // Per key: HELLO twice (HELLO, then HELLO+HELLO), WORLD once.
    assert_eq!(out, ["HELLO", "HELLO+HELLO", "WORLD"]);
}
