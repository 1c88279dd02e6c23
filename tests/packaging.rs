//! Packaging checks, run by `cargo test`:
//!
//! - the Dockerfile, checked against the repository without a container engine: every path it
//!   copies exists (and is not excluded by .dockerignore), every file the sources embed is
//!   copied, the binary it builds and runs is the Cargo bin, the stub targets of the dependency
//!   layer match the targets Cargo.toml declares, `cargo build --release --locked`, the binary
//!   shipped stripped (its strip step run here on the test binary when objcopy is installed),
//!   a non-root runtime without a shell, OCI labels that agree with Cargo.toml;
//! - the Helm chart and GitOps tests in tests/chart (Python: the real Helm engine from
//!   helm-python-sdk, Lua 5.1 from lupa, CEL), run with the binary this `cargo test` built. They
//!   need the Python named by `AWS_AUTH_OPERATOR_PYTHON` (`.ci/run` and `make venv` set one up;
//!   `.venv/bin/python` is used when the variable is unset). Without it they are skipped with a
//!   notice, except with `CI=true`, where a missing tool fails the test;
//! - the GitOps sample objects those health checks are tested against carry exactly the status
//!   the operator writes in the situation each one shows (played through `plan()`, and for the
//!   access-entry side through the access-entry planner and `with_access_entry()`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use aws_auth_operator::accessentries::runner::desired_mapping;
use aws_auth_operator::accessentries::sync::{
    AuthenticationMode, MANAGED_BY_TAG, MANAGED_BY_VALUE, MAPPING_TAG, Observed, ObservedEntry,
    ObservedPolicy, plan_sync, principal_key,
};
use aws_auth_operator::accessentries::translate::translate_mapping;
use aws_auth_operator::accessentries::{AccessEntriesMode, AccessEntryReport, keep_in_aws_auth};
use aws_auth_operator::api::{
    IamIdentityMapping, IamIdentityMappingSpec, IamIdentityMappingStatus,
};
use aws_auth_operator::awsauth::data_size;
use aws_auth_operator::plan::{
    DriftPolicy, LiveAwsAuth, MappingInput, Outcome, Plan, Settings, plan,
};
use aws_auth_operator::status::{status_for, with_access_entry};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_aws-auth-operator");
const PYTHON_ENV: &str = "AWS_AUTH_OPERATOR_PYTHON";

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

// ---- Dockerfile -------------------------------------------------------------------------------

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its base image, its name, its instructions.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

fn parse_dockerfile(text: &str) -> (Vec<Instruction>, Vec<Stage>) {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        // Comment lines inside a continued instruction are dropped, as Docker does.
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "Dockerfile ends inside a continued line"
    );
    let mut global = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                image: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else {
            global.push(instruction);
        }
    }
    (global, stages)
}

fn dockerfile() -> (Vec<Instruction>, Vec<Stage>) {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("read Dockerfile");
    let (global, stages) = parse_dockerfile(&text);
    assert!(
        stages.len() >= 2,
        "a multi-stage build: build stage + runtime stage"
    );
    (global, stages)
}

/// `COPY [--flags] SRC... DEST` -> (flags, sources, dest).
fn copy_parts(args: &str) -> (Vec<String>, Vec<String>, String) {
    let words: Vec<String> = if args.trim_start().starts_with('[') {
        serde_json::from_str(args).expect("COPY in JSON form")
    } else {
        args.split_whitespace().map(str::to_string).collect()
    };
    let (flags, rest): (Vec<String>, Vec<String>) =
        words.into_iter().partition(|w| w.starts_with("--"));
    let (dest, sources) = rest.split_last().expect("COPY needs a destination");
    (flags, sources.to_vec(), dest.clone())
}

fn dockerignore() -> Vec<String> {
    std::fs::read_to_string(root().join(".dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('/').to_string())
        .collect()
}

/// Whether .dockerignore keeps `path` (relative, `/`-separated) out of the build context. Only
/// the plain path patterns this repository uses are understood; anything else fails loudly.
fn ignored(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        assert!(
            !p.contains(['*', '?', '[', '!']),
            ".dockerignore pattern `{p}`: extend tests/packaging.rs to understand it"
        );
        path == p || path.starts_with(&format!("{p}/"))
    })
}

fn cargo_metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

struct Target {
    kind: String,
    name: String,
    /// Relative to the repository root, `/`-separated.
    path: String,
}

fn package() -> serde_json::Value {
    let metadata = cargo_metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    assert_eq!(packages.len(), 1, "one package");
    packages[0].clone()
}

fn targets(package: &serde_json::Value) -> Vec<Target> {
    package["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            let src = Path::new(t["src_path"].as_str().expect("src_path"));
            let rel = src
                .strip_prefix(root())
                .expect("target inside the repository");
            Target {
                kind: t["kind"][0].as_str().expect("kind").to_string(),
                name: t["name"].as_str().expect("name").to_string(),
                path: rel.to_string_lossy().replace('\\', "/"),
            }
        })
        .collect()
}

/// Targets Cargo.toml declares explicitly (`[[bin]]`, `[[bench]]`, ...): cargo requires their
/// files to exist before it builds anything, so the dependency layer must stub them.
fn declared_targets() -> Vec<(String, String)> {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let mut declared = Vec::new();
    let mut section: Option<String> = None;
    for line in toml.lines().map(str::trim) {
        if let Some(kind) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = Some(kind.to_string());
        } else if line.starts_with('[') {
            section = None;
        } else if let (Some(kind), Some(value)) = (&section, line.strip_prefix("name")) {
            let name = value
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            declared.push((kind.clone(), name.to_string()));
        }
    }
    declared
}

/// Files the RUN instructions of `instructions` create with `> FILE` or `touch FILE`.
fn created_files(instructions: &[Instruction]) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for run in instructions.iter().filter(|i| i.keyword == "RUN") {
        let words: Vec<&str> = run.args.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            if *word == ">" || *word == "touch" {
                let mut j = i + 1;
                while let Some(file) = words.get(j) {
                    if file.starts_with('-') || *file == "&&" || file.contains(['|', ';']) {
                        break;
                    }
                    files.insert(file.trim_start_matches("./").to_string());
                    if *word == ">" {
                        break;
                    }
                    j += 1;
                }
            }
        }
    }
    files
}

fn build_stage(stages: &[Stage]) -> &Stage {
    let runtime = stages.last().expect("stages");
    let from = runtime
        .instructions
        .iter()
        .find_map(|i| {
            copy_parts(&i.args)
                .0
                .iter()
                .find_map(|f| f.strip_prefix("--from=").map(str::to_string))
        })
        .expect("the runtime stage copies the binary from the build stage (COPY --from=)");
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(from.as_str()))
        .unwrap_or_else(|| panic!("no stage named {from}"))
}

#[test]
fn dockerfile_copies_only_paths_that_exist_and_reach_the_context() {
    let (_, stages) = dockerfile();
    let ignore = dockerignore();
    let mut copied = Vec::new();
    for stage in &stages {
        for i in stage
            .instructions
            .iter()
            .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        {
            let (flags, sources, _) = copy_parts(&i.args);
            if flags.iter().any(|f| f.starts_with("--from=")) {
                continue;
            }
            assert_eq!(i.keyword, "COPY", "use COPY, not ADD: {}", i.args);
            for source in sources {
                let rel = source.trim_start_matches("./").trim_end_matches('/');
                assert!(
                    root().join(rel).exists(),
                    "Dockerfile copies `{source}`, which does not exist in the repository"
                );
                assert!(
                    !ignored(rel, &ignore),
                    "Dockerfile copies `{source}`, which .dockerignore excludes"
                );
                copied.push(rel.to_string());
            }
        }
    }
    assert!(
        copied.iter().any(|c| c == "Cargo.lock"),
        "Cargo.lock is copied"
    );
}

/// Every `include_str!`/`include_bytes!` of src/ names a file the build stage copies.
#[test]
fn dockerfile_copies_every_file_the_sources_embed() {
    let (_, stages) = dockerfile();
    let build = build_stage(&stages);
    let copied: Vec<String> = build
        .instructions
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| copy_parts(&i.args).1)
        .map(|s| s.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect();
    let mut embedded = Vec::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for (start, _) in text.match_indices(marker) {
                    let rest = &text[start + marker.len()..];
                    let rel = &rest[..rest.find('"').expect("closing quote")];
                    let file = path.parent().expect("parent").join(rel);
                    let file = file
                        .canonicalize()
                        .unwrap_or_else(|_| panic!("{} embeds missing {rel}", path.display()));
                    let rel_root = file
                        .strip_prefix(root().canonicalize().expect("root"))
                        .expect("embedded file inside the repository")
                        .to_string_lossy()
                        .replace('\\', "/");
                    embedded.push(rel_root);
                }
            }
        }
    }
    assert!(
        !embedded.is_empty(),
        "src/ embeds the examples (render's default input)"
    );
    for file in embedded {
        assert!(
            copied
                .iter()
                .any(|c| file == *c || file.starts_with(&format!("{c}/"))),
            "src/ embeds {file}, which the Dockerfile's build stage does not copy"
        );
    }
}

#[test]
fn dockerfile_builds_and_runs_the_cargo_binary() {
    let package = package();
    let bins: Vec<String> = targets(&package)
        .into_iter()
        .filter(|t| t.kind == "bin")
        .map(|t| t.name)
        .collect();
    assert_eq!(
        bins,
        vec![
            Path::new(BIN)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        ]
    );
    let bin = &bins[0];
    let (_, stages) = dockerfile();
    let build = build_stage(&stages);
    let builds: Vec<&Instruction> = build
        .instructions
        .iter()
        .filter(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "the build stage runs cargo build");
    for run in &builds {
        for command in run.args.split("&&").filter(|c| c.contains("cargo build")) {
            let words: Vec<&str> = command.split_whitespace().collect();
            assert!(words.contains(&"--release"), "{command}: --release");
            assert!(words.contains(&"--locked"), "{command}: --locked");
            if let Some(pos) = words.iter().position(|w| *w == "--bin") {
                assert_eq!(words.get(pos + 1), Some(&bin.as_str()), "{command}");
            }
        }
    }
    let last = builds.last().expect("build");
    assert!(
        last.args.contains(&format!("target/release/{bin}")),
        "the last build step takes target/release/{bin}"
    );
    let runtime = stages.last().expect("runtime");
    let entrypoint = runtime
        .instructions
        .iter()
        .rfind(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(&entrypoint.args)
        .expect("ENTRYPOINT in exec (JSON) form: the runtime image has no shell");
    assert!(
        argv[0].ends_with(&format!("/{bin}")),
        "ENTRYPOINT runs {bin}: {argv:?}"
    );
    let (_, _, dest) = runtime
        .instructions
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| copy_parts(&i.args))
        .find(|(flags, _, _)| flags.iter().any(|f| f.starts_with("--from=")))
        .expect("COPY --from");
    assert_eq!(
        dest, argv[0],
        "the binary is copied where ENTRYPOINT runs it"
    );
    for cmd in runtime.instructions.iter().filter(|i| i.keyword == "CMD") {
        let cmd: Vec<String> = serde_json::from_str(&cmd.args).expect("CMD in exec form");
        let out = Command::new(BIN)
            .args(&cmd)
            .arg("--help")
            .output()
            .expect("run binary");
        assert!(
            out.status.success(),
            "CMD {cmd:?} is not a subcommand of {bin}"
        );
    }
}

/// Names of the sections of a 64-bit little-endian ELF file (what the build image makes).
fn elf_sections(bytes: &[u8]) -> Vec<String> {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(
        (bytes[4], bytes[5]),
        (2, 1),
        "64-bit little-endian ELF expected"
    );
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3A), u16_at(0x3C), u16_at(0x3E));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let start = strtab + u32_at(header(i));
            let end = start + bytes[start..].iter().position(|b| *b == 0).unwrap();
            String::from_utf8_lossy(&bytes[start..end]).to_string()
        })
        .collect()
}

/// The runtime image gets the binary stripped: the COPY --from the build stage takes the output
/// of a strip step over target/release/BIN, and another stage keeps the debug info apart. The
/// build stage's objcopy commands are then run here, on the binary this test built, when
/// objcopy is installed: the shipped file has no debug section and no symbol table.
#[test]
fn dockerfile_ships_the_binary_stripped() {
    let (_, stages) = dockerfile();
    let build = build_stage(&stages);
    let runtime = stages.last().expect("runtime");
    let (_, sources, _) = runtime
        .instructions
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| copy_parts(&i.args))
        .find(|(flags, _, _)| flags.iter().any(|f| f.starts_with("--from=")))
        .expect("COPY --from");
    let shipped = sources[0].clone();
    let release = format!(
        "target/release/{}",
        Path::new(BIN).file_name().unwrap().to_string_lossy()
    );
    let commands: Vec<Vec<String>> = build
        .instructions
        .iter()
        .filter(|i| i.keyword == "RUN")
        .flat_map(|i| i.args.split("&&").map(str::to_string).collect::<Vec<_>>())
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .collect();
    let strip = commands
        .iter()
        .find(|words| words.last() == Some(&shipped))
        .unwrap_or_else(|| panic!("no build step writes {shipped}, the file the image ships"));
    let strips = match strip[0].as_str() {
        "strip" => true,
        "objcopy" => strip
            .iter()
            .any(|w| ["--strip-all", "--strip-debug", "--strip-unneeded"].contains(&w.as_str())),
        _ => false,
    };
    assert!(
        strips,
        "{shipped} is written by `{}`, not a strip step",
        strip.join(" ")
    );
    assert!(
        strip.contains(&release),
        "the strip step reads {release}: {strip:?}"
    );
    let keep_debug = commands
        .iter()
        .find(|w| w[0] == "objcopy" && w.iter().any(|a| a == "--only-keep-debug"))
        .expect("the debug info is kept apart (objcopy --only-keep-debug)");
    let debug_file = keep_debug.last().expect("output").clone();
    assert!(
        stages
            .iter()
            .any(|s| s.instructions.iter().any(|i| i.keyword == "COPY"
                && i.args.contains(&format!(
                    "--from={}",
                    build.name.as_deref().unwrap_or_default()
                ))
                && i.args.contains(&debug_file))),
        "a stage exports {debug_file}"
    );

    // Run the two steps on this build's binary.
    if Command::new("objcopy").arg("--version").output().is_err() {
        assert!(!in_ci(), "objcopy is needed to check the strip step");
        eprintln!("objcopy not found: the strip step is checked as text only");
        return;
    }
    let dir = std::env::temp_dir().join(format!("aao-strip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let local = |word: &String| -> String {
        if *word == release {
            BIN.to_string()
        } else if let Some(name) = word.strip_prefix('/') {
            dir.join(name).to_string_lossy().to_string()
        } else if let Some((flag, path)) = word.split_once("=/") {
            format!("{flag}={}", dir.join(path).to_string_lossy())
        } else {
            word.clone()
        }
    };
    for step in [keep_debug, strip] {
        let out = Command::new(&step[0])
            .args(step[1..].iter().map(local))
            .output()
            .expect("run objcopy");
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let original = elf_sections(&std::fs::read(BIN).expect("binary"));
    assert!(
        original.iter().any(|s| s.starts_with(".debug_")),
        "the test binary has debug info to strip: {original:?}"
    );
    let stripped = elf_sections(&std::fs::read(local(&shipped)).expect("stripped binary"));
    // `.debug_gdb_scripts` is loaded data (a pointer to rustc's gdb scripts), not debug info.
    assert!(
        !stripped
            .iter()
            .any(|s| (s.starts_with(".debug_") && s != ".debug_gdb_scripts") || s == ".symtab"),
        "the shipped binary still has {stripped:?}"
    );
    assert!(
        stripped.iter().any(|s| s == ".gnu_debuglink"),
        "{stripped:?}"
    );
    let debug = elf_sections(&std::fs::read(local(&debug_file)).expect("debug file"));
    assert!(debug.iter().any(|s| s == ".debug_line"), "{debug:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dockerfile_dependency_layer_stubs_the_declared_targets() {
    let package = package();
    let all = targets(&package);
    let (_, stages) = dockerfile();
    let build = build_stage(&stages);
    // The instructions before the first COPY of sources: the dependency layer.
    let first_source_copy = build
        .instructions
        .iter()
        .position(|i| {
            i.keyword == "COPY"
                && copy_parts(&i.args)
                    .1
                    .iter()
                    .any(|s| !s.starts_with("Cargo."))
        })
        .expect("a COPY of the sources");
    let deps = &build.instructions[..first_source_copy];
    let copies: Vec<String> = deps
        .iter()
        .filter(|i| i.keyword == "COPY")
        .flat_map(|i| copy_parts(&i.args).1)
        .collect();
    assert_eq!(
        copies,
        vec!["Cargo.toml", "Cargo.lock"],
        "the dependency layer copies only the manifest and the lock file"
    );
    assert!(
        deps.iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked")),
        "the dependency layer builds the dependencies (cached until Cargo.toml/Cargo.lock change)"
    );
    let stubs = created_files(deps);

    let mut required = BTreeSet::new();
    for t in &all {
        if matches!(t.kind.as_str(), "lib" | "bin") {
            required.insert(t.path.clone());
        }
    }
    for (kind, name) in declared_targets() {
        let target = all
            .iter()
            .find(|t| t.kind == kind && t.name == name)
            .unwrap_or_else(|| panic!("Cargo.toml declares [[{kind}]] {name}, cargo does not"));
        required.insert(target.path.clone());
    }
    let known: BTreeSet<String> = all.iter().map(|t| t.path.clone()).collect();
    let missing: Vec<_> = required.difference(&stubs).collect();
    assert!(
        missing.is_empty(),
        "the dependency layer must stub {missing:?} (declared in Cargo.toml), or cargo cannot read the manifest"
    );
    let stale: Vec<_> = stubs.difference(&known).collect();
    assert!(
        stale.is_empty(),
        "the dependency layer stubs {stale:?}, which are no Cargo targets"
    );
    // After the stubs, the real sources are built: the stub build must not look up to date.
    let rest = &build.instructions[first_source_copy..];
    let touched = created_files(rest);
    for t in all
        .iter()
        .filter(|t| matches!(t.kind.as_str(), "lib" | "bin"))
    {
        assert!(
            touched.contains(&t.path),
            "touch {} after copying the sources, or cargo may keep the stub build",
            t.path
        );
    }
}

#[test]
fn dockerfile_runtime_is_non_root_without_a_shell() {
    let (global, stages) = dockerfile();
    let runtime = stages.last().expect("runtime");
    assert!(
        runtime.image.contains("distroless") || runtime.image == "scratch",
        "minimal runtime image without a shell: {}",
        runtime.image
    );
    assert!(
        !runtime.instructions.iter().any(|i| i.keyword == "RUN"),
        "no RUN in the runtime stage: it has no shell"
    );
    let user = runtime
        .instructions
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("the runtime stage sets USER");
    let uid = user.args.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "USER must be a numeric non-root uid (runAsNonRoot can only verify numbers): {}",
        user.args
    );
    // The chart runs the pod as the same user.
    let values = std::fs::read_to_string(root().join("charts/aws-auth-operator/values.yaml"))
        .expect("chart values");
    assert!(
        values.contains(&format!("runAsUser: {uid}")),
        "the chart's podSecurityContext.runAsUser is the image's USER {uid}"
    );

    // Rust toolchain not older than rust-version.
    let package = package();
    let rust_version = package["rust_version"].as_str().expect("rust-version");
    let arg = global
        .iter()
        .find_map(|i| i.args.strip_prefix("RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    assert!(
        parse(arg) >= parse(rust_version),
        "rust:{arg} is older than rust-version {rust_version}"
    );
}

#[test]
fn dockerfile_labels_agree_with_cargo_toml() {
    let package = package();
    let (_, stages) = dockerfile();
    let runtime = stages.last().expect("runtime");
    let labels: String = runtime
        .instructions
        .iter()
        .filter(|i| i.keyword == "LABEL")
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let label = |key: &str| -> String {
        let marker = format!("org.opencontainers.image.{key}=\"");
        let start = labels
            .find(&marker)
            .unwrap_or_else(|| panic!("label org.opencontainers.image.{key}"))
            + marker.len();
        labels[start..start + labels[start..].find('"').expect("quote")].to_string()
    };
    assert_eq!(label("version"), package["version"].as_str().unwrap());
    assert_eq!(label("licenses"), package["license"].as_str().unwrap());
    assert_eq!(label("source"), package["repository"].as_str().unwrap());
    assert_eq!(label("title"), package["name"].as_str().unwrap());
    assert!(!label("description").is_empty());
}

#[test]
fn dockerfile_parser_sees_through_continuations_and_comments() {
    let (global, stages) = parse_dockerfile(
        "ARG V=1\n# c\nFROM a AS b\nRUN x \\\n  # inner comment\n  && echo 'fn main() {}' > src/main.rs \\\n  && touch src/lib.rs benches/x.rs\nFROM c\nCOPY --from=b /x /y\n",
    );
    assert_eq!(global.len(), 1);
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("b"));
    let files = created_files(&stages[0].instructions);
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        vec!["benches/x.rs", "src/lib.rs", "src/main.rs"]
    );
    let (flags, sources, dest) = copy_parts("--from=b /x /y");
    assert_eq!(
        (flags, sources, dest.as_str()),
        (vec!["--from=b".to_string()], vec!["/x".to_string()], "/y")
    );
    assert!(ignored("target/debug", &["target".to_string()]));
    assert!(!ignored("targets", &["target".to_string()]));
}

// ---- tests/chart (Python) ------------------------------------------------------------------------

fn python() -> Option<PathBuf> {
    if let Some(value) = std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(value));
    }
    let local = root().join(".venv/bin/python");
    local.is_file().then_some(local)
}

/// Skips (with a notice) or, in CI, fails.
fn unavailable(why: &str) {
    if in_ci() {
        panic!(
            "CI=true but the chart/GitOps tests cannot run: {why}. .ci/run must set {PYTHON_ENV} to a Python with tests/chart/requirements.txt installed"
        );
    }
    // A write to the stderr handle, not eprintln!: the harness would capture that.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: tests/chart (Helm chart, Argo CD, Flux): {why}. Run `make venv` (or set {PYTHON_ENV}) to run them."
    );
}

#[test]
fn chart_and_gitops_tests() {
    let Some(python) = python() else {
        unavailable(&format!(
            "{PYTHON_ENV} is unset and .venv/bin/python does not exist"
        ));
        return;
    };
    let probe = Command::new(&python)
        .args(["-c", "import helm_python, lupa.lua51, cel, yaml"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            unavailable(&format!(
                "{} lacks the test modules: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return;
        }
        Err(err) => {
            unavailable(&format!("{}: {err}", python.display()));
            return;
        }
    }
    let out = Command::new(&python)
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "tests/chart",
            "-p",
            "test_*.py",
            "-v",
        ])
        .current_dir(root())
        .env("AWS_AUTH_OPERATOR_BIN", BIN)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "tests/chart failed:\n{stderr}");
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .expect("unittest's `Ran N tests` line");
    assert!(ran >= 40, "tests/chart ran only {ran} tests");
    assert!(
        !stderr.contains("... skipped") && !stderr.contains("skipped="),
        "no test of tests/chart may be skipped"
    );
}

// ---- GitOps sample objects ---------------------------------------------------------------------
//
// gitops/argocd/testdata holds the objects both health checks are tested against (Argo CD's Lua
// script and Flux's CEL expressions, in tests/chart/test_gitops.py). Each one that shows a status
// the operator writes must carry exactly that status: here every such scenario is played through
// `plan()` and `status_for()`, as the controller does, and compared with the sample (conditions,
// reasons, messages, observedGeneration, rendered; not lastTransitionTime). When the operator's
// wording changes, the health checks are then tested against what users will really see.

const TESTDATA: &str = "gitops/argocd/testdata";
/// A node role EKS wrote: an unmanaged entry the operator keeps.
const SAMPLE_NODE_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";

fn sample(file: &str) -> Value {
    let path = root().join(TESTDATA).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn time(text: &str) -> Time {
    Time(text.parse::<Timestamp>().expect("RFC 3339 time"))
}

/// The mapping of a sample object, at the generation its status describes.
fn sample_mapping(object: &Value) -> MappingInput {
    let metadata = &object["metadata"];
    MappingInput {
        name: metadata["name"].as_str().expect("name").to_string(),
        creation_timestamp: metadata["creationTimestamp"].as_str().map(time),
        generation: object["status"]["observedGeneration"]
            .as_i64()
            .or(metadata["generation"].as_i64()),
        spec: serde_json::from_value::<IamIdentityMappingSpec>(object["spec"].clone())
            .expect("the sample's spec is an IamIdentityMappingSpec"),
        last_rendered: None,
        served_by_access_entry: false,
        access_entry_unknown: false,
        resolved_arn: None,
    }
}

fn role_mapping(name: &str, created: &str, arn: &str, username: &str) -> MappingInput {
    MappingInput {
        name: name.to_string(),
        creation_timestamp: Some(time(created)),
        generation: Some(1),
        spec: IamIdentityMappingSpec {
            arn: Some(arn.to_string()),
            username: Some(username.to_string()),
            ..Default::default()
        },
        last_rendered: None,
        served_by_access_entry: false,
        access_entry_unknown: false,
        resolved_arn: None,
    }
}

/// The operator's state between reconciles: aws-auth as written and every mapping's status;
/// with `--access-entries=mirror|only`, the mode and what the access-entry loop last published.
struct Cluster {
    live: LiveAwsAuth,
    settings: Settings,
    statuses: BTreeMap<String, IamIdentityMappingStatus>,
    access_entries: Option<(AccessEntriesMode, BTreeMap<String, AccessEntryReport>)>,
}

impl Cluster {
    fn new(aws_auth: Option<&[(&str, &str)]>) -> Cluster {
        Cluster {
            live: LiveAwsAuth {
                data: aws_auth.map(|data| {
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                ..Default::default()
            },
            settings: Settings::default(),
            statuses: BTreeMap::new(),
            access_entries: None,
        }
    }

    /// One reconcile: plan, "write" aws-auth (unless blocked), set every mapping's status; with
    /// access entries on, as the controller does: a mapping whose access entry is confirmed
    /// leaves aws-auth in `only` mode, and its status gets the access-entry side.
    fn reconcile(&mut self, mappings: &mut [MappingInput]) -> Plan {
        for mapping in mappings.iter_mut() {
            mapping.last_rendered = self
                .statuses
                .get(&mapping.name)
                .and_then(|s| s.rendered.clone());
            if let Some((mode, reports)) = &self.access_entries {
                mapping.served_by_access_entry =
                    !keep_in_aws_auth(*mode, reports.get(&mapping.name), mapping.generation);
            }
        }
        let plan = plan(mappings, &self.live, &self.settings);
        let now = sample_now();
        for mapping in mappings.iter() {
            let outcome = &plan.outcomes[&mapping.name];
            let previous = self.statuses.get(&mapping.name);
            let mut status = status_for(outcome, mapping.generation, previous, &now);
            if let Some((_, reports)) = &self.access_entries {
                with_access_entry(
                    &mut status,
                    reports.get(&mapping.name),
                    mapping.generation,
                    previous,
                    &now,
                );
            }
            self.statuses.insert(mapping.name.clone(), status);
        }
        if plan.blocked.is_none() {
            self.live = LiveAwsAuth {
                data: Some(plan.data.clone()),
                managed: plan.managed.clone(),
                recovery: None,
                frozen: false,
                mappings_incomplete: false,
            };
        }
        plan
    }

    fn status(&self, name: &str) -> IamIdentityMappingStatus {
        self.statuses[name].clone()
    }
}

fn sample_now() -> Time {
    time("2026-11-20T10:00:00Z")
}

/// The IamIdentityMapping object of a sample, as the access-entry loop reads it from the cache.
fn sample_object(object: &Value) -> IamIdentityMapping {
    serde_json::from_value(object.clone()).expect("the sample is an IamIdentityMapping")
}

/// The access entry EKS holds for a sample's mapping: exactly what the mapping translates to,
/// tagged as the operator's (`managed`) or created by someone else.
fn eks_entry(object: &Value, managed: bool) -> ObservedEntry {
    let mapping = sample_object(object);
    let desired = translate_mapping(&mapping.spec).expect("the sample can become an access entry");
    let mut tags = BTreeMap::new();
    if managed {
        tags.insert(MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string());
        tags.insert(
            MAPPING_TAG.to_string(),
            mapping.metadata.name.clone().unwrap_or_default(),
        );
    }
    ObservedEntry {
        principal_arn: desired.principal_arn.clone(),
        access_entry_arn: Some(
            "arn:aws:eks:eu-west-1:111122223333:access-entry/prod/role/111122223333/eks-admin/0ac9a8e1-7d1f-4a4e-b0f7-3f2b4e8d6c10".to_string(),
        ),
        type_: desired.type_.as_str().to_string(),
        username: desired.username.clone(),
        kubernetes_groups: desired.kubernetes_groups.clone(),
        tags,
        policies: Some(
            desired
                .policies
                .iter()
                .map(|p| ObservedPolicy {
                    policy_arn: p.policy_arn.clone(),
                    scope: p.scope.clone(),
                })
                .collect(),
        ),
    }
}

/// One pass of the access-entry loop over the sample mappings, against what EKS holds: the
/// reports it publishes (`lastSyncTime` is the time of the pass, as for an entry first seen).
fn access_entry_pass(
    objects: &[Value],
    entries: Vec<ObservedEntry>,
    unreadable: &[&str],
) -> BTreeMap<String, AccessEntryReport> {
    let desired: Vec<_> = objects
        .iter()
        .map(|o| desired_mapping(&sample_object(o), None, &Default::default()))
        .collect();
    let observed = Observed {
        mode: AuthenticationMode::ApiAndConfigMap,
        entries,
        unreadable: unreadable.iter().map(|a| principal_key(a)).collect(),
    };
    let sync = plan_sync(&desired, &observed);
    assert!(
        sync.work.is_empty(),
        "the sample scenarios show a steady state: {:?}",
        sync.work
    );
    let mut reports = sync.outcomes;
    for report in reports.values_mut() {
        if let Some(status) = report.status.as_mut() {
            status.last_sync_time = Some(sample_now());
        }
    }
    reports
}

/// A status without its transition times, as JSON.
fn comparable(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for condition in conditions {
            if let Some(fields) = condition.as_object_mut() {
                fields.remove("lastTransitionTime");
            }
        }
    }
    status
}

/// The status the operator writes in the scenario each sample shows.
fn sample_scenarios() -> Vec<(&'static str, IamIdentityMappingStatus)> {
    let admin = || sample_mapping(&sample("healthy.yaml"));
    let mut scenarios = Vec::new();

    // Rendered and in sync: the second reconcile after the mapping was created.
    for file in ["healthy.yaml", "stale-generation.yaml"] {
        let mut mappings = vec![sample_mapping(&sample(file))];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        cluster.reconcile(&mut mappings);
        cluster.reconcile(&mut mappings);
        scenarios.push((file, cluster.status("platform-admin")));
    }

    // A younger mapping for the same principal.
    {
        let mut mappings = vec![
            role_mapping(
                "platform-admin",
                "2026-11-20T08:00:00Z",
                "arn:aws:iam::111122223333:role/eks-admin",
                "admin:{{SessionName}}",
            ),
            sample_mapping(&sample("conflict.yaml")),
        ];
        let mut cluster = Cluster::new(None);
        cluster.reconcile(&mut mappings);
        scenarios.push(("conflict.yaml", cluster.status("platform-admin-copy")));
    }

    // The oldest of two mappings, after it took over an entry added by hand.
    {
        let object = sample("took-over.yaml");
        let mut mappings = vec![
            sample_mapping(&object),
            role_mapping(
                "platform-admin-copy",
                "2026-11-20T09:30:00Z",
                "arn:aws:iam::111122223333:role/eks-admin",
                "someone-else",
            ),
        ];
        let hand_added = format!(
            "{SAMPLE_NODE_ROLE}- rolearn: arn:aws:iam::111122223333:role/eks-admin\n  username: admin\n  groups:\n  - system:masters\n"
        );
        let mut cluster = Cluster::new(Some(&[("mapRoles", &hand_added)]));
        cluster.reconcile(&mut mappings);
        cluster.reconcile(&mut mappings);
        scenarios.push(("took-over.yaml", cluster.status("platform-admin")));
    }

    // --drift=report: a hand edit of the rendered entry is left in place.
    {
        let mut mappings = vec![sample_mapping(&sample("drifted-report.yaml"))];
        let mut cluster = Cluster::new(None);
        cluster.settings.drift = DriftPolicy::Report;
        cluster.reconcile(&mut mappings);
        cluster.live.data = Some(
            [(
                "mapRoles".to_string(),
                "- rolearn: arn:aws:iam::111122223333:role/eks-admin\n  username: admin\n  groups:\n  - system:masters\n  - extra\n".to_string(),
            )]
            .into(),
        );
        cluster.reconcile(&mut mappings);
        scenarios.push(("drifted-report.yaml", cluster.status("platform-admin")));
    }

    // An invalid spec.
    {
        let object = sample("stalled-invalid.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(None);
        cluster.reconcile(&mut mappings);
        scenarios.push(("stalled-invalid.yaml", cluster.status("admins-group")));
    }

    // A hand edit broke mapRoles and the history has no good revision: nothing is written.
    {
        let mut mappings = vec![sample_mapping(&sample("blocked-malformed.yaml"))];
        let mut cluster = Cluster::new(None);
        cluster.reconcile(&mut mappings);
        cluster.live.data = Some(
            [(
                "mapRoles".to_string(),
                "- rolearn: arn:aws:iam::111122223333:role/eks-admin\n  username: admin\n   groups: [system:masters\n".to_string(),
            )]
            .into(),
        );
        let plan = cluster.reconcile(&mut mappings);
        assert!(
            plan.blocked.is_some(),
            "blocked-malformed.yaml: the write is blocked"
        );
        scenarios.push(("blocked-malformed.yaml", cluster.status("platform-admin")));
    }

    // A group policy that forbids a group the mapping had rendered (without --enforce-group-policy).
    {
        let mut mappings = vec![sample_mapping(&sample("policy-violation.yaml"))];
        let mut cluster = Cluster::new(None);
        cluster.reconcile(&mut mappings);
        cluster.settings = Settings::default()
            .with_group_policy(&[], &["system:masters".to_string()])
            .expect("policy");
        cluster.reconcile(&mut mappings);
        scenarios.push(("policy-violation.yaml", cluster.status("platform-admin")));
    }

    // A new mapping whose entry does not fit next to the older ones.
    {
        let mut mappings = vec![admin()];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        let first = cluster.reconcile(&mut mappings);
        cluster.settings.max_data_bytes = data_size(&first.data) + 40;
        mappings.push(sample_mapping(&sample("does-not-fit.yaml")));
        cluster.reconcile(&mut mappings);
        scenarios.push(("does-not-fit.yaml", cluster.status("ci-deployer")));
    }

    // --access-entries=mirror, before the access-entry loop handled the mapping: aws-auth is
    // written, the access entry is pending.
    {
        let object = sample("access-entry-pending.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        cluster.access_entries = Some((AccessEntriesMode::Mirror, BTreeMap::new()));
        cluster.reconcile(&mut mappings);
        cluster.reconcile(&mut mappings);
        scenarios.push((
            "access-entry-pending.yaml",
            cluster.status("platform-admin"),
        ));
    }

    // mirror, both sides in place: the access entry the operator created matches the mapping.
    {
        let object = sample("access-entry-in-sync.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        cluster.access_entries = Some((AccessEntriesMode::Mirror, BTreeMap::new()));
        cluster.reconcile(&mut mappings);
        let reports = access_entry_pass(
            std::slice::from_ref(&object),
            vec![eks_entry(&object, true)],
            &[],
        );
        cluster.access_entries = Some((AccessEntriesMode::Mirror, reports));
        cluster.reconcile(&mut mappings);
        scenarios.push((
            "access-entry-in-sync.yaml",
            cluster.status("platform-admin"),
        ));
    }

    // mirror, an access entry for the principal that the operator did not create.
    {
        let object = sample("access-entry-foreign.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        let reports = access_entry_pass(
            std::slice::from_ref(&object),
            vec![eks_entry(&object, false)],
            &[],
        );
        cluster.access_entries = Some((AccessEntriesMode::Mirror, reports));
        cluster.reconcile(&mut mappings);
        cluster.reconcile(&mut mappings);
        scenarios.push((
            "access-entry-foreign.yaml",
            cluster.status("platform-admin"),
        ));
    }

    // mirror, the mapping's access entry could not be read from EKS this pass.
    {
        let object = sample("access-entry-eks-error.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        let arn = eks_entry(&object, true).principal_arn;
        let reports = access_entry_pass(std::slice::from_ref(&object), Vec::new(), &[&arn]);
        cluster.access_entries = Some((AccessEntriesMode::Mirror, reports));
        cluster.reconcile(&mut mappings);
        cluster.reconcile(&mut mappings);
        scenarios.push((
            "access-entry-eks-error.yaml",
            cluster.status("platform-admin"),
        ));
    }

    // mirror, a mapping that cannot become an access entry: served by aws-auth, and Ready.
    {
        let object = sample("not-migratable.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(None);
        let reports = access_entry_pass(std::slice::from_ref(&object), Vec::new(), &[]);
        cluster.access_entries = Some((AccessEntriesMode::Mirror, reports));
        cluster.reconcile(&mut mappings);
        cluster.reconcile(&mut mappings);
        scenarios.push(("not-migratable.yaml", cluster.status("hybrid-nodes")));
    }

    // --access-entries=only: rendered into aws-auth first, then, once the access entry is
    // confirmed, removed from aws-auth; the steady state after that.
    {
        let object = sample("served-by-access-entry.yaml");
        let mut mappings = vec![sample_mapping(&object)];
        let mut cluster = Cluster::new(Some(&[("mapRoles", SAMPLE_NODE_ROLE)]));
        cluster.access_entries = Some((AccessEntriesMode::Only, BTreeMap::new()));
        let first = cluster.reconcile(&mut mappings);
        assert!(matches!(
            first.outcomes["platform-admin"],
            Outcome::Rendered { .. }
        ));
        let reports = access_entry_pass(
            std::slice::from_ref(&object),
            vec![eks_entry(&object, true)],
            &[],
        );
        cluster.access_entries = Some((AccessEntriesMode::Only, reports));
        let moved = cluster.reconcile(&mut mappings);
        assert!(
            matches!(&moved.outcomes["platform-admin"], Outcome::ServedByAccessEntry { removed, .. } if !removed.is_empty()),
            "only mode removes the aws-auth entry once the access entry is confirmed"
        );
        cluster.reconcile(&mut mappings);
        scenarios.push((
            "served-by-access-entry.yaml",
            cluster.status("platform-admin"),
        ));
    }
    scenarios
}

#[test]
fn gitops_samples_carry_the_status_the_operator_writes() {
    let mut mismatches = Vec::new();
    for (file, status) in sample_scenarios() {
        let want = comparable(&serde_json::to_value(&status).expect("status JSON"));
        let have = comparable(&sample(file)["status"]);
        if want != have {
            mismatches.push(format!(
                "{TESTDATA}/{file}: the operator writes\n{}",
                serde_json::to_string_pretty(&want).unwrap()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn gitops_sample_scenarios_have_the_outcomes_they_are_named_after() {
    let reasons: BTreeMap<&str, Option<String>> = sample_scenarios()
        .into_iter()
        .map(|(file, status)| {
            let ready = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.reason.clone());
            (file, ready)
        })
        .collect();
    let expect = [
        ("healthy.yaml", "Rendered"),
        ("stale-generation.yaml", "Rendered"),
        ("took-over.yaml", "Rendered"),
        ("conflict.yaml", "Conflict"),
        ("drifted-report.yaml", "Drifted"),
        ("stalled-invalid.yaml", "Invalid"),
        ("blocked-malformed.yaml", "LiveAwsAuthMalformed"),
        ("policy-violation.yaml", "PolicyViolation"),
        ("does-not-fit.yaml", "DoesNotFit"),
        ("access-entry-pending.yaml", "Pending"),
        ("access-entry-in-sync.yaml", "Rendered"),
        ("access-entry-foreign.yaml", "ForeignEntry"),
        ("access-entry-eks-error.yaml", "EksError"),
        ("not-migratable.yaml", "Rendered"),
        ("served-by-access-entry.yaml", "ServedByAccessEntry"),
    ];
    for (file, reason) in expect {
        assert_eq!(reasons[file].as_deref(), Some(reason), "{file}");
    }
    assert_eq!(
        reasons.len(),
        expect.len(),
        "every scenario has its expected outcome here"
    );
}

/// Every sample of gitops/argocd/testdata with a status the operator writes is played above; the
/// others show states before the operator's first status.
#[test]
fn gitops_samples_are_all_played_or_have_no_status_yet() {
    let played: BTreeSet<&str> = sample_scenarios().into_iter().map(|(f, _)| f).collect();
    for entry in std::fs::read_dir(root().join(TESTDATA)).expect("testdata") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        let object = sample(&name);
        let conditions = object["status"]["conditions"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(
            played.contains(name.as_str()) || conditions == 0,
            "{TESTDATA}/{name} carries conditions but no scenario of tests/packaging.rs plays it"
        );
        let reconciling = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Reconciling");
        assert!(
            !reconciling,
            "{TESTDATA}/{name}: the operator never sets Reconciling"
        );
    }
}
