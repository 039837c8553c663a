//! `fieldpulse models list|add|promote|rollback --registry DIR`: the model
//! registry (`fieldpulse_models::registry`): versioned artifacts, the
//! promoted champion (the version to serve), the candidate, promotion history.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fieldpulse_models::registry::{Actor, HistoryEntry, Registry};

/// Model registry commands.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every registered version: created, data fingerprint, test metrics, status.
    ///
    /// Example: `fieldpulse models list --registry /var/lib/fieldpulse/models --json`
    List(ListArgs),
    /// Copy an artifact directory (`fieldpulse train --out`) in as a new version (the candidate).
    ///
    /// Example: `fieldpulse models add --registry models-reg --artifact models/v1`
    Add(AddArgs),
    /// Make a registered version the champion (the version to serve).
    ///
    /// Example: `fieldpulse models promote --registry models-reg v3 --note "Q3 retrain"`
    Promote(PromoteArgs),
    /// Restore the champion before the current one.
    ///
    /// Example: `fieldpulse models rollback --registry models-reg --note "false alarms up"`
    Rollback(RollbackArgs),
}

/// Arguments shared by every registry command.
#[derive(Debug, Args)]
pub struct RegistryArg {
    /// Registry directory (created by the first `add`).
    #[arg(long)]
    registry: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Arguments of `models list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    reg: RegistryArg,
}

/// Arguments of `models add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    reg: RegistryArg,
    /// Artifact directory written by `fieldpulse train --out`.
    #[arg(long)]
    artifact: PathBuf,
    /// Version name (default `v<N+1>`); letters, digits, `.`, `_`, `-`.
    #[arg(long)]
    version: Option<String>,
    /// Who adds it (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

/// Arguments of `models promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    reg: RegistryArg,
    /// The version to promote.
    version: String,
    /// Why (kept in the promotion history).
    #[arg(long)]
    note: Option<String>,
    /// Who promotes it (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

/// Arguments of `models rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    reg: RegistryArg,
    /// Why (kept in the promotion history).
    #[arg(long)]
    note: Option<String>,
    /// Who rolls back (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

/// Who is acting: `by`, else `$USER`.
pub fn actor(by: Option<String>) -> Actor {
    Actor {
        by: by.unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "unknown user".into())),
        note: None,
    }
}

/// Runs a `models` subcommand.
pub fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List(a) => list(&a.reg),
        ModelsCommand::Add(a) => {
            let reg = Registry::new(&a.reg.registry);
            let e = reg.add(&a.artifact, a.version.as_deref(), &actor(a.by))?;
            if a.reg.json {
                println!("{}", serde_json::to_value(&e)?);
            } else {
                eprintln!(
                    "models: added {} as {} (candidate) in {}",
                    a.artifact.display(),
                    e.version,
                    a.reg.registry.display()
                );
            }
            Ok(())
        }
        ModelsCommand::Promote(a) => {
            let reg = Registry::new(&a.reg.registry);
            let mut who = actor(a.by);
            who.note = a.note;
            let h = reg.promote(&a.version, &who)?;
            report(&h, a.reg.json)
        }
        ModelsCommand::Rollback(a) => {
            let reg = Registry::new(&a.reg.registry);
            let mut who = actor(a.by);
            who.note = a.note;
            let h = reg.rollback(&who)?;
            report(&h, a.reg.json)
        }
    }
}

fn report(h: &HistoryEntry, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_value(h)?);
    } else {
        let action = match h.action {
            fieldpulse_models::registry::Action::Promote => "promoted",
            fieldpulse_models::registry::Action::Rollback => "rolled back to",
        };
        eprintln!(
            "models: {action} {} (champion before: {}) by {} at {}",
            h.version,
            h.from.as_deref().unwrap_or("none"),
            h.by,
            h.at
        );
    }
    Ok(())
}

/// Headline test metrics of a card: RUL RMSE and per classifier P / R / AP.
fn metrics_summary(card: &serde_json::Value) -> serde_json::Value {
    let test = &card["metrics"]["test"];
    let classifiers: Vec<serde_json::Value> = test["classifiers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    serde_json::json!({
                        "name": format!(
                            "{}_{}d",
                            c["mode"].as_str().unwrap_or("?"),
                            c["horizon_days"].as_f64().unwrap_or(f64::NAN)
                        ),
                        "precision": c["precision"],
                        "recall": c["recall"],
                        "average_precision": c["average_precision"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "rul_rmse_days": test["rul_rmse_days"],
        "classifiers": classifiers,
    })
}

fn list(args: &RegistryArg) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.registry.is_dir(),
        "no registry at {} (`fieldpulse models add --registry {} --artifact DIR` creates one)",
        args.registry.display(),
        args.registry.display()
    );
    let reg = Registry::new(&args.registry);
    let index = reg.load()?;
    let mut rows = Vec::new();
    for v in &index.versions {
        let card = reg.card(&v.version).unwrap_or(serde_json::Value::Null);
        rows.push(serde_json::json!({
            "version": v.version,
            "status": index.status(&v.version).as_str(),
            "model_version": v.model_version,
            "created_at": v.created_at,
            "added_at": v.added_at,
            "added_by": v.added_by,
            "data_fingerprint": v.data_fingerprint,
            "code_version": card.get("code_version"),
            "training_cadence_s": card["training_cadence"]["median_interval_s"],
            "metrics": metrics_summary(&card),
        }));
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "registry": args.registry,
                "champion": index.champion,
                "candidate": index.candidate,
                "versions": rows,
                "history": index.history,
            })
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no versions in {} (add one with `fieldpulse models add`)",
            args.registry.display()
        );
        return Ok(());
    }
    println!(
        "{:<14} {:<10} {:<20} {:<26} {:>8}  test AP (any)",
        "VERSION", "STATUS", "CREATED", "DATA FINGERPRINT", "RUL RMSE"
    );
    for r in &rows {
        let any: Vec<String> = r["metrics"]["classifiers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("any_")))
            .map(|c| {
                format!(
                    "{} {:.2}",
                    c["name"].as_str().unwrap_or("?").trim_start_matches("any_"),
                    c["average_precision"].as_f64().unwrap_or(f64::NAN)
                )
            })
            .collect();
        println!(
            "{:<14} {:<10} {:<20} {:<26} {:>8}  {}",
            r["version"].as_str().unwrap_or("?"),
            r["status"].as_str().unwrap_or("?"),
            r["created_at"].as_str().unwrap_or("–"),
            r["data_fingerprint"].as_str().unwrap_or("–"),
            r["metrics"]["rul_rmse_days"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2} d")),
            any.join(", ")
        );
    }
    Ok(())
}
