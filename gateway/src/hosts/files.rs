//! Writing host configs safely: a read-only check first, a backup before the first change,
//! atomic replacement (a temporary file in the same directory, then rename), and a unified diff
//! for `--dry-run`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::HostError;

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

/// A unified diff of two texts (three lines of context), labelled with `label`.
pub fn unified_diff(label: &str, old: &str, new: &str) -> String {
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
    let mut out = format!("--- {label}\n+++ {label} (onboarded)\n");
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
    }
}
