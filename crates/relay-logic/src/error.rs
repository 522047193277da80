//! The one error type of the codec: a kind a program can match and a message a
//! person can read. Messages name fields, never values that could be secrets.

use std::fmt;

/// The rejection kinds named by the conformance vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    MalformedJson,
    NotObject,
    MissingField,
    InvalidField,
    TooLarge,
    UnknownType,
}

impl ErrorKind {
    /// The snake_case name used in vectors and in APP-PROTOCOL `error` events.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::MalformedJson => "malformed_json",
            ErrorKind::NotObject => "not_object",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidField => "invalid_field",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::UnknownType => "unknown_type",
        }
    }
}

/// A typed rejection of a line, frame or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DecodeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DecodeError {
            kind,
            message: message.into(),
        }
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MalformedJson, message)
    }
    pub fn not_object(what: &str) -> Self {
        Self::new(ErrorKind::NotObject, format!("{what} is not a JSON object"))
    }
    pub fn missing(field: &str) -> Self {
        Self::new(
            ErrorKind::MissingField,
            format!("required field `{field}` is missing"),
        )
    }
    pub fn invalid(field: &str, why: &str) -> Self {
        Self::new(ErrorKind::InvalidField, format!("field `{field}`: {why}"))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for DecodeError {}
