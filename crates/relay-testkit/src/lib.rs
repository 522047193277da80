//! relay-testkit: what every Rust runner of the conformance data shares.
//!
//! - [`compare`]: the comparison rule of spec/vectors/README.md;
//! - [`script`]: the one session step driver (a virtual clock, the timers the
//!   machine asks for, the frames and events each step produced), generic over a
//!   [`script::Machine`] so the same driver runs the native connection and the
//!   compiled component;
//! - [`transcripts`]: the project's own session cases, in the sessions.json shape;
//! - [`vectors`]: where the vectors are, and the known deviations.
//!
//! The Python and JavaScript runners (embed/) follow the same rules in their own
//! languages.

pub mod compare;
pub mod script;
pub mod transcripts;
pub mod vectors;
