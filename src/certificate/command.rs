//! `delenda evidence certificate`: read the evidence, make the certificate,
//! write the HTML (and the PDF). The binary only parses its arguments into
//! [`Options`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::{CertificateError, Lang, Selection, build, pdf, source};
use crate::engine::evidence::PublicKey;

/// Where the evidence is read from.
#[derive(Clone, Debug)]
pub enum Origin {
    /// The cluster of KUBECONFIG, this namespace.
    Cluster(String),
    /// Files of sealed records (`-` for stdin).
    Files(Vec<PathBuf>),
}

/// What the command was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the evidence is.
    pub origin: Origin,
    /// What the certificate is about.
    pub selection: Selection,
    /// Its language.
    pub lang: Lang,
    /// The HTML file; stdout when none (and no PDF is asked for).
    pub out: Option<PathBuf>,
    /// The PDF file.
    pub pdf: Option<PathBuf>,
    /// The browser that prints the PDF.
    pub chromium: Option<PathBuf>,
    /// The operator's public keys (PEM files).
    pub public_keys: Vec<PathBuf>,
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> CertificateError {
    CertificateError::File { path: path.display().to_string(), detail: e.to_string() }
}

/// Runs the command. Returns whether the evidence verified: the
/// certificate is written either way, and says so when it did not.
pub async fn run(options: Options) -> Result<bool, CertificateError> {
    let keys = options
        .public_keys
        .iter()
        .map(|p| {
            let pem = std::fs::read_to_string(p).map_err(|e| file_error(p, e))?;
            PublicKey::from_pem(&pem).map_err(|e| file_error(p, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // No evidence is read when the PDF cannot be printed anyway.
    let chromium = options.pdf.as_ref().map(|_| pdf::find_chromium(options.chromium.as_deref())).transpose()?;
    let evidence = match &options.origin {
        Origin::Cluster(namespace) => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| CertificateError::Read(format!("cannot build a Kubernetes client: {e}")))?;
            source::from_cluster(&client, namespace, &options.selection).await?
        }
        Origin::Files(paths) => source::from_files(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())?,
    };
    let certificate = build(&evidence, &options.selection, &keys, Timestamp::now())?;
    let html = certificate.to_html(options.lang);
    match (&options.out, &options.pdf) {
        (Some(out), _) => std::fs::write(out, &html).map_err(|e| file_error(out, e))?,
        (None, None) => std::io::stdout().write_all(html.as_bytes()).map_err(|e| file_error(Path::new("stdout"), e))?,
        (None, Some(_)) => {}
    }
    if let (Some(pdf_path), Some(chromium)) = (&options.pdf, &chromium) {
        match &options.out {
            Some(out) => pdf::print(chromium, out, pdf_path)?,
            None => {
                let dir =
                    pdf::scratch_dir("certificate").map_err(|e| file_error(Path::new("temporary directory"), e))?;
                let page = dir.join("certificate.html");
                let printed = std::fs::write(&page, &html)
                    .map_err(|e| file_error(&page, e))
                    .and_then(|()| pdf::print(chromium, &page, pdf_path));
                let _ = std::fs::remove_dir_all(&dir);
                printed?;
            }
        }
    }
    Ok(certificate.intact())
}
