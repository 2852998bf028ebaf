//! What the store asks the cluster for: the due range, the mapped types of
//! the fields it uses, and a data subject's documents, matched by identity
//! (principle 11) as exactly as a field's type allows.
//!
//! A keyword field compares whole values byte for byte, and a `term` query
//! with `case_insensitive` folds ASCII letters only. So e-mail addresses,
//! phone numbers and IP addresses in keyword fields are matched with a
//! `regexp` built from the identity: a value matches when, with white space
//! around it trimmed, it is the identity in the sense of
//! [`Identity::equals`]: an e-mail in any letter case (Unicode included), a
//! phone number with or without separators and as `+` or `00`, an IP address
//! in its canonical text in any letter case. The limits, kept on the side of
//! matching less: letters whose lower case depends on their neighbours
//! (Greek final sigma) or is two characters (`İ`) match only as written in
//! the request; an IPv6 address written in a keyword field other than in its
//! canonical form (RFC 5952) is not found (map the field as `ip`); values
//! longer than a `.keyword` sub-field's `ignore_above` are not indexed there,
//! so not found. Other identities match with a `term` query, exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::OnceLock;

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{Http, on_pattern};
use crate::api::policy::{LogsTarget, Target};
use crate::stores::identity::{Identity, Kind};
use crate::stores::{StoreError, Subject};

/// Documents whose time is before the cutoff (strictly).
pub(super) fn due_query(field: &str, cutoff_ms: i64) -> Value {
    json!({ "range": { field: { "lt": cutoff_ms, "format": "epoch_millis" } } })
}

/// The mapped type of each field in each index: field -> index -> type.
async fn field_types(
    http: &Http,
    pattern: &str,
    fields: &[&str],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
    let list = fields.join(",");
    let answer = http.call(Method::GET, &[pattern, "_mapping", "field", &list], &on_pattern(), None, pattern).await?;
    let mut types: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (index, mapping) in answer.as_object().into_iter().flatten() {
        for (field, m) in mapping["mappings"].as_object().into_iter().flatten() {
            let leaf = field.rsplit('.').next().unwrap_or(field);
            if let Some(t) = m["mapping"][leaf]["type"].as_str() {
                types.entry(field.clone()).or_default().insert(index.clone(), t.to_owned());
            }
        }
    }
    Ok(types)
}

/// The time field must be a date in every index of the pattern.
pub(super) async fn check_time_field(http: &Http, t: &LogsTarget) -> Result<(), StoreError> {
    let field = t.time_field.as_str();
    let types = field_types(http, t.index_pattern.as_str(), &[field]).await?;
    let Some(per_index) = types.get(field) else {
        return Err(StoreError::MissingColumn {
            object: format!("indices {}", t.index_pattern),
            column: field.to_owned(),
            role: "time field",
            hint: String::new(),
        });
    };
    if let Some((index, found)) = per_index.iter().find(|(_, ty)| !matches!(ty.as_str(), "date" | "date_nanos")) {
        return Err(StoreError::WrongColumnType {
            object: format!("index {index}"),
            column: field.to_owned(),
            role: "time field",
            found: found.clone(),
            expected: "a date or date_nanos field",
        });
    }
    Ok(())
}

/// How a field's values are compared, the same in every index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Keyword,
    Ip,
    Integer,
}

/// The subject's identities for each declared field, checked: a malformed
/// one stops the erasure with an error naming its kind, never its value.
pub(super) fn identities<'a>(target: &'a Target, subject: &Subject) -> Result<Wanted<'a>, StoreError> {
    let mut wanted = Vec::new();
    for f in &target.subject_fields {
        let Some(field) = f.field.as_ref() else { continue };
        let found =
            subject.values(&f.identity).map(|v| Identity::new(&f.identity, v)).collect::<Result<Vec<_>, _>>()?;
        if !found.is_empty() {
            wanted.push((field.as_str(), found));
        }
    }
    Ok(wanted)
}

/// Fields and the identities to look for in each.
pub(super) type Wanted<'a> = Vec<(&'a str, Vec<Identity>)>;

/// The query of a subject's documents: one clause per declared field and
/// identity; `None` when nothing can match.
pub(super) async fn subject_query(
    http: &Http,
    t: &LogsTarget,
    wanted: Wanted<'_>,
) -> Result<Option<Value>, StoreError> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut names: Vec<String> = Vec::new();
    for (f, _) in &wanted {
        names.push((*f).to_owned());
        names.push(format!("{f}.keyword"));
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let types = field_types(http, t.index_pattern.as_str(), &name_refs).await?;
    let mut should = Vec::new();
    for (field, identities) in wanted {
        let Some(per_index) = types.get(field) else { continue }; // mapped nowhere: nothing to find
        let kinds: BTreeSet<&str> = per_index.values().map(String::as_str).collect();
        let keyword_sub = format!("{field}.keyword");
        let (name, compare) = if kinds.iter().all(|k| matches!(*k, "keyword" | "constant_keyword" | "wildcard")) {
            (field.to_owned(), Compare::Keyword)
        } else if kinds.iter().all(|k| *k == "text")
            && types.get(&keyword_sub).is_some_and(|m| m.len() == per_index.len())
        {
            (keyword_sub, Compare::Keyword)
        } else if kinds.iter().all(|k| *k == "ip") {
            (field.to_owned(), Compare::Ip)
        } else if kinds.iter().all(|k| matches!(*k, "long" | "integer" | "short" | "byte")) {
            (field.to_owned(), Compare::Integer)
        } else {
            return Err(wrong_type(t, field, kinds.into_iter().collect::<Vec<_>>().join(", ")));
        };
        for identity in &identities {
            match clause(&name, compare, identity) {
                Ok(Some(c)) => should.push(c),
                Ok(None) => {}
                Err(()) => return Err(wrong_type(t, field, format!("{compare:?}").to_lowercase())),
            }
        }
    }
    if should.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!({ "bool": { "should": should, "minimum_should_match": 1 } })))
}

fn wrong_type(t: &LogsTarget, field: &str, found: String) -> StoreError {
    StoreError::WrongColumnType {
        object: format!("indices {}", t.index_pattern),
        column: field.to_owned(),
        role: "subject field",
        found,
        expected: "keyword (or text with a keyword sub-field) for e-mails and phone numbers; keyword or ip for IP addresses; keyword, ip or an integer type for other identities; the same in every index",
    }
}

/// The clause that finds `identity` in field `name`: `Ok(None)` when no
/// value of the field can be it, `Err` when the field cannot hold it.
fn clause(name: &str, compare: Compare, identity: &Identity) -> Result<Option<Value>, ()> {
    let value = identity.normalised();
    match (compare, identity.kind()) {
        (Compare::Keyword, Kind::Exact) => Ok(Some(json!({ "term": { name: value } }))),
        (Compare::Keyword, _) => {
            let pattern = Pattern::of(identity);
            Ok(Some(json!({ "regexp": { name: {
                "value": pattern.lucene(),
                "flags": "NONE",
                "case_insensitive": pattern.folds_ascii(),
            } } })))
        }
        (Compare::Ip, Kind::Ip | Kind::Exact) => {
            Ok(value.parse::<IpAddr>().ok().map(|ip| json!({ "term": { name: ip.to_string() } })))
        }
        (Compare::Integer, Kind::Exact) => {
            Ok(value.parse::<i64>().ok().filter(|n| n.to_string() == value).map(|n| json!({ "term": { name: n } })))
        }
        (Compare::Ip | Compare::Integer, _) => Err(()),
    }
}

/// One step of a pattern over a whole keyword value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// One character of these.
    One(Vec<char>),
    /// One ASCII letter, in either case.
    Letter(char),
    /// Any number of characters of these.
    Any(&'static [char]),
    /// One of these sequences.
    Either(Vec<Vec<Piece>>),
}

/// A whole keyword value that is an identity, as a sequence of [`Piece`]s:
/// rendered for Lucene's `regexp` query, and for Rust's `regex` to test it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern(Vec<Piece>);

/// The separators a phone number may hold between its digits, as
/// [`Identity`] reads them.
const PHONE_SEPARATORS: &[char] = &[' ', '-', '.', '(', ')', '/', '\u{a0}'];

impl Pattern {
    fn of(identity: &Identity) -> Self {
        let space = Piece::Any(white_space());
        let value = identity.normalised();
        let mut pieces = vec![space.clone()];
        match identity.kind() {
            Kind::Phone => {
                let sep = || Piece::Any(PHONE_SEPARATORS);
                let (plus, digits) = match value.strip_prefix('+') {
                    Some(d) => (true, d),
                    None => (false, value),
                };
                if plus {
                    let zero = Piece::One(vec!['0']);
                    pieces
                        .push(Piece::Either(vec![vec![Piece::One(vec!['+'])], vec![sep(), zero.clone(), sep(), zero]]));
                }
                for d in digits.chars() {
                    pieces.extend([sep(), Piece::One(vec![d])]);
                }
                pieces.push(sep());
            }
            _ => pieces.extend(value.chars().map(cased)),
        }
        pieces.push(space);
        Self(pieces)
    }

    /// Whether the Lucene form leaves ASCII letter case to the query's
    /// `case_insensitive` flag.
    fn folds_ascii(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Letter(_)))
    }

    fn lucene(&self) -> String {
        fn char(c: char, out: &mut String) {
            if c.is_ascii() && !c.is_ascii_alphanumeric() {
                out.push('\\'); // a backslash before a letter is a class (\d, \s) in Lucene 9
            }
            out.push(c);
        }
        fn class(cs: &[char], out: &mut String) {
            out.push('[');
            cs.iter().for_each(|c| char(*c, out));
            out.push(']');
        }
        fn pieces(ps: &[Piece], out: &mut String) {
            for p in ps {
                match p {
                    Piece::One(cs) if cs.len() == 1 => char(cs[0], out),
                    Piece::Letter(c) => out.push(*c),
                    Piece::One(cs) => class(cs, out),
                    Piece::Any(cs) => {
                        class(cs, out);
                        out.push('*');
                    }
                    Piece::Either(alts) => {
                        out.push('(');
                        for (i, alt) in alts.iter().enumerate() {
                            if i > 0 {
                                out.push('|');
                            }
                            pieces(alt, out);
                        }
                        out.push(')');
                    }
                }
            }
        }
        let mut out = String::new();
        pieces(&self.0, &mut out);
        out
    }

    #[cfg(test)]
    fn rust(&self) -> String {
        fn class(cs: &[char]) -> String {
            format!("[{}]", cs.iter().map(|c| regex::escape(&c.to_string())).collect::<String>())
        }
        fn pieces(ps: &[Piece]) -> String {
            ps.iter()
                .map(|p| match p {
                    Piece::One(cs) => class(cs),
                    Piece::Letter(c) => class(&[*c, c.to_ascii_uppercase()]),
                    Piece::Any(cs) => format!("{}*", class(cs)),
                    Piece::Either(alts) => {
                        format!("(?:{})", alts.iter().map(|a| pieces(a)).collect::<Vec<_>>().join("|"))
                    }
                })
                .collect()
        }
        format!("^(?:{})$", pieces(&self.0))
    }
}

/// The piece for one character of a lower-case identity: it and every
/// character whose lower case it is.
fn cased(c: char) -> Piece {
    let others = upper_cases().get(&c).map(Vec::as_slice).unwrap_or_default();
    if c.is_ascii_lowercase() && others == [c.to_ascii_uppercase()] {
        Piece::Letter(c)
    } else {
        Piece::One(std::iter::once(c).chain(others.iter().copied()).collect())
    }
}

/// For each character, the other characters whose lower case it is (`K` and
/// the Kelvin sign for `k`). Σ is left out: its lower case depends on its
/// place in a word.
fn upper_cases() -> &'static HashMap<char, Vec<char>> {
    static MAP: OnceLock<HashMap<char, Vec<char>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: HashMap<char, Vec<char>> = HashMap::new();
        for u in (0..=0x10FFFF).filter_map(char::from_u32) {
            let mut lower = u.to_lowercase();
            if let (Some(l), None) = (lower.next(), lower.next())
                && l != u
                && u != 'Σ'
            {
                map.entry(l).or_default().push(u);
            }
        }
        map
    })
}

/// The characters `str::trim` removes.
fn white_space() -> &'static [char] {
    static SET: OnceLock<Vec<char>> = OnceLock::new();
    SET.get_or_init(|| (0..=0x10FFFF).filter_map(char::from_u32).filter(|c| c.is_whitespace()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(kind: &str, value: &str) -> Identity {
        Identity::new(&kind.parse().unwrap(), value).unwrap()
    }

    fn matches(identity: &Identity, stored: &str) -> bool {
        regex::Regex::new(&Pattern::of(identity).rust()).unwrap().is_match(stored)
    }

    #[test]
    fn an_email_pattern_is_the_address_in_any_case_and_nothing_longer() {
        let jan = id("email", "Jan@Example.com");
        for stored in ["jan@example.com", "JAN@EXAMPLE.COM", " Jan@example.com\u{a0}", "jan@exampl\u{212a}.com"] {
            assert_eq!(matches(&jan, stored), jan.equals(stored), "{stored:?}");
        }
        assert!(matches(&jan, "JAN@EXAMPLE.COM"));
        for stored in
            ["mary.jan@example.com", "jan@example.com.au", "jan@example.co", "jan@example.com x", "jan@examplexcom"]
        {
            assert!(!matches(&jan, stored), "{stored:?}");
        }
        let jorg = id("email", "jörg@exämple.com");
        assert!(matches(&jorg, "JÖRG@EXÄMPLE.COM") && matches(&jorg, "Jörg@Exämple.com"));
        let lucene = Pattern::of(&jan).lucene();
        assert!(lucene.contains("jan\\@example\\.com"), "{lucene}");
        assert!(lucene.len() < 200, "well under index.max_regex_length: {}", lucene.len());
    }

    #[test]
    fn a_phone_pattern_is_the_number_with_any_separators_and_either_prefix() {
        let p = id("phone", "+31 6 1234 5678");
        for stored in ["+31612345678", "+31 6 1234-5678", "0031612345678", "00 31 (6) 1234.5678", " +31612345678 "] {
            assert!(matches(&p, stored), "{stored:?}");
        }
        for stored in ["31612345678", "+316123456789", "+0031612345678", "-+31612345678", "+31612345678x", "0612345678"]
        {
            assert!(!matches(&p, stored), "{stored:?}");
        }
        let national = id("phone", "06 1234 5678");
        assert!(matches(&national, "0612345678") && !matches(&national, "+31612345678"));
    }

    #[test]
    fn lucene_escapes_punctuation_but_never_letters() {
        let p =
            Pattern(vec![Piece::One(vec!['a']), Piece::One(vec!['@']), Piece::Any(&['\t', ' ']), Piece::Letter('b')]);
        assert_eq!(p.lucene(), "a\\@[\\\t\\ ]*b");
        assert!(p.folds_ascii());
    }

    #[test]
    fn clauses_follow_the_field_type() {
        let email = id("email", "jan@example.com");
        assert!(clause("f", Compare::Ip, &email).is_err());
        assert!(clause("f", Compare::Integer, &email).is_err());
        let ip = id("ipAddress", "2001:0db8::1");
        assert_eq!(clause("f", Compare::Ip, &ip).unwrap().unwrap(), json!({ "term": { "f": "2001:db8::1" } }));
        let n = id("customerId", "00042");
        assert_eq!(clause("f", Compare::Integer, &n).unwrap(), None, "00042 is no integer's text");
        let n = id("customerId", "42");
        assert_eq!(clause("f", Compare::Integer, &n).unwrap().unwrap(), json!({ "term": { "f": 42 } }));
        assert_eq!(clause("f", Compare::Keyword, &n).unwrap().unwrap(), json!({ "term": { "f": "42" } }));
    }

    proptest! {
        /// The pattern matches a value exactly when the identity equals it.
        #[test]
        fn email_patterns_agree_with_identity_equality(
            local in "[a-zA-Z0-9.+_ÄÖäöΣσ'-]{1,8}", domain in "[a-zA-Zß\u{212a}]{1,6}\\.[a-z]{2,3}",
            stored in "[ \u{a0}]{0,2}[a-zA-Z0-9.+_ÄÖäöΣσς'@-]{1,12}\\.?[a-zA-Z\u{212a}]{0,4}[ \t]{0,2}",
            flip in proptest::collection::vec(any::<bool>(), 20),
        ) {
            let address = format!("{local}@{domain}");
            let jan = id("email", &address);
            let recased: String = address.chars().zip(flip.iter().cycle()).map(|(c, f)| if *f { c.to_uppercase().next().unwrap() } else { c }).collect();
            for candidate in [stored.as_str(), recased.as_str(), &format!(" {recased}\u{a0}"), &format!("x{address}")] {
                // Σ and its neighbours are left to match less, never more.
                let m = matches(&jan, candidate);
                if candidate.contains(['Σ', 'ς']) || address.contains(['Σ', 'ς']) {
                    prop_assert!(!m || jan.equals(candidate), "{candidate:?} matched {address:?}");
                } else {
                    prop_assert_eq!(m, jan.equals(candidate), "{:?} against {:?}", candidate, address);
                }
            }
        }

        #[test]
        fn phone_patterns_agree_with_identity_equality(
            digits in "[1-9][0-9]{6,11}", plus in any::<bool>(),
            stored in "[ ]?(\\+|00|0)?[0-9 ().\\-/]{6,16}[ a]?",
        ) {
            let phone = id("phone", &if plus { format!("+{digits}") } else { format!("0{digits}") });
            prop_assert_eq!(matches(&phone, &stored), phone.equals(&stored), "{:?}", stored);
            let spaced: String = phone.normalised().chars().flat_map(|c| [c, ' ']).collect();
            prop_assert!(matches(&phone, &spaced), "{:?}", spaced);
        }
    }
}
