//! The `fieldpulse.v1` wire contract and its prost types.
//!
//! Owns the `.proto` schema (`proto/fieldpulse/v1/fieldpulse.proto`) and small,
//! IO-free helpers for the columnar [`v1::Series`] layout. Knows nothing about
//! MQTT, HTTP or tokio.
//!
//! ```
//! use fieldpulse_proto::v1::{Batch, Series};
//! use prost::Message;
//!
//! let mut series = Series { asset_id: "pump-7".into(), sensor: "temp".into(), ..Default::default() };
//! series.push(1_700_000_000_000, 71.2);
//! series.push(1_700_000_001_000, 71.4);
//! let batch = Batch { gateway_id: "gw-1".into(), seq: 1, series: vec![series], ..Default::default() };
//! let decoded = Batch::decode(batch.encode_to_vec().as_slice()).unwrap();
//! let points: Vec<_> = decoded.series[0].points().collect();
//! assert_eq!(points, vec![(1_700_000_000_000, 71.2), (1_700_000_001_000, 71.4)]);
//! ```

/// Generated types of the `fieldpulse.v1` package.
#[allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::doc_overindented_list_items
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/fieldpulse.v1.rs"));
}

mod series;

pub use prost::Message;
pub use series::{Points, SeriesError};
