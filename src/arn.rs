//! IAM ARN parsing and canonicalisation.
//!
//! aws-iam-authenticator canonicalises the caller's ARN before the lookup: an assumed-role session
//! becomes `arn:P:iam::ACCT:role/NAME` **without** the role's path. A `rolearn` in aws-auth must
//! therefore be written path-stripped, while a `userarn` keeps its path. EKS access entries are the
//! opposite: their `principalArn` is the real ARN, path included. [`IamArn`] keeps both forms.

use std::fmt;

use thiserror::Error;

/// The partitions aws-iam-authenticator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
    AwsIso,
    AwsIsoB,
    AwsIsoE,
    AwsIsoF,
    AwsEusc,
}

impl Partition {
    pub const ALL: [Partition; 8] = [
        Partition::Aws,
        Partition::AwsCn,
        Partition::AwsUsGov,
        Partition::AwsIso,
        Partition::AwsIsoB,
        Partition::AwsIsoE,
        Partition::AwsIsoF,
        Partition::AwsEusc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
            Partition::AwsIso => "aws-iso",
            Partition::AwsIsoB => "aws-iso-b",
            Partition::AwsIsoE => "aws-iso-e",
            Partition::AwsIsoF => "aws-iso-f",
            Partition::AwsEusc => "aws-eusc",
        }
    }

    pub fn parse(s: &str) -> Option<Partition> {
        Partition::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which aws-auth section a principal belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    Role,
    User,
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrincipalKind::Role => "role",
            PrincipalKind::User => "user",
        })
    }
}

/// A parsed IAM role or user ARN that borrows its parts from the text (see `IamArn`). Checks
/// over every entry of a large aws-auth use it, so that parsing does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IamArnRef<'a> {
    pub partition: Partition,
    pub account: &'a str,
    pub kind: PrincipalKind,
    /// `/` or `/a/b/`, exactly as written.
    pub path: &'a str,
    pub name: &'a str,
}

/// A parsed IAM role or user ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IamArn {
    pub partition: Partition,
    pub account: String,
    pub kind: PrincipalKind,
    /// `/` or `/a/b/`, exactly as written.
    pub path: String,
    pub name: String,
}

/// The IAM Identity Center (SSO) path prefix EKS users meet most often.
const SSO_PATH_PREFIX: &str = "/aws-reserved/sso.amazonaws.com/";
/// Service-linked roles live under this path.
const SERVICE_ROLE_PATH_PREFIX: &str = "/aws-service-role/";

/// Why a string is not an ARN the operator can map.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArnError {
    #[error(
        "`{arn}` is not an ARN: expected arn:PARTITION:iam::ACCOUNT:role/NAME or arn:PARTITION:iam::ACCOUNT:user/NAME"
    )]
    NotAnArn { arn: String },
    #[error(
        "`{arn}` has unknown partition `{partition}`: use one of aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc"
    )]
    UnknownPartition { arn: String, partition: String },
    #[error("`{arn}` has account id `{account}`: an account id is exactly 12 digits")]
    BadAccount { arn: String, account: String },
    #[error(
        "`{arn}` is an STS assumed-role session ARN, which changes with every session: map the role itself, `{suggestion}`"
    )]
    AssumedRole { arn: String, suggestion: String },
    #[error(
        "`{arn}` is an STS ARN: map the IAM role or user behind it (arn:PARTITION:iam::ACCOUNT:role/NAME)"
    )]
    OtherSts { arn: String },
    #[error(
        "`{arn}` is an instance profile ARN: map the role the instance profile contains (arn:{partition}:iam::{account}:role/ROLE_NAME)"
    )]
    InstanceProfile {
        arn: String,
        partition: String,
        account: String,
    },
    #[error(
        "`{arn}` is an IAM group ARN: aws-auth cannot map groups; map each role or user, or use an access entry per role"
    )]
    Group { arn: String },
    #[error(
        "`{arn}` contains a wildcard: aws-auth matches exact ARNs only; write one mapping per role or user"
    )]
    Wildcard { arn: String },
    #[error(
        "`{arn}` contains a template variable: ARNs are matched literally, only username and groups are templated; write the real account id and name"
    )]
    Template { arn: String },
    #[error(
        "`{arn}` is an ARN of service `{service}`: only IAM roles and users (service `iam`) can be mapped"
    )]
    NotIam { arn: String, service: String },
    #[error("`{arn}` names a `{resource_type}`: only `role/...` and `user/...` can be mapped")]
    UnsupportedResource { arn: String, resource_type: String },
    #[error(
        "`{arn}` has a region (`{region}`): IAM ARNs are global, write arn:PARTITION:iam::ACCOUNT:..."
    )]
    HasRegion { arn: String, region: String },
    #[error(
        "`{arn}` has an invalid name `{name}`: IAM names are 1-64 characters of letters, digits and +=,.@_-"
    )]
    BadName { arn: String, name: String },
    #[error(
        "`{arn}` has an invalid path `{path}`: a path starts and ends with `/` and holds printable ASCII without spaces"
    )]
    BadPath { arn: String, path: String },
}

impl ArnError {
    /// Machine-readable reason for status conditions and JSON reports.
    pub fn reason(&self) -> &'static str {
        match self {
            ArnError::NotAnArn { .. } => "ArnMalformed",
            ArnError::UnknownPartition { .. } => "ArnUnknownPartition",
            ArnError::BadAccount { .. } => "ArnBadAccount",
            ArnError::AssumedRole { .. } => "ArnIsAssumedRole",
            ArnError::OtherSts { .. } => "ArnIsSts",
            ArnError::InstanceProfile { .. } => "ArnIsInstanceProfile",
            ArnError::Group { .. } => "ArnIsGroup",
            ArnError::Wildcard { .. } => "ArnHasWildcard",
            ArnError::Template { .. } => "ArnHasTemplate",
            ArnError::NotIam { .. } => "ArnNotIam",
            ArnError::UnsupportedResource { .. } => "ArnUnsupportedResource",
            ArnError::HasRegion { .. } => "ArnHasRegion",
            ArnError::BadName { .. } => "ArnBadName",
            ArnError::BadPath { .. } => "ArnBadPath",
        }
    }
}

pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

// The scans below run for every ARN, username and group of a large aws-auth and of every
// mapping. They fold over all bytes of a slice with `|` and `&` instead of stopping early,
// which lets the compiler check many bytes at a time.

/// Whether `bytes` holds `byte`.
fn has_byte(bytes: &[u8], byte: u8) -> bool {
    bytes.iter().fold(false, |seen, &b| seen | (b == byte))
}

/// Whether `test` holds for two neighbouring bytes somewhere in `bytes`. A scan of two slices,
/// which vectorises.
fn any_pair(bytes: &[u8], test: impl Fn(u8, u8) -> bool) -> bool {
    let next = bytes.get(1..).unwrap_or_default();
    bytes
        .iter()
        .zip(next)
        .fold(false, |seen, (&a, &b)| seen | test(a, b))
}

/// Whether `bytes` holds the byte pair `first`, `second`.
fn has_pair(bytes: &[u8], first: u8, second: u8) -> bool {
    any_pair(bytes, |a, b| (a == first) & (b == second))
}

/// Bytes allowed in an IAM name: letters, digits and `+=,.@_-`. A table: a range test per
/// byte class costs several times more.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-');
        b += 1;
    }
    table
};

fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .as_bytes()
            .iter()
            .fold(true, |valid, &b| valid & NAME_BYTES[usize::from(b)])
}

/// `/`, or `/a/b/`: printable ASCII without spaces, no empty segment.
fn is_valid_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.len() <= 512
        && bytes.first() == Some(&b'/')
        && bytes.last() == Some(&b'/')
        && bytes
            .iter()
            .fold(true, |valid, &b| valid & (0x21..=0x7e).contains(&b))
        && !has_pair(bytes, b'/', b'/')
}

impl<'a> IamArnRef<'a> {
    /// Parses an IAM role or user ARN without copying any of it. Rejects everything else with
    /// an error that says what to write instead.
    pub fn parse(arn: &'a str) -> Result<IamArnRef<'a>, ArnError> {
        let owned = || arn.to_string();
        let bytes = arn.as_bytes();
        // Braces and wildcards are rare: one scan says whether to look closer.
        let special = bytes.iter().fold(false, |seen, &b| {
            seen | matches!(b, b'{' | b'}' | b'*' | b'?')
        });
        if special {
            if has_pair(bytes, b'{', b'{') || has_pair(bytes, b'}', b'}') {
                return Err(ArnError::Template { arn: owned() });
            }
            if arn.contains(['*', '?']) {
                return Err(ArnError::Wildcard { arn: owned() });
            }
        }
        // The first five colons (`splitn(6, ':')`); they are all near the start.
        let mut colons = [0usize; 5];
        let mut found = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b':' {
                colons[found] = i;
                found += 1;
                if found == colons.len() {
                    break;
                }
            }
        }
        if found < colons.len() || &arn[..colons[0]] != "arn" {
            return Err(ArnError::NotAnArn { arn: owned() });
        }
        let part = |k: usize| &arn[colons[k] + 1..colons[k + 1]];
        let (partition, service, region, account) = (part(0), part(1), part(2), part(3));
        let resource = &arn[colons[4] + 1..];
        let Some(partition) = Partition::parse(partition) else {
            return Err(ArnError::UnknownPartition {
                arn: owned(),
                partition: partition.to_string(),
            });
        };
        if service == "sts" {
            if let Some(rest) = resource.strip_prefix("assumed-role/") {
                let role = rest.split('/').next().unwrap_or_default();
                return Err(ArnError::AssumedRole {
                    arn: owned(),
                    suggestion: format!("arn:{partition}:iam::{account}:role/{role}"),
                });
            }
            return Err(ArnError::OtherSts { arn: owned() });
        }
        if service != "iam" {
            return Err(ArnError::NotIam {
                arn: owned(),
                service: service.to_string(),
            });
        }
        if !is_account_id(account) {
            return Err(ArnError::BadAccount {
                arn: owned(),
                account: account.to_string(),
            });
        }
        if !region.is_empty() {
            return Err(ArnError::HasRegion {
                arn: owned(),
                region: region.to_string(),
            });
        }
        // `str::split_once` and `str::rfind` cost more to set up than these short scans.
        let (resource_type, path_and_name) = match resource.bytes().position(|b| b == b'/') {
            Some(slash) => (&resource[..slash], &resource[slash + 1..]),
            None => (resource, ""),
        };
        let kind = match resource_type {
            "role" => PrincipalKind::Role,
            "user" => PrincipalKind::User,
            "instance-profile" => {
                return Err(ArnError::InstanceProfile {
                    arn: owned(),
                    partition: partition.to_string(),
                    account: account.to_string(),
                });
            }
            "group" => return Err(ArnError::Group { arn: owned() }),
            other => {
                return Err(ArnError::UnsupportedResource {
                    arn: owned(),
                    resource_type: other.to_string(),
                });
            }
        };
        // `resource` is `TYPE/PATH/NAME`: the path is the slice from the `/` after the type up
        // to and including the last `/`.
        let (path, name) = match memchr::memrchr(b'/', path_and_name.as_bytes()) {
            Some(i) => {
                let path_start = resource_type.len();
                (
                    &resource[path_start..path_start + i + 2],
                    &path_and_name[i + 1..],
                )
            }
            None => ("/", path_and_name),
        };
        if !is_valid_path(path) {
            return Err(ArnError::BadPath {
                arn: owned(),
                path: path.to_string(),
            });
        }
        if !is_valid_name(name) {
            return Err(ArnError::BadName {
                arn: owned(),
                name: name.to_string(),
            });
        }
        Ok(IamArnRef {
            partition,
            account,
            kind,
            path,
            name,
        })
    }

    /// The real ARN, path included (what IAM and EKS access entries use).
    pub fn to_owned(&self) -> IamArn {
        IamArn {
            partition: self.partition,
            account: self.account.to_string(),
            kind: self.kind,
            path: self.path.to_string(),
            name: self.name.to_string(),
        }
    }

    pub fn has_path(&self) -> bool {
        self.path != "/"
    }

    /// The ARN as aws-auth must hold it: roles path-stripped (the authenticator compares
    /// against the canonicalised caller ARN, which never has a path), users unchanged.
    pub fn aws_auth_arn(&self) -> String {
        let mut out = String::with_capacity(
            "arn::iam:::role/".len() + 16 + self.account.len() + self.path.len() + self.name.len(),
        );
        out.push_str("arn:");
        out.push_str(self.partition.as_str());
        out.push_str(":iam::");
        out.push_str(self.account);
        out.push(':');
        match self.kind {
            PrincipalKind::Role => out.push_str("role/"),
            PrincipalKind::User => {
                out.push_str("user");
                out.push_str(self.path);
            }
        }
        out.push_str(self.name);
        out
    }
}

impl fmt::Display for IamArnRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:iam::{}:{}{}{}",
            self.partition, self.account, self.kind, self.path, self.name
        )
    }
}

impl IamArn {
    /// Parses an IAM role or user ARN. Rejects everything else with an error that says what to
    /// write instead.
    pub fn parse(arn: &str) -> Result<IamArn, ArnError> {
        IamArnRef::parse(arn).map(|arn| arn.to_owned())
    }

    pub fn full_arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:{}{}{}",
            self.partition, self.account, self.kind, self.path, self.name
        )
    }

    /// The ARN as aws-auth must hold it: roles path-stripped (the authenticator compares against
    /// the canonicalised caller ARN, which never has a path), users unchanged.
    pub fn aws_auth_arn(&self) -> String {
        self.as_ref().aws_auth_arn()
    }

    pub fn as_ref(&self) -> IamArnRef<'_> {
        IamArnRef {
            partition: self.partition,
            account: &self.account,
            kind: self.kind,
            path: &self.path,
            name: &self.name,
        }
    }

    pub fn has_path(&self) -> bool {
        self.path != "/"
    }

    /// An IAM Identity Center permission-set role.
    pub fn is_sso(&self) -> bool {
        self.kind == PrincipalKind::Role && self.path.starts_with(SSO_PATH_PREFIX)
    }

    pub fn is_service_linked(&self) -> bool {
        self.kind == PrincipalKind::Role && self.path.starts_with(SERVICE_ROLE_PATH_PREFIX)
    }

    /// The key the authenticator looks this principal up by.
    pub fn principal_key(&self) -> PrincipalKey {
        match self.kind {
            PrincipalKind::Role => PrincipalKey::role(&self.aws_auth_arn()),
            PrincipalKind::User => PrincipalKey::user(&self.full_arn()),
        }
    }
}

impl fmt::Display for IamArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_arn())
    }
}

/// The identity of an aws-auth entry as the authenticator keys it: roles and users by lowercased
/// ARN, accounts by id. Two entries with the same key compete for the same caller. (IAM names are
/// unique case-insensitively, so `user/Bob` and `user/bob` are one IAM user; the authenticator
/// matches both entries and picks one at random, or the last, depending on its version.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKey {
    Role(String),
    User(String),
    Account(String),
}

/// `str::to_lowercase` (Go's `strings.ToLower`, what the authenticator uses), with the common
/// case of an ASCII ARN done without Unicode tables.
fn lowercase(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

impl PrincipalKey {
    pub fn role(rolearn: &str) -> PrincipalKey {
        PrincipalKey::Role(lowercase(rolearn))
    }

    pub fn user(userarn: &str) -> PrincipalKey {
        PrincipalKey::User(lowercase(userarn))
    }

    pub fn account(id: &str) -> PrincipalKey {
        PrincipalKey::Account(id.to_string())
    }

    pub fn as_str(&self) -> &str {
        match self {
            PrincipalKey::Role(s) | PrincipalKey::User(s) | PrincipalKey::Account(s) => s,
        }
    }
}

impl fmt::Display for PrincipalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalKey::Role(s) => write!(f, "role {s}"),
            PrincipalKey::User(s) => write!(f, "user {s}"),
            PrincipalKey::Account(s) => write!(f, "account {s}"),
        }
    }
}

/// The template variables aws-iam-authenticator substitutes in usernames and groups.
pub const TEMPLATE_VARIABLES: [&str; 5] = [
    "AccountID",
    "SessionName",
    "SessionNameRaw",
    "AccessKeyID",
    "EC2PrivateDNSName",
];

/// A `{{...}}` occurrence in a username or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateUse<'t> {
    pub variable: &'t str,
    pub known: bool,
}

/// Every `{{...}}` in `text`, in order. An opening `{{` without a closing `}}` is reported as an
/// unknown variable, since the authenticator would leave it verbatim in the username.
pub fn template_variables(text: &str) -> TemplateVariables<'_> {
    // Most groups have no template at all.
    TemplateVariables {
        rest: has_byte(text.as_bytes(), b'{').then_some(text),
    }
}

/// The iterator of `template_variables`.
pub struct TemplateVariables<'t> {
    /// The text not scanned yet; `None` when done.
    rest: Option<&'t str>,
}

impl<'t> Iterator for TemplateVariables<'t> {
    type Item = TemplateUse<'t>;

    fn next(&mut self) -> Option<TemplateUse<'t>> {
        let rest = self.rest.take()?;
        let after = &rest[find_pair(rest, b'{')? + 2..];
        Some(match find_pair(after, b'}') {
            Some(end) => {
                let variable = &after[..end];
                self.rest = Some(&after[end + 2..]);
                TemplateUse {
                    variable,
                    known: TEMPLATE_VARIABLES.contains(&variable),
                }
            }
            None => TemplateUse {
                variable: after,
                known: false,
            },
        })
    }
}

/// Where `cc` (a doubled ASCII byte such as `{{`) first occurs. A byte scan: this runs for
/// every string of a large aws-auth, where building a substring searcher each time shows.
fn find_pair(text: &str, c: u8) -> Option<usize> {
    let bytes = text.as_bytes();
    let next = bytes.get(1..).unwrap_or_default();
    bytes
        .iter()
        .zip(next)
        .position(|(&a, &b)| (a == c) & (b == c))
}

/// Words that mark a placeholder in an ARN, matched case-insensitively. Each holds `CCO`, `XXX`
/// or `_NA`, which `find_placeholder` looks for first (a test checks this for every marker).
const PLACEHOLDER_MARKERS: [&str; 6] = [
    "ACCOUNT_ID",
    "ACCOUNTID",
    "AWS_ACCOUNT",
    "XXXXXXXXXXXX",
    "ROLE_NAME",
    "USER_NAME",
];

/// Placeholders people leave in copied examples (`<ACCOUNT_ID>`, `${AWS_ACCOUNT_ID}`,
/// `{{AccountID}}`, `XXXXXXXXXXXX`). Returns the placeholder text when one is present.
pub fn find_placeholder(arn: &str) -> Option<String> {
    if arn
        .as_bytes()
        .iter()
        .fold(false, |seen, &b| seen | matches!(b, b'{' | b'$' | b'<'))
    {
        for (open, close) in [("{{", "}}"), ("${", "}"), ("<", ">")] {
            if let Some(start) = arn.find(open)
                && let Some(len) = arn[start..].find(close)
            {
                return Some(arn[start..start + len + close.len()].to_string());
            }
        }
    }
    // One pass over the bytes; a marker is only compared where its first letter occurs.
    let bytes = arn.as_bytes();
    // Every marker holds `CCO`, `XXX` or `_NA` (any case): most ARNs hold none, and are done
    // here (`Access`, common in SSO role names, passes the first filter, not the second).
    // `| 0x20` folds exactly the ASCII letters' case: `c` matches only `C` and `c`, etc.
    // First the pairs each of those starts with.
    let may_hold_pair = any_pair(bytes, |first, second| {
        let (a, b) = (first | 0x20, second | 0x20);
        ((a == b'c') & (b == b'c')) | ((a == b'x') & (b == b'x')) | ((first == b'_') & (b == b'n'))
    });
    if !may_hold_pair {
        return None;
    }
    let may_hold_marker = bytes.windows(3).fold(false, |seen, w| {
        let (a, b, c) = (w[0] | 0x20, w[1] | 0x20, w[2] | 0x20);
        seen | ((a == b'c') & (b == b'c') & (c == b'o'))
            | ((a == b'x') & (b == b'x') & (c == b'x'))
            | ((w[0] == b'_') & (b == b'n') & (c == b'a'))
    });
    if !may_hold_marker {
        return None;
    }
    for (i, b) in bytes.iter().enumerate() {
        let first = b.to_ascii_uppercase();
        if !matches!(first, b'A' | b'X' | b'R' | b'U') {
            continue;
        }
        for marker in PLACEHOLDER_MARKERS {
            if marker.as_bytes()[0] == first
                && bytes
                    .get(i..i + marker.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(marker.as_bytes()))
            {
                return Some(arn[i..i + marker.len()].to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_keys_are_lowercased_like_strings_to_lower() {
        for arn in [
            "arn:aws:iam::111122223333:role/Admin-Team",
            "arn:aws:iam::111122223333:role/ÉQUIPE",
            "arn:aws:iam::111122223333:user/ÀdminΣ",
        ] {
            assert_eq!(
                PrincipalKey::role(arn).as_str(),
                arn.to_lowercase(),
                "{arn}"
            );
            assert_eq!(
                PrincipalKey::user(arn).as_str(),
                arn.to_lowercase(),
                "{arn}"
            );
        }
    }

    #[test]
    fn role_without_path() {
        let arn = IamArn::parse("arn:aws:iam::111122223333:role/admin").unwrap();
        assert_eq!(arn.kind, PrincipalKind::Role);
        assert_eq!(arn.path, "/");
        assert_eq!(arn.name, "admin");
        assert_eq!(arn.aws_auth_arn(), "arn:aws:iam::111122223333:role/admin");
        assert!(!arn.has_path());
    }

    #[test]
    fn role_path_is_stripped_for_aws_auth_and_kept_for_full_arn() {
        let arn = IamArn::parse("arn:aws:iam::111122223333:role/team/dev/admin").unwrap();
        assert_eq!(arn.path, "/team/dev/");
        assert_eq!(arn.aws_auth_arn(), "arn:aws:iam::111122223333:role/admin");
        assert_eq!(
            arn.full_arn(),
            "arn:aws:iam::111122223333:role/team/dev/admin"
        );
        assert!(arn.has_path());
    }

    #[test]
    fn sso_role_is_path_stripped() {
        let raw = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef";
        let arn = IamArn::parse(raw).unwrap();
        assert!(arn.is_sso());
        assert_eq!(
            arn.aws_auth_arn(),
            "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef"
        );
        assert_eq!(arn.full_arn(), raw);
    }

    #[test]
    fn user_keeps_its_path() {
        let arn = IamArn::parse("arn:aws:iam::111122223333:user/ops/alice").unwrap();
        assert_eq!(arn.kind, PrincipalKind::User);
        assert_eq!(
            arn.aws_auth_arn(),
            "arn:aws:iam::111122223333:user/ops/alice"
        );
    }

    #[test]
    fn every_partition_parses() {
        for p in Partition::ALL {
            let raw = format!("arn:{p}:iam::111122223333:role/x");
            let arn = IamArn::parse(&raw).unwrap();
            assert_eq!(arn.partition, p);
            assert_eq!(arn.full_arn(), raw);
        }
    }

    #[test]
    fn role_and_user_keys_are_case_insensitive() {
        let a = IamArn::parse("arn:aws:iam::111122223333:role/Admin").unwrap();
        let b = IamArn::parse("arn:aws:iam::111122223333:role/path/admin").unwrap();
        assert_eq!(a.principal_key(), b.principal_key());
        let u1 = IamArn::parse("arn:aws:iam::111122223333:user/Alice").unwrap();
        let u2 = IamArn::parse("arn:aws:iam::111122223333:user/alice").unwrap();
        assert_eq!(u1.principal_key(), u2.principal_key());
        // A user keeps its path: another path is another user.
        let u3 = IamArn::parse("arn:aws:iam::111122223333:user/ops/alice").unwrap();
        assert_ne!(u1.principal_key(), u3.principal_key());
        assert_ne!(
            a.principal_key(),
            PrincipalKey::user("arn:aws:iam::111122223333:role/admin")
        );
    }

    #[test]
    fn assumed_role_suggests_the_role() {
        let err = IamArn::parse("arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com")
            .unwrap_err();
        assert_eq!(err.reason(), "ArnIsAssumedRole");
        assert!(
            err.to_string()
                .contains("arn:aws:iam::111122223333:role/Admin"),
            "{err}"
        );
    }

    #[test]
    fn rejections_have_precise_reasons() {
        let cases = [
            (
                "arn:aws:iam::111122223333:instance-profile/web",
                "ArnIsInstanceProfile",
            ),
            ("arn:aws:iam::111122223333:group/admins", "ArnIsGroup"),
            ("arn:aws:iam::111122223333:role/*", "ArnHasWildcard"),
            ("arn:aws:iam::11112222333:role/x", "ArnBadAccount"),
            ("arn:aws:iam::11112222333a:role/x", "ArnBadAccount"),
            (
                "arn:aws-moon:iam::111122223333:role/x",
                "ArnUnknownPartition",
            ),
            ("arn:aws:iam::{{AccountID}}:role/x", "ArnHasTemplate"),
            ("arn:aws:s3:::bucket", "ArnNotIam"),
            (
                "arn:aws:ec2:us-east-1:111122223333:instance/i-1",
                "ArnNotIam",
            ),
            ("arn:aws:iam:us-east-1:111122223333:role/x", "ArnHasRegion"),
            (
                "arn:aws:iam::111122223333:policy/x",
                "ArnUnsupportedResource",
            ),
            ("arn:aws:iam::111122223333:role/", "ArnBadName"),
            ("arn:aws:iam::111122223333:role/has space", "ArnBadName"),
            ("arn:aws:iam::111122223333:role/a//b", "ArnBadPath"),
            ("arn:aws:sts::111122223333:federated-user/bob", "ArnIsSts"),
            ("admin", "ArnMalformed"),
            ("", "ArnMalformed"),
        ];
        for (raw, reason) in cases {
            let err = IamArn::parse(raw).unwrap_err();
            assert_eq!(err.reason(), reason, "{raw}: {err}");
        }
    }

    #[test]
    fn name_length_limit() {
        let ok = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(64));
        assert!(IamArn::parse(&ok).is_ok());
        let long = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(65));
        assert_eq!(IamArn::parse(&long).unwrap_err().reason(), "ArnBadName");
    }

    #[test]
    fn service_linked_role() {
        let arn = IamArn::parse(
            "arn:aws:iam::111122223333:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
        )
        .unwrap();
        assert!(arn.is_service_linked());
    }

    #[test]
    fn template_variable_scan() {
        let found: Vec<_> = template_variables("{{SessionName}}-{{Foo}}-{{AccountID").collect();
        assert_eq!(
            found,
            vec![
                TemplateUse {
                    variable: "SessionName",
                    known: true
                },
                TemplateUse {
                    variable: "Foo",
                    known: false
                },
                TemplateUse {
                    variable: "AccountID",
                    known: false
                },
            ]
        );
        assert_eq!(template_variables("plain").count(), 0);
        assert_eq!(template_variables("a{b}{c").count(), 0);
        assert_eq!(template_variables("").count(), 0);
        assert_eq!(template_variables("{").count(), 0);
        for v in TEMPLATE_VARIABLES {
            let text = format!("x{{{{{v}}}}}y");
            let found: Vec<_> = template_variables(&text).collect();
            assert_eq!(found.len(), 1);
            assert!(found[0].known);
        }
        // Variables are case-sensitive in the authenticator.
        let found: Vec<_> = template_variables("{{accountid}}").collect();
        assert!(!found[0].known);
        // An unclosed one is unknown, and ends the scan.
        let found: Vec<_> = template_variables("{{AccountID}}{{SessionName").collect();
        assert_eq!(found.len(), 2);
        assert!(found[0].known && !found[1].known);
        assert_eq!(found[1].variable, "SessionName");
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            find_placeholder("arn:aws:iam::<ACCOUNT_ID>:role/x").as_deref(),
            Some("<ACCOUNT_ID>")
        );
        assert_eq!(
            find_placeholder("arn:aws:iam::${AWS_ACCOUNT_ID}:role/x").as_deref(),
            Some("${AWS_ACCOUNT_ID}")
        );
        assert_eq!(
            find_placeholder("arn:aws:iam::{{AccountID}}:role/x").as_deref(),
            Some("{{AccountID}}")
        );
        assert_eq!(
            find_placeholder("arn:aws:iam::XXXXXXXXXXXX:role/x").as_deref(),
            Some("XXXXXXXXXXXX")
        );
        assert_eq!(find_placeholder("arn:aws:iam::111122223333:role/x"), None);
        for (arn, marker) in [
            ("arn:aws:iam::ACCOUNT_ID:role/x", "ACCOUNT_ID"),
            ("arn:aws:iam::accountid:role/x", "accountid"),
            ("arn:aws:iam::Aws_Account:role/x", "Aws_Account"),
            ("arn:aws:iam::xxxxxxxxxxxx:role/x", "xxxxxxxxxxxx"),
            ("arn:aws:iam::111122223333:role/ROLE_NAME", "ROLE_NAME"),
            ("arn:aws:iam::111122223333:user/team/user_name", "user_name"),
        ] {
            assert_eq!(find_placeholder(arn).as_deref(), Some(marker), "{arn}");
        }
        assert_eq!(
            find_placeholder(
                "arn:aws:iam::111122223333:role/AWSReservedSSO_AdministratorAccess_0a1b"
            ),
            None
        );
    }

    /// The markers looked for without the prefilter: what `find_placeholder` must agree with.
    fn marker_by_plain_search(arn: &str) -> Option<String> {
        let upper = arn.to_ascii_uppercase();
        PLACEHOLDER_MARKERS
            .into_iter()
            .filter_map(|marker| upper.find(marker).map(|at| (at, marker.len())))
            .min()
            .map(|(at, len)| arn[at..at + len].to_string())
    }

    #[test]
    fn every_marker_is_found_alone() {
        for marker in PLACEHOLDER_MARKERS {
            let arn = format!("arn:aws:iam::111122223333:role/{}", marker.to_lowercase());
            assert_eq!(
                find_placeholder(&arn),
                marker_by_plain_search(&arn),
                "{marker}"
            );
            assert!(find_placeholder(&arn).is_some(), "{marker}");
        }
    }

    proptest::proptest! {
        #[test]
        fn marker_search_misses_nothing(arn in "[ACOUNT_IDWSXRLEMacountidwsxrlem:/-]{0,40}") {
            proptest::prop_assert_eq!(find_placeholder(&arn), marker_by_plain_search(&arn));
        }
    }
}
