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
