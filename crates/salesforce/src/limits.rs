//! `Sforce-Limit-Info` parsing and the daily API budget guard (reference §4.1, §3.4).

/// Daily API usage as last reported by Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ApiUsage {
    /// Calls used in the rolling 24 h window.
    pub used: u64,
    /// The org's allocation.
    pub max: u64,
}

impl ApiUsage {
    /// Parses `api-usage=25/5000; per-app-api-usage=17/250(appName=x)`; `None` without `api-usage=`.
    pub fn parse(header: &str) -> Option<Self> {
        let item = header
            .split(';')
            .map(str::trim)
            .find_map(|p| p.strip_prefix("api-usage="))?;
        let (used, max) = item.split_once('/')?;
        Some(ApiUsage {
            used: used.trim().parse().ok()?,
            max: max.trim().parse().ok()?,
        })
    }

    /// Calls left today.
    pub fn remaining(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }

    /// Used share, 0.0–1.0.
    pub fn fraction_used(&self) -> f64 {
        if self.max == 0 {
            1.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ApiUsage;

    #[test]
    fn limit_header_parses_with_extra_items() {
        let u = ApiUsage::parse("api-usage=25/5000; per-app-api-usage=17/250(appName=fieldpulse)")
            .unwrap();
        assert_eq!((u.used, u.max, u.remaining()), (25, 5000, 4975));
        assert_eq!(
            ApiUsage::parse("api-usage=10018/100000"),
            Some(ApiUsage {
                used: 10018,
                max: 100_000
            })
        );
        assert_eq!(ApiUsage::parse("per-app-api-usage=1/2"), None);
    }
}
