//! The account of what a run or an erasure did with the records of one
//! target (principle 9): every record it looked at lands in exactly one of
//! deleted, retained (with the reason and until when), not due, unreadable
//! (with the reason) or remaining. The store adapter builds it; the engine
//! passes it on unchanged into status and evidence.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// What was done with the records of one target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Records in scope when the work began and allowed to go: past the
    /// cutoff (a retention run) or the subject's (an erasure). Retained and
    /// unreadable records are not among them.
    pub matched: u64,
    /// Records deleted, those in dropped partitions or indices included.
    pub deleted: u64,
    /// Records of declared child tables deleted with them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub related_deleted: u64,
    /// Records still past the cutoff (or still the subject's) at the
    /// read-back. Absent when the work stopped before a read-back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Records in scope that are not yet due, where the store counted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_due: Option<u64>,
    /// Records kept on purpose although due, with the reason and until when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained: Vec<Retained>,
    /// Records the store could not judge, by reason. They are kept and make
    /// the run not compliant until someone looks at them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
    /// Whole partitions or indices dropped because everything in them was
    /// due, with the records each held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Dropped>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Records kept on purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retained {
    /// Why they are kept.
    pub reason: RetainReason,
    /// Until when, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// How many.
    pub count: u64,
    /// For reason Hold: the name of the Hold that keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

/// Why due records are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RetainReason {
    /// The object store's object lock keeps the object until a date.
    ObjectLock,
    /// The object store's legal hold keeps the object until it is lifted.
    LegalHold,
    /// A legal obligation (GDPR Art. 17(3)(b)) keeps the records until the
    /// end of their own retention period.
    LegalObligation,
    /// A Hold (restriction of processing, GDPR Art. 18, or a legal claim)
    /// keeps the records until it ends; its name is given.
    Hold,
}

/// Records that could not be judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unreadable {
    /// Why.
    pub reason: UnreadableReason,
    /// How many.
    pub count: u64,
}

/// Why a record could not be judged. Each is kept, counted and reported,
/// never guessed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum UnreadableReason {
    /// A zero date or a date with a zero month or day (MySQL and MariaDB
    /// `0000-00-00`), which legacy schemas use for "not set".
    ZeroDate,
    /// `-infinity` (PostgreSQL), which is no point in time.
    InfiniteTime,
    /// A time without a zone, and no zone declared for it: set timeZone on
    /// the target or its DataStore.
    NoTimeZone,
    /// A number where a time was expected, and no timeFormat saying whether
    /// it counts seconds or milliseconds since 1970.
    AmbiguousNumber,
    /// A value that is not a time in any form the target accepts (text in
    /// another format, zero or a negative number of seconds, a blob).
    NotATime,
    /// A per-record period of zero, a negative one, or one longer than 100
    /// years.
    BadPeriod,
    /// No per-record period where the target requires one.
    MissingPeriod,
    /// An object key (or file name) that does not match the target's date
    /// pattern, or names a date that does not exist.
    KeyDateMismatch,
    /// A file or object name that is not UTF-8.
    NameNotUtf8,
    /// An index that is closed (or otherwise not searchable): its documents
    /// cannot be counted or deleted.
    ClosedIndex,
    /// A file that cannot be read as what it claims to be (a compressed log
    /// that does not decompress).
    UnreadableFile,
    /// An object key the server lists only with characters replaced (a
    /// control character, where the server cannot URL-encode its listing):
    /// the key cannot be named exactly to delete it.
    UnlistableKey,
    /// A record that cannot be read in the target's format: a line of a
    /// JSON-lines file that is not a JSON object, or a record longer than
    /// the store reads at once.
    UnreadableRecord,
}

impl UnreadableReason {
    /// What a person can do about it, for conditions and Events.
    pub fn advice(self) -> &'static str {
        match self {
            Self::ZeroDate => "zero dates (0000-00-00) mean 'not set' in many schemas; set them to NULL or a real date",
            Self::InfiniteTime => "-infinity is no point in time; set it to NULL or a real time",
            Self::NoTimeZone => {
                "times without a zone: set timeZone on the target or its DataStore to the zone they were written in"
            }
            Self::AmbiguousNumber => {
                "numbers where times were expected: set timeFormat to UnixSeconds or UnixMilliseconds"
            }
            Self::NotATime => "values that are not times in a form the target accepts",
            Self::BadPeriod => "per-record periods of zero, below zero or above 100 years",
            Self::MissingPeriod => "no per-record period where periodColumn.required is set",
            Self::KeyDateMismatch => "keys or names that do not match the target's date pattern, or name no real date",
            Self::NameNotUtf8 => "file or object names that are not UTF-8",
            Self::ClosedIndex => "indices that are closed or not searchable: open them, or delete them by hand",
            Self::UnreadableFile => "files that cannot be read as what their name says (a corrupt compressed log)",
            Self::UnlistableKey => {
                "object keys with characters the server cannot list exactly: rename or delete them with a tool that can name them"
            }
            Self::UnreadableRecord => {
                "records not in the target's format (a JSON-lines line that is not a JSON object) or longer than 8 MiB"
            }
        }
    }
}

/// A partition or index dropped whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dropped {
    /// The partition or index.
    pub name: String,
    /// The records it held.
    pub records: u64,
}

impl Account {
    /// Records that could not be judged, over all reasons.
    pub fn unreadable_total(&self) -> u64 {
        self.unreadable.iter().map(|u| u.count).sum()
    }

    /// Records kept on purpose, over all reasons.
    pub fn retained_total(&self) -> u64 {
        self.retained.iter().map(|r| r.count).sum()
    }

    /// Adds `count` records that could not be judged for `reason`.
    pub fn add_unreadable(&mut self, reason: UnreadableReason, count: u64) {
        if count == 0 {
            return;
        }
        match self.unreadable.iter_mut().find(|u| u.reason == reason) {
            Some(u) => u.count += count,
            None => {
                self.unreadable.push(Unreadable { reason, count });
                self.unreadable.sort_by_key(|u| u.reason);
            }
        }
    }

    /// Adds `count` records kept for `reason` until `until`.
    pub fn add_retained(&mut self, reason: RetainReason, until: Option<Time>, count: u64) {
        if count == 0 {
            return;
        }
        match self.retained.iter_mut().find(|r| r.reason == reason && r.until == until && r.hold.is_none()) {
            Some(r) => r.count += count,
            None => {
                self.retained.push(Retained { reason, until, count, hold: None });
                self.retained.sort_by(|a, b| (a.reason, &a.until, &a.hold).cmp(&(b.reason, &b.until, &b.hold)));
            }
        }
    }

    /// Adds `count` records kept by the Hold named `hold`.
    pub fn add_held(&mut self, hold: &str, count: u64) {
        if count == 0 {
            return;
        }
        match self.retained.iter_mut().find(|r| r.reason == RetainReason::Hold && r.hold.as_deref() == Some(hold)) {
            Some(r) => r.count += count,
            None => {
                self.retained.push(Retained {
                    reason: RetainReason::Hold,
                    until: None,
                    count,
                    hold: Some(hold.to_owned()),
                });
                self.retained.sort_by(|a, b| (a.reason, &a.until, &a.hold).cmp(&(b.reason, &b.until, &b.hold)));
            }
        }
    }

    /// Records kept by the Hold named `hold`.
    pub fn held_by(&self, hold: &str) -> u64 {
        self.retained.iter().filter(|r| r.hold.as_deref() == Some(hold)).map(|r| r.count).sum()
    }

    /// Whether this account proves the target compliant: read back with
    /// nothing remaining and nothing left unjudged.
    pub fn proves_nothing_due_remains(&self) -> bool {
        self.remaining == Some(0) && self.unreadable.is_empty()
    }

    /// A short phrase naming what could not be judged, for conditions.
    pub fn unreadable_summary(&self) -> Option<String> {
        if self.unreadable.is_empty() {
            return None;
        }
        let parts: Vec<String> =
            self.unreadable.iter().map(|u| format!("{} {:?} ({})", u.count, u.reason, u.reason.advice())).collect();
        Some(parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_counts_merge_by_reason_in_a_stable_order() {
        let mut a = Account::default();
        a.add_unreadable(UnreadableReason::NotATime, 2);
        a.add_unreadable(UnreadableReason::ZeroDate, 3);
        a.add_unreadable(UnreadableReason::NotATime, 1);
        a.add_unreadable(UnreadableReason::BadPeriod, 0);
        assert_eq!(
            a.unreadable,
            vec![
                Unreadable { reason: UnreadableReason::ZeroDate, count: 3 },
                Unreadable { reason: UnreadableReason::NotATime, count: 3 },
            ]
        );
        assert_eq!(a.unreadable_total(), 6);
        a.remaining = Some(0);
        assert!(!a.proves_nothing_due_remains(), "unreadable records keep a run from being compliant");
        assert!(a.unreadable_summary().unwrap().contains("3 ZeroDate"));
    }

    #[test]
    fn held_records_are_retained_under_each_holds_name() {
        let mut a = Account::default();
        a.add_held("dispute", 2);
        a.add_retained(RetainReason::LegalHold, None, 1);
        a.add_held("litigation", 3);
        a.add_held("dispute", 1);
        a.add_held("nothing", 0);
        assert_eq!((a.held_by("dispute"), a.held_by("litigation"), a.held_by("nothing")), (3, 3, 0));
        assert_eq!(a.retained_total(), 7);
        assert_eq!(a.retained.len(), 3, "{:?}", a.retained);
        assert!(a.retained.iter().filter(|r| r.reason == RetainReason::Hold).all(|r| r.hold.is_some()));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["retained"][1]["hold"], "dispute", "{json}");
    }

    #[test]
    fn only_a_read_back_of_zero_proves_compliance() {
        let mut a = Account { matched: 5, deleted: 5, ..Account::default() };
        assert!(!a.proves_nothing_due_remains(), "no read-back ran");
        a.remaining = Some(1);
        assert!(!a.proves_nothing_due_remains());
        a.remaining = Some(0);
        assert!(a.proves_nothing_due_remains());
    }
}
