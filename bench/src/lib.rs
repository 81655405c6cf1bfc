//! The Sluice bench suite: scenarios, load generation, and HDR histogram
//! reports.
//!
//! Every latency figure is recorded in an [`hdrhistogram`] histogram
//! ([`recorder::Recorder`]); every run writes a terminal table, one `.hgrm`
//! percentile file per histogram and a JSON summary that includes a
//! description of the machine ([`report`]). Speed is measured here, never
//! asserted in a test.

#![forbid(unsafe_code)]

pub mod certs;
pub mod checkpoint;
pub mod compare;
pub mod engine;
pub mod exchange;
pub mod failover;
pub mod machine;
pub mod plot;
pub mod procs;
pub mod raft;
pub mod recorder;
pub mod report;
pub mod scheduler;
pub mod secure;
