//! The job spec: what `sluice run JOB.toml` reads, and what the builder API produces.
//!
//! ```toml
//! name = "q1"
//! parallelism = 2
//!
//! [watermark]
//! column = "date_time"
//! out_of_orderness_ms = 1000
//!
//! [[source]]
//! kind = "nexmark"
//! table = "bid"
//! events = 100000
//!
//! [[operator]]
//! filter = "price > 100"
//!
//! [[operator]]
//! map = ["auction", "price * 0.908 AS price_eur", "date_time"]
//!
//! [[sink]]
//! kind = "stdout"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::EngineError;
use crate::operator::WindowKind;
use crate::record::{Field, SchemaRef};
use crate::sink::Sink;
use crate::source::{Format, NexmarkConfig, Source};

/// Default bound of every exchange ring, in batches.
pub const RING_CAPACITY_BATCHES_DEFAULT: usize = 16;
/// The largest accepted parallelism (shards per job on one machine).
pub const PARALLELISM_MAX: usize = 256;
/// The largest accepted `max_parallelism` (key groups of a job).
pub const KEY_GROUPS_MAX: usize = 32_768;

/// A whole job.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name, used in reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// Number of shards (pinned threads).
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Key groups: keys are cut into this many groups, each held whole by one shard, so
    /// that keyed state can later move to another parallelism up to this one. Fixed for the
    /// life of a job: a checkpoint restores only with the same value.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: usize,
    /// Whether shards are pinned to cores (skipped where a core id is not available).
    #[serde(default = "default_true")]
    pub pin_cores: bool,
    /// Event-time settings.
    #[serde(default)]
    pub watermark: WatermarkSpec,
    /// Sources; several sources must have one schema and are unioned.
    #[serde(rename = "source")]
    pub sources: Vec<SourceSpec>,
    /// Operators, applied in order.
    #[serde(rename = "operator", default)]
    pub operators: Vec<OperatorSpec>,
    /// Named streams, each with its own sources and operators, for joins to read.
    #[serde(rename = "stream", default)]
    pub streams: Vec<StreamSpec>,
    /// Sinks; each receives every output record.
    #[serde(rename = "sink")]
    pub sinks: Vec<SinkSpec>,
    /// Where records too late for their windows go (they are always counted).
    #[serde(default)]
    pub late_sink: Option<SinkSpec>,
    /// File receiving malformed input records as NDJSON lines (they are always counted); one
    /// file per shard like a file sink (`path.N` with more than one shard), truncated when the
    /// job starts.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Capacity of each exchange ring in batches; a full ring is backpressure.
    #[serde(default = "default_ring")]
    pub ring_capacity_batches: usize,
    /// Time between checkpoints in ms; 0 turns them off. Unset: 10 s for an unbounded job
    /// with a `checkpoint_storage`, off otherwise.
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Where checkpoints go: `file:///DIR` (a local or shared directory) or
    /// `s3://BUCKET/PREFIX` (S3 or an S3-compatible server, configured by `AWS_*`). The job's
    /// checkpoints are under its name there; a job restarted with the same name resumes
    /// from its latest completed checkpoint.
    #[serde(default)]
    pub checkpoint_storage: Option<String>,
    /// Completed checkpoints kept; older ones are deleted.
    #[serde(default = "default_retained")]
    pub checkpoints_retained: usize,
    /// A checkpoint not complete after this long fails.
    #[serde(default = "default_checkpoint_timeout")]
    pub checkpoint_timeout_ms: u64,
    /// Consecutive failed checkpoints tolerated before the job fails.
    #[serde(default = "default_failures_tolerated")]
    pub checkpoint_failures_tolerated: u32,
    /// Where the state of stateful operators lives: `memory` (the default) or `rocksdb`
    /// (RocksDB on local disk behind a cache of `state_cache_keys` keys or join rows, for
    /// state larger than memory; its checkpoints store only the files new since the last).
    #[serde(default)]
    pub state_backend: StateBackend,
    /// Local directory for `rocksdb` state, scratch rebuilt from checkpoints (default: the
    /// system's temporary directory).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Keys each operator keeps in memory in front of RocksDB, per shard.
    #[serde(default = "default_state_cache_keys")]
    pub state_cache_keys: usize,
}

/// Where operators keep keyed state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// In memory, snapshotted at barriers.
    #[default]
    Memory,
    /// In RocksDB on local disk, checkpointed incrementally.
    Rocksdb,
}

/// Keys each operator keeps in memory in front of RocksDB by default.
pub const STATE_CACHE_KEYS_DEFAULT: usize = 1 << 16;

fn default_state_cache_keys() -> usize {
    STATE_CACHE_KEYS_DEFAULT
}

/// Checkpoint interval of an unbounded job with checkpoint storage and no interval set.
pub const CHECKPOINT_INTERVAL_DEFAULT_MS: u64 = 10_000;

/// Completed checkpoints kept by default.
pub const CHECKPOINTS_RETAINED_DEFAULT: usize = 3;
/// Default checkpoint timeout.
pub const CHECKPOINT_TIMEOUT_DEFAULT_MS: u64 = 60_000;
/// Consecutive failed checkpoints tolerated by default.
pub const CHECKPOINT_FAILURES_TOLERATED_DEFAULT: u32 = 5;

fn default_retained() -> usize {
    CHECKPOINTS_RETAINED_DEFAULT
}

fn default_checkpoint_timeout() -> u64 {
    CHECKPOINT_TIMEOUT_DEFAULT_MS
}

fn default_failures_tolerated() -> u32 {
    CHECKPOINT_FAILURES_TOLERATED_DEFAULT
}

impl JobSpec {
    /// A job called `name` with nothing in it and every setting at its default (one
    /// unpinned shard, no checkpoints).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            parallelism: 1,
            max_parallelism: default_max_parallelism(),
            pin_cores: false,
            watermark: WatermarkSpec::default(),
            sources: Vec::new(),
            operators: Vec::new(),
            streams: Vec::new(),
            sinks: Vec::new(),
            late_sink: None,
            dead_letter: None,
            ring_capacity_batches: RING_CAPACITY_BATCHES_DEFAULT,
            checkpoint_interval_ms: None,
            checkpoint_storage: None,
            checkpoints_retained: CHECKPOINTS_RETAINED_DEFAULT,
            checkpoint_timeout_ms: CHECKPOINT_TIMEOUT_DEFAULT_MS,
            checkpoint_failures_tolerated: CHECKPOINT_FAILURES_TOLERATED_DEFAULT,
            state_backend: StateBackend::Memory,
            state_dir: None,
            state_cache_keys: STATE_CACHE_KEYS_DEFAULT,
        }
    }

    /// Whether some source never ends by itself (Nexmark without an event count, TCP,
    /// custom sources).
    pub fn is_unbounded(&self) -> bool {
        self.sources
            .iter()
            .chain(self.streams.iter().flat_map(|s| s.sources.iter()))
            .any(|s| match s {
                SourceSpec::Nexmark(c) => c.events == 0,
                SourceSpec::File { .. } | SourceSpec::Values { .. } => false,
                SourceSpec::Tcp { .. } | SourceSpec::Custom(_) => true,
            })
    }

    /// The checkpoint interval in effect, if the job takes checkpoints; refuses an interval
    /// without storage.
    pub fn checkpoint_interval(&self) -> Result<Option<std::time::Duration>, EngineError> {
        let ms = match (self.checkpoint_interval_ms, &self.checkpoint_storage) {
            (Some(0), _) => return Ok(None),
            (Some(ms), Some(_)) => ms,
            (Some(_), None) => {
                return Err(EngineError::Plan(
                    "checkpoint_interval_ms needs checkpoint_storage (file:///DIR or s3://BUCKET/PREFIX)"
                        .into(),
                ))
            }
            (None, Some(_)) if self.is_unbounded() => CHECKPOINT_INTERVAL_DEFAULT_MS,
            (None, _) => return Ok(None),
        };
        Ok(Some(std::time::Duration::from_millis(ms)))
    }
}

fn default_name() -> String {
    "job".to_owned()
}

fn default_parallelism() -> usize {
    1
}

fn default_max_parallelism() -> usize {
    crate::record::hash::KEY_GROUPS_DEFAULT
}

fn default_true() -> bool {
    true
}

fn default_ring() -> usize {
    RING_CAPACITY_BATCHES_DEFAULT
}

/// Event-time settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// The event-time column of the sources (a timestamp or int); none means no event time
    /// (windows then fire only at the end of a bounded job).
    #[serde(default)]
    pub column: Option<String>,
    /// How far behind the largest timestamp seen a record may be and still be on time.
    #[serde(default)]
    pub out_of_orderness_ms: i64,
    /// After this long without records a source split stops holding back event time
    /// (0: never).
    #[serde(default)]
    pub idle_timeout_ms: u64,
    /// Uses processing time instead of a column: every record gets a `proc_time` timestamp
    /// (wall clock at ingestion) and time advances with the wall clock, records or not.
    #[serde(default)]
    pub processing_time: bool,
}

/// The column processing time adds to every record.
pub const PROCESSING_TIME_COLUMN: &str = "proc_time";

impl WatermarkSpec {
    /// Returns the time column windows and joins use by default.
    pub fn default_time(&self) -> Option<String> {
        if self.processing_time {
            Some(PROCESSING_TIME_COLUMN.to_owned())
        } else {
            self.column.clone()
        }
    }
}

/// Returns the file shard `shard` of `shards` writes for an output at `path`: `path` itself
/// with one shard, `path.N` for shard N otherwise (`out.ndjson.0`, `out.ndjson.1`, ...).
pub fn part_path(path: &Path, shard: usize, shards: usize) -> PathBuf {
    if shards <= 1 {
        return path.to_path_buf();
    }
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{shard}"));
    path.with_file_name(name)
}

/// Builds split `shard` of `shards` of a source; called on the shard's own thread.
pub type SourceFactory = dyn Fn(usize, usize) -> Result<Box<dyn Source>, EngineError> + Send + Sync;
/// Builds the sink of shard `shard` of `shards`; called on the shard's own thread.
pub type SinkFactory = dyn Fn(usize, usize) -> Result<Box<dyn Sink>, EngineError> + Send + Sync;

/// Makes sources from code (the builder API); not available in TOML.
#[derive(Clone)]
pub struct CustomSource {
    /// Name used in messages.
    pub name: String,
    /// Schema of every split.
    pub schema: SchemaRef,
    /// Builds split `shard` of `shards`; called on the shard's own thread.
    pub factory: Arc<SourceFactory>,
}

impl std::fmt::Debug for CustomSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomSource({})", self.name)
    }
}

/// Makes sinks from code (the builder API); not available in TOML.
#[derive(Clone)]
pub struct CustomSink {
    /// Name used in messages.
    pub name: String,
    /// Builds the sink of shard `shard` of `shards`; called on the shard's own thread.
    pub factory: Arc<SinkFactory>,
}

impl std::fmt::Debug for CustomSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomSink({})", self.name)
    }
}

/// A source.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceSpec {
    /// The Nexmark generator.
    Nexmark(NexmarkConfig),
    /// A file read through io_uring, split across shards by byte range.
    File {
        /// The file.
        path: PathBuf,
        /// `ndjson` or `csv`.
        #[serde(default = "default_format")]
        format: Format,
        /// The record schema.
        fields: Vec<Field>,
        /// Whether a CSV file starts with a header line to skip.
        #[serde(default)]
        header: bool,
    },
    /// Newline-delimited records over TCP through io_uring; shard 0 listens on `addr`.
    Tcp {
        /// Address to listen on, e.g. `127.0.0.1:9000`.
        addr: String,
        /// `ndjson` or `csv`.
        #[serde(default = "default_format")]
        format: Format,
        /// The record schema.
        fields: Vec<Field>,
        /// The source ends after this many connections were accepted and closed (0: never).
        #[serde(default = "default_connections")]
        connections: u64,
    },
    /// Inline records, dealt round-robin across shards.
    Values {
        /// The record schema.
        fields: Vec<Field>,
        /// Rows of values in field order.
        rows: Vec<Vec<toml::Value>>,
    },
    /// A source built in code.
    #[serde(skip)]
    Custom(CustomSource),
}

fn default_connections() -> u64 {
    1
}

fn default_format() -> Format {
    Format::Ndjson
}

/// A sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSpec {
    /// A file per shard: `path` with one shard, `path.N` for shard N otherwise.
    File {
        /// The file.
        path: PathBuf,
        /// `ndjson` or `csv`.
        #[serde(default = "default_format")]
        format: Format,
    },
    /// Standard output.
    Stdout {
        /// `ndjson` or `csv`.
        #[serde(default = "default_format")]
        format: Format,
    },
    /// One TCP connection per shard to `addr`.
    Tcp {
        /// Peer address, e.g. `127.0.0.1:9100`.
        addr: String,
        /// `ndjson` or `csv`.
        #[serde(default = "default_format")]
        format: Format,
    },
    /// Counts and drops records.
    Blackhole,
    /// Returns records in the job report (tests, small results).
    Collect,
    /// A sink built in code.
    #[serde(skip)]
    Custom(CustomSink),
}

/// One operator; in TOML each `[[operator]]` table has exactly one of these keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorSpec {
    /// Keeps records matching a SQL predicate, e.g. `price > 100`.
    Filter(String),
    /// Projects SQL expressions, e.g. `["auction", "price * 0.908 AS price_eur"]`.
    Map(Vec<String>),
    /// Splits a string column into one record per piece.
    FlatMap(FlatMapSpec),
    /// Repartitions records by a key column; later stateful operators are per key.
    KeyBy(String),
    /// A rolling fold of one column per key.
    Reduce(ReduceSpec),
    /// Aggregates per key over the whole (bounded) input, e.g. `["count(*) AS n"]`.
    Aggregate(Vec<String>),
    /// Aggregates per key over event-time windows.
    Window(WindowSpec),
    /// Joins with a named stream within tumbling windows (`size_ms`).
    WindowJoin(JoinSpec),
    /// Joins with a named stream on a time interval (`lower_ms`, `upper_ms`).
    IntervalJoin(JoinSpec),
}

/// A named stream that a join reads as its right input.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// The name joins refer to.
    pub name: String,
    /// Its sources (one schema, unioned).
    #[serde(rename = "source")]
    pub sources: Vec<SourceSpec>,
    /// Its operators.
    #[serde(rename = "operator", default)]
    pub operators: Vec<OperatorSpec>,
    /// Its event-time settings (default: the job's `[watermark]`).
    #[serde(default)]
    pub watermark: Option<WatermarkSpec>,
}

/// Settings of a join with a named stream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// The named stream joined as the right input.
    pub stream: String,
    /// Key column of this (left) stream.
    pub left_key: String,
    /// Key column of the right stream.
    pub right_key: String,
    /// Event-time column of the left stream (default: the watermark column).
    #[serde(default)]
    pub left_time: Option<String>,
    /// Event-time column of the right stream (default: the watermark column).
    #[serde(default)]
    pub right_time: Option<String>,
    /// Window size of a window join.
    #[serde(default)]
    pub size_ms: i64,
    /// Lower bound of an interval join (`right.time >= left.time + lower_ms`).
    #[serde(default)]
    pub lower_ms: i64,
    /// Upper bound of an interval join (`right.time <= left.time + upper_ms`).
    #[serde(default)]
    pub upper_ms: i64,
}

/// Settings of a flat map.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatMapSpec {
    /// The string column to split.
    pub column: String,
    /// The separator.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Name of the column holding the pieces.
    #[serde(rename = "as")]
    pub output: String,
}

fn default_separator() -> String {
    " ".to_owned()
}

/// Settings of a reduce.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    /// The column folded.
    pub column: String,
    /// `sum`, `min`, `max` or `concat`.
    #[serde(rename = "fn")]
    pub func: String,
    /// Separator for `concat`.
    #[serde(default)]
    pub separator: String,
}

/// Settings of a windowed aggregation.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "WindowToml")]
pub struct WindowSpec {
    /// Window shape (`kind = "tumbling" | "sliding" | "session"` and its sizes).
    pub kind: WindowKind,
    /// Aggregates, e.g. `["count(*) AS bids", "max(price) AS top"]`.
    pub aggregate: Vec<String>,
    /// How long after firing a window still accepts late records.
    #[serde(default)]
    pub allowed_lateness_ms: i64,
    /// Event-time column (default: the job's watermark column).
    #[serde(default)]
    pub time: Option<String>,
}

/// The TOML shape of a window: flat, with unknown keys rejected.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowToml {
    kind: String,
    size_ms: Option<i64>,
    slide_ms: Option<i64>,
    gap_ms: Option<i64>,
    aggregate: Vec<String>,
    #[serde(default)]
    allowed_lateness_ms: i64,
    #[serde(default)]
    time: Option<String>,
}

impl TryFrom<WindowToml> for WindowSpec {
    type Error = String;

    fn try_from(w: WindowToml) -> Result<Self, String> {
        let need = |v: Option<i64>, what: &str| {
            v.ok_or_else(|| format!("a {} window needs `{what}`", w.kind))
        };
        let kind = match w.kind.as_str() {
            "tumbling" => WindowKind::Tumbling {
                size_ms: need(w.size_ms, "size_ms")?,
            },
            "sliding" => WindowKind::Sliding {
                size_ms: need(w.size_ms, "size_ms")?,
                slide_ms: need(w.slide_ms, "slide_ms")?,
            },
            "session" => WindowKind::Session {
                gap_ms: need(w.gap_ms, "gap_ms")?,
            },
            other => {
                return Err(format!(
                    "unknown window kind `{other}`, expected `tumbling`, `sliding` or `session`"
                ))
            }
        };
        Ok(Self {
            kind,
            aggregate: w.aggregate,
            allowed_lateness_ms: w.allowed_lateness_ms,
            time: w.time,
        })
    }
}
