//! The script vocabulary: commands that make the emulator act, from Rust or as
//! NDJSON lines on the CLI's stdin (`{"cmd": "<name>", ...}`, docs/CONNECTOR.md).

use serde::Deserialize;
use serde_json::Value;

use super::behavior::{HandshakeDrop, IdleMode, OutboundRule};

/// One scripted action. Commands that address a connection take `conn`; without
/// it they go to the newest live connection that has said hello (and is not idle).
// Commands are made once per script line; boxing the big variants would only
// make them clumsier to build.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Deliver an `inbound` frame.
    Inbound(InboundCmd),
    /// Deliver a `passthrough_forward` built from a Discord interaction.
    Passthrough(PassthroughCmd),
    /// Send `interrupt_inbound`.
    Interrupt(InterruptCmd),
    /// Send a close frame (default 1000).
    Close(CloseCmd),
    /// Drop the TCP stream without a close frame.
    Drop(Target),
    /// Stop reading a connection for a while: nothing it sends is read, so no
    /// ping is answered with a pong (tungstenite answers pings only as it reads).
    Stall(StallCmd),
    /// Send an arbitrary text (or binary) message.
    Raw(RawCmd),
    /// Re-send every pending buffered item now, on one connection.
    Replay(Target),
    /// Remove buffered items without an ack (all when `bufferId` is absent).
    Forget(ForgetCmd),
    /// Add an outbound answering rule.
    OutboundRule(OutboundRule),
    /// Remove all outbound rules (back to success for everything).
    ClearRules,
    /// How `going_idle` is answered.
    IdleMode(IdleMode),
    /// Answer the next connections' hellos, then drop their TCP streams.
    DropAfterHandshake(HandshakeDrop),
    /// Override the descriptor for one platform.
    Descriptor(DescriptorCmd),
    /// Accept the next connections' upgrades, then close them at once.
    RejectNext(RejectCmd),
    /// Replace the accepted secrets (empty: authentication off).
    Secrets(SecretsCmd),
    /// Report connections, pending buffer ids and rules.
    Status,
}

impl Command {
    /// A (buffered or live-only) inbound event for the default connection.
    pub fn inbound(event: Value, buffered: bool) -> Self {
        Command::Inbound(InboundCmd {
            event,
            buffered,
            ..InboundCmd::default()
        })
    }

    /// A Discord interaction forwarded as passthrough to the default connection.
    pub fn passthrough(interaction: Value, buffered: bool) -> Self {
        Command::Passthrough(PassthroughCmd {
            interaction: Some(interaction),
            buffered,
            ..PassthroughCmd::default()
        })
    }

    /// `interrupt_inbound` for a session.
    pub fn interrupt(session_key: impl Into<String>, chat_id: impl Into<String>) -> Self {
        Command::Interrupt(InterruptCmd {
            session_key: Value::String(session_key.into()),
            chat_id: Value::String(chat_id.into()),
            conn: None,
        })
    }

    /// A close frame to the default connection.
    pub fn close(code: u16, reason: impl Into<String>) -> Self {
        Command::Close(CloseCmd {
            code,
            reason: reason.into(),
            ..CloseCmd::default()
        })
    }

    /// A raw line (a `\n` is appended) to the default connection.
    pub fn raw(line: impl Into<String>) -> Self {
        Command::Raw(RawCmd {
            line: line.into(),
            ..RawCmd::default()
        })
    }
}

/// Which connection a command addresses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Target {
    /// Connection id (as in `connected`); default: newest live connection.
    #[serde(default)]
    pub conn: Option<u64>,
    /// Every live connection (for `close` and `drop`).
    #[serde(default)]
    pub all: bool,
}

/// `stall`: stop reading a connection for `ms` milliseconds (a keepalive test:
/// its pings go unanswered); `ms` 0 ends a stall at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StallCmd {
    /// How long to stop reading (default 5000).
    #[serde(default = "default_stall_ms")]
    pub ms: u64,
    /// Connection id; default: the newest connection.
    #[serde(default)]
    pub conn: Option<u64>,
    /// Every live connection.
    #[serde(default)]
    pub all: bool,
}

fn default_stall_ms() -> u64 {
    5000
}

impl Default for StallCmd {
    fn default() -> Self {
        StallCmd {
            ms: default_stall_ms(),
            conn: None,
            all: false,
        }
    }
}

/// `inbound`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InboundCmd {
    /// The `event` object, sent verbatim.
    pub event: Value,
    /// Keep it in the replay buffer until acked.
    #[serde(default)]
    pub buffered: bool,
    /// Use this id instead of a generated one (implies `buffered`).
    #[serde(default, rename = "bufferId")]
    pub buffer_id: Option<String>,
    /// Connection id.
    #[serde(default)]
    pub conn: Option<u64>,
}

/// `passthrough`: the forward is `{platform, botId, method, path, headers, bodyB64,
/// profile?}` with the interaction (minus its `token`, which a connector keeps)
/// serialised compactly and base64-encoded.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PassthroughCmd {
    /// The Discord interaction JSON.
    #[serde(default)]
    pub interaction: Option<Value>,
    /// The body as text instead (sent byte for byte, e.g. invalid JSON).
    #[serde(default)]
    pub body: Option<String>,
    /// `bodyB64` verbatim instead (e.g. invalid base64).
    #[serde(default, rename = "bodyB64")]
    pub body_b64: Option<String>,
    /// `forward.profile` (omitted when absent).
    #[serde(default)]
    pub profile: Option<Value>,
    /// Default `discord`.
    #[serde(default)]
    pub platform: Option<String>,
    /// Default: the bot id the target connection said hello with for the platform.
    #[serde(default, rename = "botId")]
    pub bot_id: Option<String>,
    /// Default `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// Default `/interactions`.
    #[serde(default)]
    pub path: Option<String>,
    /// Default `[["content-type", "application/json"]]`; any JSON value is sent as is.
    #[serde(default)]
    pub headers: Option<Value>,
    /// Keep it in the replay buffer until acked.
    #[serde(default)]
    pub buffered: bool,
    /// Use this id instead of a generated one (implies `buffered`).
    #[serde(default, rename = "bufferId")]
    pub buffer_id: Option<String>,
    /// Connection id.
    #[serde(default)]
    pub conn: Option<u64>,
}

/// `interrupt`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct InterruptCmd {
    /// Sent verbatim.
    #[serde(default)]
    pub session_key: Value,
    /// Sent verbatim.
    #[serde(default)]
    pub chat_id: Value,
    /// Connection id.
    #[serde(default)]
    pub conn: Option<u64>,
}

/// `close`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CloseCmd {
    /// Close code (default 1000).
    #[serde(default = "normal_close")]
    pub code: u16,
    /// Close reason (default empty).
    #[serde(default)]
    pub reason: String,
    /// Connection id.
    #[serde(default)]
    pub conn: Option<u64>,
    /// Every live connection.
    #[serde(default)]
    pub all: bool,
}

fn normal_close() -> u16 {
    1000
}

impl Default for CloseCmd {
    fn default() -> Self {
        CloseCmd {
            code: 1000,
            reason: String::new(),
            conn: None,
            all: false,
        }
    }
}

/// `raw`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RawCmd {
    /// The text to send.
    pub line: String,
    /// Append `\n` (default true).
    #[serde(default = "yes")]
    pub newline: bool,
    /// Send as a binary message (default text).
    #[serde(default)]
    pub binary: bool,
    /// Connection id.
    #[serde(default)]
    pub conn: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Default for RawCmd {
    fn default() -> Self {
        RawCmd {
            line: String::new(),
            newline: true,
            binary: false,
            conn: None,
        }
    }
}

/// `forget`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ForgetCmd {
    /// The id to drop; all when absent.
    #[serde(default, rename = "bufferId")]
    pub buffer_id: Option<String>,
}

/// `descriptor`: `descriptor` sets a custom one, `silent: true` answers nothing,
/// neither restores the built-in one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DescriptorCmd {
    /// The platform whose hello this answers.
    pub platform: String,
    /// The `descriptor` value to send.
    #[serde(default)]
    pub descriptor: Option<Value>,
    /// Do not answer hellos for this platform.
    #[serde(default)]
    pub silent: bool,
}

/// `reject_next`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RejectCmd {
    /// How many upcoming connections (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Close code (default 4401).
    #[serde(default = "unauthorized_code")]
    pub code: u16,
    /// Close reason (default `unauthorized`).
    #[serde(default = "unauthorized_reason")]
    pub reason: String,
}

fn one() -> u32 {
    1
}
fn unauthorized_code() -> u16 {
    super::auth::CLOSE_UNAUTHORIZED
}
fn unauthorized_reason() -> String {
    super::auth::UNAUTHORIZED.to_owned()
}

impl Default for RejectCmd {
    fn default() -> Self {
        RejectCmd {
            count: 1,
            code: unauthorized_code(),
            reason: unauthorized_reason(),
        }
    }
}

/// `secrets`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SecretsCmd {
    /// Current and rotated secrets.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// One live connection, as `status` and `connections()` report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// Connection id.
    pub conn: u64,
    /// Remote address.
    pub peer: std::net::SocketAddr,
    /// From the token, when authentication is on.
    pub gateway_id: Option<String>,
    /// `(platform, botId)` of every hello so far, in order.
    pub hellos: Vec<(String, String)>,
    /// Whether the gateway went idle on it.
    pub idle: bool,
    /// Frames received / written.
    pub frames_in: u64,
    /// Frames written.
    pub frames_out: u64,
}

/// Snapshot answered to `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Bound address.
    pub listening: std::net::SocketAddr,
    /// Live connections, oldest first.
    pub connections: Vec<ConnectionInfo>,
    /// Unacknowledged buffer ids, oldest first.
    pub pending: Vec<String>,
    /// Active outbound rules.
    pub rules: usize,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written to (or queued for) these connections; `buffer_id` for buffered items.
    Sent {
        conns: Vec<u64>,
        buffer_id: Option<String>,
    },
    /// Buffered with no live connection: replayed after the next hello.
    Queued { buffer_id: String },
    /// A setting changed.
    Done,
    /// Answer to `status`.
    Status(Status),
}

impl Outcome {
    /// The CLI's reply line for a command named `cmd`.
    pub fn to_json(&self, cmd: &str) -> Value {
        use serde_json::json;
        match self {
            Outcome::Sent { conns, buffer_id } => {
                json!({"ok": cmd, "conns": conns, "bufferId": buffer_id})
            }
            Outcome::Queued { buffer_id } => {
                json!({"ok": cmd, "conns": [], "bufferId": buffer_id, "queued": true})
            }
            Outcome::Done => json!({"ok": cmd}),
            Outcome::Status(s) => json!({"status": {
                "listening": s.listening.to_string(),
                "connections": s.connections.iter().map(|c| json!({
                    "conn": c.conn, "peer": c.peer.to_string(), "gateway_id": c.gateway_id,
                    "hellos": c.hellos.iter().map(|(p, b)| json!({"platform": p, "botId": b}))
                        .collect::<Vec<_>>(),
                    "idle": c.idle, "frames_in": c.frames_in, "frames_out": c.frames_out,
                })).collect::<Vec<_>>(),
                "pending": s.pending,
                "rules": s.rules,
            }}),
        }
    }
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line was not a known command.
    #[error("bad command: {0}")]
    Parse(String),
    /// A live-only delivery with no connection to take it.
    #[error("no live connection that has said hello")]
    NoConnection,
    /// `conn` named a connection that does not exist (any more).
    #[error("no connection {0}")]
    UnknownConnection(u64),
    /// A caller-chosen bufferId is still pending.
    #[error(transparent)]
    Duplicate(#[from] super::replay::DuplicateId),
    /// The emulator has stopped.
    #[error("connector stopped")]
    Stopped,
}

/// Parses one NDJSON command line.
pub fn parse_line(line: &str) -> Result<Command, CommandError> {
    serde_json::from_str(line).map_err(|e| CommandError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_commands() {
        let c = parse_line(r#"{"cmd":"inbound","event":{"text":"x"},"buffered":true}"#).unwrap();
        assert_eq!(c, Command::inbound(json!({"text": "x"}), true));
        let c = parse_line(r#"{"cmd":"close","code":4401,"reason":"expired"}"#).unwrap();
        assert_eq!(c, Command::close(4401, "expired"));
        assert_eq!(
            parse_line(r#"{"cmd":"drop"}"#).unwrap(),
            Command::Drop(Target::default())
        );
        assert_eq!(parse_line(r#"{"cmd":"status"}"#).unwrap(), Command::Status);
        assert_eq!(
            parse_line(r#"{"cmd":"stall","ms":1500,"conn":2}"#).unwrap(),
            Command::Stall(StallCmd {
                ms: 1500,
                conn: Some(2),
                all: false,
            })
        );
        assert_eq!(
            parse_line(r#"{"cmd":"stall"}"#).unwrap(),
            Command::Stall(StallCmd::default())
        );
        assert!(matches!(
            parse_line(r#"{"cmd":"outbound_rule","op":"send","reply":"fail","times":1}"#),
            Ok(Command::OutboundRule(_))
        ));
        assert_eq!(
            parse_line(r#"{"cmd":"drop_after_handshake","delay_ms":250,"times":2}"#).unwrap(),
            Command::DropAfterHandshake(HandshakeDrop {
                enabled: true,
                delay_ms: 250,
                times: Some(2),
            })
        );
        assert!(matches!(
            parse_line(r#"{"cmd":"drop_after_handshake","enabled":false}"#),
            Ok(Command::DropAfterHandshake(HandshakeDrop {
                enabled: false,
                ..
            }))
        ));
        assert!(parse_line(r#"{"cmd":"nope"}"#).is_err());
        assert!(parse_line("not json").is_err());
        assert!(parse_line(r#"{"cmd":"raw"}"#).is_err());
    }
}
