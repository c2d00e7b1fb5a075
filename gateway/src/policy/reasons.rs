//! The stable reason codes a decision carries, each with the sentence that tells the agent's
//! operator what to change. Codes are part of the wire contract: never rename one; add new ones.

/// Every built-in reason code with its remediation sentence (documented in `policies/README.md`).
pub const REASONS: &[(&str, &str)] = &[
    (
        "WITHIN_POLICY",
        "Nothing to change: the call fits every rule of the profile.",
    ),
    (
        "ROUTE_LOW_RISK",
        "Nothing to change: the profile marks this route low risk, so it passes untouched.",
    ),
    (
        "TOOL_UNCLASSIFIED",
        "Add a route for this server and tool (or host and path) to the profile with a risk class; unclassified calls are denied.",
    ),
    (
        "AGENT_UNKNOWN",
        "Add the agent to [[subjects]] with its tenant, or call with a known agent identity.",
    ),
    (
        "AGENT_NOT_ALLOWED_ON_ROUTE",
        "Add the agent to this route's `agents` list, or use a route it is allowed on.",
    ),
    (
        "SESSION_NOT_ALLOWED",
        "Run the agent in a session its subject's `sessions` globs allow, or widen them.",
    ),
    (
        "PAYMENT_TERMS_MISSING",
        "Send the amount where the route's `payment.amount` pointer looks (or pay through x402 terms), as integer base units.",
    ),
    (
        "AMOUNT_BELOW_MINIMUM",
        "Raise the amount to at least the [[amounts]] minimum for this asset.",
    ),
    (
        "AMOUNT_ABOVE_MAXIMUM",
        "Lower the amount to the [[amounts]] maximum for this asset, or raise the maximum.",
    ),
    (
        "ASSET_DENIED",
        "Pay with another asset: this one is on the deny list.",
    ),
    (
        "ASSET_NOT_ALLOWED",
        "Pay with an asset on the [assets] allow list, or add this one.",
    ),
    (
        "NETWORK_DENIED",
        "Pay on another network: this one is on the deny list.",
    ),
    (
        "NETWORK_NOT_ALLOWED",
        "Pay on a network on the [networks] allow list, or add this one.",
    ),
    (
        "PAYEE_DENIED",
        "This payee is on the deny list; pay someone else.",
    ),
    (
        "PAYEE_NOT_ALLOWED",
        "Add the payee to the [payees] allow list, or pay an allowed payee.",
    ),
    (
        "PAYEE_FIRST_TIME",
        "This agent has never paid this payee: approve the first payment, or set payees.first_time.",
    ),
    (
        "BUDGET_HOURLY_EXCEEDED",
        "Wait for the next UTC hour, lower the amount, or raise the hourly budget.",
    ),
    (
        "BUDGET_DAILY_EXCEEDED",
        "Wait for the next UTC day, lower the amount, or raise the daily budget.",
    ),
    (
        "BUDGET_MONTHLY_EXCEEDED",
        "Wait for the next UTC month, lower the amount, or raise the monthly budget.",
    ),
    (
        "BUDGET_ROLLING_EXCEEDED",
        "Wait until earlier spending leaves the rolling window, lower the amount, or raise the budget.",
    ),
    (
        "VELOCITY_EXCEEDED",
        "Slow down: too many calls in the window; wait, or raise max_calls.",
    ),
    (
        "OUTSIDE_HOURS",
        "Call within the profile's daily hours (UTC), or widen [schedule] from/until.",
    ),
    (
        "WEEKDAY_NOT_ALLOWED",
        "Call on a weekday the profile allows, or add this day to [schedule] weekdays.",
    ),
    (
        "PROFILE_NOT_YET_VALID",
        "The profile's valid_from date has not come; wait, or move the date.",
    ),
    (
        "PROFILE_EXPIRED",
        "The profile's valid_until date has passed; renew the profile.",
    ),
    (
        "AMOUNT_NEEDS_APPROVAL",
        "Amounts above the challenge threshold need approval by the quorum of approvers.",
    ),
    (
        "POLICY_EVALUATION_ERROR",
        "A policy could not be evaluated, so the call was denied (fail closed); check custom Cedar policies and the call's data.",
    ),
    (
        "NOT_PERMITTED",
        "No rule permits this call; check the route's risk class and the agent's subject.",
    ),
    (
        "CUSTOM_POLICY_DENIED",
        "A custom Cedar policy of the profile forbids this call; see its policy id.",
    ),
    // Refusals by the relay and the daemon, before or around the policy.
    (
        "TOOL_NOT_LISTED",
        "The upstream never listed this tool: list the tools (tools/list) first; calls to tools the server does not advertise are refused.",
    ),
    (
        "TOOL_DEFINITION_CHANGED",
        "The tool's definition changed since it was pinned: review it with `trustos routes` and accept it with `trustos approve --tool SERVER/TOOL`.",
    ),
    (
        "TOOL_NEW_UNAPPROVED",
        "The tool appeared after the server's first listing: review it with `trustos routes` and accept it with `trustos approve --tool SERVER/TOOL`.",
    ),
    (
        "TOOL_RISK_RAISED",
        "The upstream marks this tool destructive but the profile classifies it low risk: give it a high or paid route so it is decided.",
    ),
    (
        "BUDGET_CONTENDED",
        "Another call took the budget between this decision and its commit; retry the call.",
    ),
    (
        "APPROVED",
        "Nothing to change: the profile's quorum of approvers approved this call.",
    ),
    (
        "APPROVAL_TIMEOUT",
        "No quorum of approvers answered in time; ask an approver to run `trustos approve DECISION_ID --key KEY` while the call is held, or raise hold_timeout_seconds.",
    ),
    (
        "APPROVAL_REJECTED",
        "An approver rejected this call; change the call or ask the approver.",
    ),
    (
        "HOLD_CANCELLED",
        "The host cancelled this call while it was held; nothing ran.",
    ),
    (
        "HOLD_UNKNOWN",
        "No call is held under this decision id; `trustos approve --list` shows the held calls.",
    ),
    (
        "GATEWAY_UNAVAILABLE",
        "The Trust OS daemon could not decide, so the call was refused (fail closed); check `trustos serve` and $TRUSTOS_HOME/logs/daemon.log.",
    ),
    (
        "MCP_NOT_INITIALIZED",
        "Send initialize and wait for its result before any other request (or name protocol 2026-07-28 in the request's _meta).",
    ),
    (
        "MCP_ALREADY_INITIALIZED",
        "initialize was already sent on this connection; start a new connection to initialize again.",
    ),
    (
        "MCP_DUPLICATE_ID",
        "A request with this id is still in flight; use a new id for each request.",
    ),
    (
        "MCP_METHOD_UNKNOWN",
        "The gateway forwards only the methods of the MCP specification, spelled exactly; check the method name.",
    ),
    (
        "MCP_BATCH_NOT_ALLOWED",
        "The negotiated protocol version forbids JSON-RPC batches; send one message at a time.",
    ),
    (
        "MCP_META_FORGED",
        "Remove io.trustos/* keys from _meta: only the gateway writes decisions and receipts.",
    ),
    (
        "MCP_INVALID_PARAMS",
        "Send tools/call params as an object with a string name and an object of arguments.",
    ),
    (
        "MCP_NOT_JSONRPC",
        "Send JSON-RPC 2.0 messages: jsonrpc \"2.0\", a method or a result/error, an id that is a string or an integer.",
    ),
    ("MCP_EMPTY_BATCH", "Send at least one message."),
    (
        "MCP_MESSAGE_TOO_LARGE",
        "Messages are limited to 16 MiB; send less in one call.",
    ),
    (
        "MCP_UPSTREAM_CLOSED",
        "The upstream MCP server exited or closed the connection; check its command and its stderr.",
    ),
    (
        "MCP_UPSTREAM_FAILED",
        "The upstream MCP server could not be reached or failed; check its URL or command.",
    ),
    (
        "MCP_UPSTREAM_UNREADABLE",
        "The upstream answered with JSON two parsers could read differently (duplicate keys, invalid UTF-8, a BOM); fix the server.",
    ),
    ("JSON_BOM", "Send JSON without a byte order mark."),
    ("JSON_INVALID_UTF8", "Send valid UTF-8."),
    (
        "JSON_LONE_SURROGATE",
        "Send strings without lone UTF-16 surrogate escapes.",
    ),
    (
        "JSON_DUPLICATE_KEY",
        "Send each object key once: two parsers could read a repeated key differently.",
    ),
    (
        "JSON_INTEGER_OUT_OF_RANGE",
        "Send integers within ±(2^53−1), or as strings.",
    ),
    (
        "JSON_TRAILING_BYTES",
        "Send exactly one JSON value per message.",
    ),
    ("JSON_TOO_DEEP", "Nest arrays and objects at most 100 deep."),
    ("JSON_SYNTAX", "Send valid JSON."),
    (
        "APPROVAL_INVALID",
        "Sign the approval with an operator key listed under [approvers] in gateway.toml (`trustos approve DECISION_ID --key KEY`).",
    ),
    (
        "APPROVAL_FINGERPRINT_MISMATCH",
        "The approval names another request than the held call; approve the decision id `trustos approve --list` shows.",
    ),
    (
        "APPROVER_NOT_LISTED",
        "Approve with the key of a name the profile's [challenge] approvers list, or add the name there.",
    ),
    (
        "APPROVER_IS_INITIATOR",
        "The agent that made the call never counts toward its own approval; ask another approver.",
    ),
    (
        "TOOL_APPROVAL_REFUSED",
        "Name a tool that is waiting for approval (`trustos routes` shows pin changed or new) as SERVER/TOOL.",
    ),
    (
        "GATEWAY_ERROR",
        "The daemon failed while deciding; the call was refused (fail closed). See $TRUSTOS_HOME/logs/daemon.log.",
    ),
    (
        "CONTROL_INVALID",
        "Send control requests as one JSON object per line, as `trustos` does.",
    ),
    ("CONTROL_TOO_LARGE", "Send control requests under 32 MiB."),
    (
        "CONTROL_ENCODING",
        "The daemon could not encode its answer; report it with the daemon log.",
    ),
    (
        "HTTP_BODY_NOT_ALLOWED",
        "The route takes no body (GET /healthz): send the request without one.",
    ),
    (
        "HTTP_UNAUTHORIZED",
        "Send `Authorization: Bearer TOKEN` with a token whose SHA-256 is listed under [[tokens]] in gateway.toml.",
    ),
    (
        "HTTP_TOKEN_NOT_ALLOWED",
        "This token may not reach this server; add the server to the token's `servers` list, or use another token.",
    ),
    (
        "HTTP_ORIGIN_NOT_ALLOWED",
        "Call from an origin listed in gateway.toml's allowed_origins (or without an Origin header).",
    ),
    (
        "HTTP_NOT_FOUND",
        "Use /mcp/NAME with NAME a server configured under [servers] in gateway.toml.",
    ),
    (
        "HTTP_METHOD_NOT_ALLOWED",
        "Use POST for messages, GET for the event stream, DELETE to end a session.",
    ),
    (
        "HTTP_NOT_ACCEPTABLE",
        "Accept application/json or text/event-stream.",
    ),
    (
        "HTTP_UNSUPPORTED_MEDIA_TYPE",
        "Send the body as Content-Type: application/json.",
    ),
    (
        "HTTP_BODY_UNREADABLE",
        "Send a complete body of at most 16 MiB.",
    ),
    (
        "HTTP_BODY_TIMEOUT",
        "Send the request body within 60 seconds.",
    ),
    (
        "HTTP_TOO_MANY_SESSIONS",
        "Close sessions you no longer use (DELETE /mcp/NAME) or wait for idle ones to end.",
    ),
    (
        "MCP_SESSION_REQUIRED",
        "Send initialize first, then its Mcp-Session-Id on every later request (or speak 2026-07-28, which has no sessions).",
    ),
    (
        "MCP_SESSION_UNKNOWN",
        "The session ended or belongs to another token; initialize a new one.",
    ),
    (
        "MCP_PROTOCOL_VERSION_UNSUPPORTED",
        "Send an MCP-Protocol-Version the gateway speaks: 2025-03-26, 2025-06-18, 2025-11-25 or 2026-07-28.",
    ),
    (
        "MCP_HEADER_MISMATCH",
        "Send Mcp-Method (and Mcp-Name for tools/call, prompts/get, resources/read) equal to the body, and the protocol version header.",
    ),
    (
        "MCP_CALL_TIMEOUT",
        "The upstream did not answer within call_timeout_seconds; check the server, or raise the timeout in gateway.toml.",
    ),
    (
        "HTTP_URL_INVALID",
        "Send a valid http(s) URL: RFC 3986 characters only, percent-encoding as % and two hex digits, no spaces or control characters.",
    ),
    (
        "HTTP_URL_TOO_LONG",
        "Send URLs of at most 16 KiB; move large data into the request body.",
    ),
    ("HTTP_URL_SCHEME", "Use an http:// or https:// URL."),
    (
        "HTTP_URL_HOST",
        "Name the host with letters, digits, '-' and '.' (an internationalized name in its xn-- form), a dotted-decimal IPv4 address or a bracketed IPv6 address, without a trailing dot.",
    ),
    ("HTTP_URL_PORT", "Use a port between 1 and 65535."),
    (
        "HTTP_URL_USERINFO",
        "Remove user:password@ from the URL; send credentials in a header.",
    ),
    (
        "HTTP_URL_FRAGMENT",
        "Remove the #fragment from the URL: it is never sent to a server.",
    ),
    (
        "HTTP_URL_NON_ASCII",
        "Percent-encode non-ASCII characters as UTF-8, and write an internationalized host name in its xn-- form.",
    ),
    (
        "HTTP_URL_BACKSLASH",
        "Remove the backslash from the URL: servers disagree on whether it separates path segments.",
    ),
    (
        "HTTP_URL_ESCAPES_BASE",
        "Remove the .. segments that climb above the upstream's base path (or above the root); call a path under the base.",
    ),
    (
        "HTTP_URL_ENCODED_SEPARATOR",
        "Do not percent-encode a slash or a backslash inside a path segment (%2F, %5C): servers disagree on whether it separates segments.",
    ),
    (
        "HTTP_URL_ENCODED_DOT_SEGMENT",
        "Write . and .. path segments plainly, without percent-encoding or a ; parameter (%2E%2E, ..;): servers disagree on whether they climb.",
    ),
    (
        "HTTP_BODY_INVALID_JSON",
        "Send a body that is strict JSON when Content-Type says JSON (no duplicate keys, integers within 2^53), or send another Content-Type.",
    ),
    (
        "HTTP_TRUST_HEADER_FORGED",
        "Remove Trust-* headers from the request: the gateway alone writes them.",
    ),
    (
        "HTTP_ROUTING_OVERRIDE",
        "Remove X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override, X-HTTP-Method and X-Method-Override from the request: some servers route by them, so the request run would not be the one decided. Send the method and path you mean.",
    ),
    (
        "HTTP_UPSTREAM_FAILED",
        "The upstream API could not be reached or did not answer; check [http.NAME].url and the API's health, then retry.",
    ),
    (
        "PAYMENT_NOT_ALLOWED",
        "The policy did not allow this payment (shadow mode passes the call, but money never moves without an allow); see the decision's reasons.",
    ),
    (
        "PAYMENT_TERMS_MISMATCH",
        "The terms about to be signed differ from the ones the decision binds; nothing was paid. Retry the request so it is decided afresh.",
    ),
    (
        "PAYMENT_DECISION_NOT_IN_FORCE",
        "The decision expired (or its signature failed) before payment; nothing was paid. Retry the request, or raise decision_ttl_seconds.",
    ),
    (
        "PAYMENT_ALREADY_AUTHORIZED",
        "This decision already authorized a payment, and one decision never pays twice; reconcile the earlier attempt instead of retrying it.",
    ),
    (
        "PAYMENT_REPLAY",
        "The replay set already holds this authorization; nothing new was signed. Retry the request so it is decided afresh.",
    ),
    (
        "PAYMENT_LEDGER_UNAVAILABLE",
        "The gateway could not record the payment attempt, so it paid nothing; check the store (disk space, permissions) and retry.",
    ),
    (
        "PAYMENT_INTERNAL",
        "The gateway could not prepare the payment and paid nothing; see the daemon log.",
    ),
    (
        "PAYMENT_LEDGER_UNREADABLE",
        "The payment attempts could not be read from the store (a store error, or a record this version of trustos does not understand); nothing was changed. See the daemon log, and read the ledger with the trustos version that wrote it.",
    ),
    (
        "X402_NOT_CONFIGURED",
        "The API asked for payment but the gateway has no x402 payer: add an [x402] table with key_file or key_env to gateway.toml.",
    ),
    (
        "X402_AGENT_PAYMENT",
        "Remove PAYMENT-SIGNATURE / X-PAYMENT headers and _meta[\"x402/payment\"] from the agent's request: the gateway pays, agents never do.",
    ),
    (
        "X402_NO_ACCEPTABLE_REQUIREMENT",
        "No offer of the server fits the profile; see each offer's reason in the decision, and widen [assets], [networks], [payees] or [[amounts]] if the payment is wanted.",
    ),
    (
        "X402_SCHEME_UNSUPPORTED",
        "The server offers only schemes the gateway does not sign; the gateway pays with x402 exact on EVM.",
    ),
    (
        "X402_NETWORK_UNKNOWN",
        "The server offers a network the gateway does not know; it pays on EVM networks named in CAIP-2 (eip155:N) or by their x402 v1 names.",
    ),
    (
        "X402_NETWORK_NOT_ALLOWED",
        "Add the network to [networks] allow (and remove it from deny) in the profile if this payment is wanted.",
    ),
    (
        "X402_ASSET_INVALID",
        "The server's asset is not a valid EVM address; the API is misconfigured.",
    ),
    (
        "X402_ASSET_UNKNOWN",
        "The offered token is not a known asset on that network; add it under [[x402.assets]] in gateway.toml if it is genuine.",
    ),
    (
        "X402_ASSET_NOT_ALLOWED",
        "Add the asset's symbol to [assets] allow (and remove it from deny) in the profile if this payment is wanted.",
    ),
    (
        "X402_ASSET_DOMAIN_MISMATCH",
        "The offer's EIP-712 name or version differs from the token's; the API is misconfigured or impersonating the token.",
    ),
    (
        "X402_PAYTO_INVALID",
        "The server's payTo is not a valid EVM address (a mixed-case address must carry a correct EIP-55 checksum).",
    ),
    (
        "X402_PAYTO_DENIED",
        "The payee is on the profile's [payees] deny list.",
    ),
    (
        "X402_PAYTO_NOT_ALLOWED",
        "Add the payee to [payees] allow in the profile if this payment is wanted.",
    ),
    (
        "X402_AMOUNT_TOO_LARGE",
        "The offered amount does not fit 128 bits; the API is misconfigured.",
    ),
    (
        "X402_AMOUNT_ZERO",
        "The server asked for a payment of zero; the gateway signs no empty authorizations.",
    ),
    (
        "X402_AMOUNT_ABOVE_POLICY",
        "The price is above the profile's [[amounts]] maximum for this asset; raise the maximum if the payment is wanted.",
    ),
    (
        "X402_TIMEOUT_INVALID",
        "The offer's maxTimeoutSeconds is zero; the API is misconfigured.",
    ),
    (
        "X402_RESOURCE_MISSING",
        "The payment request names no resource; the API is misconfigured.",
    ),
    (
        "X402_OUTCOME_UNKNOWN",
        "The paid request got no readable answer, so whether money moved is unknown; it is recorded and will not be paid twice. Reconcile before retrying.",
    ),
    (
        "X402_PAYMENT_REJECTED",
        "The server answered 402 again after payment; nothing more is signed. Check the API's facilitator, then retry (a new decision).",
    ),
    (
        "X402_SETTLEMENT_FAILED",
        "The server reported that settlement failed; nothing moved by its account, and the authorization is recorded until it expires.",
    ),
    (
        "X402_HEADER_REPEATED",
        "The server sent an x402 header more than once; readers would disagree on which counts, so it is refused (a repeated settlement header leaves the outcome unknown).",
    ),
    (
        "X402_HEADER_EMPTY",
        "The x402 header is empty; the API or client is misconfigured.",
    ),
    (
        "X402_HEADER_TOO_LARGE",
        "The x402 header is larger than 64 KiB once decoded; the API is misconfigured.",
    ),
    (
        "X402_HEADER_WHITESPACE",
        "x402 headers are base64 without whitespace or line breaks.",
    ),
    (
        "X402_HEADER_URL_SAFE_BASE64",
        "x402 headers use the standard base64 alphabet (+ and /), not the URL-safe one.",
    ),
    (
        "X402_HEADER_BASE64_UNPADDED",
        "x402 headers are padded base64: add the trailing '='.",
    ),
    (
        "X402_HEADER_BASE64_TRAILING_BITS",
        "x402 headers must be canonical base64 (unused bits zero).",
    ),
    ("X402_HEADER_BASE64", "The x402 header is not valid base64."),
    (
        "X402_BODY_TOO_LARGE",
        "The 402 body is larger than 1 MiB; the API is misconfigured.",
    ),
    ("X402_MALFORMED_JSON", "The x402 object is not valid JSON."),
    (
        "X402_JSON_DUPLICATE_KEY",
        "The x402 object repeats a key; readers would disagree on its value, so it is refused.",
    ),
    (
        "X402_JSON_INTEGER_OUT_OF_RANGE",
        "The x402 object has an integer beyond 2^53; send amounts as strings.",
    ),
    (
        "X402_VERSION_MISSING",
        "The x402 object has no x402Version.",
    ),
    (
        "X402_VERSION_UNSUPPORTED",
        "The gateway speaks x402 versions 1 and 2.",
    ),
    (
        "X402_VERSION_CONFLICT",
        "The answer mixes x402 v1 and v2 (a v2 header with a v1 body, or both settlement headers); the API is misconfigured.",
    ),
    (
        "X402_V2_REQUIRES_HEADER",
        "An x402 v2 payment request travels in the PAYMENT-REQUIRED header, not the body.",
    ),
    (
        "X402_PAYMENT_REQUIRED_MALFORMED",
        "The payment request lacks a required member or has one of the wrong type; see the x402 specification.",
    ),
    (
        "X402_RESOURCE_MALFORMED",
        "The payment request's resource must be an object with a string url.",
    ),
    (
        "X402_NO_REQUIREMENTS",
        "The payment request offers no way to pay (accepts is empty).",
    ),
    (
        "X402_TOO_MANY_REQUIREMENTS",
        "The payment request offers more than 64 ways to pay.",
    ),
    (
        "X402_REQUIREMENT_MALFORMED",
        "An offered requirement lacks a required member or has one of the wrong type.",
    ),
    (
        "X402_AMOUNT_NOT_STRING",
        "x402 amounts are strings of base units, not JSON numbers.",
    ),
    (
        "X402_AMOUNT_NOT_INTEGER",
        "x402 amounts are integers in base units: digits only, no sign, fraction or leading zero.",
    ),
    (
        "X402_AMOUNT_OUT_OF_RANGE",
        "The amount does not fit uint256.",
    ),
    (
        "X402_REQUIREMENT_NOT_OFFERED",
        "The accepted requirement must be one the server offered, byte for byte.",
    ),
    (
        "X402_EXTENSIONS_MALFORMED",
        "x402 extensions are an object of {info, schema} objects.",
    ),
    ("X402_EXTENSIONS_ON_V1", "x402 v1 has no extensions."),
    (
        "X402_SETTLEMENT_MALFORMED",
        "The settlement response is not a valid SettlementResponse; the payment's outcome is treated as unknown.",
    ),
    (
        "X402_SETTLEMENT_CONFLICT",
        "The answer carries both PAYMENT-RESPONSE and X-PAYMENT-RESPONSE; the payment's outcome is treated as unknown.",
    ),
    (
        "X402_PAYMENT_ID_INVALID",
        "A payment-identifier id is 16 to 128 characters of letters, digits, '_' and '-'.",
    ),
    (
        "X402_PAYMENT_ID_MISSING",
        "The server requires a payment-identifier id and none was given.",
    ),
    (
        "X402_SIGNER_KEY_INVALID",
        "The [x402] payer key must be 64 hex digits (optionally 0x) of a valid secp256k1 secret key.",
    ),
    (
        "X402_SIGNER_NOT_PAYER",
        "The authorization's payer is not the gateway's key; nothing was signed.",
    ),
    (
        "X402_SIGNING_FAILED",
        "The payer key could not produce a valid signature; nothing was sent.",
    ),
    (
        "X402_SIGNATURE_MALFORMED",
        "An EVM signature is 65 bytes r||s||v with v 27 or 28 and r, s in range.",
    ),
    (
        "X402_SIGNATURE_HIGH_S",
        "The signature's s is in the upper half of the curve order; use the low-s form.",
    ),
    (
        "X402_SIGNATURE_UNRECOVERABLE",
        "No public key recovers from this signature.",
    ),
    (
        "X402_ADDRESS_INVALID",
        "An EVM address is 0x and 40 hex digits.",
    ),
    (
        "X402_ADDRESS_CHECKSUM",
        "A mixed-case EVM address must carry a correct EIP-55 checksum; check it for typos.",
    ),
    (
        "CIRCLE_NOT_CONFIGURED",
        "The gateway has no Circle rail: add a [circle] table (api_key_file or api_key_env, entity_secret_file or entity_secret_env, wallet_id, [[circle.tokens]]) to gateway.toml and restart trustos serve.",
    ),
    (
        "CIRCLE_REQUEST_INVALID",
        "Send the transfer as one JSON object: {\"destination\", \"amount\", \"asset\", \"network\", \"resource\"}.",
    ),
    (
        "CIRCLE_REQUEST_UNKNOWN_FIELD",
        "Send only destination, amount, asset, network and resource; the gateway chooses the wallet, token id and fees itself.",
    ),
    (
        "CIRCLE_REQUEST_FIELD_MISSING",
        "Send all of destination, amount, asset, network and resource.",
    ),
    (
        "CIRCLE_REQUEST_FIELD_INVALID",
        "Send destination, amount, asset, network and resource as non-empty JSON strings.",
    ),
    (
        "CIRCLE_REQUEST_TOO_LARGE",
        "Send Circle transfer requests and webhooks of at most 64 KiB.",
    ),
    (
        "CIRCLE_AMOUNT_NOT_STRING",
        "Send amount as a string of integer base units (\"1500000\" is 1.5 USDC), not a JSON number.",
    ),
    (
        "CIRCLE_AMOUNT_NOT_INTEGER",
        "Send amount in integer base units of the token: digits only, no decimal point, sign or leading zero (\"1500000\" is 1.5 USDC).",
    ),
    (
        "CIRCLE_AMOUNT_OUT_OF_RANGE",
        "The amount is too large to be a token amount; check its units.",
    ),
    (
        "CIRCLE_SCHEME_NOT_ALLOWED",
        "The Circle adapter was asked to send under a scheme it may not use; nothing was sent. Report it with the daemon log.",
    ),
    (
        "CIRCLE_NETWORK_NOT_ALLOWED",
        "The profile does not allow this network; add it to [networks] allow (and remove it from deny) if the transfer is wanted.",
    ),
    (
        "CIRCLE_ASSET_UNKNOWN",
        "No [[circle.tokens]] entry in gateway.toml has this network and asset; add the token (network, asset, token_id, decimals) or ask for a configured one.",
    ),
    (
        "CIRCLE_ASSET_NOT_ALLOWED",
        "The profile does not allow this asset; add it to [assets] allow (and remove it from deny) if the transfer is wanted.",
    ),
    (
        "CIRCLE_TOKEN_MISMATCH",
        "The token id or decimals differ from the [[circle.tokens]] entry for this network and asset; nothing was sent. Check the entry.",
    ),
    (
        "CIRCLE_WALLET_MISSING",
        "Set [circle].wallet_id in gateway.toml to the developer-controlled wallet transfers are sent from.",
    ),
    (
        "CIRCLE_PAYTO_INVALID",
        "Send the destination as the recipient's address, without spaces or control characters.",
    ),
    (
        "CIRCLE_PAYTO_DENIED",
        "The profile's [payees] deny list names this destination; send to another payee.",
    ),
    (
        "CIRCLE_PAYTO_NOT_ALLOWED",
        "The profile's [payees] allow list does not name this destination; add it there if the transfer is wanted.",
    ),
    ("CIRCLE_AMOUNT_ZERO", "Send an amount above zero."),
    (
        "CIRCLE_AMOUNT_ABOVE_POLICY",
        "The amount is above the profile's [[amounts]] max for this asset; send less, or raise the max if the transfer is wanted.",
    ),
    (
        "CIRCLE_RESOURCE_MISSING",
        "Name what the transfer pays for in resource.",
    ),
    (
        "CIRCLE_OUTCOME_UNKNOWN",
        "Circle's answer was lost, so the transfer may or may not exist; the budget stays reserved. Run trustos payments, which asks Circle by the decision id; never send the same transfer again before it shows settled or failed.",
    ),
    (
        "CIRCLE_TRANSFER_REFUSED",
        "Circle refused to create the transfer and nothing was sent; check the wallet's balance, the token id and the destination, then retry.",
    ),
    (
        "CIRCLE_LOOKUP_FAILED",
        "Circle could not be asked about the transfer; the record is unchanged. Check connectivity to [circle].base_url and run trustos payments again.",
    ),
    (
        "CIRCLE_TRANSFER_FAILED",
        "Circle reports the transfer FAILED: nothing moved and the budget was released; see the error reason, fix it (balance, gas, destination) and send a new request.",
    ),
    (
        "CIRCLE_TRANSFER_DENIED",
        "Circle's risk screening DENIED the transfer: nothing moved and the budget was released; check the destination with Circle before trying again.",
    ),
    (
        "CIRCLE_TRANSFER_CANCELLED",
        "The transfer was CANCELLED at Circle: nothing moved and the budget was released; send a new request if it is still wanted.",
    ),
    (
        "CIRCLE_TRANSFER_PENDING",
        "Circle has the transfer but it reached no final state within answer_timeout_seconds; the budget stays reserved. Watch it with trustos payments; a webhook or reconciliation records the outcome.",
    ),
    (
        "CIRCLE_TRANSFER_IN_DOUBT",
        "An equal transfer (same wallet, token, destination and amount) is still in doubt; wait until trustos payments shows it settled or failed before asking again, so nothing is paid twice.",
    ),
    (
        "CIRCLE_WEBHOOK_HEADERS_MISSING",
        "Circle webhooks carry X-Circle-Signature and X-Circle-Key-Id; point only Circle's notification subscription at /webhooks/circle.",
    ),
    (
        "CIRCLE_WEBHOOK_KEY_UNKNOWN",
        "Circle knows no notification key with this X-Circle-Key-Id: the notification was not sent by Circle for this API key's account, so it was ignored.",
    ),
    (
        "CIRCLE_WEBHOOK_KEY_UNAVAILABLE",
        "The notification key could not be fetched from Circle; nothing was recorded and Circle will retry. Check connectivity to [circle].base_url.",
    ),
    (
        "CIRCLE_WEBHOOK_KEY_RATE_LIMITED",
        "A notification named a key id not seen before, right after one Circle did not know: it was not looked up and nothing was recorded; Circle redelivers genuine notifications. Many of these mean someone is sending forged webhooks to /webhooks/circle.",
    ),
    (
        "CIRCLE_WEBHOOK_KEY_INVALID",
        "The notification public key is not an ECDSA P-256 key; nothing was recorded. Report it with the daemon log.",
    ),
    (
        "CIRCLE_WEBHOOK_SIGNATURE_INVALID",
        "The webhook's X-Circle-Signature does not verify over the body: it was not sent by Circle, or was changed on the way; nothing was recorded.",
    ),
    (
        "CIRCLE_WEBHOOK_SIGNATURE_MALFORMED",
        "X-Circle-Signature must be base64 of a DER ECDSA P-256 signature; nothing was recorded.",
    ),
    (
        "CIRCLE_WEBHOOK_BODY_INVALID",
        "The webhook body is not a JSON notification; nothing was recorded.",
    ),
    (
        "CIRCLE_WEBHOOK_NOTIFICATION_ID_INVALID",
        "A notification's notificationId must be printable ASCII of at most 128 characters; nothing was recorded.",
    ),
    (
        "CIRCLE_WEBHOOK_DUPLICATE",
        "Nothing to change: this notification was already processed (Circle redelivers).",
    ),
    (
        "CIRCLE_WEBHOOK_TEST",
        "Nothing to change: Circle's test notification reached the gateway.",
    ),
    (
        "CIRCLE_WEBHOOK_IGNORED",
        "Nothing to change: the notification is not about a transfer of this gateway.",
    ),
    (
        "CIRCLE_WEBHOOK_APPLIED",
        "Nothing to change: the notification's state was recorded.",
    ),
    (
        "CIRCLE_TRANSACTION_STATE_UNKNOWN",
        "Circle reported a transaction state this version does not know; it was ignored and the transfer stays as it was. Upgrade trustos, and check the transfer with trustos payments.",
    ),
    (
        "CIRCLE_API_KEY_MALFORMED",
        "The [circle] API key must be TEST_API_KEY:ID:SECRET or LIVE_API_KEY:ID:SECRET, as Circle's console shows it.",
    ),
    (
        "CIRCLE_API_KEY_WRONG_ENVIRONMENT",
        "The API key belongs to another environment than [circle].environment: use a TEST_API_KEY key for testnet and a LIVE_API_KEY key for mainnet, or change environment.",
    ),
    (
        "CIRCLE_ENTITY_SECRET_LENGTH",
        "The entity secret is 64 hex digits (32 bytes, openssl rand -hex 32), registered with Circle.",
    ),
    (
        "CIRCLE_ENTITY_SECRET_MALFORMED",
        "The entity secret is 64 hex digits only: no 0x, spaces or other characters.",
    ),
    (
        "CIRCLE_SECRET_FILE_PERMISSIONS",
        "A Circle secret file must be readable by its owner only: chmod 600 it.",
    ),
    (
        "CIRCLE_SECRET_FILE_UNREADABLE",
        "The Circle secret file named in [circle] cannot be read; check the path (relative to $TRUSTOS_HOME) and its owner.",
    ),
    (
        "CIRCLE_SECRET_ENV_MISSING",
        "Set the environment variable [circle] names (api_key_env or entity_secret_env) for trustos serve.",
    ),
    (
        "CIRCLE_CLIENT_CONFIG",
        "Set [circle].base_url to an https:// URL (http:// only to a loopback host) without a query or user info.",
    ),
    (
        "CIRCLE_HTTP",
        "Circle could not be reached; check connectivity to [circle].base_url.",
    ),
    (
        "CIRCLE_TIMEOUT",
        "Circle did not answer in time; check connectivity to [circle].base_url, then reconcile with trustos payments.",
    ),
    (
        "CIRCLE_UNAUTHORIZED",
        "Circle refused the API key; check [circle]'s api key and its environment in Circle's console.",
    ),
    (
        "CIRCLE_IDEMPOTENCY_CONFLICT",
        "Circle already saw this decision's idempotency key with another request; the outcome is treated as unknown. Reconcile with trustos payments.",
    ),
    (
        "CIRCLE_CIPHERTEXT_REUSED",
        "Circle refused a reused entity secret ciphertext; the gateway makes a fresh one per request, so retry, and report it if it persists.",
    ),
    (
        "CIRCLE_API_ERROR",
        "Circle answered with an error; see the message and Circle's error codes, fix the request or the wallet, then retry.",
    ),
    (
        "CIRCLE_RESPONSE_MALFORMED",
        "Circle's answer was not what its API documents; the outcome is treated as unknown. Reconcile with trustos payments and report it.",
    ),
    (
        "CIRCLE_PUBLIC_KEY_INVALID",
        "Circle's entity public key could not be read as an RSA key; nothing was sent. Check [circle].base_url points at Circle.",
    ),
    (
        "CIRCLE_CIPHERTEXT_FAILED",
        "The entity secret ciphertext could not be made; nothing was sent. Retry, and report it if it persists.",
    ),
    (
        "CIRCLE_AMOUNT_TOO_PRECISE",
        "The amount has more decimals than the token; send integer base units of the token.",
    ),
    (
        "CIRCLE_AMOUNT_MALFORMED",
        "A Circle amount is a decimal string such as 1.5; Circle's answer or the stored transfer is malformed.",
    ),
    (
        "CIRCLE_SIGN_FAILED",
        "Circle did not sign the message with the wallet (refused, unreachable or an unknown wallet); nothing was paid. Check [circle].wallet_id and connectivity.",
    ),
    (
        "CIRCLE_SIGNATURE_INVALID",
        "Circle answered a signature that is not the wallet's signature of exactly this message; nothing was paid. Report it.",
    ),
    (
        "CIRCLE_SIGN_OUTCOME_UNKNOWN",
        "Circle gave no usable answer to a signing request, so it may have signed; nothing more is signed for this decision. Reconcile with trustos payments before retrying.",
    ),
    (
        "X402_CHAIN_NETWORK_UNKNOWN",
        "No chain RPC endpoint is configured for this network; add one to the gateway's chain configuration, or reconcile by hand.",
    ),
    (
        "X402_CHAIN_CONFIG_INVALID",
        "The chain RPC configuration is unusable (URL, network or TLS); fix it in gateway.toml.",
    ),
    (
        "X402_CHAIN_UNAVAILABLE",
        "The chain RPC node could not be reached or answered with an HTTP error; check the node, then reconcile again.",
    ),
    (
        "X402_CHAIN_TIMEOUT",
        "The chain RPC node did not answer in time; check the node, then reconcile again.",
    ),
    (
        "X402_CHAIN_MISMATCH",
        "The RPC node serves another chain than the network names; point the network at a node of that chain.",
    ),
    (
        "X402_CHAIN_ANSWER_INVALID",
        "The RPC node's answer is not a valid answer to the question; check the node, or use another.",
    ),
    (
        "X402_CHAIN_RPC_ERROR",
        "The RPC node answered with a JSON-RPC error; see the message and check the node.",
    ),
    (
        "X402_RECORD_MALFORMED",
        "A stored x402 payment attempt could not be read back; nothing was changed. See the daemon log.",
    ),
];

/// The remediation sentence of a reason code (custom `CUSTOM_*` codes get a generic one).
pub fn remediation(code: &str) -> &'static str {
    REASONS
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, sentence)| *sentence)
        .unwrap_or("A custom policy of the profile forbids this call; see its policy id and the profile's documentation.")
}

/// Whether `code` may be used by a custom Cedar policy.
pub fn is_custom_code(code: &str) -> bool {
    code.strip_prefix("CUSTOM_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_upper_snake_with_a_sentence() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, sentence) in REASONS {
            assert!(seen.insert(*code), "{code} twice");
            assert!(
                code.starts_with(|c: char| c.is_ascii_uppercase())
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
            assert!(sentence.ends_with('.'), "{code}");
        }
        assert!(is_custom_code("CUSTOM_X_1"));
        assert!(!is_custom_code("CUSTOM_"));
        assert!(!is_custom_code("BUDGET_DAILY_EXCEEDED"));
    }
}
