//! Integration tests for `trustos_kernel::checkpoint`: known-answer vectors from Go's note
//! package and transparency-dev, a real sum.golang.org checkpoint, and tampering / parsing cases.
//!
//! Vector sources (data only, copied verbatim):
//! - golang/mod `sumdb/note/note_test.go` (commit 02c991387e35f9e4c0a9b7ce137717055f8d716d),
//!   BSD-3-Clause, Copyright The Go Authors: the PeterNeumann / EnochRoot keys, text and
//!   signatures.
//! - transparency-dev/formats `log/note_test.go` (commit 5242c17862d31acd165afafa140ecc973a621469),
//!   Apache-2.0, Copyright Google LLC: the Log / Known / KnownAgain / Unknown key pairs and the
//!   sum.golang.org verifier key with a signed tree head it published.
//! - C2SP/C2SP `signed-note.md` (commit 055287621bf3cd13ff4394418a3e8efc2d5e8ed7) and
//!   `tlog-checkpoint.md` (commit 2793893976c835db049c194d8f2c4f946dcb70ba), specifications
//!   licensed CC BY 4.0: the example notes (their public keys are not published, so they are only
//!   parsed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use trustos_kernel::checkpoint::{
    Checkpoint, CheckpointError, MAX_SIGNATURES, NoteSignature, NoteVerifier, key_id, note_text,
    open_checkpoint, open_note, sign_note,
};

// --- golang/mod sumdb/note/note_test.go -------------------------------------------------------

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// --- transparency-dev/formats log/note_test.go ------------------------------------------------

const LOG_VKEY: &str = "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs";
const LOG_SKEY: &str = "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ";
const KNOWN1_VKEY: &str = "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH";
const KNOWN1_SKEY: &str = "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci";
const KNOWN2_VKEY: &str = "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj";
const KNOWN2_SKEY: &str =
    "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+";
const UNKNOWN_VKEY: &str = "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots";
const UNKNOWN_SKEY: &str =
    "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU";

const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_NOTE: &str = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n\u{2014} sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

// --- C2SP examples ----------------------------------------------------------------------------

const SPEC_NOTE: &str = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
const SPEC_CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

/// Decodes a Go note signer key `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>` (test-only;
/// the kernel never handles private key strings).
fn signer_from_skey(skey: &str) -> (String, u32, SigningKey) {
    let parts: Vec<&str> = skey.splitn(5, '+').collect();
    assert_eq!(&parts[..2], ["PRIVATE", "KEY"]);
    let raw = STANDARD.decode(parts[4]).unwrap();
    assert_eq!(raw[0], 0x01);
    let seed: [u8; 32] = raw[1..].try_into().unwrap();
    (
        parts[2].to_owned(),
        u32::from_str_radix(parts[3], 16).unwrap(),
        SigningKey::from_bytes(&seed),
    )
}

fn verifier(vkey: &str) -> NoteVerifier {
    NoteVerifier::from_vkey(vkey).unwrap()
}

fn sig(name: &str, key_id: u32, b64: &str) -> NoteSignature {
    let raw = STANDARD.decode(b64).unwrap();
    assert_eq!(u32::from_be_bytes(raw[..4].try_into().unwrap()), key_id);
    NoteSignature {
        key_name: name.into(),
        key_id,
        signature: raw[4..].to_vec(),
    }
}

fn peter() -> NoteSignature {
    sig(
        "PeterNeumann",
        0xc74f20a3,
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    )
}

fn enoch() -> NoteSignature {
    sig(
        "EnochRoot",
        0xaf0cfe78,
        "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=",
    )
}

/// Just the signature line of a note signed by `sign_note`.
fn signature_line(text: &str, name: &str, key: &SigningKey) -> String {
    let signed = sign_note(text, name, key).unwrap();
    signed
        .strip_prefix(text)
        .unwrap()
        .strip_prefix('\n')
        .unwrap()
        .to_owned()
}

#[test]
fn go_sign_known_answer() {
    let (name, id, key) = signer_from_skey(PETER_SKEY);
    assert_eq!(name, "PeterNeumann");
    assert_eq!(key_id(&name, &key.verifying_key()), id);
    assert_eq!(id, 0xc74f20a3);
    let v = NoteVerifier::new(&name, key.verifying_key()).unwrap();
    assert_eq!(v.to_vkey(), PETER_VKEY);
    assert_eq!(v.to_string(), PETER_VKEY);

    let signed = sign_note(GO_TEXT, &name, &key).unwrap();
    assert_eq!(signed, format!("{GO_TEXT}\n{PETER_SIG}"));
}

#[test]
fn transparency_dev_key_pairs_match() {
    for (skey, vkey) in [
        (LOG_SKEY, LOG_VKEY),
        (KNOWN1_SKEY, KNOWN1_VKEY),
        (KNOWN2_SKEY, KNOWN2_VKEY),
        (UNKNOWN_SKEY, UNKNOWN_VKEY),
    ] {
        let (name, id, key) = signer_from_skey(skey);
        let v = NoteVerifier::new(&name, key.verifying_key()).unwrap();
        assert_eq!(v.key_id(), id);
        assert_eq!(v.to_vkey(), vkey);
        assert_eq!(verifier(vkey), v);
    }
}

#[test]
fn vkey_parse_roundtrip() {
    for vkey in [PETER_VKEY, ENOCH_VKEY, SUMDB_VKEY, LOG_VKEY] {
        let v: NoteVerifier = vkey.parse().unwrap();
        assert_eq!(v.to_vkey(), vkey);
    }
    let sumdb = verifier(SUMDB_VKEY);
    assert_eq!(sumdb.name(), "sum.golang.org");
    assert_eq!(sumdb.key_id(), 0x033de0ae);
}

/// Go's TestNewVerifier: every proper substring and every single-byte increment is refused.
#[test]
fn vkey_manglings_are_refused() {
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let s = std::str::from_utf8(&b[i..j]).unwrap();
            assert!(NoteVerifier::from_vkey(s).is_err(), "{s:?} accepted");
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let s = String::from_utf8(m).unwrap();
        assert!(NoteVerifier::from_vkey(&s).is_err(), "{s:?} accepted");
    }
    // Wrong key length and unknown algorithm, each with a key id adjusted to match (Go vectors).
    assert!(matches!(
        NoteVerifier::from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        ),
        Err(CheckpointError::MalformedVerifierKey(_))
    ));
    assert!(matches!(
        NoteVerifier::from_vkey(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        ),
        Err(CheckpointError::UnsupportedKeyType(_))
    ));
    // Strictness beyond Go: upper-case key ids are not the canonical encoding.
    assert!(matches!(
        NoteVerifier::from_vkey(&PETER_VKEY.replace("c74f20a3", "C74F20A3")),
        Err(CheckpointError::MalformedVerifierKey(_))
    ));
    assert_eq!(
        NoteVerifier::from_vkey(
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        ),
        Err(CheckpointError::InvalidKeyName)
    );
}

/// Go's TestOpen, case by case.
#[test]
fn go_open_cases() {
    let peter_v = verifier(PETER_VKEY);
    let enoch_v = verifier(ENOCH_VKEY);
    let both = format!("{GO_TEXT}\n{PETER_SIG}{ENOCH_SIG}");

    // One signature verified, one not.
    let n = open_note(&both, &[&peter_v]).unwrap();
    assert_eq!(n.text(), GO_TEXT);
    assert_eq!(n.verified(), [peter()]);
    assert_eq!(n.unverified(), [enoch()]);

    // Both verified.
    let n = open_note(&both, &[&peter_v, &enoch_v]).unwrap();
    assert_eq!(n.verified(), [peter(), enoch()]);
    assert!(n.unverified().is_empty());

    // Neither known.
    assert_eq!(
        open_note(&both, &[] as &[NoteVerifier]),
        Err(CheckpointError::UnknownKey)
    );

    // Unused duplicated verifier is fine (and so is a used one, since both entries are the same
    // key: only *different* keys under one name and id are ambiguous).
    let peter_only = format!("{GO_TEXT}\n{PETER_SIG}");
    open_note(&peter_only, &[&enoch_v, &peter_v, &enoch_v]).unwrap();
    open_note(&peter_only, &[&peter_v, &peter_v]).unwrap();

    // Too many signatures, known or not.
    let many = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
    assert_eq!(
        open_note(&many, &[&peter_v]),
        Err(CheckpointError::TooManySignatures)
    );
    assert_eq!(
        open_note(&many, &[] as &[NoteVerifier]),
        Err(CheckpointError::TooManySignatures)
    );
    let max = format!("{GO_TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
    assert_eq!(open_note(&max, &[&peter_v]).unwrap().verified(), [peter()]);

    // Invalid signature from a known key.
    let bad = format!("{GO_TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert_eq!(
        open_note(&bad, &[&peter_v]),
        Err(CheckpointError::InvalidSignature {
            key_name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );

    // Duplicated verified and unverified signatures.
    let enoch_abcd_line = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
    let dup = format!("{GO_TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_abcd_line}");
    let n = open_note(&dup, &[&peter_v]).unwrap();
    assert_eq!(n.verified(), [peter()]);
    let enoch_abcd = sig(
        "EnochRoot",
        0xaf0cfe78,
        "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5nABCD2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=",
    );
    assert_eq!(n.unverified(), [enoch(), enoch_abcd]);

    // Invalid encoded message syntax. (Go's "\xff" case cannot be expressed: input is &str.)
    let bad_msgs = [
        (GO_TEXT.to_owned(), CheckpointError::NoSignatures),
        (format!("{GO_TEXT}\n"), CheckpointError::NoSignatures),
        (
            format!("{GO_TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            CheckpointError::MalformedNote("signature lines must end with a newline"),
        ),
        (
            format!("\u{1}{GO_TEXT}\n{PETER_SIG}"),
            CheckpointError::MalformedNote("contains a control character other than newline"),
        ),
        (
            format!(
                "{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            CheckpointError::MalformedNote("signature lines must end with a newline"),
        ),
        (
            format!(
                "{GO_TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            CheckpointError::MalformedNote("signature is not standard base64"),
        ),
        (
            format!("{GO_TEXT}\n{PETER_SIG}Unexpected line.\n"),
            CheckpointError::MalformedNote(
                "signature line does not start with an em dash and a space",
            ),
        ),
    ];
    for (msg, want) in bad_msgs {
        assert_eq!(open_note(&msg, &[&peter_v]), Err(want), "{msg:?}");
    }
}

#[test]
fn sumdb_checkpoint_verifies() {
    let sumdb = verifier(SUMDB_VKEY);
    let (checkpoint, note) =
        open_checkpoint(SUMDB_NOTE, "go.sum database tree", &[&sumdb]).unwrap();
    assert_eq!(checkpoint.origin, "go.sum database tree");
    assert_eq!(checkpoint.size, 6476701);
    assert_eq!(
        checkpoint.root.to_vec(),
        STANDARD
            .decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
            .unwrap()
    );
    assert!(checkpoint.extensions.is_empty());
    assert_eq!(note.verified().len(), 1);
    assert_eq!(checkpoint.body(), note.text());

    assert_eq!(
        open_checkpoint(
            SUMDB_NOTE,
            "Go rocks but I might have the wrong ID",
            &[&sumdb]
        ),
        Err(CheckpointError::OriginMismatch {
            expected: "Go rocks but I might have the wrong ID".into(),
            found: "go.sum database tree".into()
        })
    );
    // The real key under another name is an unknown key.
    let renamed = NoteVerifier::new("sum.golang.org2", *sumdb.verifying_key()).unwrap();
    assert_eq!(
        open_note(SUMDB_NOTE, &[renamed]),
        Err(CheckpointError::UnknownKey)
    );
    // Tampering with any of the three body lines breaks the signature.
    for tampered in [
        SUMDB_NOTE.replacen("go.sum", "go.sun", 1),
        SUMDB_NOTE.replacen("6476701", "6476702", 1),
        SUMDB_NOTE.replacen("mb8Q", "mb8R", 1),
    ] {
        assert_eq!(
            open_note(&tampered, &[&sumdb]),
            Err(CheckpointError::InvalidSignature {
                key_name: "sum.golang.org".into(),
                key_id: 0x033de0ae
            })
        );
    }
}

/// transparency-dev/formats TestParseCheckpoint, rebuilt with a valid 32-byte root.
#[test]
fn cosigned_checkpoints() {
    let (log_name, _, log) = signer_from_skey(LOG_SKEY);
    let (k1_name, _, k1) = signer_from_skey(KNOWN1_SKEY);
    let (k2_name, _, k2) = signer_from_skey(KNOWN2_SKEY);
    let (u_name, _, u) = signer_from_skey(UNKNOWN_SKEY);
    let checkpoint = Checkpoint::new("TestParseCheckpoint", 42, [0x5a; 32]);
    let body = checkpoint.body();
    let line = |name: &str, key: &SigningKey| signature_line(&body, name, key);
    let (l, a, b, x) = (
        line(&log_name, &log),
        line(&k1_name, &k1),
        line(&k2_name, &k2),
        line(&u_name, &u),
    );
    let known = [
        verifier(LOG_VKEY),
        verifier(KNOWN1_VKEY),
        verifier(KNOWN2_VKEY),
    ];
    let origin = "TestParseCheckpoint";
    let cases: [(&str, Vec<&str>, Option<usize>); 8] = [
        ("no sigs", vec![], None),
        ("just log sig", vec![&l], Some(1)),
        ("log and known1", vec![&l, &a], Some(2)),
        ("log, known1 and unknown", vec![&l, &a, &x], Some(2)),
        ("all known", vec![&l, &a, &b], Some(3)),
        ("one verifier signs twice", vec![&l, &a, &a], Some(2)),
        ("mixed order", vec![&b, &l, &a], Some(3)),
        ("all sigs", vec![&l, &a, &b, &x], Some(3)),
    ];
    for (desc, lines, want) in cases {
        let signed = format!("{body}\n{}", lines.concat());
        let result = open_checkpoint(&signed, origin, &known);
        match want {
            Some(count) => {
                let (cp, note) = result.unwrap_or_else(|e| panic!("{desc}: {e}"));
                assert_eq!(cp, checkpoint, "{desc}");
                assert_eq!(note.verified().len(), count, "{desc}");
            }
            None => assert_eq!(result, Err(CheckpointError::NoSignatures), "{desc}"),
        }
    }
    // Only an unknown key signed.
    let signed = format!("{body}\n{x}");
    assert_eq!(
        open_checkpoint(&signed, origin, &known),
        Err(CheckpointError::UnknownKey)
    );
    // A bad body signed by the log key is rejected as a checkpoint after the signature checks.
    let hat = "if this is a valid checkpoint then I'll eat my hat\n";
    let signed = sign_note(hat, &log_name, &log).unwrap();
    assert_eq!(
        open_checkpoint(&signed, origin, &known),
        Err(CheckpointError::MalformedCheckpoint(
            "fewer than three lines"
        ))
    );
    // The spec asks verifiers to accept at least 16 signatures.
    let signed = format!("{body}\n{l}{}", x.repeat(20));
    assert!(open_checkpoint(&signed, origin, &known).is_ok());
}

#[test]
fn spec_examples_parse() {
    // The signed-note example has a blank line inside its text: the last one separates.
    let text = note_text(SPEC_NOTE).unwrap();
    assert_eq!(
        text,
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n"
    );
    let stranger = SigningKey::from_bytes(&[3; 32]).verifying_key();
    assert_eq!(
        open_note(SPEC_NOTE, &[("quasimodo.example/salvatore", stranger)]),
        Err(CheckpointError::UnknownKey)
    );

    let checkpoint = Checkpoint::parse(note_text(SPEC_CHECKPOINT).unwrap()).unwrap();
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20852163);
    assert_eq!(
        checkpoint.root.to_vec(),
        STANDARD
            .decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
            .unwrap()
    );
    assert_eq!(
        checkpoint.body(),
        note_text(SPEC_CHECKPOINT).unwrap(),
        "body re-encodes byte for byte"
    );
}

#[test]
fn text_with_blank_lines_roundtrips() {
    let key = SigningKey::from_bytes(&[9; 32]);
    for text in [
        "a\n\nb\n",
        "a\n\n\n",
        "\n",
        "\u{2014} looks like a signature\n\n",
    ] {
        let signed = sign_note(text, "k", &key).unwrap();
        let note = open_note(&signed, &[("k", key.verifying_key())]).unwrap();
        assert_eq!(note.text(), text);
    }
}

#[test]
fn tampering_and_truncation_fail() {
    let key = SigningKey::from_bytes(&[5; 32]);
    let known = [("example.com/log", key.verifying_key())];
    let checkpoint = Checkpoint {
        origin: "example.com/log".into(),
        size: 1234,
        root: [0x11; 32],
        extensions: vec!["ext one".into()],
    };
    let signed = checkpoint.sign("example.com/log", &key).unwrap();
    assert_eq!(
        open_checkpoint(&signed, "example.com/log", &known)
            .unwrap()
            .0,
        checkpoint
    );

    // Every proper prefix fails (cut at character boundaries).
    for (cut, _) in signed.char_indices().skip(1) {
        assert!(
            open_note(&signed[..cut], &known).is_err(),
            "prefix {cut} accepted"
        );
    }

    // Changing any single byte of the text (to another ASCII byte) fails verification.
    let text_len = checkpoint.body().len();
    for i in 0..text_len {
        let mut bytes = signed.clone().into_bytes();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        let tampered = String::from_utf8(bytes).unwrap();
        let result = open_note(&tampered, &known);
        assert!(result.is_err(), "text byte {i} accepted");
    }

    // Changing any character of the base64 signature fails: the id changes (unknown key), the
    // signature bytes change (bad signature) or the encoding breaks (malformed).
    let sig_start = signed.rfind(' ').unwrap() + 1;
    for i in sig_start..signed.len() - 1 {
        let mut bytes = signed.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        let err = open_note(&tampered, &known).unwrap_err();
        assert!(
            matches!(
                err,
                CheckpointError::InvalidSignature { .. }
                    | CheckpointError::UnknownKey
                    | CheckpointError::MalformedNote(_)
            ),
            "sig char {i}: {err:?}"
        );
    }

    // Signature lines from the right name but another key, or the right key under another name.
    let other = SigningKey::from_bytes(&[6; 32]);
    let forged = sign_note(&checkpoint.body(), "example.com/log", &other).unwrap();
    assert_eq!(open_note(&forged, &known), Err(CheckpointError::UnknownKey));
    let renamed = sign_note(&checkpoint.body(), "example.com/log2", &key).unwrap();
    assert_eq!(
        open_note(&renamed, &known),
        Err(CheckpointError::UnknownKey)
    );

    // A valid signature plus a bad one from the same known key: the whole note is refused.
    let good_line = signature_line(&checkpoint.body(), "example.com/log", &key);
    let mut bad_line = good_line.clone().into_bytes();
    let pos = good_line.len() - 10;
    bad_line[pos] = if bad_line[pos] == b'A' { b'B' } else { b'A' };
    let bad_line = String::from_utf8(bad_line).unwrap();
    let mixed = format!("{}\n{good_line}{bad_line}", checkpoint.body());
    assert!(matches!(
        open_note(&mixed, &known),
        Err(CheckpointError::InvalidSignature { .. })
    ));

    // A known key's line with a signature of the wrong length.
    let mut raw = key_id("example.com/log", &key.verifying_key())
        .to_be_bytes()
        .to_vec();
    raw.extend_from_slice(&[0u8; 63]);
    let short = format!(
        "{}\n\u{2014} example.com/log {}\n",
        checkpoint.body(),
        STANDARD.encode(raw)
    );
    assert!(matches!(
        open_note(&short, &known),
        Err(CheckpointError::InvalidSignature { .. })
    ));
}

#[test]
fn checkpoint_parse_errors() {
    let root = STANDARD.encode([7u8; 32]);
    let ok = format!("log\n5\n{root}\n");
    assert_eq!(
        Checkpoint::parse(&ok).unwrap(),
        Checkpoint::new("log", 5, [7; 32])
    );
    assert_eq!(
        Checkpoint::parse(&format!("log\n0\n{root}\nextension\n"))
            .unwrap()
            .extensions,
        ["extension"]
    );

    let cases: Vec<(String, CheckpointError)> = vec![
        (
            String::new(),
            CheckpointError::MalformedCheckpoint("does not end with a newline"),
        ),
        (
            format!("log\n5\n{root}"),
            CheckpointError::MalformedCheckpoint("does not end with a newline"),
        ),
        (
            "log\n".into(),
            CheckpointError::MalformedCheckpoint("fewer than three lines"),
        ),
        (
            "log\n5\n".into(),
            CheckpointError::MalformedCheckpoint("fewer than three lines"),
        ),
        (format!("\n5\n{root}\n"), CheckpointError::InvalidOrigin),
        (
            format!("lo\rg\n5\n{root}\n"),
            CheckpointError::InvalidOrigin,
        ),
        (
            format!("log\n05\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("log\n00\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("log\n+5\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("log\n-5\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("log\n 5\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("log\n5\r\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (format!("log\n\n{root}\n"), CheckpointError::InvalidTreeSize),
        (
            format!("log\nbananas\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            format!("log\n18446744073709551616\n{root}\n"),
            CheckpointError::InvalidTreeSize,
        ),
        (
            "log\n5\nYmFuYW5hcw==\n".into(),
            CheckpointError::InvalidRootHash,
        ),
        (
            "log\n5\nThisIsn'tBase64\n".into(),
            CheckpointError::InvalidRootHash,
        ),
        (
            format!("log\n5\n{}\n", root.trim_end_matches('=')),
            CheckpointError::InvalidRootHash,
        ),
        (
            format!("log\n5\n {root}\n"),
            CheckpointError::InvalidRootHash,
        ),
        ("log\n5\n\n".into(), CheckpointError::InvalidRootHash),
        (
            format!("log\n5\n{root}\n\n"),
            CheckpointError::InvalidExtension,
        ),
        (
            format!("log\n5\n{root}\na\n\nb\n"),
            CheckpointError::InvalidExtension,
        ),
        (
            format!("log\n5\n{root}\na\tb\n"),
            CheckpointError::InvalidExtension,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Checkpoint::parse(&text), Err(want), "{text:?}");
    }
    assert_eq!(
        Checkpoint::parse(&format!("log\n18446744073709551615\n{root}\n"))
            .unwrap()
            .size,
        u64::MAX
    );
}

#[test]
fn signing_refuses_bad_input() {
    let key = SigningKey::from_bytes(&[1; 32]);
    assert_eq!(
        sign_note("no newline", "k", &key),
        Err(CheckpointError::MalformedNote(
            "note text must end with a newline"
        ))
    );
    assert_eq!(
        sign_note("", "k", &key),
        Err(CheckpointError::MalformedNote(
            "note text must end with a newline"
        ))
    );
    assert!(matches!(
        sign_note("tab\there\n", "k", &key),
        Err(CheckpointError::MalformedNote(_))
    ));
    for name in ["", "a b", "a+b", "a\u{2003}b"] {
        assert_eq!(
            sign_note("text\n", name, &key),
            Err(CheckpointError::InvalidKeyName),
            "{name:?}"
        );
    }
    let mut checkpoint = Checkpoint::new("", 1, [0; 32]);
    assert_eq!(
        checkpoint.sign("k", &key),
        Err(CheckpointError::InvalidOrigin)
    );
    checkpoint.origin = "two\nlines".into();
    assert_eq!(
        checkpoint.sign("k", &key),
        Err(CheckpointError::InvalidOrigin)
    );
    checkpoint.origin = "log".into();
    checkpoint.extensions = vec![String::new()];
    assert_eq!(
        checkpoint.sign("k", &key),
        Err(CheckpointError::InvalidExtension)
    );
    assert_eq!(
        NoteVerifier::new("a+b", key.verifying_key()),
        Err(CheckpointError::InvalidKeyName)
    );
}

#[test]
fn reason_codes_are_distinct() {
    let errors = [
        CheckpointError::MalformedCheckpoint(""),
        CheckpointError::InvalidOrigin,
        CheckpointError::InvalidTreeSize,
        CheckpointError::InvalidRootHash,
        CheckpointError::InvalidExtension,
        CheckpointError::OriginMismatch {
            expected: String::new(),
            found: String::new(),
        },
        CheckpointError::MalformedNote(""),
        CheckpointError::NoSignatures,
        CheckpointError::TooManySignatures,
        CheckpointError::UnknownKey,
        CheckpointError::InvalidSignature {
            key_name: String::new(),
            key_id: 0,
        },
        CheckpointError::AmbiguousKey {
            key_name: String::new(),
            key_id: 0,
        },
        CheckpointError::InvalidKeyName,
        CheckpointError::MalformedVerifierKey(""),
        CheckpointError::VerifierKeyIdMismatch,
        CheckpointError::UnsupportedKeyType(0),
        CheckpointError::InvalidPublicKey,
    ];
    let mut codes: Vec<&str> = errors.iter().map(CheckpointError::reason_code).collect();
    codes.sort_unstable();
    let before = codes.len();
    codes.dedup();
    assert_eq!(codes.len(), before);
}
