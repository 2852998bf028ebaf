//! The engine: runs plans against stores and keeps the evidence.

pub mod connect;
pub mod erase;
pub mod evidence;
pub mod export;
pub mod run;
pub mod sink;
