//! The replicated master, tested on real `sluice master` processes.

mod t01_replication;
mod t02_kill_leader;
mod t03_snapshot_catch_up;
mod t04_membership;
mod t05_no_quorum;
mod t06_bad_input;
mod t07_identity;
mod t08_cli;
mod t09_scheduler;
mod t10_partitioned_leader;
mod t11_hostile_cli;
mod t12_restart;
mod t13_security;
