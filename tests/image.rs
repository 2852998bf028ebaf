//! The image the repository's Dockerfile builds (tests/env/servers/image.sh
//! builds it with buildah, no Docker engine): its build context holds every
//! file the compile reads, it runs as a numeric non-root user, and it holds
//! one nearly static binary on a base without a shell.
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = support::reach(cmd.output(), what);
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file of `dir`, relative to it.
fn files_under(dir: &Path, base: &Path, into: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, base, into);
        } else {
            into.insert(path.strip_prefix(base).unwrap().to_owned());
        }
    }
}

/// What the compile of the binary reads from the checkout: the manifest and
/// lock file, every file under src/, and every file src/ embeds with
/// include_str! or include_bytes! (resolved as rustc does, from the file
/// that names it).
fn compiled_files() -> BTreeSet<PathBuf> {
    let mut files: BTreeSet<PathBuf> = ["Cargo.toml", "Cargo.lock"].iter().map(PathBuf::from).collect();
    let mut sources = BTreeSet::new();
    files_under(&repo().join("src"), repo(), &mut sources);
    let embed = regex::Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).unwrap();
    for source in sources.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let text = std::fs::read_to_string(repo().join(source)).unwrap();
        for found in embed.captures_iter(&text) {
            let target = repo().join(source).parent().unwrap().join(&found[1]);
            let target =
                target.canonicalize().unwrap_or_else(|e| panic!("{} embeds {}: {e}", source.display(), &found[1]));
            files.insert(target.strip_prefix(repo().canonicalize().unwrap()).unwrap().to_owned());
        }
    }
    files.extend(sources);
    files
}

#[test]
fn the_dockerfile_context_holds_every_file_the_compile_reads() {
    let dir = tempfile::tempdir().unwrap();
    // The Dockerfile's `sources` stage, built by buildah through .dockerignore.
    run(
        Command::new(repo().join("tests/env/servers/image.sh")).arg("sources").arg(dir.path()),
        "tests/env/servers/image.sh sources (buildah, from tests/env/up image)",
    );
    let needed = compiled_files();
    assert!(needed.contains(Path::new("examples/demo/policies.yaml")), "the demo embeds its manifests: {needed:?}");
    let mut copied = BTreeSet::new();
    files_under(dir.path(), dir.path(), &mut copied);
    let missing: Vec<_> = needed.difference(&copied).collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile's build context lacks files the compile reads: {missing:?}. \
         COPY them in the `sources` stage and let them through .dockerignore"
    );
    for file in &needed {
        assert_eq!(
            std::fs::read(dir.path().join(file)).unwrap(),
            std::fs::read(repo().join(file)).unwrap(),
            "{} differs in the image's sources",
            file.display()
        );
    }
}

/// A blob of the OCI layout unpacked in `dir`, by digest.
fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_image_runs_as_a_numeric_non_root_user_and_holds_one_nearly_static_binary() {
    let archive = support::setting("DELENDA_IMAGE_ARCHIVE", "the operator image (tests/env/up image)");
    let digest = support::setting("DELENDA_IMAGE_DIGEST", "the operator image (tests/env/up image)");
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(dir.path()), "tar");
    let index = json(&dir.path().join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "the archive's manifest is the one pods run");
    let manifest = json(&blob(dir.path(), &digest));
    let config = json(&blob(dir.path(), manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "a numeric user, so the kubelet can check runAsNonRoot");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/delenda"]));
    assert_eq!(c["Cmd"], serde_json::json!(["controller"]));
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{c}");

    let layers = manifest["layers"].as_array().unwrap();
    let listing = |layer: &serde_json::Value| -> Vec<String> {
        let path = blob(dir.path(), layer["digest"].as_str().unwrap());
        run(Command::new("tar").arg("-tf").arg(path), "tar -t")
            .lines()
            .map(|l| l.trim_start_matches("./").to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    // The Dockerfile adds one layer to its base: the binary.
    let own = listing(layers.last().unwrap());
    assert_eq!(own, ["delenda"], "the image's own layer");
    for layer in layers {
        let names = listing(layer);
        for shell in ["bin/sh", "bin/bash", "usr/bin/sh", "bin/busybox"] {
            assert!(!names.iter().any(|n| n == shell), "the image holds {shell}");
        }
    }
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let last = blob(dir.path(), layers.last().unwrap()["digest"].as_str().unwrap());
    run(Command::new("tar").arg("-xf").arg(last).arg("-C").arg(&bin), "tar -x");
    let dynamic = run(Command::new("readelf").arg("-d").arg(bin.join("delenda")), "readelf (binutils)");
    let needed: BTreeSet<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).map(|s| s.trim_end_matches(']').to_owned()))
        .collect();
    let glibc = ["libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libpthread.so.0", "libdl.so.2"];
    assert!(
        needed.iter().all(|lib| glibc.contains(&lib.as_str())),
        "the binary needs libraries beyond glibc and libgcc: {needed:?}"
    );
    let compressed: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    let binary = std::fs::metadata(bin.join("delenda")).unwrap().len();
    println!(
        "image {digest}: {} layers, {:.1} MiB compressed; /delenda {:.1} MiB, needs {needed:?}",
        layers.len(),
        compressed as f64 / 1048576.0,
        binary as f64 / 1048576.0
    );
}
