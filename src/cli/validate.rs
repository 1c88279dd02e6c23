use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::json;

use super::{CliError, exit, print_stdout, read_file};
use crate::arn::PrincipalKey;
use crate::awsauth::{Diagnostic, Section, Severity, parse_data};
use crate::lint::positions::{FilePosition, sequence_items};
use crate::lint::{
    AwsAuthDoc, AwsAuthOrigin, MappingDoc, duplicates, read_contents, unknown_spec_fields,
};
use crate::validate::{Problem, validate};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  aws-auth-operator validate aws-auth.yaml
  aws-auth-operator validate --output github deploy/ patches/aws-auth-patch.json
  aws-auth-operator validate --ignore-unrelated $(git diff --name-only main -- '*.yaml')

Reads aws-auth ConfigMaps (single or multi-document, `kubectl get -o yaml` output, Lists),
data-only patch fragments and kubectl patch files (YAML or JSON, strategic-merge, merge or
JSON patch), and IamIdentityMapping manifests. Directories are walked for *.yaml, *.yml and
*.json files; those holding none of these are skipped.")]
pub struct ValidateArgs {
    /// Files or directories: aws-auth ConfigMaps, patch fragments of its data, IamIdentityMappings.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// `text` (`file:line:col: error CODE: message`) for people and editors, `json` for
    /// scripts, `github` for GitHub Actions annotations, `sarif` (2.1.0) for code scanning.
    #[arg(long, short, value_enum, default_value_t = ValidateFormat::Text)]
    pub output: ValidateFormat,
    /// Skip named files that hold nothing of aws-auth and no IamIdentityMapping, instead of
    /// exiting 2 (for pre-commit, which passes every changed YAML file).
    #[arg(long)]
    pub ignore_unrelated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    Github,
    Sarif,
}

/// One JSON report: the aws-auth data of one document, or one IamIdentityMapping.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Report {
    AwsAuth(AwsAuthReport),
    Mapping(MappingReport),
}

#[derive(Debug, Serialize)]
struct AwsAuthReport {
    file: String,
    /// `namespace/name`; absent for patch fragments, which name no ConfigMap.
    #[serde(skip_serializing_if = "Option::is_none")]
    configmap: Option<String>,
    /// How a document that is not a ConfigMap was read (`data-only patch fragment`, `JSON patch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    read_as: Option<&'static str>,
    document: usize,
    roles: usize,
    users: usize,
    accounts: usize,
    diagnostics: Vec<LocatedDiagnostic>,
    #[serde(skip)]
    origin: String,
}

/// A diagnostic with its position in the file next to its position inside the key's text.
#[derive(Debug, Serialize)]
struct LocatedDiagnostic {
    #[serde(flatten)]
    diagnostic: Diagnostic,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_column: Option<usize>,
    /// False when the file position is only the line of the key (a quoted or JSON string).
    file_position_exact: bool,
}

#[derive(Debug, Serialize)]
struct MappingReport {
    file: String,
    mapping: String,
    document: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    problems: Vec<MappingProblem>,
}

#[derive(Debug, Serialize)]
struct MappingProblem {
    severity: Severity,
    reason: String,
    field: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_line: Option<usize>,
}

/// One finding at a place of a file: what text, GitHub and SARIF print.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Annotation {
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    severity: Severity,
    code: String,
    message: String,
}

/// A file and what it holds.
struct ReadFile {
    name: String,
    aws_auth: Vec<AwsAuthDoc>,
    mappings: Vec<MappingDoc>,
}

pub fn run(args: ValidateArgs) -> Result<u8, CliError> {
    let mut files = Vec::new();
    for (path, walked) in input_files(&args.files)? {
        let name = path.display().to_string();
        let contents = read_contents(&read_file(&path)?, &name)?;
        if contents.is_empty() {
            if walked || args.ignore_unrelated {
                continue;
            }
            return Err(CliError::Input(format!(
                "{name}: no aws-auth data (no ConfigMap named aws-auth or holding mapRoles/mapUsers/mapAccounts, no data-only patch of them) and no IamIdentityMapping"
            )));
        }
        files.push(ReadFile {
            name,
            aws_auth: contents.aws_auth,
            mappings: contents.mappings,
        });
    }
    if files.is_empty() && !args.ignore_unrelated {
        let given: Vec<String> = args.files.iter().map(|p| p.display().to_string()).collect();
        return Err(CliError::Input(format!(
            "{}: no aws-auth data and no IamIdentityMapping in any file",
            given.join(", ")
        )));
    }
    let reports = build_reports(&files);
    let annotations: Vec<Annotation> = reports.iter().flat_map(annotations_of).collect();
    let out = match args.output {
        ValidateFormat::Text => text_report(&reports),
        ValidateFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        ),
        ValidateFormat::Github => github_report(&annotations),
        ValidateFormat::Sarif => format!(
            "{}\n",
            serde_json::to_string_pretty(&sarif_report(&annotations)).unwrap_or_default()
        ),
    };
    print_stdout(&out)?;
    Ok(if annotations.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    })
}

/// Files as given (`false`) and the `*.yaml`/`*.yml`/`*.json` files of directories, sorted
/// (`true`: walked, so a file holding nothing to check is skipped).
fn input_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, bool)>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        if Path::new(path).is_dir() {
            let walked = super::expand_paths(std::slice::from_ref(path))?;
            files.extend(walked.into_iter().map(|p| (p, true)));
        } else {
            files.push((path.clone(), false));
        }
    }
    Ok(files)
}

/// The aws-auth reports, then the IamIdentityMapping reports, each in file order.
fn build_reports(files: &[ReadFile]) -> Vec<Report> {
    let mut reports: Vec<Report> = files
        .iter()
        .flat_map(|file| {
            file.aws_auth
                .iter()
                .map(|doc| Report::AwsAuth(aws_auth_report(&file.name, doc)))
        })
        .collect();
    let mut mappings: Vec<CheckedMapping> = files
        .iter()
        .flat_map(|file| {
            file.mappings
                .iter()
                .map(|doc| check_mapping(&file.name, doc))
        })
        .collect();
    let redefined = flag_duplicate_names(&mut mappings);
    flag_duplicate_principals(&mut mappings, &redefined);
    reports.extend(mappings.into_iter().map(|m| Report::Mapping(m.report)));
    reports
}

/// An IamIdentityMapping with the problems found in it alone; the checks across mappings
/// add theirs to its report.
struct CheckedMapping<'a> {
    doc: &'a MappingDoc,
    report: MappingReport,
    /// The principal the mapping renders to, when it is valid.
    key: Option<PrincipalKey>,
}

impl CheckedMapping<'_> {
    fn add_error(&mut self, reason: &str, field: &str, message: String) {
        self.report.problems.push(MappingProblem {
            severity: Severity::Error,
            reason: reason.to_string(),
            field: field.to_string(),
            message,
            file_line: self.doc.field_line(field),
        });
    }
}

/// Validates one mapping's spec and flags the fields its spec does not have.
fn check_mapping<'a>(file: &str, doc: &'a MappingDoc) -> CheckedMapping<'a> {
    let (problems, key) = match validate(&doc.mapping.spec) {
        Ok(entry) => (Vec::new(), Some(entry.key())),
        // A permission set is resolved by the running operator: not a problem here.
        Err(problems) => (
            problems
                .into_iter()
                .filter(|p| !p.is_unresolved())
                .collect(),
            None,
        ),
    };
    let problems = unknown_field_problems(doc)
        .chain(problems)
        .map(|p| MappingProblem {
            severity: Severity::Error,
            reason: p.reason.to_string(),
            file_line: doc.field_line(&p.field),
            field: p.field,
            message: p.message,
        })
        .collect();
    CheckedMapping {
        doc,
        report: MappingReport {
            file: file.to_string(),
            mapping: doc.name().to_string(),
            document: doc.document,
            line: doc.positions.as_ref().map(|p| p.line),
            problems,
        },
        key,
    }
}

fn unknown_field_problems(doc: &MappingDoc) -> impl Iterator<Item = Problem> {
    unknown_spec_fields(&doc.spec_fields)
        .into_iter()
        .map(|field| Problem {
            reason: "UnknownField",
            message: format!(
                "`{field}` is not a field of IamIdentityMapping's spec: the API server refuses it (kubectl's strict field validation) or drops it, and the operator never sees it"
            ),
            field: format!("spec.{field}"),
        })
}

/// Flags each later definition of a name; returns, per mapping, whether it is one.
fn flag_duplicate_names(mappings: &mut [CheckedMapping]) -> Vec<bool> {
    // Names are unique in a cluster: a second definition overwrites the first on apply. It is
    // the same object, so it is not also a duplicate principal.
    let names = mappings
        .iter()
        .enumerate()
        .map(|(i, m)| (m.doc.name().to_string(), i));
    let mut redefined = vec![false; mappings.len()];
    for (name, first, later) in duplicates(names) {
        let message = format!(
            "IamIdentityMapping `{name}` is also defined at {}: names are unique in a cluster, so one apply overwrites the other",
            place(&mappings[first].report)
        );
        redefined[later] = true;
        mappings[later].add_error("DuplicateName", "metadata.name", message);
    }
    redefined
}

/// Flags each later mapping of a principal already mapped, redefinitions of a name aside.
fn flag_duplicate_principals(mappings: &mut [CheckedMapping], redefined: &[bool]) {
    let principals = mappings
        .iter()
        .enumerate()
        .filter(|&(i, _)| !redefined[i])
        .filter_map(|(i, m)| Some((m.key.clone()?, i)));
    for (key, first, later) in duplicates(principals) {
        let first = &mappings[first];
        let message = format!(
            "maps the same principal ({key}) as IamIdentityMapping `{}` ({}): the operator renders only the oldest of them and reports the others in Conflict",
            first.doc.name(),
            place(&first.report)
        );
        let later = &mut mappings[later];
        let field = if later.doc.mapping.spec.account.is_some() {
            "spec.account"
        } else {
            "spec.arn"
        };
        later.add_error("DuplicatePrincipal", field, message);
    }
}

/// `file:line` of a mapping, or the file alone.
fn place(report: &MappingReport) -> String {
    match report.line {
        Some(line) => format!("{}:{line}", report.file),
        None => report.file.clone(),
    }
}

fn aws_auth_report(file: &str, doc: &AwsAuthDoc) -> AwsAuthReport {
    let parsed = parse_data(&doc.data);
    let entry_counts = [
        (Section::MapRoles, parsed.entries.roles.len()),
        (Section::MapUsers, parsed.entries.users.len()),
        (Section::MapAccounts, parsed.entries.accounts.len()),
    ];
    let diagnostics = parsed
        .diagnostics
        .into_iter()
        .map(|diagnostic| {
            // A diagnostic about a whole entry (a duplicate) points at the entry's first line,
            // when the items found in the text are exactly the entries the parser read.
            let (line, column) = match (diagnostic.line, diagnostic.entry) {
                (None, Some(entry)) => entry_counts
                    .iter()
                    .find(|(section, _)| section.key() == diagnostic.key)
                    .and_then(|&(_, count)| {
                        let items = sequence_items(doc.data.get(&diagnostic.key)?);
                        (items.len() == count).then(|| items.get(entry).copied())?
                    })
                    .map_or((None, None), |(l, c)| (Some(l), Some(c))),
                _ => (diagnostic.line, diagnostic.column),
            };
            // Without a position of the key (a JSON patch's value), the document's line.
            let at = doc
                .positions
                .as_ref()
                .map(|p| match p.data.get(&diagnostic.key) {
                    Some(value) => value.file_position(line, column),
                    None => (
                        FilePosition {
                            line: p.line,
                            column: 1,
                        },
                        false,
                    ),
                });
            LocatedDiagnostic {
                file_line: at.map(|(p, _)| p.line),
                file_column: at.map(|(p, _)| p.column),
                file_position_exact: at.is_some_and(|(_, exact)| exact),
                diagnostic,
            }
        })
        .collect();
    let (configmap, read_as) = match &doc.origin {
        AwsAuthOrigin::ConfigMap {
            name,
            namespace: Some(ns),
        } => (Some(format!("{ns}/{name}")), None),
        AwsAuthOrigin::ConfigMap {
            name,
            namespace: None,
        } => (Some(name.clone()), None),
        AwsAuthOrigin::DataFragment => (None, Some("data-only patch fragment")),
        AwsAuthOrigin::JsonPatch => (None, Some("JSON patch")),
    };
    AwsAuthReport {
        file: file.to_string(),
        configmap,
        read_as,
        document: doc.document,
        roles: parsed.entries.roles.len(),
        users: parsed.entries.users.len(),
        accounts: parsed.entries.accounts.len(),
        diagnostics,
        origin: doc.origin.to_string(),
    }
}

fn annotations_of(report: &Report) -> Vec<Annotation> {
    match report {
        Report::AwsAuth(r) => r
            .diagnostics
            .iter()
            .map(|d| {
                let diag = &d.diagnostic;
                let mut context = diag.key.clone();
                if let Some(entry) = diag.entry {
                    context.push_str(&format!("[{entry}]"));
                }
                if let (Some(line), Some(column)) = (diag.line, diag.column) {
                    // The position inside the key's text, as the authenticator counts it.
                    context.push_str(&format!(" ({} line {line}, column {column})", diag.key));
                }
                Annotation {
                    file: r.file.clone(),
                    line: d.file_line,
                    column: d.file_column,
                    severity: diag.severity,
                    code: diag.reason.reason().to_string(),
                    message: format!("{context}: {}", diag.message),
                }
            })
            .collect(),
        Report::Mapping(r) => r
            .problems
            .iter()
            .map(|p| Annotation {
                file: r.file.clone(),
                line: p.file_line.or(r.line),
                column: None,
                severity: p.severity,
                code: p.reason.clone(),
                message: format!(
                    "IamIdentityMapping {}: {}: {}",
                    r.mapping, p.field, p.message
                ),
            })
            .collect(),
    }
}

/// `file:line:col: severity CODE: message`, the format compilers use and editors follow.
fn text_line(a: &Annotation) -> String {
    let place = match (a.line, a.column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", a.file),
        (Some(line), None) => format!("{}:{line}", a.file),
        _ => a.file.clone(),
    };
    format!("{place}: {} {}: {}\n", a.severity, a.code, a.message)
}

fn text_report(reports: &[Report]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < reports.len() {
        match &reports[i] {
            Report::AwsAuth(r) => {
                let counts = format!(
                    "{} roles, {} users, {} accounts",
                    r.roles, r.users, r.accounts
                );
                if r.diagnostics.is_empty() {
                    out.push_str(&format!("{}: {}: ok ({counts})\n", r.file, r.origin));
                } else {
                    out.push_str(&format!(
                        "{}: {}: {} problem(s) ({counts} as the authenticator reads them)\n",
                        r.file,
                        r.origin,
                        r.diagnostics.len()
                    ));
                }
                for a in in_file_order(annotations_of(&reports[i])) {
                    out.push_str(&text_line(&a));
                }
                i += 1;
            }
            Report::Mapping(first) => {
                // One summary line for the mappings of a file.
                let same_file = reports[i..]
                    .iter()
                    .take_while(|r| matches!(r, Report::Mapping(m) if m.file == first.file))
                    .count();
                let group = &reports[i..i + same_file];
                let annotations = in_file_order(group.iter().flat_map(annotations_of).collect());
                let status = if annotations.is_empty() {
                    "ok".to_string()
                } else {
                    format!("{} problem(s)", annotations.len())
                };
                out.push_str(&format!(
                    "{}: {} IamIdentityMapping(s): {status}\n",
                    first.file, same_file
                ));
                for a in &annotations {
                    out.push_str(&text_line(a));
                }
                i += same_file;
            }
        }
    }
    out
}

/// Findings by line and column (stable: the parser's order on one spot), as a reader of the
/// file meets them.
fn in_file_order(mut annotations: Vec<Annotation>) -> Vec<Annotation> {
    annotations.sort_by_key(|a| (a.line, a.column));
    annotations
}

/// GitHub Actions workflow commands: each finding marks its line in the pull request.
fn github_report(annotations: &[Annotation]) -> String {
    let mut out = String::new();
    for a in annotations {
        let level = match a.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut properties = vec![format!("file={}", escape_property(&a.file))];
        if let Some(line) = a.line {
            properties.push(format!("line={line}"));
        }
        if let Some(column) = a.column {
            properties.push(format!("col={column}"));
        }
        properties.push(format!("title={}", escape_property(&a.code)));
        out.push_str(&format!(
            "::{level} {}::{}\n",
            properties.join(","),
            escape_data(&a.message)
        ));
    }
    out
}

/// The escaping GitHub's toolkit applies to a command's message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The escaping GitHub's toolkit applies to a command's property values.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// SARIF 2.1.0, for `github/codeql-action/upload-sarif` and other code-scanning tools.
fn sarif_report(annotations: &[Annotation]) -> serde_json::Value {
    let mut rules: Vec<&str> = annotations.iter().map(|a| a.code.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let results: Vec<serde_json::Value> = annotations
        .iter()
        .map(|a| {
            let mut location = json!({ "artifactLocation": { "uri": a.file } });
            if let Some(line) = a.line {
                location["region"] = json!({ "startLine": line });
                if let Some(column) = a.column {
                    location["region"]["startColumn"] = json!(column);
                }
            }
            json!({
                "ruleId": a.code,
                "level": match a.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": { "text": a.message },
                "locations": [{ "physicalLocation": location }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "aws-auth-operator validate",
                "rules": rules.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotation(message: &str) -> Annotation {
        Annotation {
            file: "dir,a:b/aws-auth.yaml".into(),
            line: Some(14),
            column: Some(7),
            severity: Severity::Error,
            code: "RoleArnHasPath".into(),
            message: message.into(),
        }
    }

    #[test]
    fn github_commands_escape_data_and_properties() {
        let out = github_report(&[annotation("100% sure\r\nnext: line, here")]);
        assert_eq!(
            out,
            "::error file=dir%2Ca%3Ab/aws-auth.yaml,line=14,col=7,title=RoleArnHasPath::100%25 sure%0D%0Anext: line, here\n"
        );
    }

    #[test]
    fn text_lines_have_the_compiler_format() {
        assert_eq!(
            text_line(&annotation("m")),
            "dir,a:b/aws-auth.yaml:14:7: error RoleArnHasPath: m\n"
        );
        let mut no_column = annotation("m");
        no_column.column = None;
        assert!(text_line(&no_column).starts_with("dir,a:b/aws-auth.yaml:14: error"));
    }

    #[test]
    fn sarif_has_rules_results_and_regions() {
        let sarif = sarif_report(&[annotation("m")]);
        assert_eq!(sarif["version"], "2.1.0");
        let result = &sarif["runs"][0]["results"][0];
        assert_eq!(result["ruleId"], "RoleArnHasPath");
        assert_eq!(
            result["locations"][0]["physicalLocation"]["region"]["startLine"],
            14
        );
        assert_eq!(
            sarif["runs"][0]["tool"]["driver"]["rules"][0]["id"],
            "RoleArnHasPath"
        );
    }
}
