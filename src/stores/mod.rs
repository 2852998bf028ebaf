//! Store adapters: the I/O edge where records are counted, deleted and read
//! back. Every store family (SQL now; buckets, OpenSearch and files later)
//! implements [`Store`], so the engine drives them all the same way.
//!
//! The contract every implementation keeps:
//! - Nothing outside the target's scope and not due for the given [`Cutoff`]
//!   is ever deleted; predicates use validated names and bound values only.
//! - A dry run reads and counts, and writes nothing.
//! - A purge or erasure ends with a read-back; when records still match, it
//!   returns [`StoreError::NotVerified`] rather than a report.
//! - Deletes go in batches, each reported through [`Progress`], and the
//!   [`CancellationToken`] is honoured between batches.
//! - Errors, logs and reports never carry identities or other record values.

pub mod due;
pub mod export;
pub mod files;
pub mod identity;
pub mod local_buckets;
pub mod name_date;
pub mod objects;
pub mod search;
pub mod sql;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use futures::future::BoxFuture;
use jiff::Timestamp;
pub use tokio_util::sync::CancellationToken;

pub use self::due::Cutoff;
use crate::api::account::Account;
use crate::api::policy::Target;
use crate::api::{IdentityName, Mode};

/// Records in one batch at most, unless the options say otherwise. Stores
/// with a smaller limit of their own (1,000 keys in a DeleteObjects
/// request, a scroll page of 10,000) clamp it further.
pub const DEFAULT_MAX_BATCH_SIZE: u64 = 1_000_000;

/// What every store method returns: a boxed future, so stores can live
/// behind `dyn Store` in the engine.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// What a purge or an erasure returns: its report, or why it stopped
/// together with what it had done by then.
pub type PurgeFuture<'a> = BoxFuture<'a, Result<PurgeReport, Incomplete>>;

/// One store: a database, a bucket service, a search cluster, a directory.
pub trait Store: Send + Sync {
    /// The kind of store, as the DataStore spec names it (`postgres`,
    /// `mysql`, `sqlite`, `s3`, `opensearch`, `files`, `localBuckets`).
    fn kind(&self) -> &'static str;

    /// Reaches the store with its credentials and reports its version.
    fn probe(&self) -> StoreFuture<'_, ProbeReport>;

    /// The store's own clock, where it has one apart from the operator's: a
    /// run compares it with its own before deleting anything.
    fn clock(&self) -> StoreFuture<'_, Option<Timestamp>> {
        Box::pin(async { Ok(None) })
    }

    /// Resolves the target without reading its records: the table and the
    /// columns it names, the bucket, the index pattern and its time field,
    /// the file root and glob. A policy's `Valid` condition carries the
    /// answer, so a typo shows before the first run, not at it.
    fn check_target<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, ()>;

    /// Counts the target's records that are due for `cutoff`.
    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64>;

    /// Counts every record in the target's scope, due or not, where the
    /// store can do so cheaply; a percentage guardrail needs it. `None`
    /// when it cannot, and then such a guardrail stops the run.
    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        let _ = target;
        Box::pin(async { Ok(None) })
    }

    /// Deletes the target's records that are due for `cutoff`, in batches,
    /// then reads back. In [`Mode::DryRun`] it only counts. The report's
    /// account sorts every record looked at (principle 9); when the purge
    /// stops early, [`Incomplete`] carries what it did until then.
    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a>;

    /// Whether the store keeps the records of the subjects a target's
    /// Holds name (`Target::held`) out of its purges. A store that cannot
    /// is kept whole while such a hold lasts.
    fn keeps_held_subjects(&self) -> bool {
        false
    }

    /// Sets the store's own legal hold (S3 object legal hold) on the
    /// subject's objects in the target. Returns the keys on which it set
    /// one (not those held already), or `None` where the store has no such
    /// hold or the bucket no object lock.
    fn place_legal_holds<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
    ) -> StoreFuture<'a, Option<Vec<String>>> {
        let _ = (target, subject);
        Box::pin(async { Ok(None) })
    }

    /// Lifts the legal hold of the target's objects whose key `ours`
    /// accepts (those a hold set); returns how many it lifted.
    fn lift_legal_holds<'a>(
        &'a self,
        target: &'a Target,
        ours: &'a (dyn Fn(&str) -> bool + Send + Sync),
    ) -> StoreFuture<'a, u64> {
        let _ = (target, ours);
        Box::pin(async { Ok(0) })
    }

    /// Reads the target's records that belong to `subject`, for an access
    /// request's export (Art. 15 and 20 GDPR): at most `limit` records. A
    /// subject with more fails with [`StoreError::ExportLimit`] and nothing
    /// is exported, so an export is never silently partial. Records that
    /// match but cannot be read are counted in
    /// [`SubjectExport::unreadable`], never guessed at.
    ///
    /// Stores that cannot export yet say so with
    /// [`StoreError::InvalidTarget`].
    fn export_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        limit: u64,
    ) -> StoreFuture<'a, SubjectExport> {
        let _ = (target, subject, limit);
        let store = self.kind();
        Box::pin(async move {
            Err(StoreError::InvalidTarget {
                store,
                detail: "this kind of store cannot export a subject's records yet".into(),
            })
        })
    }

    /// Counts the target's records that belong to `subject`.
    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64>;

    /// Deletes the target's records that belong to `subject` (related
    /// records the target declares first), then reads back. In
    /// [`Mode::DryRun`] it only counts.
    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a>;
}

/// A data subject's identities: kinds (email, phone, customerId, ...) and
/// values. Its `Debug` shows kinds and counts only, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Subject {
    identities: Vec<(IdentityName, String)>,
}

impl Subject {
    /// A subject with these identities; a kind may appear more than once.
    pub fn new(identities: impl IntoIterator<Item = (IdentityName, String)>) -> Self {
        Self { identities: identities.into_iter().collect() }
    }

    /// The values of one kind of identity.
    pub fn values<'a>(&'a self, kind: &'a IdentityName) -> impl Iterator<Item = &'a str> + 'a {
        self.identities.iter().filter(move |(k, _)| k == kind).map(|(_, v)| v.as_str())
    }

    /// Whether the subject has no identities at all.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&str> = self.identities.iter().map(|(k, _)| k.as_str()).collect();
        kinds.sort_unstable();
        write!(f, "Subject {{ {} identities of kinds {:?} }}", self.identities.len(), kinds)
    }
}

/// One subject's records in one target, as an access request exports them.
/// Its `Debug` shows counts only: the records are the subject's data.
#[derive(Clone, Default, PartialEq)]
pub struct SubjectExport {
    /// Each record as a JSON object with the store's own names (a row's
    /// columns; an object's key, metadata and body; a document's index, id
    /// and source; a log line's file, line number and text), in a stable
    /// order.
    pub records: Vec<serde_json::Value>,
    /// Rows of a table target's declared child tables that refer to the
    /// exported rows (SQL only): an erasure deletes them with their parent,
    /// so they are the subject's data as much as the parent's row. One
    /// entry per declared child, in declaration order, empty ones included.
    pub related: Vec<RelatedRecords>,
    /// Records that matched (or may have matched) but could not be read,
    /// related rows included; counted and reported, never guessed at
    /// (principle 9).
    pub unreadable: u64,
}

impl SubjectExport {
    /// Every record read: the target's own and its related rows.
    pub fn record_count(&self) -> u64 {
        let related: usize = self.related.iter().map(|r| r.records.len()).sum();
        (self.records.len() + related) as u64
    }
}

impl fmt::Debug for SubjectExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SubjectExport {{ {} records, {} related, {} unreadable }}",
            self.records.len(),
            self.record_count() - self.records.len() as u64,
            self.unreadable
        )
    }
}

/// The rows of one declared child table that belong to a subject's rows.
/// Its `Debug` shows the table and a count only.
#[derive(Clone, Default, PartialEq)]
pub struct RelatedRecords {
    /// The child table, as declared.
    pub table: String,
    /// Its column that refers to the parent.
    pub foreign_key: String,
    /// The parent's column it refers to.
    pub parent_key: String,
    /// Its rows, ordered by its primary key (else by where they lie).
    pub records: Vec<serde_json::Value>,
}

impl fmt::Debug for RelatedRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelatedRecords {{ table {}, {} records }}", self.table, self.records.len())
    }
}

/// How the store answered a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The kind of store, as [`Store::kind`].
    pub kind: &'static str,
    /// The version the server reports.
    pub server_version: String,
}

/// Called after every committed batch with what it did.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Asked before every batch: whether this instance may still delete (the
/// leader's fence: the lease held with margin, by its own clock).
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// A deletes-per-second limit shared by every run on one DataStore: each
/// batch's deletes reserve time, and the next batch waits for its turn.
#[derive(Debug)]
pub struct RateLimiter {
    rate: u32,
    next_free: std::sync::Mutex<std::time::Instant>,
}

impl RateLimiter {
    /// A limiter of `rate` records per second.
    pub fn new(rate: u32) -> Self {
        Self { rate: rate.max(1), next_free: std::sync::Mutex::new(std::time::Instant::now()) }
    }

    /// The rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes `records` from the shared budget: how long to wait before
    /// the next batch.
    pub fn reserve(&self, records: u64) -> Duration {
        let now = std::time::Instant::now();
        let mut next = self.next_free.lock().expect("rate limiter lock");
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(records as f64 / f64::from(self.rate));
        next.saturating_duration_since(now)
    }
}

/// How a purge or erasure runs.
#[derive(Clone)]
pub struct PurgeOptions {
    /// Enforce deletes; DryRun counts and touches nothing.
    pub mode: Mode,
    /// One batch, from its start to its commit, should take at most this
    /// long; batch sizes adapt to stay well under it.
    pub target_batch_latency: Duration,
    /// Records in the first batch, before anything is measured.
    pub initial_batch_size: u64,
    /// Records in a batch at most.
    pub max_batch_size: u64,
    /// Records deleted per second at most, when set.
    pub max_records_per_second: Option<u32>,
    /// Cancelled between batches: the batch in flight commits, then the
    /// purge stops with [`StoreError::Cancelled`].
    pub cancel: CancellationToken,
    /// Called after every committed batch.
    pub progress: Option<ProgressFn>,
    /// Deletes this purge may still make, shared with the run's other
    /// targets (maxRecordsPerRun, maxPercentPerRun). A batch never takes
    /// more than is left; when nothing is left the purge stops with
    /// [`StoreError::BudgetSpent`].
    pub budget: Vec<Budget>,
    /// The due records the run counted for this target just before the
    /// purge (its [`Store::count_due`] under the same cutoff). A store that
    /// would otherwise count them again takes this as the account's
    /// `matched`, so the due set is counted once per run.
    pub counted_due: Option<u64>,
    /// The DataStore's limit shared with every other run on it.
    pub shared_rate: Option<Arc<RateLimiter>>,
    /// Deletes already taken from the shared limit by this purge.
    paced: Arc<std::sync::atomic::AtomicU64>,
    /// Asked before every batch; a purge stops with
    /// [`StoreError::Cancelled`] when it says no.
    pub gate: Option<Gate>,
}

impl PurgeOptions {
    /// Defaults for a mode: 200 ms batches starting at 500 records, at most
    /// [`DEFAULT_MAX_BATCH_SIZE`], no rate limit. The latency target, not the
    /// cap, is what bounds a batch: the cap only keeps one mis-measured
    /// batch from being absurd.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            target_batch_latency: Duration::from_millis(200),
            initial_batch_size: 500,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_records_per_second: None,
            cancel: CancellationToken::new(),
            progress: None,
            budget: Vec::new(),
            counted_due: None,
            shared_rate: None,
            paced: Arc::default(),
            gate: None,
        }
    }

    /// Whether the purge must stop before its next batch: cancelled (a
    /// shutdown, a lost lease, the spec changed or the policy deleted), or
    /// the gate no longer lets it delete.
    pub fn stopped(&self) -> bool {
        self.cancel.is_cancelled() || self.gate.as_ref().is_some_and(|may| !may())
    }

    /// The same options with a progress callback.
    pub fn with_progress(mut self, progress: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

impl fmt::Debug for PurgeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgeOptions")
            .field("mode", &self.mode)
            .field("target_batch_latency", &self.target_batch_latency)
            .field("initial_batch_size", &self.initial_batch_size)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_records_per_second", &self.max_records_per_second)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("progress", &self.progress.is_some())
            .field("budget", &self.budget)
            .field("counted_due", &self.counted_due)
            .field("shared_rate", &self.shared_rate)
            .field("gated", &self.gate.is_some())
            .finish()
    }
}

/// One committed batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The batch's number, from 1.
    pub batch: u64,
    /// Records the batch asked for (its size).
    pub batch_size: u64,
    /// Records the batch deleted.
    pub deleted: u64,
    /// Records deleted so far, this batch included.
    pub deleted_total: u64,
    /// From the batch's start to its commit.
    pub duration: Duration,
}

/// What a purge or erasure did: the account of the target's records, and
/// how the work went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Every record looked at, in exactly one place (principle 9). Passed
    /// on unchanged to status and evidence.
    pub account: Account,
    /// Batches committed.
    pub batches: u64,
    /// The longest batch.
    pub max_batch_duration: Duration,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// A purge or erasure that stopped before it was done: why, and what it
/// had done by then (records already deleted stay counted).
#[derive(Debug)]
pub struct Incomplete {
    /// Why it stopped.
    pub error: StoreError,
    /// What it did before (boxed: the error travels through every
    /// store call, the report rarely).
    pub report: Box<PurgeReport>,
}

impl fmt::Display for Incomplete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after deleting {} records)", self.error, self.report.account.deleted)
    }
}

impl std::error::Error for Incomplete {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<StoreError> for Incomplete {
    fn from(error: StoreError) -> Self {
        Self { error, report: Box::default() }
    }
}

impl Incomplete {
    /// Stopped for `error` after doing what `report` says.
    pub fn after(error: StoreError, report: &PurgeReport) -> Self {
        Self { error, report: Box::new(report.clone()) }
    }
}

/// A number of deletes a run may still make, shared by its targets.
#[derive(Clone, Debug)]
pub struct Budget {
    left: Arc<Mutex<u64>>,
    limit: u64,
    guardrail: &'static str,
}

impl Budget {
    /// A budget of `limit` deletes, named for the guardrail that set it.
    pub fn new(limit: u64, guardrail: &'static str) -> Self {
        Self { left: Arc::new(Mutex::new(limit)), limit, guardrail }
    }

    /// The deletes it started with.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The guardrail that set it (maxRecordsPerRun, maxPercentPerRun).
    pub fn guardrail(&self) -> &'static str {
        self.guardrail
    }

    /// Deletes not yet taken.
    pub fn left(&self) -> u64 {
        *self.left.lock().expect("budget lock")
    }

    fn take(&self, n: u64) {
        let mut left = self.left.lock().expect("budget lock");
        *left = left.saturating_sub(n);
    }

    fn give(&self, n: u64) {
        let mut left = self.left.lock().expect("budget lock");
        *left = (*left + n).min(self.limit);
    }
}

impl PurgeOptions {
    /// Takes up to `want` deletes from every budget: what a batch may
    /// delete at most. Zero when a budget is spent.
    pub fn reserve(&self, want: u64) -> u64 {
        let n = self.budget.iter().map(Budget::left).fold(want, u64::min);
        self.budget.iter().for_each(|b| b.take(n));
        n
    }

    /// Gives back what a batch reserved but did not delete.
    pub fn refund(&self, n: u64) {
        self.budget.iter().for_each(|b| b.give(n));
    }

    /// The budget that is spent, if one is.
    pub fn spent_budget(&self) -> Option<&Budget> {
        self.budget.iter().find(|b| b.left() == 0)
    }

    /// The error for a purge stopped by its budget, having deleted `deleted`.
    pub fn budget_spent(&self, deleted: u64) -> StoreError {
        let b = self.spent_budget().or(self.budget.first());
        StoreError::BudgetSpent {
            guardrail: b.map_or("maxRecordsPerRun", Budget::guardrail),
            limit: b.map_or(0, Budget::limit),
            deleted,
        }
    }
}

/// Runs blocking file-system work off the async runtime (the `files` and
/// `localBuckets` stores).
pub(crate) async fn blocking<T: Send + 'static>(
    store: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend { store, detail: format!("file work panicked: {e}") })?
}

/// A file-system error at `path`, in the store's terms. Paths below a root
/// can name a data subject (`customers/42/...`), and errors reach status and
/// Events, so only the path's depth is told, never its names.
pub(crate) fn io_error(store: &'static str, path: &std::path::Path, e: std::io::Error) -> StoreError {
    let object =
        format!("a path {} levels deep (names withheld: they may be personal data)", path.components().count());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { object, detail: e.kind().to_string() },
        std::io::ErrorKind::NotFound => StoreError::MissingTable { object, hint: String::new() },
        kind => StoreError::Backend { store, detail: format!("{object}: {kind}") },
    }
}

impl PurgeReport {
    /// A report of nothing done yet, a dry run when the options say so.
    pub fn empty(options: &PurgeOptions) -> Self {
        Self { dry_run: options.mode == Mode::DryRun, ..Self::default() }
    }

    /// Counts one committed batch and reports it to the progress callback.
    pub fn record_batch(&mut self, options: &PurgeOptions, batch_size: u64, deleted: u64, took: Duration) {
        self.account.deleted += deleted;
        self.batches += 1;
        self.max_batch_duration = self.max_batch_duration.max(took);
        if let Some(progress) = &options.progress {
            progress(&Progress {
                batch: self.batches,
                batch_size,
                deleted,
                deleted_total: self.account.deleted,
                duration: took,
            });
        }
    }
}

impl PurgeOptions {
    /// How long to wait, if at all, so that `deleted` records since
    /// `started` keep to the rate limit.
    pub fn pace(&self, deleted: u64, started: std::time::Instant) -> Option<Duration> {
        let own = self.max_records_per_second.and_then(|rate| {
            Duration::from_secs_f64(deleted as f64 / f64::from(rate.max(1))).checked_sub(started.elapsed())
        });
        // The DataStore's limit, shared with the other runs on it.
        let shared = self.shared_rate.as_ref().map(|limiter| {
            let before = self.paced.fetch_max(deleted, std::sync::atomic::Ordering::Relaxed);
            limiter.reserve(deleted.saturating_sub(before))
        });
        own.max(shared).filter(|d| !d.is_zero())
    }
}

/// Why a store operation failed. [`StoreError::reason`] is the stable,
/// low-cardinality category for Events, conditions and metric labels.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer.
    #[error(
        "cannot reach the {store} server: {detail}. Check the DataStore's host and port, that the server runs, and that network policies let the operator through"
    )]
    Unreachable { store: &'static str, detail: String },
    /// The store refused the credentials.
    #[error(
        "the {store} server refused the credentials: {detail}. Check the username and password in the DataStore's credentials Secret"
    )]
    AuthenticationFailed { store: &'static str, detail: String },
    /// The table (or bucket, index, directory) does not exist.
    #[error(
        "{object} does not exist, or the operator's user cannot see it.{hint} Check the name in the target and the database the DataStore names"
    )]
    MissingTable { object: String, hint: String },
    /// A declared column (or field) does not exist.
    #[error(
        "column {column} does not exist in {object}; it is named as the target's {role}.{hint} Check the spelling, or add the column"
    )]
    MissingColumn { object: String, column: String, role: &'static str, hint: String },
    /// A declared column has a type its role cannot use.
    #[error(
        "column {column} of {object} has type {found}, but the target's {role} must be {expected}. Point the target at a column of that type"
    )]
    WrongColumnType { object: String, column: String, role: &'static str, found: String, expected: &'static str },
    /// The store refused an operation for want of a privilege.
    #[error("permission denied on {object}: {detail}. Grant the operator's user SELECT and DELETE on it")]
    PermissionDenied { object: String, detail: String },
    /// The target does not fit this kind of store, or cannot be handled.
    #[error("the target cannot be used with a {store} store: {detail}")]
    InvalidTarget { store: &'static str, detail: String },
    /// Another record refers to one being deleted.
    #[error(
        "deleting from {object} would orphan rows that refer to it: {detail}. Declare {referrers} as a child of the target (children: name, foreignKey), or let the foreign key cascade"
    )]
    ReferencedByOtherRecords { object: String, detail: String, referrers: String },
    /// The store's clock and the operator's disagree.
    #[error(
        "the {store} server's clock differs from the operator's by {skew_seconds} s, more than the {tolerance_seconds} s the DataStore allows (maxClockSkewSeconds); nothing was deleted. Whether a record is due depends on the time: fix the clock that is wrong"
    )]
    ClockSkew { store: &'static str, skew_seconds: i64, tolerance_seconds: u32 },
    /// A guardrail's budget of deletes ran out.
    #[error(
        "the run reached {guardrail} ({limit}) after deleting {deleted} records of this target; the rest waits for the next run. Check why more records are due than expected, then raise the guardrail if this is right"
    )]
    BudgetSpent { guardrail: &'static str, limit: u64, deleted: u64 },
    /// The read-back found records still matching.
    #[error("after deleting {deleted} records, {remaining} still match; the run is not complete and will be retried")]
    NotVerified { deleted: u64, remaining: u64 },
    /// Stopped between batches by the cancellation token.
    #[error("cancelled after deleting {deleted} records; a later run with the same cutoff finishes the work")]
    Cancelled { deleted: u64 },
    /// Anything else the store reported.
    #[error("the {store} server failed: {detail}")]
    Backend { store: &'static str, detail: String },
    /// Records that are due (or the subject's) wait in files still being
    /// written, which cannot be rewritten without losing what comes next.
    #[error(
        "{records} records wait in {files} files that are still being written (modified in the last {quiet_seconds} s, or open for writing): rewriting one now would lose what its writer appends next. They go once the files are rotated or quiet; the work will be retried"
    )]
    FilesInUse { files: u64, records: u64, quiet_seconds: u32 },
    /// An erasure met records it could not read, which may be the subject's.
    #[error(
        "{records} records could not be read ({summary}); they were kept, and whether they hold the subject is unknown. Repair or remove them, and the erasure will be retried"
    )]
    UnreadableRecords { records: u64, summary: String },
    /// An index (or the whole cluster) carries a block that stops deletes:
    /// not a missing permission, and no grant changes it.
    #[error("{object} is blocked: {block} is set, so nothing in it can be deleted. {advice}")]
    Blocked { object: String, block: &'static str, advice: &'static str },
    /// The server aborted a transaction that met a concurrent change
    /// (PostgreSQL serialization failure or deadlock, InnoDB deadlock or
    /// lock wait timeout): nothing of it was committed, and it can be
    /// tried again at once.
    #[error("the {store} server aborted a batch that met a concurrent change ({detail}); nothing of it was committed")]
    Conflict { store: &'static str, detail: String },
    /// A subject has more records in a target than an access request may
    /// export.
    #[error(
        "the subject has more than {limit} records in {object}, more than the access request may export (spec.maxRecords, or the installation's --max-export-records); nothing was exported. If that many records are the subject's, file a new request with a higher maxRecords"
    )]
    ExportLimit { object: String, limit: u64 },
    /// A subject's identity is too short or too malformed to be looked for
    /// (principle 11). Names the kind of identity, never its value.
    #[error("{detail}; nothing was looked for. Correct the value in the ErasureRequest's identity Secret")]
    InvalidIdentity { detail: String },
}

impl From<identity::IdentityError> for StoreError {
    fn from(e: identity::IdentityError) -> Self {
        Self::InvalidIdentity { detail: e.to_string() }
    }
}

impl StoreError {
    /// A stable, low-cardinality category: the Event reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "Unreachable",
            Self::AuthenticationFailed { .. } => "AuthenticationFailed",
            Self::MissingTable { .. } => "MissingTable",
            Self::MissingColumn { .. } => "MissingColumn",
            Self::WrongColumnType { .. } => "WrongColumnType",
            Self::PermissionDenied { .. } => "PermissionDenied",
            Self::InvalidTarget { .. } => "InvalidTarget",
            Self::ReferencedByOtherRecords { .. } => "ReferencedByOtherRecords",
            Self::NotVerified { .. } => "NotVerified",
            Self::Cancelled { .. } => "Cancelled",
            Self::ClockSkew { .. } => "ClockSkew",
            Self::BudgetSpent { .. } => "GuardrailReached",
            Self::Backend { .. } => "StoreError",
            Self::FilesInUse { .. } => "FilesInUse",
            Self::UnreadableRecords { .. } => "UnreadableRecords",
            Self::Blocked { .. } => "Blocked",
            Self::InvalidIdentity { .. } => "InvalidIdentity",
            Self::ExportLimit { .. } => "GuardrailReached",
            Self::Conflict { .. } => "Conflict",
        }
    }

    /// Whether retrying later, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::NotVerified { .. }
                | Self::Cancelled { .. }
                | Self::Backend { .. }
                | Self::Conflict { .. }
                | Self::ClockSkew { .. }
                | Self::FilesInUse { .. }
        ) || matches!(self, Self::Blocked { block, .. } if block.ends_with("read_only_allow_delete"))
    }
}

/// Sizes batches so each stays under a latency target from the latency just
/// observed, and nothing else: aims at half the target from the rate just
/// measured (headroom for a busy server, a checkpoint or a cold page), at
/// most doubling at a time. `done` is what the batch covered, in whatever
/// unit the caller sizes in (records, heap blocks).
pub fn next_batch_size(current: u64, done: u64, took: Duration, target: Duration, max: u64) -> u64 {
    let took = took.as_secs_f64().max(1e-4);
    let per_record = took / (done.max(1) as f64);
    let ideal = (target.as_secs_f64() * 0.5 / per_record) as u64;
    ideal.clamp(1, current.saturating_mul(2).max(2)).min(max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_cutoff_cannot_lie_after_the_run_start() {
        assert!(Cutoff::planned(ts("2026-01-02T00:00:00Z"), ts("2026-01-01T00:00:00Z")).is_none());
        let c = Cutoff::planned(ts("2025-01-01T00:00:00Z"), ts("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(c.at(), ts("2025-01-01T00:00:00Z"));
    }

    #[test]
    fn budgets_hand_out_no_more_than_is_left_and_take_back_what_was_not_used() {
        let mut options = PurgeOptions::new(Mode::Enforce);
        let run = Budget::new(150, "maxRecordsPerRun");
        options.budget = vec![run.clone(), Budget::new(100, "maxPercentPerRun")];
        assert_eq!(options.reserve(60), 60);
        options.refund(10);
        assert_eq!((run.left(), options.budget[1].left()), (100, 50));
        assert_eq!(options.reserve(80), 50, "the smaller budget decides");
        assert_eq!(options.reserve(1), 0);
        assert_eq!(options.spent_budget().unwrap().guardrail(), "maxPercentPerRun");
        let e = options.budget_spent(100);
        assert_eq!(e.reason(), "GuardrailReached");
        assert!(e.to_string().contains("maxPercentPerRun (100)"), "{e}");
    }

    #[test]
    fn a_subject_never_shows_its_identities() {
        let s = Subject::new([("email".parse().unwrap(), "jan@example.com".to_owned())]);
        let shown = format!("{s:?}");
        assert!(!shown.contains("jan@"), "{shown}");
        assert!(shown.contains("email"), "{shown}");
    }

    #[test]
    fn batches_grow_gently_and_shrink_when_slow() {
        let target = Duration::from_millis(200);
        // Fast: 500 rows in 10 ms could be 5000 rows at 100 ms, but grows at most 2x.
        assert_eq!(next_batch_size(500, 500, Duration::from_millis(10), target, 20_000), 1000);
        // Slow: 1000 rows in 400 ms shrink to what fits in 100 ms, half the target.
        assert_eq!(next_batch_size(1000, 1000, Duration::from_millis(400), target, 20_000), 250);
        // Never beyond the maximum, never zero.
        assert_eq!(next_batch_size(20_000, 20_000, Duration::from_millis(1), target, 20_000), 20_000);
        assert_eq!(next_batch_size(1, 1, Duration::from_secs(10), target, 20_000), 1);
    }

    #[test]
    fn reasons_are_stable_words() {
        let e = StoreError::MissingColumn {
            object: "t".into(),
            column: "c".into(),
            role: "time column",
            hint: String::new(),
        };
        assert_eq!(e.reason(), "MissingColumn");
        assert!(e.to_string().contains("time column"));
    }
}
