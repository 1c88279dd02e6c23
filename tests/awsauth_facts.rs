//! One test per fact of how aws-iam-authenticator reads aws-auth (pkg/mapper/configmap: go-yaml
//! v2, then Go's encoding/json, each key its own way): the parser must read aws-auth exactly as
//! the authenticator does, and say so when the result is not what was meant.

use aws_auth_operator::awsauth::{
    ArnMapping, AwsAuthEntries, ConfigMapData, DiagnosticKind, ParsedAwsAuth, Section, Severity,
    parse_data, render_data,
};

fn data(pairs: &[(&str, &str)]) -> ConfigMapData {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn reasons(parsed: &ParsedAwsAuth) -> Vec<DiagnosticKind> {
    parsed.diagnostics.iter().map(|d| d.reason).collect()
}

fn role(arn: &str, username: &str, groups: &[&str]) -> ArnMapping {
    ArnMapping {
        arn: arn.into(),
        username: username.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

const GOOD_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/admin\n  username: admin\n  groups:\n    - system:masters\n";

#[test]
fn only_the_three_keys_are_read_and_key_names_are_case_sensitive() {
    let parsed = parse_data(&data(&[
        ("maproles", GOOD_ROLE),
        ("MapUsers", "[]"),
        ("other", "x"),
    ]));
    assert!(
        parsed.entries.is_empty(),
        "mis-cased keys contribute nothing"
    );
    assert_eq!(
        reasons(&parsed),
        vec![
            DiagnosticKind::MisCasedKey,
            DiagnosticKind::MisCasedKey,
            DiagnosticKind::UnknownKey
        ]
    );
    let miscased = &parsed.diagnostics[0];
    assert_eq!(miscased.severity, Severity::Error);
    assert!(
        miscased.message.contains("rename the key to `mapUsers`"),
        "{}",
        miscased.message
    );
    assert_eq!(parsed.diagnostics[2].severity, Severity::Warning);
}

#[test]
fn a_yaml_error_drops_every_entry_of_that_key_only() {
    let broken_users =
        "- userarn: arn:aws:iam::111122223333:user/alice\n  username: alice\n groups: [a]\n";
    let parsed = parse_data(&data(&[
        ("mapRoles", GOOD_ROLE),
        ("mapUsers", broken_users),
    ]));
    assert_eq!(parsed.entries.roles.len(), 1, "mapRoles still applies");
    assert!(
        parsed.entries.users.is_empty(),
        "every mapUsers entry is dropped"
    );
    assert!(parsed.malformed.contains(&Section::MapUsers));
    let d = &parsed.diagnostics[0];
    assert_eq!(d.reason, DiagnosticKind::YamlError);
    assert_eq!(d.key, "mapUsers");
    assert_eq!(d.line, Some(3), "{d}");
    assert!(d.column.is_some());
    assert!(
        d.message.contains("drops every entry of mapUsers"),
        "{}",
        d.message
    );
}

#[test]
fn tabs_in_indentation_break_the_key() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/a\n\tusername: a\n",
    )]));
    assert!(parsed.malformed.contains(&Section::MapRoles));
    assert!(parsed.entries.roles.is_empty());
}

#[test]
fn a_key_that_is_not_a_list_is_dropped() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "rolearn: arn:aws:iam::111122223333:role/a\nusername: a\n",
    )]));
    assert_eq!(reasons(&parsed), vec![DiagnosticKind::NotAList]);
    assert!(parsed.malformed.contains(&Section::MapRoles));
}

#[test]
fn empty_and_null_keys_are_fine() {
    for text in ["", "[]", "~", "# only a comment\n"] {
        let parsed = parse_data(&data(&[("mapRoles", text)]));
        assert!(
            parsed.diagnostics.is_empty(),
            "{text:?}: {:?}",
            parsed.diagnostics
        );
        assert!(parsed.entries.is_empty());
    }
}

#[test]
fn unquoted_yaml11_booleans_blank_the_group_but_keep_the_entry() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: a\n  groups: [on, yes, 'no', dev]\n",
    )]));
    assert_eq!(
        parsed.entries.roles,
        vec![role(
            "arn:aws:iam::111122223333:role/a",
            "a",
            &["", "", "no", "dev"]
        )]
    );
    let coerced: Vec<_> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.reason == DiagnosticKind::Coerced)
        .collect();
    assert_eq!(coerced.len(), 2);
    assert!(
        coerced[0].message.contains("boolean true"),
        "{}",
        coerced[0].message
    );
    assert!(
        coerced[0].message.contains("Quote it"),
        "{}",
        coerced[0].message
    );
    assert_eq!(coerced[0].entry, Some(0));
    assert_eq!(coerced[0].line, Some(3));
}

#[test]
fn an_unquoted_number_blanks_a_username() {
    let parsed = parse_data(&data(&[(
        "mapUsers",
        "- userarn: arn:aws:iam::111122223333:user/bob\n  username: 1234\n  groups: []\n",
    )]));
    assert_eq!(parsed.entries.users[0].username, "");
    let coerced: Vec<_> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.reason == DiagnosticKind::Coerced)
        .map(|d| (d.key.as_str(), d.entry))
        .collect();
    assert_eq!(coerced, vec![("mapUsers", Some(0))]);
}

/// mapAccounts is decoded by go-yaml v2 straight into `[]string`, without the JSON step of the
/// other keys: a non-null scalar is its literal text, whatever YAML 1.1 resolves it to; null is
/// ""; a list or mapping item is a type error and is skipped.
#[test]
fn map_accounts_items_are_their_literal_text() {
    let parsed = parse_data(&data(&[(
        "mapAccounts",
        "- \"444455556666\"\n- 777788889999\n- 012345678901\n- 0x1F\n- 1e3\n- true\n- 12.50\n- ~\n-\n- [1]\n- {a: b}\n- '111122223333'\n",
    )]));
    assert_eq!(
        parsed.entries.accounts,
        vec![
            "444455556666",
            "777788889999",
            "012345678901",
            "0x1F",
            "1e3",
            "true",
            "12.50",
            "",
            "",
            "111122223333"
        ]
    );
    assert!(parsed.malformed.is_empty());
    // The three valid ids have no diagnostic at all; the rest say exactly what is wrong.
    let by_entry: Vec<_> = parsed
        .diagnostics
        .iter()
        .map(|d| (d.entry, d.reason))
        .collect();
    assert_eq!(
        by_entry,
        vec![
            (Some(3), DiagnosticKind::InvalidAccountId),
            (Some(4), DiagnosticKind::InvalidAccountId),
            (Some(5), DiagnosticKind::InvalidAccountId),
            (Some(6), DiagnosticKind::InvalidAccountId),
            (Some(7), DiagnosticKind::InvalidAccountId),
            (Some(8), DiagnosticKind::InvalidAccountId),
            (Some(9), DiagnosticKind::EntryWrongType),
            (Some(10), DiagnosticKind::EntryWrongType),
        ]
    );
    assert!(
        parsed.diagnostics[4].message.contains("null"),
        "{}",
        parsed.diagnostics[4].message
    );
    assert!(parsed.diagnostics[6].message.contains("skips it"));
}

/// `groups: [on, dev]` blanks only the coerced element: Go's encoding/json leaves that element
/// empty and fills the others.
#[test]
fn a_coerced_group_blanks_only_that_group() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: a\n  groups: [on, dev]\n",
    )]));
    assert_eq!(parsed.entries.roles[0].groups, vec!["", "dev"]);
    let message = &parsed
        .diagnostics
        .iter()
        .find(|d| d.reason == DiagnosticKind::Coerced)
        .expect("a coercion diagnostic")
        .message;
    assert!(
        message.starts_with("group #1 `on` is unquoted"),
        "{message}"
    );
    assert!(
        message.contains("the other groups still apply"),
        "{message}"
    );
}

#[test]
fn quoted_and_block_strings_are_strings() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: \"arn:aws:iam::111122223333:role/a\"\n  username: 'on'\n  groups:\n    - \"yes\"\n    - |-\n      12\n",
    )]));
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.entries.roles[0].username, "on");
    assert_eq!(parsed.entries.roles[0].groups, vec!["yes", "12"]);
}

#[test]
fn map_roles_and_map_users_fields() {
    let parsed = parse_data(&data(&[
        ("mapRoles", GOOD_ROLE),
        (
            "mapUsers",
            "- userarn: arn:aws:iam::111122223333:user/ops/alice\n  username: alice\n  groups: [ops]\n",
        ),
        ("mapAccounts", "- \"111122223333\"\n"),
    ]));
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(
        parsed.entries,
        AwsAuthEntries {
            roles: vec![role(
                "arn:aws:iam::111122223333:role/admin",
                "admin",
                &["system:masters"]
            )],
            users: vec![role(
                "arn:aws:iam::111122223333:user/ops/alice",
                "alice",
                &["ops"]
            )],
            accounts: vec!["111122223333".into()],
        }
    );
}

#[test]
fn the_wrong_arn_field_never_matches() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- userarn: arn:aws:iam::111122223333:role/a\n  username: a\n",
    )]));
    let r = reasons(&parsed);
    assert!(r.contains(&DiagnosticKind::WrongArnField), "{r:?}");
    assert!(r.contains(&DiagnosticKind::MissingArn), "{r:?}");
}

#[test]
fn field_names_match_case_insensitively_like_go_json() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- roleARN: arn:aws:iam::111122223333:role/a\n  UserName: a\n",
    )]));
    assert_eq!(
        parsed.entries.roles[0].arn,
        "arn:aws:iam::111122223333:role/a"
    );
    assert_eq!(parsed.entries.roles[0].username, "a");
    assert_eq!(
        reasons(&parsed),
        vec![DiagnosticKind::FieldNameCase, DiagnosticKind::FieldNameCase]
    );
    assert!(
        parsed
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning)
    );
}

#[test]
fn of_two_spellings_of_a_field_the_last_in_sorted_order_wins() {
    // Go marshals the intermediate map with sorted keys ("Username" < "username"), so
    // `username` is assigned last.
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: lower\n  Username: upper\n",
    )]));
    assert_eq!(parsed.entries.roles[0].username, "lower");
    assert!(reasons(&parsed).contains(&DiagnosticKind::DuplicateField));
}

/// go-yaml v2 (sigs.k8s.io/yaml) assigns a mapping's keys in document order, a `<<` merge
/// included: the value that comes last wins, and the diagnostic names the values and the one
/// the authenticator uses.
#[test]
fn a_key_set_by_a_merge_and_explicitly_takes_the_last_value() {
    let a = "arn:aws:iam::111122223333:role/a";
    let b = "arn:aws:iam::111122223333:role/b";
    let merge_first = format!("- &a\n  rolearn: {a}\n  username: x\n- <<: *a\n  rolearn: {b}\n");
    let parsed = parse_data(&data(&[("mapRoles", &merge_first)]));
    assert_eq!(parsed.entries.roles[1].arn, b);
    assert_eq!(parsed.entries.roles[1].username, "x");
    let message = parsed
        .diagnostics
        .iter()
        .find(|d| d.reason == DiagnosticKind::DuplicateField)
        .map(|d| d.message.clone())
        .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
    assert!(
        message.starts_with(&format!(
            "`rolearn: \"{a}\"`, `rolearn: \"{b}\"` all set `rolearn`; the authenticator uses only the last, `rolearn: \"{b}\"`"
        )),
        "{message}"
    );
    assert!(message.contains("merged in with `<<`"), "{message}");

    // Written before the merge, the explicit value is overwritten by the merged one.
    let merge_last = format!("- &a\n  rolearn: {a}\n  username: x\n- rolearn: {b}\n  <<: *a\n");
    let parsed = parse_data(&data(&[("mapRoles", &merge_last)]));
    assert_eq!(parsed.entries.roles[1].arn, a);
    assert!(reasons(&parsed).contains(&DiagnosticKind::DuplicateField));

    // Of several merged mappings, the first wins.
    let several = format!(
        "- &a {{rolearn: {a}, username: x}}\n- &b {{rolearn: {b}, username: y}}\n- <<: [*a, *b]\n"
    );
    let parsed = parse_data(&data(&[("mapRoles", &several)]));
    assert_eq!(parsed.entries.roles[2].arn, a);
    assert_eq!(parsed.entries.roles[2].username, "x");
}

#[test]
fn unknown_fields_are_reported_and_preserved() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: a\n  sso: {permissionSetName: Admin}\n",
    )]));
    assert_eq!(reasons(&parsed), vec![DiagnosticKind::UnknownField]);
    let entry = &parsed.entries.roles[0];
    assert_eq!(
        entry.extra["sso"],
        serde_json::json!({"permissionSetName": "Admin"})
    );
    // Rendering keeps the field, so preserving an unmanaged entry never loses it.
    let reparsed = parse_data(&render_data(&parsed.entries));
    assert_eq!(reparsed.entries, parsed.entries);
}

#[test]
fn role_arns_with_a_path_never_match() {
    for (arn, stripped) in [
        (
            "arn:aws:iam::111122223333:role/team/dev/admin",
            "arn:aws:iam::111122223333:role/admin",
        ),
        (
            "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_X_abc",
            "arn:aws:iam::111122223333:role/AWSReservedSSO_X_abc",
        ),
    ] {
        let parsed = parse_data(&data(&[(
            "mapRoles",
            &format!("- rolearn: {arn}\n  username: a\n"),
        )]));
        let d = &parsed.diagnostics[0];
        assert_eq!(d.reason, DiagnosticKind::RoleArnHasPath);
        assert_eq!(d.severity, Severity::Error);
        assert!(d.message.contains("never matches"), "{}", d.message);
        assert!(
            d.message.contains(&format!("Write `{stripped}`")),
            "{}",
            d.message
        );
    }
}

#[test]
fn user_arns_keep_their_path() {
    let parsed = parse_data(&data(&[(
        "mapUsers",
        "- userarn: arn:aws:iam::111122223333:user/ops/alice\n  username: alice\n",
    )]));
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
}

#[test]
fn principals_in_the_wrong_section_never_match() {
    let parsed = parse_data(&data(&[
        (
            "mapRoles",
            "- rolearn: arn:aws:iam::111122223333:user/alice\n  username: a\n",
        ),
        (
            "mapUsers",
            "- userarn: arn:aws:iam::111122223333:role/admin\n  username: a\n",
        ),
    ]));
    assert_eq!(
        reasons(&parsed),
        vec![DiagnosticKind::WrongSection, DiagnosticKind::WrongSection]
    );
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("move it to mapUsers")
    );
}

#[test]
fn role_duplicates_are_case_insensitive_and_the_last_wins() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/Admin\n  username: first\n- rolearn: arn:aws:iam::111122223333:role/admin\n  username: second\n",
    )]));
    let d: Vec<_> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.reason == DiagnosticKind::DuplicatePrincipal)
        .collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].entry, Some(0), "the first one loses");
    assert!(
        d[0].message.contains("overridden by mapRoles[1]"),
        "{}",
        d[0].message
    );
}

#[test]
fn user_case_variants_both_stay_and_race() {
    let parsed = parse_data(&data(&[(
        "mapUsers",
        "- userarn: arn:aws:iam::111122223333:user/Alice\n  username: a\n- userarn: arn:aws:iam::111122223333:user/alice\n  username: b\n",
    )]));
    assert_eq!(reasons(&parsed), vec![DiagnosticKind::AmbiguousUser]);
    assert!(parsed.diagnostics[0].message.contains("random"));
    let exact = parse_data(&data(&[(
        "mapUsers",
        "- userarn: arn:aws:iam::111122223333:user/alice\n  username: a\n- userarn: arn:aws:iam::111122223333:user/alice\n  username: b\n",
    )]));
    assert_eq!(reasons(&exact), vec![DiagnosticKind::DuplicatePrincipal]);
}

#[test]
fn every_partition_is_accepted() {
    for partition in [
        "aws",
        "aws-cn",
        "aws-us-gov",
        "aws-iso",
        "aws-iso-b",
        "aws-iso-e",
        "aws-iso-f",
        "aws-eusc",
    ] {
        let text = format!("- rolearn: arn:{partition}:iam::111122223333:role/a\n  username: a\n");
        let parsed = parse_data(&data(&[("mapRoles", &text)]));
        assert!(
            parsed.diagnostics.is_empty(),
            "{partition}: {:?}",
            parsed.diagnostics
        );
    }
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws-mars:iam::111122223333:role/a\n  username: a\n",
    )]));
    assert_eq!(reasons(&parsed), vec![DiagnosticKind::InvalidArn]);
}

#[test]
fn template_variables() {
    let ok = "- rolearn: arn:aws:iam::111122223333:role/a\n  username: \"{{AccountID}}:{{SessionName}}:{{SessionNameRaw}}:{{AccessKeyID}}\"\n- rolearn: arn:aws:iam::111122223333:role/node\n  username: system:node:{{EC2PrivateDNSName}}\n  groups: [system:nodes]\n";
    assert!(
        parse_data(&data(&[("mapRoles", ok)]))
            .diagnostics
            .is_empty()
    );
    let bad = "- rolearn: arn:aws:iam::111122223333:role/a\n  username: \"{{SessionNme}}\"\n  groups: [\"team-{{Foo}}\"]\n";
    let parsed = parse_data(&data(&[("mapRoles", bad)]));
    assert_eq!(
        reasons(&parsed),
        vec![
            DiagnosticKind::UnknownTemplateVariable,
            DiagnosticKind::UnknownTemplateVariable
        ]
    );
    let user = "- userarn: arn:aws:iam::111122223333:user/a\n  username: \"u-{{SessionName}}\"\n";
    assert_eq!(
        reasons(&parse_data(&data(&[("mapUsers", user)]))),
        vec![DiagnosticKind::TemplateNotApplicable]
    );
}

#[test]
fn placeholders_left_in_arns() {
    for arn in [
        "arn:aws:iam::<ACCOUNT_ID>:role/admin",
        "arn:aws:iam::${AWS_ACCOUNT_ID}:role/admin",
        "arn:aws:iam::{{AccountID}}:role/admin",
        "arn:aws:iam::111122223333:role/<ROLE_NAME>",
    ] {
        let text = format!("- rolearn: \"{arn}\"\n  username: a\n");
        let parsed = parse_data(&data(&[("mapRoles", &text)]));
        assert_eq!(
            reasons(&parsed),
            vec![DiagnosticKind::PlaceholderInArn],
            "{arn}"
        );
    }
}

#[test]
fn invalid_arns_say_what_to_write() {
    let text = "- rolearn: arn:aws:sts::111122223333:assumed-role/Admin/bob\n  username: a\n";
    let parsed = parse_data(&data(&[("mapRoles", text)]));
    assert_eq!(reasons(&parsed), vec![DiagnosticKind::InvalidArn]);
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("arn:aws:iam::111122223333:role/Admin")
    );
}

#[test]
fn invalid_account_ids() {
    let parsed = parse_data(&data(&[(
        "mapAccounts",
        "- \"1234\"\n- \"111122223333\"\n- \"111122223333\"\n- [a]\n",
    )]));
    assert_eq!(
        reasons(&parsed),
        vec![
            DiagnosticKind::InvalidAccountId,
            DiagnosticKind::EntryWrongType,
            DiagnosticKind::DuplicatePrincipal
        ]
    );
}

#[test]
fn entries_of_the_wrong_shape() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- just-a-string\n- rolearn: arn:aws:iam::111122223333:role/a\n  username: [x]\n  groups: devs\n",
    )]));
    assert_eq!(parsed.entries.roles.len(), 2, "both entries stay, blanked");
    assert_eq!(parsed.entries.roles[1].username, "");
    assert!(parsed.entries.roles[1].groups.is_empty());
    let r = reasons(&parsed);
    assert!(r.contains(&DiagnosticKind::EntryWrongType));
    assert_eq!(
        r.iter()
            .filter(|k| **k == DiagnosticKind::FieldWrongType)
            .count(),
        2
    );
}

#[test]
fn only_the_first_yaml_document_is_read() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        &format!("{GOOD_ROLE}---\n{GOOD_ROLE}"),
    )]));
    assert_eq!(parsed.entries.roles.len(), 1);
    assert_eq!(reasons(&parsed), vec![DiagnosticKind::ExtraDocument]);
}

#[test]
fn flow_style_and_anchors_are_understood() {
    let text = "[{rolearn: 'arn:aws:iam::111122223333:role/a', username: a, groups: &g [x, z]}, {rolearn: 'arn:aws:iam::111122223333:role/b', username: b, groups: *g}]";
    let parsed = parse_data(&data(&[("mapRoles", text)]));
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.entries.roles[1].groups, vec!["x", "z"]);
}

#[test]
fn diagnostics_display_location() {
    let parsed = parse_data(&data(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: a\n  groups: [on]\n",
    )]));
    let text = parsed.diagnostics[0].to_string();
    assert!(
        text.starts_with("mapRoles[0] (mapRoles line 3, column 12): error Yaml11Coercion:"),
        "{text}"
    );
}
