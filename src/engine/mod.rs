//! The engine: runs plans against stores and keeps the evidence.

pub mod evidence;
