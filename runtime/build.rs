//! Generates the runtime API (`proto/rkube/runtime/v1/runtime.proto`) and
//! builds the static `pause` binary that every pod sandbox runs as pid 1.

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure()
        // Records on disk are these messages as JSON.
        .message_attribute(
            ".rkube.runtime.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .enum_attribute(
            ".rkube.runtime.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_protos(&["../proto/rkube/runtime/v1/runtime.proto"], &["../proto"])?;
    println!("cargo:rerun-if-changed=../proto/rkube/runtime");

    // The pause binary is C linked statically so that it runs in an empty
    // root filesystem; it is embedded in the shim and written out at start.
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("pause");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg("pause/pause.c")
        .status()
        .map_err(|e| format!("running {cc} to build pause/pause.c: {e}"))?;
    if !status.success() {
        return Err(format!(
            "{cc} -static failed on pause/pause.c ({status}); a static libc (libc6-dev) is needed"
        )
        .into());
    }
    println!("cargo:rerun-if-changed=pause/pause.c");
    Ok(())
}
