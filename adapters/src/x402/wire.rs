//! x402 wire formats: the payment request, the payment payload and the settlement response, in
//! protocol versions 1 and 2, over HTTP and over the MCP transport.
//!
//! | message | v2 HTTP | v1 HTTP | MCP |
//! |---|---|---|---|
//! | payment request (`PaymentRequired`) | `PAYMENT-REQUIRED` header | 402 body `{x402Version: 1, error, accepts}` | tool result with `isError: true`, in `structuredContent` (fallback `content[0].text`) |
//! | payment (`PaymentPayload`) | `PAYMENT-SIGNATURE` header | `X-PAYMENT` header | `params._meta["x402/payment"]` |
//! | settlement (`SettlementResponse`) | `PAYMENT-RESPONSE` header | `X-PAYMENT-RESPONSE` header | `result._meta["x402/payment-response"]` |
//!
//! Header values are standard base64 (RFC 4648 §4, with `=` padding) of compact JSON. Decoding
//! ([`decode_header_json`]) is strict: the URL-safe alphabet, missing padding, whitespace and
//! non-zero trailing bits are each refused with their own reason code, and the decoded size is
//! bounded by [`MAX_HEADER_JSON_BYTES`]. Every JSON text read here goes through
//! [`trustos_kernel::strict_json`], which refuses duplicate keys, a BOM, lone surrogates and
//! integers beyond 2^53.
//!
//! What is signed is what was offered: each offered requirement keeps its original JSON text
//! ([`Requirement::raw`]), and [`payment_payload_json`] copies that text verbatim into
//! `accepted` (and the v2 `resource` likewise), so fields this module does not model, odd spacing
//! and key order all reach the server unchanged.
//!
//! This module checks form, not policy: a requirement must have its fields with the right JSON
//! types and an amount that is an integer in base units, but whether its scheme, network, asset or
//! amount is acceptable is the adapter's decision.
//!
//! Every refusal is a [`WireError`] with a stable reason code (see [`all_reason_codes`]):
//!
//! | reason code | meaning |
//! |---|---|
//! | `X402_HEADER_EMPTY` | a header value is empty |
//! | `X402_HEADER_TOO_LARGE` | a header value (or what it decodes to) exceeds [`MAX_HEADER_JSON_BYTES`] |
//! | `X402_HEADER_WHITESPACE` | a header value contains whitespace |
//! | `X402_HEADER_URL_SAFE_BASE64` | a header value uses `-` or `_` (the URL-safe alphabet) |
//! | `X402_HEADER_BASE64_UNPADDED` | a header value lacks its `=` padding |
//! | `X402_HEADER_BASE64_TRAILING_BITS` | the last base64 symbol has non-zero bits that decode to nothing |
//! | `X402_HEADER_BASE64` | any other base64 error (foreign byte, misplaced padding, impossible length) |
//! | `X402_BODY_TOO_LARGE` | a 402 body or MCP text exceeds [`MAX_BODY_JSON_BYTES`] |
//! | `X402_MALFORMED_JSON` | not strict JSON (syntax, trailing bytes, BOM, invalid UTF-8, lone surrogate, depth) |
//! | `X402_JSON_DUPLICATE_KEY` | an object has the same key twice |
//! | `X402_JSON_INTEGER_OUT_OF_RANGE` | an integer beyond ±(2^53 − 1) |
//! | `X402_VERSION_MISSING` | no `x402Version` |
//! | `X402_VERSION_UNSUPPORTED` | `x402Version` is neither 1 nor 2 |
//! | `X402_VERSION_CONFLICT` | the versions of two carriers disagree (v2 header with a v1 body, a v1 object in the v2 header) |
//! | `X402_V2_REQUIRES_HEADER` | a 402 body claims version 2 without a `PAYMENT-REQUIRED` header |
//! | `X402_PAYMENT_REQUIRED_MALFORMED` | the payment request object has a missing or mistyped field |
//! | `X402_RESOURCE_MALFORMED` | the v2 `resource` is missing, not an object, or has no string `url` |
//! | `X402_NO_REQUIREMENTS` | `accepts` is empty |
//! | `X402_TOO_MANY_REQUIREMENTS` | `accepts` has more than [`MAX_REQUIREMENTS`] entries |
//! | `X402_REQUIREMENT_MALFORMED` | an offered requirement has a missing or mistyped field |
//! | `X402_AMOUNT_NOT_STRING` | an amount is not a JSON string |
//! | `X402_AMOUNT_NOT_INTEGER` | an amount is not decimal digits without leading zeros |
//! | `X402_AMOUNT_OUT_OF_RANGE` | an amount exceeds 2^256 − 1 |
//! | `X402_REQUIREMENT_NOT_OFFERED` | the chosen requirement is not one of the offered ones |
//! | `X402_EXTENSIONS_MALFORMED` | an `extensions` value is not an object, or cannot take the echo |
//! | `X402_EXTENSIONS_ON_V1` | extensions were given for a v1 payload (v1 has none) |
//! | `X402_SETTLEMENT_MALFORMED` | the settlement response has a missing or mistyped field |
//! | `X402_SETTLEMENT_CONFLICT` | both `PAYMENT-RESPONSE` and `X-PAYMENT-RESPONSE` are present |
//! | `X402_AGENT_PAYMENT` | an agent's own request carries a payment (only the gateway pays) |
//! | `X402_PAYMENT_ID_INVALID` | a payment identifier is not 16–128 of `[A-Za-z0-9_-]` |
//! | `X402_PAYMENT_ID_MISSING` | the server requires a payment identifier and none was given |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use trustos_kernel::strict_json::{self, StrictJsonError};

/// Lower-case name of the v2 header carrying the base64 `PaymentRequired` (server → client).
pub const HEADER_PAYMENT_REQUIRED: &str = "payment-required";
/// Lower-case name of the v2 header carrying the base64 `PaymentPayload` (client → server).
pub const HEADER_PAYMENT_SIGNATURE: &str = "payment-signature";
/// Lower-case name of the v2 header carrying the base64 `SettlementResponse` (server → client).
pub const HEADER_PAYMENT_RESPONSE: &str = "payment-response";
/// Lower-case name of the v1 header carrying the base64 `PaymentPayload` (client → server).
pub const HEADER_X_PAYMENT: &str = "x-payment";
/// Lower-case name of the v1 header carrying the base64 `SettlementResponse` (server → client).
pub const HEADER_X_PAYMENT_RESPONSE: &str = "x-payment-response";
/// MCP `_meta` key of a `tools/call` request's `params` carrying the `PaymentPayload`.
pub const MCP_META_PAYMENT: &str = "x402/payment";
/// MCP `_meta` key of a `tools/call` result carrying the `SettlementResponse`.
pub const MCP_META_PAYMENT_RESPONSE: &str = "x402/payment-response";

/// Largest decoded size of an x402 header value, in bytes (64 KiB).
pub const MAX_HEADER_JSON_BYTES: usize = 64 * 1024;
/// Largest base64 text accepted for a header value: the encoding of [`MAX_HEADER_JSON_BYTES`].
pub const MAX_HEADER_BASE64_BYTES: usize = MAX_HEADER_JSON_BYTES.div_ceil(3) * 4;
/// Largest v1 402 body or MCP payment request text accepted, in bytes (1 MiB).
pub const MAX_BODY_JSON_BYTES: usize = 1024 * 1024;
/// Most requirements accepted in one `accepts` array.
pub const MAX_REQUIREMENTS: usize = 64;

/// Extension key of the payment-identifier extension (`extensions["payment-identifier"]`).
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";
/// Fewest characters of a payment identifier.
pub const PAYMENT_ID_MIN_LEN: usize = 16;
/// Most characters of a payment identifier.
pub const PAYMENT_ID_MAX_LEN: usize = 128;

/// 2^256 − 1 in decimal: the largest amount an EVM `uint256` can carry.
const U256_MAX_DECIMAL: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// Longest attacker-supplied text quoted in an error message.
const QUOTE_MAX_CHARS: usize = 40;

/// The x402 protocol version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum X402Version {
    /// Version 1: v1 network names, `maxAmountRequired`, 402 body, `X-PAYMENT` headers.
    V1,
    /// Version 2: CAIP-2 networks, `amount`, `resource` object, `PAYMENT-*` headers, extensions.
    V2,
}

impl X402Version {
    /// The `x402Version` number written on the wire (1 or 2).
    pub fn number(self) -> u64 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version whose wire number is `number`, or `None` when it is not supported.
    pub fn from_number(number: u64) -> Option<Self> {
        match number {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// One offered way to pay (`PaymentRequirements`), as read from the `accepts` array.
///
/// The typed fields are what the adapter decides on; [`raw`](Self::raw) is the exact JSON text
/// of the offer, which is what gets echoed back as `accepted`.
#[derive(Debug, Clone)]
pub struct Requirement {
    raw: Box<RawValue>,
    /// Payment scheme, e.g. `"exact"`.
    pub scheme: String,
    /// Network as written: CAIP-2 in v2 (`"eip155:84532"`), a v1 name in v1 (`"base-sepolia"`).
    pub network: String,
    /// Amount in atomic units as written: v2 `amount` or v1 `maxAmountRequired`. Always decimal
    /// digits without leading zeros, at most 2^256 − 1.
    pub amount: String,
    /// Token contract address (or other asset identifier), as written.
    pub asset: String,
    /// Recipient, as written.
    pub pay_to: String,
    /// Longest time the server allows for completing the payment, in seconds.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data (`extra`), when present and not null.
    pub extra: Option<Value>,
    /// URL of the paid resource (v1 `resource`); `None` in v2, where the resource is per request.
    pub resource: Option<String>,
}

impl Requirement {
    /// The original JSON text of this offered requirement, byte for byte.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }
}

/// Whether a server advertises the payment-identifier extension, and whether it requires it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentIdentifierSupport {
    /// The server does not advertise the extension (always so in v1).
    NotOffered,
    /// The server accepts a payment identifier but does not require one.
    Optional,
    /// The server requires a payment identifier (`info.required: true`).
    Required,
}

/// A server's payment request (`PaymentRequired` in v2, `PaymentRequirementsResponse` in v1).
#[derive(Debug, Clone)]
pub struct PaymentRequired {
    /// Protocol version of the request; the payment must use the same.
    pub version: X402Version,
    /// Human-readable reason the server gave, if any.
    pub error: Option<String>,
    /// v2 `resource` (ResourceInfo) as its original JSON text, echoed in the payment; `None` in v1.
    pub resource: Option<Box<RawValue>>,
    /// v2 `resource.url`; `None` in v1 (see [`Requirement::resource`]).
    pub resource_url: Option<String>,
    /// The offered requirements, in the server's order; never empty, at most [`MAX_REQUIREMENTS`].
    pub accepts: Vec<Requirement>,
    /// v2 `extensions` object, when present and not null; always `None` in v1.
    pub extensions: Option<Value>,
}

impl PaymentRequired {
    /// Whether the server advertises the payment-identifier extension, and requires it.
    ///
    /// Any object under `extensions["payment-identifier"]` counts as advertised; it is required
    /// only when its `info.required` is `true` (the extension's default is `false`).
    pub fn payment_identifier(&self) -> PaymentIdentifierSupport {
        let Some(Value::Object(extension)) = self
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get(PAYMENT_IDENTIFIER))
        else {
            return PaymentIdentifierSupport::NotOffered;
        };
        let required = extension
            .get("info")
            .and_then(|info| info.get("required"))
            .and_then(Value::as_bool);
        if required == Some(true) {
            PaymentIdentifierSupport::Required
        } else {
            PaymentIdentifierSupport::Optional
        }
    }

    /// The client's `extensions` for the payment: the server's extensions echoed unchanged, with
    /// `payment_id` appended as `extensions["payment-identifier"].info.id` when the server
    /// advertises that extension.
    ///
    /// Returns `Ok(None)` for v1 and when the server sent no extensions. `payment_id` is ignored
    /// when the extension is not advertised (the spec appends it only on declaration).
    ///
    /// # Errors
    ///
    /// `X402_PAYMENT_ID_INVALID` for a malformed `payment_id`, `X402_PAYMENT_ID_MISSING` when the
    /// server requires one and `payment_id` is `None`, `X402_EXTENSIONS_MALFORMED` when the
    /// declaration's `info` is not an object or already carries an `id` (the echo may add to the
    /// server's info but not overwrite it).
    pub fn extensions_echo(&self, payment_id: Option<&str>) -> Result<Option<Value>, WireError> {
        if self.version == X402Version::V1 {
            return Ok(None);
        }
        let support = self.payment_identifier();
        let Some(extensions) = &self.extensions else {
            return Ok(None);
        };
        let mut echo = extensions.clone();
        match (support, payment_id) {
            (PaymentIdentifierSupport::NotOffered, _)
            | (PaymentIdentifierSupport::Optional, None) => {}
            (PaymentIdentifierSupport::Required, None) => return Err(WireError::PaymentIdMissing),
            (_, Some(id)) => {
                validate_payment_id(id)?;
                let Some(Value::Object(extension)) = echo.get_mut(PAYMENT_IDENTIFIER) else {
                    return Err(WireError::ExtensionsMalformed {
                        detail: "payment-identifier declaration vanished".to_owned(),
                    });
                };
                let info = extension
                    .entry("info")
                    .or_insert_with(|| Value::Object(payment_id_info(false)));
                let Value::Object(info) = info else {
                    return Err(WireError::ExtensionsMalformed {
                        detail: "payment-identifier `info` is not an object".to_owned(),
                    });
                };
                if info.contains_key("id") {
                    return Err(WireError::ExtensionsMalformed {
                        detail: "the server's payment-identifier `info` already has an `id`"
                            .to_owned(),
                    });
                }
                info.insert("id".to_owned(), Value::String(id.to_owned()));
            }
        }
        Ok(Some(echo))
    }
}

/// EIP-3009 `TransferWithAuthorization` parameters of an `exact` EVM payment, as on the wire
/// (all strings; field order as in the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExactEvmAuthorization {
    /// Payer address.
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// Amount in atomic units, decimal.
    pub value: String,
    /// Unix time (decimal seconds) after which the authorization is valid.
    pub valid_after: String,
    /// Unix time (decimal seconds) before which the authorization is valid.
    pub valid_before: String,
    /// 32-byte nonce, `0x`-prefixed hex.
    pub nonce: String,
}

/// The `payload` of an `exact` EVM payment: the EIP-712 signature and what it authorizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExactEvmPayload {
    /// EIP-712 signature, `0x`-prefixed hex.
    pub signature: String,
    /// The signed authorization.
    pub authorization: ExactEvmAuthorization,
}

/// A server's report on settling a payment (`SettlementResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementResponse {
    /// Whether settlement succeeded.
    pub success: bool,
    /// Why settlement failed (`errorReason`), if given.
    pub error_reason: Option<String>,
    /// Payer address, if given.
    pub payer: Option<String>,
    /// Transaction hash; empty when settlement failed.
    pub transaction: String,
    /// Network as written.
    pub network: String,
    /// Amount actually settled in atomic units, if given (decimal digits, checked).
    pub amount: Option<String>,
    /// `extensions` object, if given and not null.
    pub extensions: Option<Value>,
}

/// Why an x402 message was refused. Each variant has a stable
/// [`reason_code`](Self::reason_code); [`all_reason_codes`] lists them all.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A header value is empty.
    #[error("x402 header value is empty")]
    HeaderEmpty,
    /// A header value, or what it decodes to, is too large.
    #[error("x402 header value is {len} bytes; at most {max} are accepted")]
    HeaderTooLarge {
        /// Size found (base64 text or decoded bytes).
        len: usize,
        /// Limit applied to that size.
        max: usize,
    },
    /// A header value contains whitespace.
    #[error("x402 header value contains whitespace at byte offset {offset}")]
    HeaderWhitespace {
        /// Offset of the first whitespace byte.
        offset: usize,
    },
    /// A header value uses the URL-safe base64 alphabet.
    #[error(
        "x402 header value uses the URL-safe base64 alphabet ({byte:?} at byte offset {offset}); standard base64 is required"
    )]
    HeaderUrlSafeBase64 {
        /// Offset of the first `-` or `_`.
        offset: usize,
        /// The byte found.
        byte: char,
    },
    /// A header value lacks its `=` padding.
    #[error("x402 header value is base64 without its `=` padding")]
    HeaderBase64Unpadded,
    /// The last base64 symbol carries non-zero bits that decode to nothing (non-canonical).
    #[error("x402 header value has non-zero trailing bits in the base64 symbol at offset {offset}")]
    HeaderBase64TrailingBits {
        /// Offset of the offending symbol.
        offset: usize,
    },
    /// Any other base64 error.
    #[error("x402 header value is not standard base64: {detail}")]
    HeaderBase64 {
        /// What is wrong.
        detail: String,
    },
    /// A 402 body or MCP text is too large.
    #[error("x402 {context} is {len} bytes; at most {max} are accepted")]
    BodyTooLarge {
        /// Which carrier.
        context: &'static str,
        /// Size found.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The carrier is not strict JSON.
    #[error("x402 {context} is not strict JSON: {source}")]
    Json {
        /// Which carrier.
        context: &'static str,
        /// The strict reader's refusal.
        #[source]
        source: StrictJsonError,
    },
    /// `x402Version` is absent.
    #[error("x402 {context} has no x402Version")]
    VersionMissing {
        /// Which carrier.
        context: &'static str,
    },
    /// `x402Version` is not a supported version.
    #[error("x402Version {found} is not supported (1 and 2 are)")]
    VersionUnsupported {
        /// The value found, as JSON (shortened).
        found: String,
    },
    /// Two carriers, or a carrier and its content, disagree on the version.
    #[error("x402 version conflict: {detail}")]
    VersionConflict {
        /// What disagrees.
        detail: String,
    },
    /// A 402 body claims version 2, which is only carried in the `PAYMENT-REQUIRED` header.
    #[error("x402 402 body claims x402Version 2 but there is no PAYMENT-REQUIRED header")]
    V2RequiresHeader,
    /// The payment request object is malformed.
    #[error("x402 payment request is malformed: {detail}")]
    PaymentRequiredMalformed {
        /// What is wrong.
        detail: String,
    },
    /// The v2 `resource` is missing or malformed.
    #[error("x402 v2 resource is malformed: {detail}")]
    ResourceMalformed {
        /// What is wrong.
        detail: String,
    },
    /// `accepts` is empty.
    #[error("x402 payment request offers no requirements (accepts is empty)")]
    NoRequirements,
    /// `accepts` is too long.
    #[error("x402 payment request offers {count} requirements; at most {max} are accepted")]
    TooManyRequirements {
        /// Number offered.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// An offered requirement is malformed.
    #[error("x402 requirement accepts[{index}] is malformed: {detail}")]
    RequirementMalformed {
        /// Position in `accepts`.
        index: usize,
        /// What is wrong.
        detail: String,
    },
    /// An amount is not a JSON string.
    #[error("x402 requirement accepts[{index}].{field} is not a JSON string")]
    AmountNotString {
        /// Position in `accepts`.
        index: usize,
        /// `amount` or `maxAmountRequired`.
        field: &'static str,
    },
    /// An amount is not decimal digits without leading zeros.
    #[error(
        "x402 requirement accepts[{index}].{field} {amount:?} is not an integer in base units (decimal digits, no leading zeros)"
    )]
    AmountNotInteger {
        /// Position in `accepts`.
        index: usize,
        /// `amount` or `maxAmountRequired`.
        field: &'static str,
        /// The amount (shortened).
        amount: String,
    },
    /// An amount exceeds 2^256 − 1.
    #[error("x402 requirement accepts[{index}].{field} exceeds 2^256-1")]
    AmountOutOfRange {
        /// Position in `accepts`.
        index: usize,
        /// `amount` or `maxAmountRequired`.
        field: &'static str,
    },
    /// The chosen requirement is not one of the payment request's offers.
    #[error("the chosen requirement is not one of the offered requirements")]
    RequirementNotOffered,
    /// An `extensions` value is malformed or cannot take the client's echo.
    #[error("x402 extensions are malformed: {detail}")]
    ExtensionsMalformed {
        /// What is wrong.
        detail: String,
    },
    /// Extensions were given for a v1 payment, which has none.
    #[error("x402 v1 payments carry no extensions")]
    ExtensionsOnV1,
    /// The settlement response is malformed.
    #[error("x402 settlement response is malformed: {detail}")]
    SettlementMalformed {
        /// What is wrong.
        detail: String,
    },
    /// Both a v2 and a v1 settlement header are present.
    #[error("both PAYMENT-RESPONSE and X-PAYMENT-RESPONSE headers are present")]
    SettlementConflict,
    /// An agent's own request carries a payment.
    #[error("the agent's request carries an x402 payment ({detail}); only the gateway pays")]
    AgentPayment {
        /// Where the payment was found.
        detail: String,
    },
    /// A payment identifier has the wrong length or characters.
    #[error("payment identifier is invalid: {detail}")]
    PaymentIdInvalid {
        /// What is wrong.
        detail: String,
    },
    /// The server requires a payment identifier and none was given.
    #[error("the server requires a payment identifier and none was given")]
    PaymentIdMissing,
}

/// Every reason code [`WireError::reason_code`] can return, each once.
const REASON_CODES: &[&str] = &[
    "X402_HEADER_EMPTY",
    "X402_HEADER_TOO_LARGE",
    "X402_HEADER_WHITESPACE",
    "X402_HEADER_URL_SAFE_BASE64",
    "X402_HEADER_BASE64_UNPADDED",
    "X402_HEADER_BASE64_TRAILING_BITS",
    "X402_HEADER_BASE64",
    "X402_BODY_TOO_LARGE",
    "X402_MALFORMED_JSON",
    "X402_JSON_DUPLICATE_KEY",
    "X402_JSON_INTEGER_OUT_OF_RANGE",
    "X402_VERSION_MISSING",
    "X402_VERSION_UNSUPPORTED",
    "X402_VERSION_CONFLICT",
    "X402_V2_REQUIRES_HEADER",
    "X402_PAYMENT_REQUIRED_MALFORMED",
    "X402_RESOURCE_MALFORMED",
    "X402_NO_REQUIREMENTS",
    "X402_TOO_MANY_REQUIREMENTS",
    "X402_REQUIREMENT_MALFORMED",
    "X402_AMOUNT_NOT_STRING",
    "X402_AMOUNT_NOT_INTEGER",
    "X402_AMOUNT_OUT_OF_RANGE",
    "X402_REQUIREMENT_NOT_OFFERED",
    "X402_EXTENSIONS_MALFORMED",
    "X402_EXTENSIONS_ON_V1",
    "X402_SETTLEMENT_MALFORMED",
    "X402_SETTLEMENT_CONFLICT",
    "X402_AGENT_PAYMENT",
    "X402_PAYMENT_ID_INVALID",
    "X402_PAYMENT_ID_MISSING",
];

impl WireError {
    /// Stable machine-readable reason code, prefixed `X402_`.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::HeaderEmpty => "X402_HEADER_EMPTY",
            Self::HeaderTooLarge { .. } => "X402_HEADER_TOO_LARGE",
            Self::HeaderWhitespace { .. } => "X402_HEADER_WHITESPACE",
            Self::HeaderUrlSafeBase64 { .. } => "X402_HEADER_URL_SAFE_BASE64",
            Self::HeaderBase64Unpadded => "X402_HEADER_BASE64_UNPADDED",
            Self::HeaderBase64TrailingBits { .. } => "X402_HEADER_BASE64_TRAILING_BITS",
            Self::HeaderBase64 { .. } => "X402_HEADER_BASE64",
            Self::BodyTooLarge { .. } => "X402_BODY_TOO_LARGE",
            Self::Json { source, .. } => match source {
                StrictJsonError::DuplicateKey { .. } => "X402_JSON_DUPLICATE_KEY",
                StrictJsonError::IntegerOutOfRange { .. } => "X402_JSON_INTEGER_OUT_OF_RANGE",
                _ => "X402_MALFORMED_JSON",
            },
            Self::VersionMissing { .. } => "X402_VERSION_MISSING",
            Self::VersionUnsupported { .. } => "X402_VERSION_UNSUPPORTED",
            Self::VersionConflict { .. } => "X402_VERSION_CONFLICT",
            Self::V2RequiresHeader => "X402_V2_REQUIRES_HEADER",
            Self::PaymentRequiredMalformed { .. } => "X402_PAYMENT_REQUIRED_MALFORMED",
            Self::ResourceMalformed { .. } => "X402_RESOURCE_MALFORMED",
            Self::NoRequirements => "X402_NO_REQUIREMENTS",
            Self::TooManyRequirements { .. } => "X402_TOO_MANY_REQUIREMENTS",
            Self::RequirementMalformed { .. } => "X402_REQUIREMENT_MALFORMED",
            Self::AmountNotString { .. } => "X402_AMOUNT_NOT_STRING",
            Self::AmountNotInteger { .. } => "X402_AMOUNT_NOT_INTEGER",
            Self::AmountOutOfRange { .. } => "X402_AMOUNT_OUT_OF_RANGE",
            Self::RequirementNotOffered => "X402_REQUIREMENT_NOT_OFFERED",
            Self::ExtensionsMalformed { .. } => "X402_EXTENSIONS_MALFORMED",
            Self::ExtensionsOnV1 => "X402_EXTENSIONS_ON_V1",
            Self::SettlementMalformed { .. } => "X402_SETTLEMENT_MALFORMED",
            Self::SettlementConflict => "X402_SETTLEMENT_CONFLICT",
            Self::AgentPayment { .. } => "X402_AGENT_PAYMENT",
            Self::PaymentIdInvalid { .. } => "X402_PAYMENT_ID_INVALID",
            Self::PaymentIdMissing => "X402_PAYMENT_ID_MISSING",
        }
    }
}

/// Every reason code a [`WireError`] can carry, each once (for checking the documentation).
pub fn all_reason_codes() -> &'static [&'static str] {
    REASON_CODES
}

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/// Decodes an x402 header value: standard base64 with `=` padding, nothing else.
///
/// The result is the raw JSON bytes (not yet parsed).
///
/// # Errors
///
/// `X402_HEADER_EMPTY`, `X402_HEADER_TOO_LARGE` (more than [`MAX_HEADER_BASE64_BYTES`] of text
/// or [`MAX_HEADER_JSON_BYTES`] decoded), `X402_HEADER_WHITESPACE`,
/// `X402_HEADER_URL_SAFE_BASE64`, `X402_HEADER_BASE64_UNPADDED`,
/// `X402_HEADER_BASE64_TRAILING_BITS`, or `X402_HEADER_BASE64` for any other defect.
pub fn decode_header_json(value: &[u8]) -> Result<Vec<u8>, WireError> {
    if value.is_empty() {
        return Err(WireError::HeaderEmpty);
    }
    if value.len() > MAX_HEADER_BASE64_BYTES {
        return Err(WireError::HeaderTooLarge {
            len: value.len(),
            max: MAX_HEADER_BASE64_BYTES,
        });
    }
    for (offset, &byte) in value.iter().enumerate() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => {}
            b'-' | b'_' => {
                return Err(WireError::HeaderUrlSafeBase64 {
                    offset,
                    byte: char::from(byte),
                });
            }
            b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => {
                return Err(WireError::HeaderWhitespace { offset });
            }
            other => {
                return Err(WireError::HeaderBase64 {
                    detail: format!(
                        "byte 0x{other:02x} at offset {offset} is not in the base64 alphabet"
                    ),
                });
            }
        }
    }
    let symbols = value.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let padding = value.len() - symbols;
    if let Some(offset) = value[..symbols].iter().position(|&b| b == b'=') {
        return Err(WireError::HeaderBase64 {
            detail: format!("padding `=` at offset {offset} is not at the end"),
        });
    }
    if padding > 2 || (padding > 0 && !value.len().is_multiple_of(4)) {
        return Err(WireError::HeaderBase64 {
            detail: format!("{padding} padding characters do not complete the last quad"),
        });
    }
    match symbols % 4 {
        1 => {
            return Err(WireError::HeaderBase64 {
                detail: format!("{symbols} symbols is not a possible base64 length"),
            });
        }
        2 | 3 if padding == 0 => return Err(WireError::HeaderBase64Unpadded),
        _ => {}
    }
    let decoded = STANDARD.decode(value).map_err(|err| match err {
        base64::DecodeError::InvalidLastSymbol { offset, .. } => {
            WireError::HeaderBase64TrailingBits { offset }
        }
        base64::DecodeError::InvalidPadding => WireError::HeaderBase64Unpadded,
        other => WireError::HeaderBase64 {
            detail: other.to_string(),
        },
    })?;
    if decoded.len() > MAX_HEADER_JSON_BYTES {
        return Err(WireError::HeaderTooLarge {
            len: decoded.len(),
            max: MAX_HEADER_JSON_BYTES,
        });
    }
    Ok(decoded)
}

/// Encodes JSON bytes as an x402 header value: standard base64 with `=` padding.
pub fn encode_header_json(json: &[u8]) -> String {
    STANDARD.encode(json)
}

// ---------------------------------------------------------------------------------------------
// Payment request
// ---------------------------------------------------------------------------------------------

/// Which carrier a payment request came in; decides the versions allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Carrier {
    /// `PAYMENT-REQUIRED` header: v2 only.
    Header,
    /// 402 body without the header: v1 only.
    Body,
    /// MCP tool result: either version.
    Mcp,
}

impl Carrier {
    fn context(self) -> &'static str {
        match self {
            Self::Header => "PAYMENT-REQUIRED header",
            Self::Body => "402 response body",
            Self::Mcp => "MCP tool result",
        }
    }
}

/// The original JSON text of the parts echoed back in a payment.
#[derive(Deserialize)]
struct RawParts {
    #[serde(default)]
    accepts: Vec<Box<RawValue>>,
    #[serde(default)]
    resource: Option<Box<RawValue>>,
}

/// The payment request of an HTTP 402 response: v2 from the `PAYMENT-REQUIRED` header when
/// present, else the v1 body. A v2 header together with a body claiming `x402Version` 1 is a
/// conflict error.
///
/// With the header, the body is only inspected for such a claim: a body that is not JSON (or
/// JSON without `x402Version`) is the server's own business and is ignored; a body that claims
/// any `x402Version` other than 2 is `X402_VERSION_CONFLICT`; a body that is ambiguous JSON
/// (duplicate keys, …) and mentions `x402Version` is refused with the strict reader's code.
///
/// # Errors
///
/// Any header decoding code, the JSON codes, `X402_BODY_TOO_LARGE`, the version codes
/// (`X402_VERSION_CONFLICT` also for a v1 object in the v2 header, `X402_V2_REQUIRES_HEADER` for
/// a v2 body without the header), and the payment request and requirement codes.
pub fn payment_required_from_http(
    payment_required_header: Option<&[u8]>,
    body: &[u8],
) -> Result<PaymentRequired, WireError> {
    match payment_required_header {
        Some(header) => {
            let json = decode_header_json(header)?;
            let required = parse_payment_required(&json, Carrier::Header)?;
            check_body_agrees_with_v2_header(body)?;
            Ok(required)
        }
        None => {
            if body.len() > MAX_BODY_JSON_BYTES {
                return Err(WireError::BodyTooLarge {
                    context: Carrier::Body.context(),
                    len: body.len(),
                    max: MAX_BODY_JSON_BYTES,
                });
            }
            parse_payment_required(body, Carrier::Body)
        }
    }
}

/// Refuses a 402 body that contradicts the v2 header it came with.
fn check_body_agrees_with_v2_header(body: &[u8]) -> Result<(), WireError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let claimed = match strict_json::parse(body) {
        Ok(value) => value,
        Err(source) => {
            // Not strict JSON. Ignore it unless some reader would see an x402 claim in it.
            let lenient: Option<Value> = serde_json::from_slice(body).ok();
            if lenient
                .as_ref()
                .and_then(Value::as_object)
                .is_some_and(|object| object.contains_key("x402Version"))
            {
                return Err(WireError::Json {
                    context: Carrier::Body.context(),
                    source,
                });
            }
            return Ok(());
        }
    };
    match claimed.get("x402Version") {
        None => Ok(()),
        Some(version) if version.as_u64() == Some(2) => Ok(()),
        Some(version) => Err(WireError::VersionConflict {
            detail: format!(
                "the PAYMENT-REQUIRED header is x402 v2 but the 402 body claims x402Version {}",
                quote(&version.to_string())
            ),
        }),
    }
}

/// From an MCP `tools/call` result (the JSON-RPC `result` member): `Ok(None)` when the result is
/// not a payment request (not `isError: true`, or no `x402Version` + `accepts`), `Ok(Some)` when
/// it is, `Err` when it claims to be one but is malformed.
///
/// `structuredContent` is preferred; `content[0].text` (a `text` item) is parsed as strict JSON
/// only when `structuredContent` does not carry the request. Since `structuredContent` arrives
/// already parsed, the [`Requirement::raw`] text of its offers is their re-serialization (same
/// values, keys possibly reordered); from `content[0].text` it is the original text.
///
/// # Errors
///
/// The JSON codes (for a text that is ambiguous JSON carrying `x402Version` and `accepts`),
/// `X402_BODY_TOO_LARGE`, the version codes and the payment request and requirement codes.
pub fn payment_required_from_mcp_result(
    result: &Value,
) -> Result<Option<PaymentRequired>, WireError> {
    let Some(result) = result.as_object() else {
        return Ok(None);
    };
    if result.get("isError") != Some(&Value::Bool(true)) {
        return Ok(None);
    }
    if let Some(structured) = result.get("structuredContent")
        && claims_payment_required(structured)
    {
        let json =
            serde_json::to_vec(structured).map_err(|err| WireError::PaymentRequiredMalformed {
                detail: format!("structuredContent cannot be serialized: {err}"),
            })?;
        return parse_mcp_json(&json).map(Some);
    }
    let Some(text) = result
        .get("content")
        .and_then(Value::as_array)
        .and_then(|content| content.first())
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("text"))
        .and_then(|item| item.get("text"))
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    match strict_json::parse(text.as_bytes()) {
        Ok(value) if claims_payment_required(&value) => parse_mcp_json(text.as_bytes()).map(Some),
        Ok(_) => Ok(None),
        Err(source) => {
            let lenient: Option<Value> = serde_json::from_str(text).ok();
            if lenient.as_ref().is_some_and(claims_payment_required) {
                Err(WireError::Json {
                    context: Carrier::Mcp.context(),
                    source,
                })
            } else {
                Ok(None)
            }
        }
    }
}

/// Whether `value` presents itself as a payment request (an object with both `x402Version` and
/// `accepts`).
fn claims_payment_required(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|object| object.contains_key("x402Version") && object.contains_key("accepts"))
}

fn parse_mcp_json(json: &[u8]) -> Result<PaymentRequired, WireError> {
    if json.len() > MAX_BODY_JSON_BYTES {
        return Err(WireError::BodyTooLarge {
            context: Carrier::Mcp.context(),
            len: json.len(),
            max: MAX_BODY_JSON_BYTES,
        });
    }
    parse_payment_required(json, Carrier::Mcp)
}

/// Reads a payment request from JSON text that arrived by `carrier`.
fn parse_payment_required(json: &[u8], carrier: Carrier) -> Result<PaymentRequired, WireError> {
    let context = carrier.context();
    let value = strict_json::parse(json).map_err(|source| WireError::Json { context, source })?;
    let Some(object) = value.as_object() else {
        return Err(WireError::PaymentRequiredMalformed {
            detail: format!("the {context} is not a JSON object"),
        });
    };
    let version = read_version(object, context)?;
    match (carrier, version) {
        (Carrier::Header, X402Version::V1) => {
            return Err(WireError::VersionConflict {
                detail: "the PAYMENT-REQUIRED header (x402 v2) carries x402Version 1".to_owned(),
            });
        }
        (Carrier::Body, X402Version::V2) => return Err(WireError::V2RequiresHeader),
        _ => {}
    }
    let error =
        optional_string(object, "error").map_err(|detail| WireError::PaymentRequiredMalformed {
            detail: format!("`error` {detail}"),
        })?;
    let offers = match object.get("accepts") {
        Some(Value::Array(offers)) => offers,
        Some(_) => {
            return Err(WireError::PaymentRequiredMalformed {
                detail: "`accepts` is not an array".to_owned(),
            });
        }
        None => {
            return Err(WireError::PaymentRequiredMalformed {
                detail: "`accepts` is missing".to_owned(),
            });
        }
    };
    if offers.is_empty() {
        return Err(WireError::NoRequirements);
    }
    if offers.len() > MAX_REQUIREMENTS {
        return Err(WireError::TooManyRequirements {
            count: offers.len(),
            max: MAX_REQUIREMENTS,
        });
    }
    let raw_parts: RawParts =
        serde_json::from_slice(json).map_err(|err| WireError::PaymentRequiredMalformed {
            detail: format!("cannot capture the original text: {err}"),
        })?;
    if raw_parts.accepts.len() != offers.len() {
        return Err(WireError::PaymentRequiredMalformed {
            detail: "the original text of `accepts` does not match its parsed value".to_owned(),
        });
    }
    let accepts = offers
        .iter()
        .zip(raw_parts.accepts)
        .enumerate()
        .map(|(index, (offer, raw))| parse_requirement(index, version, offer, raw))
        .collect::<Result<Vec<_>, _>>()?;

    let (resource, resource_url, extensions) = match version {
        X402Version::V1 => (None, None, None),
        X402Version::V2 => {
            let url = read_resource_info(object.get("resource"))?;
            let raw = raw_parts
                .resource
                .ok_or_else(|| WireError::ResourceMalformed {
                    detail: "`resource` is missing".to_owned(),
                })?;
            let extensions = match object.get("extensions") {
                None | Some(Value::Null) => None,
                Some(extensions @ Value::Object(_)) => Some(extensions.clone()),
                Some(_) => {
                    return Err(WireError::ExtensionsMalformed {
                        detail: "`extensions` is not an object".to_owned(),
                    });
                }
            };
            (Some(raw), Some(url), extensions)
        }
    };
    Ok(PaymentRequired {
        version,
        error,
        resource,
        resource_url,
        accepts,
        extensions,
    })
}

/// Reads `x402Version`.
fn read_version(
    object: &Map<String, Value>,
    context: &'static str,
) -> Result<X402Version, WireError> {
    let found = object
        .get("x402Version")
        .ok_or(WireError::VersionMissing { context })?;
    found
        .as_u64()
        .and_then(X402Version::from_number)
        .ok_or_else(|| WireError::VersionUnsupported {
            found: quote(&found.to_string()),
        })
}

/// Checks the v2 ResourceInfo and returns its `url`.
fn read_resource_info(resource: Option<&Value>) -> Result<String, WireError> {
    let malformed = |detail: &str| WireError::ResourceMalformed {
        detail: detail.to_owned(),
    };
    let resource = match resource {
        Some(Value::Object(resource)) => resource,
        Some(_) => return Err(malformed("`resource` is not an object")),
        None => return Err(malformed("`resource` is missing")),
    };
    let url = match resource.get("url") {
        Some(Value::String(url)) => url.clone(),
        Some(_) => return Err(malformed("`resource.url` is not a string")),
        None => return Err(malformed("`resource.url` is missing")),
    };
    for field in ["description", "mimeType"] {
        optional_string(resource, field).map_err(|detail| WireError::ResourceMalformed {
            detail: format!("`resource.{field}` {detail}"),
        })?;
    }
    Ok(url)
}

/// Reads one offered requirement; `raw` is its original text.
fn parse_requirement(
    index: usize,
    version: X402Version,
    offer: &Value,
    raw: Box<RawValue>,
) -> Result<Requirement, WireError> {
    let malformed = |detail: String| WireError::RequirementMalformed { index, detail };
    let Some(object) = offer.as_object() else {
        return Err(malformed("not a JSON object".to_owned()));
    };
    let required_string = |field: &str| -> Result<String, WireError> {
        match object.get(field) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(malformed(format!("`{field}` is not a string"))),
            None => Err(malformed(format!("`{field}` is missing"))),
        }
    };
    let scheme = required_string("scheme")?;
    let network = required_string("network")?;
    let asset = required_string("asset")?;
    let pay_to = required_string("payTo")?;

    let amount_field = match version {
        X402Version::V1 => "maxAmountRequired",
        X402Version::V2 => "amount",
    };
    let amount = match object.get(amount_field) {
        Some(Value::String(amount)) => amount.clone(),
        Some(_) => {
            return Err(WireError::AmountNotString {
                index,
                field: amount_field,
            });
        }
        None => return Err(malformed(format!("`{amount_field}` is missing"))),
    };
    check_amount(&amount).map_err(|problem| match problem {
        AmountProblem::NotInteger => WireError::AmountNotInteger {
            index,
            field: amount_field,
            amount: quote(&amount),
        },
        AmountProblem::OutOfRange => WireError::AmountOutOfRange {
            index,
            field: amount_field,
        },
    })?;

    let max_timeout_seconds = match object.get("maxTimeoutSeconds") {
        Some(seconds) => seconds.as_u64().ok_or_else(|| {
            malformed("`maxTimeoutSeconds` is not a non-negative integer".to_owned())
        })?,
        None => return Err(malformed("`maxTimeoutSeconds` is missing".to_owned())),
    };
    let extra = optional_object(object, "extra")
        .map_err(|detail| malformed(format!("`extra` {detail}")))?;

    let resource = match version {
        X402Version::V2 => None,
        X402Version::V1 => {
            let resource = required_string("resource")?;
            required_string("description")?;
            optional_string(object, "mimeType")
                .map_err(|detail| malformed(format!("`mimeType` {detail}")))?;
            optional_object(object, "outputSchema")
                .map_err(|detail| malformed(format!("`outputSchema` {detail}")))?;
            Some(resource)
        }
    };
    Ok(Requirement {
        raw,
        scheme,
        network,
        amount,
        asset,
        pay_to,
        max_timeout_seconds,
        extra,
        resource,
    })
}

/// An optional string field: absent or `null` is `None`; any other non-string is an error.
fn optional_string(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, &'static str> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err("is not a string"),
    }
}

/// An optional object field: absent or `null` is `None`; any other non-object is an error.
fn optional_object(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<Value>, &'static str> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Object(_)) => Ok(Some(value.clone())),
        Some(_) => Err("is not an object"),
    }
}

enum AmountProblem {
    NotInteger,
    OutOfRange,
}

/// An amount must be decimal digits without leading zeros (`"0"` itself is allowed) and fit an
/// EVM `uint256`.
fn check_amount(amount: &str) -> Result<(), AmountProblem> {
    let digits_only = !amount.is_empty() && amount.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (amount.len() > 1 && amount.starts_with('0')) {
        return Err(AmountProblem::NotInteger);
    }
    let too_long = amount.len() > U256_MAX_DECIMAL.len();
    let too_big = amount.len() == U256_MAX_DECIMAL.len() && amount > U256_MAX_DECIMAL;
    if too_long || too_big {
        return Err(AmountProblem::OutOfRange);
    }
    Ok(())
}

/// `text` cut to [`QUOTE_MAX_CHARS`] characters for an error message.
fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_MAX_CHARS {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(QUOTE_MAX_CHARS).collect();
        cut.push('…');
        cut
    }
}

// ---------------------------------------------------------------------------------------------
// Payment payload
// ---------------------------------------------------------------------------------------------

/// Compact JSON of the `PaymentPayload` for `required.version`:
/// v2 `{"x402Version":2,"resource":…,"accepted":…,"payload":…,"extensions":…}` with `resource`
/// and `accepted` copied verbatim from the original text of `required.resource` and `chosen`;
/// v1 `{"x402Version":1,"scheme":…,"network":…,"payload":…}`. Key order is that of the spec
/// examples; `resource` and `extensions` are left out when `None`.
///
/// The result is what goes, base64-encoded ([`encode_header_json`]), into the
/// `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1) header, or as the value of
/// `params._meta["x402/payment"]` in MCP.
///
/// # Errors
///
/// `X402_REQUIREMENT_NOT_OFFERED` when `chosen` is not one of `required.accepts` (compared by
/// original text), `X402_EXTENSIONS_ON_V1` for extensions on a v1 payment,
/// `X402_EXTENSIONS_MALFORMED` when `extensions` is not an object, `X402_PAYMENT_ID_INVALID`
/// when it carries a malformed payment identifier, `X402_PAYMENT_ID_MISSING` when the server
/// requires one and it carries none.
pub fn payment_payload_json(
    required: &PaymentRequired,
    chosen: &Requirement,
    payload: &ExactEvmPayload,
    extensions: Option<&Value>,
) -> Result<String, WireError> {
    if !required
        .accepts
        .iter()
        .any(|offer| offer.raw.get() == chosen.raw.get())
    {
        return Err(WireError::RequirementNotOffered);
    }
    let mut out = String::with_capacity(chosen.raw.get().len() + 1024);
    match required.version {
        X402Version::V1 => {
            if extensions.is_some() {
                return Err(WireError::ExtensionsOnV1);
            }
            out.push_str("{\"x402Version\":1,\"scheme\":");
            out.push_str(&json_string(&chosen.scheme));
            out.push_str(",\"network\":");
            out.push_str(&json_string(&chosen.network));
            out.push_str(",\"payload\":");
            push_exact_evm_payload(&mut out, payload);
        }
        X402Version::V2 => {
            let payment_id = match extensions {
                None => None,
                Some(Value::Object(extensions)) => payment_id_in(extensions)?,
                Some(_) => {
                    return Err(WireError::ExtensionsMalformed {
                        detail: "the payment's `extensions` is not an object".to_owned(),
                    });
                }
            };
            if required.payment_identifier() == PaymentIdentifierSupport::Required
                && payment_id.is_none()
            {
                return Err(WireError::PaymentIdMissing);
            }
            out.push_str("{\"x402Version\":2");
            if let Some(resource) = &required.resource {
                out.push_str(",\"resource\":");
                out.push_str(resource.get());
            }
            out.push_str(",\"accepted\":");
            out.push_str(chosen.raw.get());
            out.push_str(",\"payload\":");
            push_exact_evm_payload(&mut out, payload);
            if let Some(extensions) = extensions {
                out.push_str(",\"extensions\":");
                out.push_str(&extensions.to_string());
            }
        }
    }
    out.push('}');
    Ok(out)
}

/// The validated payment identifier in a payment's `extensions`, if it carries one.
fn payment_id_in(extensions: &Map<String, Value>) -> Result<Option<&str>, WireError> {
    let Some(extension) = extensions.get(PAYMENT_IDENTIFIER) else {
        return Ok(None);
    };
    match extension.get("info").and_then(|info| info.get("id")) {
        None => Ok(None),
        Some(Value::String(id)) => validate_payment_id(id).map(|()| Some(id.as_str())),
        Some(_) => Err(WireError::PaymentIdInvalid {
            detail: "`info.id` is not a string".to_owned(),
        }),
    }
}

/// Appends the compact JSON of `payload` (keys in spec order).
fn push_exact_evm_payload(out: &mut String, payload: &ExactEvmPayload) {
    let authorization = &payload.authorization;
    out.push_str("{\"signature\":");
    out.push_str(&json_string(&payload.signature));
    out.push_str(",\"authorization\":{\"from\":");
    out.push_str(&json_string(&authorization.from));
    out.push_str(",\"to\":");
    out.push_str(&json_string(&authorization.to));
    out.push_str(",\"value\":");
    out.push_str(&json_string(&authorization.value));
    out.push_str(",\"validAfter\":");
    out.push_str(&json_string(&authorization.valid_after));
    out.push_str(",\"validBefore\":");
    out.push_str(&json_string(&authorization.valid_before));
    out.push_str(",\"nonce\":");
    out.push_str(&json_string(&authorization.nonce));
    out.push_str("}}");
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

// ---------------------------------------------------------------------------------------------
// payment-identifier extension
// ---------------------------------------------------------------------------------------------

/// Checks a payment identifier: 16 to 128 characters, each ASCII alphanumeric, `-` or `_`.
///
/// # Errors
///
/// `X402_PAYMENT_ID_INVALID`.
pub fn validate_payment_id(id: &str) -> Result<(), WireError> {
    if !(PAYMENT_ID_MIN_LEN..=PAYMENT_ID_MAX_LEN).contains(&id.len()) {
        return Err(WireError::PaymentIdInvalid {
            detail: format!(
                "length {} is outside {PAYMENT_ID_MIN_LEN}..={PAYMENT_ID_MAX_LEN}",
                id.len()
            ),
        });
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(WireError::PaymentIdInvalid {
            detail: format!("character {bad:?} is not alphanumeric, `-` or `_`"),
        });
    }
    Ok(())
}

/// The JSON Schema of the payment-identifier `info`, exactly as the extension's specification
/// writes it (`required` boolean, `id` string of 16–128 characters; the character rule is not
/// part of the spec's schema but is checked by [`validate_payment_id`]).
pub fn payment_identifier_schema() -> Value {
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "required": { "type": "boolean" },
            "id": {
                "type": "string",
                "minLength": PAYMENT_ID_MIN_LEN,
                "maxLength": PAYMENT_ID_MAX_LEN
            }
        },
        "required": ["required"]
    })
}

fn payment_id_info(required: bool) -> Map<String, Value> {
    let mut info = Map::new();
    info.insert("required".to_owned(), Value::Bool(required));
    info
}

/// The client's `extensions` object carrying payment identifier `id`, built from the extension's
/// own declaration: `{"payment-identifier": {"schema": …, "info": {"required": false, "id": id}}}`
/// (the spec's example echo).
///
/// When the server's declaration is at hand, [`PaymentRequired::extensions_echo`] is the
/// faithful echo: it keeps the server's schema, `required` flag and other extensions.
///
/// # Errors
///
/// `X402_PAYMENT_ID_INVALID` when `id` is not 16–128 of `[A-Za-z0-9_-]`.
pub fn payment_identifier_extension(id: &str) -> Result<Value, WireError> {
    validate_payment_id(id)?;
    let mut info = payment_id_info(false);
    info.insert("id".to_owned(), Value::String(id.to_owned()));
    let mut extension = Map::new();
    extension.insert("schema".to_owned(), payment_identifier_schema());
    extension.insert("info".to_owned(), Value::Object(info));
    let mut extensions = Map::new();
    extensions.insert(PAYMENT_IDENTIFIER.to_owned(), Value::Object(extension));
    Ok(Value::Object(extensions))
}

// ---------------------------------------------------------------------------------------------
// Settlement
// ---------------------------------------------------------------------------------------------

/// The settlement response from response headers (values of the lower-case names
/// `payment-response` and `x-payment-response`): v2 `PAYMENT-RESPONSE` or v1
/// `X-PAYMENT-RESPONSE`; both at once is a conflict error; neither is `Ok(None)`.
///
/// # Errors
///
/// `X402_SETTLEMENT_CONFLICT`, any header decoding code, the JSON codes,
/// `X402_SETTLEMENT_MALFORMED`.
pub fn settlement_from_http(
    payment_response: Option<&[u8]>,
    x_payment_response: Option<&[u8]>,
) -> Result<Option<SettlementResponse>, WireError> {
    let (header, context) = match (payment_response, x_payment_response) {
        (Some(_), Some(_)) => return Err(WireError::SettlementConflict),
        (None, None) => return Ok(None),
        (Some(header), None) => (header, "PAYMENT-RESPONSE header"),
        (None, Some(header)) => (header, "X-PAYMENT-RESPONSE header"),
    };
    let json = decode_header_json(header)?;
    let value = strict_json::parse(&json).map_err(|source| WireError::Json { context, source })?;
    parse_settlement(&value).map(Some)
}

/// The settlement response in an MCP `tools/call` result (the JSON-RPC `result` member), read
/// from `_meta["x402/payment-response"]`; `Ok(None)` when absent.
///
/// # Errors
///
/// `X402_SETTLEMENT_MALFORMED`.
pub fn settlement_from_mcp_result(result: &Value) -> Result<Option<SettlementResponse>, WireError> {
    match result
        .get("_meta")
        .and_then(|meta| meta.get(MCP_META_PAYMENT_RESPONSE))
    {
        None => Ok(None),
        Some(settlement) => parse_settlement(settlement).map(Some),
    }
}

fn parse_settlement(value: &Value) -> Result<SettlementResponse, WireError> {
    let malformed = |detail: String| WireError::SettlementMalformed { detail };
    let Some(object) = value.as_object() else {
        return Err(malformed("not a JSON object".to_owned()));
    };
    let success = match object.get("success") {
        Some(Value::Bool(success)) => *success,
        Some(_) => return Err(malformed("`success` is not a boolean".to_owned())),
        None => return Err(malformed("`success` is missing".to_owned())),
    };
    let required_string = |field: &str| -> Result<String, WireError> {
        match object.get(field) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(malformed(format!("`{field}` is not a string"))),
            None => Err(malformed(format!("`{field}` is missing"))),
        }
    };
    let transaction = required_string("transaction")?;
    let network = required_string("network")?;
    let optional = |field: &str| {
        optional_string(object, field).map_err(|detail| malformed(format!("`{field}` {detail}")))
    };
    let error_reason = optional("errorReason")?;
    let payer = optional("payer")?;
    let amount = optional("amount")?;
    if let Some(amount) = &amount {
        check_amount(amount).map_err(|_| {
            malformed(format!(
                "`amount` {:?} is not an integer in base units",
                quote(amount)
            ))
        })?;
    }
    let extensions = optional_object(object, "extensions")
        .map_err(|detail| malformed(format!("`extensions` {detail}")))?;
    Ok(SettlementResponse {
        success,
        error_reason,
        payer,
        transaction,
        network,
        amount,
        extensions,
    })
}

// ---------------------------------------------------------------------------------------------
// Agent requests
// ---------------------------------------------------------------------------------------------

/// An agent's own request must carry no payment: `Err(X402_AGENT_PAYMENT)` if any of the given
/// header names is `payment-signature` or `x-payment` (compared ASCII case-insensitively); both
/// at once is the same error.
///
/// # Errors
///
/// `X402_AGENT_PAYMENT`.
pub fn refuse_agent_payment_headers<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), WireError> {
    for name in names {
        if name.eq_ignore_ascii_case(HEADER_PAYMENT_SIGNATURE)
            || name.eq_ignore_ascii_case(HEADER_X_PAYMENT)
        {
            return Err(WireError::AgentPayment {
                detail: format!("header `{}`", quote(name)),
            });
        }
    }
    Ok(())
}

/// An agent's own `tools/call` must carry no payment: `Err(X402_AGENT_PAYMENT)` when its
/// `params._meta` has the key `x402/payment` (whatever its value, `null` included).
///
/// # Errors
///
/// `X402_AGENT_PAYMENT`.
pub fn refuse_agent_payment_meta(params_meta: Option<&Value>) -> Result<(), WireError> {
    if params_meta
        .and_then(Value::as_object)
        .is_some_and(|meta| meta.contains_key(MCP_META_PAYMENT))
    {
        return Err(WireError::AgentPayment {
            detail: format!("`_meta[\"{MCP_META_PAYMENT}\"]`"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for code in all_reason_codes() {
            assert!(code.starts_with("X402_"), "{code}");
            assert!(seen.insert(*code), "{code} listed twice");
        }
    }

    #[test]
    fn amount_rules() {
        for good in ["0", "1", "10000", U256_MAX_DECIMAL] {
            assert!(check_amount(good).is_ok(), "{good}");
        }
        for bad in ["", "01", "00", "1.5", "-1", "+1", "1e3", " 1", "1 ", "０"] {
            assert!(
                matches!(check_amount(bad), Err(AmountProblem::NotInteger)),
                "{bad:?}"
            );
        }
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(matches!(check_amount(over), Err(AmountProblem::OutOfRange)));
        let longer = format!("1{U256_MAX_DECIMAL}");
        assert!(matches!(
            check_amount(&longer),
            Err(AmountProblem::OutOfRange)
        ));
    }

    #[test]
    fn exact_evm_payload_writer_matches_serde() {
        let payload = ExactEvmPayload {
            signature: "0x\"sig\\".to_owned(),
            authorization: ExactEvmAuthorization {
                from: "a".to_owned(),
                to: "b\u{1}".to_owned(),
                value: "1".to_owned(),
                valid_after: "2".to_owned(),
                valid_before: "3".to_owned(),
                nonce: "é".to_owned(),
            },
        };
        let mut written = String::new();
        push_exact_evm_payload(&mut written, &payload);
        assert_eq!(
            Ok(written),
            serde_json::to_string(&payload).map_err(|e| e.to_string())
        );
    }

    #[test]
    fn quote_shortens_long_text() {
        let long = "x".repeat(100);
        assert_eq!(quote(&long).chars().count(), QUOTE_MAX_CHARS + 1);
        assert_eq!(quote("short"), "short");
    }
}
