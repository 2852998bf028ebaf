//! `delenda evidence certificate`: the page a privacy officer hands to an
//! auditor, for one erasure request or for a policy's runs over a date
//! range. In memory (the facts, both languages, a broken chain, personal
//! data refused), through a real headless Chromium (its DOM and the PDF it
//! prints, read back with pdftotext), and from the real API server.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use delenda::certificate::{Certificate, CertificateError, Evidence, Lang, RequestLookup, Selection, build};
use delenda::engine::evidence::{SealedEvidence, Signer, SubjectDigester, seal};
use jiff::Timestamp;
use serde_json::{Value, json};

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHs4A147bDdEbdJcu8xrAlifUVZkh8ciIErIDVAq0yQf\n-----END PRIVATE KEY-----\n";
/// The subject's identities: they make the digests and must never appear.
const EMAIL: &str = "jan.jansen@example.nl";
const PHONE: &str = "+31 6 1234 5678";
const REQUEST: &str = "req-2026-11-0042";

fn signer() -> Signer {
    Signer::from_pem(KEY).unwrap()
}

fn key_id() -> String {
    signer().key_id().to_owned()
}

fn subject_digests() -> BTreeMap<String, String> {
    let digester = SubjectDigester::new(&[7u8; 32]).unwrap();
    BTreeMap::from([
        ("email".to_owned(), digester.digest("email", EMAIL)),
        ("phone".to_owned(), digester.digest("phone", PHONE)),
    ])
}

/// An Erasure record shaped as `engine::erase::evidence_record` writes it.
fn erasure_record(request: &str, phase: &str, targets: Value) -> Value {
    let complete = phase != "Failed";
    json!({
        "kind": "Erasure",
        "request": request,
        "ground": "ConsentWithdrawn",
        "receivedAt": "2026-11-02T09:15:00Z",
        "deadline": "2026-12-02T09:15:00Z",
        "identityVerification": {
            "verifiedBy": "staff-1042",
            "method": "IdentityDocument",
            "verifiedAt": "2026-11-03T10:00:00Z",
            "reference": "PRIV-2026-0042",
        },
        "onBehalfOf": "acme-bv",
        "mode": "Enforce",
        "subjectDigests": subject_digests(),
        "phase": phase,
        "complete": complete,
        "startedAt": "2026-11-04T08:00:00Z",
        "finishedAt": if complete { "2026-11-05T08:01:00Z" } else { "2026-11-04T08:00:30Z" },
        "targets": targets,
    })
}

fn target(policy: &str, target: &str, outcome: &str, matched: i64, erased: i64, extra: Value) -> Value {
    let mut t = json!({"policy": policy, "target": target, "outcome": outcome, "matched": matched, "erased": erased,
        "remaining": if outcome == "Erased" { json!(0) } else { Value::Null },
        "retainedUntil": null, "retainedUnder": null, "onBehalfOf": null});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

fn final_targets() -> Value {
    json!([
        target("contact-persons", "crm-contacts", "Erased", 3, 3, json!({})),
        target(
            "traffic-data",
            "cdr-postgres",
            "Retained",
            12,
            0,
            json!({
            "retainedUntil": "2027-05-31T22:00:00Z",
            "retainedUnder": "RetentionPolicy traffic-data (legal obligation, GDPR Art. 6(1)(c) and 17(3)(b); kept 6mo from each record)"})
        ),
        target(
            "support-calls",
            "recordings",
            "Retained",
            2,
            0,
            json!({
            "retainedUntil": "2026-12-24T00:00:00Z", "retainedUnder": "the store keeps them: 2 ObjectLock"})
        ),
        target("customer-tickets", "helpdesk", "Skipped", 0, 0, json!({"onBehalfOf": "acme-bv"})),
        target("web-analytics", "access-logs", "NotSearched", 0, 0, json!({})),
    ])
}

/// The erasures chain of namespace `shop`: another request, then ours
/// failing once and then completing.
fn erasure_records() -> Vec<Value> {
    let failing = json!([
        target("contact-persons", "crm-contacts", "Failed", 3, 1, json!({})),
        target("traffic-data", "cdr-postgres", "Retained", 12, 0, json!({"retainedUntil": "2027-05-31T22:00:00Z"})),
    ]);
    vec![
        erasure_record(
            "shop/req-2026-10-0007",
            "Completed",
            json!([target("contact-persons", "crm-contacts", "NothingFound", 0, 0, json!({}))]),
        ),
        erasure_record(&format!("shop/{REQUEST}"), "Failed", failing),
        erasure_record(&format!("shop/{REQUEST}"), "Completed", final_targets()),
    ]
}

fn sealed(chain: &str, records: Vec<Value>, signer: Option<&Signer>) -> Vec<SealedEvidence> {
    let mut out: Vec<SealedEvidence> = Vec::new();
    for record in records {
        let head = out.last().map(SealedEvidence::head);
        out.push(seal(chain, head.as_ref(), record, signer));
    }
    out
}

fn evidence(records: Vec<SealedEvidence>) -> Evidence {
    Evidence {
        records,
        source: "erasures.jsonl".into(),
        namespace: Some("shop".into()),
        known: vec![],
        request: RequestLookup::Gone,
    }
}

fn erasure_certificate(records: Vec<SealedEvidence>) -> Certificate {
    let selection = Selection::Erasure { request: REQUEST.into() };
    build(&evidence(records), &selection, &[signer().public_key()], "2026-11-30T12:00:00Z".parse().unwrap()).unwrap()
}

/// The text a reader sees: tags dropped, entities read, white space collapsed.
fn text(html: &str) -> String {
    let without_head = html.split_once("</head>").map_or(html, |(_, body)| body);
    let mut out = String::new();
    let mut tag: Option<String> = None;
    for c in without_head.chars() {
        match (c, &mut tag) {
            ('<', None) => tag = Some(String::new()),
            ('>', Some(name)) => {
                // Inline elements run on; every other element ends a run of text.
                let name = name.trim_start_matches('/').split_whitespace().next().unwrap_or("").to_owned();
                if !["strong", "code", "em", "time", "span"].contains(&name.as_str()) {
                    out.push(' ');
                }
                tag = None;
            }
            (c, Some(name)) => name.push(c),
            (c, None) => out.push(c),
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn assert_all(text: &str, facts: &[&str]) {
    for fact in facts {
        assert!(text.contains(fact), "missing {fact:?} in:\n{text}");
    }
}

fn assert_none(text: &str, absent: &[&str]) {
    for a in absent {
        assert!(!text.contains(a), "{a:?} must not appear in:\n{text}");
    }
}

/// Nothing that looks like the subject, an e-mail address or a phone number.
fn assert_no_personal_data(text: &str) {
    assert_none(text, &[EMAIL, PHONE, "jansen", "Jansen", "612345678", "1234 5678"]);
    let email = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap();
    assert!(!email.is_match(text), "an e-mail address in:\n{text}");
    let phone = regex::Regex::new(r"(\+|\b0)[0-9][0-9 ()-]{7,}[0-9]").unwrap();
    for m in phone.find_iter(text) {
        // Digits inside digests and key ids are hex, not numbers to call.
        let at = m.start();
        let before = &text[..at];
        let in_digest = before.rsplit(' ').next().is_some_and(|w| w.contains("sha256:") || w.contains("ed25519:"));
        assert!(in_digest, "a phone number {:?} in:\n{text}", m.as_str());
    }
}

/// The facts of the erasure, in English, as the test fixture states them.
fn english_facts(chain: &[SealedEvidence]) -> Vec<String> {
    let digests = subject_digests();
    let mut facts: Vec<String> = [
        "Certificate of erasure",
        "shop/req-2026-11-0042",
        "The evidence chain erasures is intact: 3 records",
        "consent was withdrawn and no other legal ground remains (GDPR Art. 17(1)(b))",
        "2026-12-02T09:15:00Z (2 December 2026, 09:15 UTC)",
        "Identity verified through a copy of an identity document (watermarked, national number masked) by staff-1042.",
        "2026-11-03T10:00:00Z (3 November 2026, 10:00 UTC)",
        "PRIV-2026-0042",
        "On behalf of acme-bv",
        "crm-contacts Erased 3 3 0",
        "cdr-postgres Retained 12 0 — 2027-05-31T22:00:00Z (31 May 2027, 22:00 UTC)",
        "Why kept: kept under a legal obligation (GDPR Art. 6(1)(c) and 17(3)(b)): retention policy traffic-data, retention period 6mo (6 months) from each record",
        "Why kept: the store keeps them: 2 × object lock in the store",
        "helpdesk Skipped 0 0 — — On behalf of: acme-bv",
        "helpdesk Skipped 0 0",
        "access-logs Not searched 0 0",
        "Erased 1 3",
        "Retained 2 14",
        "delenda evidence verify --namespace shop --public-key FILE --chain erasures",
        "delenda evidence digest --namespace shop --kind email --key-file KEY",
        "delenda evidence digest --namespace shop --kind phone --key-file KEY",
        "RFC 8785 canonical JSON of {chain, format, index, previousDigest, record}",
        "within the deadline",
    ]
    .map(str::to_owned)
    .to_vec();
    facts.push(digests["email"].clone());
    facts.push(digests["phone"].clone());
    for r in &chain[1..] {
        facts.push(r.digest.to_string());
    }
    facts.push(format!("signature verified (key {})", key_id()));
    facts
}

fn dutch_facts() -> Vec<String> {
    [
        "Verklaring van verwijdering",
        "De bewijsketen erasures is intact: 3 records",
        "de toestemming is ingetrokken en er is geen andere rechtsgrond (art. 17 lid 1 sub b AVG)",
        "2026-12-02T09:15:00Z (2 december 2026, 09:15 uur UTC)",
        "Identiteit geverifieerd via een kopie van een identiteitsbewijs (met watermerk, BSN afgeschermd) door staff-1042.",
        "Namens acme-bv",
        "crm-contacts Verwijderd 3 3 0",
        "cdr-postgres Bewaard 12 0 — 2027-05-31T22:00:00Z (31 mei 2027, 22:00 uur UTC)",
        "bewaard op grond van een wettelijke verplichting (art. 6 lid 1 sub c en art. 17 lid 3 sub b AVG): bewaarbeleid traffic-data, bewaartermijn 6mo (6 maanden)",
        "de opslag houdt ze vast: 2 × objectvergrendeling (object lock) in de opslag",
        "helpdesk Overgeslagen",
        "access-logs Niet doorzocht",
        "binnen de termijn",
        "handtekening geverifieerd (sleutel",
        "Hoe u deze verklaring controleert",
        "delenda evidence verify --namespace shop --public-key FILE --chain erasures",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn an_erasure_certificate_states_outcomes_verification_and_digests() {
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    let c = erasure_certificate(chain.clone());
    assert!(c.intact());
    let html = c.to_html(Lang::En);
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    // Self-contained and made for print: nothing fetched from elsewhere, A4, a page per section.
    assert_none(&html, &["http://", "https://", "<script", "@import", "url(", "<link", "<img"]);
    assert_all(&html, &["size: A4", "break-before: page", "<meta charset=\"utf-8\">"]);
    let page = text(&html);
    assert_all(&page, &english_facts(&chain).iter().map(String::as_str).collect::<Vec<_>>());
    // The history is this request's two records, positions 1 and 2; the other request's record is
    // named only as the one before record 1.
    assert_none(&page, &["req-2026-10-0007"]);
    assert_eq!(page.matches(chain[0].digest.as_str()).count(), 1, "{page}");
    assert_all(&page, &[&format!("Previous digest: {}", chain[0].digest)]);
    assert_all(&page, &["latest: the outcome above", "The ErasureRequest no longer exists in the cluster"]);
    assert_no_personal_data(&page);
}

#[test]
fn the_dutch_certificate_says_it_in_dutch() {
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    let html = erasure_certificate(chain).to_html(Lang::Nl);
    assert!(html.contains("<html lang=\"nl\">"));
    let page = text(&html);
    assert_all(&page, &dutch_facts().iter().map(String::as_str).collect::<Vec<_>>());
    // No English words of outcomes or headings left.
    assert_none(&page, &["Erased", "Retained", "Not searched", "Skipped", "Certificate", "within the deadline"]);
    assert_no_personal_data(&page);
}

#[test]
fn an_unfinished_or_dry_run_erasure_says_so() {
    let mut records = erasure_records();
    records.truncate(2);
    let c = erasure_certificate(sealed("erasures", records, Some(&signer())));
    assert_all(&text(&c.to_html(Lang::En)), &["The erasure is not complete: the latest record has phase Failed."]);
    assert_all(
        &text(&c.to_html(Lang::Nl)),
        &["De verwijdering is niet voltooid: het laatste record heeft de fase Mislukt."],
    );
    let mut records = erasure_records();
    records[2]["mode"] = json!("DryRun");
    records[2]["phase"] = json!("Previewed");
    records[2]["targets"][0]["outcome"] = json!("WouldErase");
    let page = text(&erasure_certificate(sealed("erasures", records, Some(&signer()))).to_html(Lang::Nl));
    assert_all(&page, &["Dit was een proefrun: er is niets verwijderd", "Zou worden verwijderd (proefrun)"]);
}

/// A RetentionRun record shaped as `engine::run` writes it.
fn run_record(run_id: &str, finished: &str, deleted: u64) -> Value {
    json!({
        "kind": "RetentionRun", "policy": "support-tickets", "category": "support", "legalBasis": "Contract",
        "responsibleParty": "self", "customer": null, "period": "3y", "runId": run_id, "mode": "Enforce",
        "cutoff": "2023-10-31T23:00:00Z", "runStartedAt": finished, "timeZone": "Europe/Amsterdam",
        "startedAt": finished, "finishedAt": finished, "outcome": "Succeeded", "stoppedBy": null,
        "targets": [
            {"name": "tickets", "records": {"matched": deleted, "deleted": deleted, "relatedDeleted": 2, "remaining": 0,
                "notDue": 1000, "retained": [{"reason": "LegalHold", "count": 1}],
                "unreadable": [{"reason": "ZeroDate", "count": 4}]}, "error": null},
            {"name": "attachments", "records": {"matched": 7, "deleted": 7, "remaining": 0,
                "retained": [{"reason": "ObjectLock", "until": "2027-01-15T00:00:00Z", "count": 3}]}, "error": null},
        ],
    })
}

fn policy_chain() -> Vec<SealedEvidence> {
    let records = vec![
        // 23:30 in Amsterdam on 31 October: before the range.
        run_record("1761953400-aaaa1111", "2026-10-31T22:30:00Z", 50),
        // 00:30 in Amsterdam on 1 November: the range's first day, though still October in UTC.
        run_record("1761957000-bbbb2222", "2026-10-31T23:30:00Z", 10),
        run_record("1763200000-cccc3333", "2026-11-15T09:46:40Z", 20),
        run_record("1764583200-dddd4444", "2026-12-01T10:00:00Z", 99),
    ];
    sealed("policy/support-tickets", records, Some(&signer()))
}

fn policy_certificate(chain: Vec<SealedEvidence>) -> Certificate {
    let selection = Selection::Policy {
        name: "support-tickets".into(),
        from: "2026-11-01".parse().unwrap(),
        to: "2026-11-30".parse().unwrap(),
    };
    let evidence = Evidence { namespace: None, request: RequestLookup::NotRead, ..evidence(chain) };
    build(&evidence, &selection, &[signer().public_key()], Timestamp::now()).unwrap()
}

#[test]
fn a_policy_certificate_covers_the_runs_that_finished_in_its_range() {
    let chain = policy_chain();
    let c = policy_certificate(chain.clone());
    let en = text(&c.to_html(Lang::En));
    assert_all(
        &en,
        &[
            "Certificate of retention enforcement",
            "support-tickets · 2026-11-01 – 2026-11-30",
            "2026-11-01 (1 November 2026) to 2026-11-30 (30 November 2026) inclusive",
            "performance of a contract (b)",
            "we are the controller",
            "3y (3 years)",
            "Europe/Amsterdam",
            "Run 1761957000-bbbb2222",
            "Run 1763200000-cccc3333",
            // Both runs: 10 + 7 and 20 + 7 due; deleted the same; 2 + 2 related; 1000 + 1000 not due; 4 + 4 kept; 8 unjudged.
            "2 × Run 44 44 4 0 2000 8 8",
            "tickets 10 10 2 0 1000 Kept: 1 × legal hold in the store Could not be judged (kept): 4 × zero dates (0000-00-00)",
            "attachments 7 7 — 0 — Kept: 3 × object lock in the store, kept until 2027-01-15T00:00:00Z (15 January 2027, 00:00 UTC)",
            &chain[1].digest.to_string(),
            &chain[2].digest.to_string(),
            "The evidence chain policy/support-tickets is intact: 4 records",
            "delenda evidence verify --namespace NS --public-key FILE --chain policy/support-tickets",
        ],
    );
    assert_none(&en, &["aaaa1111", "dddd4444", &chain[3].digest.to_string()]);
    assert_eq!(en.matches(chain[0].digest.as_str()).count(), 1, "only as the digest before the first run: {en}");
    let nl = text(&c.to_html(Lang::Nl));
    assert_all(
        &nl,
        &[
            "Verklaring van naleving van de bewaartermijn",
            "Bewaartermijn 3y (3 jaar)",
            "2026-11-01 (1 november 2026) tot en met 2026-11-30 (30 november 2026)",
            "uitvoering van een overeenkomst (sub b)",
            "Uitvoering 1761957000-bbbb2222",
            "Geslaagd",
            "legal hold in de opslag",
            "objectvergrendeling (object lock) in de opslag, bewaard tot 2027-01-15T00:00:00Z (15 januari 2027, 00:00 uur UTC)",
            "nuldatums (0000-00-00)",
        ],
    );
}

#[test]
fn a_range_without_runs_says_no_run_finished() {
    let selection = Selection::Policy {
        name: "support-tickets".into(),
        from: "2025-01-01".parse().unwrap(),
        to: "2025-01-31".parse().unwrap(),
    };
    let c = build(&evidence(policy_chain()), &selection, &[], Timestamp::now()).unwrap();
    assert_all(&text(&c.to_html(Lang::Nl)), &["In deze periode is geen uitvoering van dit bewaarbeleid afgerond."]);
}

#[test]
fn a_changed_record_makes_the_certificate_say_the_chain_is_broken() {
    let mut chain = sealed("erasures", erasure_records(), Some(&signer()));
    // Someone lowers a count after the fact.
    chain[2].record["targets"][1]["matched"] = json!(1);
    let c = erasure_certificate(chain);
    assert!(!c.intact());
    let en = text(&c.to_html(Lang::En));
    assert_all(
        &en,
        &[
            "THE EVIDENCE CHAIN DOES NOT VERIFY",
            "This page is not proof of what it lists",
            "record 2 was changed",
            "NOT VERIFIED",
        ],
    );
    assert_none(&en, &["erasures is intact"]);
    assert_eq!(en.matches("THE EVIDENCE CHAIN DOES NOT VERIFY").count(), 3, "on every page but the last: {en}");
    let nl = text(&c.to_html(Lang::Nl));
    assert_all(
        &nl,
        &[
            "DE BEWIJSKETEN IS NIET INTACT",
            "Deze verklaring is geen bewijs van wat erin staat",
            "record 2 is gewijzigd",
        ],
    );
}

#[test]
fn a_chain_resealed_without_the_key_or_missing_a_record_is_broken() {
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    // Rewritten from record 1 on and resealed, consistently, but without the operator's key.
    let mut forged = chain[..1].to_vec();
    for r in &chain[1..] {
        let head = forged.last().map(SealedEvidence::head);
        forged.push(seal("erasures", head.as_ref(), r.record.clone(), None));
    }
    let c = erasure_certificate(forged);
    assert!(!c.intact());
    assert_all(&text(&c.to_html(Lang::En)), &["record 1 carries no signature", "record 2 carries no signature"]);
    // The other request's record removed from the middle.
    let mut gap = chain.clone();
    gap.remove(0);
    let c = erasure_certificate(gap);
    assert!(!c.intact());
    assert_all(&text(&c.to_html(Lang::En)), &["records 0 to 0 are missing"]);
}

#[test]
fn without_a_public_key_the_certificate_says_signatures_were_not_checked() {
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    let selection = Selection::Erasure { request: REQUEST.into() };
    let c = build(&evidence(chain), &selection, &[], Timestamp::now()).unwrap();
    let page = text(&c.to_html(Lang::En));
    assert_all(
        &page,
        &[
            "no public key was given, so the signatures were not checked",
            &format!("signature not checked (no public key given); signed with key {}", key_id()),
        ],
    );
    assert_none(&page, &["signature verified", "erasures is intact"]);
}

#[test]
fn personal_data_in_a_record_is_refused_naming_only_the_field() {
    for (field, value, looks_like) in [
        ("verifiedBy", "jan.jansen@example.nl", "an e-mail address"),
        ("reference", "called back on 06-12345678", "a phone number"),
    ] {
        let mut records = erasure_records();
        records[2]["identityVerification"][field] = json!(value);
        let selection = Selection::Erasure { request: REQUEST.into() };
        let e = build(&evidence(sealed("erasures", records, Some(&signer()))), &selection, &[], Timestamp::now())
            .unwrap_err();
        assert!(matches!(&e, CertificateError::PersonalData { looks_like: l, .. } if *l == looks_like), "{e:?}");
        let message = e.to_string();
        assert!(message.contains(&format!("record.identityVerification.{field}")), "{message}");
        assert!(!message.contains(value), "{message}");
    }
    // A digest that is not one: the subject's address where a digest belongs.
    let mut records = erasure_records();
    records[2]["subjectDigests"]["email"] = json!(EMAIL);
    let selection = Selection::Erasure { request: REQUEST.into() };
    let e = build(&evidence(sealed("erasures", records, None)), &selection, &[], Timestamp::now()).unwrap_err();
    assert!(e.to_string().contains("record.subjectDigests.email"), "{e}");
}

#[test]
fn every_value_from_the_evidence_is_escaped() {
    let mut records = erasure_records();
    records[2]["targets"][0]["target"] = json!("<script>alert('x')</script>");
    records[2]["identityVerification"]["reference"] = json!("A&B \"quoted\"");
    let html = erasure_certificate(sealed("erasures", records, Some(&signer()))).to_html(Lang::En);
    assert_none(&html, &["<script", "A&B"]);
    assert_all(&html, &["&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;", "A&amp;B &quot;quoted&quot;"]);
}

#[test]
fn a_request_without_evidence_is_an_error_that_names_it() {
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    let selection = Selection::Erasure { request: "req-unknown".into() };
    let e = build(&evidence(chain), &selection, &[], Timestamp::now()).unwrap_err().to_string();
    assert!(e.contains("no evidence of ErasureRequest req-unknown among the 3 records of chain erasures"), "{e}");
}

// ---- the binary ----

fn delenda(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_delenda"));
    cmd.args(args).env_remove("DELENDA_HMAC_KEY_FILE").env_remove("DELENDA_SIGNING_KEY_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn write_chain(dir: &Path, name: &str, chain: &[SealedEvidence]) -> PathBuf {
    let path = dir.join(name);
    let lines: Vec<String> = chain.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn write_public_key(dir: &Path) -> PathBuf {
    let path = dir.join("operator.pem");
    std::fs::write(&path, signer().public_key().to_pem()).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_command_exits_2_after_writing_a_certificate_of_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = sealed("erasures", erasure_records(), Some(&signer()));
    let key = write_public_key(dir.path());
    let good = write_chain(dir.path(), "good.jsonl", &chain);
    let out = dir.path().join("good.html");
    let args =
        ["evidence", "certificate", "--chain-file", s(&good), "--erasure-request", REQUEST, "--public-key", s(&key)];
    let run = delenda(&[&args[..], &["--out", s(&out)]].concat(), &[]);
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    assert_all(&text(&std::fs::read_to_string(&out).unwrap()), &["is intact", "shop/req-2026-11-0042"]);

    chain[1].record["targets"][0]["erased"] = json!(3);
    let broken = write_chain(dir.path(), "broken.jsonl", &chain);
    let out = dir.path().join("broken.html");
    let run = delenda(
        &[
            "evidence",
            "certificate",
            "--chain-file",
            s(&broken),
            "--erasure-request",
            REQUEST,
            "--public-key",
            s(&key),
            "--lang",
            "nl",
            "--out",
            s(&out),
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("the evidence does not verify"));
    assert_all(
        &text(&std::fs::read_to_string(&out).unwrap()),
        &["DE BEWIJSKETEN IS NIET INTACT", "record 1 is gewijzigd"],
    );

    // Without --out the page goes to stdout.
    let run = delenda(&args, &[]);
    assert_eq!(run.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("<!DOCTYPE html>"));
}

#[test]
fn the_command_refuses_personal_data_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = erasure_records();
    records[2]["onBehalfOf"] = json!("+31 20 123 4567");
    let chain = write_chain(dir.path(), "chain.jsonl", &sealed("erasures", records, Some(&signer())));
    let out = dir.path().join("c.html");
    let run = delenda(
        &["evidence", "certificate", "--chain-file", s(&chain), "--erasure-request", REQUEST, "--out", s(&out)],
        &[],
    );
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("record.onBehalfOf holds what looks like a phone number"), "{err}");
    assert!(!err.contains("123 4567"), "{err}");
    assert!(!out.exists());
}

#[test]
fn the_command_names_what_is_missing() {
    let run = delenda(&["evidence", "certificate", "--chain-file", "x.jsonl"], &[]);
    assert_eq!(run.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&run.stderr).contains("--erasure-request"));
    let run =
        delenda(&["evidence", "certificate", "--chain-file", "x.jsonl", "--policy", "p", "--from", "2026-11-01"], &[]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("--to"), "{}", String::from_utf8_lossy(&run.stderr));
    let dir = tempfile::tempdir().unwrap();
    let chain = write_chain(dir.path(), "c.jsonl", &sealed("erasures", erasure_records(), None));
    let run = delenda(
        &[
            "evidence",
            "certificate",
            "--chain-file",
            s(&chain),
            "--erasure-request",
            REQUEST,
            "--pdf",
            "x.pdf",
            "--chromium",
            "/nonexistent/chromium",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("install the Debian package `chromium`"));
}

// ---- a real browser ----

/// A tool the test environment installs (tests/env/servers/pdf.sh).
fn tool(var: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            if dir.join(name).is_file() {
                return dir.join(name);
            }
        }
    }
    panic!(
        "{} is not installed, so the certificate cannot be rendered or read back. Install it with `{}` \
         (tests/env/servers/pdf.sh: Debian's chromium and poppler-utils), or set {var}.",
        names[0],
        support::UP_SCRIPT
    )
}

fn chromium() -> PathBuf {
    tool("CHROMIUM", &["chromium", "chromium-browser"])
}

fn pdftotext(pdf: &Path) -> String {
    let out = Command::new(tool("PDFTOTEXT", &["pdftotext"])).args([s(pdf), "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn chromium_renders_the_facts_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    let c = erasure_certificate(chain.clone());
    for (lang, facts) in [(Lang::En, english_facts(&chain)), (Lang::Nl, dutch_facts())] {
        let page = dir.path().join(format!("{lang:?}.html"));
        std::fs::write(&page, c.to_html(lang)).unwrap();
        let url = url::Url::from_file_path(&page).unwrap();
        let out = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            .arg(format!("--user-data-dir={}", dir.path().join(format!("profile-{lang:?}")).display()))
            .args(["--dump-dom", url.as_str()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dom = String::from_utf8(out.stdout).unwrap();
        assert!(dom.contains(&format!("lang=\"{}\"", if lang == Lang::En { "en" } else { "nl" })), "{dom}");
        let shown = text(&dom);
        assert_all(&shown, &facts.iter().map(String::as_str).collect::<Vec<_>>());
        assert_no_personal_data(&shown);
    }
}

/// pdftotext splits a table cell's text where the page wraps it and drops
/// a hyphen that ends a line: compare without white space and hyphens.
fn squashed(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect()
}

fn assert_in_pdf(pdf_text: &str, facts: &[&str]) {
    let squashed_text = squashed(pdf_text);
    for fact in facts {
        assert!(squashed_text.contains(&squashed(fact)), "missing {fact:?} in the PDF's text:\n{pdf_text}");
    }
}

#[test]
fn the_command_prints_a_pdf_that_holds_the_facts_and_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let chain = sealed("erasures", erasure_records(), Some(&signer()));
    let file = write_chain(dir.path(), "erasures.jsonl", &chain);
    let key = write_public_key(dir.path());
    let browser = chromium();
    for (lang, facts) in [
        (
            "en",
            vec![
                "Certificate of erasure".to_owned(),
                "Identity verified through".into(),
                "staff-1042".into(),
                "Not searched".into(),
                "2027-05-31T22:00:00Z".into(),
                "31 May 2027".into(),
                "signature verified".into(),
                "delenda evidence verify --namespace shop --public-key FILE".into(),
            ],
        ),
        (
            "nl",
            vec![
                "Verklaring van verwijdering".to_owned(),
                "Identiteit geverifieerd via".into(),
                "staff-1042".into(),
                "Niet doorzocht".into(),
                "Overgeslagen".into(),
                "31 mei 2027".into(),
                "bewaard op grond van een wettelijke verplichting".into(),
                "handtekening geverifieerd".into(),
                "Namens".into(),
            ],
        ),
    ] {
        let pdf = dir.path().join(format!("certificate-{lang}.pdf"));
        let run = delenda(
            &[
                "evidence",
                "certificate",
                "--chain-file",
                s(&file),
                "--erasure-request",
                REQUEST,
                "--public-key",
                s(&key),
                "--lang",
                lang,
                "--pdf",
                s(&pdf),
                "--chromium",
                s(&browser),
            ],
            &[],
        );
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
        assert!(run.stdout.is_empty(), "with --pdf and no --out, no HTML on stdout");
        let bytes = std::fs::read(&pdf).unwrap();
        assert!(bytes.starts_with(b"%PDF"), "not a PDF");
        let raw = pdftotext(&pdf);
        assert_in_pdf(&raw, &facts.iter().map(String::as_str).collect::<Vec<_>>());
        // The keyed digests are there, the identities that made them are not, in any spelling.
        assert_in_pdf(&raw, &[subject_digests()["email"].as_str(), subject_digests()["phone"].as_str()]);
        let pdf_text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_no_personal_data(&pdf_text);
        assert_none(&squashed(&raw), &["jan.jansen@", "example.nl", "+31612345678", "0612345678"]);
        // No path of the machine in a header or footer.
        assert_none(&pdf_text, &["file://"]);
    }
}

// ---- the real API server ----

#[tokio::test]
async fn a_certificate_from_the_cluster_reads_the_chain_and_the_request_status() {
    use delenda::api::ErasureRequest;
    use kube::api::{Patch, PatchParams, PostParams};

    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "cert").await;
    let signer = signer();
    let mut digest = String::new();
    for mut record in erasure_records() {
        record["request"] = json!(record["request"].as_str().unwrap().replace("shop/", &format!("{ns}/")));
        let stored = delenda::controller::evidence::append(&client, &ns, "erasures", &record, Some(&signer), None)
            .await
            .unwrap();
        digest = stored.sealed.digest.to_string();
    }
    let dir = tempfile::tempdir().unwrap();
    let key = write_public_key(dir.path());
    let kubeconfig = support::setting("KUBECONFIG", "kube-apiserver");
    let certificate = |lang: &'static str| {
        let out = dir.path().join(format!("{lang}.html"));
        let run = delenda(
            &[
                "evidence",
                "certificate",
                "--namespace",
                &ns,
                "--erasure-request",
                REQUEST,
                "--public-key",
                s(&key),
                "--lang",
                lang,
                "--out",
                s(&out),
            ],
            &[("KUBECONFIG", &kubeconfig)],
        );
        (run, out)
    };

    // The request was deleted: the evidence alone suffices.
    let (run, out) = certificate("en");
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let page = text(&std::fs::read_to_string(&out).unwrap());
    assert_all(
        &page,
        &[
            &format!("{ns}/{REQUEST}"),
            "The evidence chain erasures is intact: 3 records",
            &format!("namespace {ns}"),
            "The ErasureRequest no longer exists in the cluster",
            "crm-contacts Erased 3 3 0",
            &format!("delenda evidence verify --namespace {ns} --public-key FILE --chain erasures"),
            &digest,
        ],
    );
    assert_no_personal_data(&page);

    // The request exists, its status naming the last record.
    let requests: kube::Api<ErasureRequest> = kube::Api::namespaced(client.clone(), &ns);
    let request: ErasureRequest =
        support::manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest",
        "metadata": {"name": REQUEST}, "spec": {"identitySecretRef": {"name": "subject"}, "ground": "ConsentWithdrawn",
        "receivedAt": "2026-11-02T09:15:00Z", "onBehalfOf": "acme-bv",
        "identityVerification": {"verifiedBy": "staff-1042", "method": "IdentityDocument"}}}));
    requests.create(&PostParams::default(), &request).await.unwrap();
    let status = json!({"status": {"phase": "Completed", "deadline": "2026-12-02T09:15:00Z",
        "completedAt": "2026-11-05T08:01:00Z", "evidenceDigest": digest}});
    requests.patch_status(REQUEST, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let (run, out) = certificate("nl");
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    let page = text(&std::fs::read_to_string(&out).unwrap());
    assert_all(
        &page,
        &[
            "Status in het cluster",
            "Fase Voltooid",
            "Afgehandeld 2026-11-05T08:01:00Z (5 november 2026, 08:01 uur UTC) — binnen de termijn",
        ],
    );

    // The status names a record the chain no longer has: its newest records were removed.
    let status = json!({"status": {"evidenceDigest": format!("sha256:{}", "ab".repeat(32))}});
    requests.patch_status(REQUEST, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let (run, out) = certificate("en");
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    let page = text(&std::fs::read_to_string(&out).unwrap());
    assert_all(
        &page,
        &["THE EVIDENCE CHAIN DOES NOT VERIFY", &format!("the status of ErasureRequest {REQUEST} knows")],
    );
}
