//! `trustos demo-tool-server` (hidden): the quickstart's paid MCP tool server, over stdio.
//!
//! A small newline-delimited JSON-RPC 2.0 server speaking just enough MCP (`initialize`,
//! `ping`, `tools/list`, `tools/call`) to show the gateway's money lane end to end. Its tools:
//!
//! | tool | arguments | result |
//! |---|---|---|
//! | `get_forecast` | `city` | a three-day forecast, for `--price` base units of USDC (x402) |
//! | `deploy` | `service`, `version` | `deployed <service>@<version>` (free; the profile holds it) |
//!
//! `get_forecast` follows the x402 MCP transport: without `params._meta["x402/payment"]` it
//! answers a tool result with `isError: true`, the `PaymentRequired` in `structuredContent` and
//! its JSON as `content[0].text`. With a payment it asks the facilitator at `--facilitator` to
//! `POST /verify`, then `POST /settle`, and answers the forecast with the settlement in
//! `result._meta["x402/payment-response"]`; an invalid payment or a failed settlement is
//! answered with the `PaymentRequired` again (its `error` says why). Diagnostics go to stderr:
//! stdout is the protocol. It ends when stdin closes.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use trustos_adapters::testkit::x402 as facilitator;

use super::{EXIT_OK, EXIT_USAGE};

/// The `_meta` key of an x402 payment on a `tools/call` request.
const PAYMENT_META_KEY: &str = "x402/payment";
/// The `_meta` key of an x402 settlement on a `tools/call` result.
const PAYMENT_RESPONSE_META_KEY: &str = "x402/payment-response";
/// The protocol version answered when the client names none.
const DEFAULT_PROTOCOL: &str = "2025-06-18";

/// What the server charges, and where it settles.
#[derive(Clone, Debug)]
pub struct DemoToolArgs {
    /// The facilitator's base URL (`http://host:port`).
    pub facilitator: String,
    /// The address paid.
    pub pay_to: String,
    /// `get_forecast`'s price, in USDC base units.
    pub price: u64,
    /// CAIP-2 network of the offer.
    pub network: String,
    /// The token contract of the offer.
    pub asset: String,
}

/// Why the server stopped early.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    /// stdin or stdout failed.
    #[error("stdio: {0}")]
    Io(#[from] std::io::Error),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Serves MCP on stdin/stdout until stdin closes.
pub fn run(args: DemoToolArgs) -> u8 {
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)
        .and_then(|runtime| runtime.block_on(serve(&args)));
    match served {
        Ok(()) => EXIT_OK,
        Err(err) => {
            eprintln!("trustos demo-tool-server: {err}");
            EXIT_USAGE
        }
    }
}

async fn serve(args: &DemoToolArgs) -> Result<(), ServeError> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let Some(answer) = answer(args, &line).await else {
            continue;
        };
        let mut bytes = answer.to_string().into_bytes();
        bytes.push(b'\n');
        stdout.write_all(&bytes).await?;
        stdout.flush().await?;
    }
    Ok(())
}

/// The answer to one line, or `None` for a notification (or an answer to nothing).
async fn answer(args: &DemoToolArgs, line: &str) -> Option<Value> {
    let message: Value = match serde_json::from_str(line) {
        Ok(message) => message,
        Err(err) => {
            return Some(json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": format!("parse error: {err}")}}));
        }
    };
    let id = message.get("id").cloned()?;
    let method = message.get("method").and_then(Value::as_str)?;
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => Ok(json!({
            "protocolVersion": params.get("protocolVersion").and_then(Value::as_str)
                .unwrap_or(DEFAULT_PROTOCOL),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "trustos-demo-tools", "version": env!("CARGO_PKG_VERSION")},
        })),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(tools()),
        "tools/call" => Ok(call(args, &params).await),
        other => Err(json!({"code": -32601, "message": format!("method not found: {other}")})),
    };
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    })
}

fn tools() -> Value {
    json!({"tools": [
        {
            "name": "get_forecast",
            "description": "Three-day weather forecast for a city. Paid with x402: 0.01 USDC per call.",
            "inputSchema": {"type": "object", "properties": {
                "city": {"type": "string", "description": "The city."}
            }, "required": ["city"]},
        },
        {
            "name": "deploy",
            "description": "Deploy a version of a service to production.",
            "inputSchema": {"type": "object", "properties": {
                "service": {"type": "string", "description": "The service."},
                "version": {"type": "string", "description": "The version."}
            }, "required": ["service", "version"]},
            "annotations": {"destructiveHint": true},
        }
    ]})
}

fn text_result(text: String, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": is_error})
}

fn argument<'a>(params: &'a Value, name: &str) -> &'a str {
    params
        .get("arguments")
        .and_then(|arguments| arguments.get(name))
        .and_then(Value::as_str)
        .unwrap_or("")
}

async fn call(args: &DemoToolArgs, params: &Value) -> Value {
    match params.get("name").and_then(Value::as_str) {
        Some("get_forecast") => {
            let city = argument(params, "city");
            match params
                .get("_meta")
                .and_then(|meta| meta.get(PAYMENT_META_KEY))
            {
                None => payment_required(args, "Payment required to access this resource", None),
                Some(payment) => paid_forecast(args, city, payment).await,
            }
        }
        Some("deploy") => text_result(
            format!(
                "deployed {}@{}",
                argument(params, "service"),
                argument(params, "version")
            ),
            false,
        ),
        other => text_result(format!("unknown tool {other:?}"), true),
    }
}

/// The one offer `get_forecast` makes (x402 v2 `PaymentRequirements`).
fn requirements(args: &DemoToolArgs) -> Value {
    json!({
        "scheme": "exact",
        "network": args.network,
        "amount": args.price.to_string(),
        "asset": args.asset,
        "payTo": args.pay_to,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    })
}

/// The tool result asking for payment, with a failed settlement in `_meta` when given.
fn payment_required(args: &DemoToolArgs, error: &str, settlement: Option<Value>) -> Value {
    let required = json!({
        "x402Version": 2,
        "error": error,
        "resource": {"url": "mcp://tool/get_forecast"},
        "accepts": [requirements(args)]
    });
    let mut result = text_result(required.to_string(), true);
    result["structuredContent"] = required;
    if let Some(settlement) = settlement {
        result["_meta"] = settlement_meta(settlement);
    }
    result
}

/// `{"x402/payment-response": settlement}`.
fn settlement_meta(settlement: Value) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert(PAYMENT_RESPONSE_META_KEY.to_owned(), settlement);
    Value::Object(meta)
}

/// Verifies the payment with the facilitator, settles it, and answers the forecast.
async fn paid_forecast(args: &DemoToolArgs, city: &str, payment: &Value) -> Value {
    let payload = payment.to_string();
    let requirement = requirements(args).to_string();
    let verified = match facilitator::verify(&args.facilitator, &payload, &requirement).await {
        Ok(verified) => verified,
        Err(err) => {
            eprintln!("trustos demo-tool-server: /verify: {err}");
            return payment_required(args, &format!("payment verification failed: {err}"), None);
        }
    };
    if !verified.success {
        let reason = verified
            .error_reason
            .unwrap_or_else(|| "invalid_payment".to_owned());
        let failed = json!({"success": false, "errorReason": reason, "transaction": "",
            "network": args.network});
        return payment_required(args, &format!("Payment invalid: {reason}"), Some(failed));
    }
    let settled = match facilitator::settle(&args.facilitator, &payload, &requirement).await {
        Ok(settled) => settled,
        Err(err) => {
            eprintln!("trustos demo-tool-server: /settle: {err}");
            return payment_required(args, &format!("Settlement failed: {err}"), None);
        }
    };
    if !settled.success {
        return payment_required(args, "Settlement failed", Some(settled.body));
    }
    let city = if city.is_empty() { "your city" } else { city };
    let mut result = text_result(
        format!(
            "Forecast for {city}: today 21°C sunny, tomorrow 19°C cloudy, then 17°C light rain."
        ),
        false,
    );
    result["_meta"] = settlement_meta(settled.body);
    result
}
