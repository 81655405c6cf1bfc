//! Job specs: the TOML format, its loading with positioned errors, and planning into stages.
#![forbid(unsafe_code)]

pub mod files;
pub mod job;
pub mod load;
pub mod plan;

pub use job::{
    CustomSink, CustomSource, FlatMapSpec, JobSpec, JoinSpec, OperatorSpec, ReduceSpec, SinkSpec,
    SourceSpec, StateBackend, StreamSpec, WatermarkSpec, WindowSpec,
};
pub use load::{load_spec, load_spec_file, load_spec_portable, parse_spec};
pub use plan::{plan, Plan};
