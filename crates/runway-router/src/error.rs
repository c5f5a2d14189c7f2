//! Why the router answered a request itself. Every error says where it came from
//! (the client, the instance, or the router), whether sending the request again to
//! another instance is safe, and maps to exactly one status code and one metric label.

use crate::grpc;
use http::StatusCode;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something the router refuses.
    Client,
    /// The instance could not be reached or failed.
    Upstream,
    /// The router itself: no capacity in time, or a bug.
    Internal,
}

/// A request the router answered itself.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The request has no valid Host header or authority.
    #[error("the request has no valid host")]
    BadHost,
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No service has this host.
    #[error("no service at this address")]
    UnknownHost,
    /// The request body is larger than the service allows.
    #[error("the request body is larger than this service accepts")]
    BodyTooLarge,
    /// The request body is malformed (a bad chunk size, for one) or the client stopped
    /// sending it.
    #[error("the request body is malformed or incomplete")]
    BadBody(String),
    /// The client sent nothing of its request body for the body read timeout.
    #[error("the request body stopped coming")]
    BodyTimeout,
    /// The client's connection has as many uploads in progress as it may.
    #[error("this connection has too many uploads in progress")]
    TooManyUploads,
    /// The service is paused.
    #[error("this service is paused")]
    Paused,
    /// The service has no revision to send the request to.
    #[error("this service has no active revision")]
    NoRevision,
    /// Every instance is busy and the queue is full.
    #[error("every instance is busy and the queue is full")]
    QueueFull,
    /// No instance had capacity within the queue's maximum wait.
    #[error("no instance became available in time")]
    QueueTimeout,
    /// No instance accepted a connection (the request was not sent).
    #[error("cannot connect to an instance: {0}")]
    Connect(String),
    /// The instance failed after the request was sent.
    #[error("the instance failed to answer: {0}")]
    Upstream(String),
    /// The request took longer than the service's request timeout.
    #[error("the request timed out")]
    Timeout,
    /// The router is shutting down.
    #[error("the router is shutting down")]
    ShuttingDown,
}

impl RouterError {
    /// Where the error came from.
    pub fn origin(&self) -> Origin {
        match self {
            RouterError::BadHost
            | RouterError::BadRequest(_)
            | RouterError::UnknownHost
            | RouterError::BodyTooLarge
            | RouterError::BadBody(_)
            | RouterError::BodyTimeout
            | RouterError::TooManyUploads => Origin::Client,
            RouterError::Connect(_) | RouterError::Upstream(_) | RouterError::Timeout => {
                Origin::Upstream
            }
            RouterError::Paused
            | RouterError::NoRevision
            | RouterError::QueueFull
            | RouterError::QueueTimeout
            | RouterError::ShuttingDown => Origin::Internal,
        }
    }

    /// Whether the request may be sent to another instance: only when none of it was
    /// sent anywhere.
    pub fn retry_safe(&self) -> bool {
        matches!(self, RouterError::Connect(_))
    }

    /// The status code the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            RouterError::BadHost | RouterError::BadRequest(_) | RouterError::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            RouterError::UnknownHost => StatusCode::NOT_FOUND,
            RouterError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RouterError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            RouterError::TooManyUploads => StatusCode::TOO_MANY_REQUESTS,
            RouterError::Paused
            | RouterError::NoRevision
            | RouterError::QueueFull
            | RouterError::QueueTimeout
            | RouterError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            RouterError::Connect(_) | RouterError::Upstream(_) => StatusCode::BAD_GATEWAY,
            RouterError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The metric label (`kind`) counted for this error.
    pub fn label(&self) -> &'static str {
        match self {
            RouterError::BadHost => "bad_host",
            RouterError::BadRequest(_) => "bad_request",
            RouterError::UnknownHost => "unknown_host",
            RouterError::BodyTooLarge => "body_too_large",
            RouterError::BadBody(_) => "bad_body",
            RouterError::BodyTimeout => "body_timeout",
            RouterError::TooManyUploads => "too_many_uploads",
            RouterError::Paused => "paused",
            RouterError::NoRevision => "no_revision",
            RouterError::QueueFull => "queue_full",
            RouterError::QueueTimeout => "queue_timeout",
            RouterError::Connect(_) => "upstream_connect",
            RouterError::Upstream(_) => "upstream",
            RouterError::Timeout => "timeout",
            RouterError::ShuttingDown => "shutting_down",
        }
    }

    /// Seconds the client should wait before trying again, for errors that pass.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            RouterError::QueueFull
            | RouterError::QueueTimeout
            | RouterError::NoRevision
            | RouterError::TooManyUploads => Some(1),
            RouterError::Paused | RouterError::ShuttingDown => Some(5),
            _ => None,
        }
    }

    /// The gRPC status a gRPC client gets (the HTTP status would be lost on it).
    pub(crate) fn grpc_code(&self) -> grpc::Code {
        match self {
            RouterError::BadHost | RouterError::BadRequest(_) | RouterError::BadBody(_) => {
                grpc::Code::Internal
            }
            RouterError::UnknownHost => grpc::Code::Unimplemented,
            RouterError::BodyTooLarge | RouterError::QueueFull | RouterError::TooManyUploads => {
                grpc::Code::ResourceExhausted
            }
            RouterError::BodyTimeout => grpc::Code::Cancelled,
            RouterError::Timeout => grpc::Code::DeadlineExceeded,
            RouterError::Paused
            | RouterError::NoRevision
            | RouterError::QueueTimeout
            | RouterError::Connect(_)
            | RouterError::Upstream(_)
            | RouterError::ShuttingDown => grpc::Code::Unavailable,
        }
    }

    /// Whether the client connection is closed after the answer (malformed input).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            RouterError::BadHost
                | RouterError::BadRequest(_)
                | RouterError::BadBody(_)
                | RouterError::BodyTimeout
        )
    }
}
