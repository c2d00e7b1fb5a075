//! Routes what a relay sends to the host: each answer to the POST waiting for it, everything
//! else to the session's GET stream.
//!
//! A POST registers a waiter for the ids of the requests in its body, then feeds the body to the
//! relay between two markers written into the relay's own outbox (`START`, `DONE`). The outbox is
//! a FIFO and a relay emits an answer without an id (`id: null`: a refused batch, unreadable
//! bytes) only while it handles the body, so such an answer arriving between the markers belongs
//! to that POST. Answers with ids go to the waiter that holds one of their ids (a batch answer,
//! already joined by the relay, by any of its ids). Server requests and notifications go to the
//! GET stream when one is open, and are dropped otherwise; so are answers nobody waits for (a
//! POST that timed out). Texts are passed on exactly as the relay wrote them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Marker written before a POST's body is fed to the relay (followed by the waiter's number).
pub(super) const START: &str = "\u{0}start:";
/// Marker written after the relay has handled a POST's body.
pub(super) const DONE: &str = "\u{0}done:";

/// Messages a GET stream may hold before further ones are dropped.
const STREAM_CAPACITY: usize = 256;

/// How a waiting POST is answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The JSON text to return: a response, a joined batch answer, or a refusal.
    Message(String),
    /// The body held no request and nothing was refused: 202 Accepted.
    Accepted,
}

struct Waiter {
    seq: u64,
    ids: Vec<Value>,
    tx: oneshot::Sender<Answer>,
    /// An answer without an id the relay gave while handling this waiter's body.
    unnamed: Option<String>,
}

#[derive(Default)]
struct State {
    next: u64,
    waiters: Vec<Waiter>,
    feeding: Option<u64>,
    stream: Option<mpsc::Sender<String>>,
}

/// The routing table of one relay's host-bound outbox.
#[derive(Default)]
pub(super) struct Router {
    state: Mutex<State>,
}

/// Removes its waiter when dropped (the POST answered, timed out, or went away).
pub(super) struct WaitGuard {
    router: Arc<Router>,
    seq: u64,
}

impl WaitGuard {
    /// The waiter's number, as the markers carry it.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.router.state().waiters.retain(|w| w.seq != self.seq);
    }
}

/// Where a message from the relay goes.
enum Destination {
    /// A response (or joined batch answer) with these ids (`null` included).
    Answer(Vec<Value>),
    /// A server request or notification.
    Stream,
}

fn destination(text: &str) -> Destination {
    let answer_id = |v: &Value| {
        v.get("method")
            .is_none()
            .then(|| v.get("id").cloned().unwrap_or(Value::Null))
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => {
            Destination::Answer(items.iter().filter_map(answer_id).collect())
        }
        Ok(value) if value.get("method").is_some() => Destination::Stream,
        Ok(value) => Destination::Answer(answer_id(&value).into_iter().collect()),
        Err(_) => Destination::Answer(Vec::new()),
    }
}

impl Router {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a POST waiting for the requests `ids`. `Err` names an id another POST of this
    /// connection still waits for (the relay would refuse it as a duplicate).
    pub(super) fn register(
        self: &Arc<Self>,
        ids: Vec<Value>,
    ) -> Result<(WaitGuard, oneshot::Receiver<Answer>), Value> {
        let mut state = self.state();
        if let Some(id) = ids
            .iter()
            .filter(|id| !id.is_null())
            .find(|id| state.waiters.iter().any(|w| w.ids.contains(id)))
        {
            return Err(id.clone());
        }
        let seq = state.next;
        state.next += 1;
        let (tx, rx) = oneshot::channel();
        state.waiters.push(Waiter {
            seq,
            ids,
            tx,
            unnamed: None,
        });
        let guard = WaitGuard {
            router: Arc::clone(self),
            seq,
        };
        Ok((guard, rx))
    }

    /// Opens the GET stream (replacing an earlier one, which then ends).
    pub(super) fn open_stream(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        self.state().stream = Some(tx);
        rx
    }

    /// Whether a POST waits or a GET stream is open (the connection is in use).
    pub(super) fn busy(&self) -> bool {
        let state = self.state();
        !state.waiters.is_empty() || state.stream.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Routes the relay's outbox until every sender is gone.
    pub(super) async fn run(self: Arc<Self>, mut outbox: mpsc::Receiver<String>) {
        while let Some(text) = outbox.recv().await {
            self.route(text);
        }
        // The relay is gone: waiters see their channel close; the stream ends.
        let mut state = self.state();
        state.waiters.clear();
        state.stream = None;
    }

    /// Routes one message from the relay's outbox.
    pub(super) fn route(&self, text: String) {
        let mut state = self.state();
        if let Some(seq) = text.strip_prefix(START).and_then(|n| n.parse().ok()) {
            state.feeding = Some(seq);
            return;
        }
        if let Some(seq) = text.strip_prefix(DONE).and_then(|n| n.parse::<u64>().ok()) {
            state.feeding = None;
            if let Some(pos) = state.waiters.iter().position(|w| w.seq == seq) {
                let waiter = &mut state.waiters[pos];
                let answer = match waiter.unnamed.take() {
                    Some(text) => Some(Answer::Message(text)),
                    None if waiter.ids.is_empty() => Some(Answer::Accepted),
                    None => None,
                };
                if let Some(answer) = answer {
                    let waiter = state.waiters.remove(pos);
                    let _ = waiter.tx.send(answer);
                }
            }
            return;
        }
        match destination(&text) {
            Destination::Stream => match state.stream.as_ref().map(|s| s.try_send(text)) {
                Some(Ok(())) => {}
                Some(Err(mpsc::error::TrySendError::Full(_))) => {
                    tracing::debug!("the GET stream is full: dropped a server message");
                }
                Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                    state.stream = None;
                    tracing::debug!("the GET stream closed: dropped a server message");
                }
                None => tracing::debug!("no GET stream open: dropped a server message"),
            },
            Destination::Answer(ids) => {
                let named: Vec<&Value> = ids.iter().filter(|id| !id.is_null()).collect();
                if let Some(pos) = state
                    .waiters
                    .iter()
                    .position(|w| w.ids.iter().any(|id| named.contains(&id)))
                {
                    let waiter = state.waiters.remove(pos);
                    let _ = waiter.tx.send(Answer::Message(text));
                    return;
                }
                if !named.is_empty() {
                    tracing::debug!("no POST waits for this answer: dropped");
                    return;
                }
                let feeding = state.feeding;
                if let Some(waiter) = state.waiters.iter_mut().find(|w| Some(w.seq) == feeding) {
                    waiter.unnamed.get_or_insert(text);
                } else if let Some(pos) = state.waiters.iter().position(|w| !w.ids.is_empty()) {
                    let waiter = state.waiters.remove(pos);
                    let _ = waiter.tx.send(Answer::Message(text));
                } else {
                    tracing::debug!("no POST waits for this answer without id: dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(rx: &mut oneshot::Receiver<Answer>) -> Option<Answer> {
        rx.try_recv().ok()
    }

    #[test]
    fn answers_go_to_their_waiter_and_unnamed_refusals_to_the_feeding_post() {
        let router = Arc::new(Router::default());
        let (_g1, mut rx1) = router.register(vec![json!(1)]).unwrap();
        let (_g2, mut rx2) = router.register(vec![json!("b"), json!(3)]).unwrap();
        assert_eq!(router.register(vec![json!(3)]).err(), Some(json!(3)));
        let (_g3, mut rx3) = router.register(vec![]).unwrap();

        router.route(format!("{START}2"));
        let refused = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x"}}"#;
        router.route(refused.to_owned());
        router.route(format!("{DONE}2"));
        assert_eq!(answer(&mut rx3), Some(Answer::Message(refused.to_owned())));

        let batch =
            r#"[{"jsonrpc":"2.0","id":3,"result":{}} ,{"jsonrpc":"2.0","id":"b","result":{}}]"#;
        router.route(batch.to_owned());
        assert_eq!(answer(&mut rx2), Some(Answer::Message(batch.to_owned())));
        assert_eq!(answer(&mut rx1), None);
        router.route(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_owned());
        assert!(matches!(answer(&mut rx1), Some(Answer::Message(_))));
    }

    #[test]
    fn bodies_without_requests_are_accepted_and_server_messages_streamed() {
        let router = Arc::new(Router::default());
        let (_g, mut rx) = router.register(vec![]).unwrap();
        router.route(format!("{START}0"));
        router.route(format!("{DONE}0"));
        assert_eq!(answer(&mut rx), Some(Answer::Accepted));

        let note = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        router.route(note.to_owned()); // no stream: dropped
        let mut stream = router.open_stream();
        router.route(note.to_owned());
        assert_eq!(stream.try_recv().ok().as_deref(), Some(note));
        assert!(router.busy());
    }

    #[test]
    fn an_unnamed_refusal_outside_a_feed_goes_to_the_oldest_waiter() {
        let router = Arc::new(Router::default());
        let (_g1, mut rx1) = router.register(vec![json!(7)]).unwrap();
        let (_g2, mut rx2) = router.register(vec![json!(8)]).unwrap();
        router.route(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#.to_owned());
        assert!(answer(&mut rx1).is_some());
        assert!(answer(&mut rx2).is_none());
        drop(_g2);
        assert!(!router.busy());
    }
}
