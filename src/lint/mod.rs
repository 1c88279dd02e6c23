//! `validate` as a check of files: what in a file is aws-auth data (a ConfigMap, a data-only
//! patch fragment, a JSON patch) or an IamIdentityMapping, where each of them is written, and
//! which principals are mapped twice across files. Pure functions; the CLI reads and prints.

pub mod positions;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::api::IamIdentityMapping;
use crate::awsauth::{CONFIGMAP_NAME, ConfigMapData, Section};
use crate::manifest::ManifestError;
use positions::{DocumentPositions, document_positions};

/// How aws-auth data was found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsAuthOrigin {
    ConfigMap {
        name: String,
        namespace: Option<String>,
    },
    /// A document holding only `data:` (a `kubectl patch --patch-file` strategic-merge or merge
    /// patch, in YAML or JSON).
    DataFragment,
    /// A JSON patch (RFC 6902) whose operations add or replace `/data/<key>`.
    JsonPatch,
}

impl fmt::Display for AwsAuthOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsAuthOrigin::ConfigMap {
                name,
                namespace: Some(ns),
            } => write!(f, "ConfigMap {ns}/{name}"),
            AwsAuthOrigin::ConfigMap {
                name,
                namespace: None,
            } => write!(f, "ConfigMap {name}"),
            AwsAuthOrigin::DataFragment => f.write_str("read as a data-only patch fragment"),
            AwsAuthOrigin::JsonPatch => f.write_str("read as a JSON patch of data"),
        }
    }
}

/// aws-auth data found in a document.
#[derive(Debug, Clone)]
pub struct AwsAuthDoc {
    /// 1-based document number in the file.
    pub document: usize,
    pub origin: AwsAuthOrigin,
    pub data: ConfigMapData,
    /// Where the document and its data keys are written; `None` when unknown.
    pub positions: Option<DocumentPositions>,
}

/// An IamIdentityMapping found in a document.
#[derive(Debug, Clone)]
pub struct MappingDoc {
    pub document: usize,
    pub mapping: IamIdentityMapping,
    pub positions: Option<DocumentPositions>,
    /// The fields written under `spec`, as in the file (unknown ones included).
    pub spec_fields: Vec<String>,
}

impl MappingDoc {
    pub fn name(&self) -> &str {
        self.mapping.metadata.name.as_deref().unwrap_or_default()
    }

    /// The file line of a spec field (`spec.groups[1]`), else of the document, if known.
    pub fn field_line(&self, field: &str) -> Option<usize> {
        self.positions.as_ref().map(|p| p.field_line(field))
    }
}

/// What `validate` checks in one file.
#[derive(Debug, Clone, Default)]
pub struct FileContents {
    pub aws_auth: Vec<AwsAuthDoc>,
    pub mappings: Vec<MappingDoc>,
}

impl FileContents {
    pub fn is_empty(&self) -> bool {
        self.aws_auth.is_empty() && self.mappings.is_empty()
    }
}

/// True for `mapRoles`, `mapUsers`, `mapAccounts` in any casing (a mis-cased key is a finding,
/// not a reason to ignore the document).
pub fn is_aws_auth_key(key: &str) -> bool {
    Section::ALL
        .iter()
        .any(|s| s.key().eq_ignore_ascii_case(key.trim()))
}

/// Everything of aws-auth and every IamIdentityMapping in `text`. ConfigMaps count when named
/// aws-auth or, if none is, when they hold an aws-auth key; documents of other kinds are
/// skipped. An awsauth.dev document that is not a readable IamIdentityMapping is an error, so
/// a typo never silently drops a mapping.
pub fn read_contents(text: &str, source_name: &str) -> Result<FileContents, ManifestError> {
    let docs: Vec<Option<Value>> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
    // Positions come from a second pass over the same text; used only if it saw the same
    // documents.
    let positions = document_positions(text).filter(|p| p.len() == docs.len());
    let mut found = Found::default();
    for (i, doc) in docs.into_iter().enumerate() {
        let document = i + 1;
        let position = positions.as_ref().and_then(|p| p[i].clone());
        let doc_error = |message: String| ManifestError::Document {
            source_name: source_name.to_string(),
            document,
            message,
        };
        match doc {
            None | Some(Value::Null) => {}
            Some(Value::Object(obj)) if obj.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = obj.get("items").and_then(Value::as_array);
                for (j, item) in items.into_iter().flatten().enumerate() {
                    let item_position = position.as_ref().and_then(|p| p.items.get(j).cloned());
                    found
                        .add(document, item.clone(), item_position)
                        .map_err(doc_error)?;
                }
            }
            Some(value) => found.add(document, value, position).map_err(doc_error)?,
        }
    }
    Ok(found.finish())
}

#[derive(Default)]
struct Found {
    configmaps: Vec<AwsAuthDoc>,
    fragments: Vec<AwsAuthDoc>,
    mappings: Vec<MappingDoc>,
}

impl Found {
    fn add(
        &mut self,
        document: usize,
        value: Value,
        positions: Option<DocumentPositions>,
    ) -> Result<(), String> {
        let text_of = |field: &str| {
            value
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (kind, api_version) = (text_of("kind"), text_of("apiVersion"));
        if kind == "ConfigMap" {
            let cm: ConfigMap =
                serde_json::from_value(value).map_err(|e| format!("invalid ConfigMap: {e}"))?;
            self.configmaps.push(AwsAuthDoc {
                document,
                origin: AwsAuthOrigin::ConfigMap {
                    name: cm.metadata.name.unwrap_or_default(),
                    namespace: cm.metadata.namespace,
                },
                data: cm.data.unwrap_or_default(),
                positions,
            });
        } else if api_version.split('/').next() == Some("awsauth.dev") {
            let spec_fields = value
                .get("spec")
                .and_then(Value::as_object)
                .map(|spec| spec.keys().cloned().collect())
                .unwrap_or_default();
            self.mappings.push(MappingDoc {
                document,
                mapping: crate::manifest::read_mapping(value, &api_version, &kind)?,
                positions,
                spec_fields,
            });
        } else if kind.is_empty()
            && let Some((origin, data)) = patch_data(&value)?
        {
            self.fragments.push(AwsAuthDoc {
                document,
                origin,
                data,
                positions,
            });
        }
        Ok(())
    }

    fn finish(self) -> FileContents {
        let named = self.configmaps.iter().any(|c| {
            matches!(&c.origin, AwsAuthOrigin::ConfigMap { name, .. } if name == CONFIGMAP_NAME)
        });
        let mut aws_auth: Vec<AwsAuthDoc> = self
            .configmaps
            .into_iter()
            .filter(|c| match &c.origin {
                AwsAuthOrigin::ConfigMap { name, .. } if named => name == CONFIGMAP_NAME,
                _ => c.data.keys().any(|k| is_aws_auth_key(k)),
            })
            .collect();
        aws_auth.extend(self.fragments);
        aws_auth.sort_by_key(|d| d.document);
        FileContents {
            aws_auth,
            mappings: self.mappings,
        }
    }
}

/// The aws-auth data of a patch document: `{data: {...}}` (strategic-merge or merge patch) or
/// a JSON patch's add/replace operations on `/data/<key>`; `None` when it holds no aws-auth key.
fn patch_data(value: &Value) -> Result<Option<(AwsAuthOrigin, ConfigMapData)>, String> {
    let (origin, pairs): (AwsAuthOrigin, Vec<(String, &Value)>) = match value {
        Value::Object(obj) => match obj.get("data") {
            Some(Value::Object(data)) => (
                AwsAuthOrigin::DataFragment,
                data.iter().map(|(k, v)| (k.clone(), v)).collect(),
            ),
            _ => return Ok(None),
        },
        Value::Array(ops) => (
            AwsAuthOrigin::JsonPatch,
            ops.iter()
                .filter(|op| {
                    matches!(
                        op.get("op").and_then(Value::as_str),
                        Some("add" | "replace")
                    )
                })
                .filter_map(|op| {
                    let key = op.get("path")?.as_str()?.strip_prefix("/data/")?;
                    Some((key.replace("~1", "/").replace("~0", "~"), op.get("value")?))
                })
                .collect(),
        ),
        _ => return Ok(None),
    };
    if !pairs.iter().any(|(k, _)| is_aws_auth_key(k)) {
        return Ok(None);
    }
    let mut data = ConfigMapData::new();
    for (key, value) in pairs {
        match value {
            Value::String(s) => {
                data.insert(key, s.clone());
            }
            // A merge patch's null deletes the key: nothing the authenticator reads.
            Value::Null => {}
            other => {
                return Err(format!(
                    "data.{key} must be a string (a ConfigMap holds text), found {other}"
                ));
            }
        }
    }
    Ok(Some((origin, data)))
}

/// The fields of `fields` that the CRD's schema does not define for `spec`: the API server
/// refuses them (strict field validation) or drops them, and the operator never sees them.
pub fn unknown_spec_fields(fields: &[String]) -> Vec<String> {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(IamIdentityMapping::crd()).unwrap_or_default();
    let known = crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties");
    match known.and_then(Value::as_object) {
        Some(known) => fields
            .iter()
            .filter(|f| !known.contains_key(f.as_str()))
            .cloned()
            .collect(),
        // No schema to compare with: say nothing rather than something wrong.
        None => Vec::new(),
    }
}

/// Pairs `(first, later)` of items with the same key (a principal, a name), in input order:
/// each later item is paired with the first item of its key.
pub fn duplicates<K: Hash + Eq, T: Clone>(
    items: impl IntoIterator<Item = (K, T)>,
) -> Vec<(K, T, T)> {
    let mut first: HashMap<K, T> = HashMap::new();
    let mut duplicates = Vec::new();
    for (key, item) in items {
        match first.get(&key) {
            Some(existing) => duplicates.push((key, existing.clone(), item)),
            None => {
                first.insert(key, item);
            }
        }
    }
    duplicates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::PrincipalKey;

    fn contents(text: &str) -> FileContents {
        read_contents(text, "t").expect("readable")
    }

    #[test]
    fn full_configmap_is_aws_auth_with_block_positions() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: aws-auth\n  namespace: kube-system\ndata:\n  mapRoles: |\n    - rolearn: a\n      username: b\n";
        let c = contents(text);
        assert_eq!(c.aws_auth.len(), 1);
        let doc = &c.aws_auth[0];
        assert_eq!(doc.origin.to_string(), "ConfigMap kube-system/aws-auth");
        let pos = &doc.positions.as_ref().expect("positions").data["mapRoles"];
        assert_eq!(pos.key_line, 7);
        // `username` is on line 2, column 3 of the key's text: line 9, column 7 of the file.
        let (at, exact) = pos.file_position(Some(2), Some(3));
        assert!(exact);
        assert_eq!((at.line, at.column), (9, 7));
        assert!(
            text.lines()
                .nth(8)
                .is_some_and(|l| l[6..].starts_with("username"))
        );
    }

    #[test]
    fn data_only_fragment_and_json_merge_patch_are_fragments() {
        for text in [
            "data:\n  mapUsers: |\n    - userarn: x\n",
            "{\"data\": {\"mapUsers\": \"- userarn: x\\n\"}}",
        ] {
            let c = contents(text);
            assert_eq!(c.aws_auth.len(), 1, "{text}");
            assert_eq!(c.aws_auth[0].origin, AwsAuthOrigin::DataFragment);
            assert_eq!(c.aws_auth[0].data["mapUsers"], "- userarn: x\n");
        }
    }

    #[test]
    fn json_patch_operations_on_data_are_read() {
        let text = r#"[{"op": "replace", "path": "/data/mapRoles", "value": "- rolearn: a\n"}, {"op": "test", "path": "/data/mapUsers", "value": "x"}]"#;
        let c = contents(text);
        assert_eq!(c.aws_auth[0].origin, AwsAuthOrigin::JsonPatch);
        assert_eq!(
            c.aws_auth[0].data,
            ConfigMapData::from([("mapRoles".into(), "- rolearn: a\n".into())])
        );
    }

    #[test]
    fn documents_without_aws_auth_are_nothing() {
        assert!(contents("kind: Secret\nstringData: {mapRoles: x}\n").is_empty());
        assert!(contents("data:\n  other: x\n").is_empty());
        assert!(contents("[1, 2]").is_empty());
    }

    #[test]
    fn non_string_fragment_value_is_an_error() {
        let err = read_contents("data:\n  mapRoles: [a]\n", "f.yaml").unwrap_err();
        assert!(err.to_string().contains("f.yaml: document 1"), "{err}");
    }

    #[test]
    fn mixed_file_with_list_mapping_and_empty_documents() {
        let text = "---\n---\napiVersion: awsauth.dev/v1alpha1\nkind: IamIdentityMapping\nmetadata: {name: a}\nspec:\n  arn: x\n  groups:\n    - g\n---\nkind: List\nitems:\n- kind: ConfigMap\n  metadata: {name: aws-auth}\n  data:\n    mapAccounts: |\n      - \"1\"\n";
        let c = contents(text);
        assert_eq!(c.mappings.len(), 1);
        assert_eq!(c.mappings[0].field_line("spec.arn"), Some(7));
        assert_eq!(c.mappings[0].field_line("spec.groups[0]"), Some(9));
        assert_eq!(c.mappings[0].field_line("spec"), Some(3));
        let cm = &c.aws_auth[0];
        let pos = &cm.positions.as_ref().expect("item positions").data["mapAccounts"];
        assert_eq!(pos.file_position(Some(1), Some(3)).0.line, 17);
    }

    #[test]
    fn configmap_named_aws_auth_wins_over_others_with_keys() {
        let text = "kind: ConfigMap\nmetadata: {name: other}\ndata: {mapRoles: x}\n---\nkind: ConfigMap\nmetadata: {name: aws-auth}\n";
        let c = contents(text);
        assert_eq!(c.aws_auth.len(), 1);
        assert_eq!(c.aws_auth[0].document, 2);
    }

    #[test]
    fn unknown_spec_fields_are_those_the_crd_lacks() {
        let fields: Vec<String> = ["arn", "username", "grups", "groups", "adoptExistingEntry"]
            .map(String::from)
            .into();
        assert_eq!(unknown_spec_fields(&fields), vec!["grups".to_string()]);
    }

    #[test]
    fn duplicates_pair_each_later_item_with_the_first() {
        let items = [
            (PrincipalKey::role("arn:A"), 1),
            (PrincipalKey::role("arn:a"), 2),
            (PrincipalKey::user("arn:a"), 3),
            (PrincipalKey::role("ARN:A"), 4),
        ];
        let dups: Vec<(i32, i32)> = duplicates(items)
            .into_iter()
            .map(|(_, a, b)| (a, b))
            .collect();
        assert_eq!(dups, vec![(1, 2), (1, 4)]);
    }
}
