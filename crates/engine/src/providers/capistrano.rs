//! `capistrano`: `bundle exec cap <env> <task>` with `BRANCH=<ref>`, or plain
//! `cap` when the repository has no Gemfile. Hosts, when typed, go in `HOSTS`
//! (Capistrano's host filter).

use super::{Job, Plan};

pub fn plan(job: Job<'_>) -> Result<Plan, String> {
    let env_name = job.deployment.environment.clone();
    let task = job.task().to_string();
    let argv = if job.checkout.join("Gemfile").is_file() {
        vec!["bundle".into(), "exec".into(), "cap".into(), env_name, task]
    } else {
        vec!["cap".into(), env_name, task]
    };
    let mut env = vec![("BRANCH".to_string(), job.git_ref().to_string())];
    if let Some(hosts) = &job.deployment.hosts {
        env.push(("HOSTS".to_string(), hosts.clone()));
    }
    Ok(Plan::Command { argv, env })
}
