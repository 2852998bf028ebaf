//! Validated names: SQL identifiers, bucket names, index patterns, categories.
//!
//! Each type carries one pattern that serves twice: as a CEL rule in the CRD
//! schema (so the API server rejects a bad manifest with a message a person
//! understands) and as the check in `FromStr` and `Deserialize` (so no
//! unchecked name ever reaches a store adapter, whatever path it came by).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that does not fit its pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} '{value}' is invalid: {rule}")]
pub struct NameError {
    /// What kind of name it was meant to be.
    pub what: &'static str,
    /// The offending text, cut to 80 characters.
    pub value: String,
    /// The rule it breaks, in words.
    pub rule: &'static str,
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $pattern:literal, $max:literal, $rule:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The regular expression every value matches (RE2 syntax, also used by CEL).
            pub const PATTERN: &'static str = $pattern;
            /// The rule in words, as the API server and the operator say it.
            pub const RULE: &'static str = $rule;

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(value: &str) -> Result<Self, NameError> {
                static RE: LazyLock<Regex> = LazyLock::new(|| Regex::new($pattern).expect("valid pattern"));
                if value.chars().count() <= $max && RE.is_match(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(NameError { what: $what, value: value.chars().take(80).collect(), rule: $rule })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "maxLength": $max,
                    "x-kubernetes-validations": [{
                        "rule": concat!("self.matches('", $pattern, "')"),
                        "message": concat!("must be ", $rule)
                    }]
                })
            }
        }
    };
}

validated_name!(
    /// A plain SQL identifier (a column name): letters, digits and underscores.
    SqlIdentifier,
    "SQL identifier",
    "^[A-Za-z_][A-Za-z0-9_]*$",
    63,
    "a plain SQL identifier: a letter or underscore, then letters, digits or underscores, at most 63 characters (no quotes, spaces or dots)"
);

validated_name!(
    /// A table name, optionally qualified by its schema (`billing.invoices`).
    TableName,
    "table name",
    "^[A-Za-z_][A-Za-z0-9_]{0,62}([.][A-Za-z_][A-Za-z0-9_]{0,62})?$",
    127,
    "a table name, optionally schema-qualified like billing.invoices: each part a letter or underscore, then letters, digits or underscores, at most 63 characters"
);

validated_name!(
    /// An S3 bucket name.
    BucketName,
    "bucket name",
    "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    63,
    "an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
);

validated_name!(
    /// An OpenSearch or Elasticsearch index name or pattern (`*` allowed after
    /// the first character, so a pattern can never match every index).
    IndexPattern,
    "index pattern",
    "^[a-z0-9][a-z0-9._*+-]*$",
    255,
    "an index name or pattern: lowercase letters, digits, '.', '_', '-', '+' and the wildcard '*', starting with a letter or digit (a lone '*' or a system index starting with '.' is refused)"
);

validated_name!(
    /// A field of a log record or JSON line (`timestamp`, `client.ip`, `@timestamp`).
    FieldName,
    "field name",
    "^[A-Za-z_@][A-Za-z0-9_@.-]*$",
    255,
    "a field name like timestamp, @timestamp or client.ip: letters, digits, '_', '@', '.' and '-'"
);

validated_name!(
    /// A data category, the name of one row of a retention table.
    Category,
    "category",
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    63,
    "a lowercase name of letters, digits and hyphens like call-records, at most 63 characters"
);

validated_name!(
    /// The name of a kind of identity of a data subject: the well-known
    /// `email`, `phone`, `ipAddress`, `customerId`, `imei`, or a custom one.
    IdentityName,
    "identity name",
    "^[a-z][a-zA-Z0-9]*$",
    63,
    "a camelCase word like email, phone, ipAddress, customerId or imei (it is also the key in the identity Secret)"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        assert!("created_at".parse::<SqlIdentifier>().is_ok());
        assert!("billing.invoices".parse::<TableName>().is_ok());
        assert!("call-recordings".parse::<BucketName>().is_ok());
        assert!("traffic-*".parse::<IndexPattern>().is_ok());
        assert!("@timestamp".parse::<FieldName>().is_ok());
        assert!("support-tickets".parse::<Category>().is_ok());
        assert!("ipAddress".parse::<IdentityName>().is_ok());
    }

    #[test]
    fn refuses_injection_and_surprises() {
        for bad in ["a; DROP TABLE x", "\"quoted\"", "a b", "a.b", "1abc", "", "é", "a-b", "x".repeat(64).as_str()] {
            assert!(bad.parse::<SqlIdentifier>().is_err(), "{bad:?} was accepted");
        }
        for bad in ["a.b.c", ".a", "a.", "a;b"] {
            assert!(bad.parse::<TableName>().is_err(), "{bad:?} was accepted");
        }
        for bad in ["*", ".security", "_all", "Traffic", "a b", "a,b"] {
            assert!(bad.parse::<IndexPattern>().is_err(), "{bad:?} was accepted");
        }
        for bad in ["ab", "-abc", "ABC", "a_b", "abc-"] {
            assert!(bad.parse::<BucketName>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_error_says_what_is_wrong() {
        let err = "x; DROP TABLE y".parse::<SqlIdentifier>().unwrap_err().to_string();
        assert!(err.contains("SQL identifier 'x; DROP TABLE y' is invalid: a plain SQL identifier"), "{err}");
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<SqlIdentifier>("\"ok_name\"").is_ok());
        let err = serde_json::from_str::<SqlIdentifier>("\"bad name\"").unwrap_err().to_string();
        assert!(err.contains("plain SQL identifier"), "{err}");
    }

    proptest! {
        #[test]
        fn every_accepted_sql_identifier_is_plain(s in "\\PC{0,70}") {
            if let Ok(id) = s.parse::<SqlIdentifier>() {
                prop_assert!(id.as_str().len() <= 63);
                prop_assert!(id.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                prop_assert!(!id.as_str().starts_with(|c: char| c.is_ascii_digit()));
            }
        }
    }
}
