//! A real OpenSSH server on 127.0.0.1 for the real-tool tests, an ssh-agent,
//! and helpers to write a project into the engine's test repository.
//!
//! Nothing here is skipped when a tool is missing: the tests panic with a hint
//! to run `script/test`, which installs them.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::Rig;

const HINT: &str = "run script/test (it installs openssh-server, capistrano, fabric, ruby-bundler and the Fabric 3 venv)";

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd on `127.0.0.1:port` that lets `root` in with the ed25519 key `key`.
pub struct Sshd {
    pub port: u16,
    /// The client's private key (ed25519; its public half is the only
    /// authorized key).
    pub key: PathBuf,
    pub dir: TempDir,
    child: Child,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("ssh-keygen: {e}; {HINT}"));
    assert!(
        out.status.success(),
        "ssh-keygen -f {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run script/test (it installs openssh-server)"
        );
        std::fs::create_dir_all("/run/sshd").expect("mkdir -p /run/sshd");
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        let key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&key);
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
        let log_path = dir.path().join("sshd.log");

        // The port is free when picked; another process may take it before
        // sshd binds it, so try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-p", &port.to_string()])
                .args(["-o", "ListenAddress=127.0.0.1"])
                .arg("-h")
                .arg(&host_key)
                .arg("-o")
                .arg(format!("AuthorizedKeysFile={}", authorized.display()))
                .args(["-o", "StrictModes=no", "-o", "UsePAM=no"])
                .args(["-o", "PermitRootLogin=prohibit-password"])
                .args(["-o", "PasswordAuthentication=no"])
                // bash sources ~/.bashrc for commands sshd runs when it is a
                // top-level shell; this machine's root .bashrc (pyenv init)
                // costs 0.3 s a command. SHLVL=1 makes the shell nested, so
                // the tests do not depend on the machine's dotfiles.
                .args(["-o", "SetEnv=SHLVL=1"])
                .arg("-o")
                .arg(format!("PidFile={}", dir.path().join("sshd.pid").display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{SSHD}: {e}; run script/test"));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd {
                        port,
                        key,
                        dir,
                        child,
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!("sshd exited ({status}) before listening:\n{log}");
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("sshd never listened on 127.0.0.1:{port}:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("sshd found no free port in 5 tries");
    }

    /// `127.0.0.1:PORT`, as Fabric's `-H` and `hosts=` take it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A file in the server's folder (markers the deployed tasks write).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What sshd logged (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ssh-agent holding one key.
pub struct Agent {
    pub sock: PathBuf,
    pid: u32,
}

impl Agent {
    pub fn start(key: &Path) -> Agent {
        let out = Command::new("ssh-agent")
            .arg("-s")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ssh-agent: {e}; {HINT}"));
        assert!(
            out.status.success(),
            "ssh-agent -s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // `SSH_AUTH_SOCK=/tmp/ssh-x/agent.1; export SSH_AUTH_SOCK;`
        let var = |name: &str| {
            text.split([';', '\n'])
                .find_map(|part| part.trim().strip_prefix(&format!("{name}=")))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no {name} in ssh-agent's output: {text}"))
        };
        let agent = Agent {
            sock: PathBuf::from(var("SSH_AUTH_SOCK")),
            pid: var("SSH_AGENT_PID").parse().unwrap(),
        };
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.sock)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-add {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `bin` folder of the Fabric 3 virtualenv `script/test` makes
/// (`$CHIMA_FABRIC3_VENV`, by default `~/.cache/chima/fabric3`).
pub fn fabric3_bin() -> PathBuf {
    let venv = match std::env::var_os("CHIMA_FABRIC3_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            Path::new(&home).join(".cache/chima/fabric3")
        }
    };
    let bin = venv.join("bin");
    assert!(
        bin.join("fab").is_file(),
        "no Fabric 3 at {}: run script/test (it makes the Fabric 3 venv)",
        bin.join("fab").display()
    );
    bin
}

/// Panics with the `script/test` hint unless `tool` is on PATH.
pub fn require(tool: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    assert!(
        std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()),
        "`{tool}` is not installed: {HINT}"
    );
}

pub fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `files` into the rig's repository and commits them.
pub fn commit(rig: &Rig, files: &[(&str, String)]) {
    for (path, body) in files {
        let path = rig.repo.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    git(&rig.repo, &["add", "-A"]);
    git(&rig.repo, &["commit", "--quiet", "-m", "project"]);
}

/// Creates branch `name` at the repository's HEAD and returns its sha.
pub fn branch(rig: &Rig, name: &str) -> String {
    git(&rig.repo, &["branch", name]);
    git(&rig.repo, &["rev-parse", name])
}
