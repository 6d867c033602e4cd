//! chima in GitHub mode against a fake GitHub that fails the way GitHub can: a
//! deployment created and then answered 502, a GitHub that keeps failing, and CI
//! results spread over several pages.

use std::path::{Path, PathBuf};

use chima_testkit::github::{Endpoint, FakeCheckRun, FakeGitHub, FakeStatus, Reply};

const KEY: &str = "chima-signing-key-for-fidelity-tests";

fn apps(dir: &Path) -> PathBuf {
    let path = dir.join("app.json");
    std::fs::write(
        &path,
        r#"{"project-x": {"provider": "fabric", "repository": "example/project-x",
            "environments": ["production", "edge"], "aliases": {"prod": "production"},
            "required_contexts": ["ci/build"]}}"#,
    )
    .unwrap();
    path
}

/// `chima run <line>` against `gh` (github.rs's runner); exit code and output.
async fn chima(gh: &FakeGitHub, apps: &Path, line: &str, env: &[(&str, &str)]) -> (i32, String) {
    crate::github::chima_with(gh, apps, line, env).await
}

async fn fake() -> FakeGitHub {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/project-x", "main");
    gh.set_commit_statuses(
        "example/project-x",
        "feature",
        vec![FakeStatus::new("ci/build", "success")],
    );
    gh
}

fn creates(gh: &FakeGitHub) -> usize {
    gh.requests_to("POST", "/repos/example/project-x/deployments")
        .len()
}

/// GitHub created the deployment, then answered 502: chima finds it by its signed
/// request's nonce and reports it, and GitHub holds exactly one.
#[tokio::test]
async fn a_502_after_creation_yields_one_deployment_and_says_it_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    gh.create_then_fail(502);
    let (code, text) = chima(
        &gh,
        &apps,
        "chima deploy project-x/feature to prod",
        &[("CHIMA_SIGNING_KEY", KEY)],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let created = gh.deployments("example/project-x");
    assert_eq!(created.len(), 1, "exactly one deployment: {created:#?}");
    let d = &created[0];
    assert!(
        text.contains(&format!(
            "Created GitHub deployment #{} of project-x/feature to production (commit {}).",
            d.id,
            &d.sha[..7]
        )),
        "{text}"
    );
    assert!(!text.contains("Nothing was deployed"), "{text}");
    assert_eq!(creates(&gh), 1, "the create was not sent again");
    // The deployment found is the one carrying this request's signed nonce.
    let (payload, _) = chima_payload::DeploymentPayload::read(&d.body["payload"]);
    let signed = payload.chima.expect("signed");
    assert!(!signed.request.nonce.is_empty());
}

/// Without a signing key there is no nonce: the deployment with this exact payload,
/// just made, is the one adopted.
#[tokio::test]
async fn without_a_key_a_502_after_creation_still_yields_one_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    gh.create_then_fail(502);
    let (code, text) = chima(&gh, &apps, "chima deploy project-x/feature to edge", &[]).await;
    assert_eq!(code, 0, "{text}");
    let created = gh.deployments("example/project-x");
    assert_eq!(created.len(), 1, "{created:#?}");
    assert!(
        text.contains(&format!("Created GitHub deployment #{}", created[0].id)),
        "{text}"
    );
    assert_eq!(creates(&gh), 1);
}

/// GitHub fails before creating anything, twice: chima tries once more only, then
/// says that GitHub is failing and that nothing was deployed.
#[tokio::test]
async fn when_github_fails_twice_chima_says_it_is_failing_and_nothing_was_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    gh.script(Endpoint::CreateDeployment, Reply::Status(502), u32::MAX);
    let (code, text) = chima(
        &gh,
        &apps,
        "chima deploy project-x/feature to prod",
        &[("CHIMA_SIGNING_KEY", KEY)],
    )
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("GitHub is failing"), "{text}");
    assert!(text.contains("Nothing was deployed"), "{text}");
    assert!(text.contains("502"), "{text}");
    assert!(gh.deployments("example/project-x").is_empty());
    assert_eq!(creates(&gh), 2, "sent once more, no more");
}

/// `status` shows every commit status and check run, not only GitHub's first page.
#[tokio::test]
async fn status_lists_statuses_and_check_runs_from_page_2() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let mut statuses: Vec<FakeStatus> = (0..104)
        .map(|i| FakeStatus::new(&format!("ci/lint-{i:03}"), "success"))
        .collect();
    statuses.push(FakeStatus::new("ci/on-page-2", "failure"));
    gh.set_commit_statuses("example/project-x", "main", statuses);
    let mut runs: Vec<FakeCheckRun> = (0..102)
        .map(|i| FakeCheckRun::new(&format!("job-{i:03}"), "completed", Some("success")))
        .collect();
    runs.push(FakeCheckRun::new("e2e-on-page-2", "in_progress", None));
    gh.set_check_runs("example/project-x", "main", runs);

    let (code, text) = chima(&gh, &apps, "chima status project-x", &[]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("project-x/main ("), "{text}");
    assert!(text.contains(") is failure:"), "{text}");
    assert!(
        text.contains("failure ci/on-page-2 https://ci.example.com/ci/on-page-2"),
        "{text}"
    );
    assert!(text.contains("in_progress e2e-on-page-2"), "{text}");
    assert_eq!(text.matches("success ci/lint-").count(), 104, "{text}");
    assert_eq!(text.matches("success job-").count(), 102, "{text}");
}
