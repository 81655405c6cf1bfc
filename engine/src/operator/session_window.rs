//! Session windows: per key, records closer than `gap_ms` to each other form one session
//! `[first_ts, last_ts + gap_ms)`; sessions that a record bridges are merged. Firing,
//! lateness and the late side output follow [`crate::operator::window`], judged on the
//! session a record ends up in: a record that joins a live session is never late, and a
//! session that a late record changes is emitted again — at once if the watermark has passed
//! its (new) end, else when it gets there. So the last emission of every session shows all
//! the records in it.
//!
//! Output fields: the key (if any), `window_start`, `window_end`, then the aggregates.
//!
//! HOT PATH: per record one keyed lookup and a scan of that key's open sessions (few); no
//! per-record allocation once a key's session list exists. No locks, no logging.
//!
//! ```
//! use sluice_engine::operator::{Emit, Operator, Output, SessionWindow};
//! use sluice_engine::record::{Batch, DataType, Schema, Value};
//!
//! let schema = Schema::of(&[("ts", DataType::Timestamp)]).unwrap();
//! let mut s = SessionWindow::new(&schema, None, "ts", 5, 0, &["count(*) AS n"]).unwrap();
//! let mut input = Batch::new(schema.clone());
//! for ts in [1, 3, 20] {
//!     input.push_row(&[Value::Timestamp(ts)]).unwrap();
//! }
//! let mut out = Output::new(s.output_schema().clone(), schema);
//! s.process(&input, &mut out).unwrap();
//! assert_eq!(s.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
//! assert_eq!(out.main.len(), 2); // [1, 8) with 2 records, [20, 25) with 1
//! ```

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::operator::agg::{
    check_all, init_all, parse_aggs, signatures, update_all, Acc, AggSignature, AggSpec,
};
use crate::operator::window_aggregate::{emit_window_row, window_schema};
use crate::operator::{time_column, Emit, Frozen, Operator, Output, OUTPUT_BATCH_RECORDS_MAX};
use crate::record::hash::hash_value;
use crate::record::{Batch, DataType, SchemaRef, Value};
use crate::state::codec::{corrupt, decode, expect_same, Snapshot, StateFormat};
use crate::state::rocks::RocksSnapshot;
use crate::state::{KeyedSnapshot, KeyedState, RocksEnv};

mod rocks;

use rocks::{RocksSessionHeader, RocksSessions};

/// The operator's name in errors and checkpoints.
const NAME: &str = "window (session)";

/// A session window's checkpoint: its configuration (checked on restore), the watermark and
/// every key's sessions, keys in the order they arrived.
#[derive(Serialize, Deserialize)]
struct SessionSnapshot {
    key_type: Option<DataType>,
    gap: i64,
    lateness: i64,
    aggs: Vec<AggSignature>,
    watermark: i64,
    sessions: KeyedSnapshot<Vec<Session>>,
}

impl StateFormat for SessionSnapshot {
    const VERSION: u8 = 3;

    fn state_bytes(&self) -> u64 {
        let session = |s: &Session| {
            std::mem::size_of::<Session>() as u64 + s.accs.iter().map(Acc::state_bytes).sum::<u64>()
        };
        self.sessions
            .state_bytes(|list| list.iter().map(session).sum::<u64>())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session {
    start: i64,
    end: i64,
    fired: bool,
    accs: Vec<Acc>,
}

/// Keyed aggregation over session windows.
#[derive(Debug)]
pub struct SessionWindow {
    key: Option<usize>,
    key_type: Option<DataType>,
    time: usize,
    gap: i64,
    lateness: i64,
    aggs: Vec<AggSpec>,
    /// Every key's sessions in memory (`state_backend = "memory"`)...
    sessions: KeyedState<Vec<Session>>,
    /// ... or in RocksDB (`sessions` is then empty).
    rocks: Option<Box<RocksSessions>>,
    watermark: i64,
    /// The position in `sessions` where a firing that filled the output goes on.
    fire_next: Option<usize>,
    schema: SchemaRef,
}

impl SessionWindow {
    /// Aggregates `aggs` per `key` over sessions with inactivity gap `gap_ms`.
    pub fn new(
        input: &SchemaRef,
        key: Option<&str>,
        time: &str,
        gap_ms: i64,
        lateness_ms: i64,
        aggs: &[impl AsRef<str>],
    ) -> Result<Self, EngineError> {
        Self::with_state(input, key, time, gap_ms, lateness_ms, aggs, None)
    }

    /// Like [`Self::new`], keeping the sessions in RocksDB when `rocks` says where.
    pub fn with_state(
        input: &SchemaRef,
        key: Option<&str>,
        time: &str,
        gap_ms: i64,
        lateness_ms: i64,
        aggs: &[impl AsRef<str>],
        rocks: Option<RocksEnv>,
    ) -> Result<Self, EngineError> {
        if gap_ms <= 0 || lateness_ms < 0 {
            return Err(EngineError::Plan(
                "session gap must be positive and lateness not negative".into(),
            ));
        }
        let aggs = parse_aggs(aggs, input)?;
        let key = key.map(|k| input.require(k)).transpose()?;
        let schema = window_schema(input, key, &aggs)?;
        let key_type = key.map(|k| input.fields()[k].data_type);
        Ok(Self {
            key,
            key_type,
            time: time_column(input, time)?,
            gap: gap_ms,
            lateness: lateness_ms,
            aggs,
            // Keyless sessions file every record under the int 0.
            sessions: KeyedState::new(key_type.unwrap_or(DataType::Int), 1),
            rocks: rocks
                .map(|env| {
                    RocksSessions::create(env, key_type.unwrap_or(DataType::Int), lateness_ms)
                })
                .transpose()?
                .map(Box::new),
            watermark: i64::MIN,
            fire_next: None,
            schema,
        })
    }
}

/// Adds the record at `row` of `input` (event time `ts`, its own session ending at `end`) to
/// a key's sessions `list`: a new session, or the one it extends, merged with any others it
/// bridges. Returns the session it is in.
fn add_record<'l>(
    list: &'l mut Vec<Session>,
    ts: i64,
    end: i64,
    aggs: &[AggSpec],
    input: &Batch,
    row: usize,
) -> &'l mut Session {
    // Sessions are kept sorted by start and never overlap; `first..last` are the ones the
    // record's `[ts, ts + gap)` overlaps.
    let first = list.iter().position(|s| s.end > ts).unwrap_or(list.len());
    let mut last = first;
    while last < list.len() && list[last].start < end {
        last += 1;
    }
    if first == last {
        let accs = init_all(aggs);
        list.insert(
            first,
            Session {
                start: ts,
                end,
                fired: false,
                accs,
            },
        );
    } else {
        // Merge sessions first+1..last into `first`, later ones in time order.
        for j in first + 1..last {
            let (head, tail) = list.split_at_mut(j);
            let (s, merged) = (&mut head[first], &tail[0]);
            for (spec, (acc, later)) in aggs.iter().zip(s.accs.iter_mut().zip(&merged.accs)) {
                spec.merge(acc, later);
            }
            s.end = s.end.max(merged.end);
        }
        list.drain(first + 1..last);
        let s = &mut list[first];
        s.start = s.start.min(ts);
        s.end = s.end.max(end);
    }
    let s = &mut list[first];
    update_all(aggs, &mut s.accs, input, row);
    s
}

/// Emits the sessions of one key (`key`, if the window is keyed) that the watermark passed
/// and that are not fired yet, marking them fired, while `out` has room; returns whether
/// every one was.
fn fire_list(
    list: &mut [Session],
    watermark: i64,
    key: Option<Value<'_>>,
    aggs: &[AggSpec],
    out: &mut Batch,
) -> bool {
    for s in list
        .iter_mut()
        .filter(|s| !s.fired && s.end - 1 <= watermark)
    {
        if out.len() >= OUTPUT_BATCH_RECORDS_MAX {
            return false;
        }
        s.fired = true;
        emit_window_row(out, key, s.start, s.end, aggs, &s.accs);
    }
    true
}

impl Operator for SessionWindow {
    fn name(&self) -> &'static str {
        NAME
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn process(&mut self, input: &Batch, out: &mut Output) -> Result<(), EngineError> {
        if let Some(rocks) = &mut self.rocks {
            rocks.reserve(input.len())?;
        }
        let times = input.column(self.time);
        for row in 0..input.len() {
            let ts = times.get_i64(row).unwrap_or(i64::MIN);
            let end = ts.saturating_add(self.gap);
            let key = self.key.map(|k| input.value(row, k));
            let lookup = key.unwrap_or(Value::Int(0));
            let hash = hash_value(lookup);
            // A record is late only if the session it ends up in is past its lateness. Live
            // sessions never are (they are dropped when they get there), so a record is late
            // when its own `[ts, ts + gap)` is past it and it touches no live session.
            if (end - 1).saturating_add(self.lateness) <= self.watermark {
                let touches = |list: &[Session]| list.iter().any(|s| s.start < end && s.end > ts);
                let touches = match &mut self.rocks {
                    Some(rocks) => rocks.read(hash, lookup)?.is_some_and(|l| touches(&l)),
                    None => (self.sessions.find(hash, lookup))
                        .is_some_and(|slot| touches(&self.sessions.values(slot)[0])),
                };
                if !touches {
                    out.late.push_row_from(input, row);
                    continue;
                }
            }
            let list = match &mut self.rocks {
                Some(rocks) => rocks.entry(hash, lookup)?,
                None => {
                    let (slot, _) = (self.sessions)
                        .slot_hashed(hash, lookup, |_| Vec::new())
                        .map_err(|e| e.in_operator(NAME))?;
                    &mut self.sessions.values_mut(slot)[0]
                }
            };
            let s = add_record(list, ts, end, &self.aggs, input, row);
            // `fired` means "the last emission shows this state". A session the watermark
            // has passed emits its update at once; one that the update moved past the
            // watermark (a late record extending a fired session) fires again when the
            // watermark reaches its new end.
            s.fired = s.end - 1 <= self.watermark;
            if s.fired {
                emit_window_row(&mut out.main, key, s.start, s.end, &self.aggs, &s.accs);
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<Emit, EngineError> {
        if watermark > self.watermark {
            // A firing still under way starts over: sessions it emitted are marked fired.
            self.watermark = watermark;
            self.fire_next = Some(0);
            if let Some(rocks) = &mut self.rocks {
                rocks.restart();
            }
        }
        let Some(mut next) = self.fire_next else {
            return Ok(Emit::Done);
        };
        let has_key = self.key.is_some();
        if let Some(rocks) = &mut self.rocks {
            if !rocks.fire(watermark, has_key, &self.aggs, &mut out.main)? {
                return Ok(Emit::More);
            }
            self.fire_next = None;
            return Ok(Emit::Done);
        }
        while next < self.sessions.len() {
            let (key, list) = self.sessions.key_values_mut(next);
            let key = has_key.then_some(key);
            if !fire_list(&mut list[0], watermark, key, &self.aggs, &mut out.main) {
                self.fire_next = Some(next);
                return Ok(Emit::More);
            }
            next += 1;
        }
        self.fire_next = None;
        let lateness = self.lateness;
        self.sessions.retain(|_, list| {
            list[0].retain(|s| (s.end - 1).saturating_add(lateness) > watermark);
            !list[0].is_empty()
        });
        Ok(Emit::Done)
    }

    fn snapshot(&mut self) -> Result<Option<Frozen>, EngineError> {
        if self.fire_next.is_some() {
            return Err(corrupt(
                self.name(),
                "a snapshot was asked for while a firing is paused (Emit::More)",
            ));
        }
        if let Some(rocks) = &mut self.rocks {
            let header = RocksSessionHeader {
                key_type: self.key_type,
                gap: self.gap,
                lateness: self.lateness,
                aggs: signatures(&self.aggs),
                watermark: self.watermark,
            };
            return Ok(Some(Box::new(rocks.freeze(NAME, header)?)));
        }
        let state = SessionSnapshot {
            key_type: self.key_type,
            gap: self.gap,
            lateness: self.lateness,
            aggs: signatures(&self.aggs),
            watermark: self.watermark,
            sessions: self.sessions.snapshot(),
        };
        Ok(Some(Snapshot::frozen(self.name(), state)))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let name = self.name();
        if let Some(rocks) = &mut self.rocks {
            let s: RocksSnapshot<RocksSessionHeader> = decode(name, state)?;
            let h = &s.header;
            expect_same(name, "key type", &h.key_type, &self.key_type)?;
            expect_same(name, "session gap_ms", &h.gap, &self.gap)?;
            expect_same(name, "allowed lateness_ms", &h.lateness, &self.lateness)?;
            expect_same(name, "aggregates", &h.aggs, &signatures(&self.aggs))?;
            rocks.restore(&s.files)?;
            self.watermark = h.watermark;
            self.fire_next = None;
            return Ok(());
        }
        let s: SessionSnapshot = decode(name, state)?;
        expect_same(name, "key type", &s.key_type, &self.key_type)?;
        expect_same(name, "session gap_ms", &s.gap, &self.gap)?;
        expect_same(name, "allowed lateness_ms", &s.lateness, &self.lateness)?;
        expect_same(name, "aggregates", &s.aggs, &signatures(&self.aggs))?;
        let sessions = KeyedState::restore(
            s.sessions,
            self.sessions.key_type(),
            1,
            self.sessions.keys_max(),
        )
        .map_err(|m| corrupt(name, format!("keyed state: {m}")))?;
        for slot in 0..sessions.len() {
            let (key, list) = (sessions.key(slot), &sessions.values(slot)[0]);
            let what = |m: String| corrupt(name, format!("sessions of key {key}: {m}"));
            let mut previous_start = i64::MIN;
            for session in list {
                // `end - 1` is computed for every session, and sessions are kept sorted.
                if session.end == i64::MIN || session.end < session.start {
                    return Err(what(format!(
                        "session [{}, {}) is empty",
                        session.start, session.end
                    )));
                }
                if session.start < previous_start {
                    return Err(what("the sessions are not sorted by start".into()));
                }
                previous_start = session.start;
                if session.accs.len() != self.aggs.len() {
                    return Err(what(format!(
                        "a session has {} aggregate states, expected {}",
                        session.accs.len(),
                        self.aggs.len()
                    )));
                }
                check_all(&self.aggs, &session.accs).map_err(&what)?;
            }
        }
        self.sessions = sessions;
        self.watermark = s.watermark;
        self.fire_next = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::test_util::batch;
    use crate::record::{Column, DataType, OwnedValue, Schema};

    #[test]
    fn a_bridging_record_merges_sessions() {
        let schema = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut s = SessionWindow::new(
            &schema,
            Some("k"),
            "ts",
            10,
            0,
            &["count(*) AS n", "min(ts) AS lo"],
        )
        .unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        let rows = |v: &[(i64, i64)]| -> Vec<Vec<Value<'static>>> {
            v.iter()
                .map(|(k, t)| vec![Value::Int(*k), Value::Timestamp(*t)])
                .collect()
        };
        s.process(&batch(&schema, &rows(&[(1, 0), (1, 30), (2, 5)])), &mut out)
            .unwrap();
        s.process(&batch(&schema, &rows(&[(1, 15)])), &mut out)
            .unwrap(); // [15,25) touches neither
        s.process(&batch(&schema, &rows(&[(1, 22)])), &mut out)
            .unwrap(); // bridges [15,25) and [30,40)
        assert_eq!(s.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        let mut got = out.main.to_rows();
        got.sort_by_key(|r| format!("{r:?}"));
        let (i, t) = (OwnedValue::Int, OwnedValue::Timestamp);
        assert_eq!(
            got,
            [
                vec![i(1), t(0), t(10), i(1), t(0)],
                vec![i(1), t(15), t(40), i(3), t(15)],
                vec![i(2), t(5), t(15), i(1), t(5)],
            ]
        );
    }

    #[test]
    fn a_late_record_that_extends_a_fired_session_fires_it_again() {
        // Gap 10, lateness 20: [0, 10) fires at watermark 9. At watermark 15 a record at 8
        // (its own session [8, 18) is within the lateness) extends it to [0, 18), past the
        // watermark: the merged session must fire when the watermark reaches 17.
        let schema = Schema::of(&[("ts", DataType::Timestamp)]).unwrap();
        let mut s = SessionWindow::new(&schema, None, "ts", 10, 20, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        s.process(&batch(&schema, &[vec![Value::Timestamp(0)]]), &mut out)
            .unwrap();
        assert_eq!(s.on_watermark(15, &mut out).unwrap(), Emit::Done);
        let (i, t) = (OwnedValue::Int, OwnedValue::Timestamp);
        assert_eq!(out.main.to_rows(), [vec![t(0), t(10), i(1)]]);
        out.clear();
        s.process(&batch(&schema, &[vec![Value::Timestamp(8)]]), &mut out)
            .unwrap();
        assert!(out.main.is_empty() && out.late.is_empty());
        assert_eq!(s.on_watermark(17, &mut out).unwrap(), Emit::Done);
        assert_eq!(out.main.to_rows(), [vec![t(0), t(18), i(2)]]);
        out.clear();
        // Within the lateness of the merged session, a record inside it re-fires at once.
        s.process(&batch(&schema, &[vec![Value::Timestamp(3)]]), &mut out)
            .unwrap();
        assert_eq!(out.main.to_rows(), [vec![t(0), t(18), i(3)]]);
        assert_eq!(s.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        assert_eq!(out.main.len(), 1, "nothing is left to fire");
    }

    #[test]
    fn a_record_inside_an_open_session_is_not_late() {
        // Session [0, 40) (records at 0 and 30, gap 10) is open at watermark 35; a record at
        // 5 has its own [5, 15) long past, but it falls into the open session.
        let schema = Schema::of(&[("ts", DataType::Timestamp)]).unwrap();
        let mut s = SessionWindow::new(&schema, None, "ts", 10, 0, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        let rows = |ts: &[i64]| -> Vec<Vec<Value<'static>>> {
            ts.iter().map(|t| vec![Value::Timestamp(*t)]).collect()
        };
        s.process(&batch(&schema, &rows(&[0, 8, 16, 24, 30])), &mut out)
            .unwrap();
        assert_eq!(s.on_watermark(35, &mut out).unwrap(), Emit::Done);
        s.process(&batch(&schema, &rows(&[5])), &mut out).unwrap();
        assert!(out.late.is_empty());
        assert_eq!(s.on_watermark(i64::MAX, &mut out).unwrap(), Emit::Done);
        let (i, t) = (OwnedValue::Int, OwnedValue::Timestamp);
        assert_eq!(out.main.to_rows(), [vec![t(0), t(40), i(6)]]);
    }

    #[test]
    fn many_sessions_fire_in_bounded_batches() {
        let schema = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let mut s =
            SessionWindow::new(&schema, Some("k"), "ts", 10, 0, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        let rows: Vec<_> = (0..3_000)
            .map(|k| vec![Value::Int(k), Value::Timestamp(k % 7)])
            .collect();
        s.process(&batch(&schema, &rows), &mut out).unwrap();
        let (got, sizes) = crate::operator::test_util::drain(&mut s, 100, &mut out);
        assert!(
            sizes.iter().all(|n| *n <= OUTPUT_BATCH_RECORDS_MAX),
            "{sizes:?}"
        );
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        let keys: std::collections::BTreeSet<_> =
            got.iter().map(|r| format!("{:?}", r[0])).collect();
        assert_eq!((got.len(), keys.len()), (3_000, 3_000));
        assert!(
            s.sessions.is_empty(),
            "fired sessions past their lateness are dropped"
        );
    }

    #[test]
    fn late_sessions_go_to_the_side_output() {
        let schema = Schema::of(&[("ts", DataType::Timestamp)]).unwrap();
        let mut s = SessionWindow::new(&schema, None, "ts", 10, 0, &["count(*) AS n"]).unwrap();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        assert_eq!(s.on_watermark(100, &mut out).unwrap(), Emit::Done);
        s.process(&batch(&schema, &[vec![Value::Timestamp(91)]]), &mut out)
            .unwrap();
        assert_eq!(out.late.len(), 1);
        s.process(&batch(&schema, &[vec![Value::Timestamp(95)]]), &mut out)
            .unwrap();
        assert_eq!(out.late.len(), 1);
        assert!(out.main.is_empty());
    }

    /// Restores a real snapshot after `change`; the original state has key 1 with sessions
    /// [0, 10) and [30, 40), and key 2 with [5, 15).
    fn restore_changed(change: impl FnOnce(&mut SessionSnapshot)) -> Result<(), EngineError> {
        let schema = Schema::of(&[("k", DataType::Int), ("ts", DataType::Timestamp)]).unwrap();
        let aggs = ["count(*) AS n", "first(ts) AS t0"];
        let make = || SessionWindow::new(&schema, Some("k"), "ts", 10, 0, &aggs).unwrap();
        let mut s = make();
        let mut out = Output::new(s.output_schema().clone(), schema.clone());
        let rows: Vec<_> = [(1, 0), (1, 30), (2, 5)]
            .iter()
            .map(|(k, t)| vec![Value::Int(*k), Value::Timestamp(*t)])
            .collect();
        s.process(&batch(&schema, &rows), &mut out).unwrap();
        let mut bytes = Vec::new();
        s.snapshot().unwrap().unwrap().write_to(&mut bytes).unwrap();
        let name = "window (session)";
        let mut state: SessionSnapshot = decode(name, &bytes).unwrap();
        change(&mut state);
        bytes.clear();
        Snapshot::frozen(name, state).write_to(&mut bytes).unwrap();
        make().restore(&bytes)
    }

    fn refusal(result: Result<(), EngineError>) -> String {
        match result {
            Err(EngineError::Checkpoint(m)) if m.starts_with("window (session): ") => m,
            other => panic!("expected a checkpoint error naming the operator, got {other:?}"),
        }
    }

    #[test]
    fn a_restore_refuses_sessions_the_operator_could_not_have_made() {
        assert!(restore_changed(|_| {}).is_ok());
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().values[0][0].end = -1
        }));
        assert!(m.contains("key 1") && m.contains("[0, -1) is empty"), "{m}");
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().values[0][1].start = i64::MIN;
            s.sessions.first_chunk_mut().values[0][1].end = i64::MIN;
        }));
        assert!(m.contains("is empty"), "{m}");
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().values[0].swap(0, 1)
        }));
        assert!(m.contains("not sorted"), "{m}");
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().values[1][0].accs[1] =
                Acc::Val(Some(OwnedValue::Str("x".into())));
        }));
        assert!(m.contains("key 2") && m.contains("`t0`"), "{m}");
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().values[1][0]
                .accs
                .push(Acc::Count(1));
        }));
        assert!(m.contains("3 aggregate states, expected 2"), "{m}");
        let keys = |values: &[Value<'_>]| {
            let mut column = Column::new(values[0].data_type());
            for v in values {
                assert!(column.push(*v));
            }
            column
        };
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().keys = keys(&[Value::Float(1.0), Value::Float(2.0)]);
        }));
        assert!(m.contains("keys are float, expected int"), "{m}");
        let m = refusal(restore_changed(|s| {
            s.sessions.first_chunk_mut().keys = keys(&[Value::Int(1), Value::Int(1)]);
        }));
        assert!(
            m.contains("keyed state") && m.contains("key 1 is in slots 0 and 1"),
            "{m}"
        );
    }
}
