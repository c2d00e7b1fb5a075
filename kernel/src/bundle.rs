//! `ReceiptBundle.v1`: a receipt plus everything needed to prove offline that it is in the log.
//!
//! A bundle carries the receipt's compact JWS, an RFC 9162 inclusion proof for its leaf, and a C2SP
//! checkpoint signed as a C2SP signed note by the gateway key. Verifying it checks, in order:
//!
//! 1. the receipt JWS (trusted key, canonical payload, `Receipt.v1` shape);
//! 2. the checkpoint note: signed by a trusted key under the checkpoint's own origin as key name;
//! 3. the proof is for this receipt's log index and for the checkpoint's tree size;
//! 4. the proof leads from `SHA-256(0x00 || receipt JWS bytes)` to the checkpoint's root.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::keys::TrustedKeys;
use crate::merkle::{self, Hash, MerkleError};
use crate::objects::{Receipt, SafeIndex};
use crate::strict_json::{self, StrictDecodeError};
use crate::verify::{Verifier, VerifyError};

/// The `type` member of a `ReceiptBundle.v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BundleType {
    /// Version 1.
    #[default]
    #[serde(rename = "ReceiptBundle.v1")]
    V1,
}

/// An RFC 9162 inclusion proof as carried in a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InclusionProof {
    /// Index of the leaf.
    pub leaf_index: SafeIndex,
    /// Size of the tree the proof is for.
    pub tree_size: SafeIndex,
    /// Audit path from the leaf towards the root, standard base64.
    pub hashes: Vec<String>,
}

/// `ReceiptBundle.v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptBundle {
    /// Always `ReceiptBundle.v1`.
    #[serde(rename = "type")]
    pub object_type: BundleType,
    /// The receipt's compact JWS.
    pub receipt: String,
    /// Inclusion proof of the receipt's leaf.
    pub inclusion_proof: InclusionProof,
    /// The signed checkpoint (C2SP signed note).
    pub checkpoint: String,
}

/// Why a bundle did not verify. Each variant has a stable [`reason_code`](Self::reason_code).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle is not strict JSON of the bundle shape.
    #[error("bundle is not a valid ReceiptBundle.v1: {0}")]
    Json(#[from] StrictDecodeError),
    /// The receipt did not verify.
    #[error("bundle receipt: {0}")]
    Receipt(#[from] VerifyError),
    /// The checkpoint did not verify.
    #[error("bundle checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// A proof hash is not 32 bytes of standard base64.
    #[error("bundle proof hash {0} is not 32 bytes of standard base64")]
    ProofHash(usize),
    /// The proof is for another leaf than the receipt's log index.
    #[error("proof is for leaf {proof_index}, but the receipt's log index is {receipt_index}")]
    IndexMismatch {
        /// Leaf index in the proof.
        proof_index: u64,
        /// Log index in the receipt.
        receipt_index: u64,
    },
    /// The proof is for another tree size than the checkpoint's.
    #[error(
        "proof is for a tree of size {proof_size}, but the checkpoint is for size {checkpoint_size}"
    )]
    TreeSizeMismatch {
        /// Tree size in the proof.
        proof_size: u64,
        /// Tree size in the checkpoint.
        checkpoint_size: u64,
    },
    /// The proof does not lead to the checkpoint's root.
    #[error("inclusion proof does not verify: {0}")]
    Inclusion(#[from] MerkleError),
}

impl BundleError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Json(_) => "BUNDLE_MALFORMED",
            Self::Receipt(err) => err.reason_code(),
            Self::Checkpoint(err) => err.reason_code(),
            Self::ProofHash(_) => "PROOF_HASH_INVALID",
            Self::IndexMismatch { .. } => "PROOF_INDEX_MISMATCH",
            Self::TreeSizeMismatch { .. } => "PROOF_TREE_SIZE_MISMATCH",
            Self::Inclusion(MerkleError::RootMismatch) => "PROOF_ROOT_MISMATCH",
            Self::Inclusion(MerkleError::WrongProofLength { .. }) => "PROOF_WRONG_LENGTH",
            Self::Inclusion(_) => "PROOF_INVALID",
        }
    }
}

/// What a verified bundle proves.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    /// The receipt.
    pub receipt: Receipt,
    /// Key id that signed the receipt.
    pub kid: String,
    /// The log's origin line.
    pub origin: String,
    /// Size of the tree the checkpoint commits to.
    pub tree_size: u64,
    /// The receipt's leaf index.
    pub leaf_index: u64,
    /// The checkpoint's root hash.
    pub root: Hash,
}

impl ReceiptBundle {
    /// A bundle of a receipt JWS, its proof, and a signed checkpoint.
    pub fn new(
        receipt_jws: String,
        leaf_index: SafeIndex,
        tree_size: SafeIndex,
        proof: &[Hash],
        signed_checkpoint: String,
    ) -> Self {
        Self {
            object_type: BundleType::V1,
            receipt: receipt_jws,
            inclusion_proof: InclusionProof {
                leaf_index,
                tree_size,
                hashes: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
            },
            checkpoint: signed_checkpoint,
        }
    }

    /// Reads a bundle strictly.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        Ok(strict_json::from_slice(bytes)?)
    }

    /// The bundle as indented JSON with a final newline, for files people read.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        // A struct of strings, integers and arrays always serializes.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Verifies the receipt, the checkpoint and the inclusion proof against `keys`, for whatever
    /// log the checkpoint names (its origin must still be the name the trusted key signed under).
    pub fn verify(&self, keys: &TrustedKeys) -> Result<VerifiedBundle, BundleError> {
        self.verify_in_log(keys, None)
    }

    /// As [`verify`](Self::verify), and when `expected_origin` is given the checkpoint must be
    /// for that log: a key that signs checkpoints of several logs cannot pass one for another.
    pub fn verify_in_log(
        &self,
        keys: &TrustedKeys,
        expected_origin: Option<&str>,
    ) -> Result<VerifiedBundle, BundleError> {
        let signed = Verifier::new(keys.clone()).verify_receipt(&self.receipt)?;
        let checkpoint = open_checkpoint(&self.checkpoint, keys)?;
        if let Some(expected) = expected_origin
            && checkpoint.origin != expected
        {
            return Err(CheckpointError::OriginMismatch {
                expected: expected.to_owned(),
                found: checkpoint.origin,
            }
            .into());
        }

        let proof_index = self.inclusion_proof.leaf_index.get();
        let receipt_index = signed.receipt.log_index.get();
        if proof_index != receipt_index {
            return Err(BundleError::IndexMismatch {
                proof_index,
                receipt_index,
            });
        }
        let proof_size = self.inclusion_proof.tree_size.get();
        if proof_size != checkpoint.size {
            return Err(BundleError::TreeSizeMismatch {
                proof_size,
                checkpoint_size: checkpoint.size,
            });
        }
        let proof = self
            .inclusion_proof
            .hashes
            .iter()
            .enumerate()
            .map(|(position, text)| {
                STANDARD
                    .decode(text)
                    .ok()
                    .and_then(|bytes| merkle::hash_from_slice(&bytes).ok())
                    .ok_or(BundleError::ProofHash(position))
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        let leaf = merkle::leaf_hash(self.receipt.as_bytes());
        merkle::verify_inclusion(&leaf, proof_index, proof_size, &proof, &checkpoint.root)?;
        Ok(VerifiedBundle {
            receipt: signed.receipt,
            kid: signed.kid,
            origin: checkpoint.origin,
            tree_size: checkpoint.size,
            leaf_index: proof_index,
            root: checkpoint.root,
        })
    }
}

/// Opens a signed checkpoint whose signature must come from a trusted key named as its origin.
pub fn open_checkpoint(signed_note: &str, keys: &TrustedKeys) -> Result<Checkpoint, BundleError> {
    let body = checkpoint::note_text(signed_note)?;
    let checkpoint = Checkpoint::parse(body)?;
    let verifiers: Vec<_> = keys
        .iter()
        .map(|key| (checkpoint.origin.clone(), *key.verifying_key()))
        .collect();
    checkpoint::open_note(signed_note, &verifiers)?;
    Ok(checkpoint)
}
