//! Declares the `loom` cfg, under which the credit protocol's loom model runs
//! (`RUSTFLAGS="--cfg loom" cargo test -p sluice-engine --lib credit`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
