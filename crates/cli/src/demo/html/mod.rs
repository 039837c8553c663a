//! `report.html`: the demo's run as one self-contained page. `data.rs`
//! gathers what the page plots beyond the summary's numbers, `plots.rs`
//! draws inline SVG, `page.rs` lays the page out, `markup.rs` escapes.

mod data;
mod markup;
mod page;
mod plots;

use std::path::Path;

use anyhow::Context;

pub use self::data::{collect, PageData};
pub use self::page::render;

use super::report::DemoSummary;

/// Writes `report.html` for `summary` to `path`.
///
/// # Errors
/// The file cannot be written.
pub fn write(path: &Path, summary: &DemoSummary) -> anyhow::Result<()> {
    std::fs::write(path, render(summary)).with_context(|| format!("writing {}", path.display()))
}
