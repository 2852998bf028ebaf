//! The binary's commands, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

use delenda::engine::evidence::seal;

fn delenda(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_delenda"))
        .args(args)
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
    let mut previous = None;
    (0..n)
        .map(|i| {
            let sealed = seal(serde_json::json!({"run": format!("run-{i}"), "deleted": i}), previous.take());
            previous = Some(sealed.digest.clone());
            serde_json::to_string(&sealed).unwrap()
        })
        .collect()
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
fn evidence_verify_accepts_an_intact_chain() {
    let (code, out, err) = delenda(&["evidence", "verify", "-"], &chain_lines(4).join("\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: 4 records"), "{out}");
}

#[test]
fn evidence_verify_reports_a_missing_record() {
    let mut lines = chain_lines(4);
    lines.remove(2);
    let (code, _, err) = delenda(&["evidence", "verify", "-"], &lines.join("\n"));
    assert_eq!(code, 2);
    assert!(err.contains("record 2 does not follow record 1"), "{err}");
}

#[test]
fn evidence_verify_reports_a_changed_record() {
    let mut lines = chain_lines(3);
    lines[1] = lines[1].replace("\"deleted\":1", "\"deleted\":0");
    let (code, _, err) = delenda(&["evidence", "verify", "-"], &lines.join("\n"));
    assert_eq!(code, 2);
    assert!(err.contains("record 1 was changed"), "{err}");
}
