//! faseng as a library: the deploy service's parts, so that its HTTP router can be
//! tested in-process (`web::router` with `tower::ServiceExt::oneshot`) and `main.rs`
//! stays a thin reader of settings. See ARCHITECTURE.md for how the parts fit.

#![warn(missing_docs)]

mod access;
mod autodeploy;
pub mod doctor;
mod intake;
mod links;
pub mod manifest;
mod metrics;
pub mod serve;
mod settings;
pub mod web;

pub use settings::{Args, Command};
