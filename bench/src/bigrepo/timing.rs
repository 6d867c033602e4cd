//! The measurements of the bigrepo phase: deploys through faseng and the same
//! trees made by git alone, interleaved so that both see the same machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chima_testkit::github::FakeGitHub;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

use super::generate::{BigRepo, DEPLOY_SCRIPT, STARTED_LINE};
use super::serve::GitHttp;
use super::{Alone, Deploy, Details, Options};
use crate::util::{self, Delivery, FasengCmd, Http, Scratch};

const REPO: &str = "bench/bigrepo";
const APP: &str = "bigrepo";
const ENV: &str = "bigrepo";
const SECRET: &str = "bench-bigrepo-secret-0001";

fn say(what: &str) {
    eprintln!("bench: bigrepo: {what}");
}

/// Serves the repository, starts faseng on a scratch database, and measures.
pub(super) async fn run(opts: &Options, dir: &Path, repo: &BigRepo) -> anyhow::Result<Details> {
    let tail = &repo.stats.tail;
    let k = opts.new_commits.min(tail.len().saturating_sub(1));
    let first = tail
        .get(tail.len() - 1 - k)
        .context("the repository has no commits")?
        .clone();
    let news: Vec<String> = tail[tail.len() - k..].to_vec();

    // The repository is served under its cache name; the server's root is the
    // cache folder, which holds nothing else that matters.
    let root = repo
        .path
        .parent()
        .context("the repository has no parent folder")?
        .to_path_buf();
    let name = repo
        .path
        .file_name()
        .context("the repository has no name")?
        .to_string_lossy()
        .into_owned();
    let server = GitHttp::start(root).await?;
    let url = format!("{}/{name}", server.url);

    let gh = FakeGitHub::start().await;
    gh.add_repo(REPO, "main");
    let apps = dir.join("app.json");
    let app = json!({
        APP: {
            "provider": "shell",
            "repository": REPO,
            "environments": [ENV],
            "default_environment": ENV,
            "default_ref": "main",
            "clone_url": url,
            "deploy_script": DEPLOY_SCRIPT,
        }
    });
    std::fs::write(&apps, serde_json::to_vec_pretty(&app)?)?;
    let db = Scratch::create(
        &opts.database_url,
        &format!("chima_bench_bigrepo_{}", std::process::id()),
    )
    .await?;
    let cmd = FasengCmd {
        binary: opts.faseng.clone(),
        database_url: db.url.clone(),
        apps,
        port: util::free_port()?,
        workers: 1,
        workdir: dir.join("work"),
        secret: SECRET.to_string(),
        github: Some((gh.url.clone(), gh.token())),
        extra_env: opts
            .provider_nice
            .map(|n| vec![("FASENG_PROVIDER_NICE".to_string(), n.to_string())])
            .unwrap_or_default(),
    };
    let log = dir.join("faseng.log");
    let http = Http::new();
    let (faseng, _) = cmd.start(&log, &http).await?;
    let result = async {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await?;
        let f = Faseng {
            http: &http,
            hook: format!("{}/webhooks/github", cmd.url()),
            pool: &pool,
            gh: &gh,
            url: &url,
        };
        let git = GitAlone::new(dir, &url)?;
        let mut d = Details::default();

        say(&format!(
            "first deploy of {} through faseng (empty mirror: the whole history over HTTP)",
            short(&first)
        ));
        d.first = f.deploy(&first, Duration::from_secs(1800)).await?;
        say(&format!(
            "first deploy: {:.1} s ({})",
            d.first.ms / 1000.0,
            d.first.checkout_note
        ));
        say("git alone: the same fetch into an empty bare repository, then worktree add");
        d.first_alone = git.fetch_and_add(&first).await?;
        say(&format!(
            "git alone: fetch {:.1} s, worktree add {:.2} s",
            d.first_alone.fetch_ms / 1000.0,
            d.first_alone.worktree_ms / 1000.0
        ));

        for round in 0..opts.rounds.max(1) {
            // Every other round git alone goes first, so that neither side
            // always runs right after the other's writes.
            let (r, a, s) = if round % 2 == 0 {
                let r = f.deploy(&first, Duration::from_secs(600)).await?;
                (r, git.add(&first).await?, git.shared_clone(&first).await?)
            } else {
                let a = git.add(&first).await?;
                let s = git.shared_clone(&first).await?;
                (f.deploy(&first, Duration::from_secs(600)).await?, a, s)
            };
            say(&format!(
                "round {}: redeploy {:.0} ms (claim {:.0} ms; {}), worktree add {:.0} ms, faseng's way by git {:.0} ms",
                round + 1,
                r.ms,
                r.claim_ms,
                r.checkout_note,
                a.worktree_ms,
                s
            ));
            d.redeploys.push(r);
            d.redeploys_alone.push(a);
            d.shared_clone_alone_ms.push(s);
        }
        for sha in &news {
            let r = f.deploy(sha, Duration::from_secs(600)).await?;
            let a = git.fetch_and_add(sha).await?;
            say(&format!(
                "new commit {}: deploy {:.0} ms ({}), git alone fetch {:.0} ms + worktree add {:.0} ms",
                short(sha),
                r.ms,
                r.checkout_note,
                a.fetch_ms,
                a.worktree_ms
            ));
            d.new_commits.push(r);
            d.new_commits_alone.push(a);
        }
        pool.close().await;
        anyhow::Ok(d)
    }
    .await;
    faseng.stop(Duration::from_secs(30)).await;
    db.drop_now().await;
    drop(server);
    result.map_err(|e| anyhow::anyhow!("{e:#}\nfaseng's log ends with:\n{}", util::tail(&log, 30)))
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// faseng, its database, and the fake GitHub its deployments come from.
struct Faseng<'a> {
    http: &'a Http,
    hook: String,
    pool: &'a PgPool,
    gh: &'a FakeGitHub,
    url: &'a str,
}

impl Faseng<'_> {
    /// Deploys `sha` and waits for the deployment to end; measured: created
    /// -> the provider's line stored.
    async fn deploy(&self, sha: &str, limit: Duration) -> anyhow::Result<Deploy> {
        let id = self.gh.seed_deployment(REPO, "main", ENV, "bench");
        let payload = json!({
            "name": APP,
            "robotName": "chima",
            "hosts": "",
            "notify": {"adapter": "shell", "room": "", "user": "bench", "user_name": "bench", "thread_ts": null},
            "config": {"provider": "shell", "repository": REPO, "clone_url": self.url},
        });
        let body = chima_testkit::github::deployment_event(
            REPO, self.url, id, sha, "main", ENV, "deploy", payload,
        );
        let delivery = Delivery::new(
            id,
            format!("bigrepo-{id}"),
            SECRET.as_bytes(),
            body.to_string().into_bytes(),
        );
        let t0 = Instant::now();
        let (status, _) = delivery.send(self.http, &self.hook).await;
        if status != 201 {
            bail!("the deployment webhook answered {status}");
        }
        let deadline = t0 + limit;
        type Row = (i64, f64, Option<f64>, Option<f64>, String, Option<String>);
        let (dep, created, started, line_at) = loop {
            let row: Option<Row> = sqlx::query_as(
                "SELECT d.id, extract(epoch FROM d.created_at)::float8, \
                        extract(epoch FROM d.started_at)::float8, \
                        (SELECT extract(epoch FROM min(l.at))::float8 FROM deployment_logs l \
                          WHERE l.deployment_id = d.id AND l.line = $2), \
                        d.state, d.reason \
                 FROM deployments d WHERE d.github_deployment_id = $1",
            )
            .bind(id)
            .bind(STARTED_LINE)
            .fetch_optional(self.pool)
            .await?;
            if let Some((dep, created, started, line_at, state, reason)) = row {
                if let Some(at) = line_at {
                    break (dep, created, started.unwrap_or(created), at);
                }
                if !matches!(state.as_str(), "queued" | "running") {
                    bail!(
                        "deployment {dep} ended {state} without the provider's line: {}",
                        reason.unwrap_or_default()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("no provider line within {limit:?}");
            }
            // The figure is the store's own timestamps, so the polls need
            // not be quick: every 25 ms (little load beside the deploy),
            // slower through a long first fetch.
            let pause = if t0.elapsed() < Duration::from_secs(10) {
                25
            } else {
                200
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        };
        let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
        // Until it has ended (its folder removed), so that the next
        // measurement runs alone.
        loop {
            let state: String = sqlx::query_scalar("SELECT state FROM deployments WHERE id = $1")
                .bind(dep)
                .fetch_one(self.pool)
                .await?;
            if !matches!(state.as_str(), "queued" | "running") {
                if state != "succeeded" {
                    bail!("deployment {dep} ended {state}");
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("deployment {dep} still {state} after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let checkout_note: Option<String> = sqlx::query_scalar(
            "SELECT line FROM deployment_logs WHERE deployment_id = $1 \
             AND line LIKE '==> checked out%' ORDER BY seq LIMIT 1",
        )
        .bind(dep)
        .fetch_optional(self.pool)
        .await?;
        // Let the worker go back to waiting.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Deploy {
            sha: sha.to_string(),
            ms: (line_at - created) * 1000.0,
            claim_ms: (started - created) * 1000.0,
            wall_ms,
            checkout_note: checkout_note
                .unwrap_or_default()
                .trim_start_matches("==> ")
                .to_string(),
        })
    }
}

/// git alone: a bare repository fetched into over the same HTTP server, as a
/// warm mirror, and trees made from it. git reads no configuration but the
/// repository's (an empty HOME, no system file), as under faseng.
struct GitAlone {
    dir: PathBuf,
    mirror: PathBuf,
    home: PathBuf,
    url: String,
}

impl GitAlone {
    fn new(dir: &Path, url: &str) -> anyhow::Result<GitAlone> {
        let home = dir.join("git-home");
        std::fs::create_dir_all(&home)?;
        let mirror = dir.join("alone.git");
        let g = GitAlone {
            dir: dir.to_path_buf(),
            mirror,
            home,
            url: url.to_string(),
        };
        let m = g.mirror.to_string_lossy().into_owned();
        util::run("git", &["init", "-q", "--bare", &m], None)?;
        Ok(g)
    }

    /// Runs git; how long it took.
    async fn git(&self, args: &[&str]) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let out = tokio::process::Command::new("git")
            .args(args)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run git")?;
        let took = t0.elapsed();
        if !out.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }

    /// Fetches `sha` into the mirror, then adds (and removes) a worktree.
    async fn fetch_and_add(&self, sha: &str) -> anyhow::Result<Alone> {
        let m = self.mirror.to_string_lossy().into_owned();
        let spec = format!("+{sha}:refs/bench/{sha}");
        let fetch = self
            .git(&["-C", &m, "fetch", "--quiet", "--", &self.url, &spec])
            .await?;
        let mut a = self.add(sha).await?;
        a.fetch_ms = fetch.as_secs_f64() * 1000.0;
        Ok(a)
    }

    /// `git worktree add --detach` of `sha` (timed), then its removal (not timed).
    async fn add(&self, sha: &str) -> anyhow::Result<Alone> {
        let m = self.mirror.to_string_lossy().into_owned();
        let wt = self.dir.join("alone-tree");
        let w = wt.to_string_lossy().into_owned();
        let took = self
            .git(&["-C", &m, "worktree", "add", "--quiet", "--detach", &w, sha])
            .await?;
        self.git(&["-C", &m, "worktree", "remove", "--force", &w])
            .await?;
        Ok(Alone {
            fetch_ms: 0.0,
            worktree_ms: took.as_secs_f64() * 1000.0,
        })
    }

    /// The tree made as faseng makes it (`crates/engine/src/checkout/tree.rs`),
    /// by git alone from the same mirror: what the method costs, without
    /// faseng around it. Milliseconds; the tree is removed after.
    async fn shared_clone(&self, sha: &str) -> anyhow::Result<f64> {
        let tree = self.dir.join("alone-shared");
        let t = tree.to_string_lossy().into_owned();
        // What `tree.rs` writes: `HEAD`, a config with `origin`, the
        // mirror's objects as the alternate; then git checks the commit out.
        let started = std::time::Instant::now();
        let git_dir = tree.join(".git");
        for sub in ["objects/info", "objects/pack", "refs/heads", "refs/tags"] {
            std::fs::create_dir_all(git_dir.join(sub))?;
        }
        std::fs::write(
            git_dir.join("objects/info/alternates"),
            format!("{}\n", self.mirror.join("objects").display()),
        )?;
        std::fs::write(
            git_dir.join("config"),
            format!(
                "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\t\
                 logallrefupdates = true\n[remote \"origin\"]\n\turl = \"{}\"\n",
                self.url
            ),
        )?;
        std::fs::write(git_dir.join("HEAD"), format!("{sha}\n"))?;
        let mut took = started.elapsed();
        took += self
            .git(&["-C", &t, "checkout", "--quiet", "--detach", sha])
            .await?;
        tokio::fs::remove_dir_all(&tree)
            .await
            .with_context(|| format!("cannot remove {}", tree.display()))?;
        Ok(took.as_secs_f64() * 1000.0)
    }
}
