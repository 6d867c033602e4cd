//! fabric and capistrano through stand-in `fab`, `cap` and `bundle` placed
//! first on PATH, which record the argv and environment they were given.

use serde_json::json;

use chima_store::DeploymentState;

use crate::harness::{Rig, write_exec};

const RECORDER: &str = "#!/bin/sh\n{ echo \"argv:$(basename \"$0\")\"; for a in \"$@\"; do echo \"arg:$a\"; done; echo \"BRANCH=$BRANCH\"; echo \"HOSTS=$HOSTS\"; } >> \"$RECORD\"\necho recorded\n";

fn stand_ins(rig: &Rig) -> std::path::PathBuf {
    let record = rig.dir.path().join("record.txt");
    let body = RECORDER.replace("$RECORD", &record.display().to_string());
    for name in ["fab", "cap", "bundle"] {
        write_exec(&rig.bin.join(name), &body);
    }
    record
}

fn recorded(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn fabric_runs_heavens_command_with_the_ref_escaped() {
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
    assert!(
        rec.contains(&"arg:ship:branch_name=main".to_string()),
        "{rec:?}"
    );
    // Hosts with shell syntax never reach fab (nor a shell).
    let hosts = format!("a;touch {}", marker.display());
    let d = rig
        .queue_with("k2", "main", json!({"provider": "fabric"}), |n| {
            n.hosts = Some(hosts.clone());
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Errored);
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
            "arg:exec",
            "arg:cap",
            "arg:staging",
            "arg:deploy:migrate",
            "BRANCH=main",
            "HOSTS=app1"
        ]
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
