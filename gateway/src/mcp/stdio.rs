//! `trustos mcp`: the shim a host launches in place of an MCP server.
//!
//! It spawns the real server as its child (inheriting the environment the host gave the shim),
//! relays newline-delimited JSON-RPC between the host (its own stdin/stdout) and the child (or a
//! Streamable HTTP upstream with `--url`), and asks the daemon — started on demand — about every
//! `tools/call`. Diagnostics go to stderr, never stdout (stdout is the protocol).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::http_pump::{Outgoing, post_one};
use super::http_upstream::HttpUpstream;
use super::lines::{Line, read_line, write_lines};
use super::message::{self, Id, MAX_MESSAGE_BYTES, codes};
use super::relay::{Relay, RelayIdentity};
use crate::enforce::Authority;

/// Where the shim's upstream is.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// A child process speaking stdio.
    Command(Vec<String>),
    /// A Streamable HTTP endpoint.
    Url(String),
}

/// How long the child gets to exit after the host closes stdin.
const CHILD_GRACE: Duration = Duration::from_secs(5);

/// The host's end of stdin, read without tokio's blocking thread pool when it is a pipe or a
/// socket (what hosts give their servers): each relayed line then costs no thread hand-off.
/// Anything else (a file, a terminal) falls back to `tokio::io::stdin`.
fn host_input() -> Box<dyn AsyncRead + Unpin + Send> {
    match nonblocking(std::io::stdin().as_fd()) {
        Some(Stream::Pipe(fd)) => match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdin()),
        },
        Some(Stream::Socket(socket)) => Box::new(socket),
        None => Box::new(tokio::io::stdin()),
    }
}

/// The host's end of stdout, as [`host_input`].
fn host_output() -> Box<dyn AsyncWrite + Unpin + Send> {
    match nonblocking(std::io::stdout().as_fd()) {
        Some(Stream::Pipe(fd)) => match tokio::net::unix::pipe::Sender::from_owned_fd(fd) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdout()),
        },
        Some(Stream::Socket(socket)) => Box::new(socket),
        None => Box::new(tokio::io::stdout()),
    }
}

enum Stream {
    Pipe(OwnedFd),
    Socket(tokio::net::UnixStream),
}

/// A duplicate of `fd` that tokio can poll, when it is a FIFO or a unix socket.
fn nonblocking(fd: BorrowedFd<'_>) -> Option<Stream> {
    use std::os::unix::fs::FileTypeExt;
    let owned = fd.try_clone_to_owned().ok()?;
    let file = std::fs::File::from(owned);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        return Some(Stream::Pipe(OwnedFd::from(file)));
    }
    if kind.is_socket() {
        let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
        socket.set_nonblocking(true).ok()?;
        return tokio::net::UnixStream::from_std(socket)
            .ok()
            .map(Stream::Socket);
    }
    None
}

/// A stdio upstream: the child and its pipes.
pub struct ChildUpstream {
    /// The process (killed when dropped).
    pub child: Child,
    /// Its stdin, where the relay writes.
    pub input: ChildStdin,
    /// Its stdout, which the relay reads.
    pub output: ChildStdout,
}

/// Starts a stdio upstream: `command` with `env` added to the inherited environment, in `cwd`
/// when given, its stderr shared with ours.
pub fn spawn_upstream(
    command: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
) -> Result<ChildUpstream, String> {
    let (program, args) = command.split_first().ok_or("no upstream command")?;
    let mut builder = Command::new(program);
    builder
        .args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(cwd) = cwd {
        builder.current_dir(cwd);
    }
    let mut child = builder
        .spawn()
        .map_err(|err| format!("cannot start {program}: {err}"))?;
    let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the upstream's pipes are missing".into());
    };
    Ok(ChildUpstream {
        child,
        input,
        output,
    })
}

/// Reads host lines into the relay until end of input.
async fn pump_client<R: AsyncBufRead + Unpin>(
    relay: &Arc<Relay>,
    mut input: R,
    to_client: &mpsc::Sender<String>,
) {
    loop {
        match read_line(&mut input, MAX_MESSAGE_BYTES).await {
            Ok(Line::Complete(line)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                relay.from_client(&line).await;
            }
            Ok(Line::TooLong(size)) => {
                let text = message::error_response(
                    &Id::Null,
                    codes::PARSE_ERROR,
                    &format!("message of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
                    Some(serde_json::json!({"reason": "MCP_MESSAGE_TOO_LARGE"})),
                );
                let _ = to_client.send(text).await;
            }
            Ok(Line::Eof) | Err(_) => break,
        }
    }
}

/// Runs the shim until the host closes stdin or the upstream exits. Returns the exit code.
pub async fn run(
    identity: RelayIdentity,
    authority: Arc<dyn Authority>,
    upstream: Upstream,
) -> Result<u8, String> {
    let (to_client, client_outbox) = mpsc::channel::<String>(1024);
    let (to_upstream, upstream_outbox) = mpsc::channel::<String>(1024);
    let relay = Relay::new(identity, authority, to_client.clone(), to_upstream);
    let host_writer = tokio::spawn(write_lines(host_output(), client_outbox));
    let code = match upstream {
        Upstream::Command(command) => {
            run_child(&relay, command, upstream_outbox, &to_client).await?
        }
        Upstream::Url(url) => run_http(&relay, &url, upstream_outbox, &to_client).await?,
    };
    drop(to_client);
    drop(relay);
    let _ = tokio::time::timeout(Duration::from_secs(2), host_writer).await;
    Ok(code)
}

async fn run_child(
    relay: &Arc<Relay>,
    command: Vec<String>,
    upstream_outbox: mpsc::Receiver<String>,
    to_client: &mpsc::Sender<String>,
) -> Result<u8, String> {
    let ChildUpstream {
        mut child,
        input: child_in,
        output: child_out,
    } = spawn_upstream(&command, &BTreeMap::new(), None)?;
    let upstream_writer = tokio::spawn(write_lines(child_in, upstream_outbox));
    let upstream_reader =
        tokio::spawn(Arc::clone(relay).pump_upstream_lines(BufReader::new(child_out)));

    let client_relay = Arc::clone(relay);
    let client_sender = to_client.clone();
    let mut host_reader = tokio::spawn(async move {
        pump_client(&client_relay, BufReader::new(host_input()), &client_sender).await;
    });
    let status = tokio::select! {
        status = child.wait() => status.ok(),
        _ = &mut host_reader => {
            // The host is done: close the child's stdin and give it time to exit.
            upstream_writer.abort();
            match tokio::time::timeout(CHILD_GRACE, child.wait()).await {
                Ok(status) => status.ok(),
                Err(_) => {
                    let _ = child.kill().await;
                    None
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), upstream_reader).await;
    host_reader.abort();
    Ok(status
        .and_then(|status| status.code())
        .map_or(1, |code| u8::try_from(code).unwrap_or(1)))
}

async fn run_http(
    relay: &Arc<Relay>,
    url: &str,
    mut upstream_outbox: mpsc::Receiver<String>,
    to_client: &mpsc::Sender<String>,
) -> Result<u8, String> {
    let upstream = Arc::new(HttpUpstream::new(url, Vec::new()).map_err(|err| err.to_string())?);
    let sender_relay = Arc::clone(relay);
    let sender_upstream = Arc::clone(&upstream);
    // Each message goes out as its own POST; what comes back for it is fed to the relay.
    let sender = tokio::spawn(async move {
        while let Some(text) = upstream_outbox.recv().await {
            let outgoing = Outgoing::of(&text);
            let initialize = outgoing.is_initialize();
            let post = post_one(
                Arc::clone(&sender_relay),
                Arc::clone(&sender_upstream),
                text,
                outgoing,
            );
            // `initialize` must finish before anything else goes out (the session id).
            if initialize {
                post.await;
            } else {
                tokio::spawn(post);
            }
        }
    });
    pump_client(relay, BufReader::new(host_input()), to_client).await;
    sender.abort();
    let _ = upstream.close().await;
    Ok(0)
}
