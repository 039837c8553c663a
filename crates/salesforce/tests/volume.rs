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

#[tokio::test]
async fn work_order_export_is_incremental_resumable_and_agrees_between_soql_and_bulk() {
    use fieldpulse_salesforce::{ExportMode, ExportSpec};
    let h = start().await;
    h.emulator
        .seed_synthetic_work_orders(2500, 6)
        .expect("seed");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = ExportSpec {
        object: "WorkOrder".into(),
        fields: vec![
            "Id".into(),
            "Status".into(),
            "WorkType.Name".into(),
            "SystemModstamp".into(),
        ],
        file_stem: "work_orders".into(),
        include_deleted: true,
    };
    let mut pages = 0;
    let first = h
        .client
        .export_incremental(
            dir.path(),
            &spec,
            ExportMode::Auto,
            50_000,
            None,
            &mut |_| pages += 1,
        )
        .await
        .expect("first export");
    assert_eq!(
        (first.mode, first.rows, first.rows_in_store),
        (ExportMode::Soql, 2500, 2500)
    );
    assert!(pages >= 2, "progress reported per page");
    let again = h
        .client
        .export_incremental(
            dir.path(),
            &spec,
            ExportMode::Auto,
            50_000,
            None,
            &mut |_| {},
        )
        .await
        .expect("second export");
    assert_eq!(again.rows, 0, "nothing changed since the watermark");
    let (_, page) = h
        .client
        .raw_json(
            reqwest::Method::GET,
            "/services/data/v66.0/query?q=SELECT+Id+FROM+WorkOrder+LIMIT+1",
            None,
        )
        .await
        .expect("pick one");
    let id = page["records"][0]["Id"].as_str().expect("id").to_string();
    h.client
        .update(
            "WorkOrder",
            &id,
            &crate::support::map(serde_json::json!({"Status": "Cannot Complete"})),
        )
        .await
        .expect("update");
    let third = h
        .client
        .export_incremental(
            dir.path(),
            &spec,
            ExportMode::Auto,
            50_000,
            None,
            &mut |_| {},
        )
        .await
        .expect("third export");
    assert_eq!(
        (third.rows, third.rows_in_store),
        (1, 2500),
        "only the changed row, compacted in place"
    );
    let text = std::fs::read_to_string(&third.file).expect("store file");
    let line = text.lines().find(|l| l.contains(&id)).expect("row present");
    assert!(
        line.contains("Cannot Complete"),
        "the latest version wins: {line}"
    );
    // Deletions arrive as rows with IsDeleted = true (queryAll).
    let (_, page) = h
        .client
        .raw_json(
            reqwest::Method::GET,
            "/services/data/v66.0/query?q=SELECT+Id+FROM+WorkOrder+ORDER+BY+Id+DESC+LIMIT+1",
            None,
        )
        .await
        .expect("pick another");
    let gone = page["records"][0]["Id"].as_str().expect("id").to_string();
    h.client.delete("WorkOrder", &gone).await.expect("delete");
    let fourth = h
        .client
        .export_incremental(
            dir.path(),
            &spec,
            ExportMode::Soql,
            50_000,
            None,
            &mut |_| {},
        )
        .await
        .expect("fourth export");
    assert_eq!((fourth.rows, fourth.rows_in_store), (1, 2500));
    let text = std::fs::read_to_string(&fourth.file).expect("store file");
    let deleted_row: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.contains(&gone)).expect("row")).expect("json");
    assert_eq!(deleted_row["IsDeleted"], true);
    let bulk_dir = tempfile::tempdir().expect("tempdir");
    let bulk = h
        .client
        .export_incremental(
            bulk_dir.path(),
            &spec,
            ExportMode::Bulk,
            50_000,
            None,
            &mut |_| {},
        )
        .await
        .expect("bulk export");
    assert_eq!(bulk.rows_in_store, 2500);
    let ids = |path: &std::path::Path| -> HashSet<String> {
        std::fs::read_to_string(path)
            .expect("file")
            .lines()
            .filter_map(|l| {
                serde_json::from_str::<serde_json::Value>(l).ok()?["Id"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    assert_eq!(ids(&bulk.file), ids(&third.file));
    let bulk_line = std::fs::read_to_string(&bulk.file)
        .expect("file")
        .lines()
        .find(|l| l.contains(&id))
        .map(str::to_string)
        .expect("row");
    let soql_row: serde_json::Value = serde_json::from_str(line).expect("json");
    let bulk_row: serde_json::Value = serde_json::from_str(&bulk_line).expect("json");
    assert_eq!(soql_row, bulk_row, "both modes store the same typed row");
}
