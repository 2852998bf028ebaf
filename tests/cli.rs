//! The binary's commands, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

use delenda::engine::evidence::{SealedEvidence, Signer, seal};

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHs4A147bDdEbdJcu8xrAlifUVZkh8ciIErIDVAq0yQf\n-----END PRIVATE KEY-----\n";

fn delenda(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_delenda"))
        .args(args)
        .env_remove("DELENDA_HMAC_KEY_FILE")
        .env_remove("DELENDA_SIGNING_KEY_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chain_lines(n: usize) -> Vec<String> {
    let signer = Signer::from_pem(KEY).unwrap();
    let mut head = None;
    (0..n)
        .map(|i| {
            let record = serde_json::json!({"run": format!("run-{i}"), "deleted": i});
            let sealed: SealedEvidence = seal("policy/p", head.as_ref(), record, Some(&signer));
            head = Some(sealed.head());
            serde_json::to_string(&sealed).unwrap()
        })
        .collect()
}

/// The operator's public key in a file, as an auditor gets it.
fn public_key_file(dir: &tempfile::TempDir) -> String {
    let key = dir.path().join("signing.pem");
    std::fs::write(&key, KEY).unwrap();
    let (code, out, err) = delenda(&["evidence", "public-key", "--signing-key-file", key.to_str().unwrap()], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("-----BEGIN PUBLIC KEY-----"), "{out}");
    assert!(err.contains("key id ed25519:"), "{err}");
    let public = dir.path().join("public.pem");
    std::fs::write(&public, out).unwrap();
    public.to_str().unwrap().to_owned()
}

#[test]
fn crd_prints_the_three_crds() {
    let (code, out, _) = delenda(&["crd"], "");
    assert_eq!(code, 0);
    for kind in ["kind: DataStore", "kind: RetentionPolicy", "kind: ErasureRequest"] {
        assert!(out.contains(kind), "missing {kind}");
    }
}

#[test]
fn evidence_verify_accepts_an_intact_signed_chain() {
    let dir = tempfile::tempdir().unwrap();
    let public = public_key_file(&dir);
    let (code, out, err) = delenda(&["evidence", "verify", "--public-key", &public, "-"], &chain_lines(4).join("\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: chain policy/p in -: 4 records, 4 signatures checked"), "{out}");
    // Without the key it says what it could not check.
    let (code, out, _) = delenda(&["evidence", "verify", "-"], &chain_lines(2).join("\n"));
    assert_eq!(code, 0);
    assert!(out.contains("signatures not checked") && out.contains("note: no --public-key"), "{out}");
}

#[test]
fn evidence_verify_reports_a_missing_record() {
    let mut lines = chain_lines(4);
    lines.remove(2);
    let (code, out, _) = delenda(&["evidence", "verify", "-"], &lines.join("\n"));
    assert_eq!(code, 2);
    assert!(
        out.contains("BROKEN: chain policy/p in -: records missing") && out.contains("records 2 to 2 are missing"),
        "{out}"
    );
}

#[test]
fn evidence_verify_reports_a_changed_record() {
    let mut lines = chain_lines(3);
    lines[1] = lines[1].replace("\"deleted\":1", "\"deleted\":0");
    let (code, out, _) = delenda(&["evidence", "verify", "-"], &lines.join("\n"));
    assert_eq!(code, 2);
    assert!(out.contains("record 1 was changed in place"), "{out}");
}

#[test]
fn evidence_verify_tells_a_resealed_rewrite_apart_with_the_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let public = public_key_file(&dir);
    let mut records: Vec<SealedEvidence> = chain_lines(3).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut record = records[2].record.clone();
    record["deleted"] = serde_json::json!(0);
    records[2] = seal("policy/p", Some(&records[1].head()), record, None);
    let text: Vec<String> = records.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    let (code, out, _) = delenda(&["evidence", "verify", "-"], &text.join("\n"));
    assert_eq!(code, 0, "without the key a consistent rewrite passes: {out}");
    let (code, out, _) = delenda(&["evidence", "verify", "--public-key", &public, "-"], &text.join("\n"));
    assert_eq!(code, 2);
    assert!(out.contains("rewritten") && out.contains("record 2 is not signed"), "{out}");
}

#[test]
fn evidence_digest_computes_the_keyed_digest_an_auditor_looks_for() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.key"), dir.path().join("new.key"));
    std::fs::write(&old, [1u8; 32]).unwrap();
    std::fs::write(&new, [2u8; 32]).unwrap();
    let expected_old = delenda::engine::evidence::SubjectDigester::new(&[1u8; 32]).unwrap().for_namespace("crm");
    let expected_new = delenda::engine::evidence::SubjectDigester::new(&[2u8; 32]).unwrap().for_namespace("crm");
    // From stdin, so the identity stays out of the shell's history; one line per key.
    let (code, out, err) = delenda(
        &[
            "evidence",
            "digest",
            "--namespace",
            "crm",
            "--kind",
            "email",
            "--key-file",
            old.to_str().unwrap(),
            "--key-file",
            new.to_str().unwrap(),
        ],
        "Jan.Jansen@Example.NL\n",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [expected_old.digest("email", "jan.jansen@example.nl"), expected_new.digest("email", "jan.jansen@example.nl")]
    );
    assert!(lines[0].starts_with(&format!("hmac-sha256:{}:", expected_old.key_id())));
    assert!(!out.contains("jansen"));
    let (code, _, err) = delenda(
        &["evidence", "digest", "--namespace", "crm", "--kind", "email", "--key-file", old.to_str().unwrap()],
        "",
    );
    assert_ne!(code, 0);
    assert!(err.contains("no identity given"), "{err}");
}
