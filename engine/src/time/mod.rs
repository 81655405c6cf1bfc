//! Event time: watermark generation, idleness, and combining watermarks of several inputs.
#![forbid(unsafe_code)]

pub mod combiner;
pub mod watermark;

pub use combiner::WatermarkCombiner;
pub use watermark::{WatermarkGenerator, WATERMARK_END, WATERMARK_MIN};
