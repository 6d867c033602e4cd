//! The deployment payload, defined once.
//!
//! chima writes it into the GitHub Deployment it creates (hubot-deploy's shape, so
//! heaven-era consumers still read it); faseng reads it back from the `deployment`
//! webhook; the engine and the Slack sender read what faseng decided about it. One
//! type on both sides of each seam, never `json!` on one side and JSON pointers on
//! the other.
//!
//! A payload is a *request*, never configuration (ARCHITECTURE.md, "Trust"): anyone
//! who can create a GitHub Deployment writes it. So faseng takes from it only what a
//! requester may choose (which app of a shared repository, the hosts, the chat thread
//! of a verified chima request), and takes who asked from two verified sources only:
//! chima's signature over [`ChimaRequest`] and GitHub's `deployment.creator`. What
//! faseng decided is kept with the deployment under `_faseng` ([`FasengNotes`]),
//! overwriting whatever the sender put there.

#![warn(missing_docs)]

mod identity;
mod payload;
mod request;

pub use identity::{ChatTarget, FasengNotes, Identity, IdentitySource};
pub use payload::{AutoDeployNote, DeploymentPayload, Notify, PAYLOAD_NOTES_KEY};
pub use request::{
    ChimaRequest, MAX_REQUEST_AGE_SECS, REQUEST_VERSION, SignedRequest, SigningKey, VerifyError,
    new_nonce,
};
