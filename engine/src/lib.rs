//! The Sluice stream engine: dataflow graphs on pinned per-core shards.
//! Being built; nothing here is offered by the CLI yet.

#![forbid(unsafe_code)]
