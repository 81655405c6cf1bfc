//! Stream jobs run by the real `sluice` binary, killed with SIGKILL.

mod t01_kill_run;
mod t02_agent_failover;
mod t03_split_failover;
