//! A directory of log files: plain text or JSON lines, plain or gzip.
//!
//! **Records.** With age ModificationTime or NameDate a record is a whole
//! file: due when it was last modified before the cutoff, or when the whole
//! period a date in its name names lies before it; a name that does not
//! match the date pattern is unreadable (KeyDateMismatch). With age
//! LineTime, and for erasure, a record is a line and the lines that
//! continue it ([`records`]): due by its own time, or the subject's when
//! an identity matches in it ([`judge`]); the file is rewritten without
//! those records and every other byte stays ([`rewrite`]).
//!
//! **Files still being written** ([`activity`]) are neither rewritten nor
//! deleted: their records wait, counted as remaining, and the work ends
//! with [`StoreError::FilesInUse`] until they are rotated or quiet.
//!
//! **Nothing is guessed.** A `.gz` that does not decompress, a name that is
//! not UTF-8, a line time that cannot be read exactly, a JSON-lines line
//! that is not an object: each is kept and counted as unreadable. An
//! erasure that met one ends with [`StoreError::UnreadableRecords`], never
//! with a clean report.
//!
//! **Exports** for access requests read the records an erasure would
//! remove, with the same matcher, and change nothing ([`export`]).
//!
//! The glob never leaves the root and never follows a link ([`glob`]).
//! Errors never name paths below the root: they may be personal data.

mod activity;
mod export;
mod glob;
mod judge;
mod records;
mod rewrite;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use self::activity::{Activity, DEFAULT_QUIET};
use self::judge::{Age, Ahead, Found, LineClock, SubjectMatcher};
use self::records::{Framing, Verdict};
use self::rewrite::{FileError, Fingerprint, Rewritten};
use super::name_date::NameDate;
use super::{
    Cutoff, Incomplete, ProbeReport, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture, Subject,
    SubjectExport,
};
use crate::api::Mode;
use crate::api::account::{Account, UnreadableReason};
use crate::api::policy::{FileAge, FileFormat, FilesTarget, Target};

const KIND: &str = "files";

/// A directory of log files.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
    time_zone: Option<TimeZone>,
}

impl FileStore {
    /// The store for a directory; checks at each call that it exists.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), time_zone: None }
    }

    /// The zone line times without an offset were written in, unless a
    /// target says otherwise (the DataStore's timeZone).
    pub fn with_time_zone(mut self, zone: Option<TimeZone>) -> Self {
        self.time_zone = zone;
        self
    }
}

/// A target, checked and resolved.
struct Resolved {
    glob: String,
    format: FileFormat,
    framing: Framing,
    age: AgeRule,
    quiet: Duration,
    zone: Option<TimeZone>,
    target: FilesTarget,
    /// Holds on subjects, with the matchers of their records.
    holds: Vec<Holding>,
}

enum AgeRule {
    Modified,
    Named(NameDate),
    Lines,
}

/// How one survey judges records.
enum Look<'a> {
    /// Whole files, by modification time or name; a file holding a record
    /// of a held subject is kept whole.
    Files(&'a Cutoff, &'a [Holding]),
    /// Records, by their own time; those of a held subject are kept.
    Times(&'a LineClock, &'a [Holding]),
    /// Records, by whether they hold the subject.
    Subject(&'a SubjectMatcher),
}

impl Look<'_> {
    /// Copies lines unseen that the look would keep and not count: lines
    /// without a trace of the subject (`SubjectMatcher::clear_lines`).
    fn clear(&self, lines: &[u8], at: u64, ahead: &mut Ahead) -> usize {
        match self {
            Look::Subject(matcher) => matcher.clear_lines(lines, at, ahead),
            Look::Files(..) | Look::Times(..) => 0,
        }
    }

    /// Whether [`Look::clear`] can vouch for any line.
    fn clears(&self) -> bool {
        matches!(self, Look::Subject(_))
    }
}

/// A Hold on a subject, by name, with the matcher of its records.
type Holding = (String, SubjectMatcher);

/// The hold that keeps a record, if one does: `Err` when it cannot be told
/// (the record is kept and counted as unreadable).
fn held_by<'h>(holds: &'h [Holding], record: &[u8]) -> Result<Option<&'h str>, UnreadableReason> {
    for (hold, matcher) in holds {
        match matcher.find(record) {
            Found::Yes => return Ok(Some(hold)),
            Found::Unsure(reason) => return Err(reason),
            Found::No => {}
        }
    }
    Ok(None)
}

/// One file as a survey saw it.
struct Seen {
    path: PathBuf,
    gzip: bool,
    fingerprint: Fingerprint,
    active: bool,
    /// Records to act on: due ones, or the subject's.
    hits: u64,
}

/// Every file of a target, judged once.
struct Survey {
    files: Vec<Seen>,
    account: Account,
    temps: Vec<PathBuf>,
    activity: Activity,
}

impl Survey {
    fn waiting(&self) -> (u64, u64) {
        let waiting = self.files.iter().filter(|s| s.active && s.hits > 0);
        waiting.fold((0, 0), |(files, records), s| (files + 1, records + s.hits))
    }

    fn hits(&self) -> u64 {
        self.files.iter().map(|s| s.hits).sum()
    }
}

impl FileStore {
    fn resolve(&self, target: &Target) -> Result<Resolved, StoreError> {
        let t =
            target.files.as_ref().ok_or_else(|| invalid(format!("target {} names no files (glob)", target.name)))?;
        glob::check(&t.glob)?;
        let zone = match &t.time_zone {
            Some(name) => Some(TimeZone::get(name).map_err(|_| {
                invalid(format!("files.timeZone {name:?} is not a known IANA time zone (like Europe/Amsterdam or UTC)"))
            })?),
            None => self.time_zone.clone(),
        };
        let age = match (t.age, &t.name_date_pattern) {
            (_, _) if t.time_field.is_some() && t.age != FileAge::LineTime => {
                return Err(invalid("timeField is read only with age LineTime".into()));
            }
            (_, _) if t.line_time_format.is_some() && t.format == FileFormat::JsonLines => {
                return Err(invalid("lineTimeFormat is for Text files; JsonLines files name a timeField".into()));
            }
            (FileAge::ModificationTime, _) => AgeRule::Modified,
            (FileAge::NameDate, Some(p)) => AgeRule::Named(NameDate::compile(p, true).map_err(invalid)?),
            (FileAge::NameDate, None) => return Err(invalid("age NameDate needs a nameDatePattern".into())),
            (FileAge::LineTime, _) => match (t.format, &t.time_field, t.line_time_format) {
                (FileFormat::JsonLines, Some(_), None) | (FileFormat::Text, None, Some(_)) => AgeRule::Lines,
                _ => {
                    return Err(invalid(
                        "age LineTime needs timeField for JsonLines files, or lineTimeFormat for Text files".into(),
                    ));
                }
            },
        };
        let framing = match (t.format, t.line_time_format) {
            (FileFormat::JsonLines, _) => Framing::Lines,
            (FileFormat::Text, Some(_)) => Framing::Stamped,
            (FileFormat::Text, None) => Framing::Indented,
        };
        let quiet = t.quiet_seconds.map_or(DEFAULT_QUIET, |s| Duration::from_secs(u64::from(s.max(1))));
        let mut holds = Vec::new();
        for (hold, identities) in target.held.subjects() {
            let subject = Subject::new(identities.iter().cloned());
            if let Some(matcher) = SubjectMatcher::new(&target.subject_fields, t.format, &subject)? {
                holds.push((hold.to_owned(), matcher));
            }
        }
        Ok(Resolved { glob: t.glob.clone(), format: t.format, framing, age, quiet, zone, target: (**t).clone(), holds })
    }

    fn clock(&self, r: &Resolved, cutoff: &Cutoff) -> Result<LineClock, StoreError> {
        let bounds = cutoff.bounds(r.zone.as_ref()).map_err(|e| StoreError::Backend {
            store: KIND,
            detail: format!("the cutoff cannot be placed in the target's time zone: {e}"),
        })?;
        Ok(LineClock::new(r.target.time_field.as_ref(), r.target.time_format, bounds))
    }

    /// Judges every file the glob names. With `before`, files unchanged
    /// since that survey keep their judgement without being read again.
    fn survey(&self, r: &Resolved, look: &Look<'_>, before: Option<&Survey>) -> Result<Survey, StoreError> {
        let listing = glob::list(&self.root, &r.glob)?;
        let mut account = Account::default();
        account.add_unreadable(UnreadableReason::NameNotUtf8, listing.names_not_utf8);
        let mut metas = Vec::with_capacity(listing.files.len());
        for path in listing.files {
            match std::fs::symlink_metadata(&path) {
                Ok(meta) => metas.push((path, meta)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        let activity = Activity::observe(metas.iter().map(|(_, m)| m), r.quiet);
        let mut not_due = 0u64;
        let mut files = Vec::with_capacity(metas.len());
        for (path, meta) in metas {
            let gzip = glob::is_gzip(&path);
            let active = activity.is_active(&meta);
            if let Look::Files(cutoff, holds) = look {
                let due = match &r.age {
                    AgeRule::Named(pattern) => {
                        let end = path.file_name().and_then(|n| n.to_str()).and_then(|n| pattern.period_end(n));
                        let Some(end) = end else {
                            account.add_unreadable(UnreadableReason::KeyDateMismatch, 1);
                            continue;
                        };
                        end <= cutoff.at()
                    }
                    _ => {
                        meta.modified().ok().and_then(|m| Timestamp::try_from(m).ok()).is_some_and(|m| m < cutoff.at())
                    }
                };
                // A due file with a held subject's record in it stays whole.
                let kept = if due { self.file_held(&path, gzip, r, holds) } else { Ok(None) };
                match kept {
                    Ok(None) => {}
                    Ok(Some(hold)) => {
                        account.add_held(&hold, 1);
                        continue;
                    }
                    Err(reason) => {
                        account.add_unreadable(reason, 1);
                        continue;
                    }
                }
                if due {
                    account.matched += 1
                } else {
                    not_due += 1
                }
                files.push(Seen { path, gzip, fingerprint: Fingerprint::of(&meta), active, hits: u64::from(due) });
                continue;
            }
            let fingerprint = Fingerprint::of(&meta);
            if let Some(old) =
                before.and_then(|b| b.files.iter().find(|s| s.path == path && s.fingerprint == fingerprint))
            {
                files.push(Seen { path, gzip, fingerprint, active, hits: old.hits });
                continue;
            }
            let mut file = Account::default();
            let mut judge = |record: &[u8]| {
                match look {
                    Look::Times(clock, holds) => match clock.age(record) {
                        Age::Due => match held_by(holds, record) {
                            Ok(None) => file.matched += 1,
                            Ok(Some(hold)) => file.add_held(hold, 1),
                            Err(reason) => file.add_unreadable(reason, 1),
                        },
                        Age::NotDue => *file.not_due.get_or_insert(0) += 1,
                        Age::Unreadable(reason) => file.add_unreadable(reason, 1),
                        Age::Blank => {}
                    },
                    Look::Subject(matcher) => match matcher.find(record) {
                        Found::Yes => file.matched += 1,
                        Found::Unsure(reason) => file.add_unreadable(reason, 1),
                        Found::No => {}
                    },
                    Look::Files(..) => {}
                }
                Verdict::Keep
            };
            let mut ahead = Ahead::default();
            let mut clear = |lines: &[u8], at: u64| look.clear(lines, at, &mut ahead);
            match rewrite::scan(&path, gzip, r.framing, look.clears().then_some(&mut clear), &mut judge) {
                Ok(Some(scanned)) => {
                    file.add_unreadable(UnreadableReason::UnreadableRecord, scanned.pass.oversized);
                    account.matched += file.matched;
                    not_due += file.not_due.unwrap_or(0);
                    for u in &file.unreadable {
                        account.add_unreadable(u.reason, u.count);
                    }
                    for h in &file.retained {
                        account.add_held(h.hold.as_deref().unwrap_or_default(), h.count);
                    }
                    let active = activity.is_active(&scanned.meta);
                    files.push(Seen { path, gzip, fingerprint: scanned.fingerprint, active, hits: file.matched });
                }
                Ok(None) | Err(FileError::Changed) => {}
                // What a corrupt file was found to hold cannot be trusted.
                Err(FileError::Corrupt) => account.add_unreadable(UnreadableReason::UnreadableFile, 1),
                Err(FileError::Store(e)) => return Err(e),
            }
        }
        if !matches!(look, Look::Subject(_)) {
            account.not_due = Some(not_due);
        }
        Ok(Survey { files, account, temps: listing.temps, activity })
    }

    /// Deletes or rewrites what the survey found, file by file, within the
    /// budget; files still being written are left for later.
    fn act(
        &self,
        r: &Resolved,
        look: &Look<'_>,
        survey: &Survey,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        rewrite::remove_stale(&survey.temps);
        if let Look::Files(..) = look {
            return self.remove_whole(survey, options, report);
        }
        let started = Instant::now();
        for seen in survey.files.iter().filter(|s| s.hits > 0 && !s.active) {
            if options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let reserved = options.reserve(seen.hits);
            if reserved == 0 {
                return Err(options.budget_spent(report.account.deleted));
            }
            let batch_started = Instant::now();
            let deleted = match self.act_on(r, look, seen, reserved) {
                Ok(n) => n,
                Err(e) => {
                    options.refund(reserved);
                    return Err(e);
                }
            };
            options.refund(reserved - deleted.min(reserved));
            report.record_batch(options, reserved, deleted, batch_started.elapsed());
            if reserved < seen.hits {
                return Err(options.budget_spent(report.account.deleted));
            }
            if let Some(wait) = options.pace(report.account.deleted, started) {
                std::thread::sleep(wait.min(Duration::from_secs(5)));
            }
        }
        Ok(())
    }

    /// Deletes at most `limit` records of one file; returns how many went.
    fn act_on(&self, r: &Resolved, look: &Look<'_>, seen: &Seen, limit: u64) -> Result<u64, StoreError> {
        let mut left = limit;
        let mut judge = |record: &[u8]| {
            let hit = match look {
                Look::Times(clock, holds) => clock.age(record) == Age::Due && held_by(holds, record) == Ok(None),
                Look::Subject(matcher) => matcher.find(record) == Found::Yes,
                Look::Files(..) => false,
            };
            if hit && left > 0 {
                left -= 1;
                Verdict::Drop
            } else {
                Verdict::Keep
            }
        };
        // A file whose every record was due goes whole; an erasure leaves
        // an empty file for its writer.
        let remove_if_empty = matches!(look, Look::Times(..));
        let mut ahead = Ahead::default();
        let mut clear = |lines: &[u8], at: u64| look.clear(lines, at, &mut ahead);
        let clear = look.clears().then_some(&mut clear as _);
        match rewrite::rewrite(&seen.path, seen.gzip, r.framing, &seen.fingerprint, remove_if_empty, clear, &mut judge)
        {
            Ok(Rewritten::Replaced { dropped } | Rewritten::Removed { dropped }) => Ok(dropped),
            // Changed since it was judged (or no longer decompresses): the
            // read-back tells what is left.
            Ok(Rewritten::Unchanged) | Err(FileError::Changed | FileError::Corrupt) => Ok(0),
            Err(FileError::Store(e)) => Err(e),
        }
    }

    /// Deletes whole due files in batches, each file only if it is still
    /// the file that was judged; one flush per directory and batch.
    fn remove_whole(
        &self,
        survey: &Survey,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let due: Vec<&Seen> = survey.files.iter().filter(|s| s.hits > 0 && !s.active).collect();
        let size = options.max_batch_size.clamp(1, 10_000) as usize;
        let started = Instant::now();
        for chunk in due.chunks(size) {
            if options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let reserved = options.reserve(chunk.len() as u64);
            if reserved == 0 {
                return Err(options.budget_spent(report.account.deleted));
            }
            let batch_started = Instant::now();
            let mut deleted = 0;
            let mut dirs = Vec::new();
            for seen in &chunk[..reserved as usize] {
                let unchanged =
                    std::fs::symlink_metadata(&seen.path).is_ok_and(|m| Fingerprint::of(&m) == seen.fingerprint);
                if !unchanged {
                    continue;
                }
                match std::fs::remove_file(&seen.path) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        options.refund(reserved - deleted);
                        return Err(io_error(&seen.path, e));
                    }
                }
                dirs.extend(seen.path.parent());
            }
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                rewrite::sync_dir(dir)?;
            }
            options.refund(reserved - deleted);
            report.record_batch(options, reserved, deleted, batch_started.elapsed());
            if (reserved as usize) < chunk.len() {
                return Err(options.budget_spent(report.account.deleted));
            }
            if let Some(wait) = options.pace(report.account.deleted, started) {
                std::thread::sleep(wait.min(Duration::from_secs(5)));
            }
        }
        Ok(())
    }

    /// A whole purge or erasure: survey, act, read back, and the account.
    fn run(&self, r: &Resolved, look: &Look<'_>, options: &PurgeOptions) -> Result<PurgeReport, Incomplete> {
        let survey = self.survey(r, look, None)?;
        let mut report = PurgeReport::empty(options);
        report.account = survey.account.clone();
        if options.mode == Mode::DryRun {
            report.account.remaining = Some(report.account.matched);
            return Ok(report);
        }
        if let Err(e) = self.act(r, look, &survey, options, &mut report) {
            return Err(Incomplete::after(e, &report));
        }
        let after = self.survey(r, look, Some(&survey)).map_err(|e| Incomplete::after(e, &report))?;
        let remaining = after.hits();
        report.account.remaining = Some(remaining);
        let (files, waiting) = after.waiting();
        let error = if waiting > 0 {
            Some(StoreError::FilesInUse { files, records: waiting, quiet_seconds: after.activity.quiet_seconds() })
        } else if remaining > 0 {
            Some(StoreError::NotVerified { deleted: report.account.deleted, remaining })
        } else if matches!(look, Look::Subject(_)) && !report.account.unreadable.is_empty() {
            let summary = report.account.unreadable_summary().unwrap_or_default();
            Some(StoreError::UnreadableRecords { records: report.account.unreadable_total(), summary })
        } else {
            None
        };
        match error {
            Some(e) => Err(Incomplete::after(e, &report)),
            None => Ok(report),
        }
    }

    /// Surveys for retention, by file or by line time.
    fn survey_due(&self, r: &Resolved, cutoff: &Cutoff) -> Result<Survey, StoreError> {
        match r.age {
            AgeRule::Lines => self.survey(r, &Look::Times(&self.clock(r, cutoff)?, &r.holds), None),
            _ => self.survey(r, &Look::Files(cutoff, &r.holds), None),
        }
    }

    /// The hold that keeps a record of a whole file, if one does.
    fn file_held(
        &self,
        path: &std::path::Path,
        gzip: bool,
        r: &Resolved,
        holds: &[Holding],
    ) -> Result<Option<String>, UnreadableReason> {
        if holds.is_empty() {
            return Ok(None);
        }
        let mut found: Result<Option<String>, UnreadableReason> = Ok(None);
        let scanned = rewrite::scan(path, gzip, r.framing, None, &mut |record: &[u8]| {
            if matches!(found, Ok(None)) {
                found = held_by(holds, record).map(|h| h.map(str::to_owned));
            }
            Verdict::Keep
        });
        match scanned {
            Ok(_) | Err(FileError::Changed) => found,
            Err(FileError::Corrupt | FileError::Store(_)) => Err(UnreadableReason::UnreadableFile),
        }
    }
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidTarget { store: KIND, detail }
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> StoreError {
    super::io_error(KIND, path, e)
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    super::blocking(KIND, f).await
}

impl Store for FileStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn keeps_held_subjects(&self) -> bool {
        true
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            let root = self.root.clone();
            blocking(move || glob::canonical_root(&root)).await?;
            Ok(ProbeReport { kind: KIND, server_version: "local directory".to_owned() })
        })
    }

    fn check_target<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.resolve(target)?;
            let root = self.root.clone();
            blocking(move || glob::canonical_root(&root).map(|_| ())).await
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let (me, r, cutoff) = (self.clone(), self.resolve(target)?, cutoff.clone());
            blocking(move || Ok(me.survey_due(&r, &cutoff)?.account.matched)).await
        })
    }

    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let (me, r) = (self.clone(), self.resolve(target)?);
            blocking(move || {
                // Any cutoff sorts every record into due, not due or unreadable.
                let now = Timestamp::now();
                let cutoff = Cutoff::planned(now, now).expect("a cutoff at the run's start");
                let a = me.survey_due(&r, &cutoff)?.account;
                Ok(Some(a.matched + a.not_due.unwrap_or(0) + a.unreadable_total()))
            })
            .await
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let (me, r, cutoff, options) = (self.clone(), self.resolve(target)?, cutoff.clone(), options.clone());
            blocking(move || {
                let result = match r.age {
                    AgeRule::Lines => {
                        let clock = me.clock(&r, &cutoff)?;
                        me.run(&r, &Look::Times(&clock, &r.holds), &options)
                    }
                    _ => me.run(&r, &Look::Files(&cutoff, &r.holds), &options),
                };
                Ok(result)
            })
            .await?
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let r = self.resolve(target)?;
            let Some(matcher) = SubjectMatcher::new(&target.subject_fields, r.format, subject)? else { return Ok(0) };
            let me = self.clone();
            blocking(move || Ok(me.survey(&r, &Look::Subject(&matcher), None)?.account.matched)).await
        })
    }

    fn export_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        limit: u64,
    ) -> StoreFuture<'a, SubjectExport> {
        Box::pin(async move {
            let r = self.resolve(target)?;
            let Some(matcher) = SubjectMatcher::new(&target.subject_fields, r.format, subject)? else {
                return Ok(SubjectExport::default());
            };
            let me = self.clone();
            blocking(move || me.export(&r, &matcher, limit)).await
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a> {
        Box::pin(async move {
            let r = self.resolve(target)?;
            let Some(matcher) = SubjectMatcher::new(&target.subject_fields, r.format, subject)? else {
                let mut nothing = PurgeReport::empty(options);
                nothing.account.remaining = Some(0);
                return Ok(nothing);
            };
            let (me, options) = (self.clone(), options.clone());
            blocking(move || Ok(me.run(&r, &Look::Subject(&matcher), &options))).await?
        })
    }
}
