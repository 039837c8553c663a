//! `fieldpulse feedback export`: labels the cloud learned from Salesforce.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use fieldpulse_cloud::service::DB_FILE;
use fieldpulse_cloud::store::Store;

/// Labels from completed Work Orders (confirmed failures) and dismissed Cases (false alarms).
#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Write every label as CSV or JSON (for `fieldpulse train` and for review).
    ///
    /// Example: `fieldpulse feedback export --state cloud-state --format csv --out labels.csv`
    Export(ExportArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

/// Arguments of `feedback export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The cloud's state directory (holds `cloud.sqlite`).
    #[arg(long, default_value = "cloud-state")]
    state: PathBuf,
    /// csv (one label per row) or json (an array of objects).
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Output file (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Runs the subcommand.
pub fn run(cmd: FeedbackCommand) -> anyhow::Result<()> {
    let FeedbackCommand::Export(args) = cmd;
    let db = args.state.join(DB_FILE);
    anyhow::ensure!(
        db.is_file(),
        "{}: no cloud database here (--state DIR)",
        db.display()
    );
    let store = Store::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let labels = store.feedback_labels()?;
    let mut text = String::new();
    match args.format {
        Format::Json => text = serde_json::to_string_pretty(&labels)? + "\n",
        Format::Csv => {
            text.push_str(
                "asset,mode,label,at,at_ms,source_object,source_id,failure_code,detail\n",
            );
            for l in &labels {
                let at = fieldpulse_models::failure::labels::format_ms(l.at_ms);
                let row = [
                    l.asset.as_str(),
                    l.mode.as_deref().unwrap_or(""),
                    l.label.as_str(),
                    at.as_str(),
                    &l.at_ms.to_string(),
                    l.source_object.as_str(),
                    l.source_id.as_str(),
                    l.failure_code.as_deref().unwrap_or(""),
                    l.detail.as_deref().unwrap_or(""),
                ]
                .map(csv_field)
                .join(",");
                text.push_str(&row);
                text.push('\n');
            }
        }
    }
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    eprintln!("{} labels", labels.len());
    Ok(())
}
