//! Running providers as another user (`FASENG_RUN_AS`).
//!
//! A deploy script is code from the repository being deployed: whoever can push to it
//! can make faseng run anything. Run as faseng's own user, it could read faseng's files
//! and, were faseng dumpable, its memory and environment (every token faseng holds).
//! When faseng runs as root it can instead start each provider as an unprivileged
//! user: the provider then owns its job folder and nothing else of faseng's.

use std::path::{Path, PathBuf};

/// The user providers run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name (or the `uid:gid` given).
    pub name: String,
    /// The uid the provider runs as.
    pub uid: u32,
    /// The gid the provider runs as (the user's primary group, or the gid given).
    pub gid: u32,
    /// Its home folder, the provider's `HOME` (`/` when it has none).
    pub home: PathBuf,
}

/// Why `FASENG_RUN_AS` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    /// No user of that name in `/etc/passwd`.
    #[error("FASENG_RUN_AS={0:?}: no such user in /etc/passwd (give a user name, or uid:gid)")]
    NoSuchUser(String),
    /// The user or its group is root: switching to it would protect nothing.
    #[error("FASENG_RUN_AS={0:?}: that is root; choose an unprivileged user")]
    Root(String),
    /// `/etc/passwd` (or faseng's own uid) cannot be read.
    #[error("cannot read /etc/passwd to find FASENG_RUN_AS: {0}")]
    Passwd(#[source] std::io::Error),
    /// faseng is not root (its uid is given), so it cannot start providers as another user.
    #[error(
        "FASENG_RUN_AS needs faseng to run as root (it runs as uid {0}); unset it, or start faseng as root"
    )]
    NotRoot(u32),
}

impl RunAs {
    /// `spec` is a user name from `/etc/passwd`, or `uid:gid`. faseng itself must be
    /// root to switch users.
    pub fn lookup(spec: &str) -> Result<RunAs, RunAsError> {
        let me = current_uid().map_err(RunAsError::Passwd)?;
        if me != 0 {
            return Err(RunAsError::NotRoot(me));
        }
        let spec = spec.trim();
        let found = if let Some((u, g)) = spec.split_once(':')
            && let (Ok(uid), Ok(gid)) = (u.parse::<u32>(), g.parse::<u32>())
        {
            RunAs {
                name: spec.to_string(),
                uid,
                gid,
                home: PathBuf::from("/"),
            }
        } else {
            let passwd = std::fs::read_to_string("/etc/passwd").map_err(RunAsError::Passwd)?;
            passwd
                .lines()
                .filter_map(parse_passwd_line)
                .find(|u| u.name == spec)
                .ok_or_else(|| RunAsError::NoSuchUser(spec.to_string()))?
        };
        if found.uid == 0 || found.gid == 0 {
            return Err(RunAsError::Root(spec.to_string()));
        }
        Ok(found)
    }

    /// Hands `dir` and everything in it to this user (symlinks themselves, never
    /// their targets), so that the provider can work in its checkout.
    pub fn give(&self, dir: &Path) -> std::io::Result<()> {
        std::os::unix::fs::lchown(dir, Some(self.uid), Some(self.gid))?;
        let meta = std::fs::symlink_metadata(dir)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(dir)? {
                self.give(&entry?.path())?;
            }
        }
        Ok(())
    }
}

/// `name:x:uid:gid:gecos:home:shell`.
fn parse_passwd_line(line: &str) -> Option<RunAs> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 7 || line.starts_with('#') {
        return None;
    }
    Some(RunAs {
        name: fields[0].to_string(),
        uid: fields[2].parse().ok()?,
        gid: fields[3].parse().ok()?,
        home: PathBuf::from(if fields[5].is_empty() { "/" } else { fields[5] }),
    })
}

fn current_uid() -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let u = parse_passwd_line("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
            .unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65534));
        assert_eq!(u.home, PathBuf::from("/nonexistent"));
        assert!(parse_passwd_line("broken").is_none());
        assert!(parse_passwd_line("x:x:notanumber:1:::").is_none());
    }

    #[test]
    fn root_is_refused() {
        if current_uid().unwrap_or(1) != 0 {
            assert!(matches!(
                RunAs::lookup("nobody"),
                Err(RunAsError::NotRoot(_))
            ));
            return;
        }
        assert!(matches!(RunAs::lookup("root"), Err(RunAsError::Root(_))));
        assert!(matches!(RunAs::lookup("0:0"), Err(RunAsError::Root(_))));
        assert!(matches!(
            RunAs::lookup("no-such-user-here"),
            Err(RunAsError::NoSuchUser(_))
        ));
        assert_eq!(RunAs::lookup("nobody").unwrap().uid, 65534);
        assert_eq!(RunAs::lookup("1234:1234").unwrap().gid, 1234);
    }
}
