//! What the fake GitHub holds between requests (repositories, scripted
//! replies, installations, issued tokens, everything received), and the shas it
//! derives for refs no test set.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use super::{
    Endpoint, FakeCheckRun, FakeDeployment, FakeDeploymentStatus, FakeManifestApp, FakeStatus,
    Recorded, Reply,
};

pub(super) struct Repo {
    pub(super) id: i64,
    pub(super) full_name: String,
    pub(super) default_branch: String,
    pub(super) private: bool,
    pub(super) refs: HashMap<String, String>,
    pub(super) statuses: HashMap<String, Vec<FakeStatus>>,
    pub(super) checks: HashMap<String, Vec<FakeCheckRun>>,
}

pub(super) struct Script {
    pub(super) endpoint: Endpoint,
    pub(super) deployment: Option<i64>,
    pub(super) reply: Reply,
    pub(super) remaining: u32,
}

pub(super) struct Installation {
    pub(super) app_id: u64,
    pub(super) repos: Vec<String>,
}

pub(super) struct IssuedToken {
    pub(super) installation: i64,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) revoked: bool,
}

pub(super) struct State {
    pub(super) token: String,
    pub(super) repos: BTreeMap<String, Repo>,
    pub(super) deployments: Vec<FakeDeployment>,
    pub(super) statuses: Vec<FakeDeploymentStatus>,
    pub(super) scripts: Vec<Script>,
    pub(super) requests: Vec<Recorded>,
    pub(super) apps: Vec<u64>,
    pub(super) installations: BTreeMap<i64, Installation>,
    pub(super) tokens: HashMap<String, IssuedToken>,
    pub(super) token_lifetime: Duration,
    pub(super) tokens_issued: usize,
    pub(super) next_deployment: i64,
    pub(super) next_status: i64,
    pub(super) next_repo: i64,
    /// `repo|base|head` -> the compare status (`ahead`, `behind`, `identical`, `diverged`).
    pub(super) compares: HashMap<String, String>,
    /// With [`FakeGitHub::limit_write_rate`]: the least time between two writes on
    /// one credential.
    pub(super) write_gap: Option<Duration>,
    /// `Authorization` value -> when its last write arrived.
    pub(super) last_write: HashMap<String, Instant>,
    /// App-from-manifest codes not yet exchanged, with the App each one creates.
    pub(super) manifest_codes: HashMap<String, FakeManifestApp>,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the requests
    // from the next assertion.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sha derived from a ref name: stable, 40 hex digits, different per ref.
pub(super) fn derived_sha(git_ref: &str) -> String {
    // FNV-1a, spread over five words: not cryptographic, just distinct and stable.
    let mut out = String::with_capacity(40);
    for round in 0u64..5 {
        let mut h: u64 = 0xcbf29ce484222325 ^ round;
        for b in git_ref.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{:08x}", h as u32));
    }
    out
}

pub(super) fn resolve(repo: Option<&Repo>, git_ref: &str) -> String {
    if let Some(sha) = repo.and_then(|r| r.refs.get(git_ref)) {
        return sha.clone();
    }
    if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        return git_ref.to_ascii_lowercase();
    }
    derived_sha(git_ref)
}

pub(super) fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_shas_are_stable_and_distinct() {
        let a = derived_sha("main");
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, derived_sha("main"));
        assert_ne!(a, derived_sha("topic"));
    }
}
