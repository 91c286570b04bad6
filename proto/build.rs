//! Compiles `bedrock/v1/*.proto` and `bedrock/peer/v1/*.proto` with protox (pure Rust, so no `protoc`
//! install is needed) and generates the prost messages plus the tonic client
//! and server with tonic-prost-build.

use std::path::Path;

/// The proto files of the crate, relative to the crate root.
const PROTOS: &[&str] =
    &["bedrock/v1/kv.proto", "bedrock/v1/cluster.proto", "bedrock/v1/maintenance.proto", "bedrock/peer/v1/peer.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    // protox reports parse errors with file, line and column.
    let fds = protox::compile(PROTOS, [root])?;
    // The descriptors, for gRPC server reflection (`FILE_DESCRIPTOR_SET`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("bedrock_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
