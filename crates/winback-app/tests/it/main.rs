//! The use cases against a real store with a driven clock.
#![allow(missing_docs)]

mod schedule;
mod worker;
