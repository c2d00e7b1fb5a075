//! `trustos payments`: the payment attempts in the ledger — one per paid decision — with where
//! each stands (`authorized`, `settled`, `failed`, `unknown`), its transaction hash or the rail's
//! last word, its idempotency key, until when its signed authorization can be submitted, and what
//! reconciliation would say about it now.
//!
//! Asks the running daemon over the control socket (the store is locked while it runs); without
//! one, reads the store directly. Newest validity first. Exit 0; 1 when any listed attempt's
//! outcome is `unknown` (money may have moved: scripts and CI notice); 2 on usage or
//! configuration errors.
//!
//! The signed authorization (the exact PaymentPayload sent, with its signature) is printed only
//! with `--json --with-authorization`, never in the table.
//!
//! Circle attempts (rail `circle`) are listed the same way. With `[circle]`, each open Circle
//! attempt is first looked up at Circle (`CircleAdapter::reconcile`: by transaction id, else by
//! `refId` = the decision id) and what Circle says is recorded, so a transfer receipted
//! `unknown` shows `settled` or `failed` once Circle knows; with `[x402.rpc]`, open x402
//! attempts are looked up on chain the same way. An outcome learned so is receipted (a late
//! receipt, once). The daemon does this when it runs; without one, this command does it itself
//! on the store it opens, with the daemon's configuration (when that cannot be loaded — a
//! secret's variable unset in this shell, say — it says so and lists what is recorded). Nothing
//! is ever resubmitted by listing.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use trustos_adapters::{AttemptRecord, AttemptState};
use trustos_kernel::timestamp::Timestamp;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::daemon::client::ControlClient;
use crate::daemon::protocol::Request;
use crate::home::Home;

/// How long to wait for the daemon's answer (an older daemon that does not know the request
/// never answers it).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(15);

/// An attempt state to list (`--state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFilter {
    /// Authorized; the rail's answer is not in yet.
    Authorized,
    /// Money moved.
    Settled,
    /// Nothing moved.
    Failed,
    /// The outcome is not known.
    Unknown,
}

impl StateFilter {
    fn state(self) -> AttemptState {
        match self {
            Self::Authorized => AttemptState::Authorized,
            Self::Settled => AttemptState::Settled,
            Self::Failed => AttemptState::Failed,
            Self::Unknown => AttemptState::Unknown,
        }
    }
}

/// What `trustos payments` prints.
#[derive(Clone, Copy, Debug)]
pub struct PaymentsArgs {
    /// Print a JSON array.
    pub json: bool,
    /// Only attempts in this state.
    pub state: Option<StateFilter>,
    /// With `json`: include each attempt's signed authorization.
    pub with_authorization: bool,
}

/// What reconciling an attempt would say now (the `Adapter::reconcile` contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reconcile {
    /// Settled or failed: nothing to do.
    Known,
    /// Not known and still valid: resubmit exactly the recorded authorization (the same bytes,
    /// never a new signature).
    Resubmit,
    /// Not known and past `validBefore`: it can no longer be submitted; only the chain can tell
    /// whether it settled.
    Expired,
    /// The rail holds the transaction (a Circle transfer with its transaction id) and has not
    /// finished it: wait; reconciliation asks the rail again.
    Pending,
}

impl Reconcile {
    /// The name printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Known => "known",
            Self::Resubmit => "resubmit",
            Self::Expired => "expired",
            Self::Pending => "pending",
        }
    }
}

/// What reconciliation would say about `record` at `now`: as the x402 adapter's
/// `reconcile`, an attempt not settled or failed is resubmitted while `now` is before its
/// `validBefore`, and expired from then on.
///
/// A Circle attempt that already has Circle's transaction id is `pending`: the Circle adapter
/// asks Circle about that transaction and never resubmits it.
pub fn reconcile(record: &AttemptRecord, now: Timestamp) -> Reconcile {
    match record.state {
        AttemptState::Settled | AttemptState::Failed => Reconcile::Known,
        AttemptState::Authorized | AttemptState::Unknown
            if record.rail == trustos_adapters::circle::adapter::RAIL
                && record.reference.is_some() =>
        {
            Reconcile::Pending
        }
        AttemptState::Authorized | AttemptState::Unknown => {
            if now.unix_millis() / 1000 < record.valid_before {
                Reconcile::Resubmit
            } else {
                Reconcile::Expired
            }
        }
    }
}

/// One attempt as `--json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    decision_id: &'a str,
    rail: &'a str,
    state: AttemptState,
    reconcile: Reconcile,
    reference: Option<&'a str>,
    detail: Option<&'a str>,
    idempotency_key: &'a str,
    replay_key: &'a str,
    /// Unix seconds, as recorded.
    valid_before: u64,
    /// The same instant in UTC (`null` when it is out of range).
    valid_before_utc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization: Option<&'a str>,
}

/// `validBefore` (unix seconds) as a UTC timestamp, when it is in range.
fn utc(seconds: u64) -> Option<String> {
    seconds
        .checked_mul(1000)
        .and_then(|millis| Timestamp::from_unix_millis(millis).ok())
        .map(|at| at.to_string())
}

/// Control characters from a rail (its error text) shown escaped, so they cannot move the
/// terminal's cursor or break the table.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The attempts to print: filtered by state, newest validity first (then by decision id).
pub fn select(mut attempts: Vec<AttemptRecord>, state: Option<StateFilter>) -> Vec<AttemptRecord> {
    if let Some(state) = state {
        attempts.retain(|attempt| attempt.state == state.state());
    }
    attempts.sort_by(|a, b| {
        b.valid_before
            .cmp(&a.valid_before)
            .then_with(|| a.decision_id.cmp(&b.decision_id))
            .then_with(|| a.rail.cmp(&b.rail))
    });
    attempts
}

/// Prints the attempts of `home`'s ledger; the exit code.
pub fn run(home: &Home, args: PaymentsArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let attempts = match runtime.block_on(load(home)) {
        Ok(attempts) => attempts,
        Err(err) => return fail(&err),
    };
    let now = match crate::enforce::now() {
        Ok(now) => now,
        Err(err) => return fail(&err),
    };
    let attempts = select(attempts, args.state);
    if args.json {
        let rows: Vec<Row<'_>> = attempts
            .iter()
            .map(|attempt| Row {
                decision_id: &attempt.decision_id,
                rail: &attempt.rail,
                state: attempt.state,
                reconcile: reconcile(attempt, now),
                reference: attempt.reference.as_deref(),
                detail: attempt.detail.as_deref(),
                idempotency_key: &attempt.idempotency_key,
                replay_key: &attempt.replay_key,
                valid_before: attempt.valid_before,
                valid_before_utc: utc(attempt.valid_before),
                authorization: args
                    .with_authorization
                    .then_some(attempt.authorization.as_str()),
            })
            .collect();
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => out!("{text}"),
            Err(err) => return fail(&err),
        }
    } else {
        print_table(&attempts, now);
    }
    let unknown = attempts
        .iter()
        .filter(|attempt| {
            // An authorization left `authorized` past its validity (a crash between the
            // signature and the answer) is as much in limbo as an `unknown` one.
            attempt.state == AttemptState::Unknown
                || (attempt.state == AttemptState::Authorized
                    && reconcile(attempt, now) == Reconcile::Expired)
        })
        .count();
    if unknown == 0 {
        return EXIT_OK;
    }
    eprintln!(
        "trustos payments: {unknown} attempt(s) with an unknown outcome: money may have moved. \
         `resubmit`: send the recorded authorization again (the same bytes) while it is valid; \
         `expired`: look its nonce up on chain (x402) or at Circle by the decision id (Circle); \
         `pending`: the rail has the transfer and has not finished it, run this again later."
    );
    EXIT_INVALID
}

fn print_table(attempts: &[AttemptRecord], now: Timestamp) {
    if attempts.is_empty() {
        out!("no payment attempts");
        return;
    }
    let width = |header: &str, cell: fn(&AttemptRecord) -> &str| {
        attempts
            .iter()
            .map(|attempt| printable(cell(attempt)).chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(header.len())
    };
    let decision_width = width("DECISION", |attempt| &attempt.decision_id);
    let rail_width = width("RAIL", |attempt| &attempt.rail);
    let key_width = width("IDEMPOTENCY KEY", |attempt| &attempt.idempotency_key);
    out!(
        "{:<decision_width$} {:<rail_width$} {:<10} {:<9} {:<24} {:<key_width$} REFERENCE / DETAIL",
        "DECISION",
        "RAIL",
        "STATE",
        "RECONCILE",
        "VALID BEFORE (UTC)",
        "IDEMPOTENCY KEY",
    );
    for attempt in attempts {
        let valid_before =
            utc(attempt.valid_before).unwrap_or_else(|| format!("unix {}", attempt.valid_before));
        let outcome = attempt
            .reference
            .as_deref()
            .or(attempt.detail.as_deref())
            .unwrap_or("-");
        out!(
            "{:<decision_width$} {:<rail_width$} {:<10} {:<9} {:<24} {:<key_width$} {}",
            printable(&attempt.decision_id),
            printable(&attempt.rail),
            attempt.state.as_str(),
            reconcile(attempt, now).as_str(),
            valid_before,
            printable(&attempt.idempotency_key),
            printable(outcome),
        );
    }
}

/// The attempts, from the daemon when one answers, else from the store.
async fn load(home: &Home) -> Result<Vec<AttemptRecord>, String> {
    let client = ControlClient::new(home, false);
    match tokio::time::timeout(
        DAEMON_TIMEOUT,
        client.call_as::<Vec<AttemptRecord>>(Request::Payments),
    )
    .await
    {
        Ok(Ok(attempts)) => return Ok(attempts),
        Ok(Err(err)) if err.code != "GATEWAY_UNAVAILABLE" => return Err(err.to_string()),
        Ok(Err(_)) => {}
        Err(_) => {
            return Err(format!(
                "the daemon did not answer within {}s (is it an older version? restart it with \
                 `trustos serve`)",
                DAEMON_TIMEOUT.as_secs()
            ));
        }
    }
    // No daemon: read the store, if there is one. A home that does not exist is an error (a
    // mistyped --home must not read as "nothing in limbo").
    if !home.root().is_dir() {
        return Err(format!(
            "no Trust OS home at {} (create one with `trustos init`)",
            home.root().display()
        ));
    }
    if !home.database_path().exists() {
        return Ok(Vec::new());
    }
    match reconcile_offline(home).await {
        Ok(Some(attempts)) => return Ok(attempts),
        Ok(None) => {}
        Err(err) => {
            eprintln!("trustos payments: not reconciled ({err}); listing what is recorded");
        }
    }
    let key = Arc::new(home.load_key().map_err(|err| err.to_string())?);
    let store = home
        .open_store(key, false)
        .await
        .map_err(|err| err.to_string())?;
    let attempts = crate::daemon::server::payment_attempts(&store)
        .await
        .map_err(|err| err.to_string());
    let _ = store.close().await;
    attempts
}

/// Without a daemon, what it would do before listing: opens the home as the daemon does (its
/// configuration, key, store and rails), asks Circle and the chain about open attempts, receipts
/// outcomes learned, and lists. `None` when no rail is configured (nothing to ask).
async fn reconcile_offline(home: &Home) -> Result<Option<Vec<AttemptRecord>>, String> {
    let config = crate::config::GatewayConfig::load(home.root()).map_err(|err| err.to_string())?;
    if config.circle.is_none() && config.x402.is_none() {
        return Ok(None);
    }
    let daemon = crate::daemon::server::open(home)
        .await
        .map_err(|err| err.to_string())?;
    let enforcer = &daemon.enforcer;
    enforcer.reconcile_payments().await;
    let attempts = crate::daemon::server::payment_attempts(enforcer.store().as_ref())
        .await
        .map_err(|err| err.to_string())?;
    // Every write above was durable when answered; dropping the daemon releases the store.
    drop(daemon);
    Ok(Some(attempts))
}

fn fail(err: &dyn std::fmt::Display) -> u8 {
    eprintln!("trustos payments: {err}");
    EXIT_USAGE
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use trustos_adapters::x402::X402Adapter;
    use trustos_adapters::x402::assets::AssetRegistry;
    use trustos_adapters::x402::evm::EvmSigner;
    use trustos_adapters::{Adapter, PaymentLedger, Reconciliation, ledger::MemoryLedger};

    use super::*;

    fn attempt(decision_id: &str, state: AttemptState, valid_before: u64) -> AttemptRecord {
        AttemptRecord {
            rail: "x402".into(),
            decision_id: decision_id.into(),
            state,
            idempotency_key: format!("idem-{decision_id}"),
            replay_key: format!("eip155:8453/usdc/payer/{decision_id}"),
            valid_before,
            authorization: "{\"signature\":\"0xsig\"}".into(),
            reference: None,
            detail: None,
        }
    }

    /// The listing says what the x402 adapter's own `reconcile` says, for every state, just
    /// before, at and after `validBefore`.
    #[test]
    fn reconcile_agrees_with_the_x402_adapter() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let adapter = X402Adapter::new(
            EvmSigner::from_hex(&"11".repeat(32)).unwrap(),
            AssetRegistry::with_defaults(Vec::new()),
        );
        let valid_before = 1_800_000_000;
        let states = [
            AttemptState::Authorized,
            AttemptState::Settled,
            AttemptState::Failed,
            AttemptState::Unknown,
        ];
        for state in states {
            let ledger = MemoryLedger::new();
            let record = attempt("dec_1", state, valid_before);
            runtime.block_on(ledger.create_attempt(&record)).unwrap();
            for seconds in [valid_before - 1, valid_before, valid_before + 1] {
                let now = Timestamp::from_unix_millis(seconds * 1000 + 999).unwrap();
                let expected = match runtime
                    .block_on(adapter.reconcile(&ledger, "dec_1", now))
                    .unwrap()
                {
                    Reconciliation::Known(_) => Reconcile::Known,
                    Reconciliation::Resubmit(_) => Reconcile::Resubmit,
                    Reconciliation::Expired(_) => Reconcile::Expired,
                    Reconciliation::NoAttempt => panic!("the attempt was recorded"),
                };
                assert_eq!(
                    reconcile(&record, now),
                    expected,
                    "{state:?} at {seconds} (valid before {valid_before})"
                );
            }
        }
    }

    #[test]
    fn select_filters_by_state_and_puts_the_newest_validity_first() {
        let attempts = vec![
            attempt("dec_b", AttemptState::Settled, 100),
            attempt("dec_c", AttemptState::Unknown, 300),
            attempt("dec_a", AttemptState::Unknown, 100),
            attempt("dec_d", AttemptState::Failed, 200),
        ];
        let order: Vec<String> = select(attempts.clone(), None)
            .into_iter()
            .map(|a| a.decision_id)
            .collect();
        assert_eq!(order, ["dec_c", "dec_d", "dec_a", "dec_b"]);
        let unknown: Vec<String> = select(attempts, Some(StateFilter::Unknown))
            .into_iter()
            .map(|a| a.decision_id)
            .collect();
        assert_eq!(unknown, ["dec_c", "dec_a"]);
    }

    #[test]
    fn a_circle_attempt_with_a_transaction_id_is_pending_never_resubmitted() {
        let now = Timestamp::from_unix_millis(1_000_000).unwrap();
        let mut circle = attempt("dec_c", AttemptState::Unknown, 2_000);
        circle.rail = "circle".into();
        assert_eq!(reconcile(&circle, now), Reconcile::Resubmit);
        circle.reference = Some("tx-1".into());
        assert_eq!(reconcile(&circle, now), Reconcile::Pending);
        circle.state = AttemptState::Settled;
        assert_eq!(reconcile(&circle, now), Reconcile::Known);
    }

    #[test]
    fn rail_text_cannot_drive_the_terminal() {
        assert_eq!(
            printable("bad\u{1b}[2Jtext\nnext"),
            "bad\\u{1b}[2Jtext\\nnext"
        );
        assert_eq!(printable("0xabc"), "0xabc");
    }

    #[test]
    fn valid_before_reads_as_utc() {
        assert_eq!(utc(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(
            utc(1_767_225_600).as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(utc(u64::MAX), None);
    }
}
