//! The telemetry options of `train` and `eval --model`: which columns are
//! which, the layout, and the time window (`fieldpulse_models::telemetry`).

use clap::{Args, ValueEnum};
use fieldpulse_models::telemetry::{Layout, TelemetryOptions};

/// Wide or long telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One column per sensor.
    Wide,
    /// One reading per row: time, asset, tag, value.
    Long,
}

/// Column, layout and window options for telemetry files.
#[derive(Debug, Clone, Default, Args)]
pub struct TelemetryArgs {
    /// Asset column (default: `asset` or `asset_id` if present).
    #[arg(long)]
    pub asset_col: Option<String>,
    /// Time column (default: timestamp, datetime, ts, time or date).
    #[arg(long)]
    pub time_col: Option<String>,
    /// Columns (wide) or tags (long) that are not sensors, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Long layout: the tag column (default: tag, tag_name, tagname, sensor, signal or point).
    #[arg(long)]
    pub tag_col: Option<String>,
    /// Long layout: the value column (default: value or val).
    #[arg(long)]
    pub value_col: Option<String>,
    /// Layout (default: long when a tag and a value column exist, else wide).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Use readings at or after this time (`YYYY-MM-DD` or ISO 8601); archive
    /// days before it are not read.
    #[arg(long, value_parser = crate::train::parse_date)]
    pub from: Option<i64>,
    /// Use readings before this time (`YYYY-MM-DD` or ISO 8601); archive days
    /// from it on are not read.
    #[arg(long, value_parser = crate::train::parse_date)]
    pub to: Option<i64>,
}

impl TelemetryArgs {
    /// Reader options; readings after `observed_until` are left out too (no
    /// label can use them).
    pub fn options(&self, observed_until: Option<i64>) -> TelemetryOptions {
        let until = observed_until.map(|t| t.saturating_add(1));
        TelemetryOptions {
            layout: self.format.map(|f| match f {
                FormatArg::Wide => Layout::Wide,
                FormatArg::Long => Layout::Long,
            }),
            asset_col: self.asset_col.clone(),
            time_col: self.time_col.clone(),
            tag_col: self.tag_col.clone(),
            value_col: self.value_col.clone(),
            exclude: self.exclude.clone(),
            from_ms: self.from,
            to_ms: match (self.to, until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}
