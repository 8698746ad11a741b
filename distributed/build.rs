//! Generates the gRPC services of `proto/rill/distributed.proto` with tonic, using the
//! vendored protoc so a fresh machine needs no system protoc.

fn main() -> anyhow::Result<()> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    println!("cargo:rerun-if-changed=proto/rill/distributed.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/rill/distributed.proto"], &["proto"])?;
    Ok(())
}
