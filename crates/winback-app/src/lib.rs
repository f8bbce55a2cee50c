//! `winback-app` owns winback's use cases, between the store and channels below and the command
//! line and HTTP service above, and builds everything from configuration ([`config`]):
//! - import and what follows an ingest ([`ingest`]: identities resolved, the touched profiles'
//!   features refreshed);
//! - bounces and complaints from any source ([`mail_events`]);
//! - scoring ([`scoring`]: features, model fits, stages, priorities) and model fitting with its
//!   holdout check ([`models`]);
//! - campaign files ([`campaigns`]), the retention policy ([`retention`]);
//! - the demo's story ([`demo`]) and the simulator ([`simulate`]);
//! - the always-on schedule ([`schedule`]: identities and features of the profiles any ingest
//!   touched, scoring at a set local time, retention daily, under leases so that several workers
//!   never run a job twice) and the worker loop ([`worker`]).
//!
//! `winback-cli` keeps clap and printing; `winback-http` and the worker call the same
//! functions, so no use case is written twice.

pub mod calls;
pub mod campaigns;
pub mod config;
pub mod demo;
pub mod exports;
pub mod ingest;
pub mod mail_events;
pub mod models;
pub mod planning;
pub mod retention;
pub mod schedule;
pub mod scoring;
pub mod simulate;
pub mod wallet;
pub mod worker;
