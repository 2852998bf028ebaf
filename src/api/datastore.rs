//! DataStore: how to reach one store. Credentials stay in a Secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::SecretReference;

/// How to reach one store that holds personal data: a PostgreSQL, MySQL or
/// MariaDB database, a SQLite file, an S3-compatible bucket service, an
/// OpenSearch or Elasticsearch cluster, a directory of log files, or a
/// directory whose subdirectories are buckets. Set exactly one of postgres,
/// mysql, sqlite, s3, opensearch, files or localBuckets.
/// Credentials are never written here: they are read from the Secret that
/// credentialsSecret names.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "delenda.dev",
    version = "v1alpha1",
    kind = "DataStore",
    plural = "datastores",
    shortname = "dstore",
    category = "delenda",
    namespaced,
    status = "DataStoreStatus",
    doc = "A store that holds personal data and how to reach it. Exactly one of postgres, mysql, sqlite, s3, opensearch, files or localBuckets is set.",
    printcolumn(name = "Type", type_ = "string", json_path = ".status.storeType", description = "Kind of store"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the last probe reached the store"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.serverVersion",
        priority = 1,
        description = "Server version reported by the store"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("[has(self.postgres), has(self.mysql), has(self.sqlite), has(self.s3), has(self.opensearch), has(self.files), has(self.localBuckets)].filter(x, x).size() == 1").message("set exactly one of postgres, mysql, sqlite, s3, opensearch, files or localBuckets"))]
#[serde(rename_all = "camelCase")]
pub struct DataStoreSpec {
    /// A PostgreSQL database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<SqlServer>,
    /// A MySQL or MariaDB database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<SqlServer>,
    /// A SQLite database file on a volume mounted into the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteFile>,
    /// An S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Service>,
    /// An OpenSearch cluster, or Elasticsearch 7 or 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch: Option<SearchCluster>,
    /// A directory of log files on a volume mounted into the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<LogDirectory>,
    /// A directory on a volume mounted into the operator whose
    /// subdirectories are buckets, for the embedded default and small
    /// installs. Objects targets work on it as on an S3 bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_buckets: Option<BucketDirectory>,
    /// Limits that keep a purge gentle on this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<StoreLimits>,
    /// The IANA time zone in which this store's applications write times
    /// that carry no zone of their own (`timestamp without time zone`,
    /// `DATETIME`, `DATE`, SQLite text without an offset, log line times
    /// without an offset), like Europe/Amsterdam. A target's own timeZone
    /// overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'UTC' || self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')").message("must be an IANA time zone name like Europe/Amsterdam or UTC"))]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// How far, in seconds, the store's clock may differ from the
    /// operator's before a run stops without deleting anything (reason
    /// ClockSkew): whether a record is due depends on "now". 300 when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_clock_skew_seconds: Option<u32>,
    /// What policies may reach in this store, as glob patterns (`*` any
    /// run of characters): table names (`public.calls_*`), `bucket/prefix`
    /// (`recordings/support/*`), index patterns (`logs-web-*`) or file
    /// globs below the root (`web/*.log*`). A target outside every pattern
    /// is refused (reason TargetNotAllowed) and never run. Every target is
    /// allowed when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 512)))]
    pub allowed_targets: Option<Vec<String>>,
}

impl DataStoreSpec {
    /// Whether a target's address (table, `bucket/prefix`, index pattern or
    /// file glob) lies within the allowed patterns. A `*` in the address
    /// is an ordinary character here: `logs-*` allows `logs-web-*`, but
    /// `*` allows nothing narrower than everything.
    pub fn allows(&self, address: &str) -> bool {
        let Some(patterns) = &self.allowed_targets else { return true };
        address.split(',').map(str::trim).all(|part| patterns.iter().any(|p| glob_matches(p, part)))
    }
}

/// Whether `text` matches `pattern`, whose `*` matches any run of
/// characters (also none) and every other character only itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod allow_tests {
    use super::*;

    fn spec(patterns: &[&str]) -> DataStoreSpec {
        serde_json::from_value(serde_json::json!({"sqlite": {"path": "/x"}, "allowedTargets": patterns})).unwrap()
    }

    #[test]
    fn targets_are_allowed_only_within_the_patterns() {
        let s = spec(&["public.calls_*", "recordings/support/*", "logs-*"]);
        assert!(s.allows("public.calls_2026"));
        assert!(!s.allows("public.customers"));
        assert!(s.allows("recordings/support/2026/"));
        assert!(!s.allows("recordings/"), "a prefix wider than allowed");
        assert!(s.allows("logs-web-*"));
        assert!(!s.allows("*"), "a pattern wider than allowed");
        assert!(!s.allows("logs-web-*,customers"), "every part of a comma list must be allowed");
        let open: DataStoreSpec = serde_json::from_value(serde_json::json!({"sqlite": {"path": "/x"}})).unwrap();
        assert!(open.allows("anything"));
    }
}

/// The clock skew a run tolerates when the DataStore says nothing.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u32 = 300;

/// A SQL server and database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlServer {
    /// Host name or IP address of the server.
    #[x_kube(validation = Rule::new("size(self) > 0 && size(self) <= 253 && !self.contains('/') && !self.contains(' ')").message("must be a host name or IP address, without scheme, port or path"))]
    pub host: String,
    /// TCP port; 5432 for PostgreSQL and 3306 for MySQL when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Name of the database.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// Secret with the keys `username` and `password`.
    pub credentials_secret: SecretReference,
    /// TLS towards the server. Require verifies the certificate chain;
    /// Prefer falls back to plain TCP; Disable never uses TLS.
    #[serde(default)]
    pub tls: TlsMode,
}

/// TLS towards a SQL server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TlsMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it.
    Prefer,
    /// Require TLS and verify the server's certificate and host name.
    #[default]
    Require,
}

/// A SQLite database file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteFile {
    /// Absolute path of the database file inside the operator's container.
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')").message("must be an absolute path without '..'"))]
    #[schemars(length(max = 4096))]
    pub path: String,
}

/// An S3-compatible service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Service {
    /// Endpoint URL for S3-compatible servers (Ceph, SeaweedFS, versitygw,
    /// Garage); omit for AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("must be an http:// or https:// URL"))]
    #[schemars(length(max = 2048))]
    pub endpoint: Option<String>,
    /// Region of the buckets.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Address buckets as a path (`endpoint/bucket`) instead of a host name
    /// (`bucket.endpoint`); most self-hosted servers need this.
    #[serde(default)]
    pub path_style: bool,
    /// Secret with the keys `accessKeyId` and `secretAccessKey`.
    pub credentials_secret: SecretReference,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// An OpenSearch or Elasticsearch cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchCluster {
    /// Base URL of the cluster's REST API.
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("must be an http:// or https:// URL"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// Secret with the keys `username` and `password`, for basic
    /// authentication; omit for a cluster without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,
}

/// A directory of log files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogDirectory {
    /// Absolute path of the directory inside the operator's container.
    /// Targets' globs are relative to it and cannot leave it.
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..') && self != '/'").message("must be an absolute path other than '/', without '..'"))]
    #[schemars(length(max = 4096))]
    pub root: String,
}

/// A directory whose subdirectories are buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketDirectory {
    /// Absolute path of the directory inside the operator's container. Each
    /// subdirectory is a bucket; the files under it are its objects, keyed
    /// by their path relative to the bucket with '/' between segments.
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..') && self != '/'").message("must be an absolute path other than '/', without '..'"))]
    #[schemars(length(max = 4096))]
    pub root: String,
}

/// Limits that keep a purge gentle on a store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreLimits {
    /// Connections or requests in flight at once for each run on this
    /// store; 4 when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrency: Option<u32>,
    /// Records deleted per second at most by each run on this store (runs of
    /// different policies are paced separately).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_deletes_per_second: Option<u32>,
}

/// What the operator last found out about the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStoreStatus {
    /// Kind of store: postgres, mysql, sqlite, s3, opensearch, files or
    /// localBuckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_type: Option<String>,
    /// Version the server reported at the last successful probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: whether the last probe reached the store, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl DataStoreSpec {
    /// The kind of store this spec describes, by the name of its field.
    pub fn store_type(&self) -> Option<&'static str> {
        [
            self.postgres.as_ref().map(|_| "postgres"),
            self.mysql.as_ref().map(|_| "mysql"),
            self.sqlite.as_ref().map(|_| "sqlite"),
            self.s3.as_ref().map(|_| "s3"),
            self.opensearch.as_ref().map(|_| "opensearch"),
            self.files.as_ref().map(|_| "files"),
            self.local_buckets.as_ref().map(|_| "localBuckets"),
        ]
        .into_iter()
        .flatten()
        .next()
    }
}
