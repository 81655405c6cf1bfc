//! The io_uring file source: byte-range splits read every record exactly once; malformed
//! lines become dead letters with their byte offset.

use std::io::Write;

use proptest::prelude::*;
use sluice_engine::builder::StreamEnv;
use sluice_engine::record::{Batch, DataType, Field, Schema, SchemaRef};
use sluice_engine::source::{DeadLetters, FileSource, Format, Source, SourceStatus};

fn schema() -> SchemaRef {
    Schema::of(&[("id", DataType::Int), ("name", DataType::String)]).unwrap()
}

/// Reads every split of `path`; returns the ids and the dead-letter positions.
fn read_splits(
    path: &std::path::Path,
    format: Format,
    header: bool,
    shards: usize,
) -> (Vec<i64>, Vec<String>) {
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    for shard in 0..shards {
        let mut src = FileSource::open(path, format, schema(), header, shard, shards).unwrap();
        let mut dead = DeadLetters::new(None).unwrap();
        loop {
            let mut batch = Batch::new(schema());
            let status = src.poll(&mut batch, &mut dead).unwrap();
            ids.extend((0..batch.len()).map(|r| batch.column(0).get_i64(r).unwrap()));
            if status == SourceStatus::Exhausted {
                break;
            }
        }
        positions.extend(dead.into_samples().into_iter().map(|d| d.position));
    }
    ids.sort_unstable();
    (ids, positions)
}

#[test]
fn every_split_count_reads_each_record_once() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut expected = Vec::new();
    let mut bad_offsets = Vec::new();
    let mut offset = 0usize;
    for id in 0..20_000i64 {
        // Varying lengths put record boundaries at every position relative to splits and
        // 256 KiB read chunks.
        let line = if id % 997 == 5 {
            bad_offsets.push((offset, id + 1));
            format!("{{\"id\":{id},\"name\":oops}}\n")
        } else {
            expected.push(id);
            format!(
                "{{\"id\":{id},\"name\":\"{}\"}}\n",
                "x".repeat((id % 37) as usize)
            )
        };
        offset += line.len();
        file.write_all(line.as_bytes()).unwrap();
    }
    // A last line without a newline still counts.
    file.write_all(b"{\"id\":20000,\"name\":\"end\"}").unwrap();
    expected.push(20_000);
    let path = file.path().display().to_string();
    for shards in [1, 2, 3, 5, 8, 13] {
        let (ids, mut positions) = read_splits(file.path(), Format::Ndjson, false, shards);
        assert_eq!(ids, expected, "{shards} splits");
        // Every split knows the byte offset; only the first, which starts at the top of the
        // file, counts lines.
        let first_split_end = file.as_file().metadata().unwrap().len() / shards as u64;
        let mut bad: Vec<String> = bad_offsets
            .iter()
            .map(|(o, line)| {
                if (*o as u64) < first_split_end {
                    format!("{path}: byte {o} (line {line})")
                } else {
                    format!("{path}: byte {o}")
                }
            })
            .collect();
        bad.sort();
        positions.sort();
        assert_eq!(positions, bad, "{shards} splits");
    }
}

#[test]
fn csv_with_header_and_crlf() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"id,name\r\n1,a\r\n2,\"b,c\"\r\n\r\n3,d\r\n")
        .unwrap();
    for shards in [1, 2, 4] {
        let (ids, dead) = read_splits(file.path(), Format::Csv, true, shards);
        assert_eq!(ids, [1, 2, 3], "{shards} splits");
        assert!(dead.is_empty(), "{dead:?}");
    }
}

#[test]
fn a_job_reads_a_file_and_writes_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let dead = dir.path().join("dead.ndjson");
    std::fs::write(
        &input,
        "{\"id\":1,\"name\":\"a\"}\nnot json\n{\"id\":2,\"name\":\"b\"}\n",
    )
    .unwrap();
    let fields = vec![
        Field::new("id", DataType::Int),
        Field::new("name", DataType::String),
    ];
    let report = StreamEnv::new("file")
        .parallelism(2)
        .file(&input, Format::Ndjson, fields)
        .filter("id > 1")
        .dead_letter(&dead)
        .collect()
        .execute()
        .unwrap();
    assert_eq!(report.records_in, 2);
    assert_eq!(report.records_out, 1);
    assert_eq!(report.dead_letters, 1);
    // One dead-letter file per shard, like a file sink; the bad line is in shard 0's split.
    let part = |s: usize| format!("{}.{s}", dead.display());
    let text = std::fs::read_to_string(part(0)).unwrap();
    let expected_position = format!("{}: byte 20 (line 2)", input.display());
    assert!(
        text.contains(&expected_position) && text.contains("not json"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
    assert_eq!(std::fs::read_to_string(part(1)).unwrap(), "");
}

#[test]
fn the_dead_letter_file_holds_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ndjson");
    let dead = dir.path().join("dead.ndjson");
    std::fs::write(&input, "{\"id\":1,\"name\":\"a\"}\nbad\nworse\n").unwrap();
    let fields = vec![
        Field::new("id", DataType::Int),
        Field::new("name", DataType::String),
    ];
    for _ in 0..2 {
        let report = StreamEnv::new("dead-twice")
            .file(&input, Format::Ndjson, fields.clone())
            .dead_letter(&dead)
            .collect()
            .execute()
            .unwrap();
        assert_eq!(report.dead_letters, 2);
        let text = std::fs::read_to_string(&dead).unwrap();
        assert_eq!(text.lines().count() as u64, report.dead_letters, "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_files_split_exactly_once(lens in proptest::collection::vec(0usize..40, 1..60), shards in 1usize..9) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for (id, len) in lens.iter().enumerate() {
            writeln!(file, "{{\"id\":{id},\"name\":\"{}\"}}", "y".repeat(*len)).unwrap();
        }
        let (ids, dead) = read_splits(file.path(), Format::Ndjson, false, shards);
        let expected: Vec<i64> = (0..lens.len() as i64).collect();
        prop_assert_eq!(ids, expected);
        prop_assert!(dead.is_empty());
    }
}

#[test]
fn empty_file_has_no_records() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let (ids, _) = read_splits(file.path(), Format::Ndjson, false, 3);
    assert!(ids.is_empty());
}

/// Reads every split of `path`; returns every (id, name) in id order and the dead-letter
/// positions.
fn read_rows(
    path: &std::path::Path,
    format: Format,
    header: bool,
    shards: usize,
) -> (Vec<(i64, String)>, Vec<String>) {
    let mut rows = Vec::new();
    let mut positions = Vec::new();
    for shard in 0..shards {
        let mut src = FileSource::open(path, format, schema(), header, shard, shards).unwrap();
        let mut dead = DeadLetters::new(None).unwrap();
        loop {
            let mut batch = Batch::new(schema());
            let status = src.poll(&mut batch, &mut dead).unwrap();
            rows.extend((0..batch.len()).map(|r| {
                let id = batch.column(0).get_i64(r).unwrap();
                (id, batch.value(r, 1).to_string())
            }));
            if status == SourceStatus::Exhausted {
                break;
            }
        }
        positions.extend(dead.into_samples().into_iter().map(|d| d.position));
    }
    rows.sort();
    (rows, positions)
}

/// Quotes a CSV field the way RFC 4180 asks when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) || s.is_empty() {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[test]
fn a_quoted_newline_at_a_split_start_makes_up_no_record() {
    // The second record's quoted field holds lines that look like records; at every
    // parallelism some split starts inside it.
    let fake: String = (100..400).map(|i| format!("{i},fake\n")).collect();
    let text = format!("1,a\n2,{}\n3,c\n", csv_field(&fake));
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    for shards in 1..=8 {
        let (rows, dead) = read_rows(file.path(), Format::Csv, false, shards);
        let expected = vec![(1, "a".to_owned()), (2, fake.clone()), (3, "c".to_owned())];
        assert_eq!(rows, expected, "{shards} splits");
        assert!(dead.is_empty(), "{shards} splits: {dead:?}");
    }
}

#[test]
fn quoted_fields_are_values_not_dead_letters() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"\"1\",\"a\"\n\" 2 \",\"b, \"\"c\"\"\"\n")
        .unwrap();
    let (rows, dead) = read_rows(file.path(), Format::Csv, false, 1);
    assert_eq!(rows, [(1, "a".to_owned()), (2, "b, \"c\"".to_owned())]);
    assert!(dead.is_empty(), "{dead:?}");
}

#[test]
fn long_multi_line_records_across_read_chunks_are_read_once() {
    // Records up to a few KiB with quoted line breaks, over several 256 KiB read chunks.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut expected = Vec::new();
    for id in 0..3_000i64 {
        let name: String = (0..(id % 41))
            .map(|k| format!("l{k},\"{id}\"\r\n"))
            .collect::<String>();
        let terminator = if id % 2 == 0 { "\n" } else { "\r\n" };
        write!(file, "{id},{}{terminator}", csv_field(&name)).unwrap();
        expected.push((id, name));
    }
    for shards in [1, 2, 3, 4, 7] {
        let (rows, dead) = read_rows(file.path(), Format::Csv, false, shards);
        assert!(dead.is_empty(), "{shards} splits: {dead:?}");
        assert_eq!(rows, expected, "{shards} splits");
    }
}

#[test]
fn a_byte_order_mark_starts_no_record() {
    for (format, body) in [
        (Format::Csv, "id,name\n1,a\n2,b\n"),
        (
            Format::Ndjson,
            "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"name\":\"b\"}\n",
        ),
    ] {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"\xef\xbb\xbf").unwrap();
        file.write_all(body.as_bytes()).unwrap();
        let header = format == Format::Csv;
        for shards in 1..=6 {
            let (rows, dead) = read_rows(file.path(), format, header, shards);
            assert_eq!(
                rows,
                [(1, "a".to_owned()), (2, "b".to_owned())],
                "{format:?}, {shards} splits"
            );
            assert!(dead.is_empty(), "{format:?}, {shards} splits: {dead:?}");
        }
    }
}

#[test]
fn csv_dead_letters_have_byte_and_line_in_every_split() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let text = "1,\"two\nlines\"\n2,b\nx,bad\n3,c\n";
    file.write_all(text.as_bytes()).unwrap();
    let byte = text.find("x,bad").unwrap();
    let expected = format!("{}: byte {byte} (line 4)", file.path().display());
    for shards in 1..=4 {
        let (rows, dead) = read_rows(file.path(), Format::Csv, false, shards);
        assert_eq!(rows.len(), 3, "{shards} splits");
        assert_eq!(dead, std::slice::from_ref(&expected), "{shards} splits");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xC5F_5EED),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random CSV with quoted commas, quotes and line breaks, CRLF or LF, blank lines, an
    /// optional byte-order mark and header: every split count reads every record once.
    #[test]
    fn random_csv_splits_read_each_record_once(
        names in proptest::collection::vec("[a,\"\r\n é]{0,12}", 1..40),
        crlf in proptest::collection::vec(any::<bool>(), 40),
        blank in proptest::collection::vec(0usize..3, 40),
        bom in any::<bool>(),
        header in any::<bool>(),
    ) {
        let mut text = String::new();
        if bom {
            text.push('\u{feff}');
        }
        if header {
            text.push_str("id,name\r\n");
        }
        let mut expected = Vec::new();
        for (id, name) in names.iter().enumerate() {
            let end = if crlf[id] { "\r\n" } else { "\n" };
            text.push_str(&format!("{id},{}{end}", csv_field(name)));
            text.push_str(&end.repeat(blank[id]));
            expected.push((id as i64, name.clone()));
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        for shards in 1..=5 {
            let (rows, dead) = read_rows(file.path(), Format::Csv, header, shards);
            prop_assert!(dead.is_empty(), "{} splits: {:?}", shards, dead);
            prop_assert_eq!(&rows, &expected, "{} splits", shards);
        }
    }
}
