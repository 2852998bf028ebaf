//! `delenda lint`: checks a directory of manifests offline, as a CI job
//! would before anything reaches a cluster.
//!
//! - every DataStore, RetentionPolicy and ErasureRequest against the CRD
//!   schema the operator ships, with its defaults and its CEL rules
//!   evaluated here ([`schema`]), in the API server's words;
//! - what the operator checks and the API server cannot: cron expressions,
//!   time zones, implausible periods (the operator's own code, so the two
//!   cannot disagree);
//! - references between the manifests: a policy's target names a DataStore
//!   of the set, an ErasureRequest's categories are some policy's;
//! - identity Secrets: a Secret labelled `delenda.dev/identity`, or named
//!   by an ErasureRequest, is refused: a data subject's identities must not
//!   enter Git history, where no erasure reaches them.
//!
//! Findings are printed as `file:line: error[rule]: message`, or as GitHub
//! Actions annotations; the exit code is 0 when no error was found, 1 when
//! one was, 2 when the input could not be read.

pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::{self, validate};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The manifest would be refused, or would not do what it says.
    Error,
    /// Likely a mistake, but it can be right.
    Warning,
}

/// One finding, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based) of the document, or of the field when found.
    pub line: usize,
    /// How bad.
    pub severity: Severity,
    /// Which check: `schema`, `cel`, `operator`, `reference`,
    /// `identity-secret`, `yaml`.
    pub rule: &'static str,
    /// The object, as `Kind/namespace/name`, when there is one.
    pub object: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {level}[{}]: ", self.file.display(), self.line, self.rule)?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Finding {
    /// The finding as a GitHub Actions workflow command, which the run's
    /// summary and the pull request's diff show at the line.
    pub fn github(&self) -> String {
        fn escape(s: &str, property: bool) -> String {
            let s = s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
            if property { s.replace(':', "%3A").replace(',', "%2C") } else { s }
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let message = match &self.object {
            Some(o) => format!("{o}: {}", self.message),
            None => self.message.clone(),
        };
        format!(
            "::{level} file={},line={},title={}::{}",
            escape(&self.file.display().to_string(), true),
            self.line,
            escape(&format!("delenda lint ({})", self.rule), true),
            escape(&message, false)
        )
    }
}

/// What a lint found over a set of files.
#[derive(Debug, Default)]
pub struct Report {
    /// The files read.
    pub files: usize,
    /// The Kubernetes objects read.
    pub objects: usize,
    /// Every finding, by file and line.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The number of errors.
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }

    /// The number of warnings.
    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Warning).count()
    }
}

/// The input could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    /// A path given does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Nothing to check.
    #[error("no .yaml, .yml or .json files under {0}")]
    Empty(String),
}

/// One YAML document of a file.
#[derive(Debug, Clone)]
struct Document {
    file: PathBuf,
    /// The document's first line in the file.
    line: usize,
    /// Its text, for finding a field's line.
    text: String,
    value: Value,
}

impl Document {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or_default()
    }
    fn object(&self) -> String {
        match self.namespace() {
            "" => format!("{}/{}", self.kind(), self.name()),
            ns => format!("{}/{ns}/{}", self.kind(), self.name()),
        }
    }

    /// The line of a field path (`spec.targets[0].table.timeColumn`), found
    /// by looking for each key in turn below the last; the document's first
    /// line when a key is not found.
    fn line_of(&self, path: &str) -> usize {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut from = 0;
        let mut found = None;
        for segment in path.split(['.', '[']).filter(|s| !s.is_empty() && !s.ends_with(']')) {
            let key = segment.trim_matches('"');
            let hit = lines.iter().enumerate().skip(from).find(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ");
                t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":"))
            });
            match hit {
                Some((i, _)) => {
                    found = Some(i);
                    from = i + 1;
                }
                None => break,
            }
        }
        self.line + found.unwrap_or(0)
    }
}

/// The files to read: each path, or every `.yaml`, `.yml` and `.json`
/// file below it (hidden directories skipped), in a stable order.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LintError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LintError> {
        let read = |e| LintError::Read { path: dir.to_owned(), source: e };
        let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(read)?.collect::<Result<_, _>>().map_err(read)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| LintError::Read { path: path.clone(), source: e })?;
        if meta.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    if out.is_empty() {
        let shown = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(LintError::Empty(shown));
    }
    Ok(out)
}

/// Splits a file into its YAML documents, each with its first line.
fn documents(file: &Path, text: &str, findings: &mut Vec<Finding>) -> Vec<Document> {
    let mut chunks: Vec<(usize, String)> = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            chunks.push((i + 2, String::new()));
        } else {
            let chunk = &mut chunks.last_mut().expect("one chunk at least").1;
            chunk.push_str(line);
            chunk.push('\n');
        }
    }
    let mut out = Vec::new();
    for (line, chunk) in chunks {
        let value: Result<Value, String> = if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&chunk).map_err(|e| e.to_string())
        } else {
            serde_yaml::from_str::<serde_yaml::Value>(&chunk)
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
        };
        match value {
            Ok(Value::Null) => {}
            Ok(Value::Object(m)) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                for item in m.get("items").and_then(Value::as_array).into_iter().flatten() {
                    out.push(Document { file: file.to_owned(), line, text: chunk.clone(), value: item.clone() });
                }
            }
            Ok(value) => out.push(Document { file: file.to_owned(), line, text: chunk, value }),
            Err(e) => findings.push(Finding {
                file: file.to_owned(),
                line,
                severity: Severity::Error,
                rule: "yaml",
                object: None,
                message: format!("not valid YAML: {e}"),
            }),
        }
    }
    out
}

/// The delenda.dev kinds and the schema of each served version.
fn schemas() -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for crd in api::crds() {
        for version in &crd.spec.versions {
            if let Some(schema) = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) {
                let api_version = format!("{}/{}", crd.spec.group, version.name);
                out.insert((api_version, crd.spec.names.kind.clone()), serde_json::to_value(schema).expect("a schema"));
            }
        }
    }
    out
}

/// Lints every manifest under `paths`.
pub fn lint(paths: &[PathBuf]) -> Result<Report, LintError> {
    let files = files(paths)?;
    let mut report = Report { files: files.len(), ..Default::default() };
    let mut docs = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| LintError::Read { path: file.clone(), source: e })?;
        docs.extend(documents(file, &text, &mut report.findings));
    }
    report.objects = docs.iter().filter(|d| !d.kind().is_empty()).count();
    report.findings.extend(check_documents(&mut docs));
    report.findings.sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
    Ok(report)
}

/// Every check over a set of documents (defaults are applied in place).
fn check_documents(docs: &mut [Document]) -> Vec<Finding> {
    let schemas = schemas();
    let kinds: BTreeSet<&str> = schemas.keys().map(|(_, k)| k.as_str()).collect();
    let kinds: BTreeSet<String> = kinds.into_iter().map(str::to_owned).collect();
    let mut out = Vec::new();
    let mut valid = vec![false; docs.len()];
    for (i, doc) in docs.iter_mut().enumerate() {
        let mut value = doc.value.clone();
        let doc_ref: &Document = doc;
        let finding = |path: &str, severity, rule, message: String| Finding {
            file: doc_ref.file.clone(),
            line: doc_ref.line_of(path),
            severity,
            rule,
            object: Some(doc_ref.object()),
            message,
        };
        let api_version = doc.value["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = doc.kind().to_owned();
        if !api_version.starts_with(&format!("{}/", api::GROUP)) || !kinds.contains(&kind) {
            if api_version.starts_with(&format!("{}/", api::GROUP)) {
                out.push(finding("kind", Severity::Error, "schema", format!("no kind {kind:?} in {}", api::GROUP)));
            }
            continue;
        }
        let Some(schema) = schemas.get(&(api_version.clone(), kind.clone())) else {
            let served: Vec<&str> = schemas.keys().filter(|(_, k)| *k == kind).map(|(v, _)| v.as_str()).collect();
            out.push(finding(
                "apiVersion",
                Severity::Error,
                "schema",
                format!("{api_version} does not serve {kind}; use {}", served.join(" or ")),
            ));
            continue;
        };
        let before = out.len();
        for problem in name_problems(&doc.value) {
            out.push(finding("metadata.name", Severity::Error, "schema", problem));
        }
        for v in schema::validate(schema, &mut value) {
            let rule = if v.cel { "cel" } else { "schema" };
            out.push(finding(&v.path, Severity::Error, rule, v.message));
        }
        if out.len() > before {
            continue;
        }
        valid[i] = true;
        for (path, message) in operator_checks(&kind, &value) {
            out.push(finding(&path, Severity::Error, "operator", message));
        }
        doc.value = value;
    }
    out.extend(references(docs, &valid));
    out.extend(identity_secrets(docs));
    out
}

/// What the API server checks of every object's name.
fn name_problems(value: &Value) -> Vec<String> {
    let meta = &value["metadata"];
    match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (None, None) => vec!["metadata.name: Required value: name or generateName is required".into()],
        (Some(name), _) => {
            let ok = name.len() <= 253
                && !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            if ok {
                vec![]
            } else {
                vec![format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                )]
            }
        }
        (None, Some(_)) => vec![],
    }
}

/// What the operator itself checks and the API server cannot, by the
/// operator's own code.
fn operator_checks(kind: &str, value: &Value) -> Vec<(String, String)> {
    match kind {
        "RetentionPolicy" => match serde_json::from_value::<api::policy::RetentionPolicySpec>(value["spec"].clone()) {
            Ok(spec) => validate::policy(&spec)
                .into_iter()
                .map(|p| {
                    let path = match &p {
                        validate::SpecError::BadCron { .. } => "spec.schedule.cron",
                        validate::SpecError::UnknownTimeZone(_) => "spec.schedule.timeZone",
                        validate::SpecError::PeriodTooLong(_) => "spec.retention.period",
                        validate::SpecError::UnknownTargetTimeZone { .. } => "spec.targets",
                    };
                    (path.to_owned(), format!("{p} (the operator reports reason {} in Valid)", p.reason()))
                })
                .collect(),
            Err(e) => vec![("spec".into(), format!("the operator cannot read the spec: {e}"))],
        },
        "DataStore" => match serde_json::from_value::<api::datastore::DataStoreSpec>(value["spec"].clone()) {
            Ok(_) => vec![],
            Err(e) => vec![("spec".into(), format!("the operator cannot read the spec: {e}"))],
        },
        "ErasureRequest" => match serde_json::from_value::<api::erasure::ErasureRequestSpec>(value["spec"].clone()) {
            Ok(_) => vec![],
            Err(e) => vec![("spec".into(), format!("the operator cannot read the spec: {e}"))],
        },
        "AccessRequest" => match serde_json::from_value::<api::access::AccessRequestSpec>(value["spec"].clone()) {
            Ok(_) => vec![],
            Err(e) => vec![("spec".into(), format!("the operator cannot read the spec: {e}"))],
        },
        _ => vec![],
    }
}

/// A policy's DataStores must be in the set, in its namespace; an
/// ErasureRequest's categories should be some policy's.
fn references(docs: &[Document], valid: &[bool]) -> Vec<Finding> {
    fn of_kind<'a>(docs: &'a [Document], valid: &'a [bool], kind: &'a str) -> impl Iterator<Item = &'a Document> {
        docs.iter().zip(valid).filter(move |(d, ok)| **ok && d.kind() == kind).map(|(d, _)| d)
    }
    let of = |kind: &'static str| of_kind(docs, valid, kind);
    let stores: BTreeSet<(&str, &str)> = of("DataStore").map(|d| (d.namespace(), d.name())).collect();
    let categories: BTreeSet<(&str, &str)> =
        of("RetentionPolicy").filter_map(|d| Some((d.namespace(), d.value["spec"]["category"].as_str()?))).collect();
    let mut out = Vec::new();
    for doc in of("RetentionPolicy") {
        for (i, target) in doc.value["spec"]["targets"].as_array().into_iter().flatten().enumerate() {
            let store = target["dataStoreRef"]["name"].as_str().unwrap_or_default();
            if !stores.contains(&(doc.namespace(), store)) {
                let path = format!("spec.targets[{i}].dataStoreRef.name");
                out.push(Finding {
                    file: doc.file.clone(),
                    line: doc.line_of(&path),
                    severity: Severity::Error,
                    rule: "reference",
                    object: Some(doc.object()),
                    message: format!(
                        "{path}: target {} names DataStore {store:?}, which is not among the manifests{}; the operator would report Valid False, reason DataStoreNotFound",
                        target["name"].as_str().unwrap_or_default(),
                        match doc.namespace() {
                            "" => String::new(),
                            ns => format!(" in namespace {ns}"),
                        }
                    ),
                });
            }
        }
    }
    for doc in of("ErasureRequest").chain(of("AccessRequest")) {
        for category in doc.value["spec"]["scope"]["categories"].as_array().into_iter().flatten() {
            let category = category.as_str().unwrap_or_default();
            if !categories.contains(&(doc.namespace(), category)) {
                out.push(Finding {
                    file: doc.file.clone(),
                    line: doc.line_of("spec.scope.categories"),
                    severity: Severity::Warning,
                    rule: "reference",
                    object: Some(doc.object()),
                    message: format!(
                        "spec.scope.categories: no RetentionPolicy among the manifests has category {category:?}; the request would find no target for it"
                    ),
                });
            }
        }
    }
    out
}

/// Identity Secrets in Git: refused, whatever they hold.
fn identity_secrets(docs: &[Document]) -> Vec<Finding> {
    let named: BTreeSet<(&str, &str)> = docs
        .iter()
        .filter(|d| matches!(d.kind(), "ErasureRequest" | "AccessRequest" | "Hold"))
        .filter_map(|d| Some((d.namespace(), d.value["spec"]["identitySecretRef"]["name"].as_str()?)))
        .collect();
    docs.iter()
        .filter(|d| d.kind() == "Secret" && d.value["apiVersion"].as_str() == Some("v1"))
        .filter_map(|d| {
            let labelled = d.value["metadata"]["labels"]["delenda.dev/identity"].as_str() == Some("true");
            let referenced = named.contains(&(d.namespace(), d.name()));
            (labelled || referenced).then(|| Finding {
                file: d.file.clone(),
                line: d.line_of(if labelled { "metadata.labels" } else { "metadata.name" }),
                severity: Severity::Error,
                rule: "identity-secret",
                object: Some(d.object()),
                message: format!(
                    "a data subject's identities must not be committed: Git keeps them in its history, where no erasure reaches them{}. Create the Secret in the cluster only (`kubectl delenda erase`, or `kubectl create secret generic ... --from-literal` and the label delenda.dev/identity=true), and commit only the ErasureRequest",
                    if labelled { "" } else { " (a request or a Hold names this Secret as its identities)" }
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_text(text: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut docs = documents(Path::new("m.yaml"), text, &mut findings);
        findings.extend(check_documents(&mut docs));
        findings
    }

    const STORE: &str = "apiVersion: delenda.dev/v1alpha1
kind: DataStore
metadata:
  name: crm
spec:
  postgres:
    host: crm-db
    database: crm
    credentialsSecret:
      name: crm-db
";

    fn policy(store: &str, cron: &str) -> String {
        format!(
            "apiVersion: delenda.dev/v1alpha1
kind: RetentionPolicy
metadata:
  name: calls
spec:
  category: calls
  description: call records
  responsibleParty: self
  legalBasis: LegalObligation
  retention:
    period: 6mo
  schedule:
    cron: \"{cron}\"
    timeZone: Europe/Amsterdam
  targets:
    - name: cdrs
      dataStoreRef:
        name: {store}
      table:
        name: cdrs
        timeColumn: ended_at
"
        )
    }

    #[test]
    fn a_consistent_set_has_no_findings() {
        let findings = lint_text(&format!("{STORE}---\n{}", policy("crm", "0 3 * * *")));
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn a_policy_naming_a_datastore_outside_the_set_is_an_error_at_its_line() {
        let text = format!("{STORE}---\n{}", policy("crm-old", "0 3 * * *"));
        let findings = lint_text(&text);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let f = &findings[0];
        assert_eq!((f.rule, f.severity), ("reference", Severity::Error));
        assert!(f.message.contains("\"crm-old\""), "{f}");
        let line = text.lines().position(|l| l.contains("name: crm-old")).unwrap() + 1;
        assert_eq!(f.line, line, "{f}");
    }

    #[test]
    fn the_operators_own_checks_run_offline() {
        let findings = lint_text(&format!("{STORE}---\n{}", policy("crm", "0 25 * * *")));
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].rule, "operator");
        assert!(findings[0].message.contains("InvalidSchedule"), "{}", findings[0]);
    }

    #[test]
    fn identity_secrets_are_refused_labelled_or_named() {
        let text = "apiVersion: v1
kind: Secret
metadata:
  name: subject-1
  labels:
    delenda.dev/identity: \"true\"
stringData:
  email: jan@example.nl
---
apiVersion: v1
kind: Secret
metadata:
  name: crm-db
stringData:
  password: x
";
        let findings = lint_text(text);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].rule, "identity-secret");
        assert!(!findings[0].to_string().contains("jan@example.nl"), "a finding must not repeat an identity");
    }

    #[test]
    fn an_access_request_is_checked_like_an_erasure_request() {
        let request = "apiVersion: delenda.dev/v1alpha1
kind: AccessRequest
metadata:
  name: access-1
spec:
  identitySecretRef:
    name: subject-1
  receivedAt: \"2026-11-16T14:05:00Z\"
  identityVerification:
    verifiedBy: staff-0417
    method: KnownContactChannel
  scope:
    categories: [calls, contacts]
---
apiVersion: v1
kind: Secret
metadata:
  name: subject-1
stringData:
  email: jan@example.nl
";
        let findings = lint_text(&format!("{STORE}---\n{}---\n{request}", policy("crm", "0 3 * * *")));
        assert_eq!(findings.len(), 2, "{findings:#?}");
        let reference = findings.iter().find(|f| f.rule == "reference").expect("the unknown category");
        assert_eq!(reference.severity, Severity::Warning);
        assert!(reference.message.contains("\"contacts\""), "{reference}");
        let secret = findings.iter().find(|f| f.rule == "identity-secret").expect("the committed identities");
        assert_eq!(secret.severity, Severity::Error);
        assert!(secret.message.contains("names this Secret"), "{secret}");
        // And the schema: an AccessRequest that may export nothing is refused.
        let zero = request.replace("  scope:", "  maxRecords: 0\n  scope:");
        let findings = lint_text(&format!("{STORE}---\n{}---\n{zero}", policy("crm", "0 3 * * *")));
        assert!(findings.iter().any(|f| f.rule == "schema" && f.message.contains("maxRecords")), "{findings:#?}");
    }

    #[test]
    fn github_annotations_escape_what_would_end_them() {
        let f = Finding {
            file: "a,b:c.yaml".into(),
            line: 3,
            severity: Severity::Warning,
            rule: "reference",
            object: None,
            message: "50% done\nnext".into(),
        };
        assert_eq!(
            f.github(),
            "::warning file=a%2Cb%3Ac.yaml,line=3,title=delenda lint (reference)::50%25 done%0Anext"
        );
    }

    #[test]
    fn yaml_that_does_not_parse_is_a_finding_with_its_line() {
        let findings = lint_text(&format!("{STORE}---\nkind: [unclosed\n"));
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!((findings[0].rule, findings[0].line), ("yaml", 12));
    }
}
