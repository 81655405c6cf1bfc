//! The only place with `unsafe` code: io_uring submissions and thread CPU time.
//!
//! Every `unsafe` block says why it holds in a `// SAFETY:` comment.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod thread_cpu;
pub mod uring_reader;
pub mod uring_tcp;

pub use thread_cpu::{process_cpu_time, thread_cpu_time};
pub use uring_reader::UringReader;
pub use uring_tcp::{TcpEvent, UringTcpServer};
