//! Native tests of the connection: the shared vectors, our own transcripts and a
//! seeded property test.

pub mod driver;
mod effects;
mod property;
mod transcripts;
mod vectors;
