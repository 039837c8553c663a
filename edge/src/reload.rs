//! Configuration reload without a restart (SIGHUP): the gateway token and the topic mappings.
//!
//! [`LiveSettings`] holds the parts of the configuration a running agent takes over: the
//! forwarder reads the token per request, the writer reads the subscriptions per group commit,
//! and the MQTT task subscribes to added topic filters and unsubscribes from removed ones. Nothing
//! in flight is dropped: a message already received is decoded with the mappings in force when
//! its group is committed; one on a topic no mapping matches any more is rejected and counted
//! (`unmatched_topic`), as it would be at startup. Every other key needs a restart; a reload names
//! the ones that changed and keeps their running values.

use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use crate::config::{EdgeConfig, Secret, Subscription};

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The gateway token changed (used from the next request on).
    pub token_changed: bool,
    /// The subscriptions (topic patterns, formats, sensors) changed.
    pub subscriptions_changed: bool,
    /// Sections that changed but need a restart to take effect (kept as running).
    pub needs_restart: Vec<&'static str>,
}

/// The reloadable settings of a running agent (see the module docs).
#[derive(Debug)]
pub struct LiveSettings {
    token: RwLock<Option<Secret>>,
    subscriptions: RwLock<Arc<Vec<Subscription>>>,
    filters: watch::Sender<Vec<String>>,
    /// The configuration the agent started with, updated by reloads (for comparisons).
    current: RwLock<EdgeConfig>,
}

impl LiveSettings {
    /// The settings of `config`.
    pub fn new(config: &EdgeConfig) -> Arc<Self> {
        let (filters, _) = watch::channel(filters_of(&config.subscriptions));
        Arc::new(Self {
            token: RwLock::new(config.forward.token.clone()),
            subscriptions: RwLock::new(Arc::new(config.subscriptions.clone())),
            filters,
            current: RwLock::new(config.clone()),
        })
    }

    /// The gateway token for the next request.
    pub fn token(&self) -> Option<Secret> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The topic mappings in force.
    pub fn subscriptions(&self) -> Arc<Vec<Subscription>> {
        Arc::clone(
            &self
                .subscriptions
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The MQTT topic filters to be subscribed to; changes on reload.
    pub fn filters(&self) -> watch::Receiver<Vec<String>> {
        self.filters.subscribe()
    }

    /// Takes over the token and the subscriptions of `new`; reports what changed and which
    /// other sections differ from the running configuration (they need a restart).
    pub fn apply(&self, new: &EdgeConfig) -> ReloadReport {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut report = ReloadReport {
            token_changed: current.forward.token != new.forward.token,
            subscriptions_changed: format!("{:?}", current.subscriptions)
                != format!("{:?}", new.subscriptions),
            needs_restart: restart_only_changes(&current, new),
        };
        if report.token_changed {
            *self.token.write().unwrap_or_else(PoisonError::into_inner) = new.forward.token.clone();
            current.forward.token = new.forward.token.clone();
        }
        if report.subscriptions_changed {
            *self
                .subscriptions
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(new.subscriptions.clone());
            current.subscriptions = new.subscriptions.clone();
            self.filters.send_replace(filters_of(&new.subscriptions));
        }
        report.needs_restart.sort_unstable();
        report
    }
}

/// The distinct MQTT filters of the subscriptions, in order.
fn filters_of(subscriptions: &[Subscription]) -> Vec<String> {
    let mut filters: Vec<String> = Vec::new();
    for sub in subscriptions {
        let filter = sub.pattern.filter().to_string();
        if !filters.contains(&filter) {
            filters.push(filter);
        }
    }
    filters
}

/// Sections other than the token and the subscriptions that differ.
fn restart_only_changes(old: &EdgeConfig, new: &EdgeConfig) -> Vec<&'static str> {
    let mut forward_old = old.forward.clone();
    let mut forward_new = new.forward.clone();
    forward_old.token = None;
    forward_new.token = None;
    let sections: [(&'static str, String, String); 8] = [
        ("gateway_id", old.gateway_id.clone(), new.gateway_id.clone()),
        ("mqtt", format!("{:?}", old.mqtt), format!("{:?}", new.mqtt)),
        (
            "validation",
            format!("{:?}", old.validation),
            format!("{:?}", new.validation),
        ),
        (
            "spool",
            format!("{:?}", old.spool),
            format!("{:?}", new.spool),
        ),
        (
            "forward",
            format!("{forward_old:?}"),
            format!("{forward_new:?}"),
        ),
        (
            "http",
            format!("{:?}", old.http_listen),
            format!("{:?}", new.http_listen),
        ),
        (
            "health",
            format!("{:?}", old.health),
            format!("{:?}", new.health),
        ),
        (
            "shutdown",
            format!("{:?}", old.shutdown_grace),
            format!("{:?}", new.shutdown_grace),
        ),
    ];
    sections
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, _, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra_sub: &str, token: &str, max_bytes: u64) -> EdgeConfig {
        let dir = std::env::temp_dir();
        let text = format!(
            r#"gateway_id = "gw-1"
[[subscriptions]]
pattern = "plant/{{site}}/{{asset}}/{{sensor}}"
{extra_sub}
[spool]
dir = "{}/fp-reload-test"
max_bytes = {max_bytes}
[forward]
url = "http://127.0.0.1:1/v1/batches"
token_env = "FP_RELOAD_TEST_{token}"
"#,
            dir.display()
        );
        std::env::set_var(format!("FP_RELOAD_TEST_{token}"), token);
        EdgeConfig::from_toml_str(&text, "edge.toml").unwrap()
    }

    #[test]
    fn a_reload_takes_over_token_and_mappings_and_names_what_needs_a_restart() {
        let live = LiveSettings::new(&config("", "one", 1 << 20));
        let mut filters = live.filters();
        assert_eq!(
            *filters.borrow_and_update(),
            vec!["plant/+/+/+".to_string()]
        );
        let same = live.apply(&config("", "one", 1 << 20));
        assert_eq!(same, ReloadReport::default());
        assert!(!filters.has_changed().unwrap());

        let extra = "[[subscriptions]]\npattern = \"line/{asset}\"\nsensor = \"temp\"\n";
        let report = live.apply(&config(extra, "two", 2 << 20));
        assert!(report.token_changed && report.subscriptions_changed);
        assert_eq!(report.needs_restart, vec!["spool"]);
        assert_eq!(live.token().unwrap().expose(), "two");
        assert_eq!(live.subscriptions().len(), 2);
        assert!(filters.has_changed().unwrap());
        assert_eq!(
            *filters.borrow_and_update(),
            vec!["plant/+/+/+".to_string(), "line/+".to_string()]
        );
    }
}
