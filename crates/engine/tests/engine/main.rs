//! The engine with real git repositories, real processes and a real store
//! (SQLite on a temp file; PostgreSQL through `DATABASE_URL` where marked).

mod dry_runs;
mod githttp;
mod harness;
mod isolation;
mod jobs;
mod mirror;
mod panics;
mod policy;
mod providers;
mod real_tools;
mod sshd;
mod submodules;
