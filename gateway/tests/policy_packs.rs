//! The starter packs through the real CLI: each validates, its cases pass, its simulation output
//! is byte-identical under another timezone and locale, and its fingerprint is pinned in
//! `policies/fingerprints.txt` (a change to a pack's meaning is a visible diff; re-pin with
//! `TRUSTOS_BLESS=1 cargo test -p trustos --test policy_packs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trustos::policy::{self, compile, load, packs, simulate};

const PACKS: [&str; 4] = ["coding-agent", "saas-agent", "treasury-agent", "observer"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pack_file(pack: &str, file: &str) -> String {
    format!("policies/{pack}/{file}")
}

fn trustos(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trustos"));
    command.args(args).current_dir(root());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn every_pack_validates_and_its_cases_pass() {
    for pack in PACKS {
        let profile = pack_file(pack, "profile.toml");
        let validate = trustos(&["profile", "validate", &profile], &[]);
        assert_eq!(
            validate.status.code(),
            Some(0),
            "{pack}: {}",
            text(&validate)
        );
        let cases = pack_file(pack, "cases.toml");
        let simulate = trustos(&["profile", "simulate", &profile, "--cases", &cases], &[]);
        assert_eq!(
            simulate.status.code(),
            Some(0),
            "{pack}:\n{}",
            text(&simulate)
        );
        let report = text(&simulate);
        assert!(report.contains(" 0 failed"), "{report}");
        // Each pack exercises all three outcomes that it can produce.
        assert!(report.contains(": allow ("), "{pack} has no allow case");
        assert!(report.contains(": deny ("), "{pack} has no deny case");
    }
}

#[test]
fn simulation_output_is_identical_across_timezones_and_locales() {
    for pack in PACKS {
        let profile = pack_file(pack, "profile.toml");
        let cases = pack_file(pack, "cases.toml");
        let args = [
            "profile",
            "simulate",
            profile.as_str(),
            "--cases",
            cases.as_str(),
        ];
        let here = trustos(&args, &[("TZ", "UTC"), ("LANG", "C")]);
        let there = trustos(
            &args,
            &[("TZ", "Pacific/Kiritimati"), ("LANG", "tr_TR.UTF-8")],
        );
        let again = trustos(
            &args,
            &[("TZ", "America/St_Johns"), ("LC_ALL", "de_DE.UTF-8")],
        );
        assert_eq!(here.stdout, there.stdout, "{pack}");
        assert_eq!(here.stdout, again.stdout, "{pack}");
        let json_args = [
            "profile",
            "simulate",
            profile.as_str(),
            "--cases",
            cases.as_str(),
            "--json",
        ];
        let json_here = trustos(&json_args, &[]);
        let json_there = trustos(
            &json_args,
            &[("TZ", "Pacific/Kiritimati"), ("LANG", "tr_TR.UTF-8")],
        );
        assert_eq!(json_here.stdout, json_there.stdout, "{pack}");
    }
}

#[test]
fn fingerprints_are_pinned() {
    let pinned_path = root().join("policies/fingerprints.txt");
    let mut produced = String::new();
    for pack in PACKS {
        let output = trustos(
            &["profile", "fingerprint", &pack_file(pack, "profile.toml")],
            &[],
        );
        assert_eq!(output.status.code(), Some(0));
        produced.push_str(&format!("{pack} {}", text(&output)));
    }
    if std::env::var_os("TRUSTOS_BLESS").is_some() {
        std::fs::write(&pinned_path, &produced).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&pinned_path).unwrap();
    assert_eq!(
        produced, pinned,
        "a pack's meaning changed: review and re-pin"
    );
}

#[test]
fn rule_order_changes_neither_fingerprint_nor_decisions() {
    for pack in PACKS {
        let path = root().join(pack_file(pack, "profile.toml"));
        let loaded = load::load(&path).unwrap();
        let original = compile::compile(&loaded).unwrap();
        let mut reordered = loaded.clone();
        let profile = &mut reordered.profile;
        profile.routes.reverse();
        profile.budgets.reverse();
        profile.velocity.reverse();
        profile.subjects.reverse();
        profile.amounts.reverse();
        for list in [
            &mut profile.payees.deny,
            &mut profile.assets.deny,
            &mut profile.networks.deny,
        ] {
            list.reverse();
        }
        for list in [
            &mut profile.payees.allow,
            &mut profile.assets.allow,
            &mut profile.networks.allow,
        ]
        .into_iter()
        .flatten()
        {
            list.reverse();
        }
        let shuffled = compile::compile(&reordered).unwrap();
        assert_eq!(original.fingerprint, shuffled.fingerprint, "{pack}");
        let cases = simulate::load_cases(&root().join(pack_file(pack, "cases.toml"))).unwrap();
        let label = Path::new("profile.toml");
        assert_eq!(
            simulate::report_text(label, &original, &simulate::run(&original, &cases)),
            simulate::report_text(label, &shuffled, &simulate::run(&shuffled, &cases)),
            "{pack}"
        );
    }
}

#[test]
fn every_case_request_conforms_to_the_compiled_cedar_schema() {
    for pack in PACKS {
        let compiled = policy::open(&root().join(pack_file(pack, "profile.toml"))).unwrap();
        let cases = simulate::load_cases(&root().join(pack_file(pack, "cases.toml"))).unwrap();
        // A request that did not conform would come back as POLICY_EVALUATION_ERROR.
        let checked = simulate::run_checked(&compiled, &cases, true);
        let unchecked = simulate::run(&compiled, &cases);
        for (checked, unchecked) in checked.iter().zip(&unchecked) {
            assert!(
                checked.pass,
                "{pack}: {}: {:?}",
                checked.name, checked.mismatch
            );
            assert_eq!(
                checked.reasons, unchecked.reasons,
                "{pack}: {}",
                checked.name
            );
        }
    }
}

#[test]
fn a_field_of_the_wrong_type_exits_1_and_names_the_line() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("wrong-type-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original =
        std::fs::read_to_string(root().join(pack_file("saas-agent", "profile.toml"))).unwrap();
    // Find the first `max_calls = N` line and make it a string.
    let (line_number, line) = original
        .lines()
        .enumerate()
        .find(|(_, line)| line.trim_start().starts_with("max_calls"))
        .expect("the saas pack has a velocity limit");
    let broken = original.replacen(
        line,
        &line.replace("max_calls = ", "max_calls = \"many\" # "),
        1,
    );
    let path = dir.join("profile.toml");
    std::fs::write(&path, broken).unwrap();
    let output = trustos(&["profile", "validate", path.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = text(&output);
    assert!(
        report.contains(&format!("profile.toml:{}:", line_number + 1)),
        "line {} not named:\n{report}",
        line_number + 1
    );
    assert!(report.contains("max_calls"), "{report}");
}

#[test]
fn invalid_cedar_is_a_located_error() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-cedar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in packs::files("treasury-agent").unwrap() {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let profile = dir.join("profile.toml");
    // Writes the pack's Cedar file, validates, and returns the report (which must exit 1).
    let validate_with = |cedar: &str| {
        std::fs::write(dir.join("intern-limits.cedar"), cedar).unwrap();
        let output = trustos(&["profile", "validate", profile.to_str().unwrap()], &[]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        text(&output)
    };
    // A type error the strict validator must catch: comparing a string with a number.
    let report = validate_with(
        "// line 1\n@reason(\"CUSTOM_BAD\")\nforbid (principal, action == Action::\"call\", resource)\nwhen { context.asset > 5 };\n",
    );
    assert!(report.contains("intern-limits.cedar:"), "{report}");
    assert!(report.contains("Cedar validation"), "{report}");
    // A syntax error names its line.
    let report = validate_with("\n\nforbid (principal, action, resource) when { ;\n");
    assert!(report.contains("intern-limits.cedar:3:"), "{report}");
    // A reason code outside the custom namespace is refused.
    let report = validate_with(
        "@reason(\"BUDGET_DAILY_EXCEEDED\")\nforbid (principal, action == Action::\"call\", resource) when { context.payment };\n",
    );
    assert!(report.contains("must be CUSTOM_"), "{report}");
}

#[test]
fn init_writes_every_pack_file_and_never_overwrites() {
    for pack in PACKS {
        let embedded: Vec<&str> = packs::files(pack)
            .unwrap()
            .iter()
            .map(|(name, _)| *name)
            .collect();
        let mut on_disk: Vec<String> = std::fs::read_dir(root().join("policies").join(pack))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut embedded_sorted: Vec<String> =
            embedded.iter().map(|name| (*name).to_owned()).collect();
        embedded_sorted.sort();
        assert_eq!(
            on_disk, embedded_sorted,
            "{pack}: every pack file must be built in"
        );
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let first = trustos(
        &["profile", "init", "--pack", "treasury-agent", "--out", out],
        &[],
    );
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let validate = trustos(
        &[
            "profile",
            "validate",
            dir.join("profile.toml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(validate.status.code(), Some(0), "{}", text(&validate));
    let again = trustos(
        &["profile", "init", "--pack", "treasury-agent", "--out", out],
        &[],
    );
    assert_eq!(again.status.code(), Some(2));
    let unknown = trustos(&["profile", "init", "--pack", "nope", "--out", out], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    let opened = policy::open(&dir.join("profile.toml")).unwrap();
    assert_eq!(opened.profile.profile.name, "treasury-agent");
}

#[test]
fn every_reason_code_is_documented() {
    let readme = std::fs::read_to_string(root().join("policies/README.md")).unwrap();
    for (code, remediation) in trustos::policy::reasons::REASONS {
        assert!(
            readme.contains(&format!("| `{code}` | {remediation} |")),
            "{code} is missing from policies/README.md or its sentence differs"
        );
    }
}

/// Every reason code the gateway's code can answer with is in the table (and so documented).
#[test]
fn every_reason_code_the_gateway_uses_is_in_the_table() {
    fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(&root().join("gateway/src"), &mut files);
    sources(&root().join("adapters/src"), &mut files);
    let prefixes = [
        "MCP_",
        "HTTP_",
        "TOOL_",
        "APPROVAL_",
        "APPROVER_",
        "HOLD_",
        "GATEWAY_",
        "CONTROL_",
        "X402_",
        "PAYMENT_",
        "CIRCLE_",
    ];
    let known: Vec<&str> = trustos::policy::reasons::REASONS
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let mut missing = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests' literals (env var names, inputs) are not codes the gateway answers with.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for literal in text.split('"').skip(1).step_by(2) {
            let code_like = literal
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            // A literal ending in `_` is a prefix a test checks codes against, not a code.
            if code_like
                && !literal.ends_with('_')
                && prefixes
                    .iter()
                    .any(|p| literal.starts_with(p) && literal.len() > p.len())
                && !known.contains(&literal)
            {
                missing.insert(format!("{literal} ({})", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "reason codes missing from REASONS: {missing:?}"
    );
}

mod mutations {
    //! Damaged profiles never panic the loader, and every problem points inside the file.

    use proptest::prelude::*;

    use super::*;

    fn pack_texts() -> Vec<String> {
        PACKS
            .iter()
            .map(|pack| {
                std::fs::read_to_string(root().join(pack_file(pack, "profile.toml"))).unwrap()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn damaged_profiles_give_located_issues(
            pack in 0usize..4,
            cut in any::<prop::sample::Index>(),
            splice in prop_oneof![
                Just(String::new()),
                Just("\"".to_owned()),
                Just("-1".to_owned()),
                Just("[[routes]]\n".to_owned()),
                Just("= =".to_owned()),
                Just("\u{0}".to_owned()),
                Just("\"9223372036854775808\"".to_owned()),
                "[a-z_=\\[\\]\"{}, 0-9.\n-]{0,12}",
            ],
            drop_len in 0usize..40,
        ) {
            let text = &pack_texts()[pack];
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + drop_len).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let damaged = format!("{}{}{}", &text[..at], splice, &text[end..]);
            let lines = damaged.lines().count().max(1) + 1;
            match load::parse(Path::new("p.toml"), &damaged) {
                Err(issues) => {
                    prop_assert!(!issues.is_empty());
                    for issue in issues {
                        prop_assert!(issue.line >= 1 && issue.line <= lines, "{issue} (file has {lines} lines)");
                        prop_assert!(!issue.message.is_empty());
                    }
                }
                // What loads also compiles (or reports why), without panicking.
                Ok(profile) => {
                    let loaded = load::LoadedProfile {
                        path: "p.toml".into(),
                        profile,
                        cedar_files: Vec::new(),
                    };
                    let _ = compile::compile(&loaded);
                }
            }
        }
    }
}
