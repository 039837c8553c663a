//! Integration tests of the emulator's schema, SOQL and state handling that
//! need no HTTP client. The HTTP behaviour is tested through the real client
//! in `crates/salesforce/tests` (conformance checklist).

mod http;

use fieldpulse_sf_emulator::schema::{FieldType, Schema};
use fieldpulse_sf_emulator::{soql, Emulator, EmulatorConfig, Fixture};

#[test]
fn embedded_metadata_defines_custom_objects_and_fields() {
    let schema = Schema::with_embedded_metadata().expect("embedded metadata loads");
    let alert = &schema.objects[schema
        .object_idx("Asset_Alert__c")
        .expect("Asset_Alert__c exists")];
    assert_eq!(alert.key_prefix, "a01");
    let key = &alert.fields[alert.field_idx("FieldPulse_Key__c").expect("key field")];
    assert!(key.external_id && key.unique && key.case_sensitive);
    let priority = &alert.fields[alert.field_idx("Priority__c").expect("priority")];
    match &priority.ty {
        FieldType::Picklist(p) => {
            assert!(p.restricted);
            assert_eq!(p.values, ["Low", "Medium", "High", "Critical"]);
        }
        other => panic!("Priority__c should be a picklist, got {other:?}"),
    }
    let asset_lookup = &alert.fields[alert.field_idx("Asset__c").expect("asset lookup")];
    assert!(asset_lookup.required_on_create());
    assert_eq!(asset_lookup.relationship_name.as_deref(), Some("Asset__r"));
    for object in [
        "Case",
        "MaintenancePlan",
        "MaintenanceAsset",
        "AI_Insight__c",
    ] {
        let o = &schema.objects[schema.object_idx(object).expect("object exists")];
        assert!(
            o.field_idx("FieldPulse_Key__c").is_some(),
            "{object} lacks FieldPulse_Key__c"
        );
    }
    let asset = &schema.objects[schema.object_idx("Asset").expect("Asset")];
    assert!(asset.field_idx("FieldPulse_Health__c").is_some());
}

#[test]
fn every_object_fieldpulse_writes_carries_its_key_trace_id_and_ai_flag() {
    let schema = Schema::with_embedded_metadata().expect("embedded metadata loads");
    for object in [
        "Case",
        "Asset_Alert__c",
        "AI_Insight__c",
        "MaintenancePlan",
        "MaintenanceAsset",
    ] {
        let o = &schema.objects[schema.object_idx(object).expect("object exists")];
        let field = |name: &str| {
            &o.fields[o
                .field_idx(name)
                .unwrap_or_else(|| panic!("{object} lacks {name}"))]
        };
        let key = field("FieldPulse_Key__c");
        assert!(
            key.external_id && key.unique && key.case_sensitive,
            "{object}"
        );
        assert_eq!(field("FieldPulse_Trace_Id__c").ty, FieldType::String(64));
        let flag = field("AI_Generated__c");
        assert_eq!(flag.ty, FieldType::Boolean);
        assert_eq!(flag.default_bool, Some(false), "{object}");
        assert!(!flag.required_on_create());
    }
    let insight = &schema.objects[schema.object_idx("AI_Insight__c").expect("insight")];
    let ty = |o: &fieldpulse_sf_emulator::schema::ObjectSchema, name: &str| {
        o.fields[o
            .field_idx(name)
            .unwrap_or_else(|| panic!("{} lacks {name}", o.name))]
        .ty
        .clone()
    };
    assert_eq!(ty(insight, "Outcome__c"), FieldType::String(255));
    assert_eq!(ty(insight, "Target_Object__c"), FieldType::String(80));
    assert!(matches!(ty(insight, "Source_Range__c"), FieldType::TextArea(n) if n > 255));
    assert!(matches!(ty(insight, "Priority_Inputs__c"), FieldType::TextArea(n) if n > 255));
    match ty(insight, "Rollout_Mode__c") {
        FieldType::Picklist(p) => {
            assert!(p.restricted);
            assert_eq!(p.values, ["observe", "review", "act"]);
        }
        other => panic!("Rollout_Mode__c should be a picklist, got {other:?}"),
    }
    let alert = &schema.objects[schema.object_idx("Asset_Alert__c").expect("alert")];
    assert_eq!(ty(alert, "Priority_Score__c"), FieldType::Double(8, 4));
    assert_eq!(ty(alert, "Criticality__c"), FieldType::Double(5, 2));
    assert_eq!(ty(alert, "SLA_Factor__c"), FieldType::Double(5, 2));
    assert_eq!(ty(alert, "Probability__c"), FieldType::Double(5, 4));
}

#[test]
fn the_deployed_case_status_value_set_adds_pending_review_and_not_a_problem_and_keeps_new_as_default(
) {
    let schema = Schema::with_embedded_metadata().expect("embedded metadata loads");
    let case = &schema.objects[schema.object_idx("Case").expect("Case")];
    match &case.fields[case.field_idx("Status").expect("Status")].ty {
        FieldType::Picklist(p) => {
            assert!(p.values.iter().any(|v| v == "Pending Review"), "{p:?}");
            assert!(p.values.iter().any(|v| v == "Closed"), "{p:?}");
            assert!(
                p.values.iter().any(|v| v == "Closed - Not a Problem"),
                "{p:?}"
            );
            assert_eq!(p.closed, ["Closed", "Closed - Not a Problem"]);
            assert_eq!(p.default.as_deref(), Some("New"));
        }
        other => panic!("Case.Status should be a picklist, got {other:?}"),
    }
}

#[test]
fn metadata_directory_matches_embedded_metadata() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../salesforce");
    let from_dir = Schema::with_metadata_dir(&dir).expect("directory metadata loads");
    let embedded = Schema::with_embedded_metadata().expect("embedded metadata loads");
    assert_eq!(from_dir.objects.len(), embedded.objects.len());
    for (a, b) in from_dir.objects.iter().zip(&embedded.objects) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.fields.len(), b.fields.len(), "{}", a.name);
    }
}

#[test]
fn soql_rejects_unsupported_syntax_with_salesforce_codes() {
    let schema = Schema::with_embedded_metadata().expect("schema");
    let err = soql::compile(&schema, "SELECT Id FORM Case", 20_000).expect_err("FORM is a typo");
    assert_eq!(err.code, "MALFORMED_QUERY");
    assert!(
        err.message.contains("ERROR at Row:1:Column:11"),
        "{}",
        err.message
    );
    assert_eq!(
        soql::compile(&schema, "SELECT Foo__c FROM Case", 0)
            .expect_err("unknown field")
            .code,
        "INVALID_FIELD"
    );
    assert_eq!(
        soql::compile(&schema, "SELECT Id FROM Nope__c", 0)
            .expect_err("unknown object")
            .code,
        "INVALID_TYPE"
    );
    assert_eq!(
        soql::compile(
            &schema,
            "SELECT Id FROM Case WHERE Subject = 'a' AND Status = 'New' OR Priority = 'High'",
            0
        )
        .expect_err("mixed AND/OR")
        .code,
        "MALFORMED_QUERY"
    );
    assert_eq!(
        soql::compile(&schema, "SELECT COUNT(Id) FROM Case", 0)
            .expect_err("aggregate function")
            .code,
        "MALFORMED_QUERY"
    );
    assert_eq!(
        soql::compile(
            &schema,
            "SELECT Id FROM WorkOrder WHERE CreatedDate > 2026-01-01",
            0
        )
        .expect_err("date for datetime")
        .code,
        "INVALID_FIELD"
    );
    soql::compile(
        &schema,
        "SELECT Id, Asset.Product2.Name FROM WorkOrder WHERE (Status IN ('New','Completed') OR Subject LIKE 'Pump%') AND CreatedDate = LAST_N_DAYS:30 AND SystemModstamp > 2026-01-01T00:00:00Z ORDER BY SystemModstamp DESC NULLS LAST, Id LIMIT 10 OFFSET 5",
        20_000,
    )
    .expect("supported query compiles");
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emulator =
        Emulator::new(EmulatorConfig::default(), Some(dir.path().to_path_buf())).expect("emulator");
    let fixture: Fixture = serde_json::from_value(serde_json::json!({"objects": [
        {"type": "Account", "records": [{"@ref": "acme", "Name": "Acme"}]},
        {"type": "Asset", "records": [{"Name": "Pump P-104", "AccountId": "@acme", "InstallDate": "2021-03-01"}]}
    ]}))
    .expect("fixture parses");
    emulator.seed(&fixture).expect("fixture seeds");
    emulator.save_if_dirty().await.expect("state written");
    let restarted = Emulator::new(EmulatorConfig::default(), Some(dir.path().to_path_buf()))
        .expect("restarted emulator");
    assert_eq!(restarted.live_count("Asset"), 1);
    let asset = &restarted.records("Asset")[0];
    assert_eq!(asset["Name"], "Pump P-104");
    assert_eq!(asset["InstallDate"], "2021-03-01");
    assert_eq!(restarted.records("Account")[0]["Id"], asset["AccountId"]);
}

#[test]
fn fixtures_are_validated_like_api_writes() {
    let emulator = Emulator::new(EmulatorConfig::default(), None).expect("emulator");
    let fixture: Fixture = serde_json::from_value(serde_json::json!({"objects": [
        {"type": "Asset", "records": [{"Name": "Orphan pump"}]}
    ]}))
    .expect("fixture parses");
    let err = emulator
        .seed(&fixture)
        .expect_err("an asset needs an account or contact");
    assert!(
        err.to_string().contains("FIELD_INTEGRITY_EXCEPTION"),
        "{err}"
    );
}

#[test]
fn the_demo_fixture_seeds_accounts_products_assets_and_work_order_history() {
    let emulator = Emulator::new(EmulatorConfig::default(), None).expect("emulator");
    let text = include_str!("../fixtures/demo-org.json");
    let fixture: Fixture = serde_json::from_str(text).expect("fixture parses");
    let report = emulator.seed(&fixture).expect("fixture seeds");
    assert_eq!(report.created["WorkOrder"], 3);
    let orders = emulator.records("WorkOrder");
    let bearing = orders
        .iter()
        .find(|o| o["Subject"] == "Replace drive-end bearing P-104")
        .expect("history row");
    assert_eq!(
        bearing["SystemModstamp"], "2024-06-03T13:35:00.000+0000",
        "history keeps its own timestamps"
    );
    assert_eq!(bearing["IsClosed"], true);
    assert_eq!(
        emulator.records("WorkOrderLineItem")[0]["WorkOrderId"],
        bearing["Id"]
    );
    assert_eq!(
        emulator.records("WorkOrderLineItem")[0]["LineItemNumber"],
        "00001",
        "line items count per work order"
    );
    let bearing = emulator
        .records("WorkOrder")
        .into_iter()
        .find(|o| o["Subject"] == "Replace drive-end bearing P-104")
        .expect("row");
    assert_eq!(bearing["LineItemCount"], 1);
}

#[test]
fn the_default_config_round_trips_through_json_and_rejects_unknown_keys() {
    let text = serde_json::to_string(&EmulatorConfig::default()).expect("serializes");
    let back: EmulatorConfig =
        serde_json::from_str(&text).expect("the printed default config loads");
    assert_eq!(
        back.session_lifetime,
        EmulatorConfig::default().session_lifetime
    );
    assert_eq!(back.audiences, EmulatorConfig::default().audiences);
    let err = serde_json::from_str::<EmulatorConfig>(r#"{"sesion_lifetime": "1h"}"#)
        .expect_err("typo is rejected");
    assert!(err.to_string().contains("sesion_lifetime"), "{err}");
    let partial: EmulatorConfig =
        serde_json::from_str(r#"{"session_lifetime": "15m", "faults": {"rate_503": 0.1}}"#)
            .expect("partial config");
    assert_eq!(
        partial.session_lifetime,
        std::time::Duration::from_secs(900)
    );
    assert_eq!(partial.faults.rate_503, 0.1);
}

#[tokio::test]
async fn the_https_listener_serves_the_api_with_a_generated_certificate() {
    use fieldpulse_sf_emulator::TlsIdentity;
    let identity =
        TlsIdentity::self_signed(&["127.0.0.1", "localhost"]).expect("self-signed certificate");
    let emulator = Emulator::new(EmulatorConfig::default(), None).expect("emulator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(emulator.clone().run_tls(
        listener,
        shutdown.clone(),
        identity.clone(),
    ));
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(identity.cert_pem.as_bytes()).expect("pem"),
        )
        .build()
        .expect("client");
    let res = http
        .get(format!("https://{addr}/services/data/"))
        .send()
        .await
        .expect("https call");
    assert_eq!(res.status().as_u16(), 200);
    let untrusted = reqwest::Client::new()
        .get(format!("https://{addr}/services/data/"))
        .send()
        .await;
    assert!(
        untrusted.is_err(),
        "a client that does not trust the generated certificate is refused"
    );
    assert_eq!(emulator.base_url(), format!("https://{addr}"));
    shutdown.cancel();
    server.await.expect("joined").expect("clean shutdown");
}

/// Signs claims with the client crate's TEST-ONLY key (crates/salesforce/tests/data).
fn sign(header: &str, claims: &serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let pem = include_str!("../../salesforce/tests/data/test-only-jwt-key.pem");
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).expect("test key");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

#[tokio::test]
async fn jwt_assertions_are_verified_and_their_claims_checked_like_salesforce() {
    let config = EmulatorConfig {
        jwt_certificate_pem: Some(
            include_str!("../../salesforce/tests/data/test-only-jwt-cert.pem").into(),
        ),
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::new(config.clone(), None).expect("emulator");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/services/oauth2/token",
        listener.local_addr().expect("addr")
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(emulator.clone().run(listener, shutdown.clone()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let http = reqwest::Client::new();
    let exchange = |assertion: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let res = http
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .expect("token call");
            let status = res.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_slice(&res.bytes().await.expect("body")).expect("json");
            (status, body)
        }
    };
    let claims = |exp: serde_json::Value, aud: &str| serde_json::json!({"iss": config.consumer_key, "sub": config.username, "aud": aud, "exp": exp});
    let header = r#"{"alg":"RS256"}"#;
    // simple-salesforce sends exp as a numeric string; real orgs accept it.
    let (status, body) = exchange(sign(
        header,
        &claims(
            serde_json::json!((now + 180).to_string()),
            "https://login.salesforce.com",
        ),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("00Dxx0000001gPL!")));
    assert!(body.get("refresh_token").is_none());
    let (_, body) = exchange(sign(
        header,
        &claims(
            serde_json::json!(now + 180),
            "https://acme.my.salesforce.com",
        ),
    ))
    .await;
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid_grant", "error_description": "Audience validation failed"})
    );
    let (_, body) = exchange(sign(
        header,
        &claims(serde_json::json!(now - 10), "https://test.salesforce.com"),
    ))
    .await;
    assert_eq!(body["error_description"], "invalid assertion", "expired");
    let (_, body) = exchange(sign(
        header,
        &claims(
            serde_json::json!(now + 3600),
            "https://login.salesforce.com",
        ),
    ))
    .await;
    assert_eq!(
        body["error_description"], "invalid assertion",
        "exp too far ahead"
    );
    let (_, body) = exchange(sign(
        r#"{"alg":"none"}"#,
        &claims(serde_json::json!(now + 60), "https://login.salesforce.com"),
    ))
    .await;
    assert_eq!(body["error"], "invalid_grant", "only RS256");
    let mut tampered = sign(
        header,
        &claims(serde_json::json!(now + 60), "https://login.salesforce.com"),
    );
    tampered.push('A');
    let (status, body) = exchange(tampered).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "bad signature"
    );
    let mut wrong_app = claims(serde_json::json!(now + 60), "https://login.salesforce.com");
    wrong_app["iss"] = "someone-else".into();
    let (_, body) = exchange(sign(header, &wrong_app)).await;
    assert_eq!(body["error"], "invalid_client_id");
    shutdown.cancel();
}

/// The permission set must cover exactly our deployable custom fields, and never delete.
#[test]
fn the_permission_set_grants_every_optional_custom_field_and_no_delete() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../salesforce/force-app/main/default");
    let xml = std::fs::read_to_string(
        dir.join("permissionsets/FieldPulse_Integration.permissionset-meta.xml"),
    )
    .expect("permission set");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed");
    let text = |node: roxmltree::Node<'_, '_>, tag: &str| {
        node.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .unwrap_or_default()
            .to_string()
    };
    let granted: std::collections::BTreeSet<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("fieldPermissions"))
        .map(|n| text(n, "field"))
        .collect();
    for object in doc
        .descendants()
        .filter(|n| n.has_tag_name("objectPermissions"))
    {
        assert_eq!(
            text(object, "allowDelete"),
            "false",
            "{}",
            text(object, "object")
        );
        assert_eq!(
            text(object, "modifyAllRecords"),
            "false",
            "{}",
            text(object, "object")
        );
    }
    let schema = Schema::with_embedded_metadata().expect("schema");
    let mut expected = std::collections::BTreeSet::new();
    for object in &schema.objects {
        for field in object.fields.iter().filter(|f| f.name.ends_with("__c")) {
            // Required fields are always visible; Salesforce refuses them in a permission set.
            if !object.is_event() && !field.required_on_create() {
                expected.insert(format!("{}.{}", object.name, field.name));
            }
        }
    }
    assert_eq!(granted, expected);
}
