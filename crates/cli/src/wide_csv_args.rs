//! The column options every command that reads a wide telemetry CSV takes.

use clap::Args;
use fieldpulse_models::wide_csv::WideCsvOptions;

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
        }
    }
}
