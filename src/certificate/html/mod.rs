//! The certificate as one self-contained HTML page: inline CSS, no fonts,
//! scripts or images from elsewhere, A4 with a page break between
//! sections. Every value is escaped; the wording comes from [`Text`].

mod erasure;
mod page;
mod policy;

use std::fmt::Write as _;

use super::text::Text;
use super::{Body, Certificate, Entry};
use page::{DASH, Page};

const STYLE: &str = r#"
@page { size: A4; margin: 16mm 14mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; font-size: 10pt; line-height: 1.4; color: #111; margin: 0 auto; max-width: 182mm; }
section.page { padding: 4mm 0; }
section.page + section.page { break-before: page; page-break-before: always; }
h1 { font-size: 19pt; margin: 0 0 2pt; }
h2 { font-size: 13pt; margin: 14pt 0 4pt; border-bottom: 1px solid #888; padding-bottom: 2pt; }
h3 { font-size: 11pt; margin: 12pt 0 3pt; }
p.sub { margin: 0 0 8pt; color: #444; }
table { border-collapse: collapse; width: 100%; margin: 4pt 0 8pt; }
th, td { border: 1px solid #bbb; padding: 3pt 5pt; text-align: left; vertical-align: top; overflow-wrap: break-word; }
tr.more td { border-top: none; font-size: 9pt; }
th { background: #eee; }
table.facts th { width: 34%; background: #f5f5f5; }
tr { break-inside: avoid; page-break-inside: avoid; }
td.n { text-align: right; white-space: nowrap; }
time { white-space: nowrap; }
code, .digest { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 8pt; word-break: break-all; }
pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 8.5pt; white-space: pre-wrap; word-break: break-all; background: #f4f4f4; padding: 4pt 6pt; border: 1px solid #ddd; }
.verdict { border: 2px solid; padding: 6pt 8pt; margin: 8pt 0; break-inside: avoid; }
.verdict.ok { border-color: #1a7f37; background: #eaf6ec; }
.verdict.warn { border-color: #9a6700; background: #fff8e1; }
.verdict.broken { border: 4px solid #b00020; background: #fde8ea; color: #600010; }
.verdict.broken strong { font-size: 15pt; display: block; }
.fail { color: #b00020; font-weight: bold; }
footer { margin-top: 16pt; font-size: 8.5pt; color: #555; }
"#;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{name}` placeholders of an escaped template with HTML.
pub(super) fn fill(template: &str, args: &[(&str, String)]) -> String {
    let mut out = escape(template);
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The whole page.
pub fn render(c: &Certificate, t: &'static Text) -> String {
    let mut p = Page { t, c, out: String::new() };
    let (title, subtitle) = match &c.body {
        Body::Erasure { request, .. } => (t.title_erasure, escape(request.as_str())),
        Body::Policy { policy, from, to, .. } => {
            (t.title_policy, format!("{} · {from} – {to}", escape(policy.as_str())))
        }
    };
    let _ = write!(
        p.out,
        "<!DOCTYPE html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} — {subtitle}</title><style>{STYLE}</style></head><body>",
        t.lang,
        escape(title)
    );
    p.section("statement");
    let _ = write!(p.out, "<h1>{}</h1><p class=\"sub\">{subtitle}</p>", escape(title));
    p.verdict(true);
    match &c.body {
        Body::Erasure { latest, cluster, .. } => erasure::statement(&mut p, latest, cluster),
        Body::Policy { runs, from, to, policy } => policy::statement(&mut p, policy, runs, *from, *to),
    }
    p.push("</section>");
    p.section("outcome");
    p.verdict(false);
    match &c.body {
        Body::Erasure { latest, .. } => erasure::outcome(&mut p, latest),
        Body::Policy { runs, .. } => policy::runs(&mut p, runs),
    }
    p.push("</section>");
    p.section("evidence");
    p.verdict(false);
    evidence(&mut p);
    p.push("</section>");
    p.section("verify");
    how_to_verify(&mut p);
    let footer = fill(t.footer, &[("version", escape(env!("CARGO_PKG_VERSION"))), ("at", p.instant(c.made_at))]);
    let _ = writeln!(p.out, "<footer>{footer}</footer></section></body></html>");
    p.out
}

fn evidence(p: &mut Page<'_>) {
    let t = p.t;
    let c = p.c;
    p.h2(t.sec_evidence);
    let _ = write!(
        p.out,
        "<p>{}</p><table class=\"facts\">",
        fill(t.evidence_lead, &[("chain", Page::code(&c.verdict.chain))])
    );
    p.row(t.read_from, &escape(c.source.as_str()));
    let keys = if c.verdict.keys.is_empty() {
        escape(t.none)
    } else {
        c.verdict.keys.iter().map(Page::code).collect::<Vec<_>>().join(", ")
    };
    p.row(t.keys_given, &keys);
    p.push("</table>");
    if let Body::Erasure { cluster, .. } = &c.body {
        erasure::cluster_status(p, cluster);
    }
    let entries: Vec<(&Entry, String)> = match &c.body {
        Body::Erasure { history, .. } => history
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut label = format!(
                    "{}<br>{}",
                    Page::word(t.phases, r.view.phase.as_ref()),
                    p.stamp(r.view.finished_at.as_ref())
                );
                if i + 1 == history.len() {
                    let _ = write!(label, "<br><em>{}</em>", escape(t.latest));
                }
                (&r.entry, label)
            })
            .collect(),
        Body::Policy { runs, .. } => runs
            .iter()
            .map(|r| {
                let label = format!(
                    "{} {}<br>{}",
                    escape(t.run),
                    Page::opt(r.view.run_id.as_ref()),
                    p.stamp(r.view.finished_at.as_ref())
                );
                (&r.entry, label)
            })
            .collect(),
    };
    p.table(&[9, 27, 40, 24]);
    let _ = write!(
        p.out,
        "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        escape(t.position),
        escape(t.record),
        escape(t.digest),
        escape(t.signature)
    );
    for (entry, label) in entries {
        let previous = entry.previous.as_ref().map_or_else(|| DASH.to_owned(), |d| escape(d.as_str()));
        let _ = write!(
            p.out,
            "<tr><td class=\"n\">{}</td><td>{label}</td><td class=\"digest\">{}<br>{}: {previous}</td><td>{}</td></tr>",
            entry.index,
            escape(entry.digest.as_str()),
            escape(t.previous_digest),
            p.seal(&entry.seal)
        );
    }
    p.push("</table>");
}

fn how_to_verify(p: &mut Page<'_>) {
    let t = p.t;
    let c = p.c;
    p.h2(t.sec_verify);
    let ns = c.namespace.as_ref().map_or_else(|| "NS".to_owned(), |n| n.as_str().to_owned());
    let chain = c.verdict.chain.as_str();
    let _ = write!(
        p.out,
        "<p>{}</p><pre>delenda evidence verify --namespace {} --public-key FILE --chain {}</pre>",
        escape(t.verify_chain),
        escape(&ns),
        escape(chain)
    );
    let _ = write!(
        p.out,
        "<p>{}</p><pre>delenda evidence verify --public-key FILE chain.jsonl</pre>",
        escape(t.verify_files)
    );
    let _ = write!(p.out, "<p>{}</p>", escape(t.verify_digest));
    if let Body::Erasure { latest, request, .. } = &c.body {
        // Digests are keyed per namespace: the request's own.
        let namespace = request.as_str().split_once('/').map_or("NAMESPACE", |(ns, _)| ns).to_owned();
        let _ = write!(p.out, "<p>{}</p><pre>", escape(t.verify_subject));
        let mut kinds: Vec<&str> = latest.subject_digests.iter().map(|(k, _)| k.as_str()).collect();
        if kinds.is_empty() {
            kinds.push("email");
        }
        for kind in kinds {
            let _ = writeln!(
                p.out,
                "delenda evidence digest --namespace {} --kind {} --key-file KEY",
                escape(&namespace),
                escape(kind)
            );
        }
        p.push("</pre>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn placeholders_take_html_and_the_template_is_escaped() {
        assert_eq!(fill("a < {x} & {y}", &[("x", "<b>1</b>".into())]), "a &lt; <b>1</b> &amp; {y}");
    }
}
