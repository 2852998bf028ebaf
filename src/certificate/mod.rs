//! Certificates for privacy officers and auditors: for one ErasureRequest,
//! or for one RetentionPolicy over a date range, an HTML page (and a PDF)
//! in English or Dutch that states what the sealed evidence says was
//! erased or kept, where, when, why and until when, how the requester's
//! identity was verified, and whether the evidence verifies.
//!
//! - The certificate rests on the evidence alone ([`Evidence`]): records
//!   from the cluster or from files, plus, from the cluster, what status
//!   adds (digests known elsewhere, the request's phase).
//! - The whole chain is checked; a chain that does not verify is said to
//!   be broken at the top of every page, and [`Certificate::intact`] is
//!   false, never presented as proof.
//! - No personal data: subjects appear only as keyed digests, and every
//!   string taken from the evidence passes [`guard`], which refuses e-mail
//!   addresses and phone numbers.

pub mod check;
pub mod command;
pub mod guard;
mod html;
pub mod pdf;
pub mod source;
pub(crate) mod text;
pub mod view;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::api::ErasureRequestStatus;
use crate::controller::evidence::{ERASURE_CHAIN, policy_chain};
use crate::engine::evidence::{FORMAT, KnownHead, PublicKey, SealedEvidence};
use check::{ChainVerdict, Seal};
use guard::Shown;
use view::{ErasureView, RunView, Stamp};

/// Why no certificate was made.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A value that looks personal; the message names the field only.
    #[error(
        "the evidence field {field} holds what looks like {looks_like}; a certificate never shows personal data, so none was made (evidence names people only by keyed digests: find out how this value got into the record)"
    )]
    PersonalData { field: String, looks_like: &'static str },
    /// The chain is not in what was read.
    #[error("no records of the evidence chain {chain} in {origin}")]
    NoChain { chain: String, origin: String },
    /// No record of the request in the chain.
    #[error(
        "no evidence of ErasureRequest {request} among the {records} records of chain erasures in {origin}: a request is recorded when it completes or first fails, in its own namespace"
    )]
    NoErasure { request: String, records: usize, origin: String },
    /// A bare name matches requests of several namespaces.
    #[error("{request} matches the records of {count} requests in different namespaces; name it as NAMESPACE/NAME")]
    Ambiguous { request: String, count: usize },
    /// The range is empty.
    #[error("--from {from} is after --to {to}")]
    Range { from: Date, to: Date },
    /// Evidence could not be read.
    #[error("{0}")]
    Read(String),
    /// A file could not be read or written.
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    /// No browser to print the PDF.
    #[error(
        "no Chromium to print the PDF: install the Debian package `chromium` (apt-get install chromium), or give its path with --chromium"
    )]
    NoBrowser,
    /// The browser failed.
    #[error("Chromium did not print the PDF: {0}")]
    Pdf(String),
}

/// The language of a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Dutch.
    Nl,
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "en" => Ok(Self::En),
            "nl" => Ok(Self::Nl),
            other => Err(format!("{other:?} is not a language of certificates: en or nl")),
        }
    }
}

impl Lang {
    fn text(self) -> &'static text::Text {
        match self {
            Self::En => &text::EN,
            Self::Nl => &text::NL,
        }
    }
}

/// What a certificate is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// One erasure request: `NAME`, or `NAMESPACE/NAME`.
    Erasure { request: String },
    /// The runs of one policy that finished between two dates, inclusive,
    /// in the policy's time zone.
    Policy { name: String, from: Date, to: Date },
}

impl Selection {
    /// The chain that holds the evidence.
    pub fn chain(&self) -> String {
        match self {
            Self::Erasure { .. } => ERASURE_CHAIN.to_owned(),
            Self::Policy { name, .. } => policy_chain(name),
        }
    }
}

/// What the cluster says of an erasure request today.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestLookup {
    /// The evidence came from files; the cluster was not asked.
    NotRead,
    /// The request no longer exists.
    Gone,
    /// Its status.
    Found(Box<ErasureRequestStatus>),
}

/// The evidence a certificate rests on.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Sealed records in stored order; records of other chains are ignored.
    pub records: Vec<SealedEvidence>,
    /// Where they were read from, for the page.
    pub source: String,
    /// The namespace, when known.
    pub namespace: Option<String>,
    /// Heads of the chain known from status, which must be in it.
    pub known: Vec<KnownHead>,
    /// The erasure request in the cluster.
    pub request: RequestLookup,
}

/// One record shown on a certificate: where it stands in its chain and
/// how its seal checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its position.
    pub index: u64,
    /// Its digest.
    pub digest: Shown,
    /// The digest before it.
    pub previous: Option<Shown>,
    /// Its signature, checked.
    pub seal: Seal,
}

/// A record and what it says.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded<T> {
    /// The sealed record's place and seal.
    pub entry: Entry,
    /// What it says.
    pub view: T,
}

/// The erasure request's status in the cluster, as shown.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterView {
    /// Not asked.
    NotRead,
    /// Deleted.
    Gone,
    /// Phase, deadline, completed at.
    Found { phase: Option<Shown>, deadline: Option<Stamp>, completed_at: Option<Stamp> },
}

/// What a certificate states.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// One erasure request: its latest record is the outcome, every
    /// record of it the history.
    Erasure { request: Shown, latest: Box<ErasureView>, history: Vec<Recorded<ErasureView>>, cluster: ClusterView },
    /// The runs of one policy in a date range.
    Policy { policy: Shown, from: Date, to: Date, runs: Vec<Recorded<RunView>> },
}

/// A certificate, ready to be written in either language.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// What it states.
    pub body: Body,
    /// Whether the chain under it verifies.
    pub verdict: ChainVerdict,
    /// Where the evidence was read from.
    pub source: Shown,
    /// The namespace, for the commands that check it.
    pub namespace: Option<Shown>,
    /// When it was made.
    pub made_at: Timestamp,
}

impl Certificate {
    /// Whether the evidence under it verifies. A certificate that does not
    /// says so on every page; callers exit with 2.
    pub fn intact(&self) -> bool {
        self.verdict.intact() && self.entries().all(|e| !matches!(e.seal, Seal::Failed(_)))
    }

    fn entries(&self) -> Box<dyn Iterator<Item = &Entry> + '_> {
        match &self.body {
            Body::Erasure { history, .. } => Box::new(history.iter().map(|r| &r.entry)),
            Body::Policy { runs, .. } => Box::new(runs.iter().map(|r| &r.entry)),
        }
    }

    /// The page, self-contained HTML.
    pub fn to_html(&self, lang: Lang) -> String {
        html::render(self, lang.text())
    }
}

/// Makes the certificate for `selection` from `evidence`, checking the
/// chain with `keys`.
pub fn build(
    evidence: &Evidence,
    selection: &Selection,
    keys: &[PublicKey],
    now: Timestamp,
) -> Result<Certificate, CertificateError> {
    let chain = selection.chain();
    // Records of an older format name no chain; keep them, so the check says so.
    let records: Vec<SealedEvidence> =
        evidence.records.iter().filter(|r| r.chain == chain || r.format != FORMAT).cloned().collect();
    if records.is_empty() {
        return Err(CertificateError::NoChain { chain, origin: evidence.source.clone() });
    }
    let verdict = check::chain(&chain, &records, keys, &evidence.known)?;
    let body = match selection {
        Selection::Erasure { request } => erasure(evidence, &records, request, keys)?,
        Selection::Policy { name, from, to } => {
            if from > to {
                return Err(CertificateError::Range { from: *from, to: *to });
            }
            let runs = records
                .iter()
                .filter(|r| r.record["kind"] == "RetentionRun" && r.record["policy"] == name.as_str())
                .filter(|r| finished_within(&r.record, *from, *to))
                .map(|r| Ok(Recorded { entry: entry(r, keys)?, view: RunView::read(&r.record)? }))
                .collect::<Result<Vec<_>, CertificateError>>()?;
            Body::Policy { policy: Shown::checked("--policy", name)?, from: *from, to: *to, runs }
        }
    };
    let namespace = evidence.namespace.clone().or_else(|| match &body {
        Body::Erasure { latest, .. } => {
            latest.request.as_ref().and_then(|r| r.as_str().split_once('/')).map(|(ns, _)| ns.to_owned())
        }
        Body::Policy { .. } => None,
    });
    Ok(Certificate {
        body,
        verdict,
        source: Shown::checked("source", &evidence.source)?,
        namespace: namespace.map(|ns| Shown::checked("namespace", &ns)).transpose()?,
        made_at: now,
    })
}

fn entry(r: &SealedEvidence, keys: &[PublicKey]) -> Result<Entry, CertificateError> {
    Ok(Entry {
        index: r.index,
        digest: Shown::digest("digest", r.digest.as_str())?,
        previous: r.previous_digest.as_ref().map(|d| Shown::digest("previousDigest", d.as_str())).transpose()?,
        seal: check::seal(r, keys)?,
    })
}

fn erasure(
    evidence: &Evidence,
    records: &[SealedEvidence],
    request: &str,
    keys: &[PublicKey],
) -> Result<Body, CertificateError> {
    let wanted = match (request.contains('/'), &evidence.namespace) {
        (true, _) => Some(request.to_owned()),
        (false, Some(ns)) => Some(format!("{ns}/{request}")),
        (false, None) => None,
    };
    let matches = |r: &&SealedEvidence| {
        let Some(named) = r.record["request"].as_str() else { return false };
        r.record["kind"] == "Erasure"
            && match &wanted {
                Some(w) => named == w,
                None => named.rsplit_once('/').map_or(named, |(_, n)| n) == request,
            }
    };
    let mut mine: Vec<&SealedEvidence> = records.iter().filter(matches).collect();
    mine.sort_by_key(|r| r.index);
    let mut names: Vec<&str> = mine.iter().filter_map(|r| r.record["request"].as_str()).collect();
    names.sort();
    names.dedup();
    if names.len() > 1 {
        return Err(CertificateError::Ambiguous { request: request.to_owned(), count: names.len() });
    }
    let Some(last) = mine.last() else {
        return Err(CertificateError::NoErasure {
            request: request.to_owned(),
            records: records.len(),
            origin: evidence.source.clone(),
        });
    };
    let latest = Box::new(ErasureView::read(&last.record)?);
    let history = mine
        .iter()
        .map(|r| Ok(Recorded { entry: entry(r, keys)?, view: ErasureView::read(&r.record)? }))
        .collect::<Result<Vec<_>, CertificateError>>()?;
    let cluster = match &evidence.request {
        RequestLookup::NotRead => ClusterView::NotRead,
        RequestLookup::Gone => ClusterView::Gone,
        RequestLookup::Found(status) => ClusterView::Found {
            phase: status
                .phase
                .map(|p| serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
                .map(|p| Shown::checked("status.phase", &p))
                .transpose()?,
            deadline: status.deadline.as_ref().map(|t| Stamp::At(t.0)),
            completed_at: status.completed_at.as_ref().map(|t| Stamp::At(t.0)),
        },
    };
    let name = names.first().copied().unwrap_or(request);
    Ok(Body::Erasure { request: Shown::checked("request", name)?, latest, history, cluster })
}

/// Whether a run finished on a date from `from` to `to`, inclusive, in the
/// run's own time zone.
fn finished_within(record: &Value, from: Date, to: Date) -> bool {
    let Some(finished) = record["finishedAt"].as_str().and_then(|t| t.parse::<Timestamp>().ok()) else {
        return false;
    };
    let zone = record["timeZone"].as_str().and_then(|z| TimeZone::get(z).ok()).unwrap_or(TimeZone::UTC);
    let day = finished.to_zoned(zone).date();
    from <= day && day <= to
}
