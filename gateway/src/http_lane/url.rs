//! One URL normalization for the HTTP lane, used both to route a request and to fingerprint it.
//!
//! [`normalize`] turns an absolute `http`/`https` URL into a [`NormalizedUrl`] by RFC 3986
//! syntax-based normalization (§6.2.2) plus the scheme-based rules of §6.2.3 for HTTP:
//!
//! - scheme and host lower-cased; an IPv6 literal written in its RFC 5952 form (`[::1]`);
//! - the default port (80 for http, 443 for https) and an empty port dropped;
//! - in the path, percent-encoded unreserved characters decoded (`%7E` → `~`, `%41` → `A`), every
//!   other percent-encoding kept with upper-case hex (`%2f` → `%2F`, `%25` stays), then
//!   dot-segments removed (§5.2.4); an empty path becomes `/`;
//! - the query kept byte for byte (parameter order can matter) except that percent-encoding hex
//!   is upper-cased; nothing in it is decoded.
//!
//! What two parsers could read differently is refused, each refusal with its own stable reason
//! code ([`UrlError::reason_code`], `HTTP_URL_*`): a fragment, userinfo, non-ASCII (an IDN host
//! must be written in its `xn--` form), control characters and spaces, a backslash, a host that
//! is percent-encoded or holds characters other than letters, digits, `-`, `_` and `.`, a host
//! whose last label is a number but that is not a dotted-decimal IPv4 address (`127.1`,
//! `0x7f.0.0.1`, `2130706433`: resolvers read those as addresses, RFC 3986 as names), a trailing
//! dot, IPv6 zone identifiers and IPvFuture literals, port 0 and ports above 65535, a path whose
//! `..` segments climb above the root (RFC 3986 clamps them, a naive server may not), and URLs
//! longer than [`MAX_URL_LEN`]. In the query, the characters browsers and `fetch` leave raw
//! (`[ ] { } | ^` and the backtick) are tolerated as they are; in the path they are refused.
//!
//! [`join_upstream`] appends the path and query an agent sent after `/http/NAME` to the
//! configured upstream base and requires the result to stay under the base path. Before joining
//! it refuses, in each segment of the agent's path, the classic proxy path-confusion bypasses:
//! a separator hidden by percent-encoding (`%2F`, `%5C`, also double-encoded as `%252F`) and a
//! dot-segment in disguise (`%2E%2E`, `.%2e`, `%252e%252e`, or Tomcat's `..;`). A literal `..`
//! is resolved, and refused when the result leaves the base.
//!
//! # Which parser
//!
//! The URL is parsed by [`fluent_uri`], a maintained RFC 3986 parser that is already in the
//! build (the JSON Schema validator uses it), so it costs no compile time. It follows the RFC
//! 3986 grammar strictly and its [`Normalizer`] implements the §6.2.2 path normalization, with
//! an option to refuse `..` above the root. The `url` crate was not chosen: it implements the
//! WHATWG URL standard, which normalizes differently from RFC 3986 (it rewrites `\` to `/` in
//! http URLs, reads `127.1` and `0x7f.1` as IPv4 addresses, percent-encodes instead of refusing,
//! and applies IDNA mapping, pulling the `idna` crate and its Unicode tables). `http::Uri`
//! (hyper's) only splits a URL: it normalizes nothing and silently drops a fragment. It is the
//! parser that finally sends the request, though, so every normalized URL is also read back by
//! it and must give the same scheme, host, port, path and query ([`NormalizedUrl::to_uri`]).

use std::fmt;
use std::net::Ipv6Addr;

use fluent_uri::Uri as RfcUri;
use fluent_uri::component::{Authority, Host};
use fluent_uri::normalize::Normalizer;
use hyper::Uri;

/// Longest URL accepted, in bytes (16 KiB).
pub const MAX_URL_LEN: usize = 16 * 1024;

/// How many layers of percent-encoding a path segment of [`join_upstream`] may carry before it
/// is refused (each layer is peeled to look for hidden separators and dot-segments).
const MAX_DECODE_PASSES: usize = 4;

/// An absolute `http`/`https` URL in normal form. Two URLs that normalize equal address the same
/// resource as far as RFC 3986 can tell; [`NormalizedUrl::as_string`] is the form that is both
/// fingerprinted and sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NormalizedUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host name, dotted-decimal IPv4 address, or bracketed IPv6 address (`[::1]`).
    pub host: String,
    /// The port, `None` when it is the scheme's default.
    pub port: Option<u16>,
    /// The path: starts with `/`, no dot-segments, unreserved characters decoded, other
    /// percent-encodings upper-case.
    pub path: String,
    /// The query without its `?`, as sent except for upper-case percent-encoding hex.
    pub query: Option<String>,
}

impl NormalizedUrl {
    /// The whole URL: `scheme://host[:port]path[?query]`.
    pub fn as_string(&self) -> String {
        let mut text = self.origin();
        text.push_str(&self.path);
        if let Some(query) = &self.query {
            text.push('?');
            text.push_str(query);
        }
        text
    }

    /// The origin: `scheme://host[:port]`, with no path.
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// The URL as hyper's [`Uri`], to send the request with. Refused with
    /// [`UrlError::Invalid`] when hyper would read any component differently (it never does for
    /// a URL that came out of [`normalize`]; [`normalize`] checks it).
    pub fn to_uri(&self) -> Result<Uri, UrlError> {
        let uri: Uri = self
            .as_string()
            .parse()
            .map_err(|_| UrlError::Invalid("the HTTP client cannot read it"))?;
        let same = uri.scheme_str() == Some(self.scheme.as_str())
            && uri.host() == Some(self.host.as_str())
            && uri.port_u16() == self.port
            && uri.path() == self.path
            && uri.query() == self.query.as_deref();
        if same {
            Ok(uri)
        } else {
            Err(UrlError::Invalid("the HTTP client reads it differently"))
        }
    }
}

impl fmt::Display for NormalizedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// Why a URL was refused. Each has a stable reason code ([`UrlError::reason_code`]). Messages
/// never quote the URL: its query may carry credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL this lane accepts (syntax, characters, percent-encoding); the text says which.
    #[error("not a valid http(s) URL: {0}")]
    Invalid(&'static str),
    /// Longer than [`MAX_URL_LEN`].
    #[error("URL longer than {MAX_URL_LEN} bytes")]
    TooLong,
    /// The scheme is missing or is neither `http` nor `https`.
    #[error("only http:// and https:// URLs are accepted")]
    Scheme,
    /// The host is missing or not acceptable; the text says why.
    #[error("host not accepted: {0}")]
    Host(&'static str),
    /// The port is 0 or above 65535.
    #[error("port must be between 1 and 65535")]
    Port,
    /// Credentials (`user:password@`) in the authority.
    #[error("credentials in a URL are refused; send them in a header")]
    Userinfo,
    /// A fragment (`#…`): clients never send one, so one here is a confusion attempt.
    #[error("a URL fragment (#...) is refused")]
    Fragment,
    /// A byte outside ASCII.
    #[error("non-ASCII character in the URL; percent-encode it (and write an IDN host as xn--)")]
    NonAscii,
    /// A backslash, which some servers read as `/`.
    #[error("backslash in the URL")]
    Backslash,
    /// The path climbs (with `..`) above the upstream base path, or above the root.
    #[error("the path climbs above the base path")]
    EscapesBase,
    /// A path segment hides `/` or `\` behind percent-encoding (`%2F`, `%5C`, `%252F`…).
    #[error("a path segment hides a separator behind percent-encoding")]
    EncodedSeparator,
    /// A path segment is a dot-segment in disguise (`%2E%2E`, `.%2e`, `..;`…).
    #[error("a path segment is a disguised dot-segment")]
    EncodedDotSegment,
}

impl UrlError {
    /// Stable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            UrlError::Invalid(_) => "HTTP_URL_INVALID",
            UrlError::TooLong => "HTTP_URL_TOO_LONG",
            UrlError::Scheme => "HTTP_URL_SCHEME",
            UrlError::Host(_) => "HTTP_URL_HOST",
            UrlError::Port => "HTTP_URL_PORT",
            UrlError::Userinfo => "HTTP_URL_USERINFO",
            UrlError::Fragment => "HTTP_URL_FRAGMENT",
            UrlError::NonAscii => "HTTP_URL_NON_ASCII",
            UrlError::Backslash => "HTTP_URL_BACKSLASH",
            UrlError::EscapesBase => "HTTP_URL_ESCAPES_BASE",
            UrlError::EncodedSeparator => "HTTP_URL_ENCODED_SEPARATOR",
            UrlError::EncodedDotSegment => "HTTP_URL_ENCODED_DOT_SEGMENT",
        }
    }
}

/// Normalizes an absolute `http`/`https` URL. See the module documentation for the rules.
pub fn normalize(url: &str) -> Result<NormalizedUrl, UrlError> {
    check_characters(url)?;
    // '?' can appear in no component before the query, so the first one starts it. The query is
    // checked here, not by the RFC 3986 parser, to tolerate what browsers leave raw in it.
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let scheme = scheme_of(head)?;
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(UrlError::Scheme),
    };
    let parsed = RfcUri::parse(head).map_err(|_| parse_failure(head))?;
    let Some(authority) = parsed.authority() else {
        return Err(UrlError::Host("missing"));
    };
    if authority.has_userinfo() {
        return Err(UrlError::Userinfo);
    }
    let host = normalize_host(&authority)?;
    let port = match authority.port_to_u16() {
        Ok(None) => None,
        Ok(Some(port)) if port == default_port => None,
        Ok(Some(0)) | Err(_) => return Err(UrlError::Port),
        Ok(Some(port)) => Some(port),
    };
    // Decodes unreserved characters, upper-cases the remaining hex, then removes dot-segments;
    // a `..` above the root is refused rather than clamped.
    let normalized = Normalizer::new()
        .allow_path_underflow(false)
        .normalize(&parsed)
        .map_err(|_| UrlError::EscapesBase)?;
    let path = match normalized.path().as_str() {
        "" => "/".to_owned(),
        path => path.to_owned(),
    };
    let query = query.map(normalize_query).transpose()?;
    let url = NormalizedUrl {
        scheme,
        host,
        port,
        path,
        query,
    };
    url.to_uri()?;
    Ok(url)
}

/// Joins a configured upstream base (e.g. `https://api.example.com/v1`) with the request
/// path-and-query the agent sent after `/http/NAME` (e.g. `/weather?city=x`, or empty, or
/// `?city=x`), normalizing the result; the result must stay under the base path (no escaping via
/// `..`, and no encoded `%2e%2e`, `%2f`, backslashes: see the module documentation).
///
/// The base path is followed by the agent's path with one `/` between them: base `/v1` or
/// `/v1/` with `/weather` gives `/v1/weather`; an empty agent path keeps the base path as it
/// is. A base that carries a query is refused ([`UrlError::Invalid`]): check that when the
/// configuration is loaded.
pub fn join_upstream(
    base: &NormalizedUrl,
    rest_path_and_query: &str,
) -> Result<NormalizedUrl, UrlError> {
    // The fields are public: make sure the base really is in normal form.
    let base = normalize(&base.as_string())?;
    if base.query.is_some() {
        return Err(UrlError::Invalid(
            "an upstream base URL must not carry a query",
        ));
    }
    check_characters(rest_path_and_query)?;
    let (rest_path, rest_query) = match rest_path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest_path_and_query, None),
    };
    if !rest_path.is_empty() && !rest_path.starts_with('/') {
        return Err(UrlError::Invalid(
            "the path after the upstream name must start with /",
        ));
    }
    for segment in rest_path.split('/') {
        check_segment(segment)?;
    }
    let mut joined = base.origin();
    if rest_path.is_empty() {
        joined.push_str(&base.path);
    } else {
        joined.push_str(base.path.strip_suffix('/').unwrap_or(&base.path));
        joined.push_str(rest_path);
    }
    if let Some(query) = rest_query {
        joined.push('?');
        joined.push_str(query);
    }
    let url = normalize(&joined)?;
    if url.origin() != base.origin() || !is_under(&url.path, &base.path) {
        return Err(UrlError::EscapesBase);
    }
    Ok(url)
}

/// Refuses what no component may hold: too long, non-ASCII, control characters and spaces, a
/// backslash, a fragment.
fn check_characters(text: &str) -> Result<(), UrlError> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if !text.is_ascii() {
        return Err(UrlError::NonAscii);
    }
    for byte in text.bytes() {
        match byte {
            0..=0x20 | 0x7F => return Err(UrlError::Invalid("control character or space")),
            b'\\' => return Err(UrlError::Backslash),
            b'#' => return Err(UrlError::Fragment),
            _ => {}
        }
    }
    Ok(())
}

/// The lower-cased scheme of `head`, refusing a URL without one (`//host/…`, `host/…`).
fn scheme_of(head: &str) -> Result<String, UrlError> {
    let Some((scheme, _)) = head.split_once(':') else {
        return Err(UrlError::Scheme);
    };
    let mut bytes = scheme.bytes();
    let well_formed = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !well_formed {
        return Err(UrlError::Scheme);
    }
    Ok(scheme.to_ascii_lowercase())
}

/// The most useful error for a URL the RFC 3986 parser refused.
fn parse_failure(head: &str) -> UrlError {
    let authority = head
        .split_once("//")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default();
    if authority.contains('@') {
        UrlError::Userinfo
    } else if authority.starts_with('[') {
        UrlError::Host("not a valid IPv6 literal (zone identifiers are refused)")
    } else {
        UrlError::Invalid("not an RFC 3986 URL (a character outside its grammar?)")
    }
}

/// The host in normal form: see the module documentation.
fn normalize_host(authority: &Authority<'_>) -> Result<String, UrlError> {
    let raw = authority.host();
    match authority.host_parsed() {
        // RFC 3986 dotted-decimal has no leading zeros: already canonical.
        Host::Ipv4 { .. } => Ok(raw.to_owned()),
        Host::Ipv6 { .. } => {
            let address: Ipv6Addr = raw
                .strip_prefix('[')
                .and_then(|inner| inner.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
                .ok_or(UrlError::Host("not a valid IPv6 literal"))?;
            Ok(format!("[{address}]"))
        }
        Host::RegName(_) => reg_name(raw),
        _ => Err(UrlError::Host("IPvFuture literals are refused")),
    }
}

/// A registered name: letters, digits, `-`, `_`, dot-separated labels of 1 to 63 characters, at
/// most 253 in all, whose last label is not a number. Lower-cased.
fn reg_name(raw: &str) -> Result<String, UrlError> {
    if raw.is_empty() {
        return Err(UrlError::Host("missing"));
    }
    if raw.len() > 253 {
        return Err(UrlError::Host("longer than 253 characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(UrlError::Host(
            "only letters, digits, '-', '_' and '.' (no percent-encoding)",
        ));
    }
    let labels: Vec<&str> = raw.split('.').collect();
    if labels
        .iter()
        .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err(UrlError::Host(
            "empty label, trailing dot, or label over 63 characters",
        ));
    }
    if labels.last().is_some_and(|last| is_number_label(last)) {
        return Err(UrlError::Host(
            "ends in a number but is not a dotted-decimal IPv4 address",
        ));
    }
    Ok(raw.to_ascii_lowercase())
}

/// Whether a host label is one that resolvers read as (part of) an IPv4 address: decimal, or
/// `0x` hexadecimal (WHATWG's "ends in a number").
fn is_number_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Checks the query's characters and upper-cases its percent-encoding hex; nothing is decoded.
fn normalize_query(query: &str) -> Result<String, UrlError> {
    let bytes = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(high), Some(low)) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    out.push('%');
                    out.push(char::from(high.to_ascii_uppercase()));
                    out.push(char::from(low.to_ascii_uppercase()));
                    i += 3;
                    continue;
                }
                _ => return Err(UrlError::Invalid("bad percent-encoding in the query")),
            }
        }
        if !is_query_byte(byte) {
            return Err(UrlError::Invalid("character not allowed in the query"));
        }
        out.push(char::from(byte));
        i += 1;
    }
    Ok(out)
}

/// RFC 3986 query characters (pchar, `/`, `?`), plus those that browsers and `fetch` leave raw
/// in a query and hyper accepts: `[ ] { } | ^` and the backtick.
fn is_query_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'|'
                | b'^'
                | b'`'
        )
}

/// Refuses a path segment of the agent's path that hides a separator or a dot-segment: its
/// percent-encoding is peeled layer by layer (so `%252F` is seen too).
fn check_segment(raw: &str) -> Result<(), UrlError> {
    let mut current = raw.as_bytes().to_vec();
    let mut passes = 0;
    while current.contains(&b'%') {
        let decoded = percent_decode(&current);
        if decoded == current {
            break;
        }
        if decoded.iter().any(|&b| b == b'/' || b == b'\\') {
            return Err(UrlError::EncodedSeparator);
        }
        current = decoded;
        passes += 1;
        if passes > MAX_DECODE_PASSES {
            return Err(UrlError::Invalid(
                "a path segment is percent-encoded too many times",
            ));
        }
    }
    // A literal `.` or `..` is resolved by the join; anything else that some server reads as a
    // dot-segment (encoded dots, a `;` parameter after the dots) is refused.
    let name = current.split(|&b| b == b';').next().unwrap_or_default();
    let is_dot = name == b"." || name == b"..";
    if is_dot && raw != "." && raw != ".." {
        return Err(UrlError::EncodedDotSegment);
    }
    Ok(())
}

/// One layer of percent-decoding; a `%` not followed by two hex digits stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%'
            && let (Some(high), Some(low)) =
                (hex_value(bytes.get(i + 1)), hex_value(bytes.get(i + 2)))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    out
}

fn hex_value(byte: Option<&u8>) -> Option<u8> {
    char::from(*byte?)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Whether `path` is `base` or lies under it, segment-wise (`/v1x` is not under `/v1`).
fn is_under(path: &str, base: &str) -> bool {
    if path == base || base == "/" {
        return true;
    }
    if base.ends_with('/') {
        path.starts_with(base)
    } else {
        path.strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(text: &str) -> NormalizedUrl {
        normalize(text).unwrap_or_else(|err| panic!("{text}: {err:?}"))
    }

    fn base() -> NormalizedUrl {
        url("https://api.example.com/v1")
    }

    #[test]
    fn normal_forms() {
        for (input, expected) in [
            // Scheme and host case; the default port of the *scheme* only.
            ("HTTP://API.Example.COM:443/", "http://api.example.com:443/"),
            ("HTTPS://API.Example.COM:443/", "https://api.example.com/"),
            ("http://api.example.com:80/x", "http://api.example.com/x"),
            ("http://api.example.com:/x", "http://api.example.com/x"),
            ("http://api.example.com:0080/x", "http://api.example.com/x"),
            ("https://h:8443", "https://h:8443/"),
            ("http://h", "http://h/"),
            // Unreserved characters decoded, reserved ones kept with upper-case hex.
            ("http://h/%7e", "http://h/~"),
            ("http://h/%7E", "http://h/~"),
            ("http://h/%41%62c", "http://h/Abc"),
            ("http://h/a%2fb", "http://h/a%2Fb"),
            ("http://h/%3f%23%25", "http://h/%3F%23%25"),
            ("http://h/caf%c3%a9", "http://h/caf%C3%A9"),
            // Dot-segments, decoded ones included (RFC 3986 §6.2.2 order).
            ("http://h/a/./b/../c", "http://h/a/c"),
            ("http://h/a/%2e%2e/b", "http://h/b"),
            ("http://h/a/b/..", "http://h/a/"),
            ("http://h/.//x", "http://h//x"),
            // The query: order and bytes kept, only hex case changes.
            ("http://h/p?b=2&a=1&b=%7e", "http://h/p?b=2&a=1&b=%7E"),
            ("http://h/p?x=%2f%3d", "http://h/p?x=%2F%3D"),
            ("http://h?q", "http://h/?q"),
            ("http://h/?", "http://h/?"),
            (
                "http://h/p?expand[]=a&f={x}|y^`",
                "http://h/p?expand[]=a&f={x}|y^`",
            ),
            ("http://h/p?next=/a?b", "http://h/p?next=/a?b"),
            // IP literals.
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
            ("http://[::1]:8080/", "http://[::1]:8080/"),
            ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
            ("http://[2001:DB8::A]/", "http://[2001:db8::a]/"),
            ("http://[::ffff:1.2.3.4]/", "http://[::ffff:1.2.3.4]/"),
            (
                "http://Under_Score.example-1.com/",
                "http://under_score.example-1.com/",
            ),
        ] {
            let normal = url(input);
            assert_eq!(normal.as_string(), expected, "{input}");
            assert_eq!(
                url(&normal.as_string()),
                normal,
                "{input} is not idempotent"
            );
        }
    }

    #[test]
    fn components_and_origin() {
        let normal = url("HTTPS://Api.Example.com:8443/a/../v1?x=%2f");
        assert_eq!(
            normal,
            NormalizedUrl {
                scheme: "https".into(),
                host: "api.example.com".into(),
                port: Some(8443),
                path: "/v1".into(),
                query: Some("x=%2F".into()),
            }
        );
        assert_eq!(normal.origin(), "https://api.example.com:8443");
        assert_eq!(normal.to_string(), normal.as_string());
        let uri = normal.to_uri().unwrap();
        assert_eq!(uri.to_string(), "https://api.example.com:8443/v1?x=%2F");
    }

    #[test]
    fn refusals() {
        for (input, code) in [
            ("", "HTTP_URL_SCHEME"),
            ("ftp://h/", "HTTP_URL_SCHEME"),
            ("//evil.com/x", "HTTP_URL_SCHEME"),
            ("example.com/x", "HTTP_URL_SCHEME"),
            ("localhost:8080/x", "HTTP_URL_SCHEME"),
            ("1http://h/", "HTTP_URL_SCHEME"),
            ("http:h/x", "HTTP_URL_HOST"),
            ("http:///x", "HTTP_URL_HOST"),
            ("http://user:pw@h/", "HTTP_URL_USERINFO"),
            ("http://@h/", "HTTP_URL_USERINFO"),
            ("http://a@b@h/", "HTTP_URL_USERINFO"),
            ("http://h/#top", "HTTP_URL_FRAGMENT"),
            ("http://h/p?q=1#x", "HTTP_URL_FRAGMENT"),
            ("http://h/caf\u{e9}", "HTTP_URL_NON_ASCII"),
            ("http://b\u{fc}cher.example/", "HTTP_URL_NON_ASCII"),
            ("http://h/a\\b", "HTTP_URL_BACKSLASH"),
            ("http://h\\@evil.com/", "HTTP_URL_BACKSLASH"),
            ("http://h/a b", "HTTP_URL_INVALID"),
            ("http://h/a\tb", "HTTP_URL_INVALID"),
            ("http://h/a\u{7f}", "HTTP_URL_INVALID"),
            (" http://h/", "HTTP_URL_INVALID"),
            ("http://h/%zz", "HTTP_URL_INVALID"),
            ("http://h/%4", "HTTP_URL_INVALID"),
            ("http://h/p?q=%4", "HTTP_URL_INVALID"),
            ("http://h/a[b]", "HTTP_URL_INVALID"),
            ("http://h/a\u{22}b", "HTTP_URL_INVALID"),
            ("http://h/p?q=\u{22}", "HTTP_URL_INVALID"),
            ("http://h/p?q=<script>", "HTTP_URL_INVALID"),
            ("http://h:99999/", "HTTP_URL_PORT"),
            ("http://h:0/", "HTTP_URL_PORT"),
            ("http://h:8x/", "HTTP_URL_INVALID"),
            ("http://127.1/", "HTTP_URL_HOST"),
            ("http://0x7f.0.0.1/", "HTTP_URL_HOST"),
            ("http://2130706433/", "HTTP_URL_HOST"),
            ("http://127.0.0.01/", "HTTP_URL_HOST"),
            ("http://1.2.3.4.5/", "HTTP_URL_HOST"),
            ("http://ex%61mple.com/", "HTTP_URL_HOST"),
            ("http://a!b.com/", "HTTP_URL_HOST"),
            ("http://example.com./", "HTTP_URL_HOST"),
            ("http://a..b/", "HTTP_URL_HOST"),
            ("http://[fe80::1%25eth0]/", "HTTP_URL_HOST"),
            ("http://[v1.x]/", "HTTP_URL_HOST"),
            ("http://[::1/", "HTTP_URL_HOST"),
            ("http://h/..", "HTTP_URL_ESCAPES_BASE"),
            ("http://h/a/../../etc", "HTTP_URL_ESCAPES_BASE"),
            ("http://h/%2e%2e/etc", "HTTP_URL_ESCAPES_BASE"),
        ] {
            let err = normalize(input).expect_err(input);
            assert_eq!(err.reason_code(), code, "{input}: {err}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(normalize(&long), Err(UrlError::TooLong));
        let label = "a".repeat(64);
        assert_eq!(
            normalize(&format!("http://{label}.com/")).map_err(|e| e.reason_code()),
            Err("HTTP_URL_HOST")
        );
    }

    #[test]
    fn join_stays_under_the_base() {
        for (rest, expected) in [
            (
                "/weather?city=x",
                "https://api.example.com/v1/weather?city=x",
            ),
            ("", "https://api.example.com/v1"),
            ("/", "https://api.example.com/v1/"),
            ("?city=x", "https://api.example.com/v1?city=x"),
            ("/%7e/%41", "https://api.example.com/v1/~/A"),
            ("/a/../b", "https://api.example.com/v1/b"),
            ("/../v1/x", "https://api.example.com/v1/x"),
            ("/./x", "https://api.example.com/v1/x"),
            ("/a..b/...", "https://api.example.com/v1/a..b/..."),
            ("/v1.%2ejson", "https://api.example.com/v1/v1..json"),
            ("/a%3Bb/%25", "https://api.example.com/v1/a%3Bb/%25"),
            (
                "/x?next=/../../admin",
                "https://api.example.com/v1/x?next=/../../admin",
            ),
            // Stays on the base host: an empty segment, not an authority.
            ("//evil.com/x", "https://api.example.com/v1//evil.com/x"),
        ] {
            let joined = join_upstream(&base(), rest).unwrap_or_else(|e| panic!("{rest}: {e:?}"));
            assert_eq!(joined.as_string(), expected, "{rest}");
        }
        // A base with a trailing slash, and the root as base.
        let slash = url("https://api.example.com/v1/");
        assert_eq!(
            join_upstream(&slash, "/w").unwrap().as_string(),
            "https://api.example.com/v1/w"
        );
        assert_eq!(
            join_upstream(&slash, "").unwrap().as_string(),
            "https://api.example.com/v1/"
        );
        let root = url("http://127.0.0.1:9000");
        assert_eq!(
            join_upstream(&root, "/w?x").unwrap().as_string(),
            "http://127.0.0.1:9000/w?x"
        );
        assert_eq!(
            join_upstream(&root, "").unwrap().as_string(),
            "http://127.0.0.1:9000/"
        );
    }

    #[test]
    fn join_refuses_bypass_attempts() {
        for (rest, code) in [
            ("/a/../../etc", "HTTP_URL_ESCAPES_BASE"),
            ("/..", "HTTP_URL_ESCAPES_BASE"),
            ("/../v2/x", "HTTP_URL_ESCAPES_BASE"),
            ("/../v1x", "HTTP_URL_ESCAPES_BASE"),
            ("/../../../../etc/passwd", "HTTP_URL_ESCAPES_BASE"),
            ("/%2e%2e/", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/%2E%2E/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/.%2e/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/%2e/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/x/%252e%252e/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/..;/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/..%3B/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/.;x/admin", "HTTP_URL_ENCODED_DOT_SEGMENT"),
            ("/a%2Fb", "HTTP_URL_ENCODED_SEPARATOR"),
            ("/a%2fb", "HTTP_URL_ENCODED_SEPARATOR"),
            ("/..%2F..%2Fadmin", "HTTP_URL_ENCODED_SEPARATOR"),
            ("/a%5Cb", "HTTP_URL_ENCODED_SEPARATOR"),
            ("/a%252Fb", "HTTP_URL_ENCODED_SEPARATOR"),
            ("/a%25252Fb", "HTTP_URL_ENCODED_SEPARATOR"),
            ("/a\\b", "HTTP_URL_BACKSLASH"),
            ("/..\\admin", "HTTP_URL_BACKSLASH"),
            ("/x#frag", "HTTP_URL_FRAGMENT"),
            ("/caf\u{e9}", "HTTP_URL_NON_ASCII"),
            ("/a b", "HTTP_URL_INVALID"),
            ("/a%00\r\nHost: evil", "HTTP_URL_INVALID"),
            ("@evil.com/x", "HTTP_URL_INVALID"),
            ("http://evil.com/x", "HTTP_URL_INVALID"),
            ("evil", "HTTP_URL_INVALID"),
            ("/%zz", "HTTP_URL_INVALID"),
            ("/x%252525252525252Fy", "HTTP_URL_INVALID"),
        ] {
            let err = join_upstream(&base(), rest).expect_err(rest);
            assert_eq!(err.reason_code(), code, "{rest}: {err}");
        }
        let with_query = url("https://api.example.com/v1?key=1");
        assert_eq!(
            join_upstream(&with_query, "/x").map_err(|e| e.reason_code()),
            Err("HTTP_URL_INVALID")
        );
        // A hand-made base that is not normal is normalized first.
        let odd = NormalizedUrl {
            scheme: "https".into(),
            host: "API.example.com".into(),
            port: Some(443),
            path: "/v1/../v2".into(),
            query: None,
        };
        assert_eq!(
            join_upstream(&odd, "/x").unwrap().as_string(),
            "https://api.example.com/v2/x"
        );
    }

    #[test]
    fn reason_codes_are_in_the_registry() {
        let errors = [
            UrlError::Invalid(""),
            UrlError::TooLong,
            UrlError::Scheme,
            UrlError::Host(""),
            UrlError::Port,
            UrlError::Userinfo,
            UrlError::Fragment,
            UrlError::NonAscii,
            UrlError::Backslash,
            UrlError::EscapesBase,
            UrlError::EncodedSeparator,
            UrlError::EncodedDotSegment,
        ];
        for error in errors {
            let code = error.reason_code();
            assert!(
                crate::policy::reasons::REASONS
                    .iter()
                    .any(|(known, _)| *known == code),
                "{code}"
            );
        }
    }

    /// URL pieces that exercise every rule, mixed at random.
    fn url_strategy() -> impl Strategy<Value = String> {
        let scheme = prop::sample::select(vec!["http", "HTTP", "https", "HtTpS"]);
        let host = prop::sample::select(vec![
            "api.example.com",
            "API.Example.COM",
            "127.0.0.1",
            "[::1]",
            "[0:0:0:0:0:0:0:1]",
            "[2001:DB8::1]",
            "h-1.x_y",
        ]);
        let port = prop::option::of(prop::sample::select(vec![
            ":", ":80", ":443", ":8080", ":0080",
        ]));
        let segment = prop::sample::select(vec![
            "a", "B", "~", "%7e", "%7E", "%41", "%2f", "%2F", "%25", "%2e", "%2E%2e", ".", "..",
            "", "a;b", "x%20y", "%c3%A9", "%3a", ":", "@", "!", "..;",
        ]);
        let path = prop::collection::vec(segment, 0..8);
        let param = prop::sample::select(vec![
            "a=1", "b=%7e", "c=%2f", "d[]=x", "%ab", "x", "=", "", "?", "/", "..", "e=%3D%3d",
        ]);
        let query = prop::option::of(prop::collection::vec(param, 0..5));
        (scheme, host, port, path, query).prop_map(|(scheme, host, port, path, query)| {
            let mut text = format!("{scheme}://{host}{}", port.unwrap_or_default());
            if !path.is_empty() {
                text.push('/');
                text.push_str(&path.join("/"));
            }
            if let Some(query) = query {
                text.push('?');
                text.push_str(&query.join("&"));
            }
            text
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn normalize_is_idempotent(text in url_strategy()) {
            if let Ok(normal) = normalize(&text) {
                prop_assert_eq!(normalize(&normal.as_string()), Ok(normal.clone()));
                prop_assert!(normal.to_uri().is_ok());
                prop_assert!(normal.path.starts_with('/'));
                prop_assert!(!normal.path.split('/').any(|s| s == "." || s == ".."));
            }
        }

        #[test]
        fn normalize_never_panics_and_is_idempotent_on_any_text(
            text in prop::collection::vec(any::<u8>(), 0..48),
            prefix in prop::sample::select(vec!["http://h/", "https://H:1/a/", "http://", ""]),
        ) {
            let text = format!("{prefix}{}", String::from_utf8_lossy(&text));
            if let Ok(normal) = normalize(&text) {
                prop_assert_eq!(normalize(&normal.as_string()), Ok(normal));
            }
        }

        #[test]
        fn join_never_leaves_the_base(
            segments in prop::collection::vec(prop::sample::select(vec![
                "a", "..", ".", "", "%2e", "%2e%2e", "v1", "%7e", "x;y", "..;", "%2f", "%41",
            ]), 0..8),
            query in prop::option::of(prop::sample::select(vec!["", "a=1", "b=%2f&a=..%2F"])),
            base in prop::sample::select(vec![
                "https://api.example.com/v1",
                "https://api.example.com/v1/",
                "http://127.0.0.1:9000/",
                "http://h/a/b",
            ]),
        ) {
            let base = url(base);
            let mut rest = String::new();
            for segment in &segments {
                rest.push('/');
                rest.push_str(segment);
            }
            if let Some(query) = query {
                rest.push('?');
                rest.push_str(query);
            }
            if let Ok(joined) = join_upstream(&base, &rest) {
                prop_assert_eq!(joined.origin(), base.origin());
                prop_assert!(is_under(&joined.path, &base.path), "{} under {}", joined.path, base.path);
                prop_assert_eq!(normalize(&joined.as_string()), Ok(joined));
            }
        }
    }
}
