//! Workspace integration tests (`tests/tests/`): the `fieldpulse` binary end
//! to end, checked from outside. The library holds only what the tests share.
//!
//! The tests run the binary the workspace built (`target/<profile>/fieldpulse`),
//! so build it first: `cargo test --workspace` does, or
//! `cargo build -p fieldpulse && cargo test -p fieldpulse-tests`.

use std::path::PathBuf;

/// `target/<profile>/fieldpulse`, found from the running test's own path
/// (`target/<profile>/deps/<test>-<hash>`) the way assert_cmd's `cargo_bin`
/// does. Panics with what to do when it was not built.
pub fn fieldpulse_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe
        .parent()
        .expect("the test binary's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("fieldpulse{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace's binaries first (`cargo test --workspace` does, \
         or `cargo build -p fieldpulse` before `cargo test -p fieldpulse-tests`)",
        bin.display()
    );
    bin
}
