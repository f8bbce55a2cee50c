//! Integration tests of the engine's pure parts: campaign files and journeys.

mod definitions;
mod journeys;
