//! The App Runner error types, as the API answers them.

use std::fmt;

/// The App Runner exception types (the `__type` of an error answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A field is missing, malformed or out of range.
    InvalidRequest,
    /// The resource is in a state that does not allow the call.
    InvalidState,
    /// The named resource does not exist.
    ResourceNotFound,
    /// A quota would be exceeded.
    ServiceQuotaExceeded,
    /// The server failed; the request may be retried.
    InternalServiceError,
}

impl ErrorKind {
    /// The name that goes in `__type`.
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "InvalidRequestException",
            ErrorKind::InvalidState => "InvalidStateException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorKind::InternalServiceError => "InternalServiceErrorException",
        }
    }

    /// The HTTP status: 400 for client faults, 500 for server faults.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InternalServiceError => 500,
            _ => 400,
        }
    }
}

/// An error the API answers with: a type and a message that names the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }

    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ServiceQuotaExceeded, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalServiceError, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.type_name(), self.message)
    }
}

impl std::error::Error for ApiError {}
