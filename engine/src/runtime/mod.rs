//! The shard runtime: one pinned, shared-nothing thread per shard; stages fused between
//! exchanges; exchanges as a full mesh of bounded SPSC rings with backpressure.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod control;
pub mod coordinator;
pub mod exchange;
pub mod job;
pub mod output;
pub mod remote;
pub mod restore;
pub mod shard;
pub mod stage;

pub use control::{CheckpointHooks, CompletionError, JobControl, ThreadStart};
pub use exchange::{ExchangeReceiver, ExchangeSender, Message};
pub use job::{run_plan, run_plan_remote, run_plan_remote_with, run_plan_with, JobReport};
pub use remote::RemoteExchangeConfig;
pub use shard::ShardReport;
