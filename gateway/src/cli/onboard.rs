//! `trustos onboard HOST`: rewrite an agent host's MCP config so every server runs through the
//! gateway — stdio servers through the `trustos mcp` shim, URL servers through the HTTP front's
//! `/mcp/NAME` (or the shim's `--url` for hosts without HTTP) — keeping everything else in the
//! file byte for byte.
//!
//! Safety: every file is read, rewritten in memory and checked before anything is written; any
//! problem (stable `ONBOARD_*` code) leaves every file untouched. The original is copied to
//! `<file>.trustos-backup` next to it before the first change (a later run keeps that first
//! backup); writes go to a temporary file in the same directory, then rename, and the SHA-256 of
//! the bytes written is recorded in `<file>.trustos-written`. `--undo` moves the backup back
//! (byte for byte) and leaves `gateway.toml` as it is: the `[servers.NAME]` and `[[tokens]]`
//! entries onboarding added stay (they serve nothing unless a host uses them). It first compares
//! every file with that record and, if one was edited after onboarding, refuses
//! (`ONBOARD_EDITED_AFTER_ONBOARD`, exit 1, nothing written) unless `--force` is given; a backup
//! made before records existed cannot be checked and is restored with a warning.
//!
//! Codex's user config is `$CODEX_HOME/config.toml` when `CODEX_HOME` is set and non-empty,
//! else `~/.codex/config.toml`; `--config` overrides both.

use std::fs;
use std::path::{Path, PathBuf};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::home::Home;
use crate::hosts::credentials::{payment_credential, remedy};
use crate::hosts::files::{
    UndoSafety, backup_once, check_writable, labelled_diff, read_record, record_written,
    remove_record, undo_safety, unified_diff, write_atomic,
};
use crate::hosts::gateway_toml::GatewayToml;
use crate::hosts::registry::UserDirs;
use crate::hosts::{self, Host, HostError, Plan, Rewrite, backup_path};
use trustos_kernel::canonical::Digest;

/// What `trustos onboard` was asked.
pub struct OnboardArgs {
    /// The host.
    pub host: Host,
    /// Print the diff, write nothing.
    pub dry_run: bool,
    /// Restore the backup.
    pub undo: bool,
    /// With `undo`: restore even a file edited after onboarding (losing those edits).
    pub force: bool,
    /// One config file instead of the host's known locations.
    pub config: Option<PathBuf>,
    /// The Trust OS home (`--home`), when given.
    pub home: Option<PathBuf>,
}

/// Runs `trustos onboard`.
pub fn run(args: OnboardArgs) -> u8 {
    let files = match config_files(args.host, args.config.as_deref()) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("trustos onboard: ONBOARD_NO_CONFIG: {message}");
            return EXIT_USAGE;
        }
    };
    let result = if args.undo {
        undo(&files, args.dry_run, args.force)
    } else {
        onboard(&args, &files)
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(err @ HostError::GatewayConfig { .. }) => {
            eprintln!("trustos onboard: {err}");
            EXIT_USAGE
        }
        Err(err) => {
            eprintln!("trustos onboard: {err}");
            EXIT_INVALID
        }
    }
}

/// The files to work on: `--config`, else every existing known location of the host.
fn config_files(host: Host, config: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    if let Some(config) = config {
        if config.is_file() {
            return Ok(vec![config.to_path_buf()]);
        }
        return Err(format!("{}: no such file", config.display()));
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or("HOME is not set; pass --config PATH")?;
    let project = std::env::current_dir().map_err(|err| format!("current directory: {err}"))?;
    let mut found: Vec<PathBuf> = Vec::new();
    let candidates = host.candidates(&UserDirs::from_env(home), &project);
    for path in &candidates {
        if path.is_file() && !found.contains(path) {
            found.push(path.clone());
        }
    }
    if found.is_empty() {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "no {host} config found (looked at {}); pass --config PATH",
            looked.join(", ")
        ));
    }
    Ok(found)
}

fn undo(files: &[PathBuf], dry_run: bool, force: bool) -> Result<(), HostError> {
    // Check every file first: any refusal, nothing is written.
    let mut checked: Vec<(&PathBuf, PathBuf, UndoSafety)> = Vec::new();
    let mut refusal: Option<HostError> = None;
    for file in files {
        let backup = backup_path(file);
        if !backup.is_file() {
            return Err(HostError::NoBackup {
                path: backup.display().to_string(),
            });
        }
        check_writable(file)?;
        let safety = if force {
            UndoSafety::Unchanged
        } else {
            let current = fs::read(file).map_err(|err| HostError::io(file, &err))?;
            undo_safety(file, &current)?
        };
        if let Some(why) = safety.why()
            && refusal.is_none()
        {
            refusal = Some(HostError::EditedAfterOnboard {
                path: file.display().to_string(),
                backup: backup.display().to_string(),
                why,
            });
        }
        checked.push((file, backup, safety));
    }
    if !dry_run && let Some(refusal) = refusal.take() {
        return Err(refusal);
    }
    for (file, backup, safety) in &checked {
        if *safety == UndoSafety::Unknown {
            eprintln!(
                "warning: {}: its backup predates onboard's record of what it wrote, so changes made after onboarding cannot be detected; undo restores {} as is",
                file.display(),
                backup.display()
            );
        }
        if dry_run {
            let now = fs::read_to_string(file).map_err(|err| HostError::io(file, &err))?;
            let before = fs::read_to_string(backup).map_err(|err| HostError::io(backup, &err))?;
            out!(
                "{}",
                labelled_diff(&file.display().to_string(), "restored", &now, &before)
            );
            if safety.why().is_some() {
                out!(
                    "{}: dry run, nothing written; undo would refuse (ONBOARD_EDITED_AFTER_ONBOARD) without --force",
                    file.display()
                );
            } else {
                out!(
                    "{}: dry run, nothing written; undo would restore it from {}",
                    file.display(),
                    backup.display()
                );
            }
            continue;
        }
        fs::rename(backup, file).map_err(|err| HostError::io(file, &err))?;
        if let Err(err) = remove_record(file) {
            eprintln!("warning: {err} (the file itself was restored)");
        }
        out!(
            "{}: restored from {} (gateway.toml keeps the [servers.NAME] entries onboard added)",
            file.display(),
            backup.display()
        );
    }
    match refusal {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

fn new_token() -> Result<String, HostError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| HostError::Io {
        path: "randomness".to_owned(),
        message: err.to_string(),
    })?;
    Ok(format!(
        "tos_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn onboard(args: &OnboardArgs, files: &[PathBuf]) -> Result<(), HostError> {
    let home = Home::resolve(args.home.clone()).map_err(|err| HostError::GatewayConfig {
        path: "--home".to_owned(),
        message: err.to_string(),
    })?;
    let gateway = GatewayToml::load(home.root())?;
    let home_arg = args.home.as_ref().map(|dir| {
        std::path::absolute(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string()
    });
    let plan = Plan {
        gateway_base: gateway.base_url(),
        token: new_token()?,
        home_arg,
    };

    // Read and rewrite everything in memory first: any error, nothing is written.
    let mut rewrites: Vec<(&PathBuf, String, Rewrite)> = Vec::new();
    for file in files {
        let text = match fs::read(file) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| HostError::ConfigInvalid {
                path: file.display().to_string(),
                message: "not UTF-8".to_owned(),
            })?,
            Err(err) => return Err(HostError::io(file, &err)),
        };
        for entry in hosts::read_servers(args.host, file, &text)? {
            for (variable, value) in &entry.env {
                if let Some(why) = payment_credential(variable, value) {
                    eprintln!(
                        "warning: ONBOARD_PAYMENT_CREDENTIAL: {}: server {:?} is given {variable} ({why}) in its env: a tool server holding it can pay without a decision; {}",
                        file.display(),
                        entry.name,
                        remedy(why)
                    );
                }
            }
        }
        let rewrite = hosts::rewrite(args.host, file, &text, &plan)?;
        rewrites.push((file, text, rewrite));
    }
    let added: Vec<hosts::GatewayServer> = rewrites
        .iter()
        .flat_map(|(_, _, rewrite)| rewrite.gateway_servers.clone())
        .collect();
    let gateway_text = gateway.with_servers(&added, &plan.token)?;

    // Files edited since onboard last wrote them: the backup (from before the first onboarding)
    // lacks those edits, so the record keeps saying so and `--undo` will ask for --force.
    let mut edited_before: Vec<bool> = Vec::new();
    for (file, text, rewrite) in &rewrites {
        let mut edited = false;
        if rewrite.text != *text {
            check_writable(file)?;
            if backup_path(file).is_file() {
                edited = match read_record(file) {
                    Ok(Some(record)) => {
                        record.edited_before || record.digest != Digest::of(text.as_bytes())
                    }
                    Ok(None) => false,
                    Err(_) => true,
                };
            }
        }
        edited_before.push(edited);
    }
    if gateway_text.is_some() {
        check_writable(&gateway.path)?;
    }

    for ((file, _, _), edited) in rewrites.iter().zip(&edited_before) {
        if *edited {
            eprintln!(
                "warning: {}: changed since onboard last wrote it; its backup {} is still the original from before the first onboarding, without those changes, so `--undo` will ask for --force",
                file.display(),
                backup_path(file).display()
            );
        }
    }

    if args.dry_run {
        for (file, text, rewrite) in &rewrites {
            if rewrite.text != *text {
                out!(
                    "{}",
                    unified_diff(&file.display().to_string(), text, &rewrite.text)
                );
            }
        }
        if let Some(new) = &gateway_text {
            out!(
                "{}",
                unified_diff(&gateway.path.display().to_string(), &gateway.text, new)
            );
        }
        summarize(&rewrites, true);
        return Ok(());
    }

    if let Some(new) = &gateway_text {
        if let Some(dir) = gateway.path.parent() {
            fs::create_dir_all(dir).map_err(|err| HostError::io(dir, &err))?;
        }
        write_atomic(&gateway.path, new.as_bytes())?;
        out!(
            "{}: serves {} at /mcp/NAME for this host (bearer token stored as its SHA-256)",
            gateway.path.display(),
            added
                .iter()
                .map(|(name, _, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for ((file, text, rewrite), edited) in rewrites.iter().zip(&edited_before) {
        if rewrite.text != *text {
            backup_once(file, &backup_path(file))?;
            write_atomic(file, rewrite.text.as_bytes())?;
            record_written(file, rewrite.text.as_bytes(), *edited)?;
        }
    }
    summarize(&rewrites, false);
    if gateway_text.is_some() {
        out!(
            "next: run `trustos serve` so the host can reach {}/mcp/NAME",
            plan.gateway_base
        );
    }
    Ok(())
}

fn summarize(rewrites: &[(&PathBuf, String, Rewrite)], dry_run: bool) {
    for (file, text, rewrite) in rewrites {
        for name in &rewrite.already {
            out!(
                "{}: ONBOARD_ALREADY_WRAPPED: {name} already runs through the gateway; left as is",
                file.display()
            );
        }
        if rewrite.text == *text {
            out!("{}: nothing to change", file.display());
            continue;
        }
        for line in &rewrite.changed {
            out!("{}: {line}", file.display());
        }
        if dry_run {
            out!("{}: dry run, nothing written", file.display());
        } else {
            out!(
                "{}: written; original kept at {} (`trustos onboard … --undo` restores it)",
                file.display(),
                backup_path(file).display()
            );
        }
    }
}
