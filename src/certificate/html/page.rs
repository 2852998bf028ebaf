//! What every part of the page writes with: escaped values, words of the
//! evidence in the page's language, times in full, the verdict on the chain.

use std::fmt::Write as _;
use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::Date;
use regex::Regex;

use super::{escape, fill};
use crate::certificate::Certificate;
use crate::certificate::check::{Problem, Seal};
use crate::certificate::guard::Shown;
use crate::certificate::text::{Text, Words};
use crate::certificate::view::Stamp;

/// The page being written.
pub(super) struct Page<'a> {
    pub t: &'static Text,
    pub c: &'a Certificate,
    pub out: String,
}

/// What stands where the evidence holds nothing.
pub(super) const DASH: &str = "—";

impl Page<'_> {
    /// Appends HTML.
    pub fn push(&mut self, html: &str) {
        self.out.push_str(html);
    }

    /// Escaped text, or a dash.
    pub fn opt(v: Option<&Shown>) -> String {
        v.map_or_else(|| DASH.to_owned(), |s| escape(s.as_str()))
    }

    /// Escaped text as code (digests, key ids, chain names).
    pub fn code(v: &Shown) -> String {
        format!("<code>{}</code>", escape(v.as_str()))
    }

    /// A word of the evidence in the page's language; unknown words as written.
    pub fn word(table: Words, v: Option<&Shown>) -> String {
        match v {
            Some(w) => Text::word(table, w.as_str()).map_or_else(|| escape(w.as_str()), escape),
            None => DASH.to_owned(),
        }
    }

    /// A count, or a dash.
    pub fn count(n: Option<i64>) -> String {
        n.map_or_else(|| DASH.to_owned(), |n| n.to_string())
    }

    /// `30 November 2026`, `30 november 2026`.
    pub fn readable_date(&self, d: Date) -> String {
        format!("{} {} {}", d.day(), self.t.months[(d.month() - 1) as usize], d.year())
    }

    /// ISO 8601 in UTC, then the readable form.
    pub fn instant(&self, t: Timestamp) -> String {
        let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
        let iso = utc.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        format!(
            "<time datetime=\"{iso}\">{iso}</time> ({}, {} {})",
            self.readable_date(utc.date()),
            utc.strftime("%H:%M"),
            self.t.utc
        )
    }

    /// A time from a record: in full, as written, or a dash.
    pub fn stamp(&self, s: Option<&Stamp>) -> String {
        match s {
            Some(Stamp::At(t)) => self.instant(*t),
            Some(Stamp::Text(text)) => escape(text.as_str()),
            None => DASH.to_owned(),
        }
    }

    /// A day: ISO 8601, then the readable form.
    pub fn date(&self, d: Date) -> String {
        format!("<time datetime=\"{d}\">{d}</time> ({})", self.readable_date(d))
    }

    /// `3y6mo` as `3y6mo (3 years and 6 months)`.
    pub fn period(&self, p: Option<&Shown>) -> String {
        static PART: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d+)(y|mo|w|d)").expect("valid"));
        let Some(p) = p else { return DASH.to_owned() };
        let words: Vec<String> = PART
            .captures_iter(p.as_str())
            .map(|c| {
                let n: u64 = c[1].parse().unwrap_or(0);
                let (one, many) = match &c[2] {
                    "y" => self.t.years,
                    "mo" => self.t.months_unit,
                    "w" => self.t.weeks,
                    _ => self.t.days,
                };
                format!("{n} {}", if n == 1 { one } else { many })
            })
            .collect();
        let readable = match words.as_slice() {
            [] => return escape(p.as_str()),
            [one] => one.clone(),
            [init @ .., last] => format!("{} {} {last}", init.join(", "), self.t.and),
        };
        format!("{} ({})", escape(p.as_str()), escape(&readable))
    }

    /// The engine's reason for keeping, in the page's words where it has a known form.
    pub fn under(&self, under: Option<&Shown>) -> String {
        static LEGAL: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"^RetentionPolicy (\S+) \(legal obligation, GDPR Art\. 6\(1\)\(c\) and 17\(3\)\(b\); kept (\S+) from each record\)$")
                .expect("valid")
        });
        static STORE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(\d+) (\w+)$").expect("valid"));
        let Some(u) = under else { return DASH.to_owned() };
        if let Some(c) = LEGAL.captures(u.as_str()) {
            let period = Shown::checked("retainedUnder", &c[2]).ok();
            return fill(
                self.t.under_legal_obligation,
                &[("policy", escape(&c[1])), ("period", self.period(period.as_ref()))],
            );
        }
        if let Some(list) = u.as_str().strip_prefix("the store keeps them: ") {
            let parts: Option<Vec<String>> = list
                .split(", ")
                .map(|item| {
                    let c = STORE.captures(item)?;
                    Some(format!("{} × {}", &c[1], escape(Text::word(self.t.retain_reasons, &c[2])?)))
                })
                .collect();
            if let Some(parts) = parts {
                return fill(self.t.under_store, &[("reasons", parts.join(", "))]);
            }
        }
        escape(u.as_str())
    }

    /// One row of a table of facts.
    pub fn row(&mut self, label: &str, value: &str) {
        let _ = write!(self.out, "<tr><th>{}</th><td>{value}</td></tr>", escape(label));
    }

    /// What is wrong with the chain, as a list.
    pub fn problems(&self, problems: &[Problem]) -> String {
        let mut out = String::from("<ul>");
        for p in problems {
            let template = Text::word(self.t.problems, p.kind).unwrap_or(p.kind);
            let args: Vec<(&str, String)> = p.args.iter().map(|(k, v)| (*k, Self::code(v))).collect();
            let _ = write!(out, "<li>{}</li>", fill(template, &args));
        }
        out.push_str("</ul>");
        out
    }

    /// The verdict on the chain; in full on the first page, after that
    /// only when the chain is broken or unsigned.
    pub fn verdict(&mut self, full: bool) {
        let v = &self.c.verdict;
        let chain = Self::code(&v.chain);
        if !self.c.intact() {
            let (sentence, findings) = if full {
                (self.t.verdict_broken, self.problems(&v.problems))
            } else {
                (self.t.verdict_broken_again, String::new())
            };
            let _ = write!(
                self.out,
                "<div class=\"verdict broken\" role=\"alert\"><strong>{}</strong>{}{findings}</div>",
                escape(self.t.verdict_broken_title),
                fill(sentence, &[("chain", chain)])
            );
        } else if v.keys.is_empty() {
            let html = fill(self.t.verdict_unsigned, &[("chain", chain), ("records", v.records.to_string())]);
            let _ = write!(self.out, "<div class=\"verdict warn\">{html}</div>");
        } else if full {
            let keys = v.keys.iter().map(Self::code).collect::<Vec<_>>().join(", ");
            let html = fill(self.t.verdict_ok, &[("chain", chain), ("records", v.records.to_string()), ("keys", keys)]);
            let _ = write!(self.out, "<div class=\"verdict ok\">{html}</div>");
        }
    }

    /// How one record's signature checked.
    pub fn seal(&self, seal: &Seal) -> String {
        match seal {
            Seal::Verified { key } => fill(self.t.seal_verified, &[("key", Self::code(key))]),
            Seal::NotChecked { key: Some(key) } => fill(self.t.seal_not_checked, &[("key", Self::code(key))]),
            Seal::NotChecked { key: None } => escape(self.t.seal_unsigned),
            Seal::Failed(problems) => {
                format!("<span class=\"fail\">{}</span>{}", escape(self.t.seal_failed), self.problems(problems))
            }
        }
    }

    /// A table with columns of these widths, in percent of the page.
    pub fn table(&mut self, widths: &[u8]) {
        self.push("<table><colgroup>");
        for w in widths {
            let _ = write!(self.out, "<col style=\"width: {w}%\">");
        }
        self.push("</colgroup>");
    }

    /// Opens a section: a page of its own in print.
    pub fn section(&mut self, id: &str) {
        let _ = write!(self.out, "<section class=\"page\" id=\"{id}\">");
    }

    /// A section heading.
    pub fn h2(&mut self, title: &str) {
        let _ = write!(self.out, "<h2>{}</h2>", escape(title));
    }
}
