//! The hubot-deploy compatible `payload` of a GitHub Deployment.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::identity::{ChatTarget, FasengNotes};
use crate::request::SignedRequest;

/// The key under which faseng keeps its own notes in a stored payload.
pub const PAYLOAD_NOTES_KEY: &str = "_faseng";

/// hubot-deploy's `payload.notify`: where the command was typed. Display text from
/// the sender; it grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// `slack`, `shell`, ...
    #[serde(default)]
    pub adapter: Option<String>,
    /// Channel id.
    #[serde(default)]
    pub room: Option<String>,
    /// User id (or name when the adapter has no ids).
    #[serde(default)]
    pub user: Option<String>,
    /// User name.
    #[serde(default)]
    pub user_name: Option<String>,
    /// Thread to answer in.
    #[serde(default)]
    pub thread_ts: Option<String>,
}

/// The payload: what chima writes and faseng reads. Every field is optional on the
/// way in (hubot-deploy, heaven-era tools and people with `curl` write payloads too).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPayload {
    /// The app's name in app.json (chooses among apps sharing one repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The bot that created it.
    #[serde(rename = "robotName", default, skip_serializing_if = "Option::is_none")]
    pub robot_name: Option<String>,
    /// hubot-deploy's host filter; `""` when none (as hubot-deploy writes it).
    #[serde(default)]
    pub hosts: String,
    /// The one-time password typed after the command, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yubikey: Option<String>,
    /// Where the command was typed (display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// The app entry without secrets, for the record. Never read to run anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// chima's signed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chima: Option<SignedRequest>,
    /// Set by faseng's auto-deploy: the ref and the contexts that were green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy: Option<AutoDeployNote>,
    /// faseng's decisions; see [`FasengNotes`].
    #[serde(rename = "_faseng", default, skip_serializing_if = "Option::is_none")]
    pub faseng: Option<FasengNotes>,
}

/// What auto-deploy records in the payload it creates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoDeployNote {
    /// The branch whose head was deployed.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// The contexts that were green.
    #[serde(default)]
    pub contexts: Vec<String>,
}

impl DeploymentPayload {
    /// Reads a payload as sent, field by field: a field of the wrong type is left out
    /// and named in the returned list, so that one malformed field (hostile or not)
    /// never makes the rest unreadable. A payload that is not an object (hubot-deploy's
    /// encrypted string) reads as empty.
    pub fn read(value: &Value) -> (DeploymentPayload, Vec<String>) {
        let mut problems = Vec::new();
        let Value::Object(map) = value else {
            if !value.is_null() {
                problems.push(format!(
                    "the payload is {}, not an object; it was ignored",
                    kind(value)
                ));
            }
            return (DeploymentPayload::default(), problems);
        };
        let p = DeploymentPayload {
            name: field(map, "name", &mut problems),
            robot_name: field(map, "robotName", &mut problems),
            hosts: field::<Option<String>>(map, "hosts", &mut problems)
                .flatten()
                .unwrap_or_default(),
            yubikey: field(map, "yubikey", &mut problems),
            notify: field(map, "notify", &mut problems),
            config: map.get("config").cloned().filter(|c| !c.is_null()),
            chima: field(map, "chima", &mut problems),
            auto_deploy: field(map, "auto_deploy", &mut problems),
            faseng: field(map, PAYLOAD_NOTES_KEY, &mut problems),
        };
        (p, problems)
    }

    /// The host filter, if one was given.
    pub fn hosts(&self) -> Option<&str> {
        Some(self.hosts.trim()).filter(|h| !h.is_empty())
    }

    /// The JSON form, as chima sends it.
    pub fn to_value(&self) -> Value {
        // A struct of strings, options and JSON values always serialises.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `stored` (the payload as received) with `notes` under `_faseng`, replacing
    /// whatever the sender put there. A payload that is not an object is kept under
    /// `_sent`, for the record.
    pub fn with_notes(stored: &Value, notes: &FasengNotes) -> Value {
        let mut map = match stored {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("_sent".to_string(), other.clone());
                m
            }
        };
        map.insert(
            PAYLOAD_NOTES_KEY.to_string(),
            serde_json::to_value(notes).unwrap_or(Value::Null),
        );
        Value::Object(map)
    }

    /// faseng's notes of a stored payload, if it has valid ones.
    pub fn notes_of(stored: &Value) -> Option<FasengNotes> {
        stored
            .get(PAYLOAD_NOTES_KEY)
            .and_then(|n| serde_json::from_value(n.clone()).ok())
    }

    /// The break-glass reason of a stored deployment, when a verified request made it
    /// an emergency (never from a payload field a sender writes: `_faseng` is replaced
    /// by faseng's own notes on the way in).
    pub fn emergency_of(stored: &Value) -> Option<String> {
        Self::notes_of(stored).and_then(|n| n.emergency)
    }

    /// Where a stored deployment's chat messages go, as faseng decided.
    pub fn chat_target_of(stored: &Value) -> Option<ChatTarget> {
        Self::notes_of(stored).and_then(|n| n.chat)
    }
}

fn field<T: DeserializeOwned>(
    map: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    let v = map.get(key)?;
    if v.is_null() {
        return None;
    }
    match serde_json::from_value(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("payload.{key} was ignored: {e}"));
            None
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::identity::{Identity, IdentitySource};

    #[test]
    fn a_hubot_deploy_payload_reads() {
        let v = json!({
            "name": "hubot", "robotName": "hubot", "hosts": "",
            "notify": {"adapter": "slack", "room": "C1", "user": "U1", "user_name": "alice", "thread_ts": null},
            "config": {"provider": "heroku", "repository": "x/y"},
        });
        let (p, problems) = DeploymentPayload::read(&v);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.name.as_deref(), Some("hubot"));
        assert_eq!(p.hosts(), None);
        assert_eq!(p.notify.unwrap().user_name.as_deref(), Some("alice"));
    }

    #[test]
    fn one_malformed_field_does_not_spoil_the_rest() {
        let v = json!({"name": 5, "hosts": "web1", "notify": "C1", "chima": {"request": 1}});
        let (p, problems) = DeploymentPayload::read(&v);
        assert_eq!(p.name, None);
        assert_eq!(p.hosts(), Some("web1"));
        assert_eq!(p.notify, None);
        assert_eq!(p.chima, None);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn string_payloads_read_as_empty_and_are_kept_for_the_record() {
        let v = json!("c2VjcmV0");
        let (p, problems) = DeploymentPayload::read(&v);
        assert_eq!(p, DeploymentPayload::default());
        assert_eq!(problems.len(), 1);
        let notes = FasengNotes {
            delivery: None,
            identity: Identity::github("octocat"),
            chat: None,
            notes: vec![],
            emergency: None,
        };
        let stored = DeploymentPayload::with_notes(&v, &notes);
        assert_eq!(stored["_sent"], v);
        assert_eq!(DeploymentPayload::notes_of(&stored), Some(notes));
    }

    #[test]
    fn a_senders_notes_are_replaced() {
        let forged = json!({"_faseng": {"identity": {"source": "trusted", "chat_user_name": "admin"},
                                         "chat": {"adapter": "slack", "room": "C-ANY"}}});
        let notes = FasengNotes {
            delivery: Some("d1".into()),
            identity: Identity::github("mallory"),
            chat: None,
            notes: vec![],
            emergency: None,
        };
        let stored = DeploymentPayload::with_notes(&forged, &notes);
        let back = DeploymentPayload::notes_of(&stored).unwrap();
        assert_eq!(back.identity.source, IdentitySource::GitHub);
        assert_eq!(DeploymentPayload::chat_target_of(&stored), None);
    }
}
