//! The bigrepo phase (issue 17): what a deploy of a large repository costs
//! through the real faseng, against git alone doing the same in the same run.
//!
//! A generated repository (`generate`: ~6,000 files in HEAD, ~25,000 commits,
//! a pack of a few hundred MB) is served over smart HTTP by `git http-backend`
//! on 127.0.0.1 (`serve`). faseng (the release binary, one worker) has an app
//! whose `clone_url` is that URL and whose deploy script prints one line. Each
//! deploy is measured from the deployment's creation (`created_at` in the
//! store) to that line's time in the store (faseng stamps a line when it reads
//! it from the provider): claim, mirror fetch, the job's tree, the provider's
//! start and its first line.
//!
//! In order: the first deploy (empty mirror: the whole history is fetched);
//! then rounds, each a redeploy of the same commit (nothing to fetch: the
//! tree only) next to git alone making the same tree from a warm mirror
//! (`git worktree add --detach`); then deploys of the commits after it (a
//! small fetch each) next to git alone fetching the same commit into its
//! mirror and adding a worktree. `bigrepo_warm_start_ratio` is the median of
//! the rounds' ratios, redeploy / worktree add.

mod generate;
mod serve;
mod timing;

pub use generate::Params;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::report::{Better, Figures};
use crate::util::median;

/// How to run the phase.
#[derive(Debug, Clone)]
pub struct Options {
    pub faseng: PathBuf,
    pub database_url: String,
    /// Where generated repositories are kept between runs.
    pub cache: PathBuf,
    pub params: Params,
    /// Rounds of redeploy / worktree add.
    pub rounds: usize,
    /// Deploys of new commits (at most 7: the commits after the first deploy's).
    pub new_commits: usize,
    /// FASENG_PROVIDER_NICE for faseng (None: faseng's default).
    pub provider_nice: Option<u8>,
    /// Keep the temporary folder (faseng's log).
    pub keep: bool,
}

/// One deploy through faseng.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deploy {
    pub sha: String,
    /// Deployment created -> the provider's line stored (the figure).
    pub ms: f64,
    /// Of which: created -> claimed by the worker.
    pub claim_ms: f64,
    /// Webhook sent -> the bench saw the line (its own clock, polled every 25 ms).
    pub wall_ms: f64,
    /// The job log's "==> checked out <sha> in <s> (fetched in <s>)".
    pub checkout_note: String,
}

/// What git alone took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Alone {
    /// `git fetch <url> +<sha>:<ref>` into the bare mirror (0 when it held it).
    pub fetch_ms: f64,
    /// `git worktree add --detach <dir> <sha>`.
    pub worktree_ms: f64,
}

impl Alone {
    pub fn total_ms(&self) -> f64 {
        self.fetch_ms + self.worktree_ms
    }
}

/// Everything the phase measured (`details.bigrepo` in latest.json).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Details {
    pub repository: Option<generate::Stats>,
    pub cache: String,
    pub first: Deploy,
    /// git alone: an empty bare repository, the same fetch, a worktree.
    pub first_alone: Alone,
    pub redeploys: Vec<Deploy>,
    pub redeploys_alone: Vec<Alone>,
    /// git alone making the tree faseng's way (a `.git` sharing the
    /// mirror's objects, written as `tree.rs` writes it, and `checkout
    /// --detach`) from the same mirror.
    pub shared_clone_alone_ms: Vec<f64>,
    pub new_commits: Vec<Deploy>,
    pub new_commits_alone: Vec<Alone>,
    pub warm_ms: f64,
    pub alone_ms: f64,
    pub warm_start_ratio: f64,
    pub new_commit_ratio: f64,
    pub provider_nice: Option<u8>,
    pub secs: f64,
}

/// Generates the repository (if it is not cached yet) and says what it holds.
pub async fn generate_only(opts: &Options) -> anyhow::Result<()> {
    let (cache, params) = (opts.cache.clone(), opts.params);
    let repo = tokio::task::spawn_blocking(move || generate::ensure(&cache, &params))
        .await
        .context("the generator stopped")??;
    println!("{}", repo.path.display());
    println!("{}", serde_json::to_string_pretty(&repo.stats)?);
    Ok(())
}

/// Runs the phase in `dir` (a scratch folder of its own).
pub async fn measure(opts: &Options, dir: &Path) -> anyhow::Result<Details> {
    let began = std::time::Instant::now();
    let (cache, params) = (opts.cache.clone(), opts.params);
    let repo = tokio::task::spawn_blocking(move || generate::ensure(&cache, &params))
        .await
        .context("the generator stopped")??;
    let mut d = timing::run(opts, dir, &repo).await?;
    d.repository = Some(repo.stats.clone());
    d.cache = repo.path.display().to_string();
    d.provider_nice = opts.provider_nice;
    let warm: Vec<f64> = d.redeploys.iter().map(|r| r.ms).collect();
    let alone: Vec<f64> = d.redeploys_alone.iter().map(|a| a.worktree_ms).collect();
    d.warm_ms = median(&warm);
    d.alone_ms = median(&alone);
    d.warm_start_ratio = median_ratio(&warm, &alone);
    let new: Vec<f64> = d.new_commits.iter().map(|r| r.ms).collect();
    let new_alone: Vec<f64> = d.new_commits_alone.iter().map(Alone::total_ms).collect();
    d.new_commit_ratio = median_ratio(&new, &new_alone);
    d.secs = began.elapsed().as_secs_f64();
    Ok(d)
}

/// The median of the pairs' ratios: each pair was measured back to back, so
/// the ratio survives a machine whose load changes between pairs.
fn median_ratio(values: &[f64], bases: &[f64]) -> f64 {
    let ratios: Vec<f64> = values
        .iter()
        .zip(bases)
        .filter(|(_, b)| **b > 0.0)
        .map(|(v, b)| v / b)
        .collect();
    if ratios.is_empty() {
        f64::NAN
    } else {
        median(&ratios)
    }
}

/// The phase's rows for the tables: headline figures, then what explains them.
pub fn figures(d: &Details) -> (Figures, Figures) {
    let mut f = Figures::default();
    let mut diag = Figures::default();
    let s = |ms: f64| ms / 1000.0;
    let stats = d.repository.as_ref();
    let shape = stats.map_or(String::new(), |s| {
        format!(
            "{} files, {} commits, {:.0} MB pack",
            s.files,
            s.commits,
            s.pack_bytes as f64 / 1e6
        )
    });
    f.add(
        "bigrepo_first_deploy",
        &format!("bigrepo first deploy, empty mirror ({shape}): created -> provider's first line"),
        s(d.first.ms),
        "s",
        Better::Lower,
        s(d.first_alone.total_ms()),
        "git alone: fetch into an empty bare repo + worktree add",
    );
    let warm: Vec<f64> = d.redeploys.iter().map(|r| s(r.ms)).collect();
    let alone: Vec<f64> = d.redeploys_alone.iter().map(|a| s(a.worktree_ms)).collect();
    let fig = f.add_rounds(
        "bigrepo_warm_start",
        "bigrepo redeploy, warm mirror: created -> provider's first line",
        &warm,
        "s",
        Better::Lower,
        &alone,
        "git alone: worktree add from a warm mirror",
    );
    fig.ratio_at_most(1.5);
    let new: Vec<f64> = d.new_commits.iter().map(|r| s(r.ms)).collect();
    let new_alone: Vec<f64> = d
        .new_commits_alone
        .iter()
        .map(|a| s(a.total_ms()))
        .collect();
    f.add_rounds(
        "bigrepo_new_commit",
        "bigrepo deploy of a new commit: created -> provider's first line",
        &new,
        "s",
        Better::Lower,
        &new_alone,
        "git alone: fetch that commit + worktree add",
    );
    let claims: Vec<f64> = d.redeploys.iter().map(|r| s(r.claim_ms)).collect();
    diag.add(
        "bigrepo_warm_claim",
        "bigrepo redeploy: created -> claimed (median)",
        median(&claims),
        "s",
        Better::Lower,
        median(&alone),
        "git alone: worktree add",
    );
    let shared: Vec<f64> = d.shared_clone_alone_ms.iter().map(|v| s(*v)).collect();
    diag.add_rounds(
        "bigrepo_shared_clone_alone",
        "bigrepo: git alone, faseng's way (a .git sharing the mirror's objects, checkout --detach)",
        &shared,
        "s",
        Better::Lower,
        &alone,
        "git alone: worktree add",
    );
    (f, diag)
}

/// Puts the phase's results into the JSON report at `out` (made if there is
/// none), next to the keys already there: `bigrepo_warm_start_ratio` at the
/// top, `details.bigrepo`, its rows in `figures`/`diagnostics` (replacing
/// those of an earlier bigrepo run) and its own table in `bigrepo_table`.
/// Everything else is kept as raw JSON text, byte for byte: parsed into
/// numbers and printed again, floats would change in their last digits.
pub fn merge_into(out: &Path, d: &Details) -> anyhow::Result<()> {
    type Raw = Box<RawValue>;
    let raw = |v: &Value| -> anyhow::Result<Raw> { Ok(RawValue::from_string(v.to_string())?) };
    let mut top: BTreeMap<String, Raw> = match std::fs::read_to_string(out) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON object", out.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", out.display())),
    };
    let (f, diag) = figures(d);
    top.insert(
        "bigrepo_warm_start_ratio".into(),
        raw(&json!(d.warm_start_ratio))?,
    );
    top.insert(
        "bigrepo_started_at".into(),
        raw(&json!(chrono::Utc::now().to_rfc3339()))?,
    );
    let all: Vec<_> = f.list.iter().chain(&diag.list).cloned().collect();
    top.insert(
        "bigrepo_table".into(),
        raw(&json!(crate::report::table(&all)))?,
    );
    let mut details: BTreeMap<String, Raw> = match top.get("details") {
        Some(r) => serde_json::from_str(r.get()).context("`details` is not an object")?,
        None => BTreeMap::new(),
    };
    details.insert("bigrepo".into(), raw(&serde_json::to_value(d)?)?);
    top.insert("details".into(), text(&details)?);
    for (key, rows) in [("figures", &f), ("diagnostics", &diag)] {
        let mut list: Vec<Raw> = match top.get(key) {
            Some(r) => {
                serde_json::from_str(r.get()).with_context(|| format!("`{key}` is not a list"))?
            }
            None => Vec::new(),
        };
        list.retain(|row| {
            !serde_json::from_str::<Value>(row.get())
                .ok()
                .and_then(|v| v["key"].as_str().map(|k| k.starts_with("bigrepo_")))
                .unwrap_or(false)
        });
        for row in &rows.list {
            list.push(raw(&serde_json::to_value(row)?)?);
        }
        top.insert(key.into(), text(&list)?);
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = out.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&top)? + "\n")?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// A map or list holding raw parts, as raw JSON: printed as text, never
/// through `Value`, so that the raw parts stay as they were.
fn text<T: Serialize>(v: &T) -> anyhow::Result<Box<RawValue>> {
    Ok(RawValue::from_string(serde_json::to_string_pretty(v)?)?)
}

/// `chima-bench bigrepo`: the phase alone, its table printed and merged into `out`.
pub async fn main(opts: Options, out: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("chima-bench-bigrepo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&opts, &dir).await;
    if opts.keep {
        eprintln!("bench: files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let d = result?;
    print(&d);
    if let Some(out) = out {
        merge_into(&out, &d)?;
        println!("bench: bigrepo results merged into {}", out.display());
    }
    Ok(())
}

/// The phase's table and the repository it deployed.
pub fn print(d: &Details) {
    let (f, diag) = figures(d);
    let all: Vec<_> = f.list.iter().chain(&diag.list).cloned().collect();
    println!("\n{}", crate::report::table(&all));
    if let Some(s) = &d.repository {
        println!(
            "bigrepo: {} files in HEAD ({:.0} MB), {} commits, pack {:.0} MB; warm start ratio {:.2} (goal <= 1.5); phase {:.0} s",
            s.files,
            s.head_bytes as f64 / 1e6,
            s.commits,
            s.pack_bytes as f64 / 1e6,
            d.warm_start_ratio,
            d.secs
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_other_keys_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("bigrepo-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("latest.json");
        std::fs::write(
            &out,
            r#"{"details": {"e2e_secs": 94.79172299999999}, "figures": [{"key": "a", "value": 0.23999999999999994}, {"key": "bigrepo_old"}], "table": "x"}"#,
        )
        .unwrap();
        let d = Details {
            warm_start_ratio: 1.25,
            ..Details::default()
        };
        merge_into(&out, &d).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("94.79172299999999"), "{text}");
        assert!(text.contains("0.23999999999999994"), "{text}");
        assert!(!text.contains("bigrepo_old"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["bigrepo_warm_start_ratio"], json!(1.25));
        assert_eq!(v["table"], json!("x"));
        assert!(v["details"]["bigrepo"].is_object());
        assert!(v["figures"].as_array().unwrap().len() >= 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
