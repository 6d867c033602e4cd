//! Headless Chromium watching a running deployment's log grow, and the index
//! listing it (screenshots for the docs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chima_store::{DeploymentState, NewDeployment};
use serde_json::json;

use crate::harness::{Faseng, get};

use super::*;

/// Debian's `chromium`, or a clear failure saying how to install it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the browser test needs headless Chromium, which is not installed: \
         run `apt-get update && apt-get install -y chromium` (Debian's package; .ci/run does this)"
    );
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout.
async fn run_chromium(profile: &Path, extra: &[String], url: &str) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): apt-get install chromium"));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("chromium did not finish within 120s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits until deployment `id` has logged a line containing `text`.
async fn wait_for_line(f: &Faseng, id: i64, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f
        .store
        .read_logs(id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .any(|l| l.line.contains(text))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} never logged {text:?}: {}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Takes a screenshot; copies it to docs/screenshots/ when UPDATE_SCREENSHOTS=1.
async fn screenshot(profile: &Path, tmp: &Path, name: &str, url: &str) {
    let shot = tmp.join(name);
    run_chromium(
        profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,800".to_string(),
            "--virtual-time-budget=3000".to_string(),
        ],
        url,
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {name}: {e}"));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{name}: {} bytes",
        png.len()
    );
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
    }
}

/// A repository whose deploy script waits, in production, for `go` to exist
/// and, for carol, for `hold` to exist.
fn deploy_repo(dir: &Path, go: &Path, hold: &Path, marker: &str) -> (PathBuf, String) {
    let script = format!(
        r#"#!/bin/sh
echo "Deploying $DEPLOY_APP $DEPLOY_REF ($DEPLOY_SHA) to $DEPLOY_ENV for $DEPLOY_USER"
echo "Fetching release artifacts... done"
echo "Running database migrations: 3 pending"
echo "  20260101_add_deploy_locks ... ok"
echo "  20260102_index_deployments ... ok"
echo "  20260103_drop_legacy_jobs ... ok"
echo "warning: asset cache is cold, first requests will be slower" >&2
if [ "$DEPLOY_ENV" = production ]; then
  echo "Waiting for the load balancer to drain fe1..."
  i=0
  while [ ! -e '{go}' ]; do
    sleep 0.1
    i=$((i+1))
    if [ $i -gt 1200 ]; then echo "gave up waiting" >&2; exit 3; fi
  done
  echo "{marker}"
fi
if [ "$DEPLOY_USER" = carol ]; then
  echo "Waiting for the release window..."
  i=0
  while [ ! -e '{hold}' ]; do
    sleep 0.1
    i=$((i+1))
    if [ $i -gt 1200 ]; then echo "gave up waiting" >&2; exit 3; fi
  done
fi
echo "Restarting app servers: fe1 fe2 fe3"
echo "Health check: 200 OK"
echo "Deployed."
"#,
        go = go.display(),
        hold = hold.display()
    );
    crate::harness::repo(dir, &script)
}

#[tokio::test]
async fn chromium_sees_log_lines_written_after_the_page_loaded_and_the_index_lists_it() {
    let chromium_path = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let go = tmp.path().join("go");
    let hold = tmp.path().join("hold");
    let marker = format!(
        "after-page-load-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() % 1_000_000_007
    );
    let (repo, sha) = deploy_repo(tmp.path(), &go, &hold, &marker);
    let apps = json!({
        "hubot": {"provider": "shell", "repository": "acme/hubot", "clone_url": repo.display().to_string(), "environments": ["production", "staging"]},
        "api": {"provider": "shell", "repository": "acme/api", "clone_url": repo.display().to_string(), "environments": ["production"]},
    });
    let f = Faseng::start(&apps.to_string(), None).await;
    let mk = |env: &str, who: &str| NewDeployment {
        sha: Some(sha.clone()),
        ..new_deployment("hubot", env, who, "main")
    };

    // Something on the index besides the deployment under test.
    let earlier = queued(&f, mk("staging", "hubot-ci")).await;
    assert_eq!(
        f.wait_done(earlier).await.state,
        DeploymentState::Succeeded,
        "{}",
        f.log()
    );
    f.store
        .lock("api", "production", "alice", Some("quarterly audit"), None)
        .await
        .unwrap();

    let id = queued(&f, mk("production", "atmos")).await;
    // Running, and waiting for the go file.
    wait_for_line(&f, id, "drain fe1").await;
    let (_, page) = get(&page_url(&f, id)).await;
    assert!(!page.contains(&marker), "not yet written");

    // The browser loads the page and keeps it open until the page closes its
    // event stream (virtual time does not run while a request is pending).
    let profile = tmp.path().join("profile");
    let url = page_url(&f, id);
    let browser = tokio::spawn({
        let (profile, url) = (profile.clone(), url.clone());
        async move {
            run_chromium(
                &profile,
                &["--virtual-time-budget=60000".into(), "--dump-dom".into()],
                &url,
            )
            .await
        }
    });
    // The page has loaded and its script has opened the stream: only now the
    // line is written.
    wait_for_log(&f, &format!("live log stream opened deployment={id} "), 60).await;
    std::fs::write(&go, "go").unwrap();
    assert_eq!(
        f.wait_done(id).await.state,
        DeploymentState::Succeeded,
        "{}",
        f.log()
    );
    let dom = browser.await.unwrap();

    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("{chromium_path:?} did not show {marker}:\n{dom}"));
    let span = dom[..at].rfind("<span").expect("the line is in a span");
    assert!(
        dom[span..at].contains("class=\"live\""),
        "the line was appended by the page's script: {}",
        &dom[span..at + marker.len()]
    );
    assert!(
        dom.contains("class=\"state s-succeeded\">succeeded</span>"),
        "the state was updated live:\n{dom}"
    );
    assert!(dom.contains("Finished: the log is complete."), "{dom}");
    assert!(dom.contains("Deployed.\n"), "{dom}");

    // A deployment that runs while the index is looked at.
    let held = queued(&f, mk("staging", "carol")).await;
    wait_for_line(&f, held, "release window").await;

    let index = run_chromium(
        &profile,
        &["--virtual-time-budget=3000".into(), "--dump-dom".into()],
        &index_url(&f),
    )
    .await;
    assert!(
        index.contains(&format!(
            "href=\"deployments/{id}?sig={}\">#{id}</a>",
            signer().sign(id)
        )),
        "{index}"
    );
    assert!(
        index.contains("data-app=\"hubot\" data-env=\"production\""),
        "{index}"
    );
    assert!(index.contains("by alice: quarterly audit"), "{index}");
    let staging = &index[index
        .find("data-app=\"hubot\" data-env=\"staging\"")
        .expect("a staging row")..];
    assert!(
        staging.contains(&format!(
            "s-running\">running</span> <a href=\"deployments/{held}?sig="
        )),
        "{staging}"
    );

    screenshot(&profile, tmp.path(), "deployment.png", &url).await;
    screenshot(&profile, tmp.path(), "index.png", &index_url(&f)).await;
    std::fs::write(&hold, "go").unwrap();
    assert_eq!(f.wait_done(held).await.state, DeploymentState::Succeeded);
}
