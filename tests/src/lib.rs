//! Workspace integration tests (`tests/tests/`): the `fieldpulse` binary end
//! to end, checked from outside. No library code; cargo needs a target here.
//!
//! The tests run the binary the workspace built (`target/<profile>/fieldpulse`),
//! so build it first: `cargo test --workspace` does, or
//! `cargo build -p fieldpulse && cargo test -p fieldpulse-tests`.
