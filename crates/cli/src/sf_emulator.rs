//! `fieldpulse sf-emulator`: runs the strict local Salesforce emulator.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use fieldpulse_sf_emulator::schema::Schema;
use fieldpulse_sf_emulator::{Emulator, EmulatorConfig, Fixture, TlsIdentity};
use tokio_util::sync::CancellationToken;

/// Run a local Salesforce emulator (OAuth2, REST, SOQL, Bulk 2.0) for tests and demos.
///
/// Example: `fieldpulse sf-emulator --port 8484 --state ./sf-state --jwt-cert server.crt`
#[derive(Debug, Args)]
pub struct SfEmulatorArgs {
    /// TCP port (0 = any free port; the URL is printed).
    #[arg(long, default_value_t = 8484)]
    port: u16,
    /// Address to bind; admin hooks (`/__emulator/...`) are only served on loopback.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Directory for `state.jsonl`; records survive restarts. Omit for in-memory only.
    #[arg(long)]
    state: Option<PathBuf>,
    /// JSON config (EmulatorConfig: org, consumer key, session lifetime, limits, faults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// SFDX metadata directory to load instead of the embedded `salesforce/` copy.
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// PEM certificate or public key the JWT bearer assertions must verify against.
    #[arg(long)]
    jwt_cert: Option<PathBuf>,
    /// Connected app consumer key (JWT `iss`, client-credentials `client_id`).
    #[arg(long)]
    consumer_key: Option<String>,
    /// Environment variable holding the consumer secret (enables client credentials).
    #[arg(long, value_name = "VAR")]
    consumer_secret_env: Option<String>,
    /// Integration user's username (JWT `sub`).
    #[arg(long)]
    username: Option<String>,
    /// JSON fixture to load into a fresh org (ignored when --state already holds records).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Insert this many synthetic Work Orders at start (load tests).
    #[arg(long, default_value_t = 0)]
    seed_synthetic_work_orders: usize,
    /// Seed, print the summary (with resident memory), and exit without serving.
    #[arg(long)]
    exit_after_seed: bool,
    /// Print one JSON object on stdout when ready.
    #[arg(long)]
    json: bool,
    /// Serve https with a self-signed certificate generated at start (for
    /// clients that speak only https); the certificate is written to --tls-cert-out.
    #[arg(long)]
    tls: bool,
    /// Where to write the generated certificate (PEM) for clients to trust.
    #[arg(long, default_value = "sf-emulator-cert.pem")]
    tls_cert_out: PathBuf,
    /// Print the effective configuration (defaults + --config + flags) as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the emulator until SIGINT/SIGTERM.
pub fn run(args: SfEmulatorArgs) -> anyhow::Result<()> {
    let mut config: EmulatorConfig = match &args.config {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: invalid emulator config", path.display()))?,
        None => EmulatorConfig::default(),
    };
    if let Some(path) = &args.jwt_cert {
        config.jwt_certificate_pem = Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    if let Some(key) = &args.consumer_key {
        config.consumer_key = key.clone();
    }
    if let Some(var) = &args.consumer_secret_env {
        config.consumer_secret = Some(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?,
        );
    }
    if let Some(user) = &args.username {
        config.username = user.clone();
    }
    if args.print_config {
        let mut shown = config.clone();
        if shown.consumer_secret.is_some() {
            shown.consumer_secret = Some("***".into());
        }
        let config = shown;
        println!(
            "{}",
            serde_json::to_string_pretty(&config).context("rendering the config")?
        );
        return Ok(());
    }
    let schema = match &args.metadata {
        Some(dir) => Schema::with_metadata_dir(dir)
            .with_context(|| format!("loading metadata from {}", dir.display()))?,
        None => Schema::with_embedded_metadata().context("loading embedded metadata")?,
    };
    let emulator = Emulator::with_schema(config, schema, args.state.clone())
        .context("starting the emulator")?;
    let started = std::time::Instant::now();
    // Seeding is for a fresh org: a restart from --state keeps its records as they are.
    let fresh = emulator.is_empty();
    if !fresh && (args.seed.is_some() || args.seed_synthetic_work_orders > 0) {
        eprintln!("State already holds records; skipping --seed / --seed-synthetic-work-orders.");
    }
    if let Some(path) = args.seed.as_ref().filter(|_| fresh) {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let fixture: Fixture = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid fixture", path.display()))?;
        let report = emulator
            .seed(&fixture)
            .with_context(|| format!("seeding {}", path.display()))?;
        eprintln!("Seeded {:?} from {}.", report.created, path.display());
    }
    if args.seed_synthetic_work_orders > 0 && fresh {
        eprintln!(
            "Seeding {} synthetic Work Orders...",
            args.seed_synthetic_work_orders
        );
        emulator
            .seed_synthetic_work_orders(args.seed_synthetic_work_orders, 1)
            .context("seeding synthetic work orders")?;
    }
    let seed_seconds = started.elapsed().as_secs_f64();
    let counts: serde_json::Map<String, serde_json::Value> = [
        "Account",
        "Product2",
        "Asset",
        "WorkOrder",
        "WorkOrderLineItem",
        "Case",
    ]
    .iter()
    .map(|o| (o.to_string(), emulator.live_count(o).into()))
    .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        if args.exit_after_seed {
            emulator.save_if_dirty().await.context("writing state")?;
            let summary = serde_json::json!({"records": counts, "seed_seconds": seed_seconds, "rss_bytes": rss_bytes()});
            if args.json {
                println!("{summary}");
            } else {
                eprintln!("{summary:#}");
            }
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port)).await.with_context(|| format!("binding {}:{}", args.bind, args.port))?;
        let scheme = if args.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr()?);
        eprintln!("Salesforce emulator listening on {url} (token endpoint {url}/services/oauth2/token).");
        if args.json {
            println!("{}", serde_json::json!({"url": url, "records": counts, "rss_bytes": rss_bytes()}));
        }
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                } else {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            signal.cancel();
        });
        if args.tls {
            let identity = TlsIdentity::self_signed(&[args.bind.as_str(), "localhost", "127.0.0.1"]).context("generating a certificate")?;
            std::fs::write(&args.tls_cert_out, &identity.cert_pem).with_context(|| format!("writing {}", args.tls_cert_out.display()))?;
            eprintln!("Serving https; trust the certificate in {}.", args.tls_cert_out.display());
            emulator.run_tls(listener, shutdown, identity).await.context("serving https")?;
        } else {
            emulator.run(listener, shutdown).await.context("serving")?;
        }
        eprintln!("Emulator stopped; state saved.");
        Ok(())
    })
}
