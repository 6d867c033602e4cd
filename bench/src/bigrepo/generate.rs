//! A large repository, the same every time: `git fast-import` fed from a
//! seeded generator, so that the bigrepo phase measures a repository shaped
//! like a real application's (thousands of text files in directories, a long
//! history of small edits, some binary assets) without downloading one.
//!
//! It is made once per set of parameters and kept in the cache folder
//! (`bench/.cache/bigrepo-<files>f-<commits>c-<hash>.git`): generating and
//! repacking takes minutes, and every run must deploy the same bytes.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::util::run;

/// Bumped whenever the generator's output changes for the same parameters, so
/// that a cached repository of an older generator is not reused.
const GENERATOR_VERSION: u32 = 1;

/// The line the deploy script prints: the bench waits for it in the store.
pub const STARTED_LINE: &str = "bigrepo: provider started";

/// The script the app runs (`deploy_script`), committed in the first commit.
pub const DEPLOY_SCRIPT: &str = "script/deploy";

/// What to generate. Everything follows from these and the seed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Params {
    pub seed: u64,
    /// Files in HEAD (text and assets together).
    pub files: usize,
    /// Commits on `main`.
    pub commits: usize,
    /// Files in the first commit; the rest arrive spread over the history.
    pub initial_files: usize,
    /// Binary assets (incompressible bytes) among the files of HEAD.
    pub assets: usize,
    /// One commit in this many adds or replaces an asset.
    pub asset_every: usize,
    /// Text files edited per commit, at most (1 to this many).
    pub max_edits: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            seed: 0x05ee_db16_2e90,
            files: 6000,
            commits: 25_000,
            initial_files: 1500,
            assets: 150,
            asset_every: 25,
            max_edits: 4,
        }
    }
}

impl Params {
    /// The cache folder's name: the sizes for people, a hash of everything.
    pub fn key(&self) -> String {
        let text = format!("{GENERATOR_VERSION} {self:?}");
        // FNV-1a: stable across Rust versions, unlike std's hasher.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!(
            "bigrepo-{}f-{}c-{:08x}",
            self.files, self.commits, hash as u32
        )
    }
}

/// What was generated, kept next to it (`bench-stats.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub params: Params,
    /// Files in HEAD's tree.
    pub files: usize,
    pub commits: usize,
    /// The packs' size on disk after the repack (what a clone downloads,
    /// give or take).
    pub pack_bytes: u64,
    /// The bytes of HEAD's files (what a checkout writes).
    pub head_bytes: u64,
    /// `main`'s commits, newest last: the last few are the "new commits".
    pub tail: Vec<String>,
    pub generate_secs: f64,
    pub repack_secs: f64,
}

/// A generated repository: the bare repository and what it holds.
pub struct BigRepo {
    pub path: PathBuf,
    pub stats: Stats,
}

/// The repository for `params` under `cache`, generated now if it is not there.
pub fn ensure(cache: &Path, params: &Params) -> anyhow::Result<BigRepo> {
    std::fs::create_dir_all(cache)
        .with_context(|| format!("cannot make the cache folder {}", cache.display()))?;
    let path = cache.join(format!("{}.git", params.key()));
    let stats_file = path.join("bench-stats.json");
    if let Ok(text) = std::fs::read_to_string(&stats_file) {
        let stats: Stats = serde_json::from_str(&text)
            .with_context(|| format!("{} is not readable; remove it", stats_file.display()))?;
        if stats.params == *params {
            return Ok(BigRepo { path, stats });
        }
        bail!(
            "{} was made with other parameters; remove it",
            path.display()
        );
    }
    // A half-made one (the generator was stopped) is made again.
    let tmp = cache.join(format!("{}.tmp", params.key()));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&path);
    eprintln!(
        "bench: bigrepo: generating {} ({} files, {} commits; once, then cached)",
        path.display(),
        params.files,
        params.commits
    );
    let t0 = std::time::Instant::now();
    let p = tmp.to_string_lossy().into_owned();
    run(
        "git",
        &["init", "-q", "--bare", "--initial-branch=main", &p],
        None,
    )?;
    import(&tmp, params)?;
    let generate_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench: bigrepo: imported in {generate_secs:.0} s; repacking (deltas between the versions of each file, as a real server's pack has)"
    );
    let t1 = std::time::Instant::now();
    // -f: fast-import only tries a delta against the blob before in the
    // stream; a real repository's pack has each version a delta of another
    // version of the same file. -b: a bitmap, as a hosted repository has, so
    // that serving a full clone does not walk the whole history.
    run(
        "git",
        &[
            "-C",
            &p,
            "-c",
            "pack.threads=0",
            "repack",
            "-q",
            "-a",
            "-d",
            "-f",
            "-b",
            "--window=10",
            "--depth=50",
        ],
        None,
    )?;
    let repack_secs = t1.elapsed().as_secs_f64();
    // As GitHub does: any commit of the history may be fetched by its id.
    run(
        "git",
        &[
            "-C",
            &p,
            "config",
            "uploadpack.allowReachableSHA1InWant",
            "true",
        ],
        None,
    )?;
    let stats = measure(&tmp, params, generate_secs, repack_secs)?;
    std::fs::write(
        tmp.join("bench-stats.json"),
        serde_json::to_string_pretty(&stats)? + "\n",
    )?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move {} into place", tmp.display()))?;
    eprintln!(
        "bench: bigrepo: {} files in HEAD ({:.0} MB), {} commits, pack {:.0} MB; {:.0} s + {:.0} s repack",
        stats.files,
        stats.head_bytes as f64 / 1e6,
        stats.commits,
        stats.pack_bytes as f64 / 1e6,
        generate_secs,
        repack_secs
    );
    Ok(BigRepo { path, stats })
}

fn measure(
    repo: &Path,
    params: &Params,
    generate_secs: f64,
    repack_secs: f64,
) -> anyhow::Result<Stats> {
    let p = repo.to_string_lossy().into_owned();
    let tree = run("git", &["-C", &p, "ls-tree", "-r", "-l", "main"], None)?;
    let (mut files, mut head_bytes) = (0usize, 0u64);
    for line in tree.lines() {
        files += 1;
        // `<mode> blob <sha> <size>\t<path>`
        let size = line
            .split('\t')
            .next()
            .and_then(|meta| meta.split_whitespace().nth(3))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        head_bytes += size;
    }
    let commits = run("git", &["-C", &p, "rev-list", "--count", "main"], None)?
        .trim()
        .parse()
        .context("rev-list --count")?;
    let mut tail: Vec<String> = run("git", &["-C", &p, "rev-list", "-n", "8", "main"], None)?
        .lines()
        .map(str::to_string)
        .collect();
    tail.reverse();
    let mut pack_bytes = 0;
    for entry in std::fs::read_dir(repo.join("objects/pack"))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "pack") {
            pack_bytes += entry.metadata()?.len();
        }
    }
    Ok(Stats {
        params: *params,
        files,
        commits,
        pack_bytes,
        head_bytes,
        tail,
        generate_secs,
        repack_secs,
    })
}

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// lo..=hi, spread evenly over the logarithm: many small, a few large, as
    /// file sizes are.
    fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(lo + 1) as f64).ln());
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (l + u * (h - l)).exp() as usize
    }
}

/// A text file: its lines (each ends with '\n').
struct TextFile {
    path: String,
    lines: Vec<String>,
}

struct Gen {
    rng: Rng,
    words: Vec<String>,
    dirs: Vec<String>,
    paths: HashSet<String>,
    texts: Vec<TextFile>,
    assets: Vec<String>,
}

const TOP: [(&str, &str); 10] = [
    ("app/models", "rb"),
    ("app/controllers", "rb"),
    ("app/views", "erb"),
    ("lib", "rb"),
    ("spec", "rb"),
    ("config", "yml"),
    ("docs", "md"),
    ("frontend/src", "ts"),
    ("frontend/styles", "css"),
    ("db/migrate", "rb"),
];

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = Rng(seed);
        let letters = b"abcdefghijklmnopqrstuvwxyz";
        let words: Vec<String> = (0..2000)
            .map(|_| {
                let len = 2 + rng.below(9);
                (0..len)
                    .map(|_| letters[rng.below(letters.len())] as char)
                    .collect()
            })
            .collect();
        let mut dirs = Vec::new();
        for (top, _) in TOP {
            for _ in 0..(6 + rng.below(14)) {
                let w = &words[rng.below(words.len())];
                dirs.push(format!("{top}/{w}"));
            }
        }
        dirs.sort();
        dirs.dedup();
        Gen {
            rng,
            words,
            dirs,
            paths: HashSet::new(),
            texts: Vec::new(),
            assets: Vec::new(),
        }
    }

    fn word(&mut self) -> String {
        let i = self.rng.below(self.words.len());
        self.words[i].clone()
    }

    /// A line shaped like code: indentation, an assignment or a call.
    fn line(&mut self) -> String {
        let indent = "  ".repeat(self.rng.below(4));
        let n = 1 + self.rng.below(7);
        let mut out = indent;
        let a = self.word();
        let b = self.word();
        match self.rng.below(4) {
            0 => out.push_str(&format!("{a}_{b} = ")),
            1 => out.push_str(&format!("def {a}({b})")),
            2 => out.push_str(&format!("# {a} {b} ")),
            _ => out.push_str(&format!("{a}.{b}(")),
        }
        for k in 0..n {
            if k > 0 {
                out.push_str(if self.rng.below(3) == 0 { ", " } else { " " });
            }
            let w = self.word();
            out.push_str(&w);
        }
        if self.rng.below(5) == 0 {
            out.push_str(&format!(" {}", self.rng.below(100_000)));
        }
        out.push('\n');
        out
    }

    fn new_path(&mut self, assets: bool) -> String {
        loop {
            let path = if assets {
                let sub = self.rng.below(12);
                format!("public/assets/images/{sub:02}/{}.png", self.word())
            } else {
                let dir = self.dirs[self.rng.below(self.dirs.len())].clone();
                let ext = TOP
                    .iter()
                    .find(|(top, _)| dir.starts_with(top))
                    .map_or("txt", |(_, e)| e);
                let (a, b) = (self.word(), self.word());
                format!("{dir}/{a}_{b}.{ext}")
            };
            if self.paths.insert(path.clone()) {
                return path;
            }
        }
    }

    fn new_text(&mut self) -> usize {
        let path = self.new_path(false);
        let n = self.rng.log_uniform(8, 800);
        let lines = (0..n).map(|_| self.line()).collect();
        self.texts.push(TextFile { path, lines });
        self.texts.len() - 1
    }

    /// An edit like a developer's: a block of lines replaced, some inserted,
    /// or a few removed.
    fn edit(&mut self, i: usize) {
        let len = self.texts[i].lines.len();
        let at = self.rng.below(len + 1);
        match self.rng.below(20) {
            0..=11 => {
                let n = 1 + self.rng.below((len / 10).max(1));
                let end = (at + n).min(len);
                let new: Vec<String> = (0..n).map(|_| self.line()).collect();
                self.texts[i].lines.splice(at..end, new);
            }
            12..=16 => {
                let n = 1 + self.rng.below(15);
                let new: Vec<String> = (0..n).map(|_| self.line()).collect();
                self.texts[i].lines.splice(at..at, new);
            }
            _ => {
                let n = 1 + self.rng.below(5);
                if len > n + 5 {
                    let at = at.min(len - n);
                    self.texts[i].lines.drain(at..at + n);
                }
            }
        }
    }

    fn asset_bytes(&mut self) -> Vec<u8> {
        let n = self.rng.log_uniform(20_000, 600_000);
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.rng.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Feeds the whole history to `git fast-import` in `repo`.
fn import(repo: &Path, params: &Params) -> anyhow::Result<()> {
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start git fast-import")?;
    let stdin = child.stdin.take().context("fast-import's stdin")?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
    let written = write_history(&mut out, params);
    // Close the pipe whatever happened, so that fast-import ends.
    let flushed = out.flush();
    drop(out);
    let status = child.wait().context("git fast-import")?;
    written?;
    flushed?;
    if !status.success() {
        bail!("git fast-import failed ({status})");
    }
    Ok(())
}

fn data(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    writeln!(out, "data {}", bytes.len())?;
    out.write_all(bytes)?;
    out.write_all(b"\n")
}

fn write_history(out: &mut impl Write, params: &Params) -> anyhow::Result<()> {
    let mut g = Gen::new(params.seed);
    let text_target = params.files.saturating_sub(params.assets + 2).max(1);
    let initial = params.initial_files.min(text_target);
    // A fixed start and a fixed pace: the same commit ids every time.
    let epoch = 1_600_000_000u64;
    let commits = params.commits.max(1);
    for c in 0..commits {
        let when = epoch + c as u64 * 1800;
        let mut changed: Vec<usize> = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        let mut asset: Option<(String, Vec<u8>)> = None;
        if c == 0 {
            for _ in 0..initial {
                changed.push(g.new_text());
            }
        } else {
            // Files arrive evenly over the history, up to the target.
            let due = initial + (text_target - initial) * c / (commits - 1).max(1);
            if g.rng.below(50) == 0 && g.texts.len() > 10 {
                let i = g.rng.below(g.texts.len());
                let gone = g.texts.swap_remove(i);
                g.paths.remove(&gone.path);
                removed.push(gone.path);
            }
            while g.texts.len() < due {
                changed.push(g.new_text());
            }
            for _ in 0..(1 + g.rng.below(params.max_edits.max(1))) {
                let i = g.rng.below(g.texts.len());
                g.edit(i);
                changed.push(i);
            }
            if params.asset_every > 0 && c % params.asset_every == 0 {
                let path = if g.assets.len() < params.assets {
                    let p = g.new_path(true);
                    g.assets.push(p.clone());
                    p
                } else {
                    g.assets[g.rng.below(g.assets.len())].clone()
                };
                asset = Some((path, g.asset_bytes()));
            }
        }
        changed.sort_unstable();
        changed.dedup();
        writeln!(out, "commit refs/heads/main")?;
        let who = format!("Bench Developer <dev{}@example.com>", g.rng.below(40));
        writeln!(out, "author {who} {when} +0000")?;
        writeln!(out, "committer {who} {when} +0000")?;
        let subject = format!("{} {} {} (#{c})", g.word(), g.word(), g.word());
        data(out, subject.as_bytes())?;
        if c == 0 {
            let script = format!("#!/bin/sh\necho '{STARTED_LINE}'\n");
            writeln!(out, "M 100755 inline {DEPLOY_SCRIPT}")?;
            data(out, script.as_bytes())?;
            writeln!(out, "M 100644 inline README.md")?;
            data(out, b"# bigrepo\n\nGenerated by chima-bench.\n")?;
        }
        for path in &removed {
            writeln!(out, "D {path}")?;
        }
        for i in changed {
            let f = &g.texts[i];
            writeln!(out, "M 100644 inline {}", f.path)?;
            writeln!(
                out,
                "data {}",
                f.lines.iter().map(String::len).sum::<usize>()
            )?;
            for l in &f.lines {
                out.write_all(l.as_bytes())?;
            }
            out.write_all(b"\n")?;
        }
        if let Some((path, bytes)) = asset {
            writeln!(out, "M 100644 inline {path}")?;
            data(out, &bytes)?;
        }
        out.write_all(b"\n")?;
    }
    writeln!(out, "done")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_parameters() {
        let p = Params::default();
        assert_eq!(p.key(), Params::default().key());
        let q = Params { seed: 1, ..p };
        assert_ne!(p.key(), q.key());
        assert!(p.key().starts_with("bigrepo-6000f-25000c-"));
    }

    #[test]
    fn the_history_is_the_same_every_time() {
        let p = Params {
            files: 60,
            commits: 30,
            initial_files: 10,
            assets: 3,
            asset_every: 5,
            ..Params::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_history(&mut a, &p).unwrap();
        write_history(&mut b, &p).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8_lossy(&a);
        assert_eq!(text.matches("commit refs/heads/main").count(), 30);
        assert!(text.contains(STARTED_LINE));
    }
}
