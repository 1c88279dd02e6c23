//! The principals the operator manages, recorded in the `awsauth.dev/managed` annotation of
//! aws-auth (so that the record is written atomically with the entries it describes), and the
//! entries mappings took over, to give back when their mapping goes.
//!
//! Encoding (version 2): JSON `{"version":2,"principals":"<base64>","originals":[...]}`.
//! `principals` holds one 8-byte digest (SHA-256, truncated) per managed principal key, sorted:
//! 8 bytes per principal whatever its ARN looks like, so even a 1 MiB aws-auth of the smallest
//! possible entries (~15,000) needs under 160 KiB of annotation, and the only limit left is the
//! ConfigMap's own 1 MiB of data. The plan only ever asks "is this principal managed?", which a
//! digest answers; a SHA-256 digest cannot be steered into another principal's (finding a second
//! principal with a chosen 64-bit digest takes ~2^64 hashes). `originals` is normally empty or
//! tiny: only takeovers that keep the entry they replaced.
//!
//! Version 1 (a readable list of ARNs grouped by partition and account) is still read, and is
//! replaced by version 2 on the next write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::arn::PrincipalKey;
use crate::awsauth::Entry;

/// Annotation on aws-auth that records the principals the operator manages.
pub const MANAGED_ANNOTATION: &str = "awsauth.dev/managed";
/// Kubernetes limits the total size of an object's annotations to 256 KiB; leave room for others.
pub const MAX_MANAGED_ANNOTATION_BYTES: usize = 200 * 1024;

/// The digest of a principal key in the managed set.
pub(crate) fn digest(key: &PrincipalKey) -> u64 {
    let kind = match key {
        PrincipalKey::Role(_) => "role",
        PrincipalKey::User(_) => "user",
        PrincipalKey::Account(_) => "account",
    };
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(kind.as_bytes());
    context.update(b"\0");
    context.update(key.as_str().as_bytes());
    let hash = context.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// The principals the operator manages, and the entries their mappings took over.
///
/// Shared (`Arc`): a plan that writes the same principals as last time hands back the live set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedSet {
    digests: Arc<BTreeSet<u64>>,
    /// The unmanaged entries a mapping replaced, by principal: they come back when no mapping
    /// renders the principal any more (a mapping with `adoptExistingEntry` keeps none).
    originals: BTreeMap<PrincipalKey, Vec<Entry>>,
}

#[derive(Debug, Error)]
#[error("annotation {MANAGED_ANNOTATION} is unreadable: {0}")]
pub struct ManagedSetError(String);

impl ManagedSet {
    pub fn new(keys: impl IntoIterator<Item = PrincipalKey>) -> ManagedSet {
        ManagedSet {
            digests: Arc::new(keys.into_iter().map(|k| digest(&k)).collect()),
            originals: BTreeMap::new(),
        }
    }

    /// From the digests of the principal keys (see [`digest`]).
    pub(crate) fn from_digests(digests: impl IntoIterator<Item = u64>) -> ManagedSet {
        ManagedSet {
            digests: Arc::new(digests.into_iter().collect()),
            originals: BTreeMap::new(),
        }
    }

    pub(crate) fn contains_digest(&self, digest: u64) -> bool {
        self.digests.contains(&digest)
    }

    pub fn with_originals(mut self, originals: BTreeMap<PrincipalKey, Vec<Entry>>) -> ManagedSet {
        self.originals = originals;
        self
    }

    pub fn contains(&self, key: &PrincipalKey) -> bool {
        self.digests.contains(&digest(key))
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn originals(&self) -> &BTreeMap<PrincipalKey, Vec<Entry>> {
        &self.originals
    }

    /// Whether both record the same principals (originals aside).
    pub fn same_principals(&self, other: &ManagedSet) -> bool {
        Arc::ptr_eq(&self.digests, &other.digests) || self.digests == other.digests
    }

    /// The principals of both (for "was this ever managed?" across revisions); originals of
    /// `self` win.
    pub fn union(&self, other: &ManagedSet) -> ManagedSet {
        let mut digests = (*self.digests).clone();
        digests.extend(other.digests.iter().copied());
        let mut originals = other.originals.clone();
        originals.extend(self.originals.clone());
        ManagedSet {
            digests: Arc::new(digests),
            originals,
        }
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.digests.len() * 8);
        for digest in self.digests.iter() {
            bytes.extend_from_slice(&digest.to_be_bytes());
        }
        let encoded = EncodedV2 {
            version: 2,
            principals: BASE64.encode(bytes),
            originals: self.originals.values().flatten().cloned().collect(),
        };
        // Serialising plain strings and entries cannot fail.
        serde_json::to_string(&encoded).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<ManagedSet, ManagedSetError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version =
            serde_json::from_str(text).map_err(|e| ManagedSetError(e.to_string()))?;
        match version.version {
            1 => decode_v1(text),
            2 => decode_v2(text),
            other => Err(ManagedSetError(format!("unknown version {other}"))),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct EncodedV2 {
    version: u32,
    principals: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    originals: Vec<Entry>,
}

fn decode_v2(text: &str) -> Result<ManagedSet, ManagedSetError> {
    let encoded: EncodedV2 =
        serde_json::from_str(text).map_err(|e| ManagedSetError(e.to_string()))?;
    let bytes = BASE64
        .decode(encoded.principals.as_bytes())
        .map_err(|e| ManagedSetError(format!("principals: {e}")))?;
    if bytes.len() % 8 != 0 {
        return Err(ManagedSetError(format!(
            "principals: {} bytes is not a whole number of 8-byte digests",
            bytes.len()
        )));
    }
    let digests = bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut digest = [0u8; 8];
            digest.copy_from_slice(chunk);
            u64::from_be_bytes(digest)
        })
        .collect();
    let mut originals: BTreeMap<PrincipalKey, Vec<Entry>> = BTreeMap::new();
    for entry in encoded.originals {
        originals.entry(entry.key()).or_default().push(entry);
    }
    Ok(ManagedSet {
        digests: Arc::new(digests),
        originals,
    })
}

/// Version 1: `{"version":1,"roles":{"aws:111122223333":["admin",...]},"users":{...},
/// "accounts":[...]}`; names of keys not in ARN shape are under scope `raw`.
fn decode_v1(text: &str) -> Result<ManagedSet, ManagedSetError> {
    #[derive(Deserialize)]
    struct EncodedV1 {
        #[serde(default)]
        roles: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        users: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        accounts: Vec<String>,
    }
    let encoded: EncodedV1 =
        serde_json::from_str(text).map_err(|e| ManagedSetError(e.to_string()))?;
    let join = |scope: &str, kind: &str, name: &str| -> Result<String, ManagedSetError> {
        if scope == "raw" {
            return Ok(name.to_string());
        }
        let (partition, account) = scope
            .split_once(':')
            .ok_or_else(|| ManagedSetError(format!("bad scope `{scope}`")))?;
        Ok(format!("arn:{partition}:iam::{account}:{kind}{name}"))
    };
    let mut keys = Vec::new();
    for (scope, names) in &encoded.roles {
        for name in names {
            keys.push(PrincipalKey::role(&join(scope, "role/", name)?));
        }
    }
    for (scope, names) in &encoded.users {
        for name in names {
            keys.push(PrincipalKey::user(&join(scope, "user", name)?));
        }
    }
    keys.extend(encoded.accounts.iter().map(|a| PrincipalKey::account(a)));
    Ok(ManagedSet::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awsauth::ArnMapping;

    fn role(name: &str) -> PrincipalKey {
        PrincipalKey::role(&format!("arn:aws:iam::111122223333:role/{name}"))
    }

    #[test]
    fn round_trip_with_originals() {
        let original = Entry::User(ArnMapping {
            arn: "arn:aws:iam::111122223333:user/breakglass".into(),
            username: "breakglass".into(),
            groups: vec!["system:masters".into()],
            extra: Default::default(),
        });
        let set = ManagedSet::new([
            role("admin"),
            PrincipalKey::user("arn:aws:iam::111122223333:user/breakglass"),
            PrincipalKey::account("444455556666"),
        ])
        .with_originals(BTreeMap::from([(original.key(), vec![original.clone()])]));
        let decoded = ManagedSet::decode(&set.encode()).unwrap();
        assert_eq!(decoded, set);
        assert!(decoded.contains(&role("admin")));
        assert!(
            decoded.contains(&role("ADMIN")),
            "roles are keyed case-insensitively"
        );
        assert!(!decoded.contains(&role("other")));
        assert!(decoded.contains(&PrincipalKey::account("444455556666")));
        assert!(
            !decoded.contains(&PrincipalKey::role("444455556666")),
            "kind is part of the key"
        );
        assert_eq!(decoded.originals()[&original.key()], vec![original]);
    }

    #[test]
    fn version_1_is_read_and_gives_the_same_set() {
        let v1 = r#"{"version":1,"roles":{"aws:111122223333":["admin","dev"]},"users":{"aws-cn:444455556666":["/ops/Alice"]},"accounts":["777788889999"]}"#;
        let decoded = ManagedSet::decode(v1).unwrap();
        let expected = ManagedSet::new([
            role("admin"),
            role("dev"),
            PrincipalKey::user("arn:aws-cn:iam::444455556666:user/ops/alice"),
            PrincipalKey::account("777788889999"),
        ]);
        assert_eq!(decoded, expected);
        // Migrated on the next write: what is written is version 2.
        assert!(decoded.encode().starts_with(r#"{"version":2,"#));
    }

    #[test]
    fn unreadable_annotations_say_why() {
        for (text, says) in [
            ("not json", "expected"),
            (r#"{"version":3}"#, "unknown version 3"),
            (r#"{"version":2,"principals":"@@"}"#, "principals"),
            (r#"{"version":2,"principals":"AAAA"}"#, "8-byte"),
            (r#"{"version":1,"roles":{"nocolon":["x"]}}"#, "bad scope"),
        ] {
            let err = ManagedSet::decode(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    /// 8 bytes per principal, whatever the names: 8,700 principals (a full 1 MiB aws-auth of
    /// ordinary entries) and 15,000 (the smallest entries possible) both fit the budget.
    #[test]
    fn size_is_bounded_by_the_number_of_principals() {
        for count in [8_700usize, 15_000] {
            let set = ManagedSet::new(
                (0..count)
                    .map(|i| role(&format!("a-long-and-random-role-name-{i:08x}-{}", i * 7919))),
            );
            let bytes = set.encode().len();
            assert!(
                bytes < MAX_MANAGED_ANNOTATION_BYTES,
                "{count}: {bytes} bytes"
            );
            assert!(bytes <= count * 11 + 64, "{count}: {bytes} bytes");
        }
    }

    #[test]
    fn union_keeps_both() {
        let a = ManagedSet::new([role("a")]);
        let b = ManagedSet::new([role("b")]);
        let both = a.union(&b);
        assert!(both.contains(&role("a")) && both.contains(&role("b")));
        assert_eq!(both.len(), 2);
    }
}
