//! Generates the etcd client stubs the benchmark uses as its anchor.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/etcd_kv.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
