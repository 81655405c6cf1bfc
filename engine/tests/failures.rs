//! A failing shard stops the whole job and its error is the one reported.
#![allow(clippy::disallowed_methods)] // helper threads play clients and observers

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::builder::StreamEnv;
use sluice_engine::record::{Batch, DataType, Schema, SchemaRef};
use sluice_engine::source::{DeadLetters, Source, SourceStatus};
use sluice_engine::spec::CustomSource;
use sluice_engine::EngineError;

/// Shard 0 fails on its first poll; every other shard never ends on its own.
struct FailOrWait {
    shard: usize,
    schema: SchemaRef,
}

impl Source for FailOrWait {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        _out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        if self.shard == 0 {
            Err(EngineError::Plan("the disk is on fire".into()))
        } else {
            Ok(SourceStatus::Pending)
        }
    }
}

#[test]
fn one_failing_shard_stops_the_others_and_reports_the_cause() {
    let schema = Schema::of(&[("x", DataType::Int)]).unwrap();
    let env = StreamEnv::new("fail")
        .parallelism(3)
        .custom_source(CustomSource {
            name: "fail-or-wait".into(),
            schema: schema.clone(),
            factory: Arc::new(move |shard, _| {
                Ok(Box::new(FailOrWait {
                    shard,
                    schema: schema.clone(),
                }) as Box<dyn Source>)
            }),
        })
        .key_by("x")
        .collect();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || tx.send(env.execute()).unwrap());
    let result = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the job must stop, not hang");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("the disk is on fire"), "{err}");
}

#[test]
fn a_missing_source_file_fails_the_job_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let err = StreamEnv::new("missing")
        .parallelism(2)
        .file(
            dir.path().join("nope.ndjson"),
            sluice_engine::source::Format::Ndjson,
            vec![sluice_engine::record::Field::new("x", DataType::Int)],
        )
        .collect()
        .execute()
        .unwrap_err();
    // A missing input is found when the job is planned, before any shard starts.
    assert!(matches!(err, EngineError::Spec { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("nope.ndjson") && text.contains("does not exist"),
        "{text}"
    );
}
