//! `fabric`: by the installed Fabric's major version.
//!
//! - Fabric 2 and 3 (what Debian and PyPI ship): `fab [-H <hosts>] <task>
//!   --branch-name=<ref>`, with the environment in `DEPLOY_ENV` (Fabric 2 has no roles).
//!   `deploy:migrate` runs the fabfile's `deploy.migrate` when it has a `deploy`
//!   namespace holding `migrate` (read from `fab --list`), else its `migrate` task.
//! - Fabric 1 (the `Fabric3` fork): heaven's `fab -R <env> [-H <hosts>]
//!   <task>:branch_name=<ref>`. Fabric 2 reads `-R` as `--dry` and has no `task:arg=value`,
//!   so sending this to a newer Fabric fails every deploy, or dry-runs one and reports
//!   success: the version decides.
//!
//! `fabric_task` overrides the task; `fabric_version` in app.json overrides detection.
//!
//! A dry run (`deploy:noop`) is `fab --dry [-H <hosts>] deploy --branch-name=<ref>` on
//! Fabric 2 and 3: `--dry` (Invoke's `run.dry`) echoes each `run`/`sudo`/`local`
//! command instead of running it. Fabric 1 has no dry run (its `-R` is roles, and
//! nothing else stops its commands), so a dry run there is refused before anything runs.

use super::{Job, Plan};

/// What the engine found out about the Fabric it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricInfo {
    /// The major version (`fab --version`, or app.json's `fabric_version`).
    pub major: u8,
    /// The fabfile's tasks (`fab --list`), when they were needed to pick one.
    pub tasks: Vec<String>,
}

/// Plans `fab` the way the installed Fabric's major version reads it (see the module
/// docs).
pub fn plan(job: Job<'_>, info: &FabricInfo) -> Result<Plan, String> {
    let mut argv = vec!["fab".to_string()];
    if job.dry_run() && info.major <= 1 {
        return Err(format!(
            "Fabric {} has no dry run (only Fabric 2 and later have `--dry`), so `deploy:noop` cannot run for {}; nothing was run",
            info.major, job.app.name
        ));
    }
    if info.major <= 1 {
        let task = job.app.fabric_task.as_deref().unwrap_or(job.task());
        argv.push("-R".to_string());
        argv.push(job.deployment.environment.clone());
        if let Some(hosts) = &job.deployment.hosts {
            argv.push("-H".to_string());
            argv.push(hosts.clone());
        }
        argv.push(format!("{task}:branch_name={}", escape(job.git_ref())));
        return Ok(Plan::command(argv, Vec::new()));
    }
    let task = match &job.app.fabric_task {
        Some(t) => t.clone(),
        None => task_name(job.task(), &info.tasks),
    };
    // `--dry` is one of fab's own flags: it goes before the task, which takes the
    // arguments after it.
    if job.dry_run() {
        argv.push("--dry".to_string());
    }
    if let Some(hosts) = &job.deployment.hosts {
        argv.push("-H".to_string());
        argv.push(hosts.clone());
    }
    argv.push(task);
    argv.push(format!("--branch-name={}", job.git_ref()));
    let mut env = vec![("DEPLOY_ENV".to_string(), job.deployment.environment.clone())];
    if job.dry_run() {
        env.push((super::NOOP_ENV.0.to_string(), super::NOOP_ENV.1.to_string()));
    }
    Ok(Plan::command(argv, env))
}

/// The Fabric 2+ task for a hubot-deploy task: `deploy` is `deploy`; `deploy:migrate`
/// is `deploy.migrate` when the fabfile has it, else `migrate`.
pub fn task_name(task: &str, tasks: &[String]) -> String {
    match task.split_once(':') {
        None => task.to_string(),
        Some((namespace, word)) => {
            let dotted = format!("{namespace}.{word}");
            if tasks.contains(&dotted) {
                dotted
            } else {
                word.to_string()
            }
        }
    }
}

/// The task names in `fab --list` output (Fabric 2 and 3): the first word of each
/// indented line after `Available tasks:`.
pub fn parse_list(output: &str) -> Vec<String> {
    output
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Available tasks"))
        .skip(1)
        .filter(|l| l.starts_with(' ') || l.starts_with('\t'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The major version in `fab --version` output: `Fabric 2.6.0` (2 and 3) or
/// `Fabric3 1.14.post1` (the Fabric 1 fork).
pub fn parse_version(output: &str) -> Option<u8> {
    let first = output.lines().find(|l| !l.trim().is_empty())?;
    let version = first
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    version.split('.').next()?.parse().ok()
}

/// Fabric 1 splits task arguments on `,` and `=`; a backslash escapes them, so a ref
/// cannot smuggle in another argument.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_argument_separators() {
        assert_eq!(escape("a,b=c\\d"), "a\\,b\\=c\\\\d");
        assert_eq!(escape("feature/x"), "feature/x");
    }

    #[test]
    fn versions_from_each_fabric() {
        assert_eq!(
            parse_version("Fabric 2.6.0\nParamiko 2.12.0\nInvoke 2.0.0\n"),
            Some(2)
        );
        assert_eq!(parse_version("Fabric 3.2.2\nParamiko 3.4.0\n"), Some(3));
        assert_eq!(
            parse_version("Fabric3 1.14.post1\nParamiko 2.7.2\n"),
            Some(1)
        );
        assert_eq!(parse_version("command not found"), None);
    }

    #[test]
    fn namespaced_tasks_are_preferred() {
        let list = parse_list(
            "Available tasks:\n\n  deploy             Ship it.\n  deploy.migrate     Run migrations.\n  migrate\n",
        );
        assert_eq!(list, ["deploy", "deploy.migrate", "migrate"]);
        assert_eq!(task_name("deploy:migrate", &list), "deploy.migrate");
        assert_eq!(
            task_name("deploy:migrate", &["migrate".to_string()]),
            "migrate"
        );
        assert_eq!(task_name("deploy", &list), "deploy");
    }
}
