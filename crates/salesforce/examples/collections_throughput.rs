//! Measures Collections upsert throughput against the in-process emulator.
//!
//! `cargo run -p fieldpulse-salesforce --example collections_throughput -- 50000 4`
//! (records, concurrent Collections calls). Prints one JSON object: insert
//! and update passes in records/s.

use std::time::Instant;

use fieldpulse_salesforce::{AuthConfig, ClientConfig, RecordOutcome, SalesforceClient, Secret};
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig};
use futures_util::{stream, StreamExt};
use serde_json::{json, Map, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4);
    let config = EmulatorConfig {
        consumer_secret: Some("bench-secret".into()),
        daily_api_limit: 10_000_000,
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::new(config.clone(), None)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
    let auth = AuthConfig::ClientCredentials {
        token_url: base,
        client_id: config.consumer_key.clone(),
        client_secret: Secret::new("bench-secret"),
    };
    let client = SalesforceClient::new(ClientConfig::new(auth))?;
    client.authenticate().await?;
    let mut passes = Vec::new();
    for pass in ["insert", "update"] {
        let records: Vec<Map<String, Value>> = (0..n)
            .map(|i| {
                let v = json!({"FieldPulse_Key__c": format!("fp:case:bench:{i}"), "Subject": format!("Bearing failure predicted ({pass}) {i}"), "Priority": "High", "Origin": "Web", "Type": "Mechanical"});
                v.as_object().cloned().unwrap_or_default()
            })
            .collect();
        let started = Instant::now();
        let client = &client;
        let outcomes: Vec<Vec<RecordOutcome>> = stream::iter(records.chunks(1000))
            .map(|slice| async move {
                client
                    .upsert_collection("Case", "FieldPulse_Key__c", slice)
                    .await
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let seconds = started.elapsed().as_secs_f64();
        let failed = outcomes
            .iter()
            .flatten()
            .filter(|o| matches!(o, RecordOutcome::Failed(_)))
            .count();
        passes.push(json!({"pass": pass, "records": n, "failed": failed, "seconds": seconds, "records_per_s": n as f64 / seconds}));
    }
    shutdown.cancel();
    println!(
        "{}",
        json!({"concurrency": concurrency, "cases_in_org": emulator.live_count("Case"), "api_requests": client.stats().requests, "passes": passes})
    );
    Ok(())
}
