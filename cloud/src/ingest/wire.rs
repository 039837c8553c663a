//! A pass over a `Batch`'s protobuf wire bytes that counts its series and
//! readings before prost allocates them.
//!
//! A few KB of zstd can decompress into millions of empty `Series` entries
//! (two bytes each on the wire, a hundred in memory); counting first lets the
//! ingest refuse such a batch with a 413 instead of allocating gigabytes.

/// What the pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub n_series: usize,
    pub n_readings: usize,
}

/// Why the pass refused the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShapeError {
    /// Not valid protobuf wire format.
    Wire(&'static str),
    /// More `Series` entries than allowed (counting stopped there).
    TooManySeries { max: usize },
    /// More readings than allowed (counting stopped there).
    TooManyReadings { max: usize },
}

const WIRE_VARINT: u64 = 0;
const WIRE_I64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_I32: u64 = 5;
/// `Batch.series`.
const BATCH_SERIES: u64 = 6;
/// `Series.ts_delta_ms`.
const SERIES_TS_DELTA: u64 = 4;
/// `Series.values`.
const SERIES_VALUES: u64 = 5;

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ShapeError> {
        let mut value = 0u64;
        for (idx, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * idx);
            if byte < 0x80 {
                self.buf = &self.buf[idx + 1..];
                return Ok(value);
            }
        }
        Err(ShapeError::Wire("bad varint"))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ShapeError> {
        let n = usize::try_from(n).map_err(|_| ShapeError::Wire("length overflow"))?;
        if n > self.buf.len() {
            return Err(ShapeError::Wire("truncated field"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next field: `(field number, wire type, length-delimited bytes)`.
    fn field(&mut self) -> Result<(u64, u64, &'a [u8]), ShapeError> {
        let key = self.varint()?;
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 {
            return Err(ShapeError::Wire("field number 0"));
        }
        let bytes = match wire_type {
            WIRE_VARINT => {
                self.varint()?;
                &[][..]
            }
            WIRE_I64 => self.take(8)?,
            WIRE_LEN => {
                let len = self.varint()?;
                self.take(len)?
            }
            WIRE_I32 => self.take(4)?,
            _ => return Err(ShapeError::Wire("unsupported wire type")),
        };
        Ok((number, wire_type, bytes))
    }
}

/// Counts the series and readings of an encoded `Batch`, stopping as soon as
/// a limit is passed.
pub(crate) fn batch_shape(
    buf: &[u8],
    max_series: usize,
    max_readings: usize,
) -> Result<Shape, ShapeError> {
    let mut shape = Shape {
        n_series: 0,
        n_readings: 0,
    };
    let mut reader = Reader { buf };
    while !reader.buf.is_empty() {
        let (number, wire_type, bytes) = reader.field()?;
        if number != BATCH_SERIES || wire_type != WIRE_LEN {
            continue;
        }
        shape.n_series += 1;
        if shape.n_series > max_series {
            return Err(ShapeError::TooManySeries { max: max_series });
        }
        shape.n_readings = shape.n_readings.saturating_add(series_readings(bytes)?);
        if shape.n_readings > max_readings {
            return Err(ShapeError::TooManyReadings { max: max_readings });
        }
    }
    Ok(shape)
}

/// Readings one encoded `Series` would allocate: the longer of its two
/// columns (a mismatch is refused later, after decoding).
fn series_readings(buf: &[u8]) -> Result<usize, ShapeError> {
    let mut n_deltas = 0usize;
    let mut n_values = 0usize;
    let mut reader = Reader { buf };
    while !reader.buf.is_empty() {
        let (number, wire_type, bytes) = reader.field()?;
        match (number, wire_type) {
            // Packed varints: one value ends at each byte below 0x80.
            (SERIES_TS_DELTA, WIRE_LEN) => n_deltas += bytes.iter().filter(|&&b| b < 0x80).count(),
            (SERIES_TS_DELTA, WIRE_VARINT) => n_deltas += 1,
            (SERIES_VALUES, WIRE_LEN) => n_values += bytes.len() / 8,
            (SERIES_VALUES, WIRE_I64) => n_values += 1,
            _ => {}
        }
    }
    Ok(n_deltas.max(n_values))
}

#[cfg(test)]
mod tests {
    use fieldpulse_proto::v1::{Batch, Series};
    use prost::Message;

    use super::*;

    fn batch(n_series: usize, n_points: usize) -> Vec<u8> {
        let series = (0..n_series)
            .map(|idx| {
                let mut series = Series {
                    asset_id: format!("a{idx}"),
                    sensor: "s".into(),
                    ..Default::default()
                };
                for point in 0..n_points {
                    series.push(1_000 + point as i64 * 300, point as f64);
                }
                series
            })
            .collect();
        Batch {
            gateway_id: "gw".into(),
            seq: 1,
            spool_epoch: 9,
            series,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn counts_match_the_decoded_batch() {
        let bytes = batch(3, 40);
        assert_eq!(
            batch_shape(&bytes, 10, 1_000),
            Ok(Shape {
                n_series: 3,
                n_readings: 120
            })
        );
    }

    #[test]
    fn limits_stop_the_count() {
        let bytes = batch(3, 40);
        assert_eq!(
            batch_shape(&bytes, 2, 1_000),
            Err(ShapeError::TooManySeries { max: 2 })
        );
        assert_eq!(
            batch_shape(&bytes, 10, 100),
            Err(ShapeError::TooManyReadings { max: 100 })
        );
    }

    #[test]
    fn garbage_is_a_wire_error() {
        assert!(matches!(
            batch_shape(&[0x32, 0xff], 10, 10),
            Err(ShapeError::Wire(_))
        ));
        assert!(matches!(
            batch_shape(&[0xff; 16], 10, 10),
            Err(ShapeError::Wire(_))
        ));
    }
}
