//! Window and interval joins in running jobs, with a named stream as the right input.

use sluice_engine::record::OwnedValue;
use sluice_engine::runtime::run_plan;
use sluice_engine::spec::load_spec;

fn run(text: &str) -> Vec<String> {
    let report = run_plan(load_spec(text).unwrap()).unwrap();
    let mut rows: Vec<String> = report
        .collected_rows()
        .iter()
        .map(|r| {
            r.iter()
                .map(OwnedValue::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    rows.sort();
    rows
}

const HEADER: &str = r#"
parallelism = 2

[watermark]
column = "ts"

[[source]]
kind = "values"
fields = [{ name = "user", type = "int" }, { name = "ts", type = "timestamp" }, { name = "page", type = "string" }]
rows = [[1, 1, "home"], [2, 3, "cart"], [1, 12, "pay"], [3, 14, "home"]]

[[stream]]
name = "orders"

[stream.watermark]
column = "at"

[[stream.source]]
kind = "values"
fields = [{ name = "buyer", type = "int" }, { name = "at", type = "timestamp" }, { name = "amount", type = "int" }]
rows = [[1, 5, 30], [2, 11, 7], [1, 13, 9], [4, 2, 1]]

[[stream.operator]]
filter = "amount > 1"

[[sink]]
kind = "collect"
"#;

#[test]
fn window_join_matches_keys_within_a_window() {
    let text = format!(
        "{HEADER}\n[[operator]]\nwindow_join = {{ stream = \"orders\", left_key = \"user\", right_key = \"buyer\", size_ms = 10 }}\n"
    );
    // Window [0, 10): user 1 (home) with buyer 1 at 5; user 2 at 3 has no order before 10.
    // Window [10, 20): user 1 (pay at 12) with buyer 1 at 13. Buyer 4 was filtered out.
    assert_eq!(run(&text), ["1 1 home 1 5 30", "1 12 pay 1 13 9"]);
}

#[test]
fn interval_join_matches_keys_within_bounds() {
    let text = format!(
        "{HEADER}\n[[operator]]\ninterval_join = {{ stream = \"orders\", left_key = \"user\", right_key = \"buyer\", lower_ms = 0, upper_ms = 8 }}\n\n[[operator]]\nmap = [\"user\", \"page\", \"amount\"]\n"
    );
    // at in [ts, ts + 8]: user 1 at 1 → order at 5; user 2 at 3 → order at 11 (3 + 8);
    // user 1 at 12 → order at 13.
    assert_eq!(run(&text), ["1 home 30", "1 pay 9", "2 cart 7"]);
}

#[test]
fn join_errors_name_the_stream() {
    let text = format!(
        "{HEADER}\n[[operator]]\nwindow_join = {{ stream = \"ordrs\", left_key = \"user\", right_key = \"buyer\", size_ms = 10 }}\n"
    );
    let err = load_spec(&text).unwrap_err().to_string();
    assert!(
        err.contains("no [[stream]] named `ordrs`") && err.contains("orders"),
        "{err}"
    );
    let unused = HEADER.to_owned();
    let err = load_spec(&unused).unwrap_err().to_string();
    assert!(err.contains("stream `orders` is never joined"), "{err}");
}
