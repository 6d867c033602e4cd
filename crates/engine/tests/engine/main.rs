//! The engine with real git repositories, real processes and a real store
//! (SQLite on a temp file; PostgreSQL through `DATABASE_URL` where marked).

mod githttp;
mod harness;
mod isolation;
mod jobs;
mod mirror;
mod panics;
mod dry_runs;
mod policy;
mod providers;
mod real_tools;
mod sshd;
mod submodules;
