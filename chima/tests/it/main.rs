//! The real `chima` binary, run as a user runs it.

mod approvals;
mod cli;
mod doctor;
mod embedded;
mod github;
mod github_fidelity;
mod manifest;
mod policy;
mod slack;
