//! Submodules (ARCHITECTURE.md, "Mirrors"): checked out from mirrors of their
//! own, never with the token, and left empty with a note when they cannot be.

use std::process::Command;
use std::sync::Arc;

use serde_json::json;

use crate::githttp::GitHttp;
use crate::harness::{Rig, git, shell_config};
use crate::mirror::{Token, mirrors, rev};

#[tokio::test]
async fn submodules_are_checked_out_from_their_own_mirrors() {
    let t = tempfile::tempdir().unwrap();
    let lib = t.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(lib.join("version"), "lib-1").unwrap();
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "--quiet", "-m", "lib"]);
    let mut rig = Rig::new(
        "#!/bin/sh\necho \"lib=$(cat vendor/lib/version) lib-head=$(git -C vendor/lib rev-parse HEAD)\"\n",
        &[],
    )
    .await;
    git(
        &rig.repo,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "--quiet",
            &lib.to_string_lossy(),
            "vendor/lib",
        ],
    );
    git(&rig.repo, &["commit", "--quiet", "-m", "with lib"]);
    let lib_head = rev(&lib, "HEAD");
    // The library moves on; the superproject still records lib-1.
    std::fs::write(lib.join("version"), "lib-2").unwrap();
    git(&lib, &["commit", "--quiet", "-am", "lib 2"]);
    rig.start(rig.config());
    let d = rig.queue("sub", "main", shell_config()).await;
    let log = rig.succeeded_log(d.id).await;
    assert!(
        log.contains(&format!("lib=lib-1 lib-head={lib_head}")),
        "{log}"
    );
    assert_eq!(
        mirrors(&rig).len(),
        2,
        "one mirror each: {:?}",
        mirrors(&rig)
    );
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_submodule_that_cannot_be_checked_out_is_left_empty_and_said() {
    let mut rig = Rig::new(
        "#!/bin/sh\nls -A vendor/lib | wc -l | sed 's/^/entries=/'\n",
        &[],
    )
    .await;
    std::fs::write(
        rig.repo.join(".gitmodules"),
        "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ext::sh -c touch% /tmp/pwned-by-submodule\n",
    )
    .unwrap();
    let head = rig.head();
    git(
        &rig.repo,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{head},vendor/lib"),
        ],
    );
    git(&rig.repo, &["add", ".gitmodules"]);
    git(&rig.repo, &["commit", "--quiet", "-m", "hostile submodule"]);
    rig.start(rig.config());
    let d = rig.queue("sub", "main", shell_config()).await;
    let log = rig.succeeded_log(d.id).await;
    assert!(
        log.contains("submodule `vendor/lib` not checked out") && log.contains("refused"),
        "{log}"
    );
    assert!(log.contains("entries=0"), "{log}");
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_submodule_never_gets_the_token() {
    let mut rig = Rig::new(
        "#!/bin/sh\necho \"lib=$(cat vendor/lib/version 2>/dev/null)\"\n",
        &[],
    )
    .await;
    let served = rig.dir.path().join("served");
    let lib = served.join("lib.git");
    let work = rig.dir.path().join("lib-work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(work.join("version"), "lib-1").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "lib"]);
    let lib_head = rev(&work, "HEAD");
    git(
        &rig.repo,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{lib_head},vendor/lib"),
        ],
    );
    std::fs::write(
        rig.repo.join(".gitmodules"),
        "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n",
    )
    .unwrap();
    git(&rig.repo, &["add", ".gitmodules"]);
    git(&rig.repo, &["commit", "--quiet", "-m", "with lib"]);
    for (from, to) in [(&rig.repo, served.join("app.git")), (&work, lib.clone())] {
        let out = Command::new("git")
            .args(["clone", "--quiet", "--bare"])
            .arg(from)
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let server = GitHttp::start(served).await;
    let mut cfg = rig.config();
    cfg.github_api_url = server.url.clone();
    cfg.access = Some(Arc::new(Token));
    rig.start(cfg);
    let app = json!({"provider": "shell", "clone_url": format!("{}/app.git", server.url)});
    let d = rig.queue("with-lib", "main", app).await;
    let log = rig.succeeded_log(d.id).await;
    // The test's host needs no token: the submodule is checked out without it.
    assert!(log.contains("lib=lib-1"), "{log}");
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(path, a)| path.starts_with("/app.git") && a.is_some()),
        "the repository itself was fetched without the token: {seen:?}"
    );
    let to_lib: Vec<_> = seen
        .iter()
        .filter(|(p, _)| p.starts_with("/lib.git"))
        .collect();
    assert!(
        !to_lib.is_empty(),
        "the submodule was never fetched: {seen:?}"
    );
    assert!(
        to_lib.iter().all(|(_, a)| a.is_none()),
        "the token went with the submodule's fetch: {to_lib:?}"
    );
    rig.engine.take().unwrap().shutdown().await;
}
