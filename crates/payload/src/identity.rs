//! Who asked for a deployment, as faseng verified it, and what faseng decided about
//! the rest of the request (`_faseng` in the stored payload).

use serde::{Deserialize, Serialize};

/// How faseng knows who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentitySource {
    /// chima's signature over the request verified: the chat user is who chima says.
    ChimaSigned,
    /// The deployment was made by a trusted caller in the same trust domain: chima's
    /// embedded engine in-process, or a holder of `FASENG_API_TOKEN`.
    Trusted,
    /// Only GitHub vouches: `deployment.creator.login` of a signed webhook.
    GitHub,
    /// faseng's own auto-deploy, allowed by app.json's `auto_deploy`.
    AutoDeploy,
}

/// A verified identity. Never built from a name in a payload: only from chima's
/// verified request, a trusted in-process caller, or GitHub's creator login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// How it was verified.
    pub source: IdentitySource,
    /// The chat user id (Slack `U...`), when a chat user asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_user_id: Option<String>,
    /// The chat user's name, when a chat user asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_user_name: Option<String>,
    /// The GitHub login that created the deployment, when GitHub says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_login: Option<String>,
}

impl Identity {
    /// A chat user vouched for by chima (signed) or by a trusted caller.
    pub fn chat(source: IdentitySource, user_id: Option<String>, user_name: String) -> Identity {
        Identity {
            source,
            chat_user_id: user_id.filter(|u| !u.is_empty()),
            chat_user_name: Some(user_name).filter(|u| !u.is_empty()),
            github_login: None,
        }
    }

    /// Only GitHub's word: the creator of the deployment.
    pub fn github(login: &str) -> Identity {
        Identity {
            source: IdentitySource::GitHub,
            chat_user_id: None,
            chat_user_name: None,
            github_login: Some(login.to_string()),
        }
    }

    /// faseng's own auto-deploy.
    pub fn auto_deploy() -> Identity {
        Identity {
            source: IdentitySource::AutoDeploy,
            chat_user_id: None,
            chat_user_name: Some("auto-deploy".to_string()),
            github_login: None,
        }
    }

    /// Adds the GitHub creator to a chat identity (both are true: chima's bot created
    /// the deployment on behalf of the chat user).
    pub fn with_github_login(mut self, login: &str) -> Identity {
        if !login.is_empty() {
            self.github_login = Some(login.to_string());
        }
        self
    }

    /// The stable key a lock holder is compared by: `chat:<user id>` (or `chat:<name>`
    /// for adapters without ids, such as the terminal), `github:<login>`, or
    /// `auto-deploy`. Display names change; keys do not grant by a rename.
    pub fn key(&self) -> String {
        if self.source == IdentitySource::AutoDeploy {
            return "auto-deploy".to_string();
        }
        match (&self.chat_user_id, &self.chat_user_name, &self.github_login) {
            (Some(id), _, _) => format!("chat:{id}"),
            (None, Some(name), _) => format!("chat:{}", name.to_ascii_lowercase()),
            (None, None, Some(login)) => format!("github:{}", login.to_ascii_lowercase()),
            (None, None, None) => "unknown".to_string(),
        }
    }

    /// How to name this identity to people.
    pub fn display(&self) -> String {
        match (&self.chat_user_name, &self.chat_user_id, &self.github_login) {
            (Some(name), _, _) => name.clone(),
            (None, Some(id), _) => id.clone(),
            (None, None, Some(login)) => format!("github:{login}"),
            (None, None, None) => "unknown".to_string(),
        }
    }

    /// Whether one of `entries` (app.json `allowed_users` of an environment) names
    /// this identity: `github:<login>` entries match the verified GitHub login; other
    /// entries match the chat user's id exactly or its name (case-insensitive, a
    /// leading `@` ignored). Auto-deploy is never listed: `auto_deploy` allows it.
    pub fn is_listed(&self, entries: &[String]) -> bool {
        if self.source == IdentitySource::AutoDeploy {
            return false;
        }
        entries.iter().any(|entry| {
            let entry = entry.trim();
            if let Some(login) = entry.strip_prefix("github:") {
                return self
                    .github_login
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(login.trim()));
            }
            let entry = entry.trim_start_matches('@');
            self.chat_user_id.as_deref() == Some(entry)
                || self
                    .chat_user_name
                    .as_deref()
                    .is_some_and(|n| n.trim_start_matches('@').eq_ignore_ascii_case(entry))
        })
    }
}

/// Where a deployment's chat messages go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTarget {
    /// `slack` (the only chat faseng posts to) or `shell` (chima's terminal).
    pub adapter: String,
    /// A channel id or name.
    pub room: String,
    /// The thread to post in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
}

/// What faseng decided about a deployment's request, stored as `_faseng` in its
/// payload. Written only by faseng's intake, chima's embedded engine and faseng's
/// API; anything a sender put under `_faseng` is overwritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FasengNotes {
    /// The `X-GitHub-Delivery` that brought it, if a webhook did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Who asked, verified.
    pub identity: Identity,
    /// Where its chat messages go, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatTarget>,
    /// What faseng set aside from the request and why, for the deployment's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Break-glass: the reason, when a verified request asked to pass deploy windows
    /// and freezes (chima's signed request, faseng's API token, chima's embedded engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(e: &[&str]) -> Vec<String> {
        e.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn github_entries_match_only_the_verified_login() {
        let gh = Identity::github("Carol");
        assert!(gh.is_listed(&entries(&["github:carol"])));
        assert!(
            !gh.is_listed(&entries(&["carol"])),
            "a bare name is a chat user"
        );
        let chat = Identity::chat(
            IdentitySource::ChimaSigned,
            Some("U1".into()),
            "carol".into(),
        );
        assert!(!chat.is_listed(&entries(&["github:carol"])));
        assert!(chat.is_listed(&entries(&["carol"])));
        assert!(chat.is_listed(&entries(&["U1"])));
        assert!(chat.is_listed(&entries(&["@Carol"])));
        assert!(!chat.is_listed(&entries(&["u1"])), "ids are exact");
    }

    #[test]
    fn auto_deploy_is_never_listed_and_has_its_own_key() {
        let a = Identity::auto_deploy();
        assert!(!a.is_listed(&entries(&["auto-deploy"])));
        assert_eq!(a.key(), "auto-deploy");
    }

    #[test]
    fn keys_prefer_ids_over_names() {
        let with_id = Identity::chat(
            IdentitySource::ChimaSigned,
            Some("U1".into()),
            "Alice".into(),
        )
        .with_github_login("chima-bot");
        assert_eq!(with_id.key(), "chat:U1");
        assert_eq!(with_id.display(), "Alice");
        let shell = Identity::chat(IdentitySource::Trusted, None, "Alice".into());
        assert_eq!(shell.key(), "chat:alice");
        assert_eq!(Identity::github("Carol").key(), "github:carol");
        assert_eq!(Identity::github("Carol").display(), "github:Carol");
    }
}
