//! EIP-3009 / EIP-712 conformance of the x402 `exact` EVM signer against the shared vectors in
//! `tests/vectors/x402/eip3009-exact-evm.json` (see `tests/vectors/x402/SOURCE.md`).
//!
//! For every vector: the struct hash (when given), the signing digest, recovery of the
//! signature to `message.from`, `v` ∈ {27, 28} and low `s`; when the key is public, our own
//! signature byte for byte and the key's address. Negative checks: flipped signature bytes,
//! the high-`s` twin, wrong lengths, and tampered message fields.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use trustos_adapters::x402::evm::{
    Address, B256, EvmSigner, TRANSFER_WITH_AUTHORIZATION_TYPE, TokenDomain, TransferAuthorization,
    U256, checksum, parse_address, recover_signer, signature_hex,
};

/// The secp256k1 group order n.
const CURVE_ORDER: &str = "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

struct Vector {
    label: String,
    private_key: Option<String>,
    domain: TokenDomain,
    message: TransferAuthorization,
    struct_hash: Option<B256>,
    digest: B256,
    signature: [u8; 65],
    signature_text: String,
}

fn load() -> (Value, Vec<Vector>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/x402/eip3009-exact-evm.json"
    );
    let text = std::fs::read_to_string(path).expect("vector file");
    let document: Value = serde_json::from_str(&text).expect("vector JSON");
    let vectors = document["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .map(parse_vector)
        .collect();
    (document, vectors)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} must be a string"))
}

fn uint(value: &Value, field: &str) -> U256 {
    U256::from_str_radix(text(value, field), 10).unwrap()
}

fn parse_vector(vector: &Value) -> Vector {
    let domain = &vector["domain"];
    let message = &vector["message"];
    let signature_text = text(vector, "signature").to_string();
    let signature_bytes: Vec<u8> =
        alloy_primitives::hex::decode(signature_text.trim_start_matches("0x")).unwrap();
    Vector {
        label: text(vector, "label").to_string(),
        private_key: vector["privateKey"].as_str().map(str::to_string),
        domain: TokenDomain {
            name: text(domain, "name").to_string(),
            version: text(domain, "version").to_string(),
            chain_id: domain["chainId"].as_u64().expect("chainId"),
            verifying_contract: parse_address(text(domain, "verifyingContract")).unwrap(),
        },
        message: TransferAuthorization {
            from: parse_address(text(message, "from")).unwrap(),
            to: parse_address(text(message, "to")).unwrap(),
            value: uint(message, "value"),
            valid_after: uint(message, "validAfter"),
            valid_before: uint(message, "validBefore"),
            nonce: text(message, "nonce").parse().unwrap(),
        },
        struct_hash: vector["structHash"]
            .as_str()
            .map(|hash| hash.parse().unwrap()),
        digest: text(vector, "digest").parse().unwrap(),
        signature: signature_bytes.try_into().expect("65-byte signature"),
        signature_text,
    }
}

fn s_of(signature: &[u8; 65]) -> U256 {
    U256::from_be_slice(&signature[32..64])
}

fn order() -> U256 {
    CURVE_ORDER.parse().unwrap()
}

#[test]
fn file_is_the_expected_one() {
    let (document, vectors) = load();
    assert_eq!(
        document["typehash"].as_str(),
        Some(TRANSFER_WITH_AUTHORIZATION_TYPE)
    );
    assert!(vectors.len() >= 3, "expected at least three vectors");
    assert!(vectors.iter().any(|vector| vector.private_key.is_none()));
    assert!(vectors.iter().any(|vector| vector.private_key.is_some()));
}

#[test]
fn every_vector_hashes_and_recovers() {
    let (_, vectors) = load();
    for vector in &vectors {
        let label = &vector.label;
        if let Some(expected) = vector.struct_hash {
            assert_eq!(
                vector.message.struct_hash(),
                expected,
                "{label}: structHash"
            );
        }
        assert_eq!(
            vector.message.signing_digest(&vector.domain),
            vector.digest,
            "{label}: digest"
        );
        assert!(
            vector.signature[64] == 27 || vector.signature[64] == 28,
            "{label}: v"
        );
        assert!(s_of(&vector.signature) <= order() >> 1, "{label}: low s");
        assert_eq!(
            recover_signer(&vector.digest, &vector.signature).unwrap(),
            vector.message.from,
            "{label}: recovers to message.from"
        );
        assert_eq!(
            signature_hex(&vector.signature),
            vector.signature_text.to_lowercase(),
            "{label}: hex form"
        );
    }
}

#[test]
fn public_key_vectors_are_reproduced_byte_for_byte() {
    let (_, vectors) = load();
    let mut signed = 0;
    for vector in vectors.iter().filter(|vector| vector.private_key.is_some()) {
        let label = &vector.label;
        let signer = EvmSigner::from_hex(vector.private_key.as_deref().unwrap()).unwrap();
        assert_eq!(
            signer.address(),
            vector.message.from,
            "{label}: key address"
        );
        let ours = signer
            .sign_transfer(&vector.domain, &vector.message)
            .unwrap();
        assert_eq!(
            signature_hex(&ours),
            signature_hex(&vector.signature),
            "{label}: signature"
        );
        assert_eq!(ours, vector.signature, "{label}: signature bytes");
        assert_eq!(
            signer.sign_digest(&vector.digest).unwrap(),
            vector.signature,
            "{label}: sign_digest"
        );
        signed += 1;
    }
    assert!(signed >= 2);
}

#[test]
fn flipped_signature_bytes_do_not_recover_to_from() {
    let (_, vectors) = load();
    for vector in &vectors {
        // Every byte of r and s, each flipped in its lowest bit.
        for index in 0..64 {
            let mut tampered = vector.signature;
            tampered[index] ^= 0x01;
            match recover_signer(&vector.digest, &tampered) {
                Ok(address) => assert_ne!(
                    address, vector.message.from,
                    "{}: byte {index}",
                    vector.label
                ),
                Err(error) => assert!(error.reason_code().starts_with("X402_SIGNATURE_")),
            }
        }
        // The other v recovers another key.
        let mut other_v = vector.signature;
        other_v[64] = if other_v[64] == 27 { 28 } else { 27 };
        if let Ok(address) = recover_signer(&vector.digest, &other_v) {
            assert_ne!(address, vector.message.from, "{}: v flipped", vector.label);
        }
    }
}

#[test]
fn high_s_twin_is_refused() {
    let (_, vectors) = load();
    for vector in &vectors {
        let high_s = order() - s_of(&vector.signature);
        assert!(high_s > order() >> 1);
        let mut twin = vector.signature;
        twin[32..64].copy_from_slice(&high_s.to_be_bytes::<32>());
        twin[64] = if twin[64] == 27 { 28 } else { 27 };
        let error = recover_signer(&vector.digest, &twin).unwrap_err();
        assert_eq!(
            error.reason_code(),
            "X402_SIGNATURE_HIGH_S",
            "{}",
            vector.label
        );
    }
}

#[test]
fn wrong_lengths_are_refused() {
    let (_, vectors) = load();
    let vector = &vectors[0];
    let mut longer = vector.signature.to_vec();
    longer.push(0);
    let cases: [&[u8]; 5] = [
        &[],
        &vector.signature[..64],
        &vector.signature[1..],
        &longer,
        &[0u8; 130],
    ];
    for case in cases {
        let error = recover_signer(&vector.digest, case).unwrap_err();
        assert_eq!(
            error.reason_code(),
            "X402_SIGNATURE_MALFORMED",
            "length {}",
            case.len()
        );
    }
}

#[test]
fn tampered_message_fields_change_the_digest() {
    let (_, vectors) = load();
    for vector in &vectors {
        let label = &vector.label;
        let original = vector.message.signing_digest(&vector.domain);
        let one = U256::from(1u64);
        let mut variants = Vec::new();
        let base = || vector.message.clone();
        variants.push(TransferAuthorization {
            from: Address::repeat_byte(0x42),
            ..base()
        });
        variants.push(TransferAuthorization {
            to: Address::repeat_byte(0x42),
            ..base()
        });
        variants.push(TransferAuthorization {
            value: vector.message.value + one,
            ..base()
        });
        variants.push(TransferAuthorization {
            valid_after: vector.message.valid_after + one,
            ..base()
        });
        variants.push(TransferAuthorization {
            valid_before: vector.message.valid_before + one,
            ..base()
        });
        let mut nonce = vector.message.nonce;
        nonce.0[31] ^= 1;
        variants.push(TransferAuthorization { nonce, ..base() });
        for (index, variant) in variants.iter().enumerate() {
            let digest = variant.signing_digest(&vector.domain);
            assert_ne!(digest, original, "{label}: field {index}");
            // The original signature no longer speaks for `from`.
            if let Ok(address) = recover_signer(&digest, &vector.signature) {
                assert_ne!(address, vector.message.from, "{label}: field {index}");
            }
        }

        // Domain fields are bound too.
        let domains = [
            TokenDomain {
                name: format!("{} ", vector.domain.name),
                ..vector.domain.clone()
            },
            TokenDomain {
                version: "1".into(),
                ..vector.domain.clone()
            },
            TokenDomain {
                chain_id: vector.domain.chain_id + 1,
                ..vector.domain.clone()
            },
            TokenDomain {
                verifying_contract: Address::repeat_byte(0x42),
                ..vector.domain.clone()
            },
        ];
        for (index, domain) in domains.iter().enumerate() {
            assert_ne!(
                vector.message.signing_digest(domain),
                original,
                "{label}: domain field {index}"
            );
        }
    }
}

#[test]
fn addresses_in_the_vectors_round_trip_through_checksum() {
    let (document, _) = load();
    for vector in document["vectors"].as_array().unwrap() {
        for spelling in [
            text(&vector["message"], "from"),
            text(&vector["message"], "to"),
            text(&vector["domain"], "verifyingContract"),
        ] {
            let address = parse_address(spelling).unwrap();
            assert_eq!(checksum(&address), spelling);
        }
    }
}
