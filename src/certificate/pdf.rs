//! The certificate as a PDF: the HTML printed by headless Chromium, which
//! lays out the page exactly as a browser shows it (A4, from the page's own
//! CSS), without header or footer lines of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::CertificateError;

/// How long Chromium may take to print one certificate.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The browser: `given`, or `chromium` or `chromium-browser` on PATH.
pub fn find_chromium(given: Option<&Path>) -> Result<PathBuf, CertificateError> {
    if let Some(path) = given {
        return if path.is_file() { Ok(path.to_owned()) } else { Err(CertificateError::NoBrowser) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CertificateError::NoBrowser)
}

/// Prints the HTML file `html` to `pdf` with `chromium`. The browser runs
/// with a profile of its own in a temporary directory, so prints in
/// parallel do not share one; its messages go to a file there (a pipe
/// nobody reads while it runs could fill and stall it).
pub fn print(chromium: &Path, html: &Path, pdf: &Path) -> Result<(), CertificateError> {
    let io = |what: &str, e: std::io::Error| CertificateError::Pdf(format!("{what}: {e}"));
    let html = std::path::absolute(html).map_err(|e| io("cannot resolve the HTML file", e))?;
    let pdf = std::path::absolute(pdf).map_err(|e| io("cannot resolve the PDF file", e))?;
    let url = url::Url::from_file_path(&html)
        .map_err(|()| CertificateError::Pdf(format!("{} cannot be a file:// URL", html.display())))?;
    let work = scratch_dir("chromium").map_err(|e| io("cannot make a directory for the browser", e))?;
    let log = std::fs::File::create(work.join("stderr.log")).map_err(|e| io("cannot make the browser's log", e))?;
    let _ = std::fs::remove_file(&pdf);
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer", "--no-first-run"])
        .arg(format!("--user-data-dir={}", work.join("profile").display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(url.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| io(&format!("cannot start {}", chromium.display()), e))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| io("waiting for the browser", e))? {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(work.join("stderr.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&work);
    let Some(status) = status else {
        return Err(CertificateError::Pdf(format!("it did not finish within {} s", TIMEOUT.as_secs())));
    };
    let written = std::fs::read(&pdf).map(|b| b.starts_with(b"%PDF")).unwrap_or(false);
    if !status.success() || !written {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(CertificateError::Pdf(format!("{status}, no PDF at {}: {}", pdf.display(), tail.join(" | "))));
    }
    Ok(())
}

/// A fresh directory under the system's temporary directory.
pub fn scratch_dir(what: &str) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("delenda-{what}-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
