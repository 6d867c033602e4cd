//! A PostgreSQL cluster of a test's own: `initdb` in a folder, on a free port, so
//! that a test (or a drill) can stop and start the server without touching the
//! machine's shared one. Not a fake: the real server, from Debian's packages.

use std::path::{Path, PathBuf};

/// A private cluster; stopped when dropped.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// Its tools run as `postgres` (initdb refuses root).
    as_postgres: bool,
}

/// Runs a program; its stdout, or why it failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir("/")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The newest `bin` folder under /usr/lib/postgresql with an `initdb`.
fn newest_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no /usr/lib/postgresql ({e}): install PostgreSQL (script/test does)")
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".to_string())
}

impl Cluster {
    fn tool(&self, name: &str, args: &[&str]) -> Result<String, String> {
        let tool = self.bin.join(name).to_string_lossy().into_owned();
        if self.as_postgres {
            let mut all = vec!["-u", "postgres", "--", tool.as_str()];
            all.extend_from_slice(args);
            run("runuser", &all)
        } else {
            run(&tool, args)
        }
    }

    /// Makes a cluster in `dir/pg` (not started). `pg_bin`: the folder of `initdb`
    /// and `pg_ctl`, or the newest installed.
    pub fn create(dir: &Path, pg_bin: Option<PathBuf>) -> Result<Cluster, String> {
        let bin = match pg_bin {
            Some(b) => b,
            None => newest_bin()?,
        };
        let as_postgres = run("id", &["-u"])?.trim() == "0";
        let home = dir.join("pg");
        std::fs::create_dir_all(&home).map_err(|e| format!("cannot create {home:?}: {e}"))?;
        if as_postgres {
            run("chown", &["-R", "postgres", &home.to_string_lossy()])?;
            // The server (as postgres) must reach its folder.
            let mut p = Some(dir);
            while let Some(d) = p {
                if d == Path::new("/") {
                    break;
                }
                let _ = run("chmod", &["a+x", &d.to_string_lossy()]);
                p = d.parent();
            }
        }
        let cluster = Cluster {
            bin,
            data: home.join("data"),
            log: home.join("server.log"),
            port: free_port()?,
            as_postgres,
        };
        cluster.tool(
            "initdb",
            &[
                "-D",
                &cluster.data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        Ok(cluster)
    }

    /// The URL of database `db` on it.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let sock = self.data.parent().unwrap_or(Path::new("/tmp"));
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            sock.display()
        );
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &self.log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        )
        .map(|_| ())
    }

    /// Stops the server (fast: open connections are cut, as in a failover).
    pub fn stop(&self) -> Result<(), String> {
        self.tool(
            "pg_ctl",
            &[
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .map(|_| ())
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
