//! Histograms of queue wait and run time, kept by the engine of this process
//! and rendered by faseng's `/metrics` in the Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds in seconds: from a 10 ms pickup to an hour-long deploy.
const BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
    3600.0,
];

/// A cumulative Prometheus histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Counts one observation of `seconds` (negative or not finite counts as 0).
    pub fn observe(&self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            if seconds <= *bound {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Appends the histogram in the text format.
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            out.push_str(&format!(
                "{name}_bucket{{le=\"{bound}\"}} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!(
            "{name}_sum {}\n",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!("{name}_count {count}\n"));
    }
}

/// What the engine measures.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// From queued to claimed.
    pub queue_wait: Histogram,
    /// From claimed to finished.
    pub run_time: Histogram,
    /// Fetching a job's commit into its repository's mirror (only jobs that
    /// fetched: a commit the mirror holds costs no fetch).
    pub fetch: Histogram,
    /// Making a job's tree from the mirror.
    pub checkout: Histogram,
    /// The provider: its setup steps and its command, or its Heroku build.
    pub provider: Histogram,
    /// Deployments this process ran to an end, by final state.
    finished: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl EngineMetrics {
    /// Counts a deployment this process ended in `state`.
    pub fn finished(&self, state: chima_store::DeploymentState) {
        if let Ok(mut m) = self.finished.lock() {
            *m.entry(state.as_str()).or_default() += 1;
        }
    }

    /// Appends the engine's metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP faseng_deployments_finished_total Deployments this process ran to an end, by state.\n",
        );
        out.push_str("# TYPE faseng_deployments_finished_total counter\n");
        let finished = self.finished.lock().map(|m| m.clone()).unwrap_or_default();
        for state in chima_store::DeploymentState::ALL
            .iter()
            .filter(|s| s.is_terminal())
        {
            let n = finished.get(state.as_str()).copied().unwrap_or(0);
            out.push_str(&format!(
                "faseng_deployments_finished_total{{state=\"{state}\"}} {n}\n"
            ));
        }
        self.queue_wait.render(
            "faseng_queue_wait_seconds",
            "Time deployments waited from queued to claimed.",
            out,
        );
        self.run_time.render(
            "faseng_run_seconds",
            "Time deployments ran, from claimed to finished.",
            out,
        );
        self.fetch.render(
            "faseng_fetch_seconds",
            "Time fetching a deployment's commit into its repository's mirror (deployments whose commit the mirror lacked).",
            out,
        );
        self.checkout.render(
            "faseng_checkout_seconds",
            "Time making a deployment's tree from its repository's mirror.",
            out,
        );
        self.provider.render(
            "faseng_provider_seconds",
            "Time a deployment's provider ran (setup steps and command, or Heroku build).",
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets() {
        let h = Histogram::default();
        h.observe(0.02);
        h.observe(3.0);
        let mut out = String::new();
        h.render("x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.01\"} 0\n"));
        assert!(out.contains("x_bucket{le=\"0.025\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"5\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_count 2\n"));
        assert!(out.contains("x_sum 3.02\n"));
    }
}
