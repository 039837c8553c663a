//! Which columns are the time, asset, tag, value and sensors, from a
//! header (module docs of [`super`]).

use std::path::Path;

use super::{Layout, TelemetryError, TelemetryOptions};
use crate::wide_csv::TIME_NAMES;

/// The columns a layout reads.
#[derive(Debug, Clone)]
pub(crate) struct Columns {
    pub(crate) layout: Layout,
    pub(crate) time: String,
    pub(crate) asset: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) value: Option<String>,
    /// Wide: the sensor columns.
    pub(crate) sensors: Vec<String>,
}

const ASSET_NAMES: [&str; 2] = ["asset", "asset_id"];
const TAG_NAMES: [&str; 6] = ["tag", "tag_name", "tagname", "sensor", "signal", "point"];
const VALUE_NAMES: [&str; 2] = ["value", "val"];

/// Picks the time, asset, tag, value and sensor columns from a header
/// (`numeric[i]`: column `i` can be a sensor), as the module docs say.
pub(crate) fn resolve_columns(
    path: &Path,
    names: &[String],
    numeric: &[bool],
    opts: &TelemetryOptions,
) -> Result<Columns, TelemetryError> {
    let available = names.join(",");
    let find = |name: &str| names.iter().position(|c| c.eq_ignore_ascii_case(name));
    let named = |name: &String, role: &str| {
        find(name).ok_or_else(|| TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!("no column {name:?} for {role} ({available})"),
        })
    };
    let first_of = |candidates: &[&str]| candidates.iter().find_map(|n| find(n));
    let time = match &opts.time_col {
        Some(name) => named(name, "--time-col")?,
        None => first_of(&TIME_NAMES).ok_or_else(|| TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!(
                "no time column: none of timestamp, datetime, ts, time, date ({available}); pass --time-col"
            ),
        })?,
    };
    let asset = match &opts.asset_col {
        Some(name) => Some(named(name, "--asset-col")?),
        None => first_of(&ASSET_NAMES).filter(|&c| c != time),
    };
    let tag = match &opts.tag_col {
        Some(name) => Some(named(name, "--tag-col")?),
        None => first_of(&TAG_NAMES).filter(|&c| c != time && Some(c) != asset),
    };
    let value = match &opts.value_col {
        Some(name) => Some(named(name, "--value-col")?),
        None => first_of(&VALUE_NAMES).filter(|&c| c != time && Some(c) != asset && Some(c) != tag),
    };
    let layout = opts.layout.unwrap_or(if tag.is_some() && value.is_some() {
        Layout::Long
    } else {
        Layout::Wide
    });
    let name = |i: usize| names[i].clone();
    if layout == Layout::Long {
        let (Some(tag), Some(value)) = (tag, value) else {
            return Err(TelemetryError::Columns {
                path: path.to_path_buf(),
                message: format!(
                    "long layout needs a tag column (tag, tag_name, tagname, sensor, signal, point; \
                     --tag-col) and a value column (value, val; --value-col): found {available}"
                ),
            });
        };
        return Ok(Columns {
            layout,
            time: name(time),
            asset: asset.map(name),
            tag: Some(name(tag)),
            value: Some(name(value)),
            sensors: Vec::new(),
        });
    }
    let mut excluded = vec![false; names.len()];
    for e in &opts.exclude {
        excluded[named(e, "--exclude")?] = true;
    }
    let sensors: Vec<String> = (0..names.len())
        .filter(|&c| c != time && Some(c) != asset && !excluded[c] && numeric[c])
        .map(name)
        .collect();
    if sensors.is_empty() {
        return Err(TelemetryError::Columns {
            path: path.to_path_buf(),
            message: format!(
                "no numeric sensor columns besides time/asset/excluded ones ({available})"
            ),
        });
    }
    Ok(Columns {
        layout,
        time: name(time),
        asset: asset.map(name),
        tag: None,
        value: None,
        sensors,
    })
}
