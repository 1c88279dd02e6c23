//! An existing aws-auth -> IamIdentityMapping objects, one per entry the authenticator actually
//! uses, and a reason for every entry that cannot be imported without changing its meaning.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::api::{IamIdentityMapping, IamIdentityMappingSpec};
use crate::arn::IamArn;
use crate::awsauth::{ConfigMapData, DiagnosticKind, Entry, Severity, parse_data};
use crate::validate::validate;

/// Annotation on an imported mapping naming the entry it came from.
pub const IMPORTED_FROM_ANNOTATION: &str = "awsauth.dev/imported-from";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// `mapRoles[3]`, or the key alone when the whole key is unusable.
    pub entry: String,
    pub principal: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Import {
    pub mappings: Vec<IamIdentityMapping>,
    pub skipped: Vec<Skipped>,
    /// Imported, but worth a look (node roles that EKS manages, ignored fields, ...).
    pub warnings: Vec<String>,
}

pub fn import(data: &ConfigMapData) -> Import {
    let parsed = parse_data(data);
    let mut out = Import::default();

    // Errors that make an entry unusable, by (section key, index).
    let mut entry_errors: BTreeMap<(String, usize), Vec<String>> = BTreeMap::new();
    let mut entry_warnings: BTreeMap<(String, usize), Vec<String>> = BTreeMap::new();
    for d in &parsed.diagnostics {
        match (d.entry, d.severity) {
            (Some(i), Severity::Error) => entry_errors
                .entry((d.key.clone(), i))
                .or_default()
                .push(d.message.clone()),
            (Some(i), Severity::Warning) => entry_warnings
                .entry((d.key.clone(), i))
                .or_default()
                .push(d.message.clone()),
            (None, _)
                if matches!(
                    d.reason,
                    DiagnosticKind::YamlError
                        | DiagnosticKind::NotAList
                        | DiagnosticKind::MisCasedKey
                ) =>
            {
                out.skipped.push(Skipped {
                    entry: d.key.clone(),
                    principal: String::new(),
                    reasons: vec![d.message.clone()],
                });
            }
            _ => {}
        }
    }
    // User ARNs that differ only by case race each other: neither can be imported faithfully.
    let mut folded: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for user in &parsed.entries.users {
        folded
            .entry(user.arn.to_lowercase())
            .or_default()
            .insert(&user.arn);
    }

    let mut candidates: Vec<(String, String, IamIdentityMappingSpec)> = Vec::new();
    for (index, entry) in parsed.entries.iter() {
        let section = entry.section();
        let location = format!("{section}[{index}]");
        let mut reasons = entry_errors
            .remove(&(section.key().to_string(), index))
            .unwrap_or_default();
        if let Entry::User(user) = &entry
            && folded
                .get(&user.arn.to_lowercase())
                .is_some_and(|v| v.len() > 1)
        {
            reasons.push("another user ARN differs from it only by case; the authenticator picks one at random".into());
        }
        let spec = spec_for(&entry);
        if reasons.is_empty()
            && let Err(problems) = validate(&spec)
        {
            reasons.extend(problems.iter().map(ToString::to_string));
        }
        if !reasons.is_empty() {
            out.skipped.push(Skipped {
                entry: location,
                principal: entry.principal().to_string(),
                reasons,
            });
            continue;
        }
        for warning in entry_warnings
            .remove(&(section.key().to_string(), index))
            .unwrap_or_default()
        {
            out.warnings.push(format!("{location}: {warning}"));
        }
        if let Entry::Role(role) | Entry::User(role) = &entry
            && !role.extra.is_empty()
        {
            let fields: Vec<_> = role.extra.keys().map(String::as_str).collect();
            out.warnings.push(format!(
                "{location}: fields {} are not carried over (the authenticator ignores them)",
                fields.join(", ")
            ));
        }
        if entry
            .username()
            .is_some_and(|u| u.starts_with("system:node:"))
        {
            out.warnings.push(format!(
                "{location}: {} is a node role; if EKS manages it (managed node groups, Fargate), consider leaving it unmanaged or --protected-arn instead of importing it",
                entry.principal()
            ));
        }
        candidates.push((location, base_name(&entry), spec));
    }

    // Count the names as they will be cut: long IAM paths can make distinct bases equal.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, base, _) in &candidates {
        *counts.entry(truncate(base, 253)).or_default() += 1;
    }
    let names: Vec<String> = candidates
        .iter()
        .map(|(_, base, spec)| {
            if counts[truncate(base, 253)] > 1 {
                format!("{}-{:08x}", truncate(base, 240), fnv1a(spec.principal()))
            } else {
                truncate(base, 253).to_string()
            }
        })
        .collect();
    for ((location, _, spec), name) in candidates.into_iter().zip(names) {
        let mut mapping = IamIdentityMapping::new(&name, spec);
        mapping.metadata = ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(
                IMPORTED_FROM_ANNOTATION.to_string(),
                location,
            )])),
            ..Default::default()
        };
        out.mappings.push(mapping);
    }
    out
}

/// The mapping that renders exactly `entry`. It adopts the entry for good: the mapping is the
/// entry from now on, and deleting it removes the entry (rather than giving back a copy).
fn spec_for(entry: &Entry) -> IamIdentityMappingSpec {
    match entry {
        Entry::Role(m) | Entry::User(m) => IamIdentityMappingSpec {
            access_entry: None,
            arn: Some(m.arn.clone()),
            account: None,
            sso_permission_set: None,
            username: Some(m.username.clone()),
            groups: m.groups.clone(),
            adopt_existing_entry: true,
        },
        Entry::Account(a) => IamIdentityMappingSpec {
            account: Some(a.clone()),
            adopt_existing_entry: true,
            ..Default::default()
        },
    }
}

/// `role-111122223333-admin`, `user-111122223333-ops-alice`, `account-111122223333`; the
/// partition is added when it is not `aws`.
fn base_name(entry: &Entry) -> String {
    let raw = match entry {
        Entry::Account(a) => format!("account-{a}"),
        Entry::Role(m) | Entry::User(m) => match IamArn::parse(&m.arn) {
            Ok(arn) => {
                let partition = match arn.partition.as_str() {
                    "aws" => String::new(),
                    p => format!("{p}-"),
                };
                format!(
                    "{}-{partition}{}-{}{}",
                    arn.kind, arn.account, arn.path, arn.name
                )
            }
            Err(_) => format!("{}-{}", entry.section(), m.arn),
        },
    };
    dns1123(&raw)
}

/// Lowercase alphanumerics and single dashes, starting and ending alphanumeric.
fn dns1123(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "mapping".to_string()
    } else {
        trimmed.to_string()
    }
}

fn truncate(name: &str, max: usize) -> &str {
    if name.len() <= max {
        name
    } else {
        name[..max].trim_end_matches('-')
    }
}

/// FNV-1a: a stable, dependency-free hash for disambiguating names.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |hash, b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awsauth::Section;

    fn data(roles: &str) -> ConfigMapData {
        ConfigMapData::from([(Section::MapRoles.key().to_string(), roles.to_string())])
    }

    #[test]
    fn names_are_dns1123_and_unique() {
        let out = import(&data(
            "- rolearn: arn:aws:iam::111122223333:role/Admin_Role\n  username: a\n- rolearn: arn:aws:iam::111122223333:role/admin-role\n  username: b\n- rolearn: arn:aws-cn:iam::111122223333:role/x\n  username: c\n",
        ));
        let names: Vec<_> = out
            .mappings
            .iter()
            .map(|m| m.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names.len(), 3);
        // Admin_Role and admin-role are different principals whose names collide once
        // sanitised: both get a hash suffix.
        assert_eq!(out.skipped.len(), 0, "{:?}", out.skipped);
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        }));
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 3);
        assert!(
            names.contains(&"role-aws-cn-111122223333-x".to_string()),
            "{names:?}"
        );
    }
}
