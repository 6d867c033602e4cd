//! What a deploy cannot reach: the GitHub token goes only to GitHub, a `.gitconfig`
//! planted where faseng's git would once have read it changes nothing, and with
//! `FASENG_RUN_AS` the provider runs as an unprivileged user who cannot read
//! faseng's environment.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chima_store::DeploymentState;
use chima_testkit::github::{FakeGitHub, deployment_event, send_webhook};
use serde_json::json;

use crate::harness::{Faseng, SECRET, repo};

/// Sends a `deployment` webhook for `example/app` at `sha` to `env`; faseng's id.
async fn deploy(f: &Faseng, gh_id: i64, sha: &str, env: &str) -> i64 {
    let body = deployment_event(
        "example/app",
        "",
        gh_id,
        sha,
        "main",
        env,
        "deploy",
        json!({}),
    );
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        &format!("iso-{gh_id}"),
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    f.store.find_by_github_id(gh_id).await.unwrap().unwrap().id
}

/// A plain HTTP server on 127.0.0.1 that records the `Authorization` header of
/// every request and answers 404: a clone host that is not GitHub.
async fn recorder() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16 * 1024];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let auth = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .map(|l| l.to_string());
            record.lock().unwrap().push(auth);
            let _ = sock
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_github_token_goes_to_github_only() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let (elsewhere, seen) = recorder().await;
    // Two apps: one cloned from another host, one from GitHub itself (the fake).
    let apps = json!({
        "app": {"provider": "shell", "repository": "example/app", "environments": ["staging"],
                "clone_url": format!("{elsewhere}/example/app.git")},
        "gh": {"provider": "shell", "repository": "example/gh", "environments": ["staging"],
               "clone_url": format!("{}/example/gh.git", gh.url)},
    });
    let f = Faseng::start(&apps.to_string(), Some((&gh.url, &gh.token()))).await;
    let (_, sha) = repo(f.dir.path(), "#!/bin/sh\necho never\n");
    let id = deploy(&f, 71, &sha, "staging").await;
    let d = f.wait_done(id).await;
    assert_eq!(d.state, DeploymentState::Errored, "{:?}", d.reason);
    let reason = d.reason.unwrap_or_default();
    assert!(reason.contains("checkout failed"), "{reason}");
    assert!(!reason.contains(&gh.token()), "{reason}");
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "git never asked the other host");
    assert!(
        requests.iter().all(Option::is_none),
        "the token was offered to another host: {requests:?}"
    );

    // The control: a clone from GitHub's own host carries the credentials.
    gh.add_repo("example/gh", "main");
    let body = deployment_event(
        "example/gh",
        "",
        72,
        &sha,
        "main",
        "staging",
        "deploy",
        json!({}),
    );
    let (status, _) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        "iso-72",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201);
    let id = f.store.find_by_github_id(72).await.unwrap().unwrap().id;
    f.wait_done(id).await;
    let to_github: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/example/gh.git"))
        .collect();
    assert!(!to_github.is_empty(), "git never asked GitHub");
    assert!(
        to_github.iter().any(|r| r
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v.starts_with("Basic "))),
        "{to_github:#?}"
    );
}

#[tokio::test]
async fn a_gitconfig_planted_in_the_shared_temp_folder_changes_nothing() {
    let planted = tempfile::tempdir().unwrap();
    let marker = planted.path().join("pwned");
    let hook = planted.path().join("hooks/post-checkout");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", marker.display())).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let gitconfig = format!(
        "[core]\n\thooksPath = {}\n\tfsmonitor = touch {}\n",
        planted.path().join("hooks").display(),
        marker.display()
    );
    std::fs::write(planted.path().join(".gitconfig"), &gitconfig).unwrap();
    std::fs::create_dir_all(planted.path().join("git")).unwrap();
    std::fs::write(planted.path().join("git/config"), &gitconfig).unwrap();
    // The control: plain git with that HOME runs the planted hook.
    let control = tempfile::tempdir().unwrap();
    let (src, _) = repo(control.path(), "#!/bin/sh\necho control\n");
    let _ = std::process::Command::new("git")
        .args(["-c", "protocol.file.allow=always", "clone", "-q"])
        .arg(&src)
        .arg(control.path().join("clone"))
        .env("HOME", planted.path())
        .env("XDG_CONFIG_HOME", planted.path())
        .status()
        .unwrap();
    assert!(
        marker.exists(),
        "the control did not run the planted hook; the test proves nothing"
    );
    std::fs::remove_file(&marker).unwrap();

    let apps = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]}}"#;
    let home = planted.path().to_str().unwrap();
    let f = Faseng::start_with(
        apps,
        None,
        &[("HOME", home), ("XDG_CONFIG_HOME", home), ("TMPDIR", home)],
    )
    .await;
    let (_, sha) = repo(f.dir.path(), "#!/bin/sh\necho deployed cleanly\n");
    let id = deploy(&f, 81, &sha, "staging").await;
    let d = f.wait_done(id).await;
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}", d.reason);
    assert!(!marker.exists(), "faseng's git read the planted config");
}

#[tokio::test]
async fn providers_run_as_faseng_run_as_and_cannot_read_fasengs_environment() {
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1)
        != 0
    {
        panic!("this test starts faseng as root to switch users; run the suite as root (CI does)");
    }
    let apps = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]}}"#;
    let f = Faseng::start_with(apps, None, &[("FASENG_RUN_AS", "nobody")]).await;
    // nobody must be able to pass through the test's folders to its job folder.
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let (_, sha) = repo(
        f.dir.path(),
        "#!/bin/sh\necho \"uid=$(id -u) home=$HOME\"\ncat /proc/$PPID/environ >/dev/null 2>&1 && echo READ-FASENG-ENV || echo cannot-read-faseng-env\ntouch ./mine && echo wrote-in-checkout\n",
    );
    let id = deploy(&f, 91, &sha, "staging").await;
    let d = f.wait_done(id).await;
    assert_eq!(
        d.state,
        DeploymentState::Succeeded,
        "{:?}\n{}",
        d.reason,
        f.log()
    );
    let log: Vec<String> = f
        .store
        .read_logs(id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    let text = log.join("\n");
    assert!(text.contains("uid=65534"), "{text}");
    assert!(text.contains("cannot-read-faseng-env"), "{text}");
    assert!(text.contains("wrote-in-checkout"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// faseng makes itself non-dumpable, and so does the guard (the provider's parent,
/// `faseng-guard`, which it must not ptrace or read): a provider running as faseng's
/// own (non-root) user can read the environment of any other process of that user,
/// but not faseng's, where the secrets are, nor its guard's. faseng is started here
/// as `nobody` (setpriv), as a non-root install runs it.
#[tokio::test]
async fn a_provider_of_the_same_user_cannot_read_fasengs_environment() {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1)
        != 0
    {
        panic!(
            "this test starts faseng as `nobody` with setpriv, which needs root; run the suite as root (CI does)"
        );
    }
    let db = crate::harness::Database::create().await;
    let dir = tempfile::tempdir().unwrap();
    // Writable for nobody, sticky as /tmp is (faseng refuses a work folder under a
    // folder anyone may replace things in).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let apps = dir.path().join("app.json");
    std::fs::write(
        &apps,
        r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]}}"#,
    )
    .unwrap();
    let (_, sha) = repo(
        dir.path(),
        "#!/bin/sh\necho \"uid=$(id -u)\"\nsleep 30 &\nsib=$!\ncat /proc/$sib/environ >/dev/null 2>&1 && echo can-read-a-sibling\ncat /proc/$PPID/environ >/dev/null 2>&1 && echo READ-FASENG-ENV || echo cannot-read-faseng-env\necho \"parent=$(cut -d' ' -f2 /proc/$PPID/stat)\"\nfaseng=$(cut -d' ' -f4 /proc/$PPID/stat)\ncat /proc/$faseng/environ >/dev/null 2>&1 && echo READ-FASENG-OWN-ENV || echo cannot-read-fasengs-own-env\nkill $sib\n",
    );
    // git refuses a repository owned by another user: the test's repository is nobody's.
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir.path().join("git"))
        .status()
        .unwrap();
    assert!(chown.success());
    let mut cmd = tokio::process::Command::new("setpriv");
    // Bound here and handed over at fd 3: setpriv passes it on to faseng.
    let (port, listener) = crate::harness::hand_listener(&mut cmd);
    let url = format!("http://127.0.0.1:{port}");
    let mut child = cmd
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_faseng"))
        .arg("serve")
        .env_clear()
        .env("LISTEN_FDS", "1")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("DATABASE_URL", &db.url)
        .env("APPS_JSON", &apps)
        .env("FASENG_LISTEN", format!("127.0.0.1:{port}"))
        .env("FASENG_WORKDIR", dir.path().join("work"))
        .env("FASENG_CLONE_BASE", dir.path().join("git"))
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("FASENG_SHUTDOWN_GRACE", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::File::create(dir.path().join("faseng.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(listener);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while crate::harness::get(&format!("{url}/healthz")).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "faseng (as nobody) did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = deployment_event(
        "example/app",
        "",
        95,
        &sha,
        "main",
        "staging",
        "deploy",
        json!({}),
    );
    let (status, text) = send_webhook(
        &format!("{url}/webhooks/github"),
        "deployment",
        "dumpable-1",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let store = chima_store::open(&db.url).await.unwrap();
    let id = store.find_by_github_id(95).await.unwrap().unwrap().id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = store.get_deployment(id).await.unwrap().unwrap();
        if d.state.is_terminal() {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} still {}",
            d.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text: Vec<String> = store
        .read_logs(id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    let text = text.join("\n");
    assert_eq!(
        d.state,
        DeploymentState::Succeeded,
        "{:?}\n{text}",
        d.reason
    );
    assert!(text.contains("uid=65534"), "{text}");
    // The control: the same user reads a process of its own that is dumpable.
    assert!(text.contains("can-read-a-sibling"), "{text}");
    // The parent is the guard; above it, faseng: neither can be read.
    assert!(text.contains("parent=(faseng-guard)"), "{text}");
    assert!(text.contains("cannot-read-faseng-env"), "{text}");
    assert!(text.contains("cannot-read-fasengs-own-env"), "{text}");
    let _ = child.start_kill();
    let _ = child.wait().await;
}
