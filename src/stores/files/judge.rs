//! Judging one record: whether it holds the subject (erasure), and when it
//! was written (retention by line time).
//!
//! Identities match as [`crate::stores::identity`] says for their kind: in
//! Text, anywhere in the record as a whole; in JSON lines, as the whole
//! value of the declared field. A record that cannot be read exactly is
//! never guessed at: a line of a JSON-lines file that is not a JSON object,
//! or a record that is not UTF-8 and matches under one reading of its bytes
//! but not another, is kept and counted as unreadable when it might hold
//! the subject.

use std::sync::OnceLock;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use serde_json::Value;

use super::invalid;
use crate::api::FieldName;
use crate::api::account::UnreadableReason;
use crate::api::policy::{FileFormat, SubjectField, TimeFormat};
use crate::stores::due::{Bounds, Judgement, RecordTime, read_number, read_text};
use crate::stores::identity::{Identity, Kind};
use crate::stores::{StoreError, Subject};

/// Whether a record holds the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// It does not.
    No,
    /// It does.
    Yes,
    /// It cannot be told; the record is kept and counted.
    Unsure(UnreadableReason),
}

/// Where one pass over an input found the next identity's bytes, backslash
/// and byte that is not ASCII ([`SubjectMatcher::clear_lines`]).
#[derive(Debug, Default)]
pub(super) struct Ahead([Seen; 3]);

/// For one kind of byte: where the next was found (bytes into the input),
/// or that there is none up to `known_to`.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    next: Option<u64>,
    known_to: u64,
}

/// Finds where the first byte of a kind lies.
type Search<'a> = dyn Fn(&[u8]) -> Option<usize> + 'a;

/// Where the first byte that is not ASCII lies.
fn first_non_ascii(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    for chunk in bytes.chunks(256) {
        if !chunk.is_ascii() {
            return chunk.iter().position(|b| !b.is_ascii()).map(|i| from + i);
        }
        from += chunk.len();
    }
    None
}

/// Finds a subject's records.
#[derive(Debug)]
pub(super) struct SubjectMatcher {
    format: FileFormat,
    /// (JSON field, identity); the field is unused for Text.
    wanted: Vec<(String, Identity)>,
    /// A record that matches none of these cannot hold the subject, unless
    /// `always` is set (phones and IP addresses have many spellings).
    needles: Option<BytesRegex>,
    always: bool,
    emails: bool,
    /// Whether `clear_lines` may vouch for lines: the cheap test applies
    /// (not `always`) and no identity spans lines.
    clears: bool,
}

impl SubjectMatcher {
    /// The matcher for the subject's identities that the target declares,
    /// or `None` when it declares none of them. Values that cannot be an
    /// identity of their kind, or are too short to find in free text, are
    /// refused with an error that names the kind, never the value.
    pub(super) fn new(
        fields: &[SubjectField],
        format: FileFormat,
        subject: &Subject,
    ) -> Result<Option<Self>, StoreError> {
        let mut wanted: Vec<(String, Identity)> = Vec::new();
        for f in fields {
            let field = match (&f.field, format) {
                (Some(field), _) => field.as_str().to_owned(),
                (None, FileFormat::Text) => String::new(),
                (None, FileFormat::JsonLines) => continue,
            };
            for value in subject.values(&f.identity) {
                let identity = Identity::new(&f.identity, value).map_err(|e| invalid(e.to_string()))?;
                if format == FileFormat::Text {
                    identity.check_free_text(&f.identity).map_err(|e| invalid(e.to_string()))?;
                }
                let field = if format == FileFormat::Text { String::new() } else { field.clone() };
                if !wanted.iter().any(|(f, i)| *f == field && *i == identity) {
                    wanted.push((field, identity));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        let always = wanted.iter().any(|(_, i)| {
            matches!(i.kind(), Kind::Phone | Kind::Ip)
                || (i.kind() == Kind::Email && !i.normalised().is_ascii())
                || (format == FileFormat::JsonLines && i.kind() == Kind::Exact && spelled_as_number(i.normalised()))
        });
        let emails = wanted.iter().any(|(_, i)| i.kind() == Kind::Email);
        let needles = (!always).then(|| {
            let parts: Vec<String> = wanted
                .iter()
                .map(|(_, i)| match i.kind() {
                    Kind::Email => format!("(?i-u:{})", regex::escape(i.normalised())),
                    _ => format!("(?-u:{})", regex::escape(i.normalised())),
                })
                .collect();
            BytesRegex::new(&parts.join("|")).expect("escaped literals form a valid pattern")
        });
        let clears = !always && !wanted.iter().any(|(_, i)| i.normalised().contains('\n'));
        Ok(Some(Self { format, wanted, needles, always, emails, clears }))
    }

    /// Of `lines` (whole lines, each ending in `\n`, starting `at` bytes
    /// into the input), the length of the leading lines of which `find`
    /// says `No` because `might_hold` is false: no line among them holds
    /// an identity's bytes (in any ASCII case for e-mail), a byte that is
    /// not ASCII where e-mail addresses are sought, or, in JSON, a
    /// backslash. They can be copied unseen. `ahead` remembers, for one
    /// pass over one input, where the next of each was found, so every
    /// byte is searched once for each, however often the pass asks.
    pub(super) fn clear_lines(&self, lines: &[u8], at: u64, ahead: &mut Ahead) -> usize {
        let Some(needles) = self.needles.as_ref().filter(|_| self.clears) else { return 0 };
        let end = at + lines.len() as u64;
        let mut stop = end;
        let kinds: [(bool, &Search<'_>); 3] = [
            (true, &|b: &[u8]| needles.find(b).map(|m| m.start())),
            (self.format == FileFormat::JsonLines, &|b: &[u8]| memchr::memchr(b'\\', b)),
            (self.emails, &first_non_ascii),
        ];
        for ((wanted, search), seen) in kinds.into_iter().zip(ahead.0.iter_mut()) {
            if !wanted {
                continue;
            }
            let next = match seen.next {
                // Found ahead, and not passed yet.
                Some(n) if n >= at => Some(n),
                // None up to where the last search ended.
                None if seen.known_to >= end => None,
                _ => {
                    let from = if seen.next.is_none() { seen.known_to.max(at) } else { at };
                    let found = search(&lines[(from - at) as usize..]).map(|i| from + i as u64);
                    *seen = Seen { next: found, known_to: end };
                    found
                }
            };
            if let Some(n) = next {
                stop = stop.min(n);
            }
        }
        if stop >= end {
            return lines.len();
        }
        // The line `stop` lies in is not clear; every line before it is.
        memchr::memrchr(b'\n', &lines[..(stop - at) as usize]).map_or(0, |i| i + 1)
    }

    /// Whether `record` holds the subject.
    pub(super) fn find(&self, record: &[u8]) -> Found {
        if !self.might_hold(record) {
            return Found::No;
        }
        match self.format {
            FileFormat::Text => self.find_in_text(record),
            FileFormat::JsonLines => self.find_in_json(record),
        }
    }

    /// A cheap test that is false only when no identity can match: the
    /// record lacks every identity's bytes, in any ASCII case for e-mail.
    fn might_hold(&self, record: &[u8]) -> bool {
        let Some(needles) = &self.needles else { return true };
        self.always
            // Lowercasing other scripts can yield ASCII; JSON escapes hide bytes.
            || (self.emails && !record.is_ascii())
            || (self.format == FileFormat::JsonLines && memchr::memchr(b'\\', record).is_some())
            || needles.is_match(record)
    }

    fn occurs(&self, text: &str) -> bool {
        self.wanted.iter().any(|(_, i)| i.occurs_in(text))
    }

    fn find_in_text(&self, record: &[u8]) -> Found {
        if let Ok(text) = std::str::from_utf8(record) {
            return if self.occurs(text) { Found::Yes } else { Found::No };
        }
        // Bytes that are not UTF-8 could be a letter of another encoding
        // (making a match part of a longer word) or not: try both readings.
        let (boundary, letter) = two_readings(record);
        match (self.occurs(&boundary), self.occurs(&letter)) {
            (true, true) => Found::Yes,
            (false, false) => Found::No,
            _ => Found::Unsure(UnreadableReason::UnreadableRecord),
        }
    }

    fn find_in_json(&self, record: &[u8]) -> Found {
        let body = trim_line_end(record);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Found::No;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                let object = Value::Object(map);
                let hit = self.wanted.iter().any(|(field, identity)| {
                    field_values(&object, field).any(|v| match v {
                        Value::String(s) => identity.equals(s),
                        Value::Number(n) => identity.equals(&n.to_string()),
                        _ => false,
                    })
                });
                if hit { Found::Yes } else { Found::No }
            }
            // Not an object: where its fields are cannot be told. Only one
            // that mentions the subject at all is in doubt.
            _ => {
                let (boundary, letter) = two_readings(body);
                if self.occurs(&boundary) || self.occurs(&letter) {
                    Found::Unsure(UnreadableReason::UnreadableRecord)
                } else {
                    Found::No
                }
            }
        }
    }
}

/// Whether a value could be how a JSON number other than an integer
/// literal is written back (`42.0`, `1e20`, `-3`): then the raw line need
/// not contain it, and the cheap test cannot be used.
fn spelled_as_number(value: &str) -> bool {
    value.parse::<f64>().is_ok() && !value.bytes().all(|b| b.is_ascii_digit())
}

/// The text of bytes that are not all UTF-8, read twice: invalid bytes as
/// a separator, and as a letter.
fn two_readings(bytes: &[u8]) -> (String, String) {
    let boundary = String::from_utf8_lossy(bytes).into_owned();
    let letter = boundary.replace('\u{FFFD}', "x");
    (boundary, letter)
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The values of a field: `a.b` as a key of its own, or as a path through
/// nested objects; the elements of an array.
fn field_values<'a>(object: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    let found = object.as_object().and_then(|o| o.get(field)).or_else(|| {
        let mut cur = object;
        for part in field.split('.') {
            cur = cur.as_object()?.get(part)?;
        }
        Some(cur)
    });
    let items: Vec<&Value> = match found {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    items.into_iter()
}

/// How a record stands against the cutoff by its own time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Age {
    /// Past the cutoff.
    Due,
    /// Not yet.
    NotDue,
    /// Its time cannot be read; kept and counted.
    Unreadable(UnreadableReason),
    /// Nothing but white space: kept, and no record.
    Blank,
}

/// Reads each record's own time and judges it against a cutoff.
#[derive(Debug)]
pub(super) struct LineClock {
    /// The JSON field, or `None` for a time that starts a Text record.
    field: Option<String>,
    format: TimeFormat,
    bounds: Bounds,
}

impl LineClock {
    /// A clock reading `field` of JSON lines, or (`None`) the time a Text
    /// record starts with, judged against `bounds`.
    pub(super) fn new(field: Option<&FieldName>, format: TimeFormat, bounds: Bounds) -> Self {
        Self { field: field.map(|f| f.as_str().to_owned()), format, bounds }
    }

    /// How the record stands.
    pub(super) fn age(&self, record: &[u8]) -> Age {
        if record.iter().all(u8::is_ascii_whitespace) {
            return Age::Blank;
        }
        let time = match &self.field {
            Some(field) => self.field_time(record, field),
            None => LineStamp::read(record),
        };
        match time.map(|t| self.bounds.judge(&t)) {
            Ok(Judgement::Due) => Age::Due,
            Ok(Judgement::NotDue) => Age::NotDue,
            Ok(Judgement::Unreadable(reason)) | Err(reason) => Age::Unreadable(reason),
        }
    }

    fn field_time(&self, record: &[u8], field: &str) -> Result<RecordTime, UnreadableReason> {
        let object = match serde_json::from_slice::<Value>(trim_line_end(record)) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(UnreadableReason::UnreadableRecord),
        };
        let mut values = field_values(&object, field);
        match (values.next(), values.next()) {
            (Some(Value::String(s)), None) => read_text(s, self.format),
            (Some(Value::Number(n)), None) => read_number(&n.to_string(), self.format),
            _ => Err(UnreadableReason::NotATime),
        }
    }
}

/// The time a Text record starts with, in ISO 8601 or RFC 3339 form.
pub(super) struct LineStamp;

fn stamp_shape() -> &'static Regex {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    SHAPE.get_or_init(|| {
        Regex::new(concat!(
            r"^\[?(?<date>[0-9]{4}-[0-9]{2}-[0-9]{2})",
            r"(?:[Tt ](?<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?)",
            r"(?<offset>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?| [+-][0-9]{2}:?[0-9]{2}| UTC| GMT)?)?",
        ))
        .expect("a valid pattern")
    })
}

impl LineStamp {
    /// Whether a line starts with a time of this form (a date at least).
    pub(super) fn starts_with_one(line: &[u8]) -> bool {
        matches!(line.first(), Some(b'0'..=b'9' | b'['))
            && Self::prefix(line).is_some_and(|p| stamp_shape().is_match(p))
    }

    /// The first bytes of a line, as text, enough for any stamp.
    fn prefix(line: &[u8]) -> Option<&str> {
        let end = line.len().min(48);
        // Cut at a character boundary: the stamp itself is ASCII.
        (0..=end).rev().find_map(|n| std::str::from_utf8(&line[..n]).ok())
    }

    /// The time a record starts with. A date followed by what could be
    /// more of a time (a digit, a colon, a fraction) is not read at all,
    /// rather than read as less precise than it is; so is a zone-less time
    /// followed by a numeric offset it does not join.
    pub(super) fn read(record: &[u8]) -> Result<RecordTime, UnreadableReason> {
        let text = Self::prefix(record).ok_or(UnreadableReason::NotATime)?;
        let m = stamp_shape().captures(text).ok_or(UnreadableReason::NotATime)?;
        let rest = &text[m.get(0).map_or(0, |w| w.end())..];
        let mut after = rest.chars();
        let next = after.next();
        let continues = match next {
            Some(c) if c.is_ascii_digit() || c == ':' => true,
            Some('.' | ',') => after.next().is_some_and(|c| c.is_ascii_digit()),
            Some('T' | 't') => m.name("time").is_none(),
            Some(' ') => {
                m.name("offset").is_none()
                    && m.name("time").is_some()
                    && rest[1..].starts_with(['+', '-'])
                    && rest[2..].starts_with(|c: char| c.is_ascii_digit())
            }
            _ => false,
        };
        if continues {
            return Err(UnreadableReason::NotATime);
        }
        let mut stamp = m["date"].to_owned();
        if let Some(time) = m.name("time") {
            stamp.push('T');
            stamp.push_str(time.as_str());
        }
        if let Some(offset) = m.name("offset") {
            match offset.as_str().trim_start() {
                "UTC" | "GMT" => stamp.push('Z'),
                o => stamp.push_str(o),
            }
        }
        read_text(&stamp, TimeFormat::Native)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use jiff::civil::date;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn reads_the_time_a_text_record_starts_with() {
        let read = |s: &str| LineStamp::read(s.as_bytes());
        assert_eq!(read("2024-01-01T10:00:00Z INFO x"), Ok(RecordTime::Instant(ts("2024-01-01T10:00:00Z"))));
        assert_eq!(
            read("[2024-01-01 10:00:00,123] x"),
            Ok(RecordTime::Civil(date(2024, 1, 1).at(10, 0, 0, 123_000_000)))
        );
        assert_eq!(read("2024-01-01 10:00:00 -0500 x"), Ok(RecordTime::Instant(ts("2024-01-01T15:00:00Z"))));
        assert_eq!(read("2024-01-01 10:00:00.5 UTC [12] LOG"), Ok(RecordTime::Instant(ts("2024-01-01T10:00:00.5Z"))));
        assert_eq!(read("2024-01-01 ERROR"), Ok(RecordTime::Day(date(2024, 1, 1))));
        for bad in [
            "2024-02-30 10:00:00 x",
            "2024-01-01 10:00:00.1234567890 x",
            "2024-01-01 10:00:00 +01 x",
            "2024-01-0112 x",
            "2024-01-01Tfoo",
            "\tat x",
            "INFO 2024-01-01",
        ] {
            assert_eq!(read(bad), Err(UnreadableReason::NotATime), "{bad}");
        }
        assert!(LineStamp::starts_with_one(b"2024-02-30 x"), "an impossible date still starts a record");
        assert!(!LineStamp::starts_with_one(b"java.lang.X: y"));
    }

    fn matcher(kind: &str, value: &str, format: FileFormat, field: &str) -> Result<Option<SubjectMatcher>, StoreError> {
        let fields: Vec<crate::api::policy::SubjectField> =
            serde_json::from_value(serde_json::json!([{ "identity": kind, "field": field }])).unwrap();
        SubjectMatcher::new(&fields, format, &Subject::new([(kind.parse().unwrap(), value.to_owned())]))
    }

    #[test]
    fn the_cheap_test_never_hides_a_match() {
        let m = matcher("email", "jan@example.com", FileFormat::JsonLines, "to").unwrap().unwrap();
        assert_eq!(m.find(br#"{"to":"JAN@example.COM"}"#), Found::Yes);
        assert_eq!(m.find(br#"{"to":"jan\u0040example.com"}"#), Found::Yes, "escaped in JSON");
        assert_eq!(m.find(br#"{"to":"mary.jan@example.com"}"#), Found::No);
        assert_eq!(m.find(br#"{"to": broken jan@example.com"#), Found::Unsure(UnreadableReason::UnreadableRecord));
        assert_eq!(m.find(br#"{"to": broken piet@example.com"#), Found::No);
        let t = matcher("email", "jan@example.com", FileFormat::Text, "x").unwrap().unwrap();
        assert_eq!(t.find(b"from jan@example.com\n"), Found::Yes);
        assert_eq!(t.find(b"from \xe9jan@example.com\n"), Found::Unsure(UnreadableReason::UnreadableRecord));
        assert_eq!(t.find(b"from jan@example.com \xe9\n"), Found::Yes);
        let n = matcher("customerId", "1e3", FileFormat::JsonLines, "id").unwrap().unwrap();
        assert_eq!(n.find(br#"{"id":1000.0}"#), Found::No);
        assert_eq!(n.find(br#"{"id":"1e3"}"#), Found::Yes);
        let p = matcher("phone", "+31 6 1234 5678", FileFormat::Text, "x").unwrap().unwrap();
        assert_eq!(p.find(b"call 0031612345678 ok"), Found::Yes);
    }

    /// Lines of a JSON log, some of them the subject's in every spelling
    /// the matcher must see through or be unsure of.
    fn log_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let to = prop_oneof![
            Just("kim@example.com".to_owned()),
            Just("KIM@Example.COM".to_owned()),
            Just(r"kim\u0040example.com".to_owned()),
            Just("mary.kim@example.com".to_owned()),
            Just("piet@example.com".to_owned()),
            Just("jos\u{e9}@example.com".to_owned()),
            // The Kelvin sign, which lowercases to an ASCII k.
            Just("\u{212a}im@example.com".to_owned()),
            "[a-z]{1,12}@example\\.(com|nl)",
        ];
        let extra = prop_oneof![
            Just(String::new()),
            Just(r#","path":"C:\\logs""#.to_owned()),
            Just(r#","msg":"na\u{ef}ve""#.to_owned()),
            Just(r#","note":"from kim@example.com""#.to_owned()),
            "[ -~]{0,40}".prop_map(|t| format!(r#","t":{:?}"#, t)),
        ];
        prop_oneof![
            8 => (to, extra).prop_map(|(to, extra)| format!(r#"{{"to":"{to}"{extra}}}"#)),
            1 => Just(r#"{"to": broken kim@example.com"#.to_owned()),
            1 => "[ -~]{0,300}",
        ]
    }

    proptest::proptest! {
        /// Copying unseen the lines `clear_lines` vouches for changes
        /// nothing: the same bytes come out, the same records are judged,
        /// dropped and counted unsure, through buffers of every size.
        #[test]
        fn lines_copied_unseen_are_those_the_matcher_keeps_and_does_not_count(
            lines in proptest::collection::vec(log_line(), 0..60),
            ends in proptest::bool::ANY,
            capacity in 16usize..2048,
        ) {
            use super::super::records::{Framing, Verdict, filter};
            let m = matcher("email", "kim@example.com", FileFormat::JsonLines, "to").unwrap().unwrap();
            let mut text = lines.join("\n");
            if ends && !text.is_empty() {
                text.push('\n');
            }
            let run = |clear: bool| {
                let (mut unsure, mut yes) = (0u64, 0u64);
                let mut out = Vec::new();
                let mut ahead = Ahead::default();
                let mut vouch = |lines: &[u8], at: u64| m.clear_lines(lines, at, &mut ahead);
                let mut input = std::io::BufReader::with_capacity(capacity, text.as_bytes());
                let pass = filter(&mut input, Framing::Lines, &mut out, clear.then_some(&mut vouch as _), &mut |r: &[u8]| {
                    match m.find(r) {
                        Found::Yes => {
                            yes += 1;
                            Verdict::Drop
                        }
                        Found::Unsure(_) => {
                            unsure += 1;
                            Verdict::Keep
                        }
                        Found::No => Verdict::Keep,
                    }
                })
                .unwrap();
                (out, pass, yes, unsure)
            };
            proptest::prop_assert_eq!(run(true), run(false));
        }

        /// What `clear_lines` vouches for ends at a line's end, and `find`
        /// says `No` of every line in it.
        #[test]
        fn clear_lines_vouch_only_for_whole_lines_without_the_subject(
            lines in proptest::collection::vec(log_line(), 0..60),
        ) {
            let m = matcher("email", "kim@example.com", FileFormat::JsonLines, "to").unwrap().unwrap();
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let n = m.clear_lines(text.as_bytes(), 0, &mut Ahead::default());
            proptest::prop_assert!(n == 0 || text.as_bytes()[n - 1] == b'\n');
            for line in text[..n].lines() {
                proptest::prop_assert_eq!(m.find(line.as_bytes()), Found::No, "{}", line);
            }
            if n < text.len() {
                let next = text[n..].lines().next().unwrap();
                proptest::prop_assert!(m.might_hold(next.as_bytes()), "stopped at a line the cheap test rejects: {}", next);
            }
        }
    }

    #[test]
    fn too_short_for_free_text_is_refused_naming_the_kind() {
        let err = matcher("customerId", "42", FileFormat::Text, "x").unwrap_err().to_string();
        assert!(err.contains("customerId") && !err.contains("42"), "{err}");
        assert!(matcher("customerId", "42", FileFormat::JsonLines, "id").unwrap().is_some(), "a field is exact");
    }
}
