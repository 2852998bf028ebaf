//! The parts of an erasure certificate: the request, the identity
//! verification and the subject's digests; what was erased and kept where;
//! what the cluster says of the request today.

use std::fmt::Write as _;

use super::page::{DASH, Page};
use super::{escape, fill};
use crate::certificate::ClusterView;
use crate::certificate::text::Text;
use crate::certificate::view::{ErasureTarget, ErasureView, Stamp};

/// The request, its verification and its subject.
pub fn statement(p: &mut Page<'_>, e: &ErasureView, cluster: &ClusterView) {
    let t = p.t;
    if !e.complete {
        let phase = Page::word(t.phases, e.phase.as_ref());
        let _ = write!(p.out, "<div class=\"verdict warn\">{}</div>", fill(t.not_complete, &[("phase", phase)]));
    }
    if e.mode.as_ref().is_some_and(|m| m.as_str() == "DryRun") {
        let _ = write!(p.out, "<div class=\"verdict warn\">{}</div>", escape(t.dry_run));
    }
    let _ = write!(p.out, "<p>{}</p>", escape(t.lead_erasure));
    p.h2(t.sec_request);
    p.push("<table class=\"facts\">");
    p.row(t.request, &Page::opt(e.request.as_ref()));
    p.row(t.ground, &Page::word(t.grounds, e.ground.as_ref()));
    p.row(t.received, &p.stamp(e.received_at.as_ref()));
    p.row(t.deadline, &p.stamp(e.deadline.as_ref()));
    let cluster_completed = match cluster {
        ClusterView::Found { completed_at, .. } => completed_at.clone(),
        _ => None,
    };
    let completed = cluster_completed.or_else(|| {
        (e.complete && e.mode.as_ref().is_none_or(|m| m.as_str() == "Enforce")).then(|| e.finished_at.clone()).flatten()
    });
    let mut done = p.stamp(completed.as_ref());
    if let (Some(at), Some(deadline)) =
        (completed.as_ref().and_then(Stamp::at), e.deadline.as_ref().and_then(Stamp::at))
    {
        let _ = write!(done, " — {}", escape(if at <= deadline { t.on_time } else { t.late }));
    }
    p.row(t.completed, &done);
    p.row(t.mode, &Page::word(t.modes, e.mode.as_ref()));
    p.row(t.phase, &Page::word(t.phases, e.phase.as_ref()));
    let behalf = e.on_behalf_of.as_ref().map_or_else(|| escape(t.own_data), |b| escape(b.as_str()));
    p.row(t.on_behalf_of, &behalf);
    p.push("</table>");

    p.h2(t.identity);
    let v = &e.verification;
    let via = fill(
        t.identity_via,
        &[
            ("method", Page::word(t.methods, v.method.as_ref())),
            ("by", format!("<strong>{}</strong>", Page::opt(v.verified_by.as_ref()))),
        ],
    );
    let _ = write!(p.out, "<p>{via}</p><table class=\"facts\">");
    p.row(t.verified_at, &p.stamp(v.verified_at.as_ref()));
    p.row(t.reference, &Page::opt(v.reference.as_ref()));
    p.push("</table>");

    p.h2(t.subject);
    let _ = write!(p.out, "<p>{}</p>", escape(t.subject_note));
    p.table(&[18, 82]);
    let _ = write!(p.out, "<tr><th>{}</th><th>{}</th></tr>", escape(t.kind), escape(t.keyed_digest));
    for (kind, digest) in &e.subject_digests {
        let _ = write!(
            p.out,
            "<tr><td>{}</td><td class=\"digest\">{}</td></tr>",
            escape(kind.as_str()),
            escape(digest.as_str())
        );
    }
    p.push("</table>");
}

/// What the cluster says of the request today, next to the evidence.
pub fn cluster_status(p: &mut Page<'_>, cluster: &ClusterView) {
    let t = p.t;
    let _ = write!(p.out, "<h3>{}</h3>", escape(t.cluster_status));
    match cluster {
        ClusterView::NotRead => {
            let _ = write!(p.out, "<p>{}</p>", escape(t.cluster_not_read));
        }
        ClusterView::Gone => {
            let _ = write!(p.out, "<p>{}</p>", escape(t.cluster_gone));
        }
        ClusterView::Found { phase, deadline, completed_at } => {
            p.push("<table class=\"facts\">");
            p.row(t.phase, &Page::word(t.phases, phase.as_ref()));
            p.row(t.deadline, &p.stamp(deadline.as_ref()));
            p.row(t.completed, &p.stamp(completed_at.as_ref()));
            p.push("</table>");
        }
    }
}

/// What happened at each target, with totals by outcome.
pub fn outcome(p: &mut Page<'_>, e: &ErasureView) {
    let t = p.t;
    p.h2(t.sec_outcome);
    // Totals by outcome, in the order of the outcome table.
    let _ = write!(
        p.out,
        "<h3>{}</h3><table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        escape(t.totals),
        escape(t.outcome),
        escape(t.targets),
        escape(t.records)
    );
    for (word, _) in t.outcomes {
        let of: Vec<&ErasureTarget> =
            e.targets.iter().filter(|x| x.outcome.as_ref().is_some_and(|o| o.as_str() == *word)).collect();
        if of.is_empty() {
            continue;
        }
        let records: i64 = of.iter().map(|x| if *word == "Erased" { x.erased } else { x.matched }.unwrap_or(0)).sum();
        let label = Text::word(t.outcomes, word).unwrap_or(word);
        let _ = write!(
            p.out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{records}</td></tr>",
            escape(label),
            of.len()
        );
    }
    p.push("</table>");
    // Six columns fit A4; what is said in words goes on a row of its own.
    p.table(&[26, 16, 10, 10, 12, 26]);
    p.push("<tr>");
    for h in [t.target, t.outcome, t.found, t.erased, t.left, t.kept_until] {
        let _ = write!(p.out, "<th>{}</th>", escape(h));
    }
    p.push("</tr>");
    for x in &e.targets {
        let retained = x.outcome.as_ref().is_some_and(|o| o.as_str() == "Retained");
        let until = match (&x.retained_until, retained) {
            (Some(u), _) => p.stamp(Some(u)),
            (None, true) => escape(t.until_lifted),
            (None, false) => DASH.to_owned(),
        };
        let _ = write!(
            p.out,
            "<tr><td>{}<br>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{until}</td></tr>",
            Page::opt(x.policy.as_ref()),
            Page::opt(x.target.as_ref()),
            Page::word(t.outcomes, x.outcome.as_ref()),
            Page::count(x.matched),
            Page::count(x.erased),
            Page::count(x.remaining),
        );
        let mut notes = Vec::new();
        if x.retained_under.is_some() {
            notes.push(format!("{}: {}", escape(t.why_kept), p.under(x.retained_under.as_ref())));
        }
        if let Some(b) = &x.on_behalf_of {
            notes.push(format!("{}: {}", escape(t.on_behalf_of), escape(b.as_str())));
        }
        if !notes.is_empty() {
            let _ = write!(p.out, "<tr class=\"more\"><td></td><td colspan=\"5\">{}</td></tr>", notes.join("<br>"));
        }
    }
    p.push("</table>");
}
