//! The last line of defence against personal data on a certificate: every
//! string taken from the evidence passes through [`Shown::checked`], which
//! refuses text that looks like an e-mail address or a phone number. The
//! evidence should never hold one (it names subjects only by keyed
//! digests), so a hit means a record field carries what it must not, and
//! the certificate is refused rather than handed to an auditor.
//!
//! Digests and key ids have fixed shapes and are checked by shape instead:
//! their hex digits would otherwise pass for phone numbers.

use std::sync::LazyLock;

use regex::Regex;

use super::CertificateError;

/// Text from the evidence that may be put on a certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shown(String);

impl Shown {
    /// `value` of the record field `field`, refused when it looks like an
    /// e-mail address or a phone number. The error names the field, never
    /// the value.
    pub fn checked(field: &str, value: &str) -> Result<Self, CertificateError> {
        if let Some(looks_like) = personal(value) {
            return Err(CertificateError::PersonalData { field: field.to_owned(), looks_like });
        }
        Ok(Self(value.to_owned()))
    }

    /// A digest (`sha256:<64 hex>`, `hmac-sha256:<8 hex>:<64 hex>`) or a
    /// signing key id (`ed25519:<16 hex>`); anything else is checked as
    /// text.
    pub fn digest(field: &str, value: &str) -> Result<Self, CertificateError> {
        if DIGEST.is_match(value) { Ok(Self(value.to_owned())) } else { Self::checked(field, value) }
    }

    /// A number, written by the certificate itself.
    pub fn number(n: impl Into<i128>) -> Self {
        Self(n.into().to_string())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

static DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(sha256:[0-9a-f]{64}|hmac-sha256:[0-9a-f]{8}:[0-9a-f]{64}|ed25519:[0-9a-f]{16})$").expect("valid")
});

/// Something@domain.tld anywhere in the text.
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)[^\s@<>()\[\]]+@[^\s@<>()\[\]]+\.[a-z]{2,}").expect("valid"));

/// Runs of digits and the characters people write phone numbers with.
static NUMBER_RUN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[+(]?[0-9][0-9 ()./-]*[0-9]").expect("valid"));

/// The fewest digits of a run that counts as a phone number.
const PHONE_DIGITS: usize = 8;

/// What `value` looks like, when it looks personal.
fn personal(value: &str) -> Option<&'static str> {
    if EMAIL.is_match(value) {
        return Some("an e-mail address");
    }
    NUMBER_RUN.find_iter(value).any(|m| phone_like(m.as_str())).then_some("a phone number")
}

/// A run of at least eight digits written the way phone numbers are: with
/// a leading `+` or `0` (`+31 6 1234 5678`, `0612345678`, `020-1234567`),
/// brackets (`(555) 123-4567`) or spaces between groups. Runs that only
/// carry dashes or dots (`2026-11-30-0042`, a run id's Unix seconds) are
/// names and dates, not numbers to call.
fn phone_like(run: &str) -> bool {
    let digits = run.chars().filter(char::is_ascii_digit).count();
    digits >= PHONE_DIGITS
        && (run.starts_with('+') || run.starts_with('0') || run.contains(['(', ')']) || run.contains(' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(value: &str) -> Option<&'static str> {
        match Shown::checked("f", value) {
            Err(CertificateError::PersonalData { looks_like, .. }) => Some(looks_like),
            Err(e) => panic!("{e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn e_mail_addresses_are_refused_wherever_they_stand() {
        for v in ["jan.jansen@example.nl", "mailto:Jan@Example.NL", "kept for j+x@mail.example.com."] {
            assert_eq!(refused(v), Some("an e-mail address"), "{v}");
        }
    }

    #[test]
    fn phone_numbers_are_refused_in_the_forms_people_write_them() {
        for v in
            ["+31 6 1234 5678", "0612345678", "tel. 020-1234567", "(555) 123-4567", "0031612345678", "06 12 34 56 78"]
        {
            assert_eq!(refused(v), Some("a phone number"), "{v}");
        }
    }

    #[test]
    fn names_dates_and_references_pass() {
        for v in [
            "erasure-2026-11-30-0042",
            "1764500000-1a2b3c4d~again",
            "PRIV-2026-0042",
            "RetentionPolicy traffic-data (legal obligation, GDPR Art. 6(1)(c) and 17(3)(b); kept 7y from each record)",
            "the store keeps them: 2 ObjectLock",
            "acme-bv",
            "2026-11-30",
            "staff-1042",
        ] {
            assert_eq!(refused(v), None, "{v}");
        }
    }

    #[test]
    fn digests_pass_by_shape_and_nothing_else_does() {
        let digest = format!("hmac-sha256:0a1b2c3d:{}", "0123456789".repeat(6) + "0123");
        assert!(Shown::digest("d", &digest).is_ok());
        assert!(Shown::digest("d", &format!("sha256:{}", "1".repeat(64))).is_ok());
        assert!(Shown::digest("d", "ed25519:0123456789012345").is_ok());
        // A digest's digits outside the digest shape are a number again.
        assert!(Shown::checked("d", &digest).is_err());
        assert!(matches!(
            Shown::digest("subjectDigests.email", "jan@example.nl"),
            Err(CertificateError::PersonalData { .. })
        ));
    }

    #[test]
    fn the_error_names_the_field_and_never_the_value() {
        let e = Shown::checked("identityVerification.reference", "jan@example.nl").unwrap_err().to_string();
        assert!(e.contains("identityVerification.reference") && e.contains("e-mail"), "{e}");
        assert!(!e.contains("jan@"), "{e}");
    }
}
