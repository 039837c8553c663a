//! The column options every command that reads a wide telemetry CSV takes.

use clap::Args;
use fieldpulse_models::wide_csv::{TimeFormat, WideCsvOptions};

/// Which columns of a wide CSV are the asset, the time, and not sensors.
#[derive(Debug, Clone, Default, Args)]
pub struct WideCsvArgs {
    /// Asset column for multi-asset files (default: `asset` or `asset_id` if present).
    #[arg(long)]
    pub asset_col: Option<String>,
    /// Time column (default: timestamp, datetime, ts, time or date, else the first column of dates).
    #[arg(long)]
    pub time_col: Option<String>,
    /// Numeric columns that are not sensors, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Time format instead of detecting it: epoch_ms, epoch_s, iso8601, or
    /// m/d/y / d/m/y for spreadsheet dates whose order the data leaves open.
    #[arg(long, value_parser = parse_time_format)]
    pub time_format: Option<TimeFormat>,
}

fn parse_time_format(s: &str) -> Result<TimeFormat, String> {
    TimeFormat::parse(s).ok_or_else(|| {
        let names: Vec<&str> = TimeFormat::ALL.iter().map(|f| f.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

impl WideCsvArgs {
    /// Reader options for these columns.
    pub fn options(&self) -> WideCsvOptions {
        WideCsvOptions {
            asset_col: self.asset_col.clone(),
            time_col: self.time_col.clone(),
            exclude: self.exclude.clone(),
            label_col: None,
            sniff_rows: 0,
            time_format: self.time_format,
        }
    }
}
