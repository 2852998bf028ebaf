//! The parts of a policy certificate: the policy as its latest run in the
//! period recorded it, and every run of the period with each target's
//! account.

use std::fmt::Write as _;

use jiff::civil::Date;

use super::page::Page;
use super::{escape, fill};
use crate::certificate::Recorded;
use crate::certificate::guard::Shown;
use crate::certificate::view::{RunTarget, RunView};

/// The policy and the period.
pub fn statement(p: &mut Page<'_>, policy: &Shown, runs: &[Recorded<RunView>], from: Date, to: Date) {
    let t = p.t;
    let _ = write!(p.out, "<p>{}</p>", escape(t.lead_policy));
    p.h2(t.sec_policy);
    // What the policy said at the latest run of the period.
    let latest = runs.last().map(|r| &r.view);
    p.push("<table class=\"facts\">");
    p.row(t.policy, &escape(policy.as_str()));
    p.row(t.range, &fill(t.range_value, &[("from", p.date(from)), ("to", p.date(to))]));
    if let Some(r) = latest {
        p.row(t.category, &Page::opt(r.category.as_ref()));
        p.row(t.legal_basis, &Page::word(t.legal_bases, r.legal_basis.as_ref()));
        p.row(t.controller, &Page::word(t.parties, r.responsible_party.as_ref()));
        if r.customer.is_some() {
            p.row(t.customer, &Page::opt(r.customer.as_ref()));
        }
        p.row(t.period, &p.period(r.period.as_ref()));
        p.row(t.time_zone, &Page::opt(r.time_zone.as_ref()));
    }
    p.push("</table>");
    if runs.is_empty() {
        let _ = write!(p.out, "<div class=\"verdict warn\">{}</div>", escape(t.no_runs));
    }
}

fn sum(runs: &[Recorded<RunView>], f: impl Fn(&RunTarget) -> i64) -> i64 {
    runs.iter().flat_map(|r| &r.view.targets).map(f).sum()
}

fn target_header(p: &mut Page<'_>, totals: bool) {
    let t = p.t;
    p.push("<tr>");
    let mut headers =
        vec![if totals { t.sec_runs } else { t.target }, t.due, t.deleted, t.related_deleted, t.left, t.not_due];
    if totals {
        headers.extend([t.kept, t.unjudged]);
    }
    for h in headers {
        let _ = write!(p.out, "<th>{}</th>", escape(h));
    }
    p.push("</tr>");
}

/// Every run of the period, and their totals.
pub fn runs(p: &mut Page<'_>, runs: &[Recorded<RunView>]) {
    let t = p.t;
    p.h2(t.sec_runs);
    if runs.is_empty() {
        let _ = write!(p.out, "<p>{}</p>", escape(t.no_runs));
        return;
    }
    let kept = |x: &RunTarget| x.retained.iter().map(|k| k.count).sum::<i64>();
    let unjudged = |x: &RunTarget| x.unreadable.iter().map(|k| k.count).sum::<i64>();
    let _ = write!(p.out, "<h3>{}</h3><table>", escape(t.runs_total));
    target_header(p, true);
    let _ = write!(
        p.out,
        "<tr><td>{} × {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>",
        runs.len(),
        escape(t.run),
        sum(runs, |x| x.matched.unwrap_or(0)),
        sum(runs, |x| x.deleted.unwrap_or(0)),
        sum(runs, |x| x.related_deleted.unwrap_or(0)),
        sum(runs, |x| x.remaining.unwrap_or(0)),
        sum(runs, |x| x.not_due.unwrap_or(0)),
        sum(runs, kept),
        sum(runs, unjudged),
    );
    for r in runs {
        run(p, &r.view);
    }
}

fn run(p: &mut Page<'_>, r: &RunView) {
    let t = p.t;
    let _ = write!(p.out, "<h3>{} {}</h3><table class=\"facts\">", escape(t.run), Page::opt(r.run_id.as_ref()));
    p.row(t.mode, &Page::word(t.modes, r.mode.as_ref()));
    p.row(t.started, &p.stamp(r.started_at.as_ref()));
    p.row(t.finished, &p.stamp(r.finished_at.as_ref()));
    p.row(t.cutoff, &p.stamp(r.cutoff.as_ref()));
    p.row(t.outcome, &Page::word(t.run_outcomes, r.outcome.as_ref()));
    if r.stopped_by.is_some() {
        p.row(t.stopped_by, &Page::word(t.stops, r.stopped_by.as_ref()));
    }
    p.push("</table>");
    p.table(&[30, 14, 14, 14, 14, 14]);
    target_header(p, false);
    for x in &r.targets {
        let _ = write!(
            p.out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            Page::opt(x.name.as_ref()),
            Page::count(x.matched),
            Page::count(x.deleted),
            Page::count(x.related_deleted),
            Page::count(x.remaining),
            Page::count(x.not_due),
        );
        // What was kept, could not be judged, went whole or failed: in words, on a row of its own.
        let mut notes = Vec::new();
        for k in &x.retained {
            let until =
                k.until.as_ref().map(|u| format!(", {} {}", escape(&t.kept_until.to_lowercase()), p.stamp(Some(u))));
            let reason = Page::word(t.retain_reasons, k.reason.as_ref());
            notes.push(format!("{}: {} × {reason}{}", escape(t.kept), k.count, until.unwrap_or_default()));
        }
        for u in &x.unreadable {
            let reason = Page::word(t.unreadable_reasons, u.name.as_ref());
            notes.push(format!("{}: {} × {reason}", escape(t.unjudged), u.count));
        }
        if !x.dropped.is_empty() {
            let dropped: Vec<String> =
                x.dropped.iter().map(|d| format!("{} ({})", Page::opt(d.name.as_ref()), d.count)).collect();
            notes.push(format!("{}: {}", escape(t.dropped), dropped.join(", ")));
        }
        if let Some(e) = &x.error {
            notes.push(format!("<span class=\"fail\">{}: {}</span>", escape(t.error), escape(e.as_str())));
        }
        if !notes.is_empty() {
            let _ = write!(p.out, "<tr class=\"more\"><td></td><td colspan=\"5\">{}</td></tr>", notes.join("<br>"));
        }
    }
    p.push("</table>");
}
