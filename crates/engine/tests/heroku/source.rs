//! The source Heroku downloads, through the whole engine: the public archive,
//! GitHub Enterprise's web host, the API tarball, and the short-lived link of
//! GitHub credentials.

use std::sync::Arc;
use std::time::Duration;

use chima_engine::{Engine, EngineConfig, SourceAccess};
use chima_store::{Deployment, DeploymentState, NewDeployment};
use chima_testkit::heroku::{Behaviour, FakeHeroku};
use serde_json::json;
use tokio::time::Instant;

use super::*;

// The source Heroku downloads, through the whole engine (app.json, store,
// worker) as faseng runs it. GitHub's source archives:
// https://docs.github.com/en/repositories/working-with-files/using-files/downloading-source-code-archives

const REPOSITORY: &str = "octo/example";

/// Queues a Heroku deployment of [`SHA`] on an engine configured by `edit`,
/// and returns it once it is over.
async fn deploy_through_the_engine(
    fake: &FakeHeroku,
    edit: impl FnOnce(&mut EngineConfig),
) -> Deployment {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = chima_store::open(&format!(
        "sqlite://{}",
        dir.path().join("store.db").display()
    ))
    .await
    .expect("SQLite store");
    let app_json = json!({"app": {
        "provider": "heroku",
        "repository": REPOSITORY,
        "heroku_name": APP,
        "environments": ["staging"],
    }});
    let apps = chima_config::Apps::parse(&app_json.to_string(), &dir.path().join("app.json"))
        .unwrap_or_else(|e| panic!("app.json: {e}"));
    let mut cfg = EngineConfig::new(Some(Arc::new(apps)), dir.path());
    cfg.workers = 1;
    cfg.workdir = dir.path().join("work");
    cfg.heroku = Some(api(fake));
    edit(&mut cfg);
    let engine = Engine::start(store.clone(), cfg);
    let queued = store
        .create_deployment(NewDeployment {
            source_key: "heroku-source-test".to_string(),
            requester: "alice".to_string(),
            app: "app".to_string(),
            environment: "staging".to_string(),
            repository: REPOSITORY.to_string(),
            git_ref: "main".to_string(),
            sha: Some(SHA.to_string()),
            task: "deploy".to_string(),
            hosts: None,
            provider: "heroku".to_string(),
            payload: json!({}),
            github_deployment_id: None,
            notify: vec![],
            timeout_secs: None,
        })
        .await
        .expect("queue the deployment")
        .deployment;
    let waited = Instant::now();
    let done = loop {
        let d = store
            .get_deployment(queued.id)
            .await
            .expect("read the deployment")
            .expect("the deployment exists");
        if d.state.is_terminal() {
            break d;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "still {}",
            d.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    engine.shutdown().await;
    done
}

#[tokio::test]
async fn without_github_credentials_heroku_fetches_the_public_archive() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done = deploy_through_the_engine(&fake, |_| {}).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://github.com/{REPOSITORY}/archive/{SHA}.tar.gz"
        )],
        "the archive on github.com, not the rate-limited API tarball"
    );
}

#[tokio::test]
async fn with_github_enterprise_the_archive_is_on_its_web_host() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done = deploy_through_the_engine(&fake, |cfg| {
        cfg.github_api_url = "https://ghe.example.com/api/v3".to_string();
        cfg.clone_base = "https://ghe.example.com/".to_string();
    })
    .await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://ghe.example.com/{REPOSITORY}/archive/{SHA}.tar.gz"
        )]
    );
}

#[tokio::test]
async fn a_clone_base_that_is_no_web_host_keeps_the_api_tarball() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done = deploy_through_the_engine(&fake, |cfg| {
        cfg.github_api_url = "https://ghe.example.com/api/v3/".to_string();
        cfg.clone_base = "ssh://git@ghe.example.com".to_string();
    })
    .await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://ghe.example.com/api/v3/repos/{REPOSITORY}/tarball/{SHA}"
        )]
    );
}

/// GitHub credentials: a short-lived link, as faseng's GitHub client gives.
#[derive(Debug)]
struct Credentials;

#[async_trait::async_trait]
impl SourceAccess for Credentials {
    async fn clone_auth(&self, _repository: &str) -> Result<Option<String>, String> {
        Ok(None)
    }

    async fn tarball_url(&self, repository: &str, sha: &str) -> Result<String, String> {
        Ok(format!(
            "https://codeload.github.com/{repository}/legacy.tar.gz/{sha}?token=SHORT"
        ))
    }
}

#[tokio::test]
async fn with_github_credentials_heroku_gets_the_short_lived_link() {
    let fake = FakeHeroku::start(Behaviour::succeeds()).await;
    let done =
        deploy_through_the_engine(&fake, |cfg| cfg.access = Some(Arc::new(Credentials))).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        fake.source_urls(),
        [format!(
            "https://codeload.github.com/{REPOSITORY}/legacy.tar.gz/{SHA}?token=SHORT"
        )]
    );
}
