//! `trustos profile init|validate|simulate|fingerprint`: write, check and exercise profiles.

use std::path::Path;

use crate::policy::{self, Issue, packs, simulate};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

fn print_issues(issues: &[Issue]) {
    for issue in issues {
        out!("{issue}");
    }
}

pub fn init(pack: &str, out_dir: &Path) -> u8 {
    let Some(files) = packs::files(pack) else {
        eprintln!(
            "trustos profile init: no pack {pack:?}; packs: {}",
            packs::names().join(", ")
        );
        return EXIT_USAGE;
    };
    if let Err(err) = std::fs::create_dir_all(out_dir) {
        eprintln!("trustos profile init: {}: {err}", out_dir.display());
        return EXIT_USAGE;
    }
    for (name, _) in files {
        if out_dir.join(name).exists() {
            eprintln!(
                "trustos profile init: {} exists; not overwriting (pick another --out)",
                out_dir.join(name).display()
            );
            return EXIT_USAGE;
        }
    }
    for (name, text) in files {
        if let Err(err) = std::fs::write(out_dir.join(name), text) {
            eprintln!(
                "trustos profile init: {}: {err}",
                out_dir.join(name).display()
            );
            return EXIT_USAGE;
        }
    }
    let profile = out_dir.join("profile.toml");
    out!("wrote the {pack} pack to {}", out_dir.display());
    out!(
        "  check it:     trustos profile validate {}",
        profile.display()
    );
    if files.iter().any(|(name, _)| *name == "cases.toml") {
        out!(
            "  exercise it:  trustos profile simulate {} --cases {}",
            profile.display(),
            out_dir.join("cases.toml").display()
        );
    }
    EXIT_OK
}

pub fn validate(path: &Path, as_json: bool) -> u8 {
    match policy::open(path) {
        Ok(compiled) => {
            if as_json {
                let report = serde_json::json!({
                    "valid": true,
                    "profile": path.display().to_string(),
                    "name": compiled.profile.profile.name,
                    "fingerprint": compiled.fingerprint.to_string(),
                });
                out!("{report}");
            } else {
                out!(
                    "valid: {} (profile {}, fingerprint {})",
                    path.display(),
                    compiled.profile.profile.name,
                    compiled.fingerprint
                );
            }
            EXIT_OK
        }
        Err(issues) => {
            if as_json {
                let report = serde_json::json!({
                    "valid": false,
                    "issues": issues.iter().map(|issue| serde_json::json!({
                        "file": issue.file.display().to_string(),
                        "line": issue.line,
                        "column": issue.column,
                        "field": issue.field,
                        "message": issue.message,
                    })).collect::<Vec<_>>(),
                });
                out!("{report}");
            } else {
                print_issues(&issues);
            }
            EXIT_INVALID
        }
    }
}

pub fn fingerprint(path: &Path) -> u8 {
    match policy::open(path) {
        Ok(compiled) => {
            out!("{}", compiled.fingerprint);
            EXIT_OK
        }
        Err(issues) => {
            print_issues(&issues);
            EXIT_INVALID
        }
    }
}

pub fn simulate_cases(path: &Path, cases: &Path, as_json: bool) -> u8 {
    let compiled = match policy::open(path) {
        Ok(compiled) => compiled,
        Err(issues) => {
            print_issues(&issues);
            return EXIT_USAGE;
        }
    };
    let cases = match simulate::load_cases(cases) {
        Ok(cases) => cases,
        Err(issues) => {
            print_issues(&issues);
            return EXIT_USAGE;
        }
    };
    let results = simulate::run(&compiled, &cases);
    if as_json {
        out!("{}", simulate::report_json(path, &compiled, &results));
    } else {
        let text = simulate::report_text(path, &compiled, &results);
        out!("{}", text.trim_end());
    }
    if results.iter().all(|result| result.pass) {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}
