//! chima-github against the fake GitHub of chima-testkit, over real HTTP on 127.0.0.1,
//! with the real octocrab client. One test binary (each is a large link).

mod app;
mod calls;
mod deployments;
mod fidelity;
mod harness;
mod real_fixtures;
mod sender;
mod webhook;
