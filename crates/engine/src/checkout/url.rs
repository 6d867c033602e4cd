//! URLs: taking credentials out of them for messages, and deciding whether the
//! code host's token may go to one.

/// `text` with the credentials of `url` taken out: the URL itself, then its
/// userinfo and password wherever git may have echoed them on their own.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let Some((userinfo, _)) = split_userinfo(url) else {
        return text.to_string();
    };
    let mut text = text.replace(url, &redact_url(url));
    text = text.replace(userinfo, "***");
    // Short passwords are left alone: replacing `x` everywhere would garble
    // the message, and the userinfo above already went.
    if let Some((_, password)) = userinfo.split_once(':')
        && password.len() >= 4
    {
        text = text.replace(password, "***");
    }
    text
}

/// The userinfo of a `scheme://userinfo@host/...` URL and the byte offset
/// where it starts.
fn split_userinfo(url: &str) -> Option<(&str, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some((&rest[..at], start))
}

/// `url` with its userinfo (`user:password@`) replaced by `***@`, for error
/// texts and logs. Anything without `scheme://userinfo@` is returned as is.
pub fn redact_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((userinfo, start)) => {
            format!("{}***{}", &url[..start], &url[start + userinfo.len()..])
        }
        None => url.to_string(),
    }
}

/// Whether the GitHub token of the API at `github_api_url` may be sent with a
/// clone from `clone_url`: only to the GitHub it belongs to.
///
/// For `https://api.github.com` the clone URL must be `https://github.com/...`
/// on the default port. For any other API (GitHub Enterprise
/// `https://HOST/api/v3`, a local fake) the clone URL must have the API's
/// scheme, host (case-insensitive) and port. URLs with userinfo, local paths,
/// `file://`, `ssh://` and `git@host:...` never get the token. Anything that
/// does not parse strictly is refused rather than guessed at, so that this
/// check and curl can never disagree on the host.
pub fn token_allowed(clone_url: &str, github_api_url: &str) -> bool {
    let (Some(clone), Some(api)) = (Origin::parse(clone_url), Origin::parse(github_api_url)) else {
        return false;
    };
    if api.scheme == "https" && api.host == "api.github.com" && api.port == 443 {
        return clone.scheme == "https" && clone.host == "github.com" && clone.port == 443;
    }
    clone == api
}

/// Scheme, host and port of an `http(s)://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: &'static str,
    /// Lowercase; an IPv6 address keeps its brackets.
    host: String,
    port: u16,
}

impl Origin {
    fn parse(url: &str) -> Option<Origin> {
        // Printable ASCII only, and no backslash: some parsers take `\` for
        // `/`, which would move where the host ends.
        if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return None;
        }
        let (scheme, rest) = url.split_once("://")?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "https" => ("https", 443),
            "http" => ("http", 80),
            _ => return None,
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{addr}]"), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !host_ok {
                return None;
            }
            (host.to_string(), port)
        };
        let port = match port {
            None => default_port,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|&p| p != 0)?
            }
            Some(_) => return None,
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_allowed_table() {
        let gh = "https://api.github.com";
        let cases: &[(&str, &str, bool)] = &[
            ("https://github.com/o/r.git", gh, true),
            (
                "https://github.com/o/r.git",
                "https://api.github.com/",
                true,
            ),
            ("https://GitHub.com/o/r", gh, true),
            ("https://github.com:443/o/r.git", gh, true),
            ("https://github.com", gh, true),
            ("http://github.com/o/r.git", gh, false),
            ("https://github.com:8443/o/r.git", gh, false),
            ("https://api.github.com/o/r.git", gh, false),
            ("https://gist.github.com/o/r.git", gh, false),
            ("https://github.com.evil.example/o/r.git", gh, false),
            ("https://evil.example/github.com/o/r.git", gh, false),
            ("https://github.com@evil.example/o/r.git", gh, false),
            ("https://user:pw@github.com/o/r.git", gh, false),
            ("https://x-access-token@github.com/o/r.git", gh, false),
            ("https://evil.example\\@github.com/o/r.git", gh, false),
            ("https://github.com./o/r.git", gh, false),
            ("https://github.com:/o/r.git", gh, false),
            ("https:// github.com/o/r.git", gh, false),
            ("ssh://git@github.com/o/r.git", gh, false),
            ("git@github.com:o/r.git", gh, false),
            ("git://github.com/o/r.git", gh, false),
            ("file:///srv/o/r.git", gh, false),
            ("/srv/o/r.git", gh, false),
            ("github.com/o/r.git", gh, false),
            ("", gh, false),
            // GitHub Enterprise.
            (
                "https://ghe.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                true,
            ),
            (
                "https://GHE.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                true,
            ),
            (
                "https://ghe.corp.example:443/o/r.git",
                "https://ghe.corp.example/api/v3",
                true,
            ),
            (
                "http://ghe.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://github.com/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://ghe.corp.example:8443/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://other.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://ghe.corp.example/o/r.git",
                "https://ghe.corp.example:8443/api/v3",
                false,
            ),
            // A local fake.
            (
                "http://127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080",
                true,
            ),
            (
                "http://127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080/",
                true,
            ),
            (
                "http://127.0.0.1:8081/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            ("http://127.0.0.1/o/r.git", "http://127.0.0.1:8080", false),
            ("http://127.0.0.1/o/r.git", "http://127.0.0.1", true),
            ("http://127.0.0.1:80/o/r.git", "http://127.0.0.1", true),
            (
                "https://127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            (
                "http://localhost:8080/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            ("http://[::1]:8080/o/r.git", "http://[::1]:8080", true),
            ("http://[::1]:8081/o/r.git", "http://[::1]:8080", false),
            (
                "http://u:p@127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            ("/srv/o/r.git", "http://127.0.0.1:8080", false),
            // A scope that is not an API URL allows nothing.
            ("https://github.com/o/r.git", "", false),
            ("https://github.com/o/r.git", "api.github.com", false),
        ];
        for (clone, api, want) in cases {
            assert_eq!(token_allowed(clone, api), *want, "{clone} with {api}");
        }
    }

    #[test]
    fn redact_url_cases() {
        let cases = [
            (
                "https://user:s3cr3t@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            (
                "https://x-access-token@github.com/o/r",
                "https://***@github.com/o/r",
            ),
            (
                "http://u:p%40ss@127.0.0.1:9/x.git",
                "http://***@127.0.0.1:9/x.git",
            ),
            ("https://u:p@ss@host/x.git", "https://***@host/x.git"),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            (
                "https://github.com/o/r@v1.git",
                "https://github.com/o/r@v1.git",
            ),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            (
                "ssh://git@github.com/o/r.git",
                "ssh://***@github.com/o/r.git",
            ),
            ("/srv/repo", "/srv/repo"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn scrub_takes_credentials_out_of_git_messages() {
        let url = "https://user:s3cr3t@host/x.git";
        let text =
            "fatal: unable to access 'https://user:s3cr3t@host/x.git/': no; user:s3cr3t; s3cr3t";
        let out = scrub(text, url);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("https://***@host/x.git/"), "{out}");
        assert_eq!(scrub("plain", "/srv/repo"), "plain");
    }
}
