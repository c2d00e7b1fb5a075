//! `trustos onboard HOST`: rewrite an agent host's MCP config so every server runs through the
//! gateway — stdio servers through the `trustos mcp` shim, URL servers through the HTTP front's
//! `/mcp/NAME` (or the shim's `--url` for hosts without HTTP) — keeping everything else in the
//! file byte for byte.
//!
//! Safety: every file is read, rewritten in memory and checked before anything is written; any
//! problem (stable `ONBOARD_*` code) leaves every file untouched. The original is copied to
//! `<file>.trustos-backup` next to it before the first change (a later run keeps that first
//! backup); writes go to a temporary file in the same directory, then rename. `--undo` moves the
//! backup back (byte for byte) and leaves `gateway.toml` as it is: the `[servers.NAME]` and
//! `[[tokens]]` entries onboarding added stay (they serve nothing unless a host uses them).

use std::fs;
use std::path::{Path, PathBuf};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::home::Home;
use crate::hosts::credentials::{payment_credential, remedy};
use crate::hosts::files::{backup_once, check_writable, unified_diff, write_atomic};
use crate::hosts::gateway_toml::GatewayToml;
use crate::hosts::{self, Host, HostError, Plan, Rewrite, backup_path};

/// What `trustos onboard` was asked.
pub struct OnboardArgs {
    /// The host.
    pub host: Host,
    /// Print the diff, write nothing.
    pub dry_run: bool,
    /// Restore the backup.
    pub undo: bool,
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
        undo(&files, args.dry_run)
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
    let candidates = host.candidates(&home, &project);
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

fn undo(files: &[PathBuf], dry_run: bool) -> Result<(), HostError> {
    for file in files {
        let backup = backup_path(file);
        if !backup.is_file() {
            return Err(HostError::NoBackup {
                path: backup.display().to_string(),
            });
        }
        check_writable(file)?;
    }
    for file in files {
        let backup = backup_path(file);
        if dry_run {
            let now = fs::read_to_string(file).map_err(|err| HostError::io(file, &err))?;
            let before = fs::read_to_string(&backup).map_err(|err| HostError::io(&backup, &err))?;
            out!(
                "{}",
                unified_diff(&file.display().to_string(), &now, &before)
            );
            continue;
        }
        fs::rename(&backup, file).map_err(|err| HostError::io(file, &err))?;
        out!(
            "{}: restored from {} (gateway.toml keeps the [servers.NAME] entries onboard added)",
            file.display(),
            backup.display()
        );
    }
    Ok(())
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

    for (file, text, rewrite) in &rewrites {
        if rewrite.text != *text {
            check_writable(file)?;
        }
    }
    if gateway_text.is_some() {
        check_writable(&gateway.path)?;
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
    for (file, text, rewrite) in &rewrites {
        if rewrite.text != *text {
            backup_once(file, &backup_path(file))?;
            write_atomic(file, rewrite.text.as_bytes())?;
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
