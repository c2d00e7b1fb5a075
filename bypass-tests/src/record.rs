//! [`Recorder`]: reads what `trustos-recording-upstream` recorded, the oracle of every bypass
//! test ("did this call reach the tool server, and in exactly which bytes?").
//!
//! The upstream appends each raw stdin line to the file named by `TRUSTOS_RECORD_FILE` before
//! rmcp sees it, so the file holds what got through the gateway whether or not it was valid.
//! Tool calls are found under every reading a lenient parser could take: a line with duplicate
//! `method`, `params` or `name` keys counts as a call of each tool any of its readings names,
//! and each element of a batch counts.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The environment variable naming the record file.
pub const RECORD_FILE_ENV: &str = "TRUSTOS_RECORD_FILE";

/// The environment variable selecting the upstream's variant (`rugpull`, `extra`, `paid`,
/// `paid-forger`).
pub const VARIANT_ENV: &str = "RECORDING_UPSTREAM_VARIANT";

/// A record file written by `trustos-recording-upstream`.
#[derive(Debug, Clone)]
pub struct Recorder {
    path: PathBuf,
}

impl Recorder {
    /// A recorder for the file at `path` (not created until the upstream starts).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// A recorder for `dir/recorded.jsonl`.
    pub fn in_dir(dir: &Path) -> Self {
        Self::new(dir.join("recorded.jsonl"))
    }

    /// The record file's path, the value for `TRUSTOS_RECORD_FILE`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command that starts the recording upstream `bin` recording into this file, with
    /// `variant` as `RECORDING_UPSTREAM_VARIANT` when given.
    pub fn upstream_command(&self, bin: impl AsRef<OsStr>, variant: Option<&str>) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env(RECORD_FILE_ENV, &self.path);
        match variant {
            Some(variant) => cmd.env(VARIANT_ENV, variant),
            None => cmd.env_remove(VARIANT_ENV),
        };
        cmd
    }

    /// Every recorded line, byte for byte, without its `\n`. Empty when nothing was recorded.
    ///
    /// # Panics
    ///
    /// When the record file exists but cannot be read.
    pub fn raw_lines(&self) -> Vec<Vec<u8>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot read record file {}: {e}", self.path.display()),
        };
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        // The file ends with `\n`, so the split's last piece is empty.
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        lines
    }

    /// Every recorded line as text (invalid UTF-8 replaced with U+FFFD; use
    /// [`Self::raw_lines`] for exact bytes).
    ///
    /// # Panics
    ///
    /// As [`Self::raw_lines`].
    pub fn lines(&self) -> Vec<String> {
        self.raw_lines()
            .iter()
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }

    /// The `tools/call` requests among the recorded lines, as `serde_json` reads them (last
    /// duplicate key wins). A batch line contributes each of its calls. A line is included
    /// when *any* reading of it is a `tools/call`.
    ///
    /// # Panics
    ///
    /// As [`Self::raw_lines`].
    pub fn tool_calls(&self) -> Vec<Value> {
        let mut calls = Vec::new();
        for line in self.raw_lines() {
            let (Ok(tree), Ok(value)) = (
                serde_json::from_slice::<Tree>(&line),
                serde_json::from_slice::<Value>(&line),
            ) else {
                continue;
            };
            match (tree, value) {
                (Tree::Array(trees), Value::Array(values)) => {
                    for (tree, value) in trees.iter().zip(values) {
                        if tree.is_tool_call() {
                            calls.push(value);
                        }
                    }
                }
                (tree, value) => {
                    if tree.is_tool_call() {
                        calls.push(value);
                    }
                }
            }
        }
        calls
    }

    /// Every tool name a recorded `tools/call` could be read as calling, duplicates and
    /// batch elements included.
    ///
    /// # Panics
    ///
    /// As [`Self::raw_lines`].
    pub fn tool_call_names(&self) -> Vec<String> {
        self.raw_lines()
            .iter()
            .filter_map(|line| serde_json::from_slice::<Tree>(line).ok())
            .flat_map(|tree| match tree {
                Tree::Array(items) => items.iter().flat_map(Tree::tool_call_names).collect(),
                other => other.tool_call_names(),
            })
            .collect()
    }

    /// The recorded lines that are not JSON at all (invalid syntax or UTF-8, lone surrogate
    /// escapes, trailing bytes), as text with invalid UTF-8 replaced.
    ///
    /// # Panics
    ///
    /// As [`Self::raw_lines`].
    pub fn unparseable_lines(&self) -> Vec<String> {
        self.raw_lines()
            .iter()
            .filter(|line| serde_json::from_slice::<Tree>(line).is_err())
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }

    /// Asserts that no recorded line can be read as a `tools/call` of `name`. Conservatively,
    /// an unparseable line that contains `name` fails it too: it reached the tool server and a
    /// lenient parser might have run it.
    ///
    /// # Panics
    ///
    /// When such a line was recorded (the message lists every recorded line).
    pub fn assert_no_tool_call_named(&self, name: &str) {
        let called = self.tool_call_names().iter().any(|n| n == name);
        let suspicious = self
            .raw_lines()
            .iter()
            .filter(|line| serde_json::from_slice::<Tree>(line).is_err())
            .any(|line| contains(line, name.as_bytes()));
        if called || suspicious {
            panic!(
                "tool {name:?} reached the upstream ({}); recorded lines:\n{}",
                if called {
                    "as a tools/call"
                } else {
                    "inside an unparseable line"
                },
                self.lines().join("\n")
            );
        }
    }

    /// Waits until at least `count` lines are recorded; returns them.
    ///
    /// # Errors
    ///
    /// When `timeout` passes first (the error lists what was recorded).
    ///
    /// # Panics
    ///
    /// As [`Self::raw_lines`].
    pub fn wait_for_lines(&self, count: usize, timeout: Duration) -> Result<Vec<Vec<u8>>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.raw_lines();
            if lines.len() >= count {
                return Ok(lines);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "expected {count} recorded lines within {timeout:?}, have {}:\n{}",
                    lines.len(),
                    self.lines().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A JSON document that keeps every member of an object, duplicates included, in order.
#[derive(Debug)]
enum Tree {
    /// A string.
    String(String),
    /// A number, boolean or null (their values do not matter here).
    Other,
    /// An array.
    Array(Vec<Tree>),
    /// An object's members in document order.
    Object(Vec<(String, Tree)>),
}

impl Tree {
    /// The members of an object named `key` (none for a non-object).
    fn members<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Tree> + 'a {
        let members: &[(String, Tree)] = match self {
            Tree::Object(members) => members,
            _ => &[],
        };
        members
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether any reading of this message has `method` `tools/call`.
    fn is_tool_call(&self) -> bool {
        self.members("method")
            .any(|m| matches!(m, Tree::String(s) if s == "tools/call"))
    }

    /// The tool names of every reading of this message, when it is a `tools/call`.
    fn tool_call_names(&self) -> Vec<String> {
        if !self.is_tool_call() {
            return Vec::new();
        }
        self.members("params")
            .flat_map(|params| params.members("name"))
            .filter_map(|name| match name {
                Tree::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

/// Builds a [`Tree`] from any JSON value.
struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Tree, E> {
        Ok(Tree::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Tree, E> {
        Ok(Tree::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Other)
    }

    fn visit_str<E>(self, s: &str) -> Result<Tree, E> {
        Ok(Tree::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Tree, E> {
        Ok(Tree::String(s))
    }

    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Tree>()? {
            members.push(member);
        }
        Ok(Tree::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder_with(lines: &[&[u8]]) -> (crate::TempDir, Recorder) {
        let dir = crate::TempDir::new("record-unit").unwrap();
        let recorder = Recorder::in_dir(dir.path());
        let mut bytes = Vec::new();
        for line in lines {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        std::fs::write(recorder.path(), bytes).unwrap();
        (dir, recorder)
    }

    #[test]
    fn duplicate_keys_and_batches_count_under_every_reading() {
        let (_dir, recorder) = recorder_with(&[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_database","name":"echo"}}"#,
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","method":"ping","params":{"name":"deploy"}}"#,
            br#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"transfer"}}]"#,
            br#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#,
            b"{\"method\":\"tools/call\",\"params\":{\"name\":\"exfiltrate\xff\"}}",
        ]);
        let mut names = recorder.tool_call_names();
        names.sort();
        assert_eq!(names, ["delete_database", "deploy", "echo", "transfer"]);
        assert_eq!(recorder.tool_calls().len(), 3);
        assert_eq!(recorder.unparseable_lines().len(), 1);
        assert_eq!(recorder.lines().len(), 5);
        recorder.assert_no_tool_call_named("read_balance");
        for name in [
            "delete_database",
            "echo",
            "deploy",
            "transfer",
            "exfiltrate",
        ] {
            let r = recorder.clone();
            let name = name.to_owned();
            assert!(std::panic::catch_unwind(move || r.assert_no_tool_call_named(&name)).is_err());
        }
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = crate::TempDir::new("record-unit").unwrap();
        let recorder = Recorder::in_dir(dir.path());
        assert!(recorder.raw_lines().is_empty());
        assert!(recorder.tool_calls().is_empty());
    }
}
