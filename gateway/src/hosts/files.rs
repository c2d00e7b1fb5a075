//! Writing host configs safely: a read-only check first, a backup before the first change,
//! atomic replacement (a temporary file in the same directory, then rename), a record of what
//! was written, and a unified diff for `--dry-run`.
//!
//! The record (`<file>.trustos-written`, next to the backup) is one line, `sha256:<hex>`, the
//! SHA-256 of the bytes onboarding last wrote, followed by a line `edited-before-rewrite` when
//! the file had been changed by someone else between an earlier onboarding and that write (its
//! backup, from before the first onboarding, then no longer holds those changes). `--undo`
//! compares the file with it and refuses to throw later edits away unless forced. Backups made
//! before the record existed have none: undo cannot tell, warns, and restores as before.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use trustos_kernel::canonical::Digest;

use super::{HostError, written_path};

/// The marker line of a record whose file was edited before onboarding wrote it again.
const EDITED_MARKER: &str = "edited-before-rewrite";

/// Refuses a file that is read-only (checked on its mode, so also when running as root).
pub fn check_writable(path: &Path) -> Result<(), HostError> {
    match fs::metadata(path) {
        Ok(meta) if meta.permissions().readonly() => Err(HostError::ReadOnly {
            path: path.display().to_string(),
        }),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(HostError::io(path, &err)),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".trustos-tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` atomically, keeping the original's permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HostError> {
    let temp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    result.map_err(|err| {
        let _ = fs::remove_file(&temp);
        if err.kind() == std::io::ErrorKind::PermissionDenied {
            HostError::ReadOnly {
                path: path.display().to_string(),
            }
        } else {
            HostError::io(path, &err)
        }
    })
}

/// Copies `path` to `backup` unless a backup is already there (the first original wins).
pub fn backup_once(path: &Path, backup: &Path) -> Result<bool, HostError> {
    if backup.exists() {
        return Ok(false);
    }
    let bytes = fs::read(path).map_err(|err| HostError::io(path, &err))?;
    write_atomic(backup, &bytes)?;
    if let Ok(meta) = fs::metadata(path) {
        fs::set_permissions(backup, meta.permissions())
            .map_err(|err| HostError::io(backup, &err))?;
    }
    Ok(true)
}

/// What onboarding last wrote to a host config, as recorded next to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenRecord {
    /// The SHA-256 of the bytes written.
    pub digest: Digest,
    /// The file had been changed by someone else since an earlier onboarding when onboarding
    /// wrote it again (so those changes are not in the backup either).
    pub edited_before: bool,
}

impl WrittenRecord {
    fn to_text(self) -> String {
        if self.edited_before {
            format!("{}\n{EDITED_MARKER}\n", self.digest)
        } else {
            format!("{}\n", self.digest)
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let digest = lines.next()?.trim().parse().ok()?;
        let edited_before = match lines.next().map(str::trim) {
            None | Some("") => false,
            Some(EDITED_MARKER) => true,
            Some(_) => return None,
        };
        Some(Self {
            digest,
            edited_before,
        })
    }
}

/// The record of `path` (see the module docs), `None` when there is none (the file was never
/// written by onboarding, or by a version that kept no record).
pub fn read_record(path: &Path) -> Result<Option<WrittenRecord>, HostError> {
    let record = written_path(path);
    let text = match fs::read_to_string(&record) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(HostError::io(&record, &err)),
    };
    WrittenRecord::parse(&text)
        .map(Some)
        .ok_or_else(|| HostError::Io {
            path: record.display().to_string(),
            message: "not a record of what onboard wrote (`sha256:<hex>`); pass --force to restore the original anyway".to_owned(),
        })
}

/// Records that onboarding wrote `bytes` to `path`.
pub fn record_written(path: &Path, bytes: &[u8], edited_before: bool) -> Result<(), HostError> {
    let record = WrittenRecord {
        digest: Digest::of(bytes),
        edited_before,
    };
    write_atomic(&written_path(path), record.to_text().as_bytes())
}

/// Removes the record of `path` (after undo); a missing record is fine.
pub fn remove_record(path: &Path) -> Result<(), HostError> {
    let record = written_path(path);
    match fs::remove_file(&record) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(HostError::io(&record, &err)),
    }
}

/// Whether `--undo` can restore the backup of a host config without losing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndoSafety {
    /// The file holds exactly what onboarding wrote.
    Unchanged,
    /// The file changed after onboarding wrote it.
    Edited,
    /// The file holds what onboarding wrote, but it had been changed before onboarding ran
    /// again, and those changes are not in the backup.
    EditedBeforeRewrite,
    /// No record (a backup from a version that kept none): later edits cannot be detected.
    Unknown,
}

impl UndoSafety {
    /// Why undo would lose changes, in words; `None` when it would not (or cannot tell).
    pub fn why(self) -> Option<&'static str> {
        match self {
            Self::Unchanged | Self::Unknown => None,
            Self::Edited => Some("was changed after onboard wrote it"),
            Self::EditedBeforeRewrite => Some(
                "was changed after onboarding, before onboard ran on it again (the backup is from before the first onboarding)",
            ),
        }
    }
}

/// Compares a host config's current bytes with the record of what onboarding wrote.
pub fn undo_safety(path: &Path, current: &[u8]) -> Result<UndoSafety, HostError> {
    Ok(match read_record(path)? {
        None => UndoSafety::Unknown,
        Some(record) if record.digest != Digest::of(current) => UndoSafety::Edited,
        Some(record) if record.edited_before => UndoSafety::EditedBeforeRewrite,
        Some(_) => UndoSafety::Unchanged,
    })
}

/// A unified diff of two texts (three lines of context), labelled with `label`, the new side
/// marked `(onboarded)`.
pub fn unified_diff(label: &str, old: &str, new: &str) -> String {
    labelled_diff(label, "onboarded", old, new)
}

/// A unified diff of two texts (three lines of context), labelled with `label`, the new side
/// marked `(<new_mark>)`.
pub fn labelled_diff(label: &str, new_mark: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    // Common prefix and suffix first: the edits are small, the files may not be.
    let mut start = 0;
    while start < a.len() && start < b.len() && a[start] == b[start] {
        start += 1;
    }
    let mut end = 0;
    while end < a.len() - start
        && end < b.len() - start
        && a[a.len() - 1 - end] == b[b.len() - 1 - end]
    {
        end += 1;
    }
    let (mid_a, mid_b) = (&a[start..a.len() - end], &b[start..b.len() - end]);
    let ops = lcs_ops(mid_a, mid_b);
    // Lines tagged with their old/new line numbers.
    let mut lines: Vec<(char, &str)> = a[..start].iter().map(|l| (' ', *l)).collect();
    lines.extend(ops);
    lines.extend(a[a.len() - end..].iter().map(|l| (' ', *l)));
    let mut out = format!("--- {label}\n+++ {label} ({new_mark})\n");
    let changed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].0 != ' ').collect();
    let mut index = 0;
    while index < changed.len() {
        let hunk_start = changed[index].saturating_sub(3);
        let mut hunk_end = changed[index] + 1;
        while index < changed.len() && changed[index] <= hunk_end + 6 {
            hunk_end = changed[index] + 1;
            index += 1;
        }
        let hunk_end = (hunk_end + 3).min(lines.len());
        let old_before = lines[..hunk_start].iter().filter(|l| l.0 != '+').count();
        let new_before = lines[..hunk_start].iter().filter(|l| l.0 != '-').count();
        let old_len = lines[hunk_start..hunk_end]
            .iter()
            .filter(|l| l.0 != '+')
            .count();
        let new_len = lines[hunk_start..hunk_end]
            .iter()
            .filter(|l| l.0 != '-')
            .count();
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            old_before + 1,
            new_before + 1
        ));
        for (tag, line) in &lines[hunk_start..hunk_end] {
            out.push(*tag);
            out.push_str(line.trim_end_matches(['\n', '\r']));
            out.push('\n');
        }
    }
    out
}

fn lcs_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(char, &'a str)> {
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        let mut ops: Vec<(char, &str)> = a.iter().map(|l| ('-', *l)).collect();
        ops.extend(b.iter().map(|l| ('+', *l)));
        return ops;
    }
    let (n, m) = (a.len(), b.len());
    let mut table = vec![0u32; (n + 1) * (m + 1)];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * (m + 1) + j] = if a[i] == b[j] {
                table[(i + 1) * (m + 1) + j + 1] + 1
            } else {
                table[(i + 1) * (m + 1) + j].max(table[i * (m + 1) + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || table[(i + 1) * (m + 1) + j] >= table[i * (m + 1) + j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines() {
        let diff = unified_diff("f", "a\nb\nc\n", "a\nB\nc\n");
        assert!(diff.contains("-b\n+B\n"), "{diff}");
        assert!(diff.contains("@@ -1,3 +1,3 @@"), "{diff}");
        assert!(diff.starts_with("--- f\n+++ f (onboarded)\n"), "{diff}");
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let digest = Digest::of(b"x");
        for edited_before in [false, true] {
            let record = WrittenRecord {
                digest,
                edited_before,
            };
            assert_eq!(WrittenRecord::parse(&record.to_text()), Some(record));
        }
        assert_eq!(WrittenRecord::parse(""), None);
        assert_eq!(WrittenRecord::parse("sha256:zz\n"), None);
        assert_eq!(
            WrittenRecord::parse(&format!("{digest}\nsomething\n")),
            None
        );
    }

    #[test]
    fn undo_safety_follows_the_record() {
        let dir = std::env::temp_dir().join(format!("trustos-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mcp.json");
        fs::write(&file, b"written").unwrap();
        assert_eq!(undo_safety(&file, b"written").unwrap(), UndoSafety::Unknown);
        record_written(&file, b"written", false).unwrap();
        assert_eq!(
            undo_safety(&file, b"written").unwrap(),
            UndoSafety::Unchanged
        );
        assert_eq!(undo_safety(&file, b"edited").unwrap(), UndoSafety::Edited);
        record_written(&file, b"written", true).unwrap();
        assert_eq!(
            undo_safety(&file, b"written").unwrap(),
            UndoSafety::EditedBeforeRewrite
        );
        fs::write(written_path(&file), "nonsense").unwrap();
        assert!(matches!(
            undo_safety(&file, b"written"),
            Err(HostError::Io { .. })
        ));
        remove_record(&file).unwrap();
        remove_record(&file).unwrap();
        assert!(!written_path(&file).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
