//! The fabric and capistrano providers with the real tools: Debian's Fabric 2
//! and Capistrano 3, Fabric 3 from PyPI (`script/test` installs them all),
//! deploying through a real sshd on 127.0.0.1 to this machine as root.
//!
//! The deployed tasks write a marker file on the "server" holding the ref and
//! `$SSH_CONNECTION`, whose last field is the sshd's port: a marker proves the
//! task ran over SSH to that sshd with the ref the engine was asked for.

use serde_json::{Value, json};

use chima_engine::EngineConfig;
use chima_store::{Deployment, DeploymentState, NewDeployment};

use crate::harness::Rig;
use crate::sshd::{Agent, Sshd, branch, commit, fabric3_bin, require};

/// The ref every test deploys (a branch next to `main`, so a task that
/// falls back to `main` shows).
const REF: &str = "feature/real-tools";

/// The message the failing tasks print on the remote's stderr (built there
/// by printf, so it is not in the command line the tools echo).
const FAILURE: &str = "migration failed: table locked";

const FABFILE: &str = r#"import os

import fabric
from fabric import task
from invoke import Collection, Exit

HOST = "@HOST@"
DIR = "@DIR@"


def mark(c, name, branch_name):
    env = os.environ.get("DEPLOY_ENV", "-")
    c.run(f'echo "{branch_name} env={env} fabric={fabric.__version__} $SSH_CONNECTION" > {DIR}/{name}')


@task(hosts=[HOST])
def ship(c, branch_name):
    mark(c, "deployed", branch_name)


@task(hosts=[HOST])
def migrate(c, branch_name):
    mark(c, "migrated", branch_name)


@task
def push(c, branch_name):
    """No hosts of its own: runs where -H says (locally without one)."""
    mark(c, "pushed", branch_name)


@task(hosts=[HOST])
def broken(c, branch_name):
    result = c.run("printf 'migration failed: %s\\n' 'table locked' >&2; exit 3", warn=True)
    if result.failed:
        raise Exit(result.stderr.strip())


deploy = Collection("deploy")
deploy.add_task(ship, default=True)
deploy.add_task(migrate)
ns = Collection(deploy, push, broken)
"#;

const CAPFILE: &str = r#"require "capistrano/setup"
require "capistrano/deploy"
require "capistrano/scm/git"
install_plugin Capistrano::SCM::Git
"#;

const DEPLOY_RB: &str = r##"set :application, "app"
set :repo_url, "file://@REPO@"
set :deploy_to, "@DIR@/www"
set :tmp_dir, "@DIR@/tmp"
set :branch, ENV["BRANCH"]
set :keep_releases, 2
set :ssh_options, {
  port: @PORT@, user: "root", auth_methods: ["publickey"],
  verify_host_key: :never@KEYS@
}

namespace :deploy do
  task :mark do
    on roles(:app) do
      execute :echo, "#{fetch(:branch)} $SSH_CONNECTION", ">", "@DIR@/deployed"
    end
  end

  task :migrate do
    on roles(:app) do
      execute "printf 'migration failed: %s\\n' 'table locked' >&2; exit 3"
    end
  end
end

after "deploy:finished", "deploy:mark"
"##;

const STAGING_RB: &str = "server \"127.0.0.1\", user: \"root\", roles: %w{app}\n";

const GEMFILE: &str = "source \"https://rubygems.org\"\n\ngem \"capistrano\"\ngem \"ed25519\"\ngem \"bcrypt_pbkdf\"\n";

/// How the tools find the client key.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    /// The key file, named in the project's config.
    File,
    /// Nothing in the project: the tools ask the ssh-agent.
    Agent,
}

fn fabric_project(sshd: &Sshd, key: Key) -> Vec<(&'static str, String)> {
    let fabfile = FABFILE
        .replace("@HOST@", &sshd.host())
        .replace("@DIR@", &sshd.dir.path().display().to_string());
    let connect = match key {
        Key::File => format!("  key_filename: {}\n", sshd.key.display()),
        Key::Agent => "  look_for_keys: false\n".to_string(),
    };
    let yaml = format!("user: root\nconnect_kwargs:\n{connect}");
    vec![("fabfile.py", fabfile), ("fabric.yaml", yaml)]
}

fn capistrano_project(rig: &Rig, sshd: &Sshd, key: Key) -> Vec<(&'static str, String)> {
    let keys = match key {
        Key::File => format!(",\n  keys: [\"{}\"], keys_only: true", sshd.key.display()),
        Key::Agent => String::new(),
    };
    let deploy_rb = DEPLOY_RB
        .replace("@REPO@", &rig.repo.display().to_string())
        .replace("@DIR@", &sshd.dir.path().display().to_string())
        .replace("@PORT@", &sshd.port.to_string())
        .replace("@KEYS@", &keys);
    vec![
        ("Capfile", CAPFILE.to_string()),
        ("config/deploy.rb", deploy_rb),
        ("config/deploy/staging.rb", STAGING_RB.to_string()),
    ]
}

/// A started sshd and a rig whose repository holds `project`'s files, with
/// branch [`REF`]; returns the sha of [`REF`] too.
async fn setup(
    tool: &str,
    project: impl FnOnce(&Rig, &Sshd) -> Vec<(&'static str, String)>,
) -> (Sshd, Rig, String) {
    require(tool);
    let sshd = Sshd::start();
    let rig = Rig::new("#!/bin/sh\n", &[]).await;
    commit(&rig, &project(&rig, &sshd));
    let sha = branch(&rig, REF);
    (sshd, rig, sha)
}

/// Debian's tools first on the providers' PATH, whatever else is installed.
fn debian_tools(rig: &Rig) -> EngineConfig {
    let mut cfg = rig.config();
    cfg.path = format!("/usr/bin:{}", cfg.path);
    cfg
}

/// Queues a deployment of [`REF`] and waits for its end, asserting `state`.
async fn deploy(
    rig: &Rig,
    sshd: &Sshd,
    config: Value,
    state: DeploymentState,
    edit: impl FnOnce(&mut NewDeployment),
) -> Deployment {
    let d = rig.queue_with("k1", REF, config, edit).await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(
        done.state,
        state,
        "reason: {:?}\nlog:\n{}\nsshd:\n{}",
        done.reason,
        rig.log(d.id).await.join("\n"),
        sshd.log()
    );
    done
}

/// The marker `name` the deployed task wrote, split on whitespace; asserts it
/// holds [`REF`] and was written over SSH through `sshd`.
fn marker(sshd: &Sshd, name: &str) -> Vec<String> {
    let path = sshd.path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the task did not run on the host: no marker {} ({e})",
            path.display()
        )
    });
    let fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    assert_eq!(fields.first().map(String::as_str), Some(REF), "{text:?}");
    // $SSH_CONNECTION: client address, client port, server address, port.
    let port = sshd.port.to_string();
    assert_eq!(
        fields[fields.len().saturating_sub(2)..],
        ["127.0.0.1", port.as_str()],
        "the task did not run over SSH to 127.0.0.1:{port}: {text:?}"
    );
    fields
}

fn fabric_version(fields: &[String]) -> &str {
    fields
        .iter()
        .find_map(|f| f.strip_prefix("fabric="))
        .unwrap_or_default()
}

#[tokio::test]
async fn fabric2_deploy_writes_the_ref_on_the_host() {
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::File)).await;
    rig.start(debian_tools(&rig));
    deploy(
        &rig,
        &sshd,
        json!({"provider": "fabric"}),
        DeploymentState::Succeeded,
        |_| {},
    )
    .await;
    let fields = marker(&sshd, "deployed");
    assert!(fields.contains(&"env=staging".to_string()), "{fields:?}");
    assert!(fabric_version(&fields).starts_with("2."), "{fields:?}");
}

#[tokio::test]
async fn fabric2_typed_hosts_are_where_the_task_runs() {
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::File)).await;
    rig.start(debian_tools(&rig));
    // `push` has no hosts of its own: without `-H` it runs locally and the
    // marker has no SSH connection in it.
    deploy(
        &rig,
        &sshd,
        json!({"provider": "fabric", "fabric_task": "push"}),
        DeploymentState::Succeeded,
        |n| n.hosts = Some(sshd.host()),
    )
    .await;
    marker(&sshd, "pushed");
}

#[tokio::test]
async fn fabric2_deploy_migrate_runs_the_namespaced_migrate() {
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::File)).await;
    rig.start(debian_tools(&rig));
    deploy(
        &rig,
        &sshd,
        json!({"provider": "fabric"}),
        DeploymentState::Succeeded,
        |n| n.task = "deploy:migrate".into(),
    )
    .await;
    marker(&sshd, "migrated");
    assert!(
        !sshd.path("deployed").exists(),
        "deploy:migrate ran the deploy task too"
    );
}

#[tokio::test]
async fn fabric2_failing_task_fails_with_the_tools_message() {
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::File)).await;
    rig.start(debian_tools(&rig));
    let done = deploy(
        &rig,
        &sshd,
        json!({"provider": "fabric", "fabric_task": "broken"}),
        DeploymentState::Failed,
        |_| {},
    )
    .await;
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains(FAILURE), "reason: {reason:?}");
}

#[tokio::test]
async fn fabric3_deploy_writes_the_ref_on_the_host() {
    let bin = fabric3_bin();
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::File)).await;
    let mut cfg = rig.config();
    cfg.path = format!("{}:{}", bin.display(), cfg.path);
    rig.start(cfg);
    deploy(
        &rig,
        &sshd,
        json!({"provider": "fabric"}),
        DeploymentState::Succeeded,
        |_| {},
    )
    .await;
    let fields = marker(&sshd, "deployed");
    assert!(fields.contains(&"env=staging".to_string()), "{fields:?}");
    assert!(fabric_version(&fields).starts_with("3."), "{fields:?}");
}

#[tokio::test]
async fn capistrano_deploy_releases_the_ref_over_ssh() {
    let (sshd, mut rig, sha) = setup("cap", |r, s| capistrano_project(r, s, Key::File)).await;
    rig.start(debian_tools(&rig));
    deploy(
        &rig,
        &sshd,
        json!({"provider": "capistrano"}),
        DeploymentState::Succeeded,
        |_| {},
    )
    .await;
    marker(&sshd, "deployed");
    // Capistrano's own flow checked the ref out of the repository into a
    // release and pointed `current` at it.
    let revision =
        std::fs::read_to_string(sshd.path("www/current/REVISION")).expect("no current release");
    assert_eq!(revision.trim(), sha);
}

#[tokio::test]
async fn capistrano_failing_task_fails_with_its_message() {
    let (sshd, mut rig, _) = setup("cap", |r, s| capistrano_project(r, s, Key::File)).await;
    rig.start(debian_tools(&rig));
    let done = deploy(
        &rig,
        &sshd,
        json!({"provider": "capistrano"}),
        DeploymentState::Failed,
        |n| n.task = "deploy:migrate".into(),
    )
    .await;
    let reason = done.reason.unwrap_or_default();
    assert!(reason.contains(FAILURE), "reason: {reason:?}");
}

#[tokio::test]
async fn capistrano_with_a_gemfile_runs_through_bundle_exec() {
    require("bundle");
    let (sshd, mut rig, _) = setup("cap", |r, s| {
        let mut files = capistrano_project(r, s, Key::File);
        files.push(("Gemfile", GEMFILE.to_string()));
        files
    })
    .await;
    rig.start(debian_tools(&rig));
    let done = deploy(
        &rig,
        &sshd,
        json!({"provider": "capistrano"}),
        DeploymentState::Succeeded,
        |_| {},
    )
    .await;
    marker(&sshd, "deployed");
    let log = rig.log(done.id).await;
    assert!(
        log.iter()
            .any(|l| l.contains("bundle exec cap staging deploy")),
        "{log:#?}"
    );
}

/// The client key only in an ssh-agent (its file deleted), the agent's socket
/// handed to the engine.
fn agent_config(rig: &Rig, sshd: &Sshd) -> (Agent, EngineConfig) {
    let agent = Agent::start(&sshd.key);
    std::fs::remove_file(&sshd.key).unwrap();
    let mut cfg = debian_tools(rig);
    cfg.passthrough_env = vec![("SSH_AUTH_SOCK".into(), agent.sock.display().to_string())];
    (agent, cfg)
}

#[tokio::test]
async fn ssh_agent_capistrano_deploys_with_the_key_only_in_the_agent() {
    let (sshd, mut rig, _) = setup("cap", |r, s| capistrano_project(r, s, Key::Agent)).await;
    let (_agent, cfg) = agent_config(&rig, &sshd);
    rig.start(cfg);
    deploy(
        &rig,
        &sshd,
        json!({"provider": "capistrano"}),
        DeploymentState::Succeeded,
        |_| {},
    )
    .await;
    marker(&sshd, "deployed");
}

#[tokio::test]
async fn ssh_agent_fabric_deploys_with_the_key_only_in_the_agent() {
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::Agent)).await;
    let (_agent, cfg) = agent_config(&rig, &sshd);
    rig.start(cfg);
    deploy(
        &rig,
        &sshd,
        json!({"provider": "fabric"}),
        DeploymentState::Succeeded,
        |_| {},
    )
    .await;
    marker(&sshd, "deployed");
}

// ---- dry runs (`deploy:noop`, issue 18) ------------------------------------------

fn dry_run(n: &mut NewDeployment) {
    n.task = chima_config::DRY_RUN_TASK.into();
}

/// Queues a deployment of [`REF`] under `key` and waits for it to succeed; its log.
async fn succeeded(
    rig: &Rig,
    key: &str,
    config: Value,
    edit: impl FnOnce(&mut NewDeployment),
) -> String {
    let d = rig.queue_with(key, REF, config, edit).await;
    rig.succeeded_log(d.id).await
}

/// Capistrano's dry run (`cap staging deploy --dry-run`) prints the commands of the
/// deploy and runs none on the host: no release folder, no marker. The same app's
/// real deploy then makes both.
#[tokio::test]
async fn capistrano_dry_run_prints_the_deploy_and_changes_nothing() {
    let (sshd, mut rig, sha) = setup("cap", |r, s| capistrano_project(r, s, Key::File)).await;
    rig.start(debian_tools(&rig));
    let config = json!({"provider": "capistrano"});
    let log = succeeded(&rig, "dry", config.clone(), dry_run).await;
    assert!(log.contains("==> dry run: nothing will change"), "{log}");
    assert!(log.contains("cap staging deploy --dry-run"), "{log}");
    // What Capistrano printed: the commands the deploy would have run there.
    let www = sshd.path("www");
    assert!(
        log.contains(&format!("{}/releases", www.display())),
        "Capistrano's dry run did not print the deploy's commands:\n{log}"
    );
    assert!(
        !www.exists(),
        "the dry run changed the host: {} exists",
        www.display()
    );
    assert!(
        !sshd.path("deployed").exists(),
        "the dry run wrote the marker"
    );

    succeeded(&rig, "real", config, |_| {}).await;
    marker(&sshd, "deployed");
    let revision =
        std::fs::read_to_string(sshd.path("www/current/REVISION")).expect("no current release");
    assert_eq!(revision.trim(), sha);
}

/// Fabric's dry run (`fab --dry deploy --branch-name=<ref>`) echoes the task's remote
/// command and runs it nowhere; the real deploy writes the marker.
async fn fabric_dry_run_changes_nothing(cfg: impl FnOnce(&Rig) -> EngineConfig, major: &str) {
    let (sshd, mut rig, _) = setup("fab", |_, s| fabric_project(s, Key::File)).await;
    let cfg = cfg(&rig);
    rig.start(cfg);
    let config = json!({"provider": "fabric"});
    let log = succeeded(&rig, "dry", config.clone(), dry_run).await;
    assert!(log.contains("==> dry run: nothing will change"), "{log}");
    assert!(
        log.contains("fab --dry deploy --branch-name=feature/real-tools"),
        "{log}"
    );
    // Fabric echoed the command it would have run on the host.
    let target = sshd.path("deployed");
    assert!(
        log.contains(&format!("> {}", target.display())),
        "Fabric's dry run did not echo the task's command:\n{log}"
    );
    assert!(!target.exists(), "the dry run wrote the marker");

    succeeded(&rig, "real", config, |_| {}).await;
    let fields = marker(&sshd, "deployed");
    assert!(fabric_version(&fields).starts_with(major), "{fields:?}");
}

#[tokio::test]
async fn fabric2_dry_run_echoes_and_changes_nothing() {
    fabric_dry_run_changes_nothing(debian_tools, "2.").await;
}

#[tokio::test]
async fn fabric3_dry_run_echoes_and_changes_nothing() {
    let bin = fabric3_bin();
    fabric_dry_run_changes_nothing(
        |rig| {
            let mut cfg = rig.config();
            cfg.path = format!("{}:{}", bin.display(), cfg.path);
            cfg
        },
        "3.",
    )
    .await;
}
