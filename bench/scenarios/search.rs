//! (to come)
use super::{Row, Scale};

/// The rows of this store.
pub async fn run(_scale: &Scale) -> Vec<Row> {
    Vec::new()
}
