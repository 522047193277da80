//! One gateway connection: upgrade, token check, frame loop, scripted writes.
//!
//! Each connection is one task that owns its WebSocket: it reads gateway frames and
//! answers them in place, and takes scripted writes from a control channel, so the
//! order of writes on the socket is the order the task decided them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::auth;
use super::behavior::{Answer, OpScope};
use super::events::{Initiator, Observed, Seen, Sent};
use super::replay::Kind;
use super::{lock, ConnEntry, Shared, StopMode};

/// How long the HTTP upgrade may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the gateway's close reply after sending a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Longest accepted frame line (the reference's 1 MiB message default, O2).
const MAX_LINE_BYTES: usize = 1 << 20;
/// Longest line excerpt echoed in a `malformed` report.
const REPORT_EXCERPT: usize = 500;

/// A scripted write or action for one connection.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// A JSON frame (`\n` appended) and what to report once it is written.
    Frame { frame: Value, report: Sent },
    /// Arbitrary text, as a text or binary message.
    Raw { text: String, binary: bool },
    /// A close frame, then wait for the reply.
    Close { code: u16, reason: String },
    /// Drop the TCP stream without a close frame.
    Drop,
    /// Stop reading the socket for this many milliseconds (0: read again now).
    Stall { ms: u64 },
}

type Ws = WebSocketStream<TcpStream>;

#[derive(Default)]
struct Captured {
    path: String,
    authorization: Option<String>,
}

/// Serves one accepted TCP stream until it ends or the emulator stops.
// The upgrade callback's error type (an HTTP response) is fixed by tungstenite.
#[allow(clippy::result_large_err)]
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<Option<StopMode>>,
) {
    let captured = Arc::new(Mutex::new(Captured::default()));
    let cap = Arc::clone(&captured);
    let path = shared.path.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let authorization = req
            .headers()
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let req_path = req.uri().path().to_owned();
        let wrong_path = req_path != path;
        *lock(&cap) = Captured {
            path: req_path,
            authorization,
        };
        if wrong_path {
            let mut refusal =
                ErrorResponse::new(Some(format!("no relay endpoint here; use {path}")));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            return Err(refusal);
        }
        Ok(resp)
    };
    let upgrade = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        // Small buffers as on the gateway side; tungstenite's own 64 MiB message
        // limit (lines have theirs, MAX_LINE_BYTES, checked per line).
        tokio_tungstenite::accept_hdr_async_with_config(
            tcp,
            callback,
            Some(socket_config(64 << 20)),
        ),
    );
    let mut ws = tokio::select! {
        r = upgrade => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                let path = lock(&captured).path.clone();
                let error = if path.is_empty() { e.to_string() } else { format!("{e} (path {path})") };
                shared.emit(Observed::Refused { peer, error });
                return;
            }
            Err(_) => {
                shared.emit(Observed::Refused { peer, error: "upgrade timed out".into() });
                return;
            }
        },
        _ = stop.changed() => return,
    };

    let authorization = lock(&captured).authorization.take();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let conn = match admit(&shared, peer, authorization.as_deref(), ctl_tx.clone()) {
        Admission::Admitted(conn) => conn,
        Admission::Refused {
            conn,
            code,
            reason,
            detail,
            gateway_id,
        } => {
            shared.emit(Observed::Rejected {
                conn,
                peer,
                code,
                reason: reason.clone(),
                detail,
                gateway_id,
            });
            let _ = ws.send(close_message(code, &reason)).await;
            // Let the gateway read the close frame and answer it; then hang up.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            return;
        }
    };

    let mut task = ConnTask {
        shared: Arc::clone(&shared),
        conn,
        ws,
        ctl_tx,
        lines: LineReader::new(MAX_LINE_BYTES),
        closed_code: None,
        closed_reason: String::new(),
        initiator: Initiator::Transport,
        drop_claimed: false,
        drop_delay: None,
        drop_at: None,
        stalled_until: None,
    };
    task.run(ctl_rx, stop).await;
    let ConnTask {
        closed_code,
        closed_reason,
        initiator,
        ..
    } = task;
    {
        let mut st = shared.lock_state();
        st.conns.remove(&conn);
        st.replay.connection_ended(conn);
    }
    shared.emit(Observed::Disconnected {
        conn,
        code: closed_code,
        reason: closed_reason,
        initiator,
    });
}

enum Admission {
    Admitted(u64),
    Refused {
        conn: u64,
        code: u16,
        reason: String,
        detail: String,
        gateway_id: Option<String>,
    },
}

/// Numbers the connection, checks its token (and any scripted `reject_next`) and
/// registers it, all under one lock so `status` never sees a half-admitted one.
fn admit(
    shared: &Shared,
    peer: SocketAddr,
    authorization: Option<&str>,
    ctl: mpsc::UnboundedSender<Ctl>,
) -> Admission {
    let mut st = shared.lock_state();
    st.next_conn += 1;
    let conn = st.next_conn;
    let mut gateway_id = None;
    if !st.secrets.is_empty() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match auth::verify_header(authorization, &st.secrets, now, shared.clock_skew_s) {
            Ok(v) => gateway_id = Some(v.gateway_id),
            Err(r) => {
                return Admission::Refused {
                    conn,
                    code: auth::CLOSE_UNAUTHORIZED,
                    reason: r.reason.to_owned(),
                    detail: r.detail,
                    gateway_id: r.gateway_id,
                }
            }
        }
    }
    if let Some(rule) = st.reject_next.as_mut() {
        let (code, reason) = (rule.code, rule.reason.clone());
        rule.count = rule.count.saturating_sub(1);
        if rule.count == 0 {
            st.reject_next = None;
        }
        return Admission::Refused {
            conn,
            code,
            reason,
            detail: "scripted reject_next".into(),
            gateway_id,
        };
    }
    st.conns.insert(
        conn,
        ConnEntry {
            peer,
            gateway_id: gateway_id.clone(),
            ctl,
            hellos: Vec::new(),
            idle: false,
            replayed: false,
            frames_in: 0,
            frames_out: 0,
        },
    );
    drop(st);
    shared.emit(Observed::Connected {
        conn,
        peer,
        gateway_id,
    });
    Admission::Admitted(conn)
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }))
}

struct ConnTask {
    shared: Arc<Shared>,
    conn: u64,
    ws: Ws,
    ctl_tx: mpsc::UnboundedSender<Ctl>,
    lines: LineReader,
    closed_code: Option<u16>,
    closed_reason: String,
    initiator: Initiator,
    /// Whether this connection's first descriptor has consulted the
    /// "descriptor then drop" mode.
    drop_claimed: bool,
    /// Drop this long after each descriptor (the mode claimed for it).
    drop_delay: Option<Duration>,
    /// When the drop is due (re-armed by every descriptor).
    drop_at: Option<Instant>,
    /// While set, the socket is not read (`stall`): frames the gateway sends
    /// wait in the TCP buffers and its pings get no pong until then.
    stalled_until: Option<Instant>,
}

/// Whether the frame loop goes on.
enum Flow {
    Continue,
    Stop,
}

impl ConnTask {
    async fn run(
        &mut self,
        mut ctl_rx: mpsc::UnboundedReceiver<Ctl>,
        mut stop: watch::Receiver<Option<StopMode>>,
    ) {
        let mut close_deadline: Option<Instant> = None;
        let mut stopping = false;
        loop {
            let deadline = close_deadline.unwrap_or_else(Instant::now);
            let drop_at = self.drop_at.unwrap_or_else(Instant::now);
            let stalled = self.stalled_until.is_some();
            let stall_end = self.stalled_until.unwrap_or_else(Instant::now);
            let flow = tokio::select! {
                msg = self.ws.next(), if !stalled => self.on_message(msg).await,
                _ = tokio::time::sleep_until(stall_end), if stalled => {
                    self.stalled_until = None;
                    self.shared.emit(Observed::Resumed { conn: self.conn });
                    Flow::Continue
                }
                Some(ctl) = ctl_rx.recv() => match ctl {
                    Ctl::Close { code, reason } => {
                        if self.close(code, reason).await {
                            close_deadline.get_or_insert_with(|| Instant::now() + CLOSE_GRACE);
                            Flow::Continue
                        } else {
                            Flow::Stop
                        }
                    }
                    Ctl::Drop => {
                        self.shared.emit(Observed::Dropped { conn: self.conn });
                        self.initiator = Initiator::Connector;
                        self.closed_reason = "dropped".into();
                        Flow::Stop
                    }
                    Ctl::Stall { ms } => {
                        self.stall(ms);
                        Flow::Continue
                    }
                    other => self.write_ctl(other).await,
                },
                _ = tokio::time::sleep_until(deadline), if close_deadline.is_some() => Flow::Stop,
                _ = tokio::time::sleep_until(drop_at), if self.drop_at.is_some() && !stopping => {
                    self.drop_after_handshake().await
                }
                changed = stop.changed(), if !stopping => {
                    stopping = true;
                    let mode = match changed {
                        Ok(()) => (*stop.borrow()).unwrap_or(StopMode::Abrupt),
                        Err(_) => StopMode::Abrupt,
                    };
                    match mode {
                        StopMode::Graceful => {
                            if self.close(1001, "going away".into()).await {
                                close_deadline.get_or_insert_with(|| Instant::now() + CLOSE_GRACE);
                                Flow::Continue
                            } else {
                                Flow::Stop
                            }
                        }
                        StopMode::Abrupt => {
                            self.shared.emit(Observed::Dropped { conn: self.conn });
                            self.initiator = Initiator::Connector;
                            self.closed_reason = "killed".into();
                            Flow::Stop
                        }
                    }
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// The "descriptor then drop" deadline passed. Frames the gateway already sent
    /// are answered first (a second hello gets its descriptor however the hellos
    /// were split into messages), then the TCP stream is dropped without a close
    /// frame — unless one of those answers was a descriptor that re-armed the
    /// deadline.
    async fn drop_after_handshake(&mut self) -> Flow {
        while self.stalled_until.is_none() {
            let Some(msg) = self.ws.next().now_or_never() else {
                break;
            };
            if let Flow::Stop = self.on_message(msg).await {
                return Flow::Stop;
            }
        }
        if self.drop_at.is_some_and(|at| at > Instant::now()) {
            return Flow::Continue;
        }
        self.shared.emit(Observed::Dropped { conn: self.conn });
        self.initiator = Initiator::Connector;
        self.closed_reason = "dropped after the handshake".into();
        Flow::Stop
    }

    /// `stall`: stop reading for `ms` (replacing a stall in progress); 0 ends one.
    fn stall(&mut self, ms: u64) {
        if ms == 0 {
            if self.stalled_until.take().is_some() {
                self.shared.emit(Observed::Resumed { conn: self.conn });
            }
            return;
        }
        self.stalled_until = Some(Instant::now() + Duration::from_millis(ms));
        self.shared.emit(Observed::Stalled {
            conn: self.conn,
            ms,
        });
    }

    /// After a descriptor was written: the first one claims the "descriptor then
    /// drop" mode for this connection; each one (re)arms its deadline.
    fn descriptor_written(&mut self) {
        if !self.drop_claimed {
            self.drop_claimed = true;
            let mut st = self.shared.lock_state();
            if let Some(mode) = st.handshake_drop.as_mut() {
                let (delay, more) = mode.claim();
                if !more {
                    st.handshake_drop = None;
                }
                self.drop_delay = Some(delay);
            }
        }
        if let Some(delay) = self.drop_delay {
            self.drop_at = Some(Instant::now() + delay);
        }
    }

    /// Sends a close frame; false when the socket is already unusable.
    async fn close(&mut self, code: u16, reason: String) -> bool {
        // The close handshake needs the reply read: a stall ends here.
        self.stall(0);
        if self.initiator == Initiator::Transport {
            self.initiator = Initiator::Connector;
            self.closed_code = Some(code);
            self.closed_reason = reason.clone();
        }
        match self.ws.send(close_message(code, &reason)).await {
            Ok(()) => {
                self.shared.emit(Observed::Sent {
                    conn: self.conn,
                    frame: Sent::Close { code, reason },
                });
                true
            }
            Err(e) => {
                self.send_failed(e.to_string());
                false
            }
        }
    }

    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Flow {
        let bytes = match msg {
            None => return Flow::Stop,
            Some(Err(e)) => {
                if self.initiator == Initiator::Transport {
                    self.closed_reason = e.to_string();
                }
                return Flow::Stop;
            }
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(Message::Close(frame))) => {
                if self.initiator == Initiator::Transport {
                    self.initiator = Initiator::Gateway;
                    self.closed_code = frame.as_ref().map(|f| u16::from(f.code));
                    self.closed_reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                }
                // tungstenite queues the close reply; the next read flushes it and ends.
                return Flow::Continue;
            }
            Some(Ok(_)) => return Flow::Continue,
        };
        for line in self.lines.push(&bytes) {
            let flow = match line {
                Ok(text) => self.on_line(&text).await,
                Err((excerpt, error)) => {
                    self.seen(Seen::Malformed {
                        line: excerpt,
                        error,
                    });
                    Flow::Continue
                }
            };
            if let Flow::Stop = flow {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn seen(&self, frame: Seen) {
        if !matches!(frame, Seen::Malformed { .. }) {
            if let Some(e) = self.shared.lock_state().conns.get_mut(&self.conn) {
                e.frames_in += 1;
            }
        }
        self.shared.emit(Observed::Seen {
            conn: self.conn,
            frame,
        });
    }

    async fn on_line(&mut self, line: &str) -> Flow {
        let frame: Value = match serde_json::from_str(line) {
            Ok(Value::Object(m)) => Value::Object(m),
            Ok(_) => {
                self.seen(Seen::Malformed {
                    line: excerpt(line),
                    error: "not a JSON object".into(),
                });
                return Flow::Continue;
            }
            Err(e) => {
                self.seen(Seen::Malformed {
                    line: excerpt(line),
                    error: format!("invalid JSON: {e}"),
                });
                return Flow::Continue;
            }
        };
        let field = |k: &str| frame.get(k).cloned();
        match frame.get("type").and_then(Value::as_str) {
            Some("hello") => {
                let platform = text_field(frame.get("platform")).unwrap_or_else(|| "relay".into());
                let bot_id = text_field(frame.get("botId")).unwrap_or_default();
                self.seen(Seen::Hello {
                    platform: platform.clone(),
                    bot_id: bot_id.clone(),
                    command_manifest: field("command_manifest"),
                });
                self.on_hello(platform, bot_id).await
            }
            Some("outbound") => {
                let request_id = field("requestId").unwrap_or(Value::Null);
                let action = field("action").unwrap_or(Value::Null);
                let platform = field("platform");
                self.seen(Seen::Outbound {
                    request_id: request_id.clone(),
                    action: action.clone(),
                    platform: platform.clone(),
                    bot_id: field("botId"),
                });
                self.on_outbound(request_id, &action, text_field(platform.as_ref()))
                    .await
            }
            Some("interrupt") => {
                self.seen(Seen::Interrupt {
                    session_key: field("session_key").unwrap_or(Value::Null),
                    reason: field("reason").unwrap_or(Value::Null),
                });
                Flow::Continue
            }
            Some("going_idle") => {
                self.seen(Seen::GoingIdle);
                self.on_going_idle().await
            }
            Some("inbound_ack") => {
                let buffer_id = field("bufferId").unwrap_or(Value::Null);
                let key = match &buffer_id {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                let known = match key {
                    Some(k) => {
                        let mut st = self.shared.lock_state();
                        let known = st.replay.ack(&k);
                        if known {
                            self.shared.persist(&st.replay);
                        }
                        known
                    }
                    None => false,
                };
                self.seen(Seen::InboundAck { buffer_id, known });
                Flow::Continue
            }
            _ => {
                self.seen(Seen::Unknown {
                    frame_type: field("type").unwrap_or(Value::Null),
                    frame: frame.clone(),
                });
                Flow::Continue
            }
        }
    }

    /// Descriptor for the platform, then every pending buffered item for that
    /// platform not yet written to this connection (plus, after the connection's
    /// first hello, the items that name no platform). A connector keeps a bot's
    /// buffer for that bot: a gateway fronting other platforms never gets it.
    async fn on_hello(&mut self, platform: String, bot_id: String) -> Flow {
        let (descriptor, due) = {
            let mut st = self.shared.lock_state();
            let first = st.conns.get_mut(&self.conn).map(|e| {
                e.hellos.push((platform.clone(), bot_id));
                !std::mem::replace(&mut e.replayed, true)
            });
            let descriptor = st.descriptors.answer(&platform);
            let due = match first {
                Some(first) => {
                    let gateway = st.conns.get(&self.conn).and_then(|e| e.gateway_id.clone());
                    st.replay
                        .take_due_on_hello(self.conn, &platform, first, gateway.as_deref())
                }
                None => Vec::new(),
            };
            (descriptor, due)
        };
        if let Some(d) = descriptor {
            let frame = json!({"type": "descriptor", "descriptor": d});
            if let Flow::Stop = self.write(frame, Sent::Descriptor { platform }).await {
                return Flow::Stop;
            }
            self.descriptor_written();
        }
        for entry in due {
            let replay = entry.deliveries > 1;
            let report = match entry.kind {
                Kind::Inbound => Sent::Inbound {
                    buffer_id: Some(entry.buffer_id.clone()),
                    replay,
                },
                Kind::Passthrough => Sent::Passthrough {
                    buffer_id: Some(entry.buffer_id.clone()),
                    replay,
                },
            };
            if let Flow::Stop = self.write(entry.frame(), report).await {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Answers an `outbound` for `platform` (the frame's, else the connection's
    /// first hello's, else `relay`), holding it to the ops that platform's
    /// descriptor advertises.
    async fn on_outbound(
        &mut self,
        request_id: Value,
        action: &Value,
        platform: Option<String>,
    ) -> Flow {
        if !(request_id.is_string() || request_id.is_number()) {
            self.shared.emit(Observed::Withheld {
                conn: self.conn,
                request_id,
            });
            return Flow::Continue;
        }
        let answer = {
            let mut st = self.shared.lock_state();
            let platform = platform.filter(|p| !p.is_empty()).unwrap_or_else(|| {
                st.conns
                    .get(&self.conn)
                    .and_then(|e| e.hellos.first())
                    .map(|(p, _)| p.clone())
                    .unwrap_or_else(|| "relay".into())
            });
            let supported = st.descriptors.advertised_ops(&platform);
            let scope = OpScope {
                platform: &platform,
                supported: supported.as_deref(),
            };
            st.outbound.answer(action, scope)
        };
        match answer {
            Answer::Withhold => {
                self.shared.emit(Observed::Withheld {
                    conn: self.conn,
                    request_id,
                });
                Flow::Continue
            }
            Answer::Result { result, delay } => {
                let frame =
                    json!({"type": "outbound_result", "requestId": request_id, "result": result});
                let report = Sent::OutboundResult { request_id, result };
                self.write_later(frame, report, delay).await
            }
        }
    }

    async fn on_going_idle(&mut self) -> Flow {
        let mode = {
            let mut st = self.shared.lock_state();
            if let Some(e) = st.conns.get_mut(&self.conn) {
                e.idle = true;
            }
            st.idle.clone()
        };
        if !mode.ack {
            return Flow::Continue;
        }
        let frame = json!({"type": "going_idle_ack"});
        self.write_later(
            frame,
            Sent::GoingIdleAck,
            Duration::from_millis(mode.delay_ms),
        )
        .await
    }

    /// Writes now, or hands the frame to a timer that feeds it back through the
    /// control channel (so the reader is never blocked by a scripted delay).
    async fn write_later(&mut self, frame: Value, report: Sent, delay: Duration) -> Flow {
        if delay.is_zero() {
            return self.write(frame, report).await;
        }
        let tx = self.ctl_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Ctl::Frame { frame, report });
        });
        Flow::Continue
    }

    async fn write_ctl(&mut self, ctl: Ctl) -> Flow {
        match ctl {
            Ctl::Frame { frame, report } => self.write(frame, report).await,
            Ctl::Raw { text, binary } => {
                let msg = if binary {
                    Message::Binary(text.clone().into_bytes().into())
                } else {
                    Message::Text(text.clone().into())
                };
                self.send(msg, Sent::Raw { line: text }).await
            }
            // Handled by the caller.
            Ctl::Close { .. } | Ctl::Drop | Ctl::Stall { .. } => Flow::Continue,
        }
    }

    /// Writes one frame as one text message (`\n`-terminated) and reports it.
    async fn write(&mut self, frame: Value, report: Sent) -> Flow {
        let mut text = frame.to_string();
        text.push('\n');
        self.send(Message::Text(text.into()), report).await
    }

    async fn send(&mut self, msg: Message, report: Sent) -> Flow {
        match self.ws.send(msg).await {
            Ok(()) => {
                if let Some(e) = self.shared.lock_state().conns.get_mut(&self.conn) {
                    e.frames_out += 1;
                }
                self.shared.emit(Observed::Sent {
                    conn: self.conn,
                    frame: report,
                });
                Flow::Continue
            }
            Err(e) => {
                self.send_failed(e.to_string());
                Flow::Stop
            }
        }
    }

    fn send_failed(&mut self, error: String) {
        if self.initiator == Initiator::Transport && self.closed_reason.is_empty() {
            self.closed_reason = error.clone();
        }
        self.shared.emit(Observed::SendFailed {
            conn: self.conn,
            error,
        });
    }
}

/// A string field as text: strings as they are, other scalars in JSON form.
fn text_field(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn excerpt(line: &str) -> String {
    if line.len() <= REPORT_EXCERPT {
        return line.to_owned();
    }
    let mut end = REPORT_EXCERPT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// Splits the byte stream of one connection into `\n`-terminated lines.
///
/// Frames may span messages and a message may carry several frames (PROTOCOL.md
/// §3); bytes are decoded per line, so a character split across binary messages
/// is whole again. Blank lines are skipped; over-long lines are discarded up to
/// their newline and reported.
pub(crate) struct LineReader {
    buf: Vec<u8>,
    discarding: bool,
    max: usize,
}

impl LineReader {
    pub(crate) fn new(max: usize) -> Self {
        LineReader {
            buf: Vec::new(),
            discarding: false,
            max,
        }
    }

    /// Complete lines in `data`, or `(excerpt, error)` for one that cannot be text.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Result<String, (String, String)>> {
        let mut out = Vec::new();
        for chunk in data.split_inclusive(|b| *b == b'\n') {
            let complete = chunk.last() == Some(&b'\n');
            let body = if complete {
                &chunk[..chunk.len() - 1]
            } else {
                chunk
            };
            if !self.discarding {
                self.buf.extend_from_slice(body);
                if self.buf.len() > self.max {
                    let head =
                        String::from_utf8_lossy(&self.buf[..REPORT_EXCERPT.min(self.buf.len())])
                            .into_owned();
                    out.push(Err((head, format!("line longer than {} bytes", self.max))));
                    self.buf = Vec::new();
                    self.discarding = true;
                }
            }
            if complete {
                if !self.discarding {
                    let bytes = std::mem::take(&mut self.buf);
                    match String::from_utf8(bytes) {
                        Ok(s) if s.trim().is_empty() => {}
                        Ok(s) => out.push(Ok(s)),
                        Err(e) => out.push(Err((
                            String::from_utf8_lossy(e.as_bytes()).into_owned(),
                            "not valid UTF-8".into(),
                        ))),
                    }
                }
                self.discarding = false;
            }
        }
        out
    }
}

/// The emulator's WebSocket limits: 16 KiB buffers, as on the gateway side, and
/// `max_message_bytes` per message and frame.
fn socket_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 << 10)
        .write_buffer_size(16 << 10)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

#[cfg(test)]
mod tests {
    use super::LineReader;

    #[test]
    fn lines_span_messages_and_long_ones_are_discarded() {
        let mut r = LineReader::new(8);
        assert!(r.push(b"{\"a\"").is_empty());
        assert_eq!(r.push(b":1}\n\n  \n{}\n{").len(), 2);
        let out = r.push(b"}\n0123456789");
        assert_eq!(out[0].as_ref().unwrap(), "{}");
        assert!(out[1].is_err());
        assert!(r.push(b"still the long line\nok\n")[0].as_ref().unwrap() == "ok");
        let bad = r.push(b"\xff\n");
        assert!(bad[0].is_err());
        // A two-byte character split across messages decodes once the line is whole.
        assert!(r.push(b"\xc3").is_empty());
        assert_eq!(r.push(b"\xa9\n")[0].as_ref().unwrap(), "é");
    }
}
