//! Who a request is: a personal access token, an installation token or a
//! GitHub App JWT, checked as GitHub checks them, and the App endpoints that
//! turn an App into installation tokens.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::answers::{github_error, json_response, user_json};
use super::server::Caller;
use super::state::{IssuedToken, Shared, lock, rfc3339};

/// Checks the `Authorization` header: the token or a live installation token for
/// repository endpoints, an App JWT for App endpoints.
pub(super) fn authenticate(
    state: &Shared,
    headers: &HeaderMap,
    app_endpoint: bool,
) -> Result<Caller, String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let credential = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .or_else(|| value.strip_prefix("token "))
        .map(str::trim);
    let Some(credential) = credential.filter(|c| !c.is_empty()) else {
        return Err("Requires authentication".to_string());
    };
    if app_endpoint {
        return check_jwt(state, credential).map(Caller::App);
    }
    let st = lock(state);
    if credential == st.token {
        return Ok(Caller::Token);
    }
    if let Some(t) = st.tokens.get(credential)
        && !t.revoked
        && t.expires_at > Utc::now()
    {
        return Ok(Caller::Installation(t.installation));
    }
    Err("Bad credentials".to_string())
}

/// A well-formed RS256 JWT whose `iss` is a known App, issued at most a minute in the
/// future and expiring within ten minutes (GitHub's rules). The signature is checked
/// for shape (256 bytes for a 2048-bit key), not verified: no RSA crate here.
pub(super) fn check_jwt(state: &Shared, jwt: &str) -> Result<u64, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err("A JSON web token could not be decoded".to_string());
    };
    let decode_json =
        |s: &str| -> Option<Value> { serde_json::from_slice(&base64url_decode(s)?).ok() };
    let header = decode_json(header_b64)
        .ok_or_else(|| "A JSON web token could not be decoded".to_string())?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("'Algorithm' must be RS256".to_string());
    }
    let claims = decode_json(claims_b64)
        .ok_or_else(|| "A JSON web token could not be decoded".to_string())?;
    let signature = base64url_decode(signature_b64)
        .ok_or_else(|| "A JSON web token could not be decoded".to_string())?;
    if signature.len() < 128 {
        return Err("A JSON web token could not be decoded".to_string());
    }
    let iss = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| "'Issuer' claim ('iss') must be an Integer".to_string())?;
    let now = Utc::now().timestamp();
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past"
                .to_string(),
        );
    }
    if exp <= now || exp - iat > 11 * 60 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    if !lock(state).apps.contains(&iss) {
        return Err(format!("Integration not found (iss {iss})"));
    }
    Ok(iss)
}

pub(super) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&bytes[1..1 + take]);
    }
    Some(out)
}

/// 404 for a repository that does not exist or that the caller cannot reach.
pub(super) fn check_repo_access(state: &Shared, caller: &Caller, repo: &str) -> Option<Response> {
    let st = lock(state);
    if !st.repos.contains_key(repo) {
        return Some(github_error(StatusCode::NOT_FOUND, "Not Found"));
    }
    match caller {
        Caller::Token => None,
        Caller::Installation(id) => {
            let covered = st
                .installations
                .get(id)
                .is_some_and(|i| i.repos.iter().any(|r| r == repo));
            (!covered).then(|| github_error(StatusCode::NOT_FOUND, "Not Found"))
        }
        // A JWT only reaches App endpoints.
        Caller::App(_) => Some(github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
    }
}

pub(super) fn installation_for_repo(
    state: &Shared,
    api: &str,
    caller: &Caller,
    repo: &str,
) -> Response {
    let Caller::App(app_id) = caller else {
        return github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    let st = lock(state);
    let key = repo.to_ascii_lowercase();
    let found = st
        .installations
        .iter()
        .find(|(_, i)| i.app_id == *app_id && i.repos.contains(&key));
    let Some((id, _)) = found else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let owner = repo.split('/').next().unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "account": user_json(owner),
            "repository_selection": "selected",
            "access_tokens_url": format!("{api}/app/installations/{id}/access_tokens"),
            "repositories_url": format!("{api}/installation/repositories"),
            "html_url": format!("https://github.com/organizations/{owner}/settings/installations/{id}"),
            "app_id": app_id,
            "app_slug": "chima",
            "target_id": 1,
            "target_type": "Organization",
            "permissions": {"deployments": "write", "metadata": "read", "contents": "read", "statuses": "read", "checks": "read"},
            "events": ["deployment"],
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "single_file_name": null,
            "suspended_at": null,
            "suspended_by": null,
        }),
    )
}

pub(super) fn access_token(state: &Shared, caller: &Caller, id: &str) -> Response {
    let Caller::App(app_id) = caller else {
        return github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    let Ok(id) = id.parse::<i64>() else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut st = lock(state);
    if st
        .installations
        .get(&id)
        .is_none_or(|i| i.app_id != *app_id)
    {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    st.tokens_issued += 1;
    let token = format!("ghs_testkitInstallation{id}x{:06}", st.tokens_issued);
    let lifetime = chrono::Duration::from_std(st.token_lifetime).unwrap_or_default();
    let expires_at = Utc::now() + lifetime;
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            installation: id,
            expires_at,
            revoked: false,
        },
    );
    json_response(
        StatusCode::CREATED,
        &json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "permissions": {"deployments": "write", "metadata": "read", "contents": "read"},
            "repository_selection": "selected",
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trip_of_known_values() {
        assert_eq!(
            base64url_decode("eyJhbGciOiJSUzI1NiJ9"),
            Some(br#"{"alg":"RS256"}"#.to_vec())
        );
        assert_eq!(base64url_decode("Zm9vYg"), Some(b"foob".to_vec()));
        assert_eq!(base64url_decode("Zm9vYg=="), Some(b"foob".to_vec()));
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zm9v!"), None);
    }
}
