//! `trustos verify`: offline verification of a decision, a receipt, or a receipt bundle.
//!
//! Prints one line saying what was verified or exactly why not (with a stable reason code), or
//! one JSON object with `--json`. Exit 0 valid, 1 invalid, 2 usage.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::{self, SignedObject, Verifier};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Largest input file read, in bytes.
const MAX_INPUT_LEN: u64 = 4 << 20;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A compact JWS (decision or receipt) or a receipt bundle (JSON).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// JWKS holding the trusted gateway keys.
    #[arg(long, value_name = "JWKS")]
    jwks: PathBuf,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
    /// Decisions only: also require the decision to be in force at this instant
    /// (YYYY-MM-DDTHH:MM:SS.mmmZ).
    #[arg(long, value_name = "TIME")]
    at: Option<Timestamp>,
    /// Bundles only: also require the checkpoint to be for this log origin.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// Also require the object to be bound to this request fingerprint (sha256:…).
    #[arg(long, value_name = "DIGEST")]
    fingerprint: Option<Digest>,
}

/// Outcome of one verification, before it is printed.
enum Report {
    Valid { summary: String, details: Value },
    Invalid { reason_code: String, reason: String },
}

fn invalid(reason_code: &str, reason: impl ToString) -> Report {
    Report::Invalid {
        reason_code: reason_code.to_owned(),
        reason: reason.to_string(),
    }
}

pub fn run(args: &VerifyArgs) -> u8 {
    let keys = match read_limited(&args.jwks).and_then(|bytes| {
        TrustedKeys::from_jwks_json(&bytes)
            .map_err(|err| format!("{}: {} ({})", args.jwks.display(), err, err.reason_code()))
    }) {
        Ok(keys) => keys,
        Err(err) => return usage(&err),
    };
    let input = match read_limited(&args.file) {
        Ok(input) => input,
        Err(err) => return usage(&err),
    };
    let report = match verify_input(&input, &keys, args) {
        Ok(report) => report,
        Err(err) => return usage(&err),
    };
    print_report(&report, args.json);
    match report {
        Report::Valid { .. } => EXIT_OK,
        Report::Invalid { .. } => EXIT_INVALID,
    }
}

fn usage(message: &str) -> u8 {
    eprintln!("trustos verify: {message}");
    EXIT_USAGE
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let too_large = |len: u64| {
        format!(
            "{}: {len} bytes is more than the {MAX_INPUT_LEN} read",
            path.display()
        )
    };
    let metadata = fs::metadata(path).map_err(|err| format!("{}: {err}", path.display()))?;
    if metadata.len() > MAX_INPUT_LEN {
        return Err(too_large(metadata.len()));
    }
    fs::read(path).map_err(|err| format!("{}: {err}", path.display()))
}

fn verify_input(input: &[u8], keys: &TrustedKeys, args: &VerifyArgs) -> Result<Report, String> {
    let is_bundle = input
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{');
    if is_bundle {
        if args.at.is_some() {
            return Err("--at applies to decisions, and this is a receipt bundle".into());
        }
        return Ok(verify_bundle(input, keys, args));
    }
    if args.origin.is_some() {
        return Err("--origin applies to receipt bundles, and this is a compact JWS".into());
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return Ok(invalid(
            "JWS_MALFORMED",
            "file is neither a JSON bundle nor a compact JWS (not UTF-8)",
        ));
    };
    // A file usually ends with a newline; the JWS itself has no whitespace.
    let jws = text.trim_end_matches(['\n', '\r']);
    let verifier = Verifier::new(keys.clone());
    let signed = match verifier.verify_any(jws) {
        Ok(signed) => signed,
        Err(err) => return Ok(invalid(err.reason_code(), &err)),
    };
    match signed {
        SignedObject::Decision(signed) => {
            let decision = &signed.decision;
            if let Some(now) = args.at
                && let Err(err) = verify::check_in_force(decision, now)
            {
                return Ok(invalid(err.reason_code(), &err));
            }
            if let Some(report) =
                fingerprint_mismatch(args.fingerprint.as_ref(), &decision.fingerprint)
            {
                return Ok(report);
            }
            Ok(Report::Valid {
                summary: format!(
                    "PolicyDecision.v1 {} (outcome {}, expires {}) for {}, signed by key {}",
                    decision.decision_id,
                    decision.outcome.as_str(),
                    decision.expires_at,
                    decision.fingerprint,
                    signed.kid
                ),
                details: json!({"kind": "decision", "kid": signed.kid, "decision": decision}),
            })
        }
        SignedObject::Receipt(signed) => {
            if args.at.is_some() {
                return Err("--at applies to decisions, and this is a receipt".into());
            }
            let receipt = &signed.receipt;
            if let Some(report) =
                fingerprint_mismatch(args.fingerprint.as_ref(), &receipt.fingerprint)
            {
                return Ok(report);
            }
            Ok(Report::Valid {
                summary: format!(
                    "Receipt.v1 {} (status {}, decision {}, log index {}), signed by key {}",
                    receipt.receipt_id,
                    receipt.status.as_str(),
                    receipt.decision_id,
                    receipt.log_index.get(),
                    signed.kid
                ),
                details: json!({"kind": "receipt", "kid": signed.kid, "receipt": receipt}),
            })
        }
    }
}

fn verify_bundle(input: &[u8], keys: &TrustedKeys, args: &VerifyArgs) -> Report {
    let verified = match ReceiptBundle::from_json(input)
        .and_then(|bundle| bundle.verify_in_log(keys, args.origin.as_deref()))
    {
        Ok(verified) => verified,
        Err(err) => return invalid(err.reason_code(), &err),
    };
    if let Some(report) =
        fingerprint_mismatch(args.fingerprint.as_ref(), &verified.receipt.fingerprint)
    {
        return report;
    }
    Report::Valid {
        summary: format!(
            "Receipt.v1 {} signed by key {}, included at index {} of {} in log {:?} (signed checkpoint)",
            verified.receipt.receipt_id,
            verified.kid,
            verified.leaf_index,
            verified.tree_size,
            verified.origin
        ),
        details: json!({
            "kind": "bundle",
            "kid": verified.kid,
            "receipt": verified.receipt,
            "log": {
                "origin": verified.origin,
                "treeSize": verified.tree_size,
                "leafIndex": verified.leaf_index,
                "root": Digest::from_bytes(verified.root).to_string(),
            },
        }),
    }
}

fn fingerprint_mismatch(expected: Option<&Digest>, found: &Digest) -> Option<Report> {
    let expected = expected?;
    (expected != found).then(|| {
        invalid(
            "FINGERPRINT_MISMATCH",
            format!("signed object is for fingerprint {found}, expected {expected}"),
        )
    })
}

fn print_report(report: &Report, as_json: bool) {
    let line = match report {
        Report::Valid { summary, details } if as_json => {
            let mut object = details.clone();
            object["valid"] = Value::Bool(true);
            object["summary"] = Value::String(summary.clone());
            object.to_string()
        }
        Report::Valid { summary, .. } => format!("valid: {summary}"),
        Report::Invalid {
            reason_code,
            reason,
        } if as_json => {
            json!({"valid": false, "reasonCode": reason_code, "reason": reason}).to_string()
        }
        Report::Invalid {
            reason_code,
            reason,
        } => format!("invalid: {reason_code}: {reason}"),
    };
    out!("{line}");
}
