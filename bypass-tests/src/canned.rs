//! A tiny HTTP API with canned answers, for upstreams no real server would be: a std
//! `TcpListener` on `127.0.0.1:0` in a thread, one request per connection (`Connection:
//! close`), answered by a function of the request head. Every head it reads goes to the test
//! too, so the test can check what reached the API (a payment header, a routing override) and
//! what did not.
//!
//! Only the head is read: the API is for requests without a body.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// A running canned API; stopped on drop.
pub struct CannedApi {
    url: String,
    heads: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
}

impl CannedApi {
    /// Listens on a free port and answers each request with `answer(head)`, the raw response
    /// bytes (see [`response`]). `head` is the request line and headers as received.
    ///
    /// # Errors
    ///
    /// When it cannot listen.
    pub fn start(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        let (send, heads) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { break };
                let head = read_head(&mut stream);
                let reply = answer(&head);
                // Handed over before answering: once the client has its answer, the test
                // sees the head.
                let _ = send.send(head);
                let _ = stream.write_all(&reply);
            }
        });
        Ok(Self { url, heads, stop })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request heads received since the last call, in arrival order.
    pub fn received(&self) -> Vec<String> {
        self.heads.try_iter().collect()
    }

    /// The next request head, waiting `timeout` at most.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.heads.recv_timeout(timeout).ok()
    }
}

impl Drop for CannedApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// The request head: bytes up to the blank line (or what arrived before the client stopped).
fn read_head(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0_u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An HTTP/1.1 response: `status` (e.g. `"402 Payment Required"`), `headers`, `body`, with
/// `Content-Length` and `Connection: close`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The request target of `head` (`/path?query` of its request line), empty when there is none.
pub fn request_target(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or_default()
}

/// The value of the first header named `name` (case-insensitive) in `head`, trimmed.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, value) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}
