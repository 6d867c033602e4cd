//! `capistrano`: `cap <env> <task>` with `BRANCH=<ref>`, `HOSTS=<hosts>` (Capistrano's
//! host filter) and `USER=<requester>` (Capistrano's revision log names who deployed).
//! With a Gemfile, as heaven did: `bundle install` first (`--local` first, so that a
//! machine without network but with the gems works; then a normal install), then
//! `bundle exec cap <env> <task>`. Bundler's output is part of the log.

use super::{Job, Plan, Setup};

/// Plans `cap <env> <task>`, behind `bundle exec` and a `bundle install` step when the
/// checkout has a Gemfile.
pub fn plan(job: Job<'_>) -> Result<Plan, String> {
    let env_name = job.deployment.environment.clone();
    let task = job.task().to_string();
    let bundled = job.checkout.join("Gemfile").is_file();
    let argv = if bundled {
        vec!["bundle".into(), "exec".into(), "cap".into(), env_name, task]
    } else {
        vec!["cap".into(), env_name, task]
    };
    let mut env = vec![("BRANCH".to_string(), job.git_ref().to_string())];
    if let Some(hosts) = &job.deployment.hosts {
        env.push(("HOSTS".to_string(), hosts.clone()));
    }
    env.push(("USER".to_string(), job.deployment.requester.clone()));
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
