//! Delenda: a Kubernetes operator that enforces the data lifecycle a privacy
//! statement promises. See docs/architecture.md for the shape of the crate.

pub mod api;
pub mod audit;
pub mod certificate;
pub mod controller;
pub mod engine;
pub mod http;
pub mod lint;
pub mod metrics;
pub mod plan;
pub mod standalone;
pub mod stores;
