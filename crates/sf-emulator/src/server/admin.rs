//! Test and operator hooks under `/__emulator/` (served only on loopback
//! unless configured): faults, session expiry, limits, fixtures, synthetic
//! Work Orders, record inspection, the request log, job failure, the clock.

use axum::http::Method;
use serde_json::{json, Value as Json};

use super::{bulk, Emulator, Reply};
use crate::config::FaultConfig;
use crate::error::ApiErr;
use crate::fixture::Fixture;

fn bad(message: String) -> Reply {
    Reply::error(400, ApiErr::new("INVALID_API_INPUT", message))
}

pub(crate) fn handle(emu: &Emulator, method: &Method, path: &str, body: &[u8]) -> Reply {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let json_body = || serde_json::from_slice::<Json>(if body.is_empty() { b"{}" } else { body });
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["health"]) => Reply::json(200, &json!({"ok": true})),
        ("GET", ["faults"]) => Reply::json(
            200,
            &serde_json::to_value(&super::lock(&emu.shared.faults).config).unwrap_or(Json::Null),
        ),
        ("POST", ["faults"]) => match serde_json::from_slice::<FaultConfig>(body) {
            Ok(faults) => {
                emu.set_faults(faults);
                Reply::empty(204)
            }
            Err(err) => bad(format!("fault config: {err}")),
        },
        ("POST", ["sessions", "expire"]) => {
            emu.expire_sessions();
            Reply::empty(204)
        }
        ("POST", ["limits"]) => match json_body() {
            Ok(v) => {
                let (used, max) = emu.api_usage();
                emu.set_api_usage(
                    v.get("used").and_then(Json::as_u64).unwrap_or(used),
                    v.get("max").and_then(Json::as_u64).unwrap_or(max),
                );
                Reply::empty(204)
            }
            Err(err) => bad(format!("limits: {err}")),
        },
        ("POST", ["seed"]) => match serde_json::from_slice::<Fixture>(body) {
            Ok(fixture) => match emu.seed(&fixture) {
                Ok(report) => Reply::json(200, &serde_json::to_value(report).unwrap_or(Json::Null)),
                Err(err) => bad(format!("{err}")),
            },
            Err(err) => bad(format!("fixture: {err}")),
        },
        ("POST", ["seed", "work-orders"]) => match json_body() {
            Ok(v) => {
                let count = v.get("count").and_then(Json::as_u64).unwrap_or(0) as usize;
                let seed = v.get("seed").and_then(Json::as_u64).unwrap_or(1);
                match emu.seed_synthetic_work_orders(count, seed) {
                    Ok(report) => {
                        Reply::json(200, &serde_json::to_value(report).unwrap_or(Json::Null))
                    }
                    Err(err) => bad(format!("{err}")),
                }
            }
            Err(err) => bad(format!("seed: {err}")),
        },
        ("GET", ["records", object]) => Reply::json(200, &Json::Array(emu.records(object))),
        ("GET", ["events"]) => Reply::json(200, &Json::Array(emu.published_events())),
        ("GET", ["requests"]) => Reply::json(
            200,
            &serde_json::to_value(emu.request_log()).unwrap_or(Json::Null),
        ),
        ("POST", ["jobs", job_id, "fail"]) => {
            let now = emu.shared.clock.now_ms();
            if bulk::fail(&mut emu.org(), job_id, now) {
                Reply::empty(204)
            } else {
                Reply::not_found()
            }
        }
        ("POST", ["clock", "advance"]) => match json_body() {
            Ok(v) => {
                emu.shared
                    .clock
                    .advance(v.get("ms").and_then(Json::as_i64).unwrap_or(0));
                Reply::empty(204)
            }
            Err(err) => bad(format!("clock: {err}")),
        },
        _ => Reply::not_found(),
    }
}
