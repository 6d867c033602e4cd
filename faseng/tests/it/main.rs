//! The real `faseng` binary on PostgreSQL, talking to the fake GitHub.

mod api;
mod autodeploy;
mod e2e;
mod faults;
mod harness;
mod ops;
mod pages;
mod scale;
mod slack;
mod webhooks;
