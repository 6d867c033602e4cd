//! Secret settings given either directly (`GITHUB_WEBHOOK_SECRET`) or as a
//! file (`GITHUB_WEBHOOK_SECRET_FILE`, for Docker and systemd credentials,
//! which keep the secret out of the process environment).
//!
//! A weak or empty secret fails at start with what to do, instead of letting
//! anyone sign webhooks; no message ever holds the secret itself.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::Secret;

/// The shortest secret accepted: 128 bits, what `openssl rand -hex 16` gives.
pub const MIN_SECRET_BYTES: usize = 16;

/// A secret file larger than this is surely the wrong file; reading it all
/// would only waste memory.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why a secret setting is refused. `name` is the variable (`GITHUB_WEBHOOK_SECRET`).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The direct setting and the file are both given: which one is meant is a guess.
    #[error("set {name} or {name}_FILE, not both")]
    Both {
        /// The variable.
        name: String,
    },
    /// The file cannot be read.
    #[error("cannot read {name}_FILE `{}`: {source}", path.display())]
    Read {
        /// The variable.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any secret: surely the wrong file.
    #[error("{name}_FILE `{}` is larger than {max} bytes; is it the right file?", path.display())]
    TooLarge {
        /// The variable.
        name: String,
        /// The file.
        path: PathBuf,
        /// The largest size accepted, in bytes.
        max: u64,
    },
    /// The file is not UTF-8 text.
    #[error("{name}_FILE `{}` is not UTF-8 text", path.display())]
    NotText {
        /// The variable.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// The secret is empty: anyone could sign with it.
    #[error("{from} is empty")]
    Empty {
        /// The variable, or `NAME_FILE` and the file's path for the file form.
        from: String,
    },
    /// The secret is shorter than the minimum: guessable.
    #[error(
        "{from} is {len} bytes; it must be at least {min} (generate one with `openssl rand -hex 32`)"
    )]
    Short {
        /// The variable, or `NAME_FILE` and the file's path for the file form.
        from: String,
        /// Its length, in bytes.
        len: usize,
        /// The minimum, in bytes.
        min: usize,
    },
}

/// The secret `name` from its direct setting `value` or from the file `file`
/// (`NAME_FILE`), at least `min_len` bytes long; `Ok(None)` when neither is set.
///
/// From a file, one trailing newline (`\n` or `\r\n`) is dropped, since
/// editors and `echo` add one; nothing else is trimmed, so the secret is
/// exactly what the other side signs with.
pub fn read_secret(
    name: &str,
    value: Option<String>,
    file: Option<&Path>,
    min_len: usize,
) -> Result<Option<Secret>, SecretError> {
    let (secret, from) = match (value, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(SecretError::Both {
                name: name.to_string(),
            });
        }
        (Some(value), None) => (value, name.to_string()),
        (None, Some(path)) => (
            read_file(name, path)?,
            format!("{name}_FILE `{}`", path.display()),
        ),
    };
    if secret.is_empty() {
        return Err(SecretError::Empty { from });
    }
    if secret.len() < min_len {
        return Err(SecretError::Short {
            from,
            len: secret.len(),
            min: min_len,
        });
    }
    Ok(Some(Secret::new(secret)))
}

/// How a setting is checked by [`load_secret`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A secret both sides share (webhook secret, API token, signing key): at least
    /// [`MIN_SECRET_BYTES`], and an empty one is an error.
    Shared,
    /// A token another service issued (GitHub, Slack, Heroku): an empty value reads as
    /// unset, as it always did, and any length is taken.
    Issued,
}

/// Reads the setting `name` in place: `value` (the flag or variable) or the file
/// `file` (`NAME_FILE`), checked by `kind`. What the binaries call for each secret.
pub fn load_secret(
    name: &str,
    value: &mut Option<String>,
    file: Option<&Path>,
    kind: SecretKind,
) -> Result<(), SecretError> {
    let (given, min) = match kind {
        SecretKind::Shared => (value.take(), MIN_SECRET_BYTES),
        SecretKind::Issued => (value.take().filter(|v| !v.is_empty()), 1),
    };
    *value = read_secret(name, given, file, min)?.map(|s| s.expose().to_string());
    Ok(())
}

fn read_file(name: &str, path: &Path) -> Result<String, SecretError> {
    let read_error = |source| SecretError::Read {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretError::TooLarge {
            name: name.to_string(),
            path: path.to_path_buf(),
            max: MAX_SECRET_FILE_BYTES,
        });
    }
    // The UTF-8 error is left out: it would point into the secret.
    let mut text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
        name: name.to_string(),
        path: path.to_path_buf(),
    })?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "GITHUB_WEBHOOK_SECRET";
    const GOOD: &str = "0123456789abcdef0123";

    fn file_with(body: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, body).unwrap();
        f
    }

    fn read(value: Option<&str>, file: Option<&Path>) -> Result<Option<Secret>, SecretError> {
        read_secret(NAME, value.map(str::to_string), file, MIN_SECRET_BYTES)
    }

    #[test]
    fn unset_is_none() {
        assert!(read(None, None).unwrap().is_none());
    }

    #[test]
    fn direct_value_is_taken_as_is() {
        let s = read(Some(" 0123456789abcdef \n"), None).unwrap().unwrap();
        assert_eq!(s.expose(), " 0123456789abcdef \n");
    }

    #[test]
    fn file_form_drops_one_trailing_newline_only() {
        for (body, want) in [
            (format!("{GOOD}\n"), GOOD.to_string()),
            (format!("{GOOD}\r\n"), GOOD.to_string()),
            (GOOD.to_string(), GOOD.to_string()),
            (format!("{GOOD}\n\n"), format!("{GOOD}\n")),
            (format!(" {GOOD} \n"), format!(" {GOOD} ")),
        ] {
            let f = file_with(body.as_bytes());
            let s = read(None, Some(f.path())).unwrap().unwrap();
            assert_eq!(s.expose(), want, "{body:?}");
        }
    }

    #[test]
    fn both_set_is_refused() {
        let f = file_with(GOOD.as_bytes());
        let err = read(Some(GOOD), Some(f.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "set GITHUB_WEBHOOK_SECRET or GITHUB_WEBHOOK_SECRET_FILE, not both"
        );
        assert!(!err.to_string().contains(GOOD));
    }

    #[test]
    fn empty_is_refused() {
        let err = read(Some(""), None).unwrap_err();
        assert_eq!(err.to_string(), "GITHUB_WEBHOOK_SECRET is empty");
        // A file holding only a newline is empty too.
        let f = file_with(b"\n");
        let err = read(None, Some(f.path())).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err}");
        assert!(
            err.to_string().contains("GITHUB_WEBHOOK_SECRET_FILE"),
            "{err}"
        );
    }

    #[test]
    fn short_is_refused_without_showing_it() {
        let err = read(Some("s3cr3"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GITHUB_WEBHOOK_SECRET is 5 bytes; it must be at least 16 (generate one with `openssl rand -hex 32`)"
        );
        let f = file_with(b"s3cr3\n");
        let err = read(None, Some(f.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("is 5 bytes"), "{text}");
        assert!(!text.contains("s3cr3"), "{text}");
        // Exactly the minimum passes.
        assert!(read(Some("0123456789abcdef"), None).unwrap().is_some());
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = read(None, Some(&missing)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read GITHUB_WEBHOOK_SECRET_FILE `"),
            "{text}"
        );
        assert!(text.contains(&missing.display().to_string()), "{text}");
    }

    #[test]
    fn binary_or_huge_file_is_refused_without_its_content() {
        let f = file_with(b"\xff\xfe0123456789abcdef0123");
        let err = read(None, Some(f.path())).unwrap_err();
        assert!(matches!(err, SecretError::NotText { .. }), "{err}");
        assert!(!err.to_string().contains("0123456789"), "{err}");
        let f = file_with(&vec![b'a'; 70 * 1024]);
        let err = read(None, Some(f.path())).unwrap_err();
        assert!(matches!(err, SecretError::TooLarge { .. }), "{err}");
    }
}
