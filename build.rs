//! Compiles the CRI v1 API and strata's admin API from `proto/` with protox (a pure-Rust protobuf
//! compiler), so that building the daemon needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/cri/v1/api.proto",
        "proto/strata/admin/v1/admin.proto",
    ];
    // The monitor executable is linked without PIE: see src/bin/strata-monitor.rs for why.
    println!("cargo:rustc-link-arg-bin=strata-monitor=-no-pie");
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs a service does not implement yet answer UNIMPLEMENTED (tonic's default stubs),
        // which is the honest answer CRI clients understand.
        .generate_default_stubs(true)
        // Verbose status `info` documents show the CRI config as JSON.
        .type_attribute(".runtime.v1", "#[derive(serde::Serialize)]")
        .compile_fds(descriptors)?;
    Ok(())
}
