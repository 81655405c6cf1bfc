//! Planning: checks a job spec against its schemas and cuts it into stages at exchanges.
//! Every operator is built once here, so a bad expression, an unknown column or a schema
//! mismatch is reported before any thread starts; shards later build their own copies.
//!
//! Stages form a tree: source stages at the leaves, exchanges (key_by, gathering keyless
//! state, the two inputs of a join) as edges, the sinks after the root. Producers always come
//! before their consumer in [`Plan::stages`].

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::EngineError;
use crate::operator::{
    Aggregate, Filter, FlatMap, IntervalJoin, Map, Operator, Reduce, ReduceFn, SessionWindow,
    TwoInputOperator, Union, WindowAggregate, WindowJoin, WindowKind,
};
use crate::record::{Batch, DataType, Schema, SchemaRef, Value};
use crate::source::nexmark::nexmark_schema;
use crate::spec::files::check_files;
use crate::spec::job::{
    JobSpec, JoinSpec, OperatorSpec, SourceSpec, WatermarkSpec, KEY_GROUPS_MAX, PARALLELISM_MAX,
    PROCESSING_TIME_COLUMN,
};
use crate::state::{RocksEnv, KEYED_STATE_KEYS_MAX};

/// Which part of a spec an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecItem {
    /// The job as a whole.
    Job,
    /// `[[source]]` number `n` (0-based).
    Source(usize),
    /// `[[operator]]` number `n` (0-based).
    Operator(usize),
    /// `[[sink]]` number `n` (0-based).
    Sink(usize),
    /// `[[stream]]` number `n` (0-based).
    Stream(usize),
    /// The job's `[watermark]` table.
    Watermark,
    /// The `late_sink`.
    LateSink,
    /// The `dead_letter` file.
    DeadLetter,
}

/// How records reach a stage from the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// To shard `hash(column) % shards`.
    Hash(usize),
    /// All to shard 0 (for keyless state when parallelism > 1).
    Single,
}

/// A fully resolved operator.
#[derive(Clone, Debug)]
pub enum OpPlan {
    /// See [`Filter`].
    Filter(String),
    /// See [`Map`].
    Map(Vec<String>),
    /// See [`FlatMap`].
    FlatMap {
        column: String,
        separator: String,
        output: String,
    },
    /// See [`Reduce`].
    Reduce {
        key: Option<String>,
        column: String,
        func: ReduceFn,
    },
    /// See [`Aggregate`].
    Aggregate {
        key: Option<String>,
        aggs: Vec<String>,
    },
    /// See [`WindowAggregate`] and [`SessionWindow`].
    Window {
        key: Option<String>,
        time: String,
        kind: WindowKind,
        lateness: i64,
        aggs: Vec<String>,
    },
}

/// A resolved join.
#[derive(Clone, Debug)]
pub struct JoinPlan {
    /// Whether it is an interval join (else a window join).
    pub interval: bool,
    /// The settings.
    pub spec: JoinSpec,
    /// Left event-time column.
    pub left_time: String,
    /// Right event-time column.
    pub right_time: String,
    /// Left input schema.
    pub left_schema: SchemaRef,
    /// Right input schema.
    pub right_schema: SchemaRef,
}

/// Where a stage reads.
#[derive(Clone, Debug)]
pub enum InputPlan {
    /// Sources (indices into [`Plan::sources`]) with their event-time settings and the
    /// event-time column in their schema.
    Sources {
        sources: Vec<usize>,
        watermark: WatermarkSpec,
        time_column: Option<usize>,
        /// The sources' own schema (without `proc_time`).
        raw_schema: SchemaRef,
    },
    /// An exchange edge.
    Edge(usize),
    /// Two exchange edges feeding a join.
    Join {
        left: usize,
        right: usize,
        join: JoinPlan,
    },
}

/// Operators between two exchanges, fused into one loop on a shard.
#[derive(Clone, Debug)]
pub struct StagePlan {
    /// Where the stage reads.
    pub input: InputPlan,
    /// The operators in order.
    pub ops: Vec<OpPlan>,
    /// Schema of what the operators receive (the join output for a join stage).
    pub input_schema: SchemaRef,
    /// The edge and routing to the consuming stage; `None` for the last stage (sinks).
    pub output: Option<(usize, Exchange)>,
}

/// A checked job.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The spec it came from.
    pub spec: JobSpec,
    /// Every source of the job and its streams.
    pub sources: Vec<SourceSpec>,
    /// Inline rows of `values` sources, by source index.
    pub values: Vec<Option<Arc<Batch>>>,
    /// The stages, producers before consumers.
    pub stages: Vec<StagePlan>,
    /// Number of exchange edges.
    pub edges: usize,
    /// Schema of the records each exchange edge carries, by edge.
    pub edge_schemas: Vec<SchemaRef>,
    /// Schema of the records reaching the sinks.
    pub output_schema: SchemaRef,
}

/// Builds the operators of a stage; with `rocks` (the stage's part of the RocksDB state
/// backend), reduce, aggregate, window and session operators keep their state in RocksDB,
/// each in its own directory and under its own prefix of shared checkpoint files.
pub fn build_ops(
    stage: &StagePlan,
    rocks: Option<&RocksEnv>,
) -> Result<Vec<Box<dyn Operator>>, EngineError> {
    let mut schema = stage.input_schema.clone();
    let mut ops: Vec<Box<dyn Operator>> = Vec::with_capacity(stage.ops.len());
    for (i, op) in stage.ops.iter().enumerate() {
        let rocks = rocks.map(|env| operator_env(env, &format!("op-{i}")));
        let built = build_op(op, &schema, rocks)?;
        schema = built.output_schema().clone();
        ops.push(built);
    }
    Ok(ops)
}

/// The part of a stage's RocksDB state backend that its operator `name` owns: a directory
/// and a prefix of shared checkpoint files of its own.
fn operator_env(stage: &RocksEnv, name: &str) -> RocksEnv {
    RocksEnv {
        dir: stage.dir.join(name),
        storage: stage
            .storage
            .as_ref()
            .map(|(store, prefix)| (store.clone(), format!("{prefix}/{name}"))),
        ..stage.clone()
    }
}

/// Builds the join of a join stage; with `rocks`, the join keeps its rows in RocksDB.
pub fn build_join(
    join: &JoinPlan,
    rocks: Option<&RocksEnv>,
) -> Result<Box<dyn TwoInputOperator>, EngineError> {
    let s = &join.spec;
    let keys = (s.left_key.as_str(), s.right_key.as_str());
    let times = (join.left_time.as_str(), join.right_time.as_str());
    let (l, r) = (&join.left_schema, &join.right_schema);
    let rocks = rocks.map(|env| operator_env(env, "join"));
    Ok(if join.interval {
        Box::new(IntervalJoin::with_state(
            l,
            r,
            keys,
            times,
            (s.lower_ms, s.upper_ms),
            rocks,
        )?)
    } else {
        Box::new(WindowJoin::with_state(l, r, keys, times, s.size_ms, rocks)?)
    })
}

fn build_op(
    op: &OpPlan,
    input: &SchemaRef,
    rocks: Option<RocksEnv>,
) -> Result<Box<dyn Operator>, EngineError> {
    Ok(match op {
        OpPlan::Filter(p) => Box::new(Filter::new(input, p)?),
        OpPlan::Map(exprs) => Box::new(Map::new(input, exprs)?),
        OpPlan::FlatMap {
            column,
            separator,
            output,
        } => Box::new(FlatMap::split(input, column, separator, output)?),
        OpPlan::Reduce { key, column, func } => Box::new(Reduce::with_state(
            input,
            key.as_deref(),
            column,
            func.clone(),
            rocks,
        )?),
        OpPlan::Aggregate { key, aggs } => {
            Box::new(Aggregate::with_state(input, key.as_deref(), aggs, rocks)?)
        }
        OpPlan::Window {
            key,
            time,
            kind: WindowKind::Session { gap_ms },
            lateness,
            aggs,
        } => Box::new(SessionWindow::with_state(
            input,
            key.as_deref(),
            time,
            *gap_ms,
            *lateness,
            aggs,
            rocks,
        )?),
        OpPlan::Window {
            key,
            time,
            kind,
            lateness,
            aggs,
        } => Box::new(WindowAggregate::with_state(
            input,
            key.as_deref(),
            time,
            *kind,
            *lateness,
            aggs,
            rocks,
        )?),
    })
}

/// Returns the schema of a source.
pub fn source_schema(source: &SourceSpec) -> Result<SchemaRef, EngineError> {
    match source {
        SourceSpec::Nexmark(c) => Ok(nexmark_schema(c.table)),
        SourceSpec::Tcp { addr, .. } if addr.parse::<std::net::SocketAddr>().is_err() => Err(
            EngineError::Plan(format!("tcp addr `{addr}` is not an ip:port address")),
        ),
        SourceSpec::File { fields, .. }
        | SourceSpec::Values { fields, .. }
        | SourceSpec::Tcp { fields, .. } => Ok(Arc::new(Schema::new(fields.clone())?)),
        SourceSpec::Custom(c) => Ok(c.schema.clone()),
    }
}

fn values_batch(schema: &SchemaRef, rows: &[Vec<toml::Value>]) -> Result<Batch, EngineError> {
    let mut batch = Batch::new(schema.clone());
    for (r, row) in rows.iter().enumerate() {
        if row.len() != schema.len() {
            return Err(EngineError::Plan(format!(
                "row {r} has {} values, expected {} ({schema})",
                row.len(),
                schema.len()
            )));
        }
        let values = row
            .iter()
            .zip(schema.fields())
            .map(|(v, f)| match (v, f.data_type) {
                (toml::Value::Integer(i), DataType::Timestamp) => Ok(Value::Timestamp(*i)),
                (toml::Value::Integer(i), _) => Ok(Value::Int(*i)),
                (toml::Value::Float(x), _) => Ok(Value::Float(*x)),
                (toml::Value::Boolean(b), _) => Ok(Value::Bool(*b)),
                (toml::Value::String(s), _) => Ok(Value::Str(s)),
                (other, _) => Err(EngineError::Plan(format!(
                    "row {r}: field `{}` has unsupported value {other}",
                    f.name
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        batch
            .push_row(&values)
            .map_err(|e| EngineError::Plan(format!("row {r}: {e}")))?;
    }
    Ok(batch)
}

type PlanError = (SpecItem, EngineError);

/// Where the items of a pipeline are in the spec, for error positions.
#[derive(Clone, Copy)]
enum Scope {
    Main,
    Stream(usize),
}

impl Scope {
    fn source(self, i: usize) -> SpecItem {
        match self {
            Self::Main => SpecItem::Source(i),
            Self::Stream(s) => SpecItem::Stream(s),
        }
    }

    fn operator(self, i: usize) -> SpecItem {
        match self {
            Self::Main => SpecItem::Operator(i),
            Self::Stream(s) => SpecItem::Stream(s),
        }
    }
}

struct Planner<'a> {
    spec: &'a JobSpec,
    parallel: bool,
    sources: Vec<SourceSpec>,
    values: Vec<Option<Arc<Batch>>>,
    stages: Vec<StagePlan>,
    edges: usize,
    edge_schemas: Vec<SchemaRef>,
    used_streams: HashSet<String>,
}

impl Planner<'_> {
    fn edge(&mut self, from: usize, route: Exchange, schema: &SchemaRef) -> usize {
        let e = self.edges;
        self.edges += 1;
        self.edge_schemas.push(schema.clone());
        self.stages[from].output = Some((e, route));
        e
    }

    /// Plans sources and operators; returns the last stage, its output schema and key.
    fn pipeline(
        &mut self,
        sources: &[SourceSpec],
        operators: &[OperatorSpec],
        watermark: &WatermarkSpec,
        scope: Scope,
    ) -> Result<(usize, SchemaRef, Option<String>), PlanError> {
        if sources.is_empty() {
            return Err((
                scope.source(0),
                EngineError::Plan("a stream needs at least one source".into()),
            ));
        }
        let mut schemas = Vec::new();
        let mut indices = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let schema = source_schema(source).map_err(|e| (scope.source(i), e))?;
            self.values.push(match source {
                SourceSpec::Values { rows, .. } => Some(Arc::new(
                    values_batch(&schema, rows).map_err(|e| (scope.source(i), e))?,
                )),
                _ => None,
            });
            indices.push(self.sources.len());
            self.sources.push(source.clone());
            schemas.push(schema);
        }
        let raw_schema = Union::new(&schemas)
            .map_err(|e| (scope.source(0), e))?
            .output_schema()
            .clone();
        let mut schema = raw_schema.clone();
        if watermark.processing_time {
            if watermark.column.is_some() {
                return Err((
                    scope.source(0),
                    EngineError::Plan(
                        "[watermark] set either `column` or `processing_time`, not both".into(),
                    ),
                ));
            }
            let mut fields = raw_schema.fields().to_vec();
            fields.push(crate::record::Field::new(
                PROCESSING_TIME_COLUMN,
                DataType::Timestamp,
            ));
            schema = Arc::new(Schema::new(fields).map_err(|e| (scope.source(0), e))?);
        }
        let time_column = match watermark.default_time() {
            Some(c) => Some(crate::operator::time_column(&schema, &c).map_err(|e| {
                let e = match e {
                    EngineError::Plan(m) => m,
                    other => other.to_string(),
                };
                (
                    scope.source(0),
                    EngineError::Plan(format!("[watermark] {e}")),
                )
            })?),
            None => None,
        };
        self.stages.push(StagePlan {
            input: InputPlan::Sources {
                sources: indices,
                watermark: watermark.clone(),
                time_column,
                raw_schema,
            },
            ops: Vec::new(),
            input_schema: schema.clone(),
            output: None,
        });
        let mut current = self.stages.len() - 1;
        let mut key: Option<String> = None;
        for (i, op) in operators.iter().enumerate() {
            let at = |e: EngineError| (scope.operator(i), e);
            let resolved = match op {
                OperatorSpec::KeyBy(k) => {
                    let index = schema.require(k).map_err(at)?;
                    if self.parallel {
                        let e = self.edge(current, Exchange::Hash(index), &schema);
                        current = self.push_stage(InputPlan::Edge(e), &schema);
                    }
                    key = Some(k.clone());
                    continue;
                }
                OperatorSpec::WindowJoin(j) | OperatorSpec::IntervalJoin(j) => {
                    let interval = matches!(op, OperatorSpec::IntervalJoin(_));
                    let (stage, out) = self
                        .join(current, &schema, watermark, j, interval)
                        .map_err(|(item, e)| {
                            (
                                if item == SpecItem::Job {
                                    scope.operator(i)
                                } else {
                                    item
                                },
                                e,
                            )
                        })?;
                    current = stage;
                    schema = out;
                    key = schema.index_of(&j.left_key).map(|_| j.left_key.clone());
                    continue;
                }
                OperatorSpec::Filter(p) => OpPlan::Filter(p.clone()),
                OperatorSpec::Map(e) => OpPlan::Map(e.clone()),
                OperatorSpec::FlatMap(f) => OpPlan::FlatMap {
                    column: f.column.clone(),
                    separator: f.separator.clone(),
                    output: f.output.clone(),
                },
                OperatorSpec::Reduce(r) => {
                    let func = match r.func.as_str() {
                        "sum" => ReduceFn::Sum,
                        "min" => ReduceFn::Min,
                        "max" => ReduceFn::Max,
                        "concat" => ReduceFn::Concat(r.separator.clone()),
                        other => {
                            return Err(at(EngineError::Plan(format!(
                                "unknown reduce fn `{other}`; expected sum, min, max or concat"
                            ))))
                        }
                    };
                    OpPlan::Reduce {
                        key: key.clone(),
                        column: r.column.clone(),
                        func,
                    }
                }
                OperatorSpec::Aggregate(aggs) => OpPlan::Aggregate {
                    key: key.clone(),
                    aggs: aggs.clone(),
                },
                OperatorSpec::Window(w) => {
                    let time = w.time.clone().or_else(|| watermark.default_time()).ok_or_else(|| {
                        at(EngineError::Plan(
                            "a window needs an event-time column: set `time` or [watermark] column".into(),
                        ))
                    })?;
                    OpPlan::Window {
                        key: key.clone(),
                        time,
                        kind: w.kind,
                        lateness: w.allowed_lateness_ms,
                        aggs: w.aggregate.clone(),
                    }
                }
            };
            let stateful = matches!(
                resolved,
                OpPlan::Reduce { .. } | OpPlan::Aggregate { .. } | OpPlan::Window { .. }
            );
            if stateful && key.is_none() && self.parallel {
                // Keyless state must see every record: gather them on shard 0.
                let fresh_gather = self.input_route(current) == Some(Exchange::Single)
                    && self.stages[current].ops.is_empty();
                if !fresh_gather {
                    let e = self.edge(current, Exchange::Single, &schema);
                    current = self.push_stage(InputPlan::Edge(e), &schema);
                }
            }
            let built = build_op(&resolved, &schema, None).map_err(at)?;
            schema = built.output_schema().clone();
            if key.as_ref().is_some_and(|k| schema.index_of(k).is_none()) {
                key = None;
            }
            self.stages[current].ops.push(resolved);
        }
        Ok((current, schema, key))
    }

    /// Returns how records reach `stage` if it reads one exchange edge.
    fn input_route(&self, stage: usize) -> Option<Exchange> {
        let InputPlan::Edge(e) = self.stages[stage].input else {
            return None;
        };
        self.stages
            .iter()
            .find_map(|s| s.output.filter(|(edge, _)| *edge == e).map(|(_, r)| r))
    }

    fn push_stage(&mut self, input: InputPlan, schema: &SchemaRef) -> usize {
        self.stages.push(StagePlan {
            input,
            ops: Vec::new(),
            input_schema: schema.clone(),
            output: None,
        });
        self.stages.len() - 1
    }

    fn join(
        &mut self,
        left_stage: usize,
        left_schema: &SchemaRef,
        left_watermark: &WatermarkSpec,
        j: &JoinSpec,
        interval: bool,
    ) -> Result<(usize, SchemaRef), PlanError> {
        let job = |m: String| (SpecItem::Job, EngineError::Plan(m));
        let Some(index) = self.spec.streams.iter().position(|s| s.name == j.stream) else {
            let names: Vec<_> = self.spec.streams.iter().map(|s| s.name.as_str()).collect();
            return Err(job(format!(
                "no [[stream]] named `{}`; streams: {names:?}",
                j.stream
            )));
        };
        if !self.used_streams.insert(j.stream.clone()) {
            return Err(job(format!(
                "stream `{}` is joined twice; each stream feeds one join",
                j.stream
            )));
        }
        let stream = &self.spec.streams[index];
        let right_watermark = stream.watermark.as_ref().unwrap_or(&self.spec.watermark);
        let (right_stage, right_schema, _) = self.pipeline(
            &stream.sources,
            &stream.operators,
            right_watermark,
            Scope::Stream(index),
        )?;
        let time = |t: &Option<String>, default: &Option<String>| {
            t.clone().or_else(|| default.clone()).ok_or_else(|| {
                job("a join needs event-time columns: set left_time/right_time or [watermark] column".into())
            })
        };
        let plan = JoinPlan {
            interval,
            spec: j.clone(),
            left_time: time(&j.left_time, &left_watermark.default_time())?,
            right_time: time(&j.right_time, &right_watermark.default_time())?,
            left_schema: left_schema.clone(),
            right_schema: right_schema.clone(),
        };
        let built = build_join(&plan, None).map_err(|e| (SpecItem::Job, e))?;
        let out = built.output_schema().clone();
        let lk = left_schema
            .require(&j.left_key)
            .map_err(|e| (SpecItem::Job, e))?;
        let rk = right_schema
            .require(&j.right_key)
            .map_err(|e| (SpecItem::Job, e))?;
        let left = self.edge(left_stage, Exchange::Hash(lk), left_schema);
        let right = self.edge(right_stage, Exchange::Hash(rk), &right_schema);
        Ok((
            self.push_stage(
                InputPlan::Join {
                    left,
                    right,
                    join: plan,
                },
                &out,
            ),
            out,
        ))
    }
}

/// Refuses event-time settings that cannot mean anything; `place` says where they are.
fn check_watermark(w: &WatermarkSpec, place: &str) -> Result<(), EngineError> {
    if w.out_of_orderness_ms < 0 {
        return Err(EngineError::Plan(format!(
            "{place}out_of_orderness_ms must not be negative, got {} (it is how far behind \
             the largest timestamp seen a record may be and still be on time)",
            w.out_of_orderness_ms
        )));
    }
    Ok(())
}

/// Checks `spec` and cuts it into stages.
pub fn plan(spec: &JobSpec) -> Result<Plan, (SpecItem, EngineError)> {
    let plan = plan_portable(spec)?;
    check_files(spec)?;
    Ok(plan)
}

/// [`plan`] without looking at the files the job reads and writes: for a job that will run on
/// another machine (an agent), where those paths are, and are checked when the job starts.
pub fn plan_portable(spec: &JobSpec) -> Result<Plan, (SpecItem, EngineError)> {
    let job = |m: String| (SpecItem::Job, EngineError::Plan(m));
    if spec.parallelism == 0 || spec.parallelism > PARALLELISM_MAX {
        return Err(job(format!(
            "parallelism must be 1..={PARALLELISM_MAX}, not {}",
            spec.parallelism
        )));
    }
    if spec.max_parallelism < spec.parallelism || spec.max_parallelism > KEY_GROUPS_MAX {
        return Err(job(format!(
            "max_parallelism (the job's key groups) must be parallelism ({})..={KEY_GROUPS_MAX}, \
             not {}",
            spec.parallelism, spec.max_parallelism
        )));
    }
    if spec.state_cache_keys == 0 || spec.state_cache_keys > KEYED_STATE_KEYS_MAX {
        return Err(job(format!(
            "state_cache_keys must be 1..={KEYED_STATE_KEYS_MAX}, not {}",
            spec.state_cache_keys
        )));
    }
    if spec.ring_capacity_batches == 0 {
        return Err(job("ring_capacity_batches must be at least 1".into()));
    }
    if let Err(e) = spec.checkpoint_interval() {
        return Err((SpecItem::Job, e));
    }
    if spec.sources.is_empty() {
        return Err(job("a job needs at least one [[source]]".into()));
    }
    if spec.sinks.is_empty() {
        return Err(job("a job needs at least one [[sink]]".into()));
    }
    check_watermark(&spec.watermark, "").map_err(|e| (SpecItem::Watermark, e))?;
    for (i, stream) in spec.streams.iter().enumerate() {
        if let Some(w) = &stream.watermark {
            check_watermark(w, "its [watermark] ").map_err(|e| (SpecItem::Stream(i), e))?;
        }
    }
    let mut planner = Planner {
        spec,
        parallel: spec.parallelism > 1,
        sources: Vec::new(),
        values: Vec::new(),
        stages: Vec::new(),
        edges: 0,
        edge_schemas: Vec::new(),
        used_streams: HashSet::new(),
    };
    let (_, output_schema, _) =
        planner.pipeline(&spec.sources, &spec.operators, &spec.watermark, Scope::Main)?;
    if let Some((i, s)) = spec
        .streams
        .iter()
        .enumerate()
        .find(|(_, s)| !planner.used_streams.contains(&s.name))
    {
        return Err((
            SpecItem::Stream(i),
            EngineError::Plan(format!("stream `{}` is never joined", s.name)),
        ));
    }
    Ok(Plan {
        spec: spec.clone(),
        sources: planner.sources,
        values: planner.values,
        stages: planner.stages,
        edges: planner.edges,
        edge_schemas: planner.edge_schemas,
        output_schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::job::SinkSpec;

    fn spec(parallelism: usize, operators: Vec<OperatorSpec>) -> JobSpec {
        JobSpec {
            parallelism,
            sources: vec![SourceSpec::Nexmark(Default::default())],
            operators,
            sinks: vec![SinkSpec::Blackhole],
            ring_capacity_batches: 4,
            ..JobSpec::named("t")
        }
    }

    #[test]
    fn key_by_cuts_stages_and_keyless_state_gathers() {
        let ops = vec![
            OperatorSpec::Filter("price > 10".into()),
            OperatorSpec::KeyBy("auction".into()),
            OperatorSpec::Aggregate(vec!["count(*) AS n".into()]),
            OperatorSpec::Map(vec!["n".into()]),
            OperatorSpec::Aggregate(vec!["sum(n) AS total".into()]),
        ];
        let p = plan(&spec(2, ops.clone())).unwrap();
        let routes: Vec<_> = p.stages.iter().map(|s| s.output.map(|(_, r)| r)).collect();
        assert_eq!(
            routes,
            [Some(Exchange::Hash(0)), Some(Exchange::Single), None]
        );
        assert_eq!(p.output_schema.fields()[0].name, "total");
        let p = plan(&spec(1, ops)).unwrap();
        assert_eq!(p.stages.len(), 1, "one shard needs no exchange");
    }

    #[test]
    fn errors_point_at_the_operator() {
        let ops = vec![
            OperatorSpec::Filter("price > 10".into()),
            OperatorSpec::Map(vec!["nope".into()]),
        ];
        let (item, err) = plan(&spec(1, ops)).unwrap_err();
        assert_eq!(item, SpecItem::Operator(1));
        assert!(err.to_string().contains("unknown column `nope`"), "{err}");
        let (item, _) = plan(&spec(0, vec![])).unwrap_err();
        assert_eq!(item, SpecItem::Job);
    }
}
