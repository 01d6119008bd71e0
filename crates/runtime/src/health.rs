//! Readiness of the parts a process runs besides its metadata store (the Kafka consumer, for
//! one). Each part reports its state here; `/readyz` shows every part in its body, and answers
//! `503` only for the parts the process's role cannot work without.

use std::{collections::BTreeMap, sync::Mutex};

use serde::Serialize;

/// One part's last reported state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// `ok`, or what is wrong (`unreachable`, `connecting`).
    pub state: String,
    /// Whether the process is not ready while this part is not `ok`.
    #[serde(skip)]
    pub required: bool,
}

#[derive(Debug, Default)]
pub struct Health {
    checks: Mutex<BTreeMap<&'static str, Check>>,
}

impl Health {
    pub fn report(&self, part: &'static str, state: &str, required: bool) {
        let check = Check {
            state: state.to_owned(),
            required,
        };
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(part, check);
    }

    /// Every part's state, and whether all the required ones are `ok`.
    pub fn snapshot(&self) -> (BTreeMap<&'static str, String>, bool) {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let ready = checks.values().all(|c| !c.required || c.state == "ok");
        let states = checks.iter().map(|(k, c)| (*k, c.state.clone())).collect();
        (states, ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_required_parts_decide() {
        let health = Health::default();
        assert!(health.snapshot().1);
        health.report("kafka", "unreachable", false);
        assert!(health.snapshot().1, "shown, not required");
        health.report("kafka", "unreachable", true);
        assert!(!health.snapshot().1);
        health.report("kafka", "ok", true);
        assert_eq!(
            health.snapshot(),
            (BTreeMap::from([("kafka", "ok".into())]), true)
        );
    }
}
