//! How a data subject's identity is matched (principle 11), shared by every
//! store that compares identities with what it holds.
//!
//! - An e-mail address matches as a whole address and without regard to
//!   case: `jan@example.com` finds `Jan@Example.COM`, never
//!   `mary.jan@example.com` or `bo+jan@example.com`.
//! - A phone number matches in its normalised form: `+31 6 1234-5678`,
//!   `+31612345678` and `0031612345678` are one number.
//! - An IP address matches as an address: `2001:db8::1` and
//!   `2001:0db8:0:0:0:0:0:1` are one; `10.0.0.1` is not inside `10.0.0.12`.
//! - Any other identity (a customer id, an IMEI) matches exactly, and in
//!   free text only as a whole token.
//!
//! A value too short or too malformed to be an identity of its kind is
//! refused with an error that says why: matching too much is wrong
//! deletion. Errors name the kind, never the value.

use std::net::IpAddr;

use crate::api::IdentityName;

/// The fewest characters an identity of a kind without a shape of its own
/// (a customer id, an IMEI) must have to be looked for in free text: below
/// it, a value like `42` matches numbers in every line.
pub const MIN_FREE_TEXT: usize = 6;
/// The fewest characters any identity must have: a single character is a
/// typo or a placeholder, and would match every record that holds it.
pub const MIN_IDENTITY: usize = 2;
/// The fewest digits a phone number must have.
pub const MIN_PHONE_DIGITS: usize = 7;

/// What kind of matching an identity gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An e-mail address (identity `email`, or a name ending in `Email`).
    Email,
    /// A phone number (`phone`, or a name ending in `Phone`).
    Phone,
    /// An IP address (`ipAddress`, or a name ending in `Ip`/`IpAddress`).
    Ip,
    /// Anything else: exact.
    Exact,
}

impl Kind {
    /// The kind of an identity name.
    pub fn of(name: &IdentityName) -> Self {
        let n = name.as_str();
        if n == "email" || n.ends_with("Email") {
            Self::Email
        } else if n == "phone" || n.ends_with("Phone") || n == "msisdn" {
            Self::Phone
        } else if n == "ipAddress" || n == "ip" || n.ends_with("IpAddress") || n.ends_with("Ip") {
            Self::Ip
        } else {
            Self::Exact
        }
    }
}

/// Why a value cannot be looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Empty, or only spaces.
    #[error("the {0} identity is empty")]
    Empty(String),
    /// Not an e-mail address.
    #[error("the {0} identity is not an e-mail address (one @ between a non-empty name and a domain with a dot)")]
    NotAnEmail(String),
    /// Too few digits for a phone number.
    #[error(
        "the {0} identity is not a phone number (digits with spaces, dashes, dots or brackets, at least {MIN_PHONE_DIGITS} digits)"
    )]
    NotAPhone(String),
    /// Not an IP address.
    #[error("the {0} identity is not an IPv4 or IPv6 address")]
    NotAnIp(String),
    /// Too short to look for in free text.
    #[error(
        "the {0} identity is shorter than {MIN_FREE_TEXT} characters: in free text it would match unrelated words and numbers. Match it in a field (JSON lines) or a column instead"
    )]
    TooShortForText(String),
    /// Spans lines.
    #[error("the {0} identity spans lines")]
    SpansLines(String),
    /// Too short to be anyone's.
    #[error("the {0} identity is shorter than {MIN_IDENTITY} characters, too short to name one person")]
    TooShort(String),
}

/// An identity ready to be matched: its kind and normalised value.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    kind: Kind,
    /// Lowercased e-mail, `+` and digits of a phone, canonical IP, or the
    /// value as given.
    value: String,
    /// A phone number's digits without the `+` or `00` prefix.
    digits: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity {{ kind: {:?}, {} characters }}", self.kind, self.value.chars().count())
    }
}

impl Identity {
    /// Checks and normalises `value` as an identity named `name`.
    pub fn new(name: &IdentityName, value: &str) -> Result<Self, IdentityError> {
        let label = || name.as_str().to_owned();
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(IdentityError::Empty(label()));
        }
        if trimmed.contains(['\n', '\r']) {
            return Err(IdentityError::SpansLines(label()));
        }
        let kind = Kind::of(name);
        match kind {
            Kind::Email => {
                let lower = trimmed.to_lowercase();
                let (local, domain) = lower.split_once('@').ok_or_else(|| IdentityError::NotAnEmail(label()))?;
                let shaped = !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !lower.chars().any(char::is_whitespace);
                if !shaped {
                    return Err(IdentityError::NotAnEmail(label()));
                }
                Ok(Self { kind, value: lower, digits: String::new() })
            }
            Kind::Phone => {
                let digits = phone_digits(trimmed).ok_or_else(|| IdentityError::NotAPhone(label()))?;
                if digits.1.len() < MIN_PHONE_DIGITS {
                    return Err(IdentityError::NotAPhone(label()));
                }
                let value = if digits.0 { format!("+{}", digits.1) } else { digits.1.clone() };
                Ok(Self { kind, value, digits: digits.1 })
            }
            Kind::Ip => {
                let ip: IpAddr = trimmed.parse().map_err(|_| IdentityError::NotAnIp(label()))?;
                Ok(Self { kind, value: ip.to_string(), digits: String::new() })
            }
            Kind::Exact if trimmed.chars().count() < MIN_IDENTITY => Err(IdentityError::TooShort(label())),
            Kind::Exact => Ok(Self { kind, value: value.to_owned(), digits: String::new() }),
        }
    }

    /// The kind of matching.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The normalised value: what a store compares with, after it has
    /// normalised its own value the same way.
    pub fn normalised(&self) -> &str {
        &self.value
    }

    /// The spellings a store that compares exactly (a SQL column, a
    /// keyword field) must look for: an e-mail in lower case (the store
    /// lowercases its side), a phone as `+digits` and `00digits`.
    pub fn spellings(&self) -> Vec<String> {
        match self.kind {
            Kind::Phone if self.value.starts_with('+') => vec![self.value.clone(), format!("00{}", self.digits)],
            _ => vec![self.value.clone()],
        }
    }

    /// Whether the identity can be looked for in free text (a text log
    /// line): identities without a shape of their own need a minimum length.
    pub fn check_free_text(&self, name: &IdentityName) -> Result<(), IdentityError> {
        if self.kind == Kind::Exact && self.value.chars().count() < MIN_FREE_TEXT {
            return Err(IdentityError::TooShortForText(name.as_str().to_owned()));
        }
        if self.kind == Kind::Exact && !self.value.chars().any(char::is_alphanumeric) {
            return Err(IdentityError::TooShortForText(name.as_str().to_owned()));
        }
        Ok(())
    }

    /// Whether a whole value (a column, a JSON field) is this identity.
    pub fn equals(&self, value: &str) -> bool {
        match self.kind {
            Kind::Email => value.trim().to_lowercase() == self.value,
            Kind::Phone => phone_digits(value.trim()).is_some_and(|(plus, d)| self.same_phone(plus, &d)),
            Kind::Ip => value.trim().parse::<IpAddr>().is_ok_and(|ip| ip.to_string() == self.value),
            Kind::Exact => value == self.value,
        }
    }

    fn same_phone(&self, plus: bool, digits: &str) -> bool {
        let mine_plus = self.value.starts_with('+');
        match (mine_plus, plus) {
            (true, true) | (false, false) => digits == self.digits,
            // Without a country code on one side, the numbers cannot be
            // told apart from others; only equal digit strings match.
            _ => false,
        }
    }

    /// Whether the identity occurs in free text, as a whole.
    pub fn occurs_in(&self, text: &str) -> bool {
        match self.kind {
            Kind::Email => find_email(text, &self.value),
            Kind::Phone => phone_tokens(text).any(|(plus, d)| self.same_phone(plus, &d)),
            Kind::Ip => ip_tokens(text).any(|ip| ip.to_string() == self.value),
            Kind::Exact => find_token(text, &self.value),
        }
    }
}

/// A phone number's digits, and whether it had an international prefix
/// (`+` or `00`); `None` when the text holds anything but digits and the
/// usual separators.
fn phone_digits(text: &str) -> Option<(bool, String)> {
    let mut chars = text.chars().peekable();
    let mut plus = false;
    if chars.peek() == Some(&'+') {
        plus = true;
        chars.next();
    }
    let mut digits = String::new();
    for c in chars {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}' => {}
            _ => return None,
        }
    }
    if !plus && digits.starts_with("00") && digits.len() > 2 {
        plus = true;
        digits.drain(..2);
    }
    (!digits.is_empty()).then_some((plus, digits))
}

/// Characters an e-mail address's local part can end with or a domain can
/// contain: a neighbour of one of these makes the match part of a longer
/// address.
fn is_address_char(c: char) -> bool {
    c.is_alphanumeric() || "._%+-'=~!#$&*/?^`{|}".contains(c)
}

fn find_email(text: &str, address: &str) -> bool {
    let lower = text.to_lowercase();
    // Lowercasing can change lengths outside ASCII; search the lowered text
    // and judge neighbours there.
    let mut from = 0;
    while let Some(pos) = lower[from..].find(address).map(|p| p + from) {
        let before = lower[..pos].chars().next_back();
        let rest = &lower[pos + address.len()..];
        let mut after = rest.chars();
        let next = after.next();
        // A domain may be followed by a full stop that ends a sentence.
        let continues = match next {
            Some('.') => after.next().is_some_and(|c| c.is_alphanumeric() || c == '-'),
            Some(c) => c.is_alphanumeric() || c == '-' || c == '_',
            None => false,
        };
        if !before.is_some_and(is_address_char) && !continues {
            return true;
        }
        from = pos + address.len().max(1);
        while !lower.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

/// Runs of digits with phone separators between them, each with whether it
/// starts with `+`. A run stops at anything else, so a number inside a
/// longer number is not a run of its own.
fn phone_tokens(text: &str) -> impl Iterator<Item = (bool, String)> + '_ {
    const SEPARATORS: &str = " -.()/\u{a0}";
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // A number starts at a digit, a '+' before one, or '(' before either.
        let mut start = i;
        if chars[start] == '(' {
            start += 1;
        }
        let starts = chars.get(start).is_some_and(|c| {
            c.is_ascii_digit() || (*c == '+' && chars.get(start + 1).is_some_and(char::is_ascii_digit))
        });
        let glued = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if !starts || glued {
            i += 1;
            continue;
        }
        let mut j = start + 1;
        while j < chars.len() {
            if chars[j].is_ascii_digit() {
                j += 1;
                continue;
            }
            // Separators count only between digits.
            let mut k = j;
            while k < chars.len() && SEPARATORS.contains(chars[k]) {
                k += 1;
            }
            if k > j && chars.get(k).is_some_and(char::is_ascii_digit) {
                j = k;
            } else {
                break;
            }
        }
        let glued_after = chars.get(j).is_some_and(|c| c.is_alphanumeric() || *c == '_');
        if !glued_after {
            let token: String = chars[start..j].iter().filter(|c| **c != '(' && **c != ')').collect();
            if let Some(p) = phone_digits(&token) {
                out.push(p);
            }
        }
        i = j.max(i + 1);
    }
    out.into_iter()
}

/// IP addresses standing as tokens in text, with or without a port.
fn ip_tokens(text: &str) -> impl Iterator<Item = IpAddr> + '_ {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .map(|t| t.trim_end_matches('.').trim_end_matches(':'))
        .filter_map(|t| {
            t.parse::<IpAddr>().ok().or_else(|| {
                // An IPv4 address followed by :port.
                let (host, port) = t.rsplit_once(':')?;
                (host.contains('.') && port.chars().all(|c| c.is_ascii_digit())).then(|| host.parse().ok()).flatten()
            })
        })
}

/// Whether `token` occurs with no letter, digit or `_` right before or
/// after it.
fn find_token(text: &str, token: &str) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(pos) = text[from..].find(token).map(|p| p + from) {
        if !is_word(text[..pos].chars().next_back()) && !is_word(text[pos + token.len()..].chars().next()) {
            return true;
        }
        from = pos + token.len().max(1);
        while !text.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(name: &str, value: &str) -> Identity {
        Identity::new(&name.parse().unwrap(), value).unwrap()
    }

    #[test]
    fn an_email_matches_as_a_whole_address_in_any_case() {
        let jan = id("email", "jan@example.com");
        assert!(jan.occurs_in("login by jan@example.com from 10.0.0.1"));
        assert!(jan.occurs_in("login by Jan@Example.COM"));
        assert!(jan.occurs_in("<jan@example.com>"));
        assert!(jan.occurs_in("mail jan@example.com."));
        assert!(jan.occurs_in("\"to\":\"jan@example.com\""));
        assert!(!jan.occurs_in("login by mary.jan@example.com"));
        assert!(!jan.occurs_in("login by bo+jan@example.com"));
        assert!(!jan.occurs_in("login by jan@example.community"));
        assert!(!jan.occurs_in("login by jan@example.com.au"));
        assert!(!jan.occurs_in("login by xjan@example.com"));
        assert!(jan.equals(" JAN@example.com "));
        assert!(!jan.equals("mary.jan@example.com"));
    }

    #[test]
    fn a_phone_number_matches_in_its_normalised_form() {
        let p = id("phone", "+31 6 1234 5678");
        assert_eq!(p.normalised(), "+31612345678");
        for text in
            ["call from +31612345678", "call from +31 6 1234-5678 at 10:00", "0031 6 12345678", "(+31) 6.1234.5678"]
        {
            assert!(p.occurs_in(text), "{text}");
        }
        for text in ["call from +316123456789", "order 31612345678", "+31612345670", "id=+31612345678x"] {
            assert!(!p.occurs_in(text), "{text}");
        }
        assert_eq!(p.spellings(), vec!["+31612345678".to_owned(), "0031612345678".to_owned()]);
        assert!(p.equals("0031-6-12345678"));
        assert!(Identity::new(&"phone".parse().unwrap(), "12345").is_err());
        assert!(Identity::new(&"phone".parse().unwrap(), "call me").is_err());
    }

    #[test]
    fn an_ip_address_matches_as_an_address() {
        let ip = id("ipAddress", "10.0.0.1");
        assert!(ip.occurs_in("GET / from 10.0.0.1:443"));
        assert!(ip.occurs_in("client=10.0.0.1."));
        assert!(!ip.occurs_in("client=10.0.0.12"));
        assert!(!ip.occurs_in("client=110.0.0.1"));
        let v6 = id("ipAddress", "2001:0db8:0:0:0:0:0:1");
        assert!(v6.occurs_in("from 2001:db8::1 at"));
        assert!(Identity::new(&"ipAddress".parse().unwrap(), "10.0.0").is_err());
    }

    #[test]
    fn other_identities_match_exactly_and_as_whole_tokens() {
        let c = id("customerId", "C-00042");
        assert!(c.occurs_in("customer C-00042 closed"));
        assert!(!c.occurs_in("customer C-000421 closed"));
        assert!(!c.occurs_in("customer c-00042 closed"), "exact, case included");
        let short = id("customerId", "42");
        assert!(short.check_free_text(&"customerId".parse().unwrap()).is_err(), "42 is too short for free text");
        assert!(short.equals("42"), "but exact in a column or field");
        let err = short.check_free_text(&"customerId".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("customerId") && !err.contains("42"), "errors name the kind, not the value: {err}");
    }

    #[test]
    fn malformed_values_are_refused() {
        for (kind, value) in [
            ("email", "jan"),
            ("email", "@example.com"),
            ("email", "jan@localhost"),
            ("email", "a@b@c.d"),
            ("email", ""),
            ("email", "jan@exa mple.com"),
        ] {
            assert!(Identity::new(&kind.parse().unwrap(), value).is_err(), "{kind} {value:?}");
        }
        assert!(Identity::new(&"customerId".parse().unwrap(), "a\nb").is_err());
    }

    proptest! {
        /// An address embedded in a longer address never matches; standing
        /// alone between separators it always does.
        #[test]
        fn emails_match_only_whole(local in "[a-z0-9]{1,8}", domain in "[a-z]{1,8}\\.[a-z]{2,3}", pre in "[a-z0-9.+_-]{1,4}", sep in "[ ,;<>\"()\\[\\]]", upper in any::<bool>()) {
            let address = format!("{local}@{domain}");
            let jan = id("email", &address);
            let shown = if upper { address.to_uppercase() } else { address.clone() };
            let alone = format!("x{sep}{shown}{sep}y");
            let inside = format!("{sep}{pre}{address}{sep}");
            let longer = format!("{sep}{address}x{sep}");
            prop_assert!(jan.occurs_in(&alone));
            prop_assert!(!jan.occurs_in(&inside), "{}", inside);
            prop_assert!(!jan.occurs_in(&longer));
        }

        /// A number never matches inside a longer number.
        #[test]
        fn phones_never_match_inside_longer_numbers(digits in "[1-9][0-9]{8,11}", extra in "[0-9]{1,3}") {
            let p = id("phone", &format!("+{digits}"));
            let alone = format!("call +{digits} ended");
            let longer = format!("call +{digits}{extra} ended");
            let prefixed = format!("call +{extra}{digits} ended");
            prop_assert!(p.occurs_in(&alone));
            prop_assert!(!p.occurs_in(&longer));
            prop_assert!(!p.occurs_in(&prefixed));
        }
    }
}

/// `text` with anything shaped like an e-mail address or a phone number
/// replaced by `[redacted]`: what a store's error message may echo (a value
/// it could not parse, a key in a constraint's detail) must not reach
/// status, Events or logs.
pub fn redact(text: &str) -> String {
    use std::sync::OnceLock;
    static PATTERN: OnceLock<regex::Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        regex::Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+|\+?[0-9][0-9 ().\-]{7,}[0-9]")
            .expect("the redaction pattern compiles")
    });
    pattern
        .replace_all(text, |c: &regex::Captures<'_>| {
            let m = &c[0];
            let digits = m.chars().filter(char::is_ascii_digit).count();
            if m.contains('@') || digits >= 9 { "[redacted]".to_owned() } else { m.to_owned() }
        })
        .into_owned()
}

#[cfg(test)]
mod redact_tests {
    use super::*;

    #[test]
    fn addresses_and_phone_numbers_are_redacted_and_counts_are_not() {
        assert_eq!(
            redact("invalid input syntax for type bigint: \"jan.jansen@example.nl\""),
            "invalid input syntax for type bigint: \"[redacted]\""
        );
        assert_eq!(redact("Key (caller)=(+31 6 1234 5678) is referenced"), "Key (caller)=([redacted]) is referenced");
        assert_eq!(redact("0612345678"), "[redacted]");
        assert_eq!(
            redact("deleted 1250 of 40000 rows (SQLSTATE 23503)"),
            "deleted 1250 of 40000 rows (SQLSTATE 23503)"
        );
        // Long numbers could be phone numbers: kept out, on the safe side.
        assert_eq!(redact("value 123456789 out of range"), "value [redacted] out of range");
    }

    #[test]
    fn a_short_exact_identity_is_refused_naming_its_kind() {
        let name: crate::api::IdentityName = "customerId".parse().unwrap();
        assert_eq!(Identity::new(&name, " 7 ").unwrap_err(), IdentityError::TooShort("customerId".into()));
        assert!(Identity::new(&name, "42").is_ok());
    }
}
