//! A window's checkpoint: its panes (each key and its accumulators) and watermark, with the
//! configuration they are checked against on restore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rocks::RocksWindowHeader;
use super::WindowAggregate;
use crate::error::EngineError;
use crate::operator::agg::{check_all, signatures, Acc, AggSignature};
use crate::operator::{Frozen, Operator};
use crate::record::DataType;
use crate::state::codec::{corrupt, decode, expect_same, Snapshot, StateFormat};
use crate::state::rocks::RocksSnapshot;
use crate::state::{KeyedSnapshot, KeyedState, KEYED_STATE_KEYS_MAX};

/// A window aggregate's checkpoint: its configuration (checked on restore), the watermark
/// and every pane. Scratch space, spare panes and the pane key indexes' hash chains are not
/// kept: restore derives the chains from the keys again.
#[derive(Serialize, Deserialize)]
pub(super) struct WindowSnapshot {
    key_type: Option<DataType>,
    size: i64,
    slide: i64,
    lateness: i64,
    aggs: Vec<AggSignature>,
    watermark: i64,
    panes: Vec<PaneSnapshot>,
}

/// One pane: its start, and its keys in slot order with their accumulators.
#[derive(Serialize, Deserialize)]
pub(super) struct PaneSnapshot {
    start: i64,
    state: KeyedSnapshot<Acc>,
}

impl StateFormat for WindowSnapshot {
    const VERSION: u8 = 3;

    fn state_bytes(&self) -> u64 {
        let pane = |p: &PaneSnapshot| p.state.state_bytes(Acc::state_bytes);
        self.panes.iter().map(pane).sum()
    }
}

impl WindowAggregate {
    /// Freezes the panes and watermark (never while a firing is paused).
    pub(super) fn freeze_state(&mut self) -> Result<Option<Frozen>, EngineError> {
        if !self.firing.is_empty() {
            return Err(corrupt(
                self.name(),
                "a snapshot was asked for while a firing is paused (Emit::More)",
            ));
        }
        if let Some(rocks) = &mut self.rocks {
            let header = RocksWindowHeader {
                key_type: self.key.map(|_| self.key_type),
                size: self.size,
                slide: self.slide,
                lateness: self.lateness,
                aggs: signatures(&self.aggs),
                watermark: self.watermark,
                panes: Vec::new(),
            };
            return Ok(Some(Box::new(rocks.freeze("window", header)?)));
        }
        let panes = self
            .panes
            .iter_mut()
            .map(|(start, pane)| PaneSnapshot {
                start: *start,
                state: pane.snapshot(),
            })
            .collect();
        let state = WindowSnapshot {
            key_type: self.key.map(|_| self.key_type),
            size: self.size,
            slide: self.slide,
            lateness: self.lateness,
            aggs: signatures(&self.aggs),
            watermark: self.watermark,
            panes,
        };
        Ok(Some(Snapshot::frozen(self.name(), state)))
    }

    /// Replaces the panes and watermark with a checkpoint's, checked against this operator.
    pub(super) fn restore_state(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        if self.rocks.is_some() {
            return self.restore_rocks(state);
        }
        let s: WindowSnapshot = decode(name, state)?;
        expect_same(
            name,
            "key type",
            &s.key_type,
            &self.key.map(|_| self.key_type),
        )?;
        expect_same(name, "window size_ms", &s.size, &self.size)?;
        expect_same(name, "window slide_ms", &s.slide, &self.slide)?;
        expect_same(name, "allowed lateness_ms", &s.lateness, &self.lateness)?;
        expect_same(name, "aggregates", &s.aggs, &signatures(&self.aggs))?;
        let mut panes = BTreeMap::new();
        for p in s.panes {
            let what = |m: String| corrupt(name, format!("pane at {}: {m}", p.start));
            let pane = KeyedState::restore(
                p.state,
                self.key_type,
                self.aggs.len(),
                KEYED_STATE_KEYS_MAX,
            )
            .map_err(&what)?;
            if self.key.is_none() && pane.len() > 1 {
                return Err(what(format!("{} keys in a keyless window", pane.len())));
            }
            for slot in 0..pane.len() {
                check_all(&self.aggs, pane.values(slot)).map_err(&what)?;
            }
            if panes.insert(p.start, pane).is_some() {
                return Err(what("the pane is in the checkpoint twice".into()));
            }
        }
        self.panes = panes;
        self.watermark = s.watermark;
        Ok(())
    }

    /// Replaces the panes in RocksDB and the watermark with a checkpoint's.
    fn restore_rocks(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        let s: RocksSnapshot<RocksWindowHeader> = decode(name, state)?;
        let h = &s.header;
        let key_type = self.key.map(|_| self.key_type);
        expect_same(name, "key type", &h.key_type, &key_type)?;
        expect_same(name, "window size_ms", &h.size, &self.size)?;
        expect_same(name, "window slide_ms", &h.slide, &self.slide)?;
        expect_same(name, "allowed lateness_ms", &h.lateness, &self.lateness)?;
        expect_same(name, "aggregates", &h.aggs, &signatures(&self.aggs))?;
        if let Some(rocks) = &mut self.rocks {
            rocks
                .restore(&s.files, &h.panes)
                .map_err(|m| corrupt(name, m))?;
        }
        self.watermark = h.watermark;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::operator::window_aggregate::tests::{rows, schema};
    use crate::operator::{Output, WindowKind};
    use crate::record::{Column, OwnedValue, Value};

    /// Restores a real snapshot after `change`; the original state has one pane at 0 with
    /// keys `a` and `b`, and one at 10 with key `a`.
    fn restore_changed(change: impl FnOnce(&mut WindowSnapshot)) -> Result<(), EngineError> {
        let s = schema();
        let kind = WindowKind::Tumbling { size_ms: 10 };
        let aggs = ["count(*) AS n", "last(k) AS l"];
        let make = || WindowAggregate::new(&s, Some("k"), "ts", kind, 5, &aggs).unwrap();
        let mut w = make();
        let mut out = Output::new(w.output_schema().clone(), s.clone());
        let input = batch(&s, &rows(&[("a", 1), ("b", 2), ("a", 13)]));
        w.process(&input, &mut out).unwrap();
        let mut bytes = Vec::new();
        w.snapshot().unwrap().unwrap().write_to(&mut bytes).unwrap();
        let mut state: WindowSnapshot = decode("window", &bytes).unwrap();
        change(&mut state);
        bytes.clear();
        Snapshot::frozen("window", state)
            .write_to(&mut bytes)
            .unwrap();
        make().restore(&bytes)
    }

    fn refusal(result: Result<(), EngineError>) -> String {
        match result {
            Err(EngineError::Checkpoint(m)) if m.starts_with("window: ") => m,
            other => panic!("expected a checkpoint error naming the window, got {other:?}"),
        }
    }

    #[test]
    fn a_restore_refuses_panes_the_operator_could_not_have_made() {
        assert!(restore_changed(|_| {}).is_ok());
        let m = refusal(restore_changed(|s| {
            s.panes[0].state.first_chunk_mut().values[0] = Acc::Int(Some(1))
        }));
        assert!(
            m.contains("pane at 0") && m.contains("aggregate `n`"),
            "{m}"
        );
        let m = refusal(restore_changed(|s| {
            s.panes[0].state.first_chunk_mut().values[1] = Acc::Val(Some(OwnedValue::Int(3)));
        }));
        assert!(m.contains("not of type string"), "{m}");
        let m = refusal(restore_changed(|s| {
            s.panes[0].state.first_chunk_mut().values.pop();
        }));
        assert!(m.contains("3 values for 2 keys of 2 values"), "{m}");
        let m = refusal(restore_changed(|s| {
            let mut twice = Column::new(DataType::String);
            for k in ["a", "a"] {
                assert!(twice.push(Value::Str(k)));
            }
            s.panes[0].state.first_chunk_mut().keys = twice;
        }));
        assert!(m.contains("slots 0 and 1"), "{m}");
        let m = refusal(restore_changed(|s| {
            let mut ints = Column::new(DataType::Int);
            for k in [1, 2] {
                assert!(ints.push(Value::Int(k)));
            }
            s.panes[0].state.first_chunk_mut().keys = ints;
        }));
        assert!(m.contains("keys are int, expected string"), "{m}");
        let m = refusal(restore_changed(|s| {
            let p = &s.panes[1];
            let again = PaneSnapshot {
                start: p.start,
                state: p.state.clone(),
            };
            s.panes.push(again);
        }));
        assert!(m.contains("pane at 10") && m.contains("twice"), "{m}");
    }
}
