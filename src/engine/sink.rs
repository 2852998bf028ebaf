//! The evidence sink: a bucket with S3 object lock where every sealed
//! record is also written, one object per record, locked in compliance
//! mode for the installation's retention. Nobody with rights in a
//! namespace, and nobody with the bucket's keys, can rewrite or delete a
//! record before its retention ends, so `delenda evidence verify` can
//! check the cluster's chains against it.
//!
//! Objects are named `<prefix><namespace>/<chain>/<position, 12 digits>.json`
//! and hold the sealed record as one JSON line.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};
use jiff::Timestamp;
use tokio::sync::OnceCell;

use super::evidence::SealedEvidence;
use crate::stores::objects::{BucketStore, S3Settings};

/// Where the sink is and how long it locks records.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// The S3 service.
    pub s3: S3Settings,
    /// The bucket; it must have object lock enabled.
    pub bucket: String,
    /// A prefix for every object name, like `delenda/`.
    pub prefix: String,
    /// How long each record stays locked (compliance mode).
    pub retention: Duration,
}

/// Why the sink did not take a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The bucket cannot lock objects.
    #[error(
        "the evidence sink bucket {0} does not have object lock enabled, so its records could be rewritten; create it with object lock (for example `aws s3api create-bucket --object-lock-enabled-for-bucket`)"
    )]
    NotLocked(String),
    /// The service failed or refused.
    #[error("the evidence sink bucket {bucket} refused: {detail}")]
    Service { bucket: String, detail: String },
    /// The sink holds a different record at a position.
    #[error(
        "the evidence sink already holds a different record at position {index} of chain {chain} ({theirs}, ours {ours}): the cluster's copy was rewritten, or two installations write one prefix"
    )]
    Differs { chain: String, index: u64, theirs: String, ours: String },
    /// The sink holds an object that is not a sealed record.
    #[error("the evidence sink object {key} is not a sealed record: {detail}")]
    Unreadable { key: String, detail: String },
    /// The records to write could not be read.
    #[error("the chain to copy to the sink could not be read: {0}")]
    Source(String),
}

/// The evidence sink.
#[derive(Debug)]
pub struct EvidenceSink {
    store: BucketStore,
    bucket: String,
    prefix: String,
    retention: Duration,
    checked: OnceCell<()>,
}

fn service<E: ProvideErrorMetadata + std::error::Error + 'static>(
    bucket: &str,
    e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> SinkError {
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(&e).to_string(),
    };
    SinkError::Service { bucket: bucket.to_owned(), detail }
}

impl EvidenceSink {
    /// A sink; nothing is sent until the first record.
    pub fn new(settings: SinkSettings) -> Self {
        let prefix = match settings.prefix.trim_start_matches('/') {
            "" => String::new(),
            p if p.ends_with('/') => p.to_owned(),
            p => format!("{p}/"),
        };
        Self {
            store: BucketStore::new(settings.s3),
            bucket: settings.bucket,
            prefix,
            retention: settings.retention,
            checked: OnceCell::new(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Checks, once, that the bucket exists and locks objects.
    pub async fn check(&self) -> Result<(), SinkError> {
        self.checked
            .get_or_try_init(|| async {
                let out =
                    self.store.client().get_object_lock_configuration().bucket(&self.bucket).send().await.map_err(
                        |e| match e.code() {
                            Some("ObjectLockConfigurationNotFoundError" | "NoSuchObjectLockConfiguration") => {
                                SinkError::NotLocked(self.bucket.clone())
                            }
                            _ => service(&self.bucket, e),
                        },
                    )?;
                let enabled = out.object_lock_configuration().and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled);
                if enabled { Ok(()) } else { Err(SinkError::NotLocked(self.bucket.clone())) }
            })
            .await
            .map(|_| ())
    }

    fn chain_prefix(&self, namespace: &str, chain: &str) -> String {
        format!("{}{namespace}/{chain}/", self.prefix)
    }

    /// The object name of a record.
    pub fn key(&self, namespace: &str, record: &SealedEvidence) -> String {
        format!("{}{:012}.json", self.chain_prefix(namespace, &record.chain), record.index)
    }

    /// The positions of a chain the sink holds.
    pub async fn positions(&self, namespace: &str, chain: &str) -> Result<BTreeSet<u64>, SinkError> {
        let prefix = self.chain_prefix(namespace, chain);
        let mut out = BTreeSet::new();
        let mut pages =
            self.store.client().list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| service(&self.bucket, e))?;
            for object in page.contents() {
                let position = object
                    .key()
                    .and_then(|k| k.strip_prefix(&prefix))
                    .and_then(|k| k.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(p) = position {
                    out.insert(p);
                }
            }
        }
        Ok(out)
    }

    /// Writes one record, locked until now plus the retention. A position
    /// already held is not written again: the sink's copy must then be
    /// this very record.
    pub async fn put(&self, namespace: &str, record: &SealedEvidence) -> Result<(), SinkError> {
        self.check().await?;
        let key = self.key(namespace, record);
        let line = serde_json::to_string(record).expect("evidence serializes") + "\n";
        let until = Timestamp::now() + self.retention;
        let result = self
            .store
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from_secs(until.as_second() + 1))
            .body(ByteStream::from(line.into_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                let theirs = self.get(&key).await?;
                if theirs.digest == record.digest {
                    Ok(())
                } else {
                    Err(SinkError::Differs {
                        chain: record.chain.clone(),
                        index: record.index,
                        theirs: theirs.digest.to_string(),
                        ours: record.digest.to_string(),
                    })
                }
            }
            Err(e) => Err(service(&self.bucket, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<SealedEvidence, SinkError> {
        let out = self
            .store
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| service(&self.bucket, e))?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| SinkError::Service { bucket: self.bucket.clone(), detail: e.to_string() })?;
        serde_json::from_slice(&bytes.into_bytes())
            .map_err(|e| SinkError::Unreadable { key: key.to_owned(), detail: e.to_string() })
    }

    /// Every record of a chain the sink holds, in order of position.
    pub async fn read_chain(&self, namespace: &str, chain: &str) -> Result<Vec<SealedEvidence>, SinkError> {
        let mut out = Vec::new();
        for position in self.positions(namespace, chain).await? {
            let key = format!("{}{position:012}.json", self.chain_prefix(namespace, chain));
            out.push(self.get(&key).await?);
        }
        Ok(out)
    }

    /// The chains of a namespace the sink holds.
    pub async fn chains(&self, namespace: &str) -> Result<Vec<String>, SinkError> {
        let prefix = format!("{}{namespace}/", self.prefix);
        let mut chains = BTreeSet::new();
        let mut pages =
            self.store.client().list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| service(&self.bucket, e))?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                if let Some((chain, _)) = key.strip_prefix(&prefix).and_then(|k| k.rsplit_once('/')) {
                    chains.insert(chain.to_owned());
                }
            }
        }
        Ok(chains.into_iter().collect())
    }
}
