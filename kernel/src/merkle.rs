//! RFC 6962 / RFC 9162 Merkle tree math: hashing, roots, inclusion and consistency proofs.
//!
//! This module is pure arithmetic over hashes; it performs no I/O. Where the hashes of a tree live
//! is abstracted by [`NodeSource`]: anything that can return the hash of a *complete* subtree by
//! `(level, index)` can serve roots and proofs. Because every value the proof algorithms need is a
//! complete subtree or a right-edge subtree assembled from at most 64 complete ones, a proof costs
//! `O(log n)` node reads and hashes whatever the tree size; nothing is recomputed from leaves.
//!
//! Addressing: node `(level, index)` is the Merkle tree hash of the complete subtree covering
//! leaves `[index·2^level, (index+1)·2^level)`. Level 0 holds the leaf hashes. A node exists once
//! its last leaf has been appended and never changes afterwards, which is what lets an
//! append-only store persist nodes exactly once (see [`completed_nodes`] and
//! [`completed_node_hashes`]).
//!
//! Proof generation follows the recursive `PATH` / `SUBPROOF` definitions of RFC 9162 §2.1.3.1
//! and §2.1.4.1; verification follows the iterative algorithms of §2.1.3.2 and §2.1.4.2, after an
//! exact proof-length check so that a proof made for another tree size fails with a precise
//! error. No function in this module panics, whatever its input.
//!
//! ```
//! use trustos_kernel::merkle::{self, MemoryTree};
//!
//! let mut tree = MemoryTree::new();
//! for entry in [&b"a"[..], b"b", b"c"] {
//!     tree.append(entry);
//! }
//! let proof = tree.inclusion_proof(1)?;
//! merkle::verify_inclusion(&merkle::leaf_hash(b"b"), 1, tree.size(), &proof, &tree.root())?;
//! # Ok::<(), merkle::MerkleError>(())
//! ```

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Length in bytes of a [`Hash`].
pub const HASH_LEN: usize = 32;

/// The largest proof this module can produce or accept: one hash per tree level.
pub const MAX_PROOF_LEN: usize = 64;

/// RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Root of the empty tree: `SHA-256("")`.
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Converts a byte slice (for example a decoded proof element) into a [`Hash`].
///
/// # Errors
/// [`MerkleError::InvalidHashLength`] unless `bytes` is exactly [`HASH_LEN`] bytes long.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, MerkleError> {
    Hash::try_from(bytes).map_err(|_| MerkleError::InvalidHashLength { len: bytes.len() })
}

/// Why a proof was rejected or could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    /// The leaf index is not inside the tree (`index >= size`; every index when the tree is empty).
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was requested from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNewSize {
        /// The size of the earlier tree.
        old_size: u64,
        /// The size of the later tree.
        new_size: u64,
    },
    /// A consistency proof from the empty tree was requested. Every tree extends the empty tree,
    /// so such a proof proves nothing; callers should special-case size 0 (RFC 9162 defines
    /// consistency proofs for `0 < old_size`).
    #[error("a consistency proof from the empty tree is meaningless")]
    EmptyOldTree,
    /// The proof does not have the number of hashes the tree geometry requires. This is how a
    /// proof built for a different index or tree size is usually detected.
    #[error("proof has {actual} hashes, the tree geometry requires {expected}")]
    WrongProofLength {
        /// Number of hashes the proof must contain.
        expected: usize,
        /// Number of hashes the proof contains.
        actual: usize,
    },
    /// The root recomputed from an inclusion proof differs from the expected root.
    #[error("inclusion proof does not lead to the expected root")]
    RootMismatch,
    /// The old root recomputed from a consistency proof differs from the expected old root.
    #[error("consistency proof does not lead to the expected old root")]
    OldRootMismatch,
    /// The new root recomputed from a consistency proof differs from the expected new root (also
    /// returned when two trees of the same size have different roots).
    #[error("consistency proof does not lead to the expected new root")]
    NewRootMismatch,
    /// A byte string meant to be a hash does not have [`HASH_LEN`] bytes.
    #[error("a hash must be {HASH_LEN} bytes, got {len}")]
    InvalidHashLength {
        /// The length that was supplied.
        len: usize,
    },
    /// A [`NodeSource`] was asked for a node it does not hold (not yet complete, or beyond the
    /// stored tree).
    #[error("node (level {level}, index {index}) is not available")]
    MissingNode {
        /// Level of the missing node.
        level: u32,
        /// Index of the missing node within its level.
        index: u64,
    },
}

/// Failure to produce a root or a proof from a [`NodeSource`].
#[derive(Debug, Error)]
pub enum ProofError<E> {
    /// The arguments do not describe a valid proof (index out of range, sizes out of order, …).
    #[error(transparent)]
    Invalid(#[from] MerkleError),
    /// The node source failed to return a node it was asked for.
    #[error("node source failed: {0}")]
    Source(E),
}

/// Identifies a complete subtree: the node at `level` covering leaves
/// `[index·2^level, (index+1)·2^level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height above the leaves; 0 is a leaf.
    pub level: u32,
    /// Position within the level, counting from 0 at the left edge of the tree.
    pub index: u64,
}

impl NodeId {
    /// Creates a node id.
    #[must_use]
    pub const fn new(level: u32, index: u64) -> Self {
        Self { level, index }
    }
}

/// Where complete-subtree hashes live: memory ([`MemoryTree`]), a database, a cache.
///
/// Implementations only need to answer for complete subtrees of the tree they store; the proof
/// functions never ask for anything else when the requested tree size is at most the stored size.
pub trait NodeSource {
    /// Error returned when a node cannot be read.
    type Error;

    /// Returns the hash of the complete subtree `(level, index)`; level 0 is the leaf hash of
    /// leaf `index`.
    ///
    /// # Errors
    /// Implementation-defined: typically a storage failure or a node that does not exist yet.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

impl<S: NodeSource + ?Sized> NodeSource for &S {
    type Error = S::Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

/// Largest power of two strictly smaller than `n` (the RFC's `k`). Requires `n >= 2`.
fn split_point(n: u64) -> u64 {
    // n >= 2, so n - 1 >= 1 and leading_zeros <= 63.
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Merkle tree hash of leaves `[begin, end)`, assembled from complete subtrees.
///
/// `begin` must be aligned the way every subtree in the RFC recursion is: a multiple of the
/// largest power of two not exceeding `end - begin`. The range is split into at most 64 complete
/// pieces (the binary decomposition of its size, largest first) that are folded right to left.
fn range_hash<S: NodeSource + ?Sized>(src: &S, begin: u64, end: u64) -> Result<Hash, S::Error> {
    let mut pieces = [[0u8; HASH_LEN]; 64];
    let mut count = 0usize;
    let mut position = begin;
    let mut remaining = end.saturating_sub(begin);
    while remaining > 0 {
        let level = 63 - remaining.leading_zeros();
        let width = 1u64 << level;
        if let Some(slot) = pieces.get_mut(count) {
            *slot = src.node(level, position >> level)?;
            count += 1;
        }
        position += width;
        remaining -= width;
    }
    let mut used = pieces.iter().take(count).rev();
    let Some(last) = used.next() else {
        return Ok(empty_root());
    };
    Ok(used.fold(*last, |acc, left| node_hash(left, &acc)))
}

/// Ranges `[begin, end)` whose hashes make up the RFC 9162 inclusion proof of `index` in a tree
/// of `size` leaves, root level first. Requires `index < size`.
fn inclusion_ranges(index: u64, size: u64, mut visit: impl FnMut(u64, u64)) {
    let (mut begin, mut end) = (0u64, size);
    while end - begin > 1 {
        let mid = begin + split_point(end - begin);
        if index < mid {
            // PATH(m, D[begin:mid]) : MTH(D[mid:end])
            visit(mid, end);
            end = mid;
        } else {
            // PATH(m - k, D[mid:end]) : MTH(D[begin:mid])
            visit(begin, mid);
            begin = mid;
        }
    }
}

/// Ranges whose hashes make up the RFC 9162 consistency proof from `old_size` to `new_size`,
/// root level first. Requires `0 < old_size < new_size`.
fn consistency_ranges(old_size: u64, new_size: u64, mut visit: impl FnMut(u64, u64)) {
    let (mut begin, mut end) = (0u64, new_size);
    let mut m = old_size;
    // `whole` is the RFC's flag b: true while the subtree is the old tree itself.
    let mut whole = true;
    loop {
        let n = end - begin;
        if m == n {
            if !whole {
                visit(begin, end);
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            visit(begin + k, end);
            end = begin + k;
        } else {
            // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            visit(begin, begin + k);
            begin += k;
            m -= k;
            whole = false;
        }
    }
}

/// Number of hashes in the inclusion proof of `leaf_index` in a tree of `tree_size` leaves.
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] if `leaf_index >= tree_size`.
pub fn inclusion_proof_len(leaf_index: u64, tree_size: u64) -> Result<usize, MerkleError> {
    if leaf_index >= tree_size {
        return Err(MerkleError::IndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    let mut len = 0usize;
    inclusion_ranges(leaf_index, tree_size, |_, _| len += 1);
    Ok(len)
}

/// Number of hashes in the consistency proof from `old_size` to `new_size` (0 when equal).
///
/// # Errors
/// [`MerkleError::OldSizeExceedsNewSize`] or [`MerkleError::EmptyOldTree`].
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Result<usize, MerkleError> {
    check_consistency_sizes(old_size, new_size)?;
    let mut len = 0usize;
    if old_size < new_size {
        consistency_ranges(old_size, new_size, |_, _| len += 1);
    }
    Ok(len)
}

fn check_consistency_sizes(old_size: u64, new_size: u64) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if old_size == 0 {
        return Err(MerkleError::EmptyOldTree);
    }
    Ok(())
}

/// Root of the tree made of the first `tree_size` leaves held by `src` ([`empty_root`] for 0).
///
/// Reads at most 64 nodes and computes at most 63 hashes.
///
/// # Errors
/// Whatever `src` returns for a node it cannot provide.
pub fn root<S: NodeSource + ?Sized>(src: &S, tree_size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, tree_size)
}

/// RFC 9162 inclusion proof (`PATH`) of leaf `leaf_index` in the tree of the first `tree_size`
/// leaves of `src`, ordered from the leaf's sibling up to the root's child.
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] (wrapped in [`ProofError::Invalid`]) or a source failure.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &S,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let len = inclusion_proof_len(leaf_index, tree_size)?;
    let mut ranges = Vec::with_capacity(len);
    inclusion_ranges(leaf_index, tree_size, |begin, end| {
        ranges.push((begin, end))
    });
    ranges
        .into_iter()
        .rev()
        .map(|(begin, end)| range_hash(src, begin, end).map_err(ProofError::Source))
        .collect()
}

/// RFC 9162 consistency proof (`PROOF(m, D[n])`) from the tree of the first `old_size` leaves to
/// the tree of the first `new_size` leaves of `src`. Empty when the sizes are equal.
///
/// # Errors
/// [`MerkleError::OldSizeExceedsNewSize`] or [`MerkleError::EmptyOldTree`] (wrapped in
/// [`ProofError::Invalid`]), or a source failure.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let len = consistency_proof_len(old_size, new_size)?;
    let mut ranges = Vec::with_capacity(len);
    if old_size < new_size {
        consistency_ranges(old_size, new_size, |begin, end| ranges.push((begin, end)));
    }
    ranges
        .into_iter()
        .rev()
        .map(|(begin, end)| range_hash(src, begin, end).map_err(ProofError::Source))
        .collect()
}

/// Shifts `fn_` and `sn` right together until `fn_` is odd or zero (RFC 9162 wording).
fn shift_until_odd_or_zero(fn_: &mut u64, sn: &mut u64) {
    while *fn_ != 0 && *fn_ & 1 == 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// Recomputes the root from an inclusion proof (RFC 9162 §2.1.3.2) without comparing it.
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] or [`MerkleError::WrongProofLength`].
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, MerkleError> {
    let expected = inclusion_proof_len(leaf_index, tree_size)?;
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let mut fn_ = leaf_index;
    let mut sn = tree_size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            shift_until_odd_or_zero(&mut fn_, &mut sn);
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is leaf `leaf_index` of the tree of `tree_size` leaves with root
/// `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`], [`MerkleError::WrongProofLength`] or
/// [`MerkleError::RootMismatch`].
pub fn verify_inclusion(
    leaf_hash: &Hash,
    leaf_index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    let computed = root_from_inclusion_proof(leaf_hash, leaf_index, tree_size, proof)?;
    if computed != *root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
///
/// Equal sizes require an empty proof and equal roots. `old_size == 0` is rejected with
/// [`MerkleError::EmptyOldTree`]: the empty tree is a prefix of every tree, so there is nothing to
/// prove.
///
/// # Errors
/// [`MerkleError::OldSizeExceedsNewSize`], [`MerkleError::EmptyOldTree`],
/// [`MerkleError::WrongProofLength`], [`MerkleError::OldRootMismatch`] or
/// [`MerkleError::NewRootMismatch`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let expected = consistency_proof_len(old_size, new_size)?;
    let wrong_length = MerkleError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::NewRootMismatch)
        };
    }

    // Step 2: when the old tree is a complete subtree its root is the first path element.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(wrong_length),
        }
    };
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = *first;
    let mut sr = *first;
    for c in rest {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            shift_until_odd_or_zero(&mut fn_, &mut sn);
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(MerkleError::NewRootMismatch);
    }
    Ok(())
}

/// The nodes that become complete when leaf `leaf_index` is appended, bottom-up: the leaf itself
/// `(0, leaf_index)`, then one parent per trailing one bit of `leaf_index`.
///
/// A persistent store writes exactly these nodes on append (amortized two per leaf); each is
/// final from then on. `leaf_index` is the tree size before the append.
pub fn completed_nodes(leaf_index: u64) -> impl Iterator<Item = NodeId> {
    // A tree never reaches 2^64 leaves, so level 63 is the highest node that can close.
    let top = leaf_index.trailing_ones().min(63);
    (0..=top).map(move |level| NodeId::new(level, leaf_index >> level))
}

/// Hashes of the [`completed_nodes`] of appending `leaf_hash` as leaf `leaf_index`, bottom-up.
///
/// Reads the left siblings (already complete nodes of the tree of `leaf_index` leaves) from
/// `src`, at most one per level. This is the write set of an append for a persistent store.
///
/// # Errors
/// Whatever `src` returns for a left sibling it cannot provide.
pub fn completed_node_hashes<S: NodeSource + ?Sized>(
    src: &S,
    leaf_index: u64,
    leaf_hash: Hash,
) -> Result<Vec<(NodeId, Hash)>, S::Error> {
    let mut out = Vec::with_capacity(leaf_index.trailing_ones() as usize + 1);
    let mut acc = leaf_hash;
    for id in completed_nodes(leaf_index) {
        if id.level > 0 {
            // The child on the path is the right child; its left sibling closed earlier.
            let left = src.node(id.level - 1, id.index << 1)?;
            acc = node_hash(&left, &acc);
        }
        out.push((id, acc));
    }
    Ok(out)
}

/// An append-only Merkle tree held in memory, storing every complete subtree hash.
///
/// Appends cost amortized `O(1)` hashes (one leaf hash plus the parents that close); roots and
/// proofs are served through the generic [`NodeSource`] functions in `O(log n)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is node `(l, i)`; `levels[0]` are the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Creates an empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf given its data (hashed with [`leaf_hash`]) and returns its index.
    pub fn append(&mut self, leaf_data: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(leaf_data))
    }

    /// Appends a leaf given its leaf hash and returns its index.
    pub fn append_leaf_hash(&mut self, leaf_hash: Hash) -> u64 {
        let index = self.size();
        let mut carry = leaf_hash;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                break;
            };
            row.push(carry);
            // An even row length means the last two entries are siblings that just closed.
            match row.as_slice() {
                [.., left, right] if row.len() % 2 == 0 => {
                    carry = node_hash(left, right);
                    level += 1;
                }
                _ => break,
            }
        }
        index
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Root hash of the whole tree ([`empty_root`] when empty).
    #[must_use]
    pub fn root(&self) -> Hash {
        // The right edge is the last node of every level with an odd number of nodes; fold them
        // from the lowest (rightmost) upwards.
        let mut acc: Option<Hash> = None;
        for row in &self.levels {
            if row.len() % 2 == 1
                && let Some(piece) = row.last()
            {
                acc = Some(match acc {
                    None => *piece,
                    Some(right) => node_hash(piece, &right),
                });
            }
        }
        acc.unwrap_or_else(empty_root)
    }

    /// Leaf hash of leaf `index`, if present.
    #[must_use]
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// Inclusion proof of leaf `leaf_index` in the current tree.
    ///
    /// # Errors
    /// [`MerkleError::IndexOutOfRange`] if the leaf does not exist.
    pub fn inclusion_proof(&self, leaf_index: u64) -> Result<Vec<Hash>, MerkleError> {
        inclusion_proof(self, leaf_index, self.size()).map_err(flatten)
    }

    /// Consistency proof from the tree of the first `old_size` leaves to the current tree.
    ///
    /// # Errors
    /// [`MerkleError::OldSizeExceedsNewSize`] or [`MerkleError::EmptyOldTree`].
    pub fn consistency_proof(&self, old_size: u64) -> Result<Vec<Hash>, MerkleError> {
        consistency_proof(self, old_size, self.size()).map_err(flatten)
    }
}

fn flatten(error: ProofError<MerkleError>) -> MerkleError {
    match error {
        ProofError::Invalid(e) | ProofError::Source(e) => e,
    }
}

impl NodeSource for MemoryTree {
    type Error = MerkleError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, MerkleError> {
        let missing = MerkleError::MissingNode { level, index };
        let row = usize::try_from(level)
            .ok()
            .and_then(|l| self.levels.get(l))
            .ok_or(missing.clone())?;
        usize::try_from(index)
            .ok()
            .and_then(|i| row.get(i))
            .copied()
            .ok_or(missing)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference MTH straight from the RFC 9162 §2.1.1 definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// Reference PATH (RFC 9162 §2.1.3.1), recomputing from leaves.
    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    /// Reference SUBPROOF (RFC 9162 §2.1.4.1), recomputing from leaves.
    fn subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if b { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            let mut p = subproof(m, &leaves[..k], b);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn tree_of(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let h = leaf_hash(&i.to_be_bytes());
            leaves.push(h);
            assert_eq!(tree.append_leaf_hash(h), i);
        }
        (tree, leaves)
    }

    #[test]
    fn empty_tree() {
        let tree = MemoryTree::new();
        assert_eq!(tree.size(), 0);
        assert_eq!(tree.root(), empty_root());
        assert_eq!(root(&tree, 0).unwrap(), empty_root());
        assert_eq!(
            tree.inclusion_proof(0),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(tree.consistency_proof(0), Err(MerkleError::EmptyOldTree));
    }

    #[test]
    fn matches_reference_definitions_for_small_trees() {
        let (tree, leaves) = tree_of(70);
        for n in 1..=70usize {
            let size = n as u64;
            assert_eq!(root(&tree, size).unwrap(), mth(&leaves[..n]), "root {n}");
            for m in 0..n {
                assert_eq!(
                    inclusion_proof(&tree, m as u64, size).unwrap(),
                    path(m, &leaves[..n]),
                    "path {m} {n}"
                );
            }
            for m in 1..=n {
                let expected = if m == n {
                    Vec::new()
                } else {
                    subproof(m, &leaves[..n], true)
                };
                assert_eq!(
                    consistency_proof(&tree, m as u64, size).unwrap(),
                    expected,
                    "subproof {m} {n}"
                );
            }
        }
        assert_eq!(tree.root(), mth(&leaves));
    }

    #[test]
    fn completed_nodes_match_memory_tree() {
        let mut tree = MemoryTree::new();
        for i in 0..300u64 {
            let h = leaf_hash(&i.to_le_bytes());
            let expected = completed_node_hashes(&tree, i, h).unwrap();
            let ids: Vec<NodeId> = completed_nodes(i).collect();
            assert_eq!(ids.len(), i.trailing_ones() as usize + 1);
            tree.append_leaf_hash(h);
            for (pos, (id, hash)) in expected.iter().enumerate() {
                assert_eq!(*id, ids[pos]);
                assert_eq!(tree.node(id.level, id.index).unwrap(), *hash);
            }
        }
        // Edge: never panics at the top of the index space.
        assert_eq!(completed_nodes(u64::MAX).count(), 64);
        assert_eq!(completed_nodes(u64::MAX - 1).count(), 1);
    }

    #[test]
    fn missing_nodes_are_errors() {
        let (tree, _) = tree_of(5);
        assert_eq!(
            tree.node(1, 2),
            Err(MerkleError::MissingNode { level: 1, index: 2 })
        );
        assert_eq!(
            tree.node(40, 0),
            Err(MerkleError::MissingNode {
                level: 40,
                index: 0
            })
        );
        assert!(matches!(
            inclusion_proof(&tree, 0, 6),
            Err(ProofError::Source(MerkleError::MissingNode { .. }))
        ));
        assert!(root(&tree, u64::MAX).is_err());
    }

    #[test]
    fn proof_lengths_at_u64_edges() {
        assert_eq!(inclusion_proof_len(0, u64::MAX), Ok(64));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Ok(63));
        assert_eq!(inclusion_proof_len(0, 1 << 63), Ok(63));
        assert_eq!(
            inclusion_proof_len(u64::MAX, u64::MAX),
            Err(MerkleError::IndexOutOfRange {
                index: u64::MAX,
                size: u64::MAX
            })
        );
        assert!(consistency_proof_len(1, u64::MAX).unwrap() <= MAX_PROOF_LEN);
        assert!(consistency_proof_len(u64::MAX - 1, u64::MAX).unwrap() <= MAX_PROOF_LEN);
        assert_eq!(consistency_proof_len(u64::MAX, u64::MAX), Ok(0));
        let h = [7u8; 32];
        for size in [1, 2, 3, u64::MAX - 1, u64::MAX] {
            for index in [0, size / 2, size - 1] {
                let len = inclusion_proof_len(index, size).unwrap();
                let proof = vec![h; len];
                assert_eq!(
                    verify_inclusion(&h, index, size, &proof, &[8u8; 32]),
                    Err(MerkleError::RootMismatch)
                );
            }
        }
        for (m, n) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 40, u64::MAX)] {
            let len = consistency_proof_len(m, n).unwrap();
            assert!(verify_consistency(m, n, &h, &h, &vec![h; len]).is_err());
        }
    }

    #[test]
    fn verify_rejects_bad_arguments() {
        let h = [1u8; 32];
        assert_eq!(
            verify_inclusion(&h, 0, 0, &[], &h),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            verify_inclusion(&h, 0, 2, &[], &h),
            Err(MerkleError::WrongProofLength {
                expected: 1,
                actual: 0
            })
        );
        assert_eq!(verify_inclusion(&h, 0, 1, &[], &h), Ok(()));
        assert_eq!(
            verify_consistency(3, 2, &h, &h, &[]),
            Err(MerkleError::OldSizeExceedsNewSize {
                old_size: 3,
                new_size: 2
            })
        );
        assert_eq!(
            verify_consistency(0, 0, &h, &h, &[]),
            Err(MerkleError::EmptyOldTree)
        );
        assert_eq!(verify_consistency(5, 5, &h, &h, &[]), Ok(()));
        assert_eq!(
            verify_consistency(5, 5, &h, &[2u8; 32], &[]),
            Err(MerkleError::NewRootMismatch)
        );
        assert_eq!(
            verify_consistency(5, 5, &h, &h, &[h]),
            Err(MerkleError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(
            hash_from_slice(&[0u8; 31]),
            Err(MerkleError::InvalidHashLength { len: 31 })
        );
        assert_eq!(hash_from_slice(&[9u8; 32]), Ok([9u8; 32]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_inclusion_proof_verifies_and_tampering_fails(
            size in 1u64..300,
            index_seed in any::<u64>(),
            byte in 0usize..32,
            bit in 0u8..8,
        ) {
            let (bigger, leaves) = tree_of(size + 2);
            let root = super::root(&bigger, size).unwrap();
            let index = index_seed % size;
            let proof = inclusion_proof(&bigger, index, size).unwrap();
            let leaf = leaves[index as usize];
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

            // Any flipped bit in any proof hash fails.
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][byte] ^= 1 << bit;
                prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            }
            // Flipped leaf or root fails.
            let mut bad_leaf = leaf;
            bad_leaf[byte] ^= 1 << bit;
            prop_assert!(verify_inclusion(&bad_leaf, index, size, &proof, &root).is_err());
            let mut bad_root = root;
            bad_root[byte] ^= 1 << bit;
            prop_assert_eq!(
                verify_inclusion(&leaf, index, size, &proof, &bad_root),
                Err(MerkleError::RootMismatch)
            );
            // Any other index fails.
            for other in 0..size {
                if other != index {
                    prop_assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
                }
            }
            // Checked against the genuine root of any other tree size, the proof fails. (Paired
            // with this tree's own root a wrong size can still hash identically; that pairing
            // never occurs in a signed checkpoint, which binds size and root together.)
            for other in 1..=(size + 2) {
                if other != size && index < other {
                    let other_root = super::root(&bigger, other).unwrap();
                    prop_assert!(
                        verify_inclusion(&leaf, index, other, &proof, &other_root).is_err(),
                        "size {} accepted", other
                    );
                }
            }
            // Truncated and extended proofs fail.
            if !proof.is_empty() {
                let truncated = verify_inclusion(&leaf, index, size, &proof[1..], &root);
                prop_assert!(
                    matches!(truncated, Err(MerkleError::WrongProofLength { .. })),
                    "truncated proof: {:?}",
                    truncated
                );
            }
            let mut longer = proof.clone();
            longer.push(root);
            let extended = verify_inclusion(&leaf, index, size, &longer, &root);
            prop_assert!(
                matches!(extended, Err(MerkleError::WrongProofLength { .. })),
                "extended proof: {:?}",
                extended
            );
        }

        #[test]
        fn every_consistency_proof_verifies_and_tampering_fails(
            new_size in 1u64..300,
            old_seed in any::<u64>(),
            byte in 0usize..32,
            bit in 0u8..8,
        ) {
            let (tree, _) = tree_of(new_size + 2);
            let old_size = old_seed % new_size + 1;
            let old_root = root(&tree, old_size).unwrap();
            let new_root = root(&tree, new_size).unwrap();
            let proof = consistency_proof(&tree, old_size, new_size).unwrap();
            prop_assert_eq!(
                verify_consistency(old_size, new_size, &old_root, &new_root, &proof),
                Ok(())
            );
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][byte] ^= 1 << bit;
                prop_assert!(
                    verify_consistency(old_size, new_size, &old_root, &new_root, &bad).is_err()
                );
            }
            let mut bad_old = old_root;
            bad_old[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(old_size, new_size, &bad_old, &new_root, &proof).is_err());
            let mut bad_new = new_root;
            bad_new[byte] ^= 1 << bit;
            prop_assert!(verify_consistency(old_size, new_size, &old_root, &bad_new, &proof).is_err());
            // The proof is for exactly (old_size, new_size): checked against the genuine roots of
            // any other pair of sizes it fails, unless the honest proof for that pair happens to
            // be the very same list of hashes.
            for other_old in 1..=new_size {
                for other_new in [new_size - 1, new_size, new_size + 1, new_size + 2] {
                    if (other_old, other_new) == (old_size, new_size) || other_old > other_new {
                        continue;
                    }
                    if consistency_proof(&tree, other_old, other_new).unwrap() == proof {
                        continue;
                    }
                    let genuine_old = root(&tree, other_old).unwrap();
                    let genuine_new = root(&tree, other_new).unwrap();
                    prop_assert!(
                        verify_consistency(other_old, other_new, &genuine_old, &genuine_new, &proof)
                            .is_err(),
                        "({}, {}) accepted", other_old, other_new
                    );
                }
            }
        }
    }
}
