//! The committed CRDs in crds/, and the JSON schemas in schemas/, are
//! exactly what the code generates.

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

#[test]
fn committed_json_schemas_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let generated = delenda::api::json_schemas();
    assert_eq!(generated.len(), 4, "one schema per kind and version");
    for (path, text) in &generated {
        let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        assert!(
            &committed == text,
            "schemas/{path} is stale: regenerate with `cargo run -- crd --json-schemas schemas` and commit it"
        );
    }
    // Nothing stale left beside them.
    let mut committed: Vec<String> = std::fs::read_dir(root.join("delenda.dev"))
        .map(|d| d.filter_map(|e| Some(format!("delenda.dev/{}", e.ok()?.file_name().to_str()?))).collect())
        .unwrap_or_default();
    committed.sort();
    let mut expected: Vec<String> = generated.into_iter().map(|(p, _)| p).collect();
    expected.sort();
    assert_eq!(committed, expected, "schemas/delenda.dev holds exactly the generated files");
}
