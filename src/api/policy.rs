//! RetentionPolicy: one row of a privacy statement's retention table.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::account::Account;
use super::common::{DataStoreReference, Mode, PreciseTime};
use super::names::{BucketName, Category, FieldName, IdentityName, IndexPattern, SqlIdentifier, TableName};
use super::period::RetentionPeriod;

/// One data category of a privacy statement's retention table: what is kept,
/// why, for how long, and where it lives. On schedule the operator deletes
/// every record past its retention period from each target, proves by
/// reading back that none remains, and records the evidence in status.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "delenda.dev",
    version = "v1alpha1",
    kind = "RetentionPolicy",
    plural = "retentionpolicies",
    shortname = "retpol",
    category = "delenda",
    namespaced,
    status = "RetentionPolicyStatus",
    doc = "One data category of a privacy statement's retention table, enforced on a schedule across the stores that hold it.",
    printcolumn(name = "Category", type_ = "string", json_path = ".spec.category"),
    printcolumn(name = "Retention", type_ = "string", json_path = ".spec.retention.period"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Last Run", type_ = "date", json_path = ".status.lastRun.finishedAt"),
    printcolumn(
        name = "Compliant",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Compliant\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.targets.all(t, self.targets.exists_one(u, u.name == t.name))").message("target names must be unique within a policy"))]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicySpec {
    /// Short name of the data category, like call-records or support-tickets.
    /// ErasureRequests select policies by it.
    pub category: Category,
    /// What the data is, in the words of the privacy statement.
    #[schemars(length(min = 1, max = 2048))]
    pub description: String,
    /// Who decides about this data under the GDPR (the controller): `self`,
    /// the operator's owner, or `customer`, a customer organisation for which
    /// the owner acts as processor.
    pub responsible_party: ResponsibleParty,
    /// The customer organisation that is controller, when responsibleParty
    /// is customer and the data belongs to one customer only. Recorded in the
    /// evidence of every run. Where the data of many customers shares a
    /// store, leave it out: an ErasureRequest's onBehalfOf names the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub customer: Option<String>,
    /// The lawful basis of processing under GDPR Article 6(1).
    pub legal_basis: LegalBasis,
    /// The purpose or interest behind the legal basis, in words (for example
    /// "training support staff").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub purpose: Option<String>,
    /// How long records are kept.
    pub retention: Retention,
    /// When the policy runs.
    pub schedule: Schedule,
    /// Enforce deletes what is due; DryRun (the default) only counts it.
    #[serde(default)]
    pub mode: Mode,
    /// Stop scheduling runs; a run in progress finishes.
    #[serde(default)]
    pub suspend: bool,
    /// Limits that stop a run before its first delete when it would delete
    /// more than expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<Guardrails>,
    /// Where the data of this category lives.
    #[schemars(length(min = 1, max = 32))]
    pub targets: Vec<Target>,
}

/// The controller of the data under the GDPR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResponsibleParty {
    /// The operator's owner is the controller.
    #[serde(rename = "self")]
    SelfOwned,
    /// A customer organisation is the controller; the owner is its processor.
    Customer,
}

/// The lawful bases of GDPR Article 6(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LegalBasis {
    /// (a) The data subject consented.
    Consent,
    /// (b) Needed to perform a contract with the data subject.
    Contract,
    /// (c) Needed to comply with a legal obligation. Data kept on this basis
    /// survives an erasure request until its period ends (Art. 17(3)(b)).
    LegalObligation,
    /// (d) Needed to protect someone's vital interests.
    VitalInterests,
    /// (e) Needed for a task in the public interest.
    PublicTask,
    /// (f) Needed for the legitimate interests of the controller.
    LegitimateInterests,
}

/// How long records are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// The retention period in calendar units, counted from each target's
    /// time field: 90d, 2w, 6mo, 1y, 3 years, or ISO 8601 like P6M. "6mo" is
    /// six calendar months, not 180 days; a bare "m" is refused as ambiguous.
    /// For "until end of service", point the time field at the contract's
    /// end: records whose end is not set are never due.
    pub period: RetentionPeriod,
}

/// When a policy runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// A five-field cron expression (minute hour day-of-month month
    /// day-of-week), like "30 2 * * *" for 02:30 every day. Checked by the
    /// operator, which reports a bad expression in the Valid condition.
    #[x_kube(validation = Rule::new("self.split(' ').filter(f, f != '').size() == 5").message("must be a cron expression with five fields: minute hour day-of-month month day-of-week, like '30 2 * * *'"))]
    #[schemars(length(min = 9, max = 128))]
    pub cron: String,
    /// IANA time zone of the schedule and of the calendar on which periods
    /// are counted, like Europe/Amsterdam. UTC when omitted.
    #[serde(default = "default_time_zone")]
    #[x_kube(validation = Rule::new("self == 'UTC' || self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')").message("must be an IANA time zone name like Europe/Amsterdam or UTC"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// Limits that stop a run before its first delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Guardrails {
    /// The most records one run may delete, over all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_records_per_run: Option<i64>,
    /// The most a run may delete from one target, as a percentage of the
    /// records the target holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent_per_run: Option<u8>,
}

/// One place where the data of a category lives. Set exactly one of table,
/// objects, logs or files, matching the type of the DataStore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.table), has(self.objects), has(self.logs), has(self.files)].filter(x, x).size() == 1").message("set exactly one of table, objects, logs or files"))]
#[x_kube(validation = Rule::new("!has(self.subjectFields) || !(has(self.table) || has(self.logs) || has(self.files)) || self.subjectFields.all(s, has(s.field))").message("subject fields of table, logs and files targets name a field (a column or a record field)"))]
#[x_kube(validation = Rule::new("!has(self.subjectFields) || !has(self.objects) || self.subjectFields.all(s, !has(s.field))").message("subject fields of objects targets use keyTemplate, tag or metadata, not field"))]
#[x_kube(validation = Rule::new("!has(self.subjectFields) || !has(self.table) || self.subjectFields.all(s, !has(s.field) || s.field.matches('^[A-Za-z_][A-Za-z0-9_]*$'))").message("subject fields of a table target name a column: a plain SQL identifier (letters, digits, underscores)"))]
pub struct Target {
    /// Name of the target, unique within the policy; it appears in status and evidence.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a lowercase name of letters, digits and hyphens"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The DataStore that holds the data.
    pub data_store_ref: DataStoreReference,
    /// Rows of a SQL table (postgres, mysql, sqlite stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Box<TableTarget>>,
    /// Objects in a bucket (s3 and localBuckets stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Box<ObjectsTarget>>,
    /// Documents in indices (opensearch stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Box<LogsTarget>>,
    /// Log files (files stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Box<FilesTarget>>,
    /// Where this target holds the identities of a data subject, so an
    /// ErasureRequest can find them. A target without subject fields is left
    /// alone by erasure requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub subject_fields: Vec<SubjectField>,
    /// Set by the operator for one run or erasure, never read from a
    /// manifest: the Holds that keep records of this target.
    // Never serialized (`hidden` is always true) and never deserialized;
    // written this way rather than `skip` because the schema derive's
    // private copy of this struct would otherwise never read the field.
    #[serde(
        skip_deserializing,
        skip_serializing_if = "super::hold::Held::hidden",
        serialize_with = "super::hold::Held::never"
    )]
    #[schemars(skip)]
    pub held: super::hold::Held,
}

impl Target {
    /// What the target reaches in its store, as DataStores' `allowedTargets`
    /// judge it: the table and its declared children, `bucket/prefix`, the
    /// index pattern, or the file glob.
    pub fn addresses(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = &self.table {
            out.push(t.name.as_str().to_owned());
            out.extend(t.children.iter().map(|c| c.name.as_str().to_owned()));
        }
        if let Some(o) = &self.objects {
            out.push(format!("{}/{}", o.bucket.as_str(), o.prefix));
        }
        if let Some(l) = &self.logs {
            out.push(l.index_pattern.as_str().to_owned());
        }
        if let Some(f) = &self.files {
            out.push(f.glob.clone());
        }
        out
    }
}

/// Rows of a SQL table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableTarget {
    /// The table, optionally schema-qualified (billing.call_records).
    pub name: TableName,
    /// The column retention counts from: a timestamp or date. Rows where it
    /// is NULL are never due, which is how "until end of service" works.
    pub time_column: SqlIdentifier,
    /// The column that identifies a row, for keyed batches. The primary key
    /// when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_column: Option<SqlIdentifier>,
    /// Only rows that match every condition are in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub filter: Vec<ColumnCondition>,
    /// A column holding each row's own retention period, where the period is
    /// set per customer or per record, counted on the policy's calendar.
    /// Rows where it is NULL use the policy's period (unless required is
    /// set); a period of zero, below zero or over 100 years is never acted
    /// on: such rows are counted as unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_column: Option<PeriodColumn>,
    /// Child tables whose rows belong to a row of this one; erasure deletes
    /// them first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub children: Vec<ChildTable>,
    /// For PostgreSQL tables partitioned by range on the time column: drop
    /// partitions whose upper bound is at or before the cutoff, instead of
    /// deleting their rows one by one. Refused for other stores and tables,
    /// and for targets with a filter or periodColumn (a partition's rows
    /// would not all be due).
    #[serde(default)]
    pub drop_expired_partitions: bool,
    /// The IANA time zone the time column's values were written in, for
    /// columns that hold times without a zone (`timestamp without time
    /// zone`, `DATETIME`, `DATE`, SQLite text without an offset). Overrides
    /// the DataStore's timeZone. Such a column with no zone declared is
    /// refused: reading it as UTC would delete records hours early or late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'UTC' || self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')").message("must be an IANA time zone name like Europe/Amsterdam or UTC"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// How the time column holds its times: Native (the column's own time
    /// type; ISO 8601 or RFC 2822 text in SQLite), UnixSeconds or
    /// UnixMilliseconds (an integer count since 1970-01-01 UTC).
    #[serde(default)]
    pub time_format: TimeFormat,
}

/// How a column holds its times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TimeFormat {
    /// The column's own time type; in SQLite, ISO 8601 or RFC 2822 text.
    #[default]
    Native,
    /// Whole seconds since 1970-01-01 UTC.
    UnixSeconds,
    /// Milliseconds since 1970-01-01 UTC.
    UnixMilliseconds,
}

/// A condition on a column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.operator in ['IsNull', 'IsNotNull']) == (!has(self.values) || size(self.values) == 0)").message("IsNull and IsNotNull take no values; the other operators need at least one"))]
#[x_kube(validation = Rule::new("!(self.operator in ['Equals', 'NotEquals']) || !has(self.values) || size(self.values) == 1").message("Equals and NotEquals take exactly one value; use In or NotIn for several"))]
pub struct ColumnCondition {
    /// The column compared.
    pub column: SqlIdentifier,
    /// How the column is compared with the values.
    pub operator: ColumnOperator,
    /// The values, as text; they are passed to the database as bound
    /// parameters, never pasted into SQL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub values: Vec<String>,
}

/// Comparison operators of a column condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ColumnOperator {
    /// column = value
    Equals,
    /// column <> value
    NotEquals,
    /// column IN (values)
    In,
    /// column NOT IN (values)
    NotIn,
    /// column IS NULL
    IsNull,
    /// column IS NOT NULL
    IsNotNull,
}

/// A column holding a row's own retention period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeriodColumn {
    /// An integer column.
    pub name: SqlIdentifier,
    /// The calendar unit of the column's numbers.
    pub unit: PeriodUnit,
    /// When true, rows whose period is NULL are counted as unreadable and
    /// kept, instead of following the policy's period.
    #[serde(default)]
    pub required: bool,
}

/// A calendar unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PeriodUnit {
    /// Days.
    Days,
    /// Calendar months.
    Months,
    /// Calendar years.
    Years,
}

/// A table whose rows belong to rows of the target's table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildTable {
    /// The child table.
    pub name: TableName,
    /// The child's column that refers to the parent.
    pub foreign_key: SqlIdentifier,
    /// The parent's column it refers to; the parent's key column when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_key: Option<SqlIdentifier>,
}

/// Objects in a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.age == 'KeyDate') == has(self.keyDatePattern)").message("keyDatePattern is required when age is KeyDate, and only then"))]
pub struct ObjectsTarget {
    /// The bucket.
    pub bucket: BucketName,
    /// Only keys under this prefix are in scope; the whole bucket when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(s, s == '..')").message("must not start with '/' or contain a '..' segment"))]
    #[schemars(length(max = 1024))]
    pub prefix: String,
    /// Where an object's age comes from: LastModified (the default), or
    /// KeyDate, a date written in the key.
    #[serde(default)]
    pub age: ObjectAge,
    /// The layout of the date in the key, relative to the prefix, with
    /// {yyyy}, {mm}, {dd} and optionally {hh}: like "calls/{yyyy}/{mm}/{dd}/".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.contains('{yyyy}') && self.contains('{mm}')").message("must contain at least {yyyy} and {mm}"))]
    #[schemars(length(max = 256))]
    pub key_date_pattern: Option<String>,
    /// A tag holding an object's own retention period (like 90d or 1y), where
    /// the period is chosen per customer. Objects without the tag use the
    /// policy's period; objects whose tag is not a valid period are never
    /// deleted, and are reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub period_tag: Option<String>,
    /// In a versioned bucket: All deletes every version of a due object
    /// (the default; a retention promise covers old versions too), Current
    /// only the current one, leaving a delete marker.
    #[serde(default)]
    pub versions: ObjectVersions,
}

/// Where an object's age comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ObjectAge {
    /// The object's last-modified time.
    #[default]
    LastModified,
    /// A date in the object's key, laid out as keyDatePattern says.
    KeyDate,
}

/// Which versions of a due object go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ObjectVersions {
    /// Every version.
    #[default]
    All,
    /// Only the current version.
    Current,
}

/// Documents in OpenSearch or Elasticsearch indices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogsTarget {
    /// Index name or pattern, like traffic-* (a lone * is refused).
    pub index_pattern: IndexPattern,
    /// The field retention counts from, like @timestamp.
    pub time_field: FieldName,
    /// Delete whole indices whose newest document is before the cutoff
    /// (asked of the store, never guessed from the index name).
    #[serde(default = "default_true")]
    pub delete_expired_indices: bool,
}

fn default_true() -> bool {
    true
}

/// Log files in a files DataStore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.age == 'NameDate') == has(self.nameDatePattern)").message("nameDatePattern is required when age is NameDate, and only then"))]
#[x_kube(validation = Rule::new("self.age != 'LineTime' || has(self.timeField) || has(self.lineTimeFormat)").message("age LineTime needs timeField (JsonLines files) or lineTimeFormat (Text files)"))]
#[x_kube(validation = Rule::new("!has(self.timeField) || self.age == 'LineTime'").message("timeField is read only with age LineTime"))]
#[x_kube(validation = Rule::new("!has(self.timeField) || self.format == 'JsonLines'").message("timeField names a field of JsonLines files; for Text files set lineTimeFormat"))]
#[x_kube(validation = Rule::new("!has(self.lineTimeFormat) || self.format == 'Text'").message("lineTimeFormat is for Text files; for JsonLines files set timeField"))]
pub struct FilesTarget {
    /// Glob relative to the DataStore's root, like "web/access-*.log".
    /// Files ending in .gz are read and rewritten as gzip.
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(s, s == '..')").message("must be relative to the DataStore's root, without a '..' segment"))]
    #[schemars(length(min = 1, max = 1024))]
    pub glob: String,
    /// Where a record's age comes from: ModificationTime (the default: a
    /// whole file is one record, due when it was last modified before the
    /// cutoff), NameDate (a whole file, due when the period a date in its
    /// name names has ended), or LineTime (each record in a file has its
    /// own time: timeField or lineTimeFormat; due records are removed from
    /// the file and every other byte is kept).
    #[serde(default)]
    pub age: FileAge,
    /// The layout of the date in the file name, with {yyyy}, {mm}, {dd},
    /// like "access-{yyyy}-{mm}-{dd}.log".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.contains('{yyyy}') && self.contains('{mm}')").message("must contain at least {yyyy} and {mm}"))]
    #[schemars(length(max = 256))]
    pub name_date_pattern: Option<String>,
    /// How lines are written: Text, or JsonLines (one JSON object a line,
    /// whose fields subject fields can name).
    #[serde(default)]
    pub format: FileFormat,
    /// With age LineTime, for JsonLines files: the field holding each
    /// line's time, like "ts" or "@timestamp" (nested as "event.created").
    /// Lines without it, or with a value that is not a time, are kept and
    /// counted as unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<FieldName>,
    /// For Text files: the form of the time every record starts with (see
    /// LineTimeFormat). Required with age LineTime; with another age it
    /// only says where records start, for erasure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_time_format: Option<LineTimeFormat>,
    /// How timeField holds numbers: Native (numbers are refused as
    /// ambiguous and counted as unreadable), UnixSeconds or
    /// UnixMilliseconds. Text times are read as lineTimeFormat says.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// The IANA time zone in which line times without an offset were
    /// written, like Europe/Amsterdam. Overrides the DataStore's timeZone.
    /// Without either, such lines are kept and counted as unreadable
    /// (NoTimeZone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'UTC' || self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')").message("must be an IANA time zone name like Europe/Amsterdam or UTC"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// A file modified within this many seconds, or held open for writing
    /// by a process the operator can see, is still being written: it is
    /// neither rewritten nor deleted, since a writer holding it open would
    /// go on writing into a file no longer there. Its due records (and an
    /// erased subject's) wait until it is rotated or quiet, counted as
    /// remaining. 300 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub quiet_seconds: Option<u32>,
}

/// Where a file record's age comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum FileAge {
    /// The file's modification time: the whole file is one record.
    #[default]
    ModificationTime,
    /// A date in the file's name: the whole file is one record.
    NameDate,
    /// Each record's own time, read from the line (timeField or
    /// lineTimeFormat).
    LineTime,
}

/// For Text files: the form of the time every record starts with (with
/// age LineTime, the record's time; otherwise only where records start, for
/// erasure). Iso8601: a date like 2026-05-28, optionally followed by a
/// time (T or a space between, like 2026-05-28 14:03:00,123) and an offset
/// (Z, +02:00, +0200, " -0500", " UTC"), at the start of the line or after
/// a '['. A line that does not start with one continues the record before
/// it (a stack trace); a time without an offset is read in timeZone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LineTimeFormat {
    /// ISO 8601 and RFC 3339 dates and times, at the start of the line or
    /// after a '['.
    Iso8601,
}

/// The format of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum FileFormat {
    /// Plain text. A record is a line with the lines after it that start
    /// with a space, a tab or "Caused by:" (with lineTimeFormat: every line up to the
    /// next one that starts with a time); an identity is found in it as a
    /// whole, as its kind says (e-mail addresses in any case, phone numbers
    /// normalised, other kinds as whole tokens of at least 6 characters).
    #[default]
    Text,
    /// One JSON object per line; an identity is compared with the whole
    /// value of the field a subject field names.
    JsonLines,
}

/// Where a target holds one kind of identity of a data subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.field), has(self.keyTemplate), has(self.tag), has(self.metadata)].filter(x, x).size() == 1").message("set exactly one of field, keyTemplate, tag or metadata"))]
pub struct SubjectField {
    /// The kind of identity: email, phone, ipAddress, customerId, imei, or a
    /// name of your own. It is the key of the value in an ErasureRequest's
    /// identity Secret.
    pub identity: IdentityName,
    /// The column (table targets) or record field (logs and files targets)
    /// that holds the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldName>,
    /// For objects: the key prefix of a subject's objects, with the identity
    /// as a placeholder, like "recordings/{customerId}/".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.contains('{') && self.contains('}') && !self.startsWith('/')").message("must contain the identity as a placeholder, like recordings/{customerId}/"))]
    #[schemars(length(max = 1024))]
    pub key_template: Option<String>,
    /// For objects: the tag whose value is the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// For objects: the user metadata key whose value is the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub metadata: Option<String>,
}

/// What the operator knows of the policy's runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicyStatus {
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the next run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,
    /// The run in progress: its id and cutoff are recorded before the first
    /// delete, so a restarted operator resumes with the same cutoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<Box<RunRecord>>,
    /// The last finished run, with per-target counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<Box<RunRecord>>,
    /// Earlier runs, newest first, at most ten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RunSummary>,
    /// The last `delenda.dev/run-now` value answered with a run: a value
    /// runs once, whatever runs come after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_now_answered: Option<String>,
    /// Valid: the spec passed the operator's checks. Compliant: the last run
    /// verified that nothing past its cutoff remains. EvidenceStored; Ready,
    /// Reconciling (a run in progress or retried) and Stalled (a person must
    /// act). One entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One run of a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run's id.
    pub id: String,
    /// Records whose time field is before this instant are due: the
    /// earliest instant whose time plus the retention period, on the
    /// policy's calendar, lies after the run's start.
    pub cutoff: PreciseTime,
    /// Enforce or DryRun.
    pub mode: Mode,
    /// The generation of the spec the run ran under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// For an Interrupted run, why: SpecChanged, Suspended, PolicyDeleted,
    /// ShuttingDown or LeaseLost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<String>,
    /// When the run started.
    pub started_at: Time,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Succeeded, Failed, Stopped (by a guardrail, before its first delete
    /// or when its budget of deletes ran out), or Interrupted (cancelled
    /// between batches; `interruptedBy` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// What happened at each target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetRun>,
    /// SHA-256 of the run's canonical evidence, chained to the previous run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The digest of the run before, or empty for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
}

/// What one run did at one target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRun {
    /// The target's name.
    pub name: String,
    /// Every record the run looked at, in exactly one place: deleted,
    /// retained, not due, unreadable or remaining.
    pub records: Account,
    /// Time spent, in milliseconds.
    #[serde(default)]
    pub duration_millis: i64,
    /// Why the target failed or stopped, as a stable word, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the target failed or stopped, in words, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A past run, in brief.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// The run's cutoff.
    pub cutoff: PreciseTime,
    /// Succeeded, Failed, Stopped or Interrupted.
    pub outcome: String,
    /// Records deleted over all targets.
    pub deleted: i64,
    /// The run's evidence digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
