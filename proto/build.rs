//! Generates the `tensorflow` protobuf package with prost, using the vendored protoc so a
//! fresh machine needs no system protoc. Also writes the descriptor set used for text format.
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let root = PathBuf::from("protos");
    let files: Vec<PathBuf> = std::fs::read_dir(root.join("tensorflow/core/framework"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    prost_build::Config::new()
        .file_descriptor_set_path(out.join("tensorflow_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}
