//! fabric and capistrano through stand-in `fab`, `cap` and `bundle` placed
//! first on PATH, which record the argv and environment they were given.

use serde_json::json;

use chima_store::DeploymentState;

use crate::harness::{Rig, write_exec};

const RECORDER: &str = "#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"$FABVER\"; exit 0; fi\nif [ \"$1\" = --list ]; then printf 'Available tasks:\\n\\n  deploy\\n'; exit 0; fi\n{ echo \"argv:$(basename \"$0\")\"; for a in \"$@\"; do echo \"arg:$a\"; done; echo \"BRANCH=$BRANCH\"; echo \"HOSTS=$HOSTS\"; } >> \"$RECORD\"\necho recorded\n";

/// Stand-in `fab`, `cap` and `bundle` that record their argv; `fab --version` says
/// `fab_version` (what Fabric 1 or 2 print).
fn stand_ins_with(rig: &Rig, fab_version: &str) -> std::path::PathBuf {
    let record = rig.dir.path().join("record.txt");
    let body = RECORDER
        .replace("$RECORD", &record.display().to_string())
        .replace("$FABVER", fab_version);
    for name in ["fab", "cap", "bundle"] {
        write_exec(&rig.bin.join(name), &body);
    }
    record
}

fn stand_ins(rig: &Rig) -> std::path::PathBuf {
    stand_ins_with(rig, "Fabric 2.6.0")
}

fn recorded(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Fabric 1 (the `Fabric3` fork) still gets heaven's command line.
#[tokio::test]
async fn fabric_1_runs_heavens_command_with_the_ref_escaped() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    let record = stand_ins_with(&rig, "Fabric3 1.14.post1\nParamiko 2.7.2");
    rig.start(rig.config());
    let d = rig
        .queue_with("k1", "feature,x=y", json!({"provider": "fabric"}), |n| {
            n.hosts = Some("fe1,fe2".into());
        })
        .await;
    let done = rig.wait_done(d.id).await;
    // The ref is refused by git's rules before fab runs: `,`/`=` are fine for git,
    // so it gets as far as the checkout, which has no such branch.
    assert_eq!(done.state, DeploymentState::Errored, "{:?}", done.reason);
    let d = rig
        .queue_with("k2", "main", json!({"provider": "fabric"}), |n| {
            n.hosts = Some("fe1,fe2".into());
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        recorded(&record)[..6],
        [
            "argv:fab",
            "arg:-R",
            "arg:staging",
            "arg:-H",
            "arg:fe1,fe2",
            "arg:deploy:branch_name=main"
        ]
    );
}

/// Fabric 2 and 3: no `-R` (it means `--dry` there), the ref as `--branch-name`, the
/// environment in DEPLOY_ENV, shown on the `==> running` line; `fabric_version`
/// overrides what `fab --version` says.
#[tokio::test]
async fn fabric_2_gets_its_own_command_line_and_the_version_can_be_pinned() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    let record = stand_ins(&rig);
    rig.start(rig.config());
    let d = rig
        .queue_with("k1", "main", json!({"provider": "fabric"}), |n| {
            n.hosts = Some("fe1,fe2".into());
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert_eq!(
        recorded(&record)[..5],
        [
            "argv:fab",
            "arg:-H",
            "arg:fe1,fe2",
            "arg:deploy",
            "arg:--branch-name=main"
        ]
    );
    assert!(
        rig.log(d.id).await.contains(
            &"==> running DEPLOY_ENV=staging fab -H fe1,fe2 deploy --branch-name=main".to_string()
        ),
        "{:?}",
        rig.log(d.id).await
    );
    let d = rig
        .queue(
            "k2",
            "main",
            json!({"provider": "fabric", "fabric_version": 1}),
        )
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
    assert!(
        recorded(&record).contains(&"arg:deploy:branch_name=main".to_string()),
        "{:?}",
        recorded(&record)
    );
}

#[tokio::test]
async fn fabric_task_override_and_hostile_hosts() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    let record = stand_ins(&rig);
    let marker = rig.dir.path().join("pwned");
    rig.start(rig.config());
    let d = rig
        .queue(
            "k1",
            "main",
            json!({"provider": "fabric", "fabric_task": "ship"}),
        )
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    let rec = recorded(&record);
    assert_eq!(
        rec[..3],
        ["argv:fab", "arg:ship", "arg:--branch-name=main"],
        "{rec:?}"
    );
    // Hosts with shell syntax, spaces or a leading `-` never reach fab (nor a shell).
    for (i, hosts) in [
        format!("a;touch {}", marker.display()),
        "web1 --dry".to_string(),
        "-x".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let d = rig
            .queue_with(
                &format!("h{i}"),
                "main",
                json!({"provider": "fabric"}),
                |n| {
                    n.hosts = Some(hosts.clone());
                },
            )
            .await;
        let done = rig.wait_done(d.id).await;
        assert_eq!(done.state, DeploymentState::Errored, "{hosts}");
    }
    assert_eq!(
        recorded(&record)
            .iter()
            .filter(|l| l.starts_with("argv:"))
            .count(),
        1
    );
    assert!(!marker.exists());
}

#[tokio::test]
async fn capistrano_uses_bundler_when_there_is_a_gemfile() {
    let mut rig = Rig::new(
        "#!/bin/sh\n",
        &[("Gemfile", "source 'https://rubygems.org'\n")],
    )
    .await;
    let record = stand_ins(&rig);
    rig.start(rig.config());
    let d = rig
        .queue_with("k1", "main", json!({"provider": "capistrano"}), |n| {
            n.task = "deploy:migrate".into();
            n.hosts = Some("app1".into());
        })
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
    assert_eq!(
        recorded(&record),
        [
            "argv:bundle",
            "arg:install",
            "arg:--local",
            "BRANCH=main",
            "HOSTS=app1",
            "argv:bundle",
            "arg:exec",
            "arg:cap",
            "arg:staging",
            "arg:deploy:migrate",
            "BRANCH=main",
            "HOSTS=app1"
        ]
    );
    let log = rig.log(d.id).await;
    assert!(
        log.contains(
            &"==> running BRANCH=main HOSTS=app1 USER=alice bundle exec cap staging deploy:migrate"
                .to_string()
        ),
        "{log:?}"
    );
}

/// `bundle install --local` fails on a machine without the gems: a normal install is
/// tried next; when that fails too, the deployment fails saying why, and cap never runs.
#[tokio::test]
async fn bundle_install_falls_back_and_its_failure_is_the_reason() {
    let mut rig = Rig::new(
        "#!/bin/sh\n",
        &[("Gemfile", "source 'https://rubygems.org'\n")],
    )
    .await;
    let record = stand_ins(&rig);
    write_exec(
        &rig.bin.join("bundle"),
        &format!(
            "#!/bin/sh\necho \"bundle $*\" >> '{}'\nif [ \"$1\" = install ]; then echo \"Could not find gem 'capistrano' in locally installed gems\" >&2; exit 7; fi\n",
            record.display()
        ),
    );
    rig.start(rig.config());
    let d = rig
        .queue("k1", "main", json!({"provider": "capistrano"}))
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Failed);
    assert_eq!(
        recorded(&record),
        ["bundle install --local", "bundle install"]
    );
    assert_eq!(
        done.reason.as_deref(),
        Some(
            "bundle install failed: `bundle install` exited with code 7: Could not find gem 'capistrano' in locally installed gems"
        )
    );
}

#[tokio::test]
async fn capistrano_without_a_gemfile_runs_cap() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    let record = stand_ins(&rig);
    rig.start(rig.config());
    let d = rig
        .queue("k1", "main", json!({"provider": "capistrano"}))
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
    assert_eq!(
        recorded(&record),
        [
            "argv:cap",
            "arg:staging",
            "arg:deploy",
            "BRANCH=main",
            "HOSTS="
        ]
    );
}

#[tokio::test]
async fn a_command_override_replaces_the_provider() {
    let mut rig = Rig::new(
        "#!/bin/sh\n",
        &[(
            "tools/ship",
            "#!/bin/sh\necho \"shipping $1 $DEPLOY_ENV\"\n",
        )],
    )
    .await;
    rig.start(rig.config());
    let d = rig
        .queue(
            "k1",
            "main",
            json!({"provider": "fabric", "command": ["./tools/ship", "fast"]}),
        )
        .await;
    assert_eq!(rig.wait_done(d.id).await.state, DeploymentState::Succeeded);
    assert!(
        rig.log(d.id)
            .await
            .contains(&"shipping fast staging".to_string())
    );
}

/// `command` placeholders are replaced inside each argument: a value with spaces,
/// commas or an `=` stays one argument, and nothing goes through a shell.
#[tokio::test]
async fn command_placeholders_fill_whole_arguments() {
    let mut rig = Rig::new(
        "#!/bin/sh\n",
        &[(
            "tools/ship",
            "#!/bin/sh\necho \"argc=$#\"\nfor a in \"$@\"; do echo \"arg=[$a]\"; done\n",
        )],
    )
    .await;
    rig.start(rig.config());
    let sha = rig.head();
    let d = rig
        .queue_with(
            "k1",
            "main",
            json!({"provider": "shell", "command": ["./tools/ship", "{ref}", "--env={env}", "{hosts}", "{sha}", "{task}@{app}", "{unknown"]}),
            |n| n.hosts = Some("web1,web2".into()),
        )
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    let log = rig.log(d.id).await;
    let args: Vec<&String> = log.iter().filter(|l| l.starts_with("arg")).collect();
    assert_eq!(
        args,
        [
            "argc=6",
            "arg=[main]",
            "arg=[--env=staging]",
            "arg=[web1,web2]",
            &format!("arg=[{sha}]"),
            "arg=[deploy@app]",
            "arg=[{unknown]",
        ]
    );
    // An unknown placeholder is refused when app.json loads.
    let bad = chima_config::Apps::parse(
        r#"{"a": {"provider": "shell", "repository": "o/r", "command": ["ship", "{branch}"]}}"#,
        std::path::Path::new("app.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("placeholder `{branch}`"), "{bad}");
}

/// A fabfile for another Fabric (or a task it lacks): Fabric says `No idea what`,
/// and the reason says which Fabric ran what, and what to set.
#[tokio::test]
async fn fabric_no_idea_what_says_which_fabric_ran_what() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    stand_ins(&rig);
    write_exec(
        &rig.bin.join("fab"),
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Fabric 2.6.0'; exit 0; fi\necho \"No idea what 'deploy' is!\" >&2\nexit 1\n",
    );
    rig.start(rig.config());
    let d = rig.queue("k1", "main", json!({"provider": "fabric"})).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Failed);
    assert_eq!(
        done.reason.as_deref(),
        Some(
            "exited with code 1: No idea what 'deploy' is! (Fabric 2 ran `fab deploy --branch-name=main`; set `fabric_task`, or `fabric_version` if this fabfile is for another Fabric)"
        )
    );
    // The summary is the log's last line, after the tool's own.
    let log = rig.log(d.id).await;
    assert_eq!(log[log.len() - 2], "No idea what 'deploy' is!", "{log:?}");
    assert!(
        log[log.len() - 1].starts_with("==> failed after"),
        "{log:?}"
    );
}

/// A dry run (`deploy:noop`) is each tool's dry-run switch on the `deploy` task:
/// `cap <env> deploy --dry-run`, `fab --dry [-H hosts] deploy --branch-name=<ref>`
/// (fab's own flag, before the task), `DEPLOY_NOOP=1` for both; Fabric 1 has none
/// and is refused before anything runs.
#[tokio::test]
async fn dry_runs_pass_each_tools_switch_and_fabric_1_is_refused() {
    let mut rig = Rig::new("#!/bin/sh\n", &[]).await;
    let record = stand_ins(&rig);
    rig.start(rig.config());
    let noop = |n: &mut chima_store::NewDeployment| {
        n.task = chima_config::DRY_RUN_TASK.into();
        n.hosts = Some("fe1,fe2".into());
    };
    let d = rig
        .queue_with("k1", "main", json!({"provider": "capistrano"}), noop)
        .await;
    let log = rig.succeeded_log(d.id).await;
    assert_eq!(
        recorded(&record)[..4],
        ["argv:cap", "arg:staging", "arg:deploy", "arg:--dry-run"]
    );
    assert!(log.contains("==> dry run: nothing will change"), "{log}");
    assert!(
        log.contains(
            "==> running BRANCH=main HOSTS=fe1,fe2 USER=alice DEPLOY_NOOP=1 cap staging deploy --dry-run"
        ),
        "{log}"
    );
    std::fs::remove_file(&record).unwrap();

    let d = rig
        .queue_with("k2", "main", json!({"provider": "fabric"}), noop)
        .await;
    let log = rig.succeeded_log(d.id).await;
    assert_eq!(
        recorded(&record)[..7],
        [
            "argv:fab",
            "arg:--dry",
            "arg:-H",
            "arg:fe1,fe2",
            "arg:deploy",
            "arg:--branch-name=main",
            "BRANCH=main"
        ]
    );
    assert!(
        log.contains(
            "==> running DEPLOY_ENV=staging DEPLOY_NOOP=1 fab --dry -H fe1,fe2 deploy --branch-name=main"
        ),
        "{log}"
    );
    std::fs::remove_file(&record).unwrap();

    // Fabric 1: refused with the reason, and fab never ran.
    let d = rig
        .queue_with(
            "k3",
            "main",
            json!({"provider": "fabric", "fabric_version": 1}),
            noop,
        )
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored, "{:?}", done.reason);
    let reason = done.reason.unwrap_or_default();
    assert!(
        reason.starts_with("Fabric 1 has no dry run") && reason.ends_with("nothing was run"),
        "{reason}"
    );
    assert!(recorded(&record).is_empty(), "{:?}", recorded(&record));
}
