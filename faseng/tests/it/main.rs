//! The real `faseng` binary on PostgreSQL, talking to the fake GitHub.

mod api;
mod approvals;
mod autodeploy;
mod bounds;
mod chaos;
mod ci_paging;
mod doctor;
mod dry_runs;
mod e2e;
mod faults;
mod harness;
mod isolation;
mod manifest;
mod ops;
mod pages;
mod scale;
mod secrets;
mod slack;
mod trust;
mod webhooks;
