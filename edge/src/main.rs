//! The `fieldpulse-edge` binary.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("fieldpulse-edge: agent not yet wired")
}
