//! Everything that writes aws-auth or its history, and the formats it writes.
//!
//! - [`revisions`]: the history ConfigMap's format (pure): revisions, their encoding, the
//!   operator's recorded settings.
//! - [`rollback`]: what restoring a revision writes and changes (pure).
//! - [`writer`]: the one compare-and-swap loop every write goes through (the reconcile's write
//!   of aws-auth, history records, rollbacks), and the reads and writes built on it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData};
use crate::plan::MANAGED_ANNOTATION;

#[cfg(test)]
pub(crate) mod mock;
pub mod revisions;
pub mod rollback;
pub mod writer;

/// Field manager for every write.
pub const FIELD_MANAGER: &str = "aws-auth-operator";
/// Compare-and-swap writes give up after this many reads in a row found the object changed.
pub const MAX_WRITE_ATTEMPTS: u32 = 5;

/// Whether `err` is an API error with this HTTP status code.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

/// A kube error for a person: the API server's message, without the Debug dump.
pub fn describe_kube_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let mut text = if status.message.is_empty() {
                "request failed".to_string()
            } else {
                status.message.clone()
            };
            match (status.reason.is_empty(), status.code) {
                (false, code) => text.push_str(&format!(" ({}, HTTP {code})", status.reason)),
                (true, code) if code != 0 => text.push_str(&format!(" (HTTP {code})")),
                _ => {}
            }
            text
        }
        other => other.to_string(),
    }
}

/// The managed-principals annotation of aws-auth, if it carries one.
pub fn managed_annotation(cm: &ConfigMap) -> Option<&str> {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANAGED_ANNOTATION))
        .map(String::as_str)
}

/// aws-auth with `data` and the managed annotation `managed`, everything else (its
/// resourceVersion in particular, so that writing it is a compare-and-swap) as `current`; a new
/// aws-auth when there is none.
pub fn aws_auth_with(
    current: Option<&ConfigMap>,
    data: &ConfigMapData,
    managed: &str,
) -> ConfigMap {
    let mut cm = current.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    cm.data = Some(data.clone());
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MANAGED_ANNOTATION.to_string(), managed.to_string());
    // Server-managed fields that must not be sent back.
    cm.metadata.managed_fields = None;
    cm
}
