//! Compiles `proto/fieldpulse/v1/fieldpulse.proto` with `protox` (pure Rust), so
//! no system `protoc` is needed on a fresh machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/fieldpulse/v1/fieldpulse.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
