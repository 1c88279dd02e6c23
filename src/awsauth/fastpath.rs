//! A fast reader for exactly the block style the renderer writes. Most of the time the live
//! aws-auth is what the operator wrote last, and the general YAML parser costs ~30 ms per MiB.
//! `parse_mostly_rendered` reads each top-level item in the renderer's shape here, in a few
//! microseconds, and hands runs of other (hand-written) items to the general parser; it gives
//! up (`None`, read the whole text generally) wherever reading a run on its own could differ.
//! It builds the same tree, positions included: property tests check that it agrees with the
//! general parser on rendered, mixed and randomly edited text.

use super::render::needs_escape;
use super::yaml11::{Document, Node, Pos, ScalarType, YamlError};

/// Reads text shaped like the renderer's output, or returns `None`.
#[cfg(test)]
pub fn parse_rendered(text: &str) -> Option<Document> {
    let items = rendered_items(text, 0)?;
    Some(Document {
        root: Some(Node::Seq {
            items,
            pos: Pos { line: 1, column: 1 },
        }),
        extra_documents: 0,
    })
}

/// The items of a top-level list in the renderer's shape; line numbers start after
/// `line_offset`.
fn rendered_items(text: &str, line_offset: usize) -> Option<Vec<Node>> {
    if text.is_empty() || !text.ends_with('\n') {
        return None;
    }
    let mut lines = Lines {
        rest: text,
        number: line_offset,
    };
    let mut items = Vec::new();
    let mut line = lines.next();
    while let Some((number, current)) = line {
        let item_text = current.strip_prefix("- ")?;
        if item_text.starts_with('"') {
            items.push(quoted_node(item_text, number, 3)?);
            line = lines.next();
            continue;
        }
        // A mapping: its first field is on the dash line, the rest are indented by two.
        let mut entries = Vec::new();
        let mut field = Some((number, item_text, 3));
        line = lines.next();
        while let Some((field_line, field_text, column)) = field.take() {
            let (key, value) = field_text.split_once(':')?;
            if !is_field_name(key) {
                return None;
            }
            let key_node = Node::Scalar {
                value: key.to_string(),
                resolved: ScalarType::Str,
                pos: Pos {
                    line: field_line,
                    column,
                },
            };
            let value_column = column + key.len() + 2;
            let value_node = match value {
                "" => {
                    let (groups, next) = block_list(line, &mut lines)?;
                    line = next;
                    groups
                }
                " []" => Node::Seq {
                    items: Vec::new(),
                    pos: Pos {
                        line: field_line,
                        column: value_column,
                    },
                },
                _ => quoted_node(value.strip_prefix(' ')?, field_line, value_column)?,
            };
            entries.push((key_node, value_node));
            if let Some((next_number, next_text)) = line
                && let Some(rest) = next_text.strip_prefix("  ")
                && !rest.starts_with(' ')
            {
                field = Some((next_number, rest, 3));
                line = lines.next();
            }
        }
        if has_duplicate_keys(&entries) {
            return None;
        }
        items.push(Node::Map {
            entries,
            pos: Pos {
                line: number,
                column: 3,
            },
        });
    }
    Some(items)
}

/// Reads a top-level list whose items are mostly in the renderer's shape, with some written by
/// hand: items in the renderer's shape are read here, runs of other items by `general`, each
/// run on its own. Returns `None` (read the whole text with `general` instead) whenever reading
/// a run on its own could differ from reading it in place: anything before the first item but
/// comments and blank lines, document markers or directives, or a run that does not read as a
/// complete list on its own (an open quote or bracket that continues past the next item, an
/// alias to an anchor in another run).
pub fn parse_mostly_rendered(
    text: &str,
    general: impl Fn(&str) -> Result<Document, YamlError>,
) -> Option<Document> {
    // Items as (index of their first line, byte range): each starts at a line beginning "- ".
    let mut chunks: Vec<(usize, usize, usize)> = Vec::new();
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let end = offset + line.len();
        if line.starts_with("---") || line.starts_with("...") || line.starts_with('%') {
            return None;
        }
        if line.starts_with("- ") {
            chunks.push((index, offset, end));
        } else if let Some(last) = chunks.last_mut() {
            last.2 = end;
        } else {
            let content = line.trim_start_matches([' ', '\t']);
            if !(content.trim_end().is_empty() || content.starts_with('#')) {
                return None;
            }
        }
        offset = end;
    }
    let first_item_line = chunks.first()?.0;

    let mut items = Vec::new();
    // Consecutive hand-written items are read together.
    let mut pending: Option<(usize, usize, usize)> = None;
    for (line_index, start, end) in chunks {
        match rendered_items(&text[start..end], line_index) {
            Some(fast) => {
                if let Some(run) = pending.take() {
                    items.extend(read_run(text, run, &general)?);
                }
                items.extend(fast);
            }
            None => {
                pending = Some(match pending {
                    Some((first, run_start, _)) => (first, run_start, end),
                    None => (line_index, start, end),
                });
            }
        }
    }
    if let Some(run) = pending {
        items.extend(read_run(text, run, &general)?);
    }
    Some(Document {
        root: Some(Node::Seq {
            items,
            pos: Pos {
                line: first_item_line + 1,
                column: 1,
            },
        }),
        extra_documents: 0,
    })
}

/// Reads a run of hand-written items on its own, with positions moved to where the run starts.
fn read_run(
    text: &str,
    (line_index, start, end): (usize, usize, usize),
    general: &impl Fn(&str) -> Result<Document, YamlError>,
) -> Option<Vec<Node>> {
    let document = general(&text[start..end]).ok()?;
    if document.extra_documents > 0 {
        return None;
    }
    let Some(Node::Seq { mut items, .. }) = document.root else {
        return None;
    };
    for item in &mut items {
        shift_lines(item, line_index);
    }
    Some(items)
}

fn shift_lines(node: &mut Node, by: usize) {
    match node {
        Node::Scalar { pos, .. } => pos.line += by,
        Node::Seq { items, pos } => {
            pos.line += by;
            items.iter_mut().for_each(|item| shift_lines(item, by));
        }
        Node::Map { entries, pos } => {
            pos.line += by;
            for (key, value) in entries {
                shift_lines(key, by);
                shift_lines(value, by);
            }
        }
    }
}

/// A block list of quoted strings indented by four, starting at `line`; returns it and the
/// first line after it.
fn block_list<'t>(
    mut line: Option<(usize, &'t str)>,
    lines: &mut Lines<'t>,
) -> Option<(Node, Option<(usize, &'t str)>)> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        match line {
            Some((number, text)) if text.starts_with("    - ") => {
                start.get_or_insert(number);
                items.push(quoted_node(&text[6..], number, 7)?);
                line = lines.next();
            }
            _ => {
                let line_number = start?;
                let node = Node::Seq {
                    items,
                    pos: Pos {
                        line: line_number,
                        column: 5,
                    },
                };
                return Some((node, line));
            }
        }
    }
}

/// The field names the renderer writes for an entry (plain, never resolved to a non-string).
fn is_field_name(key: &str) -> bool {
    matches!(key, "rolearn" | "userarn" | "username" | "groups")
}

fn has_duplicate_keys(entries: &[(Node, Node)]) -> bool {
    entries.iter().enumerate().any(|(i, (a, _))| {
        entries[..i]
            .iter()
            .any(|(b, _)| matches!((a, b), (Node::Scalar { value: x, .. }, Node::Scalar { value: y, .. }) if x == y))
    })
}

/// `text` must be exactly one double-quoted scalar with the renderer's escapes.
fn quoted_node(text: &str, line: usize, column: usize) -> Option<Node> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    // Most values are printable ASCII with nothing escaped: copy them whole.
    if inner
        .bytes()
        .all(|b| matches!(b, 0x20..=0x7E) && b != b'"' && b != b'\\')
    {
        return Some(Node::Scalar {
            value: inner.to_string(),
            resolved: ScalarType::Str,
            pos: Pos { line, column },
        });
    }
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(unescape(&mut chars)?),
            // A bare quote would have ended the scalar early.
            '"' => return None,
            // Only what the renderer writes unescaped; anything else goes to the general parser.
            c if !needs_escape(c) => value.push(c),
            _ => return None,
        }
    }
    Some(Node::Scalar {
        value,
        resolved: ScalarType::Str,
        pos: Pos { line, column },
    })
}

fn unescape(chars: &mut std::str::Chars<'_>) -> Option<char> {
    let hex = |chars: &mut std::str::Chars<'_>, digits: usize| -> Option<char> {
        let mut code = 0u32;
        for _ in 0..digits {
            code = code * 16 + chars.next()?.to_digit(16)?;
        }
        char::from_u32(code)
    };
    match chars.next()? {
        '"' => Some('"'),
        '\\' => Some('\\'),
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        'x' => hex(chars, 2),
        'u' => hex(chars, 4),
        'U' => hex(chars, 8),
        _ => None,
    }
}

/// Lines without their `\n`, numbered from 1 after the offset. A `\r` stays in the line, where
/// no accepted shape allows it, so CRLF text goes to the general parser.
struct Lines<'t> {
    rest: &'t str,
    number: usize,
}

impl<'t> Lines<'t> {
    fn next(&mut self) -> Option<(usize, &'t str)> {
        let (line, rest) = self.rest.split_once('\n')?;
        self.rest = rest;
        self.number += 1;
        Some((self.number, line))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::yaml11::{parse_document, parse_document_general};
    use super::super::{ArnMapping, AwsAuthEntries, Section, render_section, sort_entries};
    use super::*;

    /// Both readers agree wherever the fast one answers.
    fn assert_agrees(text: &str) -> bool {
        let Some(fast) = parse_rendered(text) else {
            assert_same_as_general(text);
            return false;
        };
        let general = parse_document_general(text).unwrap_or_else(|e| {
            panic!("fast reader accepted text the YAML parser rejects ({e:?}):\n{text}")
        });
        assert_eq!(fast, general, "readers disagree on:\n{text}");
        true
    }

    /// The reader the parser uses (rendered items here, other runs and fallbacks general)
    /// gives exactly what the general reader gives, errors included.
    fn assert_same_as_general(text: &str) {
        assert_eq!(
            parse_document(text),
            parse_document_general(text),
            "hybrid reader disagrees on:\n{text}"
        );
    }

    fn rendered(entries: &AwsAuthEntries) -> Vec<String> {
        let mut sorted = entries.clone();
        sort_entries(&mut sorted);
        Section::ALL
            .into_iter()
            .filter_map(|s| render_section(s, &sorted))
            .collect()
    }

    fn mapping(arn: &str, username: &str, groups: &[&str]) -> ArnMapping {
        ArnMapping {
            arn: arn.to_string(),
            username: username.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn reads_what_the_renderer_writes() {
        let entries = AwsAuthEntries {
            roles: vec![
                mapping(
                    "arn:aws:iam::111122223333:role/node",
                    "system:node:{{EC2PrivateDNSName}}",
                    &["system:bootstrappers", "system:nodes"],
                ),
                mapping("arn:aws:iam::111122223333:role/empty", "x", &[]),
                mapping(
                    "arn:aws:iam::111122223333:role/odd",
                    "é \"q\" \\ \n\t\r\u{85}\u{2028}\u{7}\u{FEFF}😀",
                    &["", " ", "on", "#", "- x", "a: b"],
                ),
            ],
            users: vec![mapping(
                "arn:aws:iam::111122223333:user/ops/alice",
                "alice",
                &["ops"],
            )],
            accounts: vec!["111122223333".to_string(), "444455556666".to_string()],
        };
        for text in rendered(&entries) {
            assert!(
                assert_agrees(&text),
                "fast reader gave up on rendered text:\n{text}"
            );
        }
    }

    #[test]
    fn gives_up_on_anything_else() {
        for text in [
            "",
            "- rolearn: \"a\"",
            "- rolearn: a\n",
            "- rolearn: \"a\" # note\n",
            "- rolearn: \"a\"\r\n",
            "---\n- \"1\"\n",
            "-  \"1\"\n",
            "- \"1\"\n\n",
            "# c\n- \"1\"\n",
            "- rolearn: \"a\"\n  rolearn: \"b\"\n",
            "- rolearn: \"a\"\n  groups:\n",
            "- rolearn: \"a\"\n  groups:\n  - \"x\"\n",
            "- rolearn: \"a\"\n   username: \"b\"\n",
            "- rolearn: \"a\"\n  extra: \"b\"\n",
            "- rolearn: \"a\\q\"\n",
            "- rolearn: \"a\\uD800\"\n",
            "- rolearn: \"a\"b\"\n",
            "- rolearn: \"a\\\"\n",
            "- rolearn: \"a\tb\"\n",
            "- rolearn: 'a'\n",
            "\u{FEFF}- \"1\"\n",
        ] {
            assert!(parse_rendered(text).is_none(), "{text:?}");
        }
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z:/{}._-]{0,12}",
            prop::sample::select(vec![
                "on", "", " ", "~", "\"", "\\", "é", "\u{85}", "\u{2028}", "😀", "\u{0}"
            ])
            .prop_map(str::to_string),
            any::<String>(),
        ]
    }

    fn any_mapping() -> impl Strategy<Value = ArnMapping> {
        (
            any_string(),
            any_string(),
            prop::collection::vec(any_string(), 0..4),
        )
            .prop_map(|(arn, username, groups)| ArnMapping {
                arn,
                username,
                groups,
                extra: Default::default(),
            })
    }

    fn any_entries() -> impl Strategy<Value = AwsAuthEntries> {
        (
            prop::collection::vec(any_mapping(), 0..5),
            prop::collection::vec(any_mapping(), 0..5),
            prop::collection::vec(any_string(), 0..4),
        )
            .prop_map(|(roles, users, accounts)| AwsAuthEntries {
                roles,
                users,
                accounts,
            })
    }

    /// A small edit of the kind a person (or a bad tool) makes.
    fn mutate(text: &str, at: usize, edit: u8) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let at = at % (chars.len() + 1);
        let inserted = [
            ' ', '"', '\\', ':', '#', '\n', '-', '\t', 'x', '[', '\'', '&', '*', '!',
        ][usize::from(edit) % 14];
        match edit % 3 {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 if at < chars.len() => chars[at] = inserted,
            _ => chars.insert(at, inserted),
        }
        chars.into_iter().collect()
    }

    /// Hand-written items, including every way one item can reach into the next.
    const HAND_WRITTEN: &[&str] = &[
        "- rolearn: arn:aws:iam::111122223333:role/a\n  username: a\n  groups:\n  - system:masters\n",
        "- rolearn: arn:aws:iam::111122223333:role/b # note\n  username: b\n",
        "# a comment between items\n",
        "\n",
        "- &base\n  username: shared\n  groups: [view]\n",
        "- <<: *base\n  rolearn: arn:aws:iam::111122223333:role/merged\n",
        "- rolearn: *undefined\n",
        "- rolearn: \"open quote\n- \\\"1\\\"\n  still quoted\"\n",
        "- rolearn: 'single\n- quoted'\n",
        "- rolearn: 'open\n- \"1\"\n  end'\n",
        "- groups: [\"a\",\n- \"1\"\n  ]\n",
        "- [a,\n- b]\n",
        "- {rolearn: x,\n- y: z}\n",
        "- groups: |\n    text\n- \"1\"\n",
        "-\n  rolearn: on\n",
        "- - nested\n",
        "foo:\n- a\n",
        "- rolearn: x\r\n  username: y\r\n",
        "- rolearn:\ta\n",
        "  continued: line\n",
        "- plain\n  continuation\n",
        "---\n",
        "...\n",
        "%YAML 1.1\n",
        "- !!str 123\n",
        "- userarn: 012345678901\n",
        "\t- x\n",
    ];

    fn hybrid_text() -> impl Strategy<Value = String> {
        (
            any_entries(),
            prop::collection::vec((any::<usize>(), prop::sample::select(HAND_WRITTEN)), 0..5),
        )
            .prop_map(|(entries, inserts)| {
                let text = rendered(&entries).concat();
                let mut lines: Vec<String> =
                    text.split_inclusive('\n').map(str::to_string).collect();
                for (at, snippet) in inserts {
                    lines.insert(at % (lines.len() + 1), snippet.to_string());
                }
                lines.concat()
            })
    }

    #[test]
    fn hybrid_reads_mixed_text_like_the_yaml_parser() {
        let rendered_item =
            "- rolearn: \"arn:aws:iam::111122223333:role/r\"\n  username: \"r\"\n  groups: []\n";
        for snippet in HAND_WRITTEN {
            for text in [
                format!("{rendered_item}{snippet}{rendered_item}"),
                format!("{snippet}{rendered_item}"),
                format!("{rendered_item}{snippet}"),
                format!("# header\n{rendered_item}{snippet}{snippet}{rendered_item}"),
            ] {
                assert_same_as_general(&text);
            }
        }
    }

    #[test]
    fn hybrid_reads_rendered_items_itself() {
        let text = "# kept by hand\n- rolearn: \"arn:aws:iam::111122223333:role/r\"\n  username: \"r\"\n  groups: []\n- rolearn: x\n  username: y\n";
        let calls = std::cell::Cell::new(0);
        let document = parse_mostly_rendered(text, |run| {
            calls.set(calls.get() + 1);
            assert_eq!(run, "- rolearn: x\n  username: y\n");
            parse_document_general(run)
        })
        .expect("hybrid reads this text");
        assert_eq!(calls.get(), 1);
        assert_eq!(Ok(document), parse_document_general(text));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn agrees_with_the_yaml_parser_on_rendered_text(entries in any_entries()) {
            for text in rendered(&entries) {
                prop_assert!(assert_agrees(&text), "fast reader gave up on rendered text:\n{}", text);
            }
        }

        #[test]
        fn hybrid_agrees_with_the_yaml_parser(text in hybrid_text()) {
            assert_same_as_general(&text);
        }

        #[test]
        fn agrees_with_the_yaml_parser_or_gives_up_on_edited_text(
            entries in any_entries(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            // All sections in one text, so edits can also join and split items.
            let mut edited = rendered(&entries).concat();
            for (at, edit) in &edits {
                edited = mutate(&edited, *at, *edit);
            }
            assert_agrees(&edited);
        }
    }
}
