//! Rendering: golden output, and the round-trip property parse(render(x)) == x.

use aws_auth_operator::awsauth::{
    ArnMapping, AwsAuthEntries, DiagnosticKind, parse_data, render_data, sort_entries,
};
use proptest::prelude::*;

fn mapping(arn: &str, username: &str, groups: &[&str]) -> ArnMapping {
    ArnMapping {
        arn: arn.into(),
        username: username.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    }
}

#[test]
fn golden_render_is_sorted_quoted_block_style() {
    let entries = AwsAuthEntries {
        roles: vec![
            mapping("arn:aws:iam::111122223333:role/zeta", "z", &[]),
            mapping(
                "arn:aws:iam::111122223333:role/Alpha",
                "on",
                &["yes", "123", "system:masters"],
            ),
        ],
        users: vec![mapping(
            "arn:aws:iam::111122223333:user/ops/alice",
            "alice",
            &["ops"],
        )],
        accounts: vec!["444455556666".into(), "111122223333".into()],
    };
    let data = render_data(&entries);
    assert_eq!(
        data["mapRoles"],
        r#"- rolearn: "arn:aws:iam::111122223333:role/Alpha"
  username: "on"
  groups:
    - "yes"
    - "123"
    - "system:masters"
- rolearn: "arn:aws:iam::111122223333:role/zeta"
  username: "z"
  groups: []
"#
    );
    assert_eq!(
        data["mapUsers"],
        r#"- userarn: "arn:aws:iam::111122223333:user/ops/alice"
  username: "alice"
  groups:
    - "ops"
"#
    );
    assert_eq!(
        data["mapAccounts"],
        "- \"111122223333\"\n- \"444455556666\"\n"
    );
}

#[test]
fn render_is_deterministic_whatever_the_input_order() {
    let a = mapping("arn:aws:iam::111122223333:role/a", "a", &[]);
    let b = mapping("arn:aws:iam::111122223333:role/B", "b", &[]);
    let one = AwsAuthEntries {
        roles: vec![a.clone(), b.clone()],
        ..Default::default()
    };
    let two = AwsAuthEntries {
        roles: vec![b, a],
        ..Default::default()
    };
    assert_eq!(render_data(&one), render_data(&two));
}

#[test]
fn duplicates_keep_their_relative_order_so_the_same_entry_still_wins() {
    let first = mapping("arn:aws:iam::111122223333:role/Admin", "first", &[]);
    let other = mapping("arn:aws:iam::111122223333:role/b", "b", &[]);
    let last = mapping("arn:aws:iam::111122223333:role/admin", "last", &[]);
    let entries = AwsAuthEntries {
        roles: vec![first, other, last],
        ..Default::default()
    };
    let parsed = parse_data(&render_data(&entries));
    let winners: Vec<_> = parsed
        .entries
        .roles
        .iter()
        .map(|r| r.username.as_str())
        .collect();
    assert_eq!(winners, vec!["first", "last", "b"]);
}

fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        // YAML 1.1 and 1.2 look-alikes, indicators and whitespace.
        prop::sample::select(vec![
            "on",
            "off",
            "yes",
            "No",
            "y",
            "~",
            "null",
            "",
            " ",
            "123",
            "0x1F",
            "017",
            "1e3",
            ".inf",
            "- a",
            "a: b",
            "#x",
            "&a",
            "*a",
            "!tag",
            "|",
            ">",
            "'",
            "\"",
            "\\",
            "{{SessionName}}",
            "%x",
            "@x",
            "`x",
            "a #b",
            "\t",
            "line\nbreak",
            "nel\u{85}x",
            "ls\u{2028}x",
            "bom\u{feff}",
            "trailing ",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[a-z:{}-]{0,20}",
    ]
}

fn arn_strategy(kind: &'static str) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "aws",
            "aws-cn",
            "aws-us-gov",
            "aws-iso",
            "aws-iso-b",
            "aws-iso-e",
            "aws-iso-f",
            "aws-eusc",
        ]),
        "[0-9]{12}",
        prop::option::of("(/[a-zA-Z0-9._-]{1,8}){1,3}"),
        "[A-Za-z0-9+=,.@_-]{1,64}",
    )
        .prop_map(move |(partition, account, path, name)| {
            // aws-auth role ARNs are path-stripped; user ARNs keep their path.
            let path = if kind == "user" {
                path.unwrap_or_default()
            } else {
                String::new()
            };
            format!("arn:{partition}:iam::{account}:{kind}{path}/{name}")
        })
}

fn mapping_strategy(kind: &'static str) -> impl Strategy<Value = ArnMapping> {
    (
        arn_strategy(kind),
        tricky_string(),
        prop::collection::vec(tricky_string(), 0..4),
        prop::option::of(tricky_string()),
    )
        .prop_map(|(arn, username, groups, extra)| ArnMapping {
            arn,
            username,
            groups,
            extra: extra
                .map(|value| {
                    [(
                        "x-note".to_string(),
                        serde_json::json!({"v": value, "n": [1, true, null]}),
                    )]
                    .into()
                })
                .unwrap_or_default(),
        })
}

fn entries_strategy() -> impl Strategy<Value = AwsAuthEntries> {
    (
        prop::collection::vec(mapping_strategy("role"), 0..6),
        prop::collection::vec(mapping_strategy("user"), 0..6),
        prop::collection::vec("[0-9]{12}", 0..4),
    )
        .prop_map(|(roles, users, accounts)| AwsAuthEntries {
            roles,
            users,
            accounts,
        })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn parse_of_render_is_identity(entries in entries_strategy()) {
        let data = render_data(&entries);
        let parsed = parse_data(&data);
        let mut expected = entries.clone();
        sort_entries(&mut expected);
        prop_assert!(parsed.malformed.is_empty(), "{:?}\n{:?}", parsed.diagnostics, data);
        let misread: Vec<_> = parsed
            .diagnostics
            .iter()
            .filter(|d| matches!(d.reason, DiagnosticKind::Coerced | DiagnosticKind::YamlError | DiagnosticKind::FieldWrongType | DiagnosticKind::EntryWrongType))
            .collect();
        prop_assert!(misread.is_empty(), "{:?}\n{:?}", misread, data);
        prop_assert_eq!(&parsed.entries, &expected);
        // Rendering what was parsed gives the same text again.
        prop_assert_eq!(render_data(&parsed.entries), data);
    }
}

/// YAML-ish text from fragments that exercise the parser's edges: indentation, quotes,
/// escapes, flow collections, anchors, tags, comments, documents, odd Unicode.
fn yamlish_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        prop::sample::select(vec![
            "- ",
            "-",
            "  ",
            "    ",
            "\n",
            "\t",
            "rolearn: ",
            "userarn: ",
            "username: ",
            "groups:",
            "groups: []",
            "\"",
            "'",
            "\\",
            "\\x85",
            "\\u2028",
            "\\uD800",
            "[",
            "]",
            "{",
            "}",
            ",",
            ": ",
            "#",
            "&a ",
            "*a",
            "<<: ",
            "!!str ",
            "!!int ",
            "---\n",
            "...\n",
            "%YAML 1.1\n",
            "|\n",
            ">-\n",
            "on",
            "yes",
            "~",
            "0x1F",
            "arn:aws:iam::111122223333:role/x",
            "{{SessionName}}",
            "é",
            "\u{85}",
            "\u{2028}",
            "\u{FEFF}",
            "\r\n",
        ])
        .prop_map(str::to_string),
        "[a-z]{1,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Whatever a person writes into aws-auth, the parser reports it and never panics, and a
    /// key it calls malformed contributes no entries (the authenticator drops them all).
    #[test]
    fn parsing_any_text_never_panics(
        texts in prop::collection::vec(
            (prop::sample::select(vec!["mapRoles", "mapUsers", "mapAccounts", "maproles", "other"]), yamlish_text()),
            0..4,
        )
    ) {
        let data: std::collections::BTreeMap<String, String> =
            texts.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let parsed = parse_data(&data);
        if parsed.malformed.contains(&aws_auth_operator::awsauth::Section::MapRoles) {
            prop_assert!(parsed.entries.roles.is_empty());
        }
        // Whatever was read renders into text that reads back the same.
        let rendered = render_data(&parsed.entries);
        let mut expected = parsed.entries.clone();
        sort_entries(&mut expected);
        prop_assert_eq!(parse_data(&rendered).entries, expected);
    }
}
