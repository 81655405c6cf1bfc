//! SQL expressions: parsed with `sqlparser`, compiled once against a schema into a typed tree,
//! then evaluated a whole batch at a time.
#![forbid(unsafe_code)]

pub mod compile;
pub mod eval;
pub mod parse;

pub use compile::CompiledExpr;
