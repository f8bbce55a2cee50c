//! The use cases against a real store with a driven clock.
#![allow(missing_docs)]

mod ingest;
mod schedule;
mod worker;
