//! The two kinds of evidence record, read into what a certificate shows.
//! Every string passes the personal-data guard ([`Shown`]); times are
//! parsed so the page can write them in full; a field the record lacks is
//! none, and shown as such, never guessed.

use jiff::Timestamp;
use serde_json::Value;

use super::CertificateError;
use super::guard::Shown;

/// A time from a record: an instant, or text that is not one (shown as is).
#[derive(Clone, Debug, PartialEq)]
pub enum Stamp {
    /// A readable instant.
    At(Timestamp),
    /// Text that does not read as an instant.
    Text(Shown),
}

impl Stamp {
    /// The instant, when there is one.
    pub fn at(&self) -> Option<Timestamp> {
        match self {
            Self::At(t) => Some(*t),
            Self::Text(_) => None,
        }
    }
}

/// One object of a record, with the path to it for error messages.
struct Fields<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, path: impl Into<String>) -> Self {
        Self { value, path: path.into() }
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    /// A string field; a number or boolean is shown as its text.
    fn text(&self, key: &str) -> Result<Option<Shown>, CertificateError> {
        self.get(key).map(|v| Shown::checked(&self.at(key), &scalar(v))).transpose()
    }

    fn time(&self, key: &str) -> Result<Option<Stamp>, CertificateError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let text = scalar(v);
        Ok(Some(match text.parse::<Timestamp>() {
            Ok(t) => Stamp::At(t),
            Err(_) => Stamp::Text(Shown::checked(&self.at(key), &text)?),
        }))
    }

    fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    fn list(&self, key: &str) -> Vec<Fields<'a>> {
        let path = self.at(key);
        self.get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().enumerate().map(|(i, v)| Fields::new(v, format!("{path}[{i}]"))).collect())
            .unwrap_or_default()
    }

    fn object(&self, key: &str) -> Fields<'a> {
        static NULL: Value = Value::Null;
        Fields::new(self.get(key).unwrap_or(&NULL), self.at(key))
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How the requester's identity was verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    pub verified_by: Option<Shown>,
    pub method: Option<Shown>,
    pub verified_at: Option<Stamp>,
    pub reference: Option<Shown>,
}

/// What happened at one target of an erasure.
#[derive(Clone, Debug, PartialEq)]
pub struct ErasureTarget {
    pub policy: Option<Shown>,
    pub target: Option<Shown>,
    pub outcome: Option<Shown>,
    pub matched: Option<i64>,
    pub erased: Option<i64>,
    pub remaining: Option<i64>,
    pub retained_until: Option<Stamp>,
    pub retained_under: Option<Shown>,
    pub on_behalf_of: Option<Shown>,
}

/// An `Erasure` record: one request's outcomes, merged over its passes.
#[derive(Clone, Debug, PartialEq)]
pub struct ErasureView {
    pub request: Option<Shown>,
    pub ground: Option<Shown>,
    pub received_at: Option<Stamp>,
    pub deadline: Option<Stamp>,
    pub verification: Verification,
    pub on_behalf_of: Option<Shown>,
    pub mode: Option<Shown>,
    /// Kind of identity and keyed digest, by kind.
    pub subject_digests: Vec<(Shown, Shown)>,
    pub phase: Option<Shown>,
    pub complete: bool,
    pub started_at: Option<Stamp>,
    pub finished_at: Option<Stamp>,
    pub targets: Vec<ErasureTarget>,
}

impl ErasureView {
    /// Reads an `Erasure` record.
    pub fn read(record: &Value) -> Result<Self, CertificateError> {
        let f = Fields::new(record, "record");
        let v = f.object("identityVerification");
        let digests = f.object("subjectDigests");
        let subject_digests = match digests.value.as_object() {
            Some(map) => map
                .iter()
                .map(|(kind, d)| {
                    let field = digests.at(kind);
                    Ok((Shown::checked(&field, kind)?, Shown::digest(&field, &scalar(d))?))
                })
                .collect::<Result<Vec<_>, CertificateError>>()?,
            None => Vec::new(),
        };
        let targets = f
            .list("targets")
            .iter()
            .map(|t| {
                Ok(ErasureTarget {
                    policy: t.text("policy")?,
                    target: t.text("target")?,
                    outcome: t.text("outcome")?,
                    matched: t.int("matched"),
                    erased: t.int("erased"),
                    remaining: t.int("remaining"),
                    retained_until: t.time("retainedUntil")?,
                    retained_under: t.text("retainedUnder")?,
                    on_behalf_of: t.text("onBehalfOf")?,
                })
            })
            .collect::<Result<Vec<_>, CertificateError>>()?;
        Ok(Self {
            request: f.text("request")?,
            ground: f.text("ground")?,
            received_at: f.time("receivedAt")?,
            deadline: f.time("deadline")?,
            verification: Verification {
                verified_by: v.text("verifiedBy")?,
                method: v.text("method")?,
                verified_at: v.time("verifiedAt")?,
                reference: v.text("reference")?,
            },
            on_behalf_of: f.text("onBehalfOf")?,
            mode: f.text("mode")?,
            subject_digests,
            phase: f.text("phase")?,
            complete: f.get("complete").and_then(Value::as_bool).unwrap_or(false),
            started_at: f.time("startedAt")?,
            finished_at: f.time("finishedAt")?,
            targets,
        })
    }
}

/// Records kept on purpose, by reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub reason: Option<Shown>,
    pub until: Option<Stamp>,
    pub count: i64,
}

/// A count by name: records unreadable by reason, or a dropped partition.
#[derive(Clone, Debug, PartialEq)]
pub struct Counted {
    pub name: Option<Shown>,
    pub count: i64,
}

/// What a run did with one target's records.
#[derive(Clone, Debug, PartialEq)]
pub struct RunTarget {
    pub name: Option<Shown>,
    pub matched: Option<i64>,
    pub deleted: Option<i64>,
    pub related_deleted: Option<i64>,
    pub remaining: Option<i64>,
    pub not_due: Option<i64>,
    pub retained: Vec<Kept>,
    pub unreadable: Vec<Counted>,
    pub dropped: Vec<Counted>,
    pub error: Option<Shown>,
}

/// A `RetentionRun` record.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    pub policy: Option<Shown>,
    pub category: Option<Shown>,
    pub legal_basis: Option<Shown>,
    pub responsible_party: Option<Shown>,
    pub customer: Option<Shown>,
    pub period: Option<Shown>,
    pub run_id: Option<Shown>,
    pub mode: Option<Shown>,
    pub cutoff: Option<Stamp>,
    pub time_zone: Option<Shown>,
    pub started_at: Option<Stamp>,
    pub finished_at: Option<Stamp>,
    pub outcome: Option<Shown>,
    pub stopped_by: Option<Shown>,
    pub targets: Vec<RunTarget>,
}

impl RunView {
    /// Reads a `RetentionRun` record.
    pub fn read(record: &Value) -> Result<Self, CertificateError> {
        let f = Fields::new(record, "record");
        let targets = f
            .list("targets")
            .iter()
            .map(|t| {
                let r = t.object("records");
                let counted = |key: &str, name: &str| {
                    r.list(key)
                        .iter()
                        .map(|c| {
                            Ok(Counted { name: c.text(name)?, count: c.int("count").or(c.int("records")).unwrap_or(0) })
                        })
                        .collect::<Result<Vec<_>, CertificateError>>()
                };
                Ok(RunTarget {
                    name: t.text("name")?,
                    matched: r.int("matched"),
                    deleted: r.int("deleted"),
                    related_deleted: r.int("relatedDeleted"),
                    remaining: r.int("remaining"),
                    not_due: r.int("notDue"),
                    retained: r
                        .list("retained")
                        .iter()
                        .map(|k| {
                            Ok(Kept {
                                reason: k.text("reason")?,
                                until: k.time("until")?,
                                count: k.int("count").unwrap_or(0),
                            })
                        })
                        .collect::<Result<Vec<_>, CertificateError>>()?,
                    unreadable: counted("unreadable", "reason")?,
                    dropped: counted("dropped", "name")?,
                    error: t.text("error")?,
                })
            })
            .collect::<Result<Vec<_>, CertificateError>>()?;
        Ok(Self {
            policy: f.text("policy")?,
            category: f.text("category")?,
            legal_basis: f.text("legalBasis")?,
            responsible_party: f.text("responsibleParty")?,
            customer: f.text("customer")?,
            period: f.text("period")?,
            run_id: f.text("runId")?,
            mode: f.text("mode")?,
            cutoff: f.time("cutoff")?,
            time_zone: f.text("timeZone")?,
            started_at: f.time("startedAt")?,
            finished_at: f.time("finishedAt")?,
            outcome: f.text("outcome")?,
            stopped_by: f.text("stoppedBy")?,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_personal_value_in_any_field_is_refused_naming_the_field() {
        let record = json!({"kind": "Erasure", "request": "ns/r", "targets": [
            {"policy": "p", "target": "t", "outcome": "Erased", "onBehalfOf": "call +31 6 1234 5678"}
        ]});
        let e = ErasureView::read(&record).unwrap_err().to_string();
        assert!(e.contains("record.targets[0].onBehalfOf") && e.contains("phone"), "{e}");
        let record = json!({"kind": "RetentionRun", "targets": [
            {"name": "t", "records": {"matched": 1, "dropped": [{"name": "jan@example.nl", "records": 3}]}}
        ]});
        let e = RunView::read(&record).unwrap_err().to_string();
        assert!(e.contains("record.targets[0].records.dropped[0].name"), "{e}");
    }

    #[test]
    fn missing_fields_are_none_and_times_are_read() {
        let view = ErasureView::read(&json!({"request": "ns/r", "deadline": "2026-12-30T10:00:00Z"})).unwrap();
        assert_eq!(view.ground, None);
        assert_eq!(view.deadline.and_then(|d| d.at()), Some("2026-12-30T10:00:00Z".parse().unwrap()));
        assert!(!view.complete);
    }
}
