//! Compiles every `proto/grodt/v1/*.proto` with protox (pure Rust, no system
//! protoc) into Rust code and an encoded FileDescriptorSet for reflection.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let package_dir = proto_root.join("grodt/v1");
    // A directory makes cargo rescan it, so a new or edited file rebuilds.
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-changed=build.rs");

    // Every file of the package, sorted, so a new file cannot be forgotten here
    // and the generated code does not depend on directory order.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&package_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files in {}", package_dir.display()).into());
    }

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
