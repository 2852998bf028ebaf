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
    assert_eq!(generated.len(), 5, "one schema per kind and version");
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

/// `kubectl explain` shows a field's description: for a field with a fixed
/// set of values, it must say what each value means, not just list it.
#[test]
fn every_enum_value_is_explained_where_kubectl_explain_shows_it() {
    fn walk(path: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(values)) = m.get("enum") {
                    let description = m.get("description").and_then(|d| d.as_str()).unwrap_or_default();
                    for value in values.iter().filter_map(|v| v.as_str()) {
                        if !description.contains(&format!("- {value}: ")) {
                            out.push(format!("{path}: {value}"));
                        }
                    }
                }
                for (k, v) in m {
                    walk(&format!("{path}.{k}"), v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(path, v, out)),
            _ => {}
        }
    }
    let mut unexplained = Vec::new();
    for crd in delenda::api::crds() {
        walk(&crd.spec.names.kind.clone(), &serde_json::to_value(&crd).unwrap(), &mut unexplained);
    }
    assert!(
        unexplained.is_empty(),
        "values without a meaning in their field's description:\n{}",
        unexplained.join("\n")
    );
}
