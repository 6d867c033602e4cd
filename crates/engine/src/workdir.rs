//! The private work folder: where each job's checkout goes.
//!
//! Checkouts hold code that faseng is about to run and, for the length of a
//! clone, git's private `HOME`. Anyone who can write into the work folder could
//! swap a checkout between clone and run, so it must be faseng's own (mode
//! 0700, owned by faseng's uid, no symlink on the way in) and must not live in
//! a folder others can rename it out of. [`prepare`] checks all that at start
//! and says what to change when it does not hold.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the work folder cannot be used. Each message names the folder, what is
/// wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum WorkdirError {
    /// faseng's own uid, which the folder must belong to, cannot be read.
    #[error("cannot learn faseng's own uid (from /proc/self): {0}")]
    Uid(#[source] io::Error),
    /// The folder does not exist and cannot be created.
    #[error("cannot create the work folder `{}`: {source}", path.display())]
    Create {
        /// The folder.
        path: PathBuf,
        /// Why it cannot be created.
        #[source]
        source: io::Error,
    },
    /// The folder's owner and mode cannot be read.
    #[error("cannot inspect the work folder `{}`: {source}", path.display())]
    Inspect {
        /// The folder.
        path: PathBuf,
        /// Why it cannot be inspected.
        #[source]
        source: io::Error,
    },
    /// The folder is a symbolic link, which whoever owns it could point elsewhere.
    #[error(
        "`{}` is a symbolic link; faseng does not follow one to its work folder: choose another FASENG_WORKDIR or replace the link by a folder",
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something that is not a folder is in the way.
    #[error(
        "`{}` exists and is not a folder: choose another FASENG_WORKDIR or move that file away",
        path.display()
    )]
    NotDir {
        /// What is in the way.
        path: PathBuf,
    },
    /// The folder belongs to another user, who could swap its checkouts.
    #[error(
        "`{}` is owned by uid {owner}, not by faseng's uid {uid}: choose another FASENG_WORKDIR or fix its owner",
        path.display()
    )]
    Owner {
        /// The folder.
        path: PathBuf,
        /// The uid that owns it.
        owner: u32,
        /// faseng's uid.
        uid: u32,
    },
    /// The folder's parent lets others rename the folder away and put another in its place.
    #[error(
        "the work folder's parent `{}` {why}, so others could swap the work folder: choose another FASENG_WORKDIR or fix that folder",
        path.display()
    )]
    Parent {
        /// The parent folder.
        path: PathBuf,
        /// What is wrong with it, e.g. who else owns it.
        why: String,
    },
    /// The folder's mode cannot be set to 0700.
    #[error("cannot set the mode of the work folder `{}` to 0700: {source}", path.display())]
    Chmod {
        /// The folder.
        path: PathBuf,
        /// Why the mode cannot be set.
        #[source]
        source: io::Error,
    },
}

/// Where checkouts go when `FASENG_WORKDIR` is not set: the user's cache
/// (`$XDG_CACHE_HOME/faseng/work`, else `$HOME/.cache/faseng/work`), which
/// survives and is private, unlike a shared temp folder; the temp folder
/// (`<tmp>/faseng-<uid>/work`) only when neither variable is a usable
/// absolute path.
pub fn default_workdir() -> PathBuf {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(cache) = absolute("XDG_CACHE_HOME") {
        return cache.join("faseng").join("work");
    }
    if let Some(home) = absolute("HOME") {
        return home.join(".cache").join("faseng").join("work");
    }
    let owner = match current_uid() {
        Ok(uid) => uid.to_string(),
        // `prepare` refuses the folder later with the reason.
        Err(_) => format!("pid{}", std::process::id()),
    };
    std::env::temp_dir()
        .join(format!("faseng-{owner}"))
        .join("work")
}

/// The checkout folder of one deployment. The pid keeps two faseng processes
/// sharing a work folder apart.
pub fn job_dir(workdir: &Path, deployment_id: i64) -> PathBuf {
    workdir.join(format!("job-{deployment_id}-{}", std::process::id()))
}

/// Makes `dir` the private work folder: creates it (mode 0700) and its
/// missing parents (also 0700), or checks the one that exists: a real folder,
/// not a symlink, owned by faseng's uid, in a parent others cannot write to
/// (unless it is sticky, like `/tmp`). A folder of ours with a wider mode is
/// narrowed to 0700.
pub fn prepare(dir: &Path) -> Result<(), WorkdirError> {
    let uid = current_uid().map_err(WorkdirError::Uid)?;
    let dir = std::path::absolute(dir).map_err(|source| WorkdirError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    match std::fs::symlink_metadata(&dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|source| WorkdirError::Create {
                        path: parent.to_path_buf(),
                        source,
                    })?;
            }
            // mkdir never follows a symlink at the last component: one planted
            // since the look above makes it fail with `AlreadyExists`, and the
            // checks below then refuse it.
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(WorkdirError::Create { path: dir, source }),
            }
        }
        Err(source) => return Err(WorkdirError::Inspect { path: dir, source }),
    }
    if let Some(parent) = dir.parent() {
        check_parent(parent, uid)?;
    }
    check_dir(&dir, uid)
}

/// The folder holding the work folder must not let others rename or replace
/// it: owned by us or root, and not writable by others unless sticky.
fn check_parent(parent: &Path, uid: u32) -> Result<(), WorkdirError> {
    let meta = std::fs::metadata(parent).map_err(|source| WorkdirError::Inspect {
        path: parent.to_path_buf(),
        source,
    })?;
    let mode = meta.mode();
    let why = if meta.uid() != uid && meta.uid() != 0 {
        Some(format!("is owned by uid {}", meta.uid()))
    } else if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        Some(format!(
            "is writable by others (mode {:04o}) and not sticky",
            mode & 0o7777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(WorkdirError::Parent {
            path: parent.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Opens `dir` without following a symlink and checks and narrows it through
/// that handle, so what is checked is what is changed.
fn check_dir(dir: &Path, uid: u32) -> Result<(), WorkdirError> {
    let link = std::fs::symlink_metadata(dir).map_err(|source| WorkdirError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    if link.file_type().is_symlink() {
        return Err(WorkdirError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !link.is_dir() {
        return Err(WorkdirError::NotDir {
            path: dir.to_path_buf(),
        });
    }
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => WorkdirError::Symlink {
                path: dir.to_path_buf(),
            },
            Some(libc::ENOTDIR) => WorkdirError::NotDir {
                path: dir.to_path_buf(),
            },
            _ => WorkdirError::Inspect {
                path: dir.to_path_buf(),
                source,
            },
        })?;
    let meta = handle.metadata().map_err(|source| WorkdirError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.uid() != uid {
        return Err(WorkdirError::Owner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o700 {
        handle
            .set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|source| WorkdirError::Chmod {
                path: dir.to_path_buf(),
                source,
            })?;
        tracing::info!(
            path = %dir.display(),
            from = format!("{mode:04o}"),
            "work folder narrowed to mode 0700: checkouts are faseng's alone"
        );
    }
    Ok(())
}

/// faseng's effective uid, without `unsafe`: the owner of `/proc/self` is the
/// process's effective uid.
fn current_uid() -> io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}
