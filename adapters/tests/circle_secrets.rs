//! Loading Circle secrets from files and environment variables: permissions are enforced, errors
//! name the source and never the value.
//!
//! Environment variables cannot be set in this process (`set_var` is `unsafe` and the workspace
//! forbids `unsafe`), so the success cases re-run this test binary as a child with the variable
//! set, filtered to one test that reads it.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use trustos_adapters::circle::secrets::SecretError;
use trustos_adapters::circle::{ApiKey, CircleEnvironment, EntitySecret};

const API_KEY: &str =
    "LIVE_API_KEY:ebb3ad72232624921abc4b162148bb84:5e1f0c0ffee5ecre7000000000000042";
const API_SECRET_PART: &str = "5e1f0c0ffee5ecre7000000000000042";
const ENTITY_HEX: &str = "7ae43b03d7e48795cbf39ddad2f58dc8e186eb3d2dab3a5ec5bb3b33946639a4";

/// A fresh directory under the target's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("circle-secrets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(unix)]
fn write_with_mode(path: &std::path::Path, contents: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn assert_hides(error: &SecretError, secrets: &[&str]) {
    let shown = format!("{error} {error:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[cfg(unix)]
#[test]
fn owner_only_files_load() {
    let dir = scratch("ok");
    let key_path = dir.join("api-key");
    let secret_path = dir.join("entity-secret");
    write_with_mode(&key_path, &format!("{API_KEY}\n"), 0o600);
    write_with_mode(&secret_path, &format!("{ENTITY_HEX}\n"), 0o400);

    let key = ApiKey::from_file(&key_path).unwrap();
    assert_eq!(key.environment(), CircleEnvironment::Mainnet);
    assert_eq!(key.authorization_header(), format!("Bearer {API_KEY}"));
    EntitySecret::from_file(&secret_path).unwrap();
}

#[cfg(unix)]
#[test]
fn group_or_other_access_is_refused() {
    let dir = scratch("perms");
    for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666, 0o610, 0o601] {
        let path = dir.join(format!("key-{mode:o}"));
        write_with_mode(&path, API_KEY, mode);
        let error = ApiKey::from_file(&path).unwrap_err();
        assert_eq!(
            error.reason_code(),
            "CIRCLE_SECRET_FILE_PERMISSIONS",
            "{mode:o}"
        );
        assert!(error.to_string().contains(&path.display().to_string()));
        assert_hides(&error, &[API_SECRET_PART]);

        write_with_mode(&path, ENTITY_HEX, mode);
        let error = EntitySecret::from_file(&path).unwrap_err();
        assert_eq!(
            error.reason_code(),
            "CIRCLE_SECRET_FILE_PERMISSIONS",
            "{mode:o}"
        );
        assert_hides(&error, &[ENTITY_HEX]);
    }
}

#[cfg(unix)]
#[test]
fn malformed_file_contents_name_the_file_not_the_value() {
    let dir = scratch("malformed");
    let path = dir.join("entity-secret");
    // An API key where the entity secret belongs.
    write_with_mode(&path, API_KEY, 0o600);
    let error = EntitySecret::from_file(&path).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_ENTITY_SECRET_MALFORMED");
    assert!(
        error
            .to_string()
            .starts_with(&format!("file {}", path.display()))
    );
    assert_hides(&error, &[API_SECRET_PART]);

    // The entity secret where the API key belongs.
    write_with_mode(&path, ENTITY_HEX, 0o600);
    let error = ApiKey::from_file(&path).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_API_KEY_MALFORMED");
    assert_hides(&error, &[ENTITY_HEX]);

    write_with_mode(&path, &ENTITY_HEX[..40], 0o600);
    let error = EntitySecret::from_file(&path).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_ENTITY_SECRET_LENGTH");
    assert_hides(&error, &[&ENTITY_HEX[..40]]);

    write_with_mode(&path, &"0".repeat(5000), 0o600);
    assert_eq!(
        EntitySecret::from_file(&path).unwrap_err().reason_code(),
        "CIRCLE_SECRET_FILE_UNREADABLE"
    );
}

#[test]
fn missing_files_and_directories_are_unreadable() {
    let dir = scratch("missing");
    let error = ApiKey::from_file(&dir.join("absent")).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_SECRET_FILE_UNREADABLE");
    assert!(error.to_string().contains("absent"));
    assert_eq!(
        EntitySecret::from_file(&dir).unwrap_err().reason_code(),
        "CIRCLE_SECRET_FILE_UNREADABLE"
    );
}

#[test]
fn unset_variables_are_named() {
    let name = "TRUSTOS_TEST_CIRCLE_SURELY_UNSET_4f2a";
    let error = ApiKey::from_env(name).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_SECRET_ENV_MISSING");
    assert_eq!(
        error.to_string(),
        format!("environment variable {name} is not set")
    );
    assert_eq!(
        EntitySecret::from_env(name).unwrap_err().reason_code(),
        "CIRCLE_SECRET_ENV_MISSING"
    );
}

/// Runs in a child process only, with the variables set by [`variables_load_in_a_child`].
#[test]
fn child_reads_variables() {
    let Ok(expected) = std::env::var("TRUSTOS_TEST_CIRCLE_CHILD") else {
        return;
    };
    match expected.as_str() {
        "ok" => {
            let key = ApiKey::from_env("TRUSTOS_TEST_CIRCLE_API_KEY").unwrap();
            assert_eq!(key.environment(), CircleEnvironment::Mainnet);
            key.expect_environment(CircleEnvironment::Mainnet).unwrap();
            EntitySecret::from_env("TRUSTOS_TEST_CIRCLE_ENTITY_SECRET").unwrap();
        }
        "bad" => {
            let error = ApiKey::from_env("TRUSTOS_TEST_CIRCLE_API_KEY").unwrap_err();
            assert_eq!(error.reason_code(), "CIRCLE_API_KEY_MALFORMED");
            assert!(
                error
                    .to_string()
                    .starts_with("environment variable TRUSTOS_TEST_CIRCLE_API_KEY:")
            );
            assert_hides(&error, &[API_SECRET_PART]);
            let error = EntitySecret::from_env("TRUSTOS_TEST_CIRCLE_ENTITY_SECRET").unwrap_err();
            assert_eq!(error.reason_code(), "CIRCLE_ENTITY_SECRET_LENGTH");
            assert_hides(&error, &[&ENTITY_HEX[..60]]);
        }
        other => panic!("unexpected mode {other}"),
    }
}

#[test]
fn variables_load_in_a_child() {
    for (mode, api_key, entity) in [
        ("ok", API_KEY.to_owned(), ENTITY_HEX.to_owned()),
        (
            "bad",
            API_KEY.replace("LIVE_API_KEY", "PROD_API_KEY"),
            ENTITY_HEX[..60].to_owned(),
        ),
    ] {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_reads_variables", "--test-threads=1"])
            .env("TRUSTOS_TEST_CIRCLE_CHILD", mode)
            .env("TRUSTOS_TEST_CIRCLE_API_KEY", api_key)
            .env("TRUSTOS_TEST_CIRCLE_ENTITY_SECRET", entity)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child in mode {mode} failed: {stdout}"
        );
        // The child really ran the one test (a filter matching nothing would also succeed).
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
}
