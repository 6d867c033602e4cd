//! `capistrano`: `cap <env> <task>` with `BRANCH=<ref>`, `HOSTS=<hosts>` (Capistrano's
//! host filter) and `USER=<requester>` (Capistrano's revision log names who deployed).
//! With a Gemfile, as heaven did: `bundle install` first (`--local` first, so that a
//! machine without network but with the gems works; then a normal install), then
//! `bundle exec cap <env> <task>`. Bundler's output is part of the log.
//!
//! A dry run (`deploy:noop`) is `cap <env> deploy --dry-run`: Capistrano's own switch,
//! which prints every command of the deploy task (its SSHKit printer backend) and runs
//! none on the servers. `bundle install` still runs: it changes the checkout only.

use super::{Job, Plan, Setup};

/// Plans `cap <env> <task>`, behind `bundle exec` and a `bundle install` step when the
/// checkout has a Gemfile.
pub fn plan(job: Job<'_>) -> Result<Plan, String> {
    let env_name = job.deployment.environment.clone();
    let task = job.task().to_string();
    let bundled = job.checkout.join("Gemfile").is_file();
    let mut argv: Vec<String> = if bundled {
        vec!["bundle".into(), "exec".into(), "cap".into(), env_name, task]
    } else {
        vec!["cap".into(), env_name, task]
    };
    if job.dry_run() {
        argv.push("--dry-run".into());
    }
    let mut env = vec![("BRANCH".to_string(), job.git_ref().to_string())];
    if let Some(hosts) = &job.deployment.hosts {
        env.push(("HOSTS".to_string(), hosts.clone()));
    }
    env.push(("USER".to_string(), job.deployment.requester.clone()));
    if job.dry_run() {
        env.push((super::NOOP_ENV.0.to_string(), super::NOOP_ENV.1.to_string()));
    }
    let mut plan = Plan::command(argv, env);
    if bundled && let Plan::Command { setup, .. } = &mut plan {
        setup.push(Setup {
            what: "bundle install",
            attempts: vec![
                vec!["bundle".into(), "install".into(), "--local".into()],
                vec!["bundle".into(), "install".into()],
            ],
        });
    }
    Ok(plan)
}
