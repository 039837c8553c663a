//! `fieldpulse sync work-orders`: pulls Work Order history (Work Orders,
//! line items, Assets, Products) changed since the last sync into a local
//! JSON Lines store used by training. The export engine lives in
//! `fieldpulse_salesforce::export`; this module only wires flags to it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use fieldpulse_salesforce::{
    AuthConfig, ClientConfig, ExportMode, ExportSpec, SalesforceClient, Secret,
};

/// What to sync.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Work Order history: WorkOrder, WorkOrderLineItem, Asset, Product2.
    ///
    /// Example: `fieldpulse sync work-orders --token-url https://acme.my.salesforce.com
    /// --client-id 3MVG9... --username fieldpulse@acme.com --key-file fieldpulse.key --out data/sf --json`
    WorkOrders(SyncArgs),
}

/// Connection and output flags.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Token host: `https://login.salesforce.com`, `https://test.salesforce.com` or the My Domain URL.
    #[arg(long, env = "FIELDPULSE_SF_TOKEN_URL")]
    token_url: String,
    /// JWT audience (the login host); defaults to login.salesforce.com.
    #[arg(long, default_value = "https://login.salesforce.com")]
    audience: String,
    /// Connected app consumer key.
    #[arg(long, env = "FIELDPULSE_SF_CLIENT_ID")]
    client_id: String,
    /// Integration user's username (JWT bearer flow).
    #[arg(long, env = "FIELDPULSE_SF_USERNAME")]
    username: Option<String>,
    /// PEM private key for the JWT bearer flow.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Environment variable holding the consumer secret (client-credentials flow instead of JWT).
    #[arg(long, value_name = "VAR")]
    client_secret_env: Option<String>,
    /// API version.
    #[arg(long, default_value = "66.0")]
    api_version: String,
    /// Output directory (JSON Lines files + sync-state.json).
    #[arg(long, default_value = "sf-sync")]
    out: PathBuf,
    /// How to pull.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// Rows above which `auto` uses Bulk API 2.0.
    #[arg(long, default_value_t = 50_000)]
    bulk_threshold: u64,
    /// Ignore the stored watermark and pull rows modified since this UTC time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Soql,
    Bulk,
}

fn specs() -> Vec<ExportSpec> {
    let spec = |object: &str, stem: &str, fields: &[&str]| ExportSpec {
        object: object.into(),
        file_stem: stem.into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        // Deletions reach the store as rows with IsDeleted = true.
        include_deleted: true,
    };
    vec![
        spec(
            "Product2",
            "products",
            &[
                "Id",
                "Name",
                "ProductCode",
                "Family",
                "IsActive",
                "CreatedDate",
                "SystemModstamp",
            ],
        ),
        spec(
            "Asset",
            "assets",
            &[
                "Id",
                "Name",
                "AccountId",
                "Product2Id",
                "SerialNumber",
                "InstallDate",
                "UsageEndDate",
                "Status",
                "ParentId",
                "CreatedDate",
                "SystemModstamp",
            ],
        ),
        spec(
            "WorkOrder",
            "work_orders",
            &[
                "Id",
                "WorkOrderNumber",
                "AssetId",
                "CaseId",
                "AccountId",
                "WorkTypeId",
                "WorkType.Name",
                "Status",
                "StatusCategory",
                "Priority",
                "IsClosed",
                "IsGeneratedFromMaintenancePlan",
                "MaintenancePlanId",
                "StartDate",
                "EndDate",
                "SuggestedMaintenanceDate",
                "Subject",
                "CreatedDate",
                "LastModifiedDate",
                "SystemModstamp",
            ],
        ),
        spec(
            "WorkOrderLineItem",
            "work_order_line_items",
            &[
                "Id",
                "WorkOrderId",
                "LineItemNumber",
                "AssetId",
                "WorkTypeId",
                "Status",
                "Subject",
                "StartDate",
                "EndDate",
                "Product2Id",
                "CreatedDate",
                "SystemModstamp",
            ],
        ),
    ]
}

fn auth(args: &SyncArgs) -> anyhow::Result<AuthConfig> {
    if let Some(var) = &args.client_secret_env {
        let secret =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        return Ok(AuthConfig::ClientCredentials {
            token_url: args.token_url.clone(),
            client_id: args.client_id.clone(),
            client_secret: Secret::new(secret),
        });
    }
    let key_file = args.key_file.as_ref().context(
        "either --key-file (JWT bearer) or --client-secret-env (client credentials) is required",
    )?;
    let username = args
        .username
        .clone()
        .context("--username is required for the JWT bearer flow")?;
    let key = std::fs::read_to_string(key_file)
        .with_context(|| format!("reading {}", key_file.display()))?;
    Ok(AuthConfig::JwtBearer {
        token_url: args.token_url.clone(),
        audience: args.audience.clone(),
        client_id: args.client_id.clone(),
        username,
        private_key_pem: Secret::new(key),
    })
}

/// Runs a sync.
pub fn run(cmd: SyncCommand) -> anyhow::Result<()> {
    let SyncCommand::WorkOrders(args) = cmd;
    let mut config = ClientConfig::new(auth(&args)?);
    config.api_version = args.api_version.clone();
    config.timeout = Duration::from_secs(120);
    // Reads for training stop earlier than the outbox would (reference §3.4).
    config.budget_threshold = 0.8;
    let client = SalesforceClient::new(config).context("building the Salesforce client")?;
    let mode = match args.mode {
        Mode::Auto => ExportMode::Auto,
        Mode::Soql => ExportMode::Soql,
        Mode::Bulk => ExportMode::Bulk,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let started = std::time::Instant::now();
    let reports = runtime.block_on(async {
        client
            .authenticate()
            .await
            .context("authenticating to Salesforce")?;
        let mut reports = Vec::new();
        for spec in specs() {
            let object = spec.object.clone();
            // A live counter on a terminal; one line per 50k rows otherwise (logs, CI).
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut last_line = 0;
            let mut progress = |rows: u64| {
                if tty {
                    eprint!("\r{object}: {rows} rows");
                } else if rows >= last_line + 50_000 {
                    last_line = rows;
                    eprintln!("{object}: {rows} rows");
                }
            };
            let report = client
                .export_incremental(
                    &args.out,
                    &spec,
                    mode,
                    args.bulk_threshold,
                    args.since.as_deref(),
                    &mut progress,
                )
                .await
                .with_context(|| format!("syncing {} into {}", spec.object, args.out.display()))?;
            eprintln!(
                "{}{}: {} new or changed rows via {:?}, {} in store",
                if tty { "\r" } else { "" },
                report.object,
                report.rows,
                report.mode,
                report.rows_in_store
            );
            reports.push(report);
        }
        anyhow::Ok(reports)
    })?;
    let summary = serde_json::json!({
        "out": args.out,
        "objects": reports,
        "seconds": started.elapsed().as_secs_f64(),
        "api_requests": client.stats().requests,
        "remaining_daily_calls": client.remaining_daily_calls(),
    });
    if args.json {
        println!("{summary}");
    }
    Ok(())
}
