//! Encodes one day's rows as a Parquet file (polars' writer), in memory.

use polars::prelude::*;

use super::buffer::DayRows;
use super::{ArchiveCompression, ArchiveError};

/// Readings in a part file, from its footer.
pub fn count_rows(path: &std::path::Path) -> Result<u64, ArchiveError> {
    let file = std::fs::File::open(path).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetReader::new(file)
        .num_rows()
        .map(|n| n as u64)
        .map_err(|e| ArchiveError::Encode(format!("{}: {e}", path.display())))
}

/// The Arrow schema stored in each file's `ARROW:schema` key: `ts`
/// timestamp\[ms, tz=UTC\], `asset`, `tag` utf8, `value` float64, `gateway` utf8
/// (an IPC schema message, base64, exactly as pyarrow writes it). polars would
/// store its own, whose strings are `Utf8View`, which readers older than Arrow
/// 16 (pyarrow < 16, 2024) refuse ("Unrecognized type: 24"); plain utf8 reads
/// everywhere, polars included. Regenerate it, if the columns ever change, with
/// `base64.b64encode(pa.schema([...]).serialize().to_pybytes())`.
const ARROW_SCHEMA_B64: &str = "/////zgBAAAQAAAAAAAKAAwABgAFAAgACgAAAAABBAAMAAAACAAIAAAABAAIAAAABAAAAAUAAADMAAAAjAAAAGQAAAAwAAAABAAAAFj///8AAAEFEAAAABgAAAAEAAAAAAAAAAcAAABnYXRld2F5AIT///+A////AAABAxAAAAAcAAAABAAAAAAAAAAFAAAAdmFsdWUABgAIAAYABgAAAAAAAgCw////AAABBRAAAAAUAAAABAAAAAAAAAADAAAAdGFnANj////U////AAABBRAAAAAcAAAABAAAAAAAAAAFAAAAYXNzZXQAAAAEAAQABAAAABAAFAAIAAYABwAMAAAAEAAQAAAAAAABChAAAAAcAAAABAAAAAAAAAACAAAAdHMAAAgADAAGAAgACAAAAAAAAQAEAAAAAwAAAFVUQwA=";

/// Column names, in file order.
pub const COLUMNS: [&str; 5] = ["ts", "asset", "tag", "value", "gateway"];

/// The Parquet bytes of `day`'s rows; `first..=last` is recorded in the
/// file's key-value metadata (`fieldpulse.first_offset`, `fieldpulse.last_offset`).
pub fn encode(
    day: &DayRows<'_>,
    compression: ArchiveCompression,
    first: u64,
    last: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let encode_err = |e: PolarsError| ArchiveError::Encode(e.to_string());
    let rows = day.rows;
    let strings = day.strings;
    let ts = Int64Chunked::from_vec(
        COLUMNS[0].into(),
        rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
    )
    // `TimeZone::UTC` needs no time zone database (polars' `timezones`
    // feature): Parquet gets `TIMESTAMP(isAdjustedToUTC = true, MILLIS)`.
    .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC));
    let text = |name: &str, id: fn(&super::buffer::Row) -> u32| {
        StringChunked::from_iter_values(name.into(), rows.iter().map(|r| strings.get(id(r))))
            .into_column()
    };
    let value = Float64Chunked::from_vec(
        COLUMNS[3].into(),
        rows.iter().map(|r| r.value).collect::<Vec<_>>(),
    );
    let mut frame = DataFrame::new(
        rows.len(),
        vec![
            ts.into_column(),
            text(COLUMNS[1], |r| r.asset),
            text(COLUMNS[2], |r| r.tag),
            value.into_column(),
            text(COLUMNS[4], |r| r.gateway),
        ],
    )
    .map_err(encode_err)?;
    let compression = match compression {
        ArchiveCompression::Zstd => ParquetCompression::Zstd(None),
        ArchiveCompression::Snappy => ParquetCompression::Snappy,
        ArchiveCompression::Lz4 => ParquetCompression::Lz4Raw,
        ArchiveCompression::Uncompressed => ParquetCompression::Uncompressed,
    };
    let metadata = KeyValueMetadata::from_static(vec![
        ("ARROW:schema".into(), ARROW_SCHEMA_B64.into()),
        ("fieldpulse.first_offset".into(), first.to_string()),
        ("fieldpulse.last_offset".into(), last.to_string()),
    ]);
    let mut out = Vec::new();
    ParquetWriter::new(&mut out)
        .with_compression(compression)
        .with_key_value_metadata(Some(metadata))
        // One archive thread: it should not take every core from the shards.
        .set_parallel(false)
        .finish(&mut frame)
        .map_err(encode_err)?;
    Ok(out)
}
