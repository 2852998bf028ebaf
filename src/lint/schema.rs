//! A CRD's structural schema applied to a manifest offline, as the API
//! server applies it when the manifest is created: defaults first, then
//! types, required fields, enums, ranges, lengths, formats, list keys and
//! unknown fields, then the CEL rules (`x-kubernetes-validations`) of every
//! node whose own shape is right. Messages follow the API server's wording,
//! so a CI log and a `kubectl apply` say the same thing.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

/// One thing wrong with a manifest, at a field path (`spec.targets[0].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field, as the API server names it; empty for the whole object.
    pub path: String,
    /// What is wrong, in the API server's words.
    pub message: String,
    /// Whether a CEL rule (`x-kubernetes-validations`) found it, rather
    /// than the structural schema.
    pub cel: bool,
}

/// Applies the schema's defaults to `value`, drops `null` where the schema
/// does not allow it (the API server prunes those before defaulting), and
/// reports every violation.
pub fn validate(schema: &Value, value: &mut Value) -> Vec<Violation> {
    default(schema, value);
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    out
}

fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                map.retain(|k, v| !(v.is_null() && props.get(k).is_some_and(|s| !nullable(s))));
                for (name, prop) in props {
                    if !map.contains_key(name)
                        && let Some(d) = prop.get("default")
                    {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        default(prop, child);
                    }
                }
            } else if let Some(extra @ Value::Object(_)) = schema.get("additionalProperties") {
                map.values_mut().for_each(|v| default(extra, v));
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                items.iter_mut().for_each(|v| default(item, v));
            }
        }
        _ => {}
    }
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// `path: `, or nothing for the whole object.
fn at(path: &str) -> String {
    if path.is_empty() { String::new() } else { format!("{path}: ") }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as the API server prints it in "Invalid value: ...".
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{:?}", json_type(other)),
    }
}

fn invalid(out: &mut Vec<Violation>, path: &str, value: &Value, detail: String) {
    out.push(Violation {
        path: path.to_owned(),
        cel: false,
        message: format!("{}Invalid value: {}: {detail}", at(path), shown(value)),
    });
}

fn type_ok(want: &str, value: &Value) -> bool {
    match (want, value) {
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("number", Value::Number(_)) => true,
        (want, value) => want == json_type(value),
    }
}

/// Checks `value` at `path` against `schema`; returns whether its own
/// shape is right (so its CEL rules can be evaluated).
fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    if value.is_null() && nullable(schema) {
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !matches!(json_type(value), "integer" | "string") {
            invalid(out, path, value, format!("{path} in body must be of type int-or-string"));
            return;
        }
    } else if let Some(want) = schema.get("type").and_then(Value::as_str)
        && !type_ok(want, value)
    {
        let got = json_type(value);
        out.push(Violation {
            path: path.to_owned(),
            cel: false,
            message: format!("{path}: Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""),
        });
        return;
    }
    let before = out.len();
    match value {
        Value::String(s) => string(schema, s, value, path, out),
        Value::Number(n) => number(schema, n, value, path, out),
        Value::Array(items) => array(schema, items, path, out),
        Value::Object(map) => object(schema, map, path, out),
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let supported = allowed.iter().map(shown).collect::<Vec<_>>().join(", ");
        out.push(Violation {
            path: path.to_owned(),
            cel: false,
            message: format!("{path}: Unsupported value: {}: supported values: {supported}", shown(value)),
        });
    }
    // The API server evaluates a node's rules only when the node itself
    // has the shape they were written for.
    if out.len() == before
        && let Some(Value::Array(rules)) = schema.get("x-kubernetes-validations")
    {
        for rule in rules {
            cel_rule(rule, value, path, out);
        }
    }
}

fn string(schema: &Value, s: &str, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.push(Violation {
            path: path.to_owned(),
            cel: false,
            message: format!("{path}: Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        invalid(out, path, value, format!("{path} in body should be at least {min} chars long"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => invalid(out, path, value, format!("{path} in body should match '{pattern}'")),
            Ok(_) => {}
            Err(e) => invalid(out, path, value, format!("the schema's pattern '{pattern}' does not compile: {e}")),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time") && s.parse::<jiff::Timestamp>().is_err() {
        invalid(out, path, value, format!("{path} in body must be of type date-time: {value}"));
    }
}

fn number(schema: &Value, n: &serde_json::Number, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let x = n.as_f64().unwrap_or(f64::NAN);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && x < min
    {
        invalid(out, path, value, format!("{path} in body should be greater than or equal to {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && x > max
    {
        invalid(out, path, value, format!("{path} in body should be less than or equal to {max}"));
    }
}

fn array(schema: &Value, items: &[Value], path: &str, out: &mut Vec<Violation>) {
    let n = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        invalid(out, path, &Value::from(n), format!("{path} in body should have at least {min} items"));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        out.push(Violation {
            path: path.to_owned(),
            cel: false,
            message: format!("{path}: Too many: {n}: must have at most {max} items"),
        });
    }
    if let Some(item) = schema.get("items") {
        for (i, v) in items.iter().enumerate() {
            check(item, v, &format!("{path}[{i}]"), out);
        }
    }
    let keys: Option<Vec<&str>> = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|k| k.iter().filter_map(Value::as_str).collect()),
        Some("set") => Some(vec![]),
        _ => None,
    };
    if let Some(keys) = keys {
        let mut seen = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let key: Value = if keys.is_empty() {
                v.clone()
            } else {
                Value::Array(keys.iter().map(|k| v.get(*k).cloned().unwrap_or(Value::Null)).collect())
            };
            if seen.contains(&key) {
                out.push(Violation {
                    path: format!("{path}[{i}]"),
                    cel: false,
                    message: format!("{path}[{i}]: Duplicate value: {key}"),
                });
            } else {
                seen.push(key);
            }
        }
    }
}

fn object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Violation>) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                let field = join(path, name);
                out.push(Violation { path: field.clone(), cel: false, message: format!("{field}: Required value") });
            }
        }
    }
    match (schema.get("properties"), schema.get("additionalProperties")) {
        (Some(Value::Object(props)), _) => {
            for (name, v) in map {
                let field = join(path, name);
                match props.get(name) {
                    Some(prop) => check(prop, v, &field, out),
                    None if preserve => {}
                    // Every object has these; the CRD's schema leaves them out.
                    None if path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => out.push(Violation {
                        path: field.clone(),
                        cel: false,
                        message: format!("unknown field \"{field}\""),
                    }),
                }
            }
        }
        (_, Some(extra @ Value::Object(_))) => {
            for (name, v) in map {
                check(extra, v, &format!("{path}[{name}]"), out);
            }
        }
        _ => {}
    }
}

/// The CEL environment of the API server, as far as the CRDs use it: the
/// standard library and the Kubernetes strings extension (`split`).
fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings).expect("the strings extension registers");
        env.add_extension(cel::extensions::lists).expect("the lists extension registers");
        Arc::new(env)
    })
    .clone()
}

fn cel_rule(rule: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let Some(source) = rule.get("rule").and_then(Value::as_str) else { return };
    // Transition rules compare with the stored object: nothing to compare
    // with offline.
    if source.contains("oldSelf") {
        return;
    }
    let field = match rule.get("fieldPath").and_then(Value::as_str) {
        Some(f) => format!("{path}{f}"),
        None => path.to_owned(),
    };
    let fail = |message: String| Violation { path: field.clone(), message, cel: true };
    let env = env();
    let program = match env.compile(source) {
        Ok(p) => p,
        Err(e) => {
            out.push(fail(format!("{field}: the rule {source:?} does not compile offline: {e}")));
            return;
        }
    };
    let mut context = cel::Context::with_env(env);
    if let Err(e) = context.add_variable("self", value) {
        out.push(fail(format!("{field}: the value cannot be handed to the rule {source:?}: {e}")));
        return;
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(true)) => {}
        Ok(cel::Value::Bool(false)) => {
            let message = rule
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| format!("failed rule: {source}"), str::to_owned);
            out.push(fail(format!("{}Invalid value: \"{}\": {message}", at(&field), json_type(value))));
        }
        Ok(v) => out.push(fail(format!("{field}: the rule {source:?} gave {v:?}, not a boolean"))),
        Err(e) => out.push(fail(format!("{field}: the rule {source:?} could not be evaluated: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(schema: Value, mut value: Value) -> Vec<String> {
        validate(&schema, &mut value).into_iter().map(|v| v.message).collect()
    }

    #[test]
    fn defaults_fill_in_before_rules_read_them() {
        let schema = json!({"type": "object", "properties": {
            "age": {"type": "string", "default": "LastModified"}, "keyDatePattern": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "(self.age == 'KeyDate') == has(self.keyDatePattern)",
                "message": "keyDatePattern is required when age is KeyDate, and only then"}]});
        assert!(messages(schema.clone(), json!({})).is_empty());
        assert_eq!(
            messages(schema, json!({"keyDatePattern": "{yyyy}"})),
            vec!["Invalid value: \"object\": keyDatePattern is required when age is KeyDate, and only then".to_owned()]
        );
    }

    #[test]
    fn shapes_are_reported_as_the_api_server_words_them() {
        let schema = json!({"type": "object", "required": ["mode"], "properties": {
            "mode": {"type": "string", "enum": ["DryRun", "Enforce"]},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "names": {"type": "array", "minItems": 1, "items": {"type": "string", "maxLength": 3}},
            "at": {"type": "string", "format": "date-time"}}});
        let got = messages(schema.clone(), json!({"mode": "Enforced", "port": 70000, "names": ["abcd"], "x": 1}));
        assert!(
            got.contains(&"mode: Unsupported value: \"Enforced\": supported values: \"DryRun\", \"Enforce\"".into()),
            "{got:?}"
        );
        assert!(
            got.contains(&"port: Invalid value: 70000: port in body should be less than or equal to 65535".into()),
            "{got:?}"
        );
        assert!(got.contains(&"names[0]: Too long: may not be more than 3 bytes".into()), "{got:?}");
        assert!(got.contains(&"unknown field \"x\"".into()), "{got:?}");
        let got = messages(schema, json!({"names": [], "at": "yesterday", "port": "80"}));
        assert!(got.contains(&"mode: Required value".into()), "{got:?}");
        assert!(got.contains(&"names: Invalid value: 0: names in body should have at least 1 items".into()), "{got:?}");
        assert!(got.iter().any(|m| m.starts_with("at: Invalid value: \"yesterday\"")), "{got:?}");
        assert!(
            got.contains(&"port: Invalid value: \"string\": port in body must be of type integer: \"string\"".into()),
            "{got:?}"
        );
    }

    #[test]
    fn every_cel_rule_of_the_crds_compiles_here() {
        fn rules(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::Array(rs)) = m.get("x-kubernetes-validations") {
                        out.extend(rs.iter().filter_map(|r| r["rule"].as_str().map(str::to_owned)));
                    }
                    m.values().for_each(|v| rules(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| rules(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        for crd in crate::api::crds() {
            rules(&serde_json::to_value(&crd).unwrap(), &mut all);
        }
        assert!(all.len() >= 40, "{} rules", all.len());
        for rule in all {
            assert!(env().compile(&rule).is_ok(), "{rule}");
        }
    }
}
