//! End-to-end tests: real `runway server` processes driven by the real AWS CLI v2, boto3,
//! the `runway` CLI, and hand-signed HTTP requests.

mod harness;

mod api;
mod auth;
mod cli;
mod dataplane;
mod deploy;
mod domains;
mod durability;
mod http_settings;
mod netns;
mod packages;
mod registry;
mod reliability;
mod remote;
mod runtimes;
mod secrets;
mod source;
mod vpc;
