//! app.json loading and resolution: the shipped example, broken copies with
//! their exact messages, and the checks a deploy goes through.

use std::path::{Path, PathBuf};

use chima_command::{Addressee, Command, parse};
use chima_config::{Apps, Provider, Refusal, Requester};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/app.json")
}

fn errors(text: &str) -> Vec<String> {
    match Apps::parse(text, Path::new("config/app.json")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn load(text: &str) -> Apps {
    match Apps::parse(text, Path::new("config/app.json")) {
        Ok(a) => a,
        Err(e) => panic!("refused: {e}"),
    }
}

#[test]
fn the_shipped_example_loads() {
    let apps = Apps::load(&shipped()).unwrap();
    let demo = apps.get("demo").unwrap();
    assert_eq!(demo.provider, Provider::Shell);
    assert_eq!(demo.environment_names(), vec!["staging", "production"]);
    assert_eq!(demo.deploy_script.as_deref(), Some("script/demo-deploy"));
    assert!(
        apps.get("hubot")
            .unwrap()
            .heroku_env_names
            .contains_key("staging")
    );
}

#[test]
fn bad_json_names_line_and_column() {
    let e = errors("{\n  \"app\": {\n    \"provider\": \"shell\",\n  }\n}");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("config/app.json:4:3: not valid JSON: trailing comma"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_field_names_app_field_and_suggests() {
    let e = errors(
        "{\n  \"project-x\": {\n    \"provider\": \"fabric\",\n    \"repository\": \"o/r\",\n    \"enironments\": [\"edge\"]\n  }\n}",
    );
    assert_eq!(
        e,
        vec![
            "config/app.json:5:5: `project-x`: unknown field `enironments`, did you mean `environments`?"
        ]
    );
}

#[test]
fn allowed_users_key_must_name_an_environment() {
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "environments": ["production", "staging"],
  "allowed_users": {"prod": ["alice"]}}}"#,
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("config/app.json:2:21: `x`: `allowed_users` names `prod`, which is not one of the app's environments"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("production, staging"), "{}", e[0]);
}

#[test]
fn empty_environments_is_refused() {
    let e = errors(r#"{"x": {"provider": "shell", "repository": "o/r", "environments": []}}"#);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("config/app.json:1:50: `x`: `environments` is empty"),
        "{}",
        e[0]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(
        r#"{
  "a": {"provider": "herokuu", "repository": "nope"},
  "b": {"repository": "o/r", "timeout": "20", "auto_merge": "yes"},
  "C": {"provider": "shell", "repository": "o/r"}
}"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("2:9: `a`: unknown provider `herokuu`: did you mean `heroku`?"),
        "{all}"
    );
    assert!(
        all.contains("2:32: `a`: `repository` must be `owner/name`"),
        "{all}"
    );
    assert!(all.contains("3:3: `b`: missing field `provider`"), "{all}");
    assert!(all.contains("`b`: `timeout`: `20` has no unit"), "{all}");
    assert!(
        all.contains("`b`: `auto_merge` must be true or false, not a string"),
        "{all}"
    );
    assert!(
        all.contains("4:3: `C`: an app name must be lowercase"),
        "{all}"
    );
    assert_eq!(e.len(), 6, "{all}");
}

#[test]
fn duplicated_keys_are_refused() {
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r"},
"x": {"provider": "heroku", "repository": "o/r", "provider": "shell"}}"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("2:1: `x` is given more than once (first on line 1)"),
        "{all}"
    );
    assert!(
        all.contains("`x`: `provider` is given more than once"),
        "{all}"
    );
}

#[test]
fn hostile_values_are_refused() {
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "clone_url": "ext::sh -c id",
 "deploy_script": "../../bin/sh", "default_ref": "--upload-pack=id", "command": "make deploy"}}"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("`clone_url` `ext::sh -c id` uses a git transport that runs commands"),
        "{all}"
    );
    assert!(
        all.contains("`deploy_script` `../../bin/sh` leaves the repository"),
        "{all}"
    );
    assert!(
        all.contains("`default_ref` `--upload-pack=id` is not a ref"),
        "{all}"
    );
    assert!(
        all.contains("`command` must be a list of arguments"),
        "{all}"
    );
}

#[test]
fn top_level_must_be_an_object_of_objects() {
    assert!(errors("[]")[0].contains("the top level must be an object of apps"));
    assert!(errors("{}")[0].contains("holds no apps"));
    assert!(errors(r#"{"x": 3}"#)[0].contains("an app must be an object of fields, not a number"));
}

#[test]
fn oversized_and_missing_files_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let e = Apps::load(&missing).unwrap_err().to_string();
    assert!(
        e.contains("nope.json: cannot read it") && e.contains("APPS_JSON"),
        "{e}"
    );
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 5 * 1024 * 1024]).unwrap();
    let e = Apps::load(&big).unwrap_err().to_string();
    assert!(e.contains("the limit is 4194304"), "{e}");
    let bin = dir.path().join("bin.json");
    std::fs::write(&bin, [0xff, 0xfe, b'{']).unwrap();
    assert!(
        Apps::load(&bin)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8")
    );
}

#[test]
fn environment_objects_in_the_newer_hubot_deploy_form() {
    let apps = load(
        r#"{"hubot": {"provider": "heroku", "repository": "MyOrg/hubot", "environments": [
      {"name": "live", "production": true},
      {"name": "staging", "provider_env_name": "my-staging", "auto_inactive": false},
      {"name": "test", "transient": true}]}}"#,
    );
    let app = apps.get("hubot").unwrap();
    assert!(app.is_production("live"));
    assert!(!app.is_production("staging"));
    assert_eq!(
        app.environment("staging")
            .unwrap()
            .provider_env_name
            .as_deref(),
        Some("my-staging")
    );
}

// ---- resolution ----

const APPS: &str = r#"{
  "project-x": {
    "provider": "fabric", "repository": "example/project-x",
    "environments": ["production", "edge", "staging"],
    "default_environment": "staging",
    "aliases": {"prod": "production"},
    "required_contexts": ["ci/build"],
    "allowed_rooms": ["ops", "C024BE91L"],
    "allowed_users": {"production": ["alice", "U023BECGF"]},
    "github_token": "ghp_supersecret",
    "production_url": "https://x.example.com"
  },
  "plain": {"provider": "shell", "repository": "o/plain"}
}"#;

fn deploy_of(line: &str) -> chima_command::Deploy {
    match parse(line, &Addressee::named("chima")) {
        Ok(Command::Deploy(d)) => d,
        other => panic!("{other:?}"),
    }
}

/// APPS with its names resolved as chima does at start on Slack.
fn resolved(text: &str) -> chima_config::Apps {
    let mut apps = load(text);
    let users = std::collections::HashMap::from([
        ("alice".to_string(), "U0ALICE01".to_string()),
        ("bob".to_string(), "U0BOB0001".to_string()),
    ]);
    let rooms = std::collections::HashMap::from([("ops".to_string(), "C0OPS0001".to_string())]);
    assert_eq!(
        apps.resolve_chat_names(&users, &rooms),
        Vec::<String>::new()
    );
    apps
}

fn in_ops(user: &str) -> Requester {
    let id = match user {
        "alice" => "U0ALICE01",
        "bob" => "U0BOB0001",
        _ => "U0OTHER01",
    };
    Requester {
        user_id: Some(id.into()),
        user_name: user.into(),
        room_id: Some("C0OPS0001".into()),
        room_name: Some("ops".into()),
    }
}

#[test]
fn aliases_defaults_and_the_body_fields() {
    let apps = resolved(APPS);
    let r = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x/feature to prod"),
            &in_ops("alice"),
            "production",
        )
        .unwrap();
    assert_eq!(r.environment, "production");
    assert_eq!(r.git_ref.as_deref(), Some("feature"));
    assert!(r.production_environment);
    assert!(r.auto_merge);
    assert_eq!(r.required_contexts, Some(vec!["ci/build".to_string()]));
    // The app's default environment wins over the global fallback.
    let r = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x"),
            &in_ops("bob"),
            "production",
        )
        .unwrap();
    assert_eq!(r.environment, "staging");
    assert!(!r.production_environment);
    // Without an app default, the global fallback (CHIMA_DEFAULT_ENVIRONMENT).
    let r = apps
        .resolve_deploy(
            &deploy_of("chima deploy plain"),
            &Requester::default(),
            "production",
        )
        .unwrap();
    assert_eq!(r.environment, "production");
    assert_eq!(r.git_ref, None);
}

#[test]
fn force_skips_merge_and_contexts() {
    let apps = resolved(APPS);
    let r = apps
        .resolve_deploy(
            &deploy_of("chima deploy:migrate! project-x to edge"),
            &in_ops("bob"),
            "production",
        )
        .unwrap();
    assert!(!r.auto_merge);
    assert_eq!(r.required_contexts, Some(vec![]));
    assert_eq!(r.task, "deploy:migrate");
}

/// A dry run never asks GitHub to merge into the ref (that would change the
/// repository), keeps the deploy's CI checks, and is the `deploy:noop` task.
#[test]
fn a_dry_run_never_auto_merges() {
    let apps = resolved(APPS);
    let r = apps
        .resolve_deploy(
            &deploy_of("chima deploy:noop project-x/feature to prod"),
            &in_ops("alice"),
            "production",
        )
        .unwrap();
    assert_eq!(r.task, chima_config::DRY_RUN_TASK);
    assert!(chima_config::is_dry_run(&r.task));
    assert!(!r.auto_merge);
    assert_eq!(r.required_contexts, Some(vec!["ci/build".to_string()]));
    assert_eq!(r.environment, "production");
    // Checked like a deploy: someone not allowed there is refused.
    assert!(
        apps.resolve_deploy(
            &deploy_of("chima deploy:noop project-x to prod"),
            &in_ops("mallory"),
            "production",
        )
        .is_err()
    );
}

#[test]
fn secrets_never_reach_the_payload_config() {
    let apps = resolved(APPS);
    let r = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x to edge"),
            &in_ops("bob"),
            "production",
        )
        .unwrap();
    let config = r.config.to_string();
    assert!(!config.contains("ghp_supersecret"), "{config}");
    assert!(!config.contains("github_token"), "{config}");
    assert!(config.contains("example/project-x"));
    let debug = format!("{:?}", apps.get("project-x").unwrap());
    assert!(!debug.contains("ghp_supersecret"), "{debug}");
}

#[test]
fn refusals_in_order_with_their_texts() {
    let apps = resolved(APPS);
    let who = in_ops("bob");
    let e = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-y to prod"),
            &who,
            "production",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "I don't know an app called `project-y` (did you mean `project-x`?). Known apps: `plain`, `project-x`."
    );
    let e = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x to prd"),
            &who,
            "production",
        )
        .unwrap_err();
    assert!(matches!(e, Refusal::UnknownEnvironment { .. }));
    assert_eq!(
        e.to_string(),
        "`project-x` has no environment `prd` (did you mean `prod`?). Its environments: `production`, `edge`, `staging`."
    );
    let elsewhere = Requester {
        room_id: Some("C222".into()),
        room_name: Some("random".into()),
        ..in_ops("alice")
    };
    let e = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x to prod"),
            &elsewhere,
            "production",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "`project-x` cannot be deployed from #random. Allowed rooms: `ops`, `C024BE91L`, `C0OPS0001`."
    );
    // The room is checked before the user.
    let e = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x to prod"),
            &who,
            "production",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bob is not allowed to deploy `project-x` to production. Ask one of: `alice`, `U023BECGF`, `U0ALICE01`."
    );
    // Room by id, user by id.
    let by_id = Requester {
        user_id: Some("U023BECGF".into()),
        user_name: "carol".into(),
        room_id: Some("C024BE91L".into()),
        room_name: None,
    };
    assert!(
        apps.resolve_deploy(
            &deploy_of("chima deploy project-x to production"),
            &by_id,
            "production"
        )
        .is_ok()
    );
}

#[test]
fn chat_users_with_ids_are_matched_by_id_never_by_their_current_name() {
    let apps = resolved(APPS);
    // Mallory renamed herself `alice`: her id is not alice's.
    let mallory = Requester {
        user_id: Some("U0MALLORY".into()),
        ..in_ops("alice")
    };
    let e = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x to prod"),
            &mallory,
            "production",
        )
        .unwrap_err();
    assert!(matches!(e, Refusal::UserNotAllowed { .. }), "{e}");
    // A channel renamed to `ops` is another channel.
    let renamed_room = Requester {
        room_id: Some("C0RENAMED".into()),
        ..in_ops("alice")
    };
    let e = apps
        .resolve_deploy(
            &deploy_of("chima deploy project-x to prod"),
            &renamed_room,
            "production",
        )
        .unwrap_err();
    assert!(matches!(e, Refusal::RoomNotAllowed { .. }), "{e}");
    // The real alice, by the id her name had when chima started.
    assert!(
        apps.resolve_deploy(
            &deploy_of("chima deploy project-x to prod"),
            &in_ops("alice"),
            "production"
        )
        .is_ok()
    );
    // Names chima could not resolve match nobody with an id, and are reported.
    let mut unresolved = load(APPS);
    assert_eq!(
        unresolved.resolve_chat_names(&Default::default(), &Default::default()),
        vec!["alice".to_string(), "ops".to_string()]
    );
    let e = unresolved
        .resolve_deploy(
            &deploy_of("chima deploy project-x to prod"),
            &in_ops("alice"),
            "production",
        )
        .unwrap_err();
    assert!(matches!(e, Refusal::RoomNotAllowed { .. }), "{e}");
    // The terminal has no ids: names are what there is.
    let shell = Requester {
        user_id: None,
        user_name: "alice".into(),
        room_id: None,
        room_name: Some("ops".into()),
    };
    assert!(
        load(APPS)
            .resolve_deploy(
                &deploy_of("chima deploy project-x to prod"),
                &shell,
                "production"
            )
            .is_ok()
    );
    // `github:` entries are for faseng: no chat user matches them.
    let gh = load(
        r#"{"x": {"provider": "shell", "repository": "o/r", "allowed_users": {"production": ["github:alice"]}}}"#,
    );
    assert!(
        gh.resolve_deploy(&deploy_of("chima deploy x"), &shell, "production")
            .is_err()
    );
}

#[test]
fn auto_deploy_rules_are_checked() {
    let apps = load(
        r#"{"x": {"provider": "shell", "repository": "o/r", "environments": ["staging", "production"],
        "auto_deploy": {"staging": {"ref": "main"}, "production": {"required_contexts": ["ci/build", "test"]}}}}"#,
    );
    let x = apps.get("x").unwrap();
    assert_eq!(x.auto_deploy["staging"].git_ref.as_deref(), Some("main"));
    assert_eq!(x.auto_deploy["staging"].required_contexts, None);
    assert_eq!(
        x.auto_deploy["production"].required_contexts,
        Some(vec!["ci/build".to_string(), "test".to_string()])
    );
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "environments": ["staging", "production"],
        "auto_deploy": {"qa": {}, "production": {"ref": "main"}, "staging": {"reff": "x", "required_contexts": []}}}}"#,
    )
    .join("\n");
    assert!(
        e.contains("`auto_deploy` names `qa`, which is not one of the app's environments"),
        "{e}"
    );
    assert!(
        e.contains(
            "production is a production environment, so list its `required_contexts` explicitly"
        ),
        "{e}"
    );
    assert!(
        e.contains("unknown field `reff`, did you mean `ref`?"),
        "{e}"
    );
    assert!(
        e.contains("`auto_deploy.staging.required_contexts` must list at least one context name"),
        "{e}"
    );
}

#[test]
fn windows_load_per_environment_in_their_timezone() {
    let apps = load(
        r#"{"x": {"provider": "shell", "repository": "o/r", "environments": ["staging", "production"],
        "windows": {"production": {"allow": ["Mon-Thu 09:00-17:00", "Fri 09:00-12:00"], "timezone": "Asia/Hong_Kong"},
                    "staging": {"allow": ["09:00-24:00"]}}}}"#,
    );
    let x = apps.get("x").unwrap();
    let prod = &x.windows["production"];
    assert_eq!(prod.allow.len(), 2);
    assert_eq!(
        prod.describe(),
        "Mon-Thu 09:00-17:00, Fri 09:00-12:00 (Asia/Hong_Kong)"
    );
    assert_eq!(x.zone("production").name(), "Asia/Hong_Kong");
    // No timezone: UTC; times about an environment without windows are in UTC too.
    assert_eq!(x.windows["staging"].timezone.name(), "UTC");
    assert_eq!(
        load(r#"{"y": {"provider": "shell", "repository": "o/r"}}"#)
            .get("y")
            .unwrap()
            .zone("production")
            .name(),
        "UTC"
    );
    // The entry goes into payload.config as written, as every other field.
    assert_eq!(
        x.public_config()["windows"]["production"]["timezone"],
        "Asia/Hong_Kong"
    );
}

#[test]
fn bad_windows_are_refused_with_their_place() {
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "environments": ["staging", "production"],
  "windows": {
    "prod": {"allow": ["Mon 09:00-17:00"]},
    "production": {"allow": ["Mon-Thr 09:00-17:00", "Mon 25:00-26:00", "Fri 17:00-09:00", 5], "timezone": "Mars/Olympus"},
    "staging": {"allow": [], "tz": "UTC"}
  }}}"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("config/app.json:3:5: `x`: `windows` names `prod`, which is not one of the app's environments: production, staging"),
        "{all}"
    );
    assert!(all.contains("config/app.json:4:5: `x`: `windows.production.allow`: window `Mon-Thr 09:00-17:00`: `Thr` is not a day (did you mean `Thu`?)"), "{all}");
    assert!(
        all.contains("window `Mon 25:00-26:00`: `25:00` is not a time of day"),
        "{all}"
    );
    assert!(
        all.contains(
            "window `Fri 17:00-09:00`: it ends at 09:00, which is not after it starts at 17:00"
        ),
        "{all}"
    );
    assert!(
        all.contains("must hold strings like \"Mon-Fri 09:00-17:00\", not a number"),
        "{all}"
    );
    assert!(
        all.contains("`windows.production.timezone`: unknown timezone `Mars/Olympus`"),
        "{all}"
    );
    assert!(
        all.contains("`windows.staging.allow` is empty, so staging could never be deployed"),
        "{all}"
    );
    assert!(
        all.contains("`windows.staging`: unknown field `tz`"),
        "{all}"
    );

    // Oversized, duplicated, hostile, wrong types.
    let many: Vec<String> = (0..51)
        .map(|i| format!("\"Mon 00:{:02}-23:00\"", i % 60))
        .collect();
    let e = errors(&format!(
        r#"{{"x": {{"provider": "shell", "repository": "o/r", "windows": {{"production": {{"allow": [{}]}}}}}}}}"#,
        many.join(", ")
    ))
    .join("\n");
    assert!(e.contains("lists 51 windows; the limit is 50"), "{e}");
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "windows": {"production": {"allow": ["Mon 09:00-17:00", "Mon  09:00-17:00"], "timezone": "../../../etc/passwd"}}}}"#,
    )
    .join("\n");
    assert!(e.contains("lists `Mon 09:00-17:00` twice"), "{e}");
    assert!(
        e.contains("`../../../etc/passwd` is not a timezone name"),
        "{e}"
    );
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "windows": ["Mon 09:00-17:00"]}}"#,
    )
    .join("\n");
    assert!(
        e.contains("`windows` must be an object of environment"),
        "{e}"
    );
    let e = errors(r#"{"x": {"provider": "shell", "repository": "o/r", "windows": {"production": {"timezone": "UTC"}}}}"#).join("\n");
    assert!(e.contains("`windows.production` needs `allow`"), "{e}");
    let e = errors(
        r#"{"x": {"provider": "shell", "repository": "o/r", "windows": {"production": {"allow": ["Mon 09:00-17:00"]}, "production": {"allow": ["Tue 09:00-17:00"]}}}}"#,
    )
    .join("\n");
    assert!(e.contains("`production` is given more than once"), "{e}");
}

/// An app with `approvals` set to `rule` (JSON) for production.
fn with_approvals(rule: &str) -> String {
    format!(
        r#"{{"web": {{"provider": "shell", "repository": "o/web",
            "environments": ["staging", "production"],
            "approvals": {rule}}}}}"#
    )
}

#[test]
fn approvals_load_with_defaults_and_skip_dry_runs_and_locks() {
    let apps = load(&with_approvals(
        r#"{"production": {"from": ["alice", "U024BE7LH", "github:carol"], "count": 2, "expires": "30m"}}"#,
    ));
    let web = apps.get("web").unwrap();
    let rule = web.approval_for("production", "deploy").expect("a rule");
    assert_eq!(rule.from, vec!["alice", "U024BE7LH", "github:carol"]);
    assert_eq!(rule.count, 2);
    assert_eq!(rule.expires, std::time::Duration::from_secs(1800));
    assert_eq!(
        rule.describe(),
        "waiting for 2 approvals from alice, U024BE7LH, github:carol"
    );
    assert!(web.approval_for("production", "deploy:migrate").is_some());
    assert!(web.approval_for("production", "deploy:noop").is_none());
    assert!(web.approval_for("production", "deploy:lock").is_none());
    assert!(web.approval_for("production", "deploy:unlock").is_none());
    assert!(web.approval_for("staging", "deploy").is_none());

    let apps = load(&with_approvals(r#"{"production": {"from": ["alice"]}}"#));
    let rule = apps.get("web").unwrap().approvals["production"].clone();
    assert_eq!(rule.count, 1);
    assert_eq!(rule.expires, std::time::Duration::from_secs(3600));
    assert_eq!(rule.describe(), "waiting for 1 approval from alice");
}

#[test]
fn approvals_errors_are_precise() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"production": {"from": ["alice"], "count": 0}}"#,
            "`approvals.production.count` must be a whole number of approvers, at least 1; got 0",
        ),
        (
            r#"{"production": {"from": ["alice"], "count": 2}}"#,
            "`approvals.production.count` is 2 but `from` lists only 1 approver: nobody could ever deploy there",
        ),
        (
            r#"{"production": {"from": ["alice"], "count": -1}}"#,
            "at least 1; got -1",
        ),
        (
            r#"{"production": {"from": ["alice"], "count": "1"}}"#,
            "at least 1; got \"1\"",
        ),
        (
            r#"{"prodution": {"from": ["alice"]}}"#,
            "`approvals` names `prodution`, which is not one of the app's environments (did you mean `production`?): production, staging",
        ),
        (
            r#"{"production": {"from": ["alice"], "expires": "forever"}}"#,
            "`approvals.production.expires`: `forever` is not a duration",
        ),
        (
            r#"{"production": {"from": ["alice"], "expires": "0s"}}"#,
            "`approvals.production.expires`: `0s` is zero: an approval needs some time",
        ),
        (
            r#"{"production": {"from": ["alice"], "expires": "48h"}}"#,
            "longer than the 24h limit",
        ),
        (
            r#"{"production": {"from": ["alice"], "expires": 3600}}"#,
            "`approvals.production.expires` must be a duration like \"1h\" or \"30m\", not a number",
        ),
        (
            r#"{"production": {"from": ["alice", "Alice"]}}"#,
            "`approvals.production.from` lists `Alice` twice; an approver counts once",
        ),
        (
            r#"{"production": {"from": []}}"#,
            "`approvals.production.from` is empty, so nobody could approve a deployment there",
        ),
        (
            r#"{"production": {"count": 1}}"#,
            "`approvals.production` needs `from`",
        ),
        (
            r#"{"production": {"from": "alice"}}"#,
            "`approvals.production.from` must be a list of approvers",
        ),
        (
            r#"{"production": {"from": ["alice"], "cuont": 1}}"#,
            "`approvals.production`: unknown field `cuont`, did you mean `count`?",
        ),
        (
            r#"{"production": ["alice"]}"#,
            "`approvals.production` must be an object like",
        ),
        (
            r#"["alice"]"#,
            "`approvals` must be an object of environment",
        ),
        // Hostile: shell and git argument injection, spaces, control characters.
        (
            r#"{"production": {"from": ["alice; rm -rf /"]}}"#,
            "entry `alice; rm -rf /` is not an approver",
        ),
        (
            r#"{"production": {"from": ["github:--upload-pack=x"]}}"#,
            "entry `github:--upload-pack=x` is not an approver",
        ),
        (
            r#"{"production": {"from": ["bob\u0007"]}}"#,
            "is not an approver",
        ),
        (
            r#"{"production": {"from": ["github:"]}}"#,
            "entry `github:` is not an approver",
        ),
    ];
    for (rule, expected) in cases {
        let e = errors(&with_approvals(rule));
        assert!(
            e.iter()
                .any(|m| m.contains(expected) && m.contains("`web`: ")),
            "{rule}: expected {expected:?} in {e:#?}"
        );
    }
    // Oversized: too many approvers, too long an entry.
    let many: Vec<String> = (0..101).map(|i| format!("\"user{i}\"")).collect();
    let e = errors(&with_approvals(&format!(
        r#"{{"production": {{"from": [{}]}}}}"#,
        many.join(",")
    )));
    assert!(
        e.iter()
            .any(|m| m.contains("lists 101 approvers; the limit is 100")),
        "{e:?}"
    );
    let long = "a".repeat(101);
    let e = errors(&with_approvals(&format!(
        r#"{{"production": {{"from": ["{long}"]}}}}"#
    )));
    assert!(e.iter().any(|m| m.contains("is not an approver")), "{e:?}");
    // A duplicated environment key is JSON's problem, reported as such.
    let e = errors(&with_approvals(
        r#"{"production": {"from": ["alice"]}, "production": {"from": ["bob"]}}"#,
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("`production` is given more than once")),
        "{e:?}"
    );
}

#[test]
fn approvers_named_in_chat_get_their_ids_resolved_once() {
    let mut apps = load(&with_approvals(
        r#"{"production": {"from": ["alice", "U0BOB0000", "github:carol"]}}"#,
    ));
    let users = std::collections::HashMap::from([("alice".to_string(), "U0ALICE00".to_string())]);
    let unresolved = apps.resolve_chat_names(&users, &Default::default());
    assert!(unresolved.is_empty(), "{unresolved:?}");
    let rule = &apps.get("web").unwrap().approvals["production"];
    assert_eq!(
        rule.from,
        vec!["alice", "U0BOB0000", "github:carol", "U0ALICE00"]
    );
    assert_eq!(rule.approvers(), ["alice", "U0BOB0000", "github:carol"]);
}
