//! Counters for `/metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Webhook counters. Jobs by state and the outbox backlog are read from the
/// store when `/metrics` is scraped, so every faseng process reports the same
/// shared truth.
#[derive(Debug, Default)]
pub struct Metrics {
    received: Mutex<BTreeMap<String, u64>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Each GitHub deployment status this process posted (one attempt each).
    pub statuses: chima_engine::metrics::Histogram,
}

impl Metrics {
    pub fn webhook_received(&self, event: &str) {
        bump(&self.received, event);
    }

    pub fn webhook_rejected(&self, reason: &str) {
        bump(&self.rejected, reason);
    }

    /// The counters and the status timings as Prometheus text lines.
    pub fn render_webhooks(&self, out: &mut String) {
        self.statuses.render(
            "faseng_status_seconds",
            "Time posting a GitHub deployment status took (each attempt).",
            out,
        );
        out.push_str("# HELP faseng_webhooks_received_total Webhooks accepted, by event.\n");
        out.push_str("# TYPE faseng_webhooks_received_total counter\n");
        for (event, n) in snapshot(&self.received) {
            out.push_str(&format!(
                "faseng_webhooks_received_total{{event=\"{}\"}} {n}\n",
                label(&event)
            ));
        }
        out.push_str("# HELP faseng_webhooks_rejected_total Webhooks refused, by reason.\n");
        out.push_str("# TYPE faseng_webhooks_rejected_total counter\n");
        for (reason, n) in snapshot(&self.rejected) {
            out.push_str(&format!(
                "faseng_webhooks_rejected_total{{reason=\"{}\"}} {n}\n",
                label(&reason)
            ));
        }
    }
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    // Event names come from a header: bound the label set.
    let key: String = key.chars().take(64).collect();
    if let Ok(mut m) = map.lock()
        && (m.len() < 200 || m.contains_key(&key))
    {
        *m.entry(key).or_default() += 1;
    }
}

fn snapshot(map: &Mutex<BTreeMap<String, u64>>) -> Vec<(String, u64)> {
    map.lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default()
}

/// Escapes a label value (Prometheus text format).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
