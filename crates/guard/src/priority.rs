//! Providers and git run below the control plane.
//!
//! A deploy can keep both cores busy for minutes (bundle install, asset builds, a big
//! checkout) while the same machine answers GitHub's webhooks, chat and the log pages and
//! renews the claims that fence every running deployment. So the work a job starts runs
//! at a lower CPU priority (`nice`) and, where the kernel has it, a lower I/O priority
//! (`ioprio_set`) than faseng itself: the scheduler then gives the control plane the CPU
//! first and the deploys everything left over, so they lose almost nothing when the
//! machine is otherwise idle.
//!
//! Only ever lowered: a process may raise its own niceness without privilege, and
//! nothing here asks for more than faseng has. faseng sets it on the one thread per
//! priority that starts job processes (the engine's `spawn.rs`), which they inherit,
//! so faseng's other threads keep theirs; under a guard, the guard passes it on to the
//! provider and stays at the priority of the worker that started it (faseng's
//! `FASENG_WORKER_NICE`, always above the provider's), so that it still stops the
//! provider on time on a busy machine.

use std::fmt;
use std::str::FromStr;

/// The niceness and I/O class of the processes a job starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Priority {
    /// The niceness (0 to 19; 0 leaves it as faseng's).
    pub nice: u8,
    /// The I/O scheduling class.
    pub io: IoClass,
}

impl Default for Priority {
    /// Niceness 10 and the lowest best-effort I/O level: below faseng, above idle.
    fn default() -> Self {
        Priority {
            nice: 10,
            io: IoClass::BestEffort(7),
        }
    }
}

impl Priority {
    /// faseng's own priority for everything: nothing lowered.
    pub const UNCHANGED: Priority = Priority {
        nice: 0,
        io: IoClass::Unchanged,
    };

    /// Niceness from a setting: 0 to 19.
    pub fn parse_nice(text: &str) -> Result<u8, String> {
        match text.trim().parse::<u8>() {
            Ok(n) if n <= 19 => Ok(n),
            _ => Err(format!(
                "{text:?} is not a niceness: give 0 (unchanged) to 19 (lowest)"
            )),
        }
    }

    /// Applies this priority to the calling process. Meant for the child between fork
    /// and exec: it only makes system calls. Failures are ignored: a priority that
    /// cannot be lowered (a kernel without `ioprio_set`, a seccomp filter) leaves the
    /// job at faseng's, which is how it ran before.
    #[allow(unsafe_code)]
    pub fn apply_to_self(self) {
        if self.nice > 0 {
            // SAFETY: setpriority takes plain integers and touches no memory.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, libc::c_int::from(self.nice));
            }
        }
        if let Some(value) = self.io.ioprio_value() {
            // SAFETY: ioprio_set takes plain integers (which = IOPRIO_WHO_PROCESS,
            // who = 0: this process) and touches no memory.
            unsafe {
                libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value);
            }
        }
    }

    /// Sets this priority in `cmd`'s child, after fork and before exec (a
    /// `tokio::process::Command` through `as_std_mut`). The hook makes the
    /// standard library fork rather than `posix_spawn`: faseng itself starts its
    /// children from a thread that has the priority already (the engine's
    /// `spawn.rs`) and uses this only where that thread could not start.
    #[allow(unsafe_code)]
    pub fn set_in_std(self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if self == Priority::UNCHANGED {
            return;
        }
        // SAFETY: the closure runs in the forked child and only makes the two system
        // calls of `apply_to_self`: no allocation, no lock.
        unsafe {
            cmd.pre_exec(move || {
                self.apply_to_self();
                Ok(())
            });
        }
    }

    /// The guard's arguments for this priority (`--nice N --io CLASS`), none when
    /// unchanged.
    pub fn to_args(self) -> Vec<String> {
        let mut out = Vec::new();
        if self.nice > 0 {
            out.extend(["--nice".to_string(), self.nice.to_string()]);
        }
        if self.io != IoClass::Unchanged {
            out.extend(["--io".to_string(), self.io.to_string()]);
        }
        out
    }
}

const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
const IOPRIO_CLASS_BE: libc::c_int = 2;
const IOPRIO_CLASS_IDLE: libc::c_int = 3;

/// An I/O scheduling class (`ionice`'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoClass {
    /// Left as faseng's.
    Unchanged,
    /// Best effort at a level from 0 (first) to 7 (last).
    BestEffort(u8),
    /// Only when no other process wants the disk.
    Idle,
}

impl IoClass {
    fn ioprio_value(self) -> Option<libc::c_int> {
        match self {
            IoClass::Unchanged => None,
            IoClass::BestEffort(level) => {
                Some((IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | libc::c_int::from(level.min(7)))
            }
            IoClass::Idle => Some(IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT),
        }
    }
}

impl fmt::Display for IoClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoClass::Unchanged => f.write_str("unchanged"),
            IoClass::BestEffort(level) => write!(f, "best-effort:{level}"),
            IoClass::Idle => f.write_str("idle"),
        }
    }
}

impl FromStr for IoClass {
    type Err = String;

    /// `unchanged`, `idle`, or `best-effort:N` (N from 0 to 7).
    fn from_str(text: &str) -> Result<Self, String> {
        let refused = || {
            format!(
                "{text:?} is not an I/O class: give unchanged, idle, or best-effort:0 to best-effort:7"
            )
        };
        match text.trim() {
            "unchanged" => Ok(IoClass::Unchanged),
            "idle" => Ok(IoClass::Idle),
            other => {
                let level = other.strip_prefix("best-effort:").ok_or_else(refused)?;
                match level.parse::<u8>() {
                    Ok(n) if n <= 7 => Ok(IoClass::BestEffort(n)),
                    _ => Err(refused()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_classes_read_as_ionice_writes_them_and_refuse_the_rest() {
        for (text, class) in [
            ("unchanged", IoClass::Unchanged),
            ("idle", IoClass::Idle),
            ("best-effort:0", IoClass::BestEffort(0)),
            ("best-effort:7", IoClass::BestEffort(7)),
        ] {
            assert_eq!(text.parse::<IoClass>(), Ok(class));
            assert_eq!(class.to_string(), text);
        }
        for bad in [
            "",
            "best-effort:8",
            "best-effort:",
            "realtime:0",
            "idle; rm -rf /",
        ] {
            let e = bad.parse::<IoClass>().expect_err(bad);
            assert!(e.contains("best-effort:0 to best-effort:7"), "{e}");
        }
    }

    #[test]
    fn niceness_is_0_to_19() {
        assert_eq!(Priority::parse_nice("0"), Ok(0));
        assert_eq!(Priority::parse_nice("19"), Ok(19));
        for bad in ["20", "-5", "ten", ""] {
            assert!(Priority::parse_nice(bad).is_err(), "{bad}");
        }
    }
}
