//! `winback-app` owns winback's use cases and builds everything from configuration ([`config`]), between the store and channels below and the
//! command line and HTTP service above: what follows an ingest ([`ingest`]: identities resolved,
//! the touched profiles' features refreshed), scoring ([`scoring`]: features, model fits,
//! stages, priorities), model fitting with its holdout check ([`models`]), the retention policy ([`retention`]), and the demo's story ([`demo`], with the simulator [`simulate`]), and the always-on schedule ([`schedule`]: identities and features of the
//! profiles any ingest touched, scoring at a set local time, under leases so that several
//! workers never run a job twice). `winback-cli` keeps clap and printing; `winback-http` and the
//! worker call the same functions, so no use case is written twice.

pub mod campaigns;
pub mod config;
pub mod demo;
pub mod ingest;
pub mod models;
pub mod retention;
pub mod schedule;
pub mod scoring;
pub mod simulate;
pub mod worker;
