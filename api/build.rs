//! Compiles `proto/master.proto` with protox (pure Rust), so building Sluice
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/master.proto");
    let fds = protox::compile(["proto/master.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
