//! Delenda: a Kubernetes operator that enforces the data lifecycle a privacy
//! statement promises. See docs/architecture.md for the shape of the crate.

pub mod api;
pub mod plan;
pub mod engine;
pub mod stores;
pub mod controller;
pub mod http;
pub mod metrics;
pub mod standalone;
