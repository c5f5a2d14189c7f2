//! The App Runner resource model shared by every part of runway: identifiers, ARNs,
//! timestamps, the API's wire shapes, their validation, and the error types the API
//! answers with.
//!
//! This crate is pure data and rules. It must never do I/O, spawn tasks, read the clock
//! other than through [`Timestamp::now`], or depend on any other runway crate.

#![forbid(unsafe_code)]

pub mod arn;
pub mod cidr;
pub mod domains;
pub mod error;
pub mod http;
pub mod ids;
pub mod network;
pub mod records;
pub mod reference;
pub mod shapes;
pub mod time;
pub mod validate;

pub use arn::{Arn, ResourceKind};
pub use cidr::Subnet;
pub use error::{ApiError, ErrorKind};
pub use time::Timestamp;
