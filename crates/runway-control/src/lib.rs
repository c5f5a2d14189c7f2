//! The controller (App Runner's deployment engine and Application Auto Scaling): it
//! carries out the operations the API records, keeps each service's revisions, instances
//! and routes converged with what is stored, and sets instance counts from the router's
//! concurrency measurements.
//!
//! It must never hold state that matters only in memory: every step of an operation is
//! recorded in the store before it is acted on, so a restart resumes it. It never serves
//! requests and never sits in their path.

#![forbid(unsafe_code)]

pub mod autoscaler;
