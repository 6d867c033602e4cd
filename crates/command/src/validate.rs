//! The checks that keep typed text from being misread by git, a shell or a
//! provider. Everything typed in chat passes through these before it is stored.

/// The longest command line accepted, in characters. Slack allows far longer
/// messages; no command needs more than this.
pub const MAX_LINE_CHARS: usize = 2_000;

/// The longest app or environment name.
pub const MAX_NAME_LEN: usize = 100;

/// The longest ref (git has no hard limit; file systems and humans do).
pub const MAX_REF_LEN: usize = 255;

/// The longest host filter.
pub const MAX_HOSTS_LEN: usize = 255;

/// True for an app or environment name: `[-_.0-9a-z]+` (case-insensitive, as
/// hubot-deploy), that does not start with `-` or `.` (it would be read as an
/// option or a hidden path by the tools it is handed to).
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && !s.starts_with(['-', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Characters that git refuses in a ref (see `git check-ref-format`) together
/// with those a shell would interpret. No branch name needs the latter, and
/// refusing them here is one more wall between chat and a shell.
const REFUSED_IN_REF: &[char] = &[
    ' ', '~', '^', ':', '?', '*', '[', '\\', ';', '$', '`', '|', '&', '<', '>', '(', ')', '{', '}',
    '\'', '"',
];

/// Invisible characters that make text read differently from what it is
/// (zero-width spaces, bidirectional overrides, BOM).
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// True for control and invisible characters.
pub(crate) fn is_hidden(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Checks a ref (branch, tag or sha) as typed in chat. The error says why, in
/// a form that completes "`<ref>` is not a ref I will deploy: ...".
pub fn check_ref(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("it is empty".into());
    }
    if r.len() > MAX_REF_LEN {
        return Err(format!(
            "it is {} bytes long; the limit is {MAX_REF_LEN}",
            r.len()
        ));
    }
    if r.starts_with('-') {
        return Err("it starts with `-`, which git would read as an option".into());
    }
    if r.chars().any(is_hidden) {
        return Err("it contains a control or invisible character".into());
    }
    if let Some(c) = r.chars().find(|c| REFUSED_IN_REF.contains(c)) {
        return Err(format!("it contains `{c}`, which a ref may not hold"));
    }
    if r.contains("..") {
        return Err("it contains `..`".into());
    }
    if r == "@" {
        return Err("`@` alone is not a ref".into());
    }
    if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        return Err("it has an empty path component (a leading, trailing or doubled `/`)".into());
    }
    if r.ends_with('.') {
        return Err("it ends with `.`".into());
    }
    for part in r.split('/') {
        if part.starts_with('.') {
            return Err(format!("its component `{part}` starts with `.`"));
        }
        if part.ends_with(".lock") {
            return Err(format!("its component `{part}` ends with `.lock`"));
        }
    }
    Ok(())
}

/// Checks a host filter (`production/<hosts>`). Hosts are handed to providers
/// as one argument or variable; they may hold letters, digits and `. - _ , : *
/// / @ +`, and may not start with `-`.
pub fn check_hosts(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("it is empty".into());
    }
    if h.len() > MAX_HOSTS_LEN {
        return Err(format!(
            "it is {} bytes long; the limit is {MAX_HOSTS_LEN}",
            h.len()
        ));
    }
    if h.starts_with('-') {
        return Err("it starts with `-`, which a tool would read as an option".into());
    }
    if h.contains("..") {
        return Err("it contains `..`".into());
    }
    if let Some(c) = h.chars().find(|c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '.' | '-' | '_' | ',' | ':' | '*' | '/' | '@' | '+'))
    }) {
        let shown = if is_hidden(c) {
            format!("{:?}", c)
        } else {
            format!("`{c}`")
        };
        return Err(format!(
            "it contains {shown}; hosts may only hold letters, digits and `. - _ , : * / @ +`"
        ));
    }
    Ok(())
}

/// True for a one-time password as hubot-deploy accepted it: six digits, or a
/// 32 to 64 character YubiKey OTP in modhex.
pub(crate) fn is_otp(s: &str) -> bool {
    let six_digits = s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit());
    let modhex = (32..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b"cbdefghijklnrtuv".contains(&b.to_ascii_lowercase()));
    six_digits || modhex
}

/// The candidate closest to `word` by edit distance, if it is close enough to
/// be a typo (at most a third of the word's length, and at most 3 edits).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars, with adjacent transpositions counted as one
/// edit (people swap letters more than they drop them).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["hubot", "project-x", "a_b.c", "App1"] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in [
            "",
            "-rf",
            ".hidden",
            "a/b",
            "a b",
            "ça",
            "a;b",
            &"x".repeat(101),
        ] {
            assert!(!is_slug(bad), "{bad}");
        }
    }

    #[test]
    fn refs_git_accepts() {
        for ok in [
            "main",
            "atmos/branch",
            "v1.2.3",
            "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
            "feature/ça-va",
            "refs/heads/x",
            "a,b",
            "user@fix",
        ] {
            assert_eq!(check_ref(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refs_git_or_a_shell_would_misread() {
        for bad in [
            "-x",
            "--upload-pack=touch /tmp/x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "@",
            "a@{1}",
            "/a",
            "a/",
            "a//b",
            "a.",
            ".a",
            "a/.b",
            "a.lock",
            "a.lock/b",
            "a;rm -rf /",
            "$(id)",
            "`id`",
            "a|b",
            "a&b",
            "a\u{7}",
            "a\u{202E}b",
            "",
        ] {
            assert!(check_ref(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_ref(&"a".repeat(256)).is_err());
        assert!(check_ref(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn hosts() {
        for ok in ["fe", "fe1,fe2", "web-*", "db.example.com", "10.0.0.1:22"] {
            assert_eq!(check_hosts(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "a..b",
            "a;b",
            "$(id)",
            "a b",
            "a\u{0}",
        ] {
            assert!(check_hosts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn otps() {
        assert!(is_otp("123456"));
        assert!(is_otp("ccccccdlnncbtuevhdbctrccukdciveuclhbkvehbeve"));
        assert!(is_otp("CCCCCCDLNNCBTUEVHDBCTRCCUKDCIVEU"));
        for bad in [
            "12345",
            "1234567",
            "burgers",
            "ccccccdlnncbtuevhdbctrccukdcive",
            "abcdefabcdefabcdefabcdefabcdefabcdef",
        ] {
            assert!(!is_otp(bad), "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        let words = ["deploy", "deploys", "lock", "unlock", "environments"];
        assert_eq!(closest("deplyo", words), Some("deploy"));
        assert_eq!(closest("enironments", words), Some("environments"));
        assert_eq!(closest("lcok", words), Some("lock"));
        assert_eq!(closest("burgers", words), None);
    }
}
