//! Keeping secrets out of stored logs. A provider may echo its environment or a
//! URL with a token in it; what is stored and shown on the log page must not
//! hold it.

/// Replaces known secret values and well-known token shapes with `[REDACTED]`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Exact values to hide (API keys, tokens passed to the provider), longest
    /// first so that one secret containing another is hidden whole.
    values: Vec<String>,
}

/// Prefixes of tokens that are secrets wherever they appear (GitHub, Slack,
/// Heroku), followed by token characters.
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    "HRKU-",
];

const MASK: &str = "[REDACTED]";

impl Redactor {
    /// A redactor for these values. Values shorter than 6 characters are
    /// ignored: masking `abc` everywhere would garble the log and hide nothing.
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values: Vec<String> = values
            .into_iter()
            .map(Into::into)
            .filter(|v| v.len() >= 6)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// The line with every secret replaced.
    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        for prefix in TOKEN_PREFIXES {
            let mut from = 0;
            while let Some(pos) = out[from..].find(prefix) {
                let start = from + pos;
                let rest = &out[start + prefix.len()..];
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .unwrap_or(rest.len());
                if len >= 8 {
                    out.replace_range(start..start + prefix.len() + len, MASK);
                    from = start + MASK.len();
                } else {
                    from = start + prefix.len();
                }
            }
        }
        mask_url_passwords(&mut out);
        out
    }
}

/// `scheme://user:password@host` -> `scheme://user:[REDACTED]@host`, wherever a
/// credential URL appears in a line (a `DATABASE_URL`, a clone URL with a token).
fn mask_url_passwords(out: &mut String) {
    let mut from = 0;
    while let Some(pos) = out[from..].find("://") {
        let start = from + pos + 3;
        let rest = &out[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '"' | '\'' | '<' | '>'))
            .unwrap_or(rest.len());
        let authority = &rest[..end];
        from = start;
        let Some(at) = authority.rfind('@') else {
            continue;
        };
        let Some(colon) = authority[..at].find(':') else {
            continue;
        };
        let (p_start, p_end) = (start + colon + 1, start + at);
        if p_end > p_start && &out[p_start..p_end] != MASK {
            out.replace_range(p_start..p_end, MASK);
        }
        from = p_start + MASK.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_values_and_token_shapes() {
        let r = Redactor::new(["s3cr3t-value", "abc"]);
        assert_eq!(r.redact("key=s3cr3t-value!"), "key=[REDACTED]!");
        assert_eq!(r.redact("abc stays"), "abc stays");
        assert_eq!(
            r.redact("push https://x:ghp_abcdefghijklmnop1234@github.com/o/r"),
            "push https://x:[REDACTED]@github.com/o/r"
        );
        assert_eq!(
            r.redact("token xoxb-1234-5678-abcdEFGH end"),
            "token [REDACTED] end"
        );
        assert_eq!(r.redact("ghp_ short"), "ghp_ short");
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("connecting to postgres://faseng:pa55w0rd@db:5432/faseng now"),
            "connecting to postgres://faseng:[REDACTED]@db:5432/faseng now"
        );
        assert_eq!(
            r.redact("Cloning into 'x'... https://x-access-token:abc@git.example.com/o/r.git"),
            "Cloning into 'x'... https://x-access-token:[REDACTED]@git.example.com/o/r.git"
        );
        assert_eq!(
            r.redact("git@github.com:o/r.git and https://h/a@b"),
            "git@github.com:o/r.git and https://h/a@b"
        );
    }
}
