//! Circle webhook notifications: signature verification and de-duplication.
//!
//! Circle signs every v2 notification (Wallets included) with `ECDSA_SHA_256`: ECDSA over the
//! NIST P-256 curve with SHA-256, over the exact bytes of the request body. Two headers carry
//! what is needed to check it:
//!
//! - `X-Circle-Signature`: the signature, base64 (standard alphabet) of its ASN.1 DER encoding
//!   (the docs' example `MEYCIQ…` decodes to `30 46 02 21 …`, a DER `SEQUENCE` of `r` and `s`);
//! - `X-Circle-Key-Id`: the UUID of the signing key, to fetch from
//!   `GET /v2/notifications/publicKey/{id}`, which answers `{ "id", "algorithm": "ECDSA_SHA_256",
//!   "publicKey", "createDate" }` with `publicKey` the base64 of a DER SubjectPublicKeyInfo
//!   (`MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…`: id-ecPublicKey, prime256v1, uncompressed point).
//!
//! "Parsing the JSON and re-serializing it changes the byte order, so the signature no longer
//! matches": verify the raw body as received, before parsing it. Sources:
//! <https://developers.circle.com/api-reference/verify-webhook-signatures>,
//! <https://developers.circle.com/api-reference/wallets/common/get-notification-signature>,
//! <https://developers.circle.com/wallets/webhook-notifications>.
//!
//! Verification is strict about encodings (padded standard base64, canonical DER) and accepts
//! either half of `s` (P-256 ECDSA has no low-`s` rule, and nothing says Circle's signer
//! normalizes).
//! Circle may deliver a notification more than once; [`NotificationDeduper`] remembers the most
//! recent `notificationId`s so a redelivery is processed once. Feed it only notifications whose
//! signature verified: otherwise a forged notification could claim a real id first and make the
//! genuine one look like a duplicate. An id old enough to have been evicted is seen again as new;
//! that is harmless because state changes are monotone ([`super::state`]).

use std::collections::{HashSet, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

/// The only algorithm name Circle's notification public key endpoint is documented to return.
pub const NOTIFICATION_ALGORITHM: &str = "ECDSA_SHA_256";

/// Longest `notificationId` remembered, in bytes (Circle's ids are 36-character UUIDs).
pub const MAX_NOTIFICATION_ID_LEN: usize = 128;

/// Checks `X-Circle-Signature` (`signature_b64`) over the exact `raw_body` under the notification
/// public key given as base64 DER SubjectPublicKeyInfo (`publicKey` of
/// `GET /v2/notifications/publicKey/{id}`).
pub fn verify_notification(
    raw_body: &[u8],
    signature_b64: &str,
    public_key_b64_der: &str,
) -> Result<(), WebhookError> {
    NotificationKey::from_b64_der(public_key_b64_der)?.verify(raw_body, signature_b64)
}

/// A parsed notification public key, to cache by its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationKey {
    key: VerifyingKey,
}

impl NotificationKey {
    /// Reads a P-256 public key from base64 (standard, padded) DER SubjectPublicKeyInfo.
    ///
    /// Refuses anything else, including keys on other curves, with
    /// [`WebhookError::KeyInvalid`].
    pub fn from_b64_der(public_key_b64_der: &str) -> Result<Self, WebhookError> {
        let der = STANDARD
            .decode(public_key_b64_der)
            .map_err(|_| WebhookError::KeyInvalid {
                reason: "public key is not base64",
            })?;
        let key =
            VerifyingKey::from_public_key_der(&der).map_err(|_| WebhookError::KeyInvalid {
                reason: "public key is not a P-256 SubjectPublicKeyInfo",
            })?;
        Ok(Self { key })
    }

    /// Reads the key from the endpoint's `algorithm` and `publicKey` fields, refusing any
    /// algorithm other than [`NOTIFICATION_ALGORITHM`].
    pub fn from_response(algorithm: &str, public_key_b64_der: &str) -> Result<Self, WebhookError> {
        if algorithm != NOTIFICATION_ALGORITHM {
            return Err(WebhookError::KeyInvalid {
                reason: "algorithm is not ECDSA_SHA_256",
            });
        }
        Self::from_b64_der(public_key_b64_der)
    }

    /// Checks `signature_b64` (base64 of DER) over the exact `raw_body`.
    pub fn verify(&self, raw_body: &[u8], signature_b64: &str) -> Result<(), WebhookError> {
        let der = STANDARD
            .decode(signature_b64)
            .map_err(|_| WebhookError::SignatureMalformed {
                reason: "signature is not base64",
            })?;
        let signature =
            Signature::from_der(&der).map_err(|_| WebhookError::SignatureMalformed {
                reason: "signature is not a DER ECDSA P-256 signature",
            })?;
        self.key
            .verify(raw_body, &signature)
            .map_err(|_| WebhookError::SignatureInvalid)
    }
}

/// Whether a notification id was seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// First delivery (within the de-duplicator's memory): process it.
    FirstSeen,
    /// A redelivery: acknowledge it, do not process it again.
    Duplicate,
}

impl Delivery {
    /// `Ok` for a first delivery, [`WebhookError::Duplicate`] for a redelivery.
    pub fn require_first(self) -> Result<(), WebhookError> {
        match self {
            Self::FirstSeen => Ok(()),
            Self::Duplicate => Err(WebhookError::Duplicate),
        }
    }
}

/// Remembers the last `capacity` notification ids, oldest evicted first.
#[derive(Debug)]
pub struct NotificationDeduper {
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl NotificationDeduper {
    /// A de-duplicator remembering up to `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `notification_id` and says whether it was already remembered.
    ///
    /// Refuses an empty id, one longer than [`MAX_NOTIFICATION_ID_LEN`], or one with characters
    /// outside printable ASCII, with [`WebhookError::NotificationIdInvalid`] (nothing recorded).
    pub fn observe(&mut self, notification_id: &str) -> Result<Delivery, WebhookError> {
        if notification_id.is_empty()
            || notification_id.len() > MAX_NOTIFICATION_ID_LEN
            || !notification_id.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(WebhookError::NotificationIdInvalid);
        }
        if self.seen.contains(notification_id) {
            return Ok(Delivery::Duplicate);
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.seen.remove(&oldest);
                }
                None => break,
            }
        }
        self.seen.insert(notification_id.to_owned());
        self.order.push_back(notification_id.to_owned());
        Ok(Delivery::FirstSeen)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The most ids remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Why a notification was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature is well-formed but does not verify over the body under the key.
    #[error("Circle webhook signature does not verify")]
    SignatureInvalid,
    /// The signature header is not base64 of a DER ECDSA signature.
    #[error("Circle webhook signature is malformed: {reason}")]
    SignatureMalformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The notification public key is unusable.
    #[error("Circle notification public key is invalid: {reason}")]
    KeyInvalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// The notification was already processed.
    #[error("Circle webhook notification is a duplicate")]
    Duplicate,
    /// The `notificationId` is empty, too long or not printable ASCII.
    #[error("Circle webhook notificationId is invalid")]
    NotificationIdInvalid,
}

impl WebhookError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::SignatureInvalid => "CIRCLE_WEBHOOK_SIGNATURE_INVALID",
            Self::SignatureMalformed { .. } => "CIRCLE_WEBHOOK_SIGNATURE_MALFORMED",
            Self::KeyInvalid { .. } => "CIRCLE_WEBHOOK_KEY_INVALID",
            Self::Duplicate => "CIRCLE_WEBHOOK_DUPLICATE",
            Self::NotificationIdInvalid => "CIRCLE_WEBHOOK_NOTIFICATION_ID_INVALID",
        }
    }

    /// Every reason code this module can return.
    pub fn all_reason_codes() -> &'static [&'static str] {
        &[
            "CIRCLE_WEBHOOK_SIGNATURE_INVALID",
            "CIRCLE_WEBHOOK_SIGNATURE_MALFORMED",
            "CIRCLE_WEBHOOK_KEY_INVALID",
            "CIRCLE_WEBHOOK_DUPLICATE",
            "CIRCLE_WEBHOOK_NOTIFICATION_ID_INVALID",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    /// DER SubjectPublicKeyInfo header of an uncompressed P-256 point (id-ecPublicKey,
    /// prime256v1, BIT STRING of 66 bytes).
    const SPKI_P256_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];

    const BODY: &[u8] = br#"{"subscriptionId":"00000000-0000-0000-0000-000000000000","notificationId":"00000000-0000-0000-0000-000000000001","notificationType":"transactions.outbound","notification":{"id":"c4d1da72-111e-4d52-bdbf-2e74a2d803d5","state":"COMPLETE","amounts":["0.001"]},"timestamp":"2024-01-01T00:00:00.000Z","version":2}"#;

    fn signing_key(seed: u8) -> SigningKey {
        let mut scalar = [seed; 32];
        scalar[0] = 0x01;
        SigningKey::from_slice(&scalar).unwrap()
    }

    fn public_b64(key: &SigningKey) -> String {
        let point = key.verifying_key().to_sec1_point(false);
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(point.as_bytes());
        STANDARD.encode(der)
    }

    fn sign_b64(key: &SigningKey, body: &[u8]) -> String {
        let signature: Signature = key.sign(body);
        STANDARD.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_valid_signature_passes() {
        let key = signing_key(7);
        let signature = sign_b64(&key, BODY);
        assert!(signature.starts_with("ME"), "{signature}");
        verify_notification(BODY, &signature, &public_b64(&key)).unwrap();
        NotificationKey::from_response("ECDSA_SHA_256", &public_b64(&key))
            .unwrap()
            .verify(BODY, &signature)
            .unwrap();
    }

    #[test]
    fn a_high_s_twin_also_passes() {
        let key = signing_key(7);
        let signature: Signature = key.sign(BODY);
        let (r, s) = signature.split_scalars();
        let twin = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_ne!(twin, signature);
        let twin_b64 = STANDARD.encode(twin.to_der().as_bytes());
        verify_notification(BODY, &twin_b64, &public_b64(&key)).unwrap();
    }

    #[test]
    fn any_change_to_the_body_fails() {
        let key = signing_key(7);
        let signature = sign_b64(&key, BODY);
        let public = public_b64(&key);
        for index in [0, BODY.len() / 2, BODY.len() - 1] {
            let mut changed = BODY.to_vec();
            changed[index] ^= 0x01;
            assert_eq!(
                verify_notification(&changed, &signature, &public).unwrap_err(),
                WebhookError::SignatureInvalid
            );
        }
        // The same JSON re-serialized with other spacing is other bytes.
        let value: serde_json::Value = serde_json::from_slice(BODY).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        assert_eq!(
            verify_notification(&pretty, &signature, &public)
                .unwrap_err()
                .reason_code(),
            "CIRCLE_WEBHOOK_SIGNATURE_INVALID"
        );
        let mut trailing = BODY.to_vec();
        trailing.push(b'\n');
        assert!(verify_notification(&trailing, &signature, &public).is_err());
        assert!(verify_notification(b"", &signature, &public).is_err());
    }

    #[test]
    fn another_key_fails() {
        let signature = sign_b64(&signing_key(7), BODY);
        assert_eq!(
            verify_notification(BODY, &signature, &public_b64(&signing_key(8)))
                .unwrap_err()
                .reason_code(),
            "CIRCLE_WEBHOOK_SIGNATURE_INVALID"
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let key = signing_key(7);
        let public = public_b64(&key);
        let signature: Signature = key.sign(BODY);
        let der = signature.to_der().as_bytes().to_vec();
        let raw_rs = STANDARD.encode(signature.to_bytes());
        let mut trailing = der.clone();
        trailing.push(0);
        let unpadded = STANDARD.encode(&der).trim_end_matches('=').to_owned();
        let padded_needed = if unpadded.len().is_multiple_of(4) {
            // No padding in this encoding: drop a character instead.
            unpadded[..unpadded.len() - 1].to_owned()
        } else {
            unpadded
        };
        for bad in [
            String::new(),
            "not base64!".to_owned(),
            padded_needed,
            raw_rs,
            STANDARD.encode(&der[..der.len() - 1]),
            STANDARD.encode(trailing),
            format!(" {}", STANDARD.encode(&der)),
        ] {
            assert_eq!(
                verify_notification(BODY, &bad, &public)
                    .unwrap_err()
                    .reason_code(),
                "CIRCLE_WEBHOOK_SIGNATURE_MALFORMED",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_keys_are_refused() {
        let key = signing_key(7);
        let signature = sign_b64(&key, BODY);
        let good = STANDARD.decode(public_b64(&key)).unwrap();
        let compressed_point = key.verifying_key().to_sec1_point(true);
        let raw_point = STANDARD.encode(key.verifying_key().to_sec1_point(false).as_bytes());
        let mut off_curve = good.clone();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 0x01;
        for bad in [
            String::new(),
            "MFkw!!".to_owned(),
            raw_point,
            STANDARD.encode(compressed_point.as_bytes()),
            STANDARD.encode(&good[..good.len() - 1]),
            STANDARD.encode(off_curve),
        ] {
            assert_eq!(
                verify_notification(BODY, &signature, &bad)
                    .unwrap_err()
                    .reason_code(),
                "CIRCLE_WEBHOOK_KEY_INVALID",
                "{bad:?}"
            );
        }
        assert_eq!(
            NotificationKey::from_response("ECDSA_SHA_384", &public_b64(&key)).unwrap_err(),
            WebhookError::KeyInvalid {
                reason: "algorithm is not ECDSA_SHA_256"
            }
        );
    }

    #[test]
    fn deduper_reports_duplicates_within_its_memory() {
        let mut deduper = NotificationDeduper::new(2);
        assert_eq!(deduper.observe("a").unwrap(), Delivery::FirstSeen);
        assert_eq!(deduper.observe("a").unwrap(), Delivery::Duplicate);
        assert_eq!(
            deduper
                .observe("a")
                .unwrap()
                .require_first()
                .unwrap_err()
                .reason_code(),
            "CIRCLE_WEBHOOK_DUPLICATE"
        );
        assert_eq!(deduper.observe("b").unwrap(), Delivery::FirstSeen);
        assert_eq!(deduper.observe("c").unwrap(), Delivery::FirstSeen);
        assert_eq!(deduper.len(), 2);
        // "a" was evicted, the oldest; "b" and "c" are remembered.
        assert_eq!(deduper.observe("b").unwrap(), Delivery::Duplicate);
        assert_eq!(deduper.observe("c").unwrap(), Delivery::Duplicate);
        assert_eq!(deduper.observe("a").unwrap(), Delivery::FirstSeen);
        assert_eq!(deduper.observe("b").unwrap(), Delivery::FirstSeen);
        assert_eq!(deduper.len(), 2);
        assert_eq!(NotificationDeduper::new(0).capacity(), 1);
    }

    #[test]
    fn deduper_refuses_unusable_ids() {
        let mut deduper = NotificationDeduper::new(4);
        for bad in [
            "",
            " ",
            "a b",
            "é",
            &"x".repeat(MAX_NOTIFICATION_ID_LEN + 1),
        ] {
            assert_eq!(
                deduper.observe(bad).unwrap_err().reason_code(),
                "CIRCLE_WEBHOOK_NOTIFICATION_ID_INVALID"
            );
        }
        assert!(deduper.is_empty());
        assert_eq!(
            deduper
                .observe(&"x".repeat(MAX_NOTIFICATION_ID_LEN))
                .unwrap(),
            Delivery::FirstSeen
        );
    }

    #[test]
    fn reason_codes_are_distinct_and_prefixed() {
        let errors = [
            WebhookError::SignatureInvalid,
            WebhookError::SignatureMalformed { reason: "" },
            WebhookError::KeyInvalid { reason: "" },
            WebhookError::Duplicate,
            WebhookError::NotificationIdInvalid,
        ];
        let mut codes: Vec<_> = errors.iter().map(WebhookError::reason_code).collect();
        assert_eq!(codes, WebhookError::all_reason_codes());
        assert!(codes.iter().all(|code| code.starts_with("CIRCLE_WEBHOOK_")));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }
}
