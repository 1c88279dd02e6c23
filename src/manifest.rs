//! Kubernetes manifests in YAML text: IamIdentityMapping documents and aws-auth ConfigMaps.
//! Pure text in, objects out; the CLI does the file I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use thiserror::Error;

use crate::api::IamIdentityMapping;
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData};
use crate::plan::MANAGED_ANNOTATION;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: document {document}: {message}")]
    Document {
        source_name: String,
        document: usize,
        message: String,
    },
}

/// Every YAML document of `text` as JSON, `kind: List` expanded into its items. Empty
/// documents are skipped. Each item carries its 1-based document number.
pub fn documents(text: &str, source_name: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let docs: Vec<Option<Value>> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        match doc {
            None | Some(Value::Null) => {}
            Some(Value::Object(obj)) if obj.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = obj.get("items") {
                    out.extend(items.iter().cloned().map(|item| (i + 1, item)));
                }
            }
            Some(other) => out.push((i + 1, other)),
        }
    }
    Ok(out)
}

/// IamIdentityMapping documents read from a manifest, and the other objects skipped.
#[derive(Debug, Default)]
pub struct MappingDocs {
    pub mappings: Vec<IamIdentityMapping>,
    /// `apiVersion kind/name` of documents of other API groups (RBAC next to a mapping, say).
    pub skipped: Vec<String>,
}

/// IamIdentityMapping documents from `text`. Objects of other API groups are skipped and listed;
/// an awsauth.dev document of another kind or version is an error, so that a typo never
/// silently drops a mapping.
pub fn parse_mappings(text: &str, source_name: &str) -> Result<MappingDocs, ManifestError> {
    let doc_error = |document: usize, message: String| ManifestError::Document {
        source_name: source_name.to_string(),
        document,
        message,
    };
    let mut out = MappingDocs::default();
    for (document, value) in documents(text, source_name)? {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let is_ours = api_version.split('/').next() == Some("awsauth.dev");
        if !is_ours && !api_version.is_empty() && !kind.is_empty() {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.skipped.push(format!("{api_version} {kind}/{name}"));
            continue;
        }
        let kind = kind.to_string();
        let api_version = api_version.to_string();
        let mapping = read_mapping(value, &api_version, &kind)
            .map_err(|message| doc_error(document, message))?;
        out.mappings.push(mapping);
    }
    Ok(out)
}

/// An awsauth.dev document as an IamIdentityMapping: the version and kind this binary knows,
/// a spec that deserializes, and a name.
pub fn read_mapping(
    value: Value,
    api_version: &str,
    kind: &str,
) -> Result<IamIdentityMapping, String> {
    if kind != "IamIdentityMapping" || api_version != "awsauth.dev/v1alpha1" {
        return Err(format!(
            "expected apiVersion awsauth.dev/v1alpha1, kind IamIdentityMapping; found apiVersion `{api_version}`, kind `{kind}`"
        ));
    }
    let mapping: IamIdentityMapping =
        serde_json::from_value(value).map_err(|e| format!("invalid IamIdentityMapping: {e}"))?;
    if mapping
        .metadata
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        return Err("metadata.name is required".to_string());
    }
    Ok(mapping)
}

/// A ConfigMap found in a manifest.
#[derive(Debug, Clone)]
pub struct ConfigMapDoc {
    pub document: usize,
    pub name: String,
    pub namespace: Option<String>,
    pub data: ConfigMapData,
    pub annotations: BTreeMap<String, String>,
}

/// Every ConfigMap in `text` (other kinds are skipped; `kind: List` is expanded).
pub fn parse_configmaps(text: &str, source_name: &str) -> Result<Vec<ConfigMapDoc>, ManifestError> {
    let mut out = Vec::new();
    for (document, value) in documents(text, source_name)? {
        if value.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
            continue;
        }
        let cm: ConfigMap = serde_json::from_value(value).map_err(|e| ManifestError::Document {
            source_name: source_name.to_string(),
            document,
            message: format!("invalid ConfigMap: {e}"),
        })?;
        out.push(ConfigMapDoc {
            document,
            name: cm.metadata.name.unwrap_or_default(),
            namespace: cm.metadata.namespace,
            data: cm.data.unwrap_or_default(),
            annotations: cm.metadata.annotations.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The aws-auth ConfigMap manifest for `data`, with the managed-principals annotation: what the
/// controller writes. No `app.kubernetes.io/managed-by` label: aws-auth is shared with EKS and
/// often with Helm or eksctl, and overwriting their label would break their ownership checks.
pub fn aws_auth_configmap(data: ConfigMapData, managed_annotation: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            annotations: Some(BTreeMap::from([(
                MANAGED_ANNOTATION.to_string(),
                managed_annotation.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// YAML for a ConfigMap: data strings as literal blocks, so `kubectl get -o yaml` and a review
/// of this output look the same.
pub fn configmap_yaml(cm: &ConfigMap) -> Result<String, serde_saphyr::SerializeError> {
    let mut value = serde_json::to_value(cm).unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("apiVersion".into(), Value::String("v1".into()));
        obj.insert("kind".into(), Value::String("ConfigMap".into()));
    }
    to_yaml(&value)
}

/// Serialises with serde-saphyr, which quotes every string a YAML 1.1 reader would mistake for
/// something else.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_multi_documents() {
        let text = "---\napiVersion: v1\nkind: List\nitems:\n- kind: ConfigMap\n  metadata: {name: a}\n- kind: Secret\n---\n---\nkind: ConfigMap\nmetadata: {name: b}\ndata: {mapRoles: \"[]\"}\n";
        let cms = parse_configmaps(text, "t").unwrap();
        assert_eq!(
            cms.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(cms[1].data["mapRoles"], "[]");
    }

    #[test]
    fn wrong_kind_is_an_error_not_a_skip() {
        let text = "apiVersion: awsauth.dev/v1alpha1\nkind: IamIdentityMaping\nmetadata: {name: x}\nspec: {}\n";
        let err = parse_mappings(text, "f.yaml").unwrap_err().to_string();
        assert!(err.contains("f.yaml: document 1"), "{err}");
        assert!(err.contains("IamIdentityMaping"), "{err}");
        let missing = parse_mappings("metadata: {name: x}\n", "g.yaml")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("g.yaml: document 1"), "{missing}");
    }

    #[test]
    fn other_api_groups_are_skipped_and_listed() {
        let text = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: ro}\n---\napiVersion: awsauth.dev/v1alpha1\nkind: IamIdentityMapping\nmetadata: {name: a}\nspec: {account: \"111122223333\"}\n";
        let docs = parse_mappings(text, "t").unwrap();
        assert_eq!(docs.mappings.len(), 1);
        assert_eq!(
            docs.skipped,
            vec!["rbac.authorization.k8s.io/v1 ClusterRoleBinding/ro"]
        );
    }

    #[test]
    fn unreadable_yaml() {
        let err = parse_mappings("a: [", "bad.yaml").unwrap_err();
        assert!(matches!(err, ManifestError::Yaml { .. }));
    }
}
