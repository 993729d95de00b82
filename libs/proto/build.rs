//! Compiles `proto/grodt/v1/*.proto` with protox (pure Rust, no system
//! protoc) into Rust code and an encoded FileDescriptorSet for reflection.

use std::path::PathBuf;

use prost::Message as _;

const FILES: [&str; 9] = [
    "grodt/v1/common.proto",
    "grodt/v1/events.proto",
    "grodt/v1/market_data.proto",
    "grodt/v1/regime.proto",
    "grodt/v1/strategy.proto",
    "grodt/v1/risk.proto",
    "grodt/v1/execution.proto",
    "grodt/v1/backtest.proto",
    "grodt/v1/optimizer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed=build.rs");

    let files: Vec<PathBuf> = FILES.iter().map(|f| proto_root.join(f)).collect();
    let fds = protox::compile(&files, [&proto_root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("grodt_descriptor.bin"), fds.encode_to_vec())?;

    // prost::Name on every message: the bus puts `M::full_name()` into an
    // envelope's event_type, and consumers check it before decoding.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
