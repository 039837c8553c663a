//! The wide telemetry CSV (DESIGN.md): header `asset,ts,<sensor>...`, `ts`
//! in epoch milliseconds, one row per reading, empty cells where a sensor
//! dropped out; and the MQTT JSON payload of one reading.

use std::io::{self, Write};

use crate::fleet::Reading;
use crate::product::SENSORS;

/// Writes the header row.
///
/// # Errors
/// IO errors from `out`.
pub fn write_header(out: &mut dyn Write) -> io::Result<()> {
    write!(out, "asset,ts")?;
    for name in SENSORS {
        write!(out, ",{name}")?;
    }
    writeln!(out)
}

/// Writes one reading as a row; values with four decimals.
///
/// # Errors
/// IO errors from `out`.
pub fn write_row(out: &mut dyn Write, asset: &str, reading: &Reading) -> io::Result<()> {
    write!(out, "{asset},{}", reading.ts_ms)?;
    for value in &reading.values {
        match value {
            Some(v) => write!(out, ",{v:.4}")?,
            None => write!(out, ",")?,
        }
    }
    writeln!(out)
}

/// The MQTT payload of a reading (DESIGN.md's multi-sensor JSON object):
/// `{"ts": <epoch ms>, "temp_c": 71.2, ...}`; dropped-out sensors are left
/// out rather than sent as `null`.
pub fn json_payload(reading: &Reading) -> String {
    let mut out = format!("{{\"ts\":{}", reading.ts_ms);
    for (name, value) in SENSORS.iter().zip(&reading.values) {
        if let Some(v) = value {
            out.push_str(&format!(",\"{name}\":{v:.4}"));
        }
    }
    out.push('}');
    out
}

/// MQTT topic of an asset's readings: `sensors/{asset}`.
pub fn topic(asset: &str) -> String {
    format!("sensors/{asset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_the_header_and_leave_dropouts_empty() {
        let mut buf = Vec::new();
        write_header(&mut buf).expect("header");
        let reading = Reading {
            asset_idx: 0,
            ts_ms: 1_767_225_600_000,
            values: [
                Some(40.5),
                None,
                Some(1.0),
                Some(6.0),
                Some(30.0),
                Some(2950.0),
            ],
        };
        write_row(&mut buf, "pump-0001", &reading).expect("row");
        let text = String::from_utf8(buf).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "asset,ts,temp_c,vib_rms,vib_peak,pressure_bar,current_a,rpm"
        );
        assert_eq!(
            lines[1],
            "pump-0001,1767225600000,40.5000,,1.0000,6.0000,30.0000,2950.0000"
        );
        let payload: serde_json::Value =
            serde_json::from_str(&json_payload(&reading)).expect("json");
        assert_eq!(payload["ts"], 1_767_225_600_000i64);
        assert_eq!(payload["temp_c"], 40.5);
        assert!(payload.get("vib_rms").is_none());
        assert_eq!(topic("pump-0001"), "sensors/pump-0001");
    }
}
