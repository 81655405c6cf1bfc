//! The Sluice agent daemon: registration, heartbeats, running shards and
//! command tasks. Not built yet; `sluice --help` does not offer an `agent`
//! command until it is.

#![forbid(unsafe_code)]
