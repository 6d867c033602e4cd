//! A bug that panics while a job runs fails that deployment, with a reason, and the
//! worker goes on to the next one: no deployment stays `running` until its lease
//! lapses, and the engine does not lose a worker.

use std::sync::Arc;

use chima_engine::SourceAccess;
use chima_store::DeploymentState;
use serde_json::json;

use crate::harness::Rig;

/// A code host client with a bug: it panics when asked for credentials.
#[derive(Debug)]
struct Panicky;

#[async_trait::async_trait]
impl SourceAccess for Panicky {
    async fn clone_auth(&self, _repository: &str) -> Result<Option<String>, String> {
        panic!("a bug in the code host client");
    }
    async fn tarball_url(&self, _repository: &str, _sha: &str) -> Result<String, String> {
        panic!("a bug in the code host client");
    }
}

#[tokio::test]
async fn a_panicking_job_fails_its_deployment_and_the_worker_runs_the_next() {
    let mut rig = Rig::new("#!/bin/sh\necho deployed\n", &[]).await;
    let mut cfg = rig.config();
    // One worker: the next deployment can only run if that worker survived.
    cfg.workers = 1;
    cfg.github_api_url = "http://127.0.0.1:9".into();
    cfg.access = Some(Arc::new(Panicky));
    rig.start(cfg);
    // Cloned from "GitHub": the engine asks the code host client for credentials.
    let buggy = rig
        .queue(
            "panic-1",
            "main",
            json!({"provider": "shell", "clone_url": "http://127.0.0.1:9/example/app.git"}),
        )
        .await;
    let next = rig
        .queue("panic-2", "main", json!({"provider": "shell"}))
        .await;
    let failed = rig.wait_done(buggy.id).await;
    assert_eq!(failed.state, DeploymentState::Errored);
    let reason = failed.reason.unwrap_or_default();
    assert!(reason.contains("internal error"), "{reason}");
    let done = rig.wait_done(next.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
}
