//! `winback-engine` owns the campaign engine: campaign files and their checking
//! ([`definition`]), the audience language ([`audience`], CEL), the journey state machine
//! ([`journey`]), send-time policies ([`policy`]), holdouts and variants ([`experiment`]), offer
//! codes ([`offer`]), the worker that schedules, steps and dispatches ([`worker`]), and the
//! simulator ([`simulate`]).
//!
//! It is free of IO crates: storage and delivery come in through the [`ports`] traits, time
//! through [`winback_domain::Clock`]. Everything that decides is a pure function tested without
//! a database; the store applies the decisions transactionally.

pub mod audience;
pub mod definition;
pub mod duration;
pub mod experiment;
pub mod file_outbox;
pub mod journey;
pub mod offer;
pub mod policy;
pub mod ports;
pub mod simulate;
pub mod worker;

pub use audience::{Audience, AudienceRow, Evaluator, JourneyFacts};
pub use definition::{Campaign, DefinitionError, Problem};
pub use ports::{CampaignStatus, EngineError, JourneyStore, MessageChannel, Transport};
pub use worker::{Engine, EngineSettings, PassStats};
