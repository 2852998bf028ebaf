//! The committed CRDs in crds/ are exactly what the code generates.

#[test]
fn committed_crds_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/delenda.dev.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = delenda::api::crds_yaml();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `cargo run -- crd > crds/delenda.dev.yaml` and commit it",
        path.display()
    );
}
