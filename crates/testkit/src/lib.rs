//! Fakes of the services chima and faseng talk to, served over real HTTP on
//! 127.0.0.1 so that tests drive the real clients, not mocks of them.
//! For tests only: depend on it from `[dev-dependencies]`.

pub mod fixtures;
pub mod github;
pub mod heroku;
pub mod pgcluster;
pub mod slack;
