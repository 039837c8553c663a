//! Volume: SOQL paging over 10,000 Work Orders returns each exactly once;
//! Bulk 2.0 over 100,000 pages CSV with `Sforce-Locator` until `null`.

use std::collections::HashSet;

use fieldpulse_salesforce::{BulkOptions, QueryOptions, SfError};
use futures_util::TryStreamExt;

use crate::support::start;

#[tokio::test]
async fn soql_paging_over_ten_thousand_work_orders_returns_each_exactly_once() {
    let h = start().await;
    h.emulator
        .seed_synthetic_work_orders(10_000, 3)
        .expect("seed");
    let before = h.client.stats().requests;
    let rows: Vec<serde_json::Value> = h
        .client
        .query("SELECT Id, WorkOrderNumber, Asset.Name, SystemModstamp FROM WorkOrder ORDER BY SystemModstamp, Id", QueryOptions { batch_size: Some(2000), ..QueryOptions::default() })
        .try_collect()
        .await
        .expect("paged query");
    assert_eq!(rows.len(), 10_000);
    let ids: HashSet<&str> = rows.iter().filter_map(|r| r["Id"].as_str()).collect();
    assert_eq!(ids.len(), 10_000, "no duplicates across pages");
    assert_eq!(h.client.stats().requests - before, 5, "five pages of 2,000");
    let stamps: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["SystemModstamp"].as_str())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "ordered by SystemModstamp"
    );
    assert!(rows[0]["Asset"]["Name"]
        .as_str()
        .is_some_and(|n| n.starts_with("Pump P-")));
}

#[tokio::test]
async fn an_expired_query_locator_is_reported_as_invalid_query_locator() {
    let h = start().await;
    h.emulator
        .seed_synthetic_work_orders(2500, 4)
        .expect("seed");
    let (_, page) = h
        .client
        .raw_json(
            reqwest::Method::GET,
            "/services/data/v66.0/query?q=SELECT+Id+FROM+WorkOrder",
            None,
        )
        .await
        .expect("first page");
    let next = page["nextRecordsUrl"]
        .as_str()
        .expect("more pages")
        .to_string();
    assert!(next.starts_with("/services/data/v66.0/query/01g"));
    h.emulator.clock().advance(16 * 60 * 1000);
    let err = h
        .client
        .raw_json(reqwest::Method::GET, &next, None)
        .await
        .expect_err("locator expired");
    assert_eq!(err.api_errors()[0].code, "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn bulk_query_over_a_hundred_thousand_work_orders_pages_until_the_null_locator() {
    let h = start().await;
    h.emulator
        .seed_synthetic_work_orders(100_000, 5)
        .expect("seed");
    let job = h
        .client
        .bulk_query_job(
            "SELECT Id, WorkOrderNumber, Status, Asset.Name, EndDate FROM WorkOrder",
            &BulkOptions::default(),
        )
        .await
        .expect("job completes");
    assert!(job.starts_with("750"));
    let pages: Vec<fieldpulse_salesforce::CsvPage> = h
        .client
        .bulk_results(&job, 30_000)
        .try_collect()
        .await
        .expect("results");
    assert_eq!(pages.len(), 4, "30k + 30k + 30k + 10k");
    let mut ids = HashSet::new();
    for page in &pages {
        assert_eq!(
            page.header,
            ["Id", "WorkOrderNumber", "Status", "Asset.Name", "EndDate"],
            "every page repeats the header"
        );
        for row in &page.rows {
            ids.insert(row[0].clone().expect("id"));
        }
    }
    assert_eq!(ids.len(), 100_000);
    // Results must be read with the creating API version.
    let err = h
        .client
        .raw_json(
            reqwest::Method::GET,
            &format!("/services/data/v65.0/jobs/query/{job}/results"),
            None,
        )
        .await
        .expect_err("version mismatch");
    assert!(matches!(err, SfError::Api { status: 409, .. }));
    h.client.bulk_delete(&job).await.expect("delete");
    let err = h
        .client
        .raw_json(
            reqwest::Method::GET,
            &format!("/services/data/v66.0/jobs/query/{job}"),
            None,
        )
        .await
        .expect_err("deleted job");
    assert!(matches!(err, SfError::Api { status: 404, .. }));
    let err = h
        .client
        .bulk_query_job("SELECT COUNT() FROM WorkOrder", &BulkOptions::default())
        .await
        .expect_err("aggregates are not allowed in Bulk");
    assert_eq!(err.api_errors()[0].code, "MALFORMED_QUERY");
}
