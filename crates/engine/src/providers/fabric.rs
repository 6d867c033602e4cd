//! `fabric`: `fab -R <env> <task>:branch_name=<ref>`, heaven's default, or
//! `fab -R <env> <fabric_task>:branch_name=<ref>` when the app names a task.
//! Hosts, when typed, go in `-H`.

use super::{Job, Plan};

pub fn plan(job: Job<'_>) -> Result<Plan, String> {
    let task = job.app.fabric_task.as_deref().unwrap_or(job.task());
    let mut argv = vec![
        "fab".to_string(),
        "-R".to_string(),
        job.deployment.environment.clone(),
    ];
    if let Some(hosts) = &job.deployment.hosts {
        argv.push("-H".to_string());
        argv.push(hosts.clone());
    }
    argv.push(format!("{task}:branch_name={}", escape(job.git_ref())));
    Ok(Plan::Command {
        argv,
        env: Vec::new(),
    })
}

/// Fabric splits task arguments on `,` and `=`; a backslash escapes them, so a
/// ref cannot smuggle in another argument.
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
    #[test]
    fn escapes_argument_separators() {
        assert_eq!(super::escape("a,b=c\\d"), "a\\,b\\=c\\\\d");
        assert_eq!(super::escape("feature/x"), "feature/x");
    }
}
