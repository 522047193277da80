//! Per-tenant counters as Prometheus text, served over plain HTTP by a tiny
//! responder, with the two probes an orchestrator asks: `GET /metrics`,
//! `GET /healthz` (the process serves), `GET /readyz` (every tenant's link is up
//! and handshaken); anything else is 404. Meant for a scraper on a private
//! network: no TLS, no auth, bounded request size and time.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::app::StatusBoard;
use crate::tenant::TenantStatus;

/// Every state a tenant can be in, so each appears as a 0/1 series.
const STATES: [&str; 9] = [
    "connecting",
    "handshaking",
    "ready",
    "handshake_failed",
    "backoff",
    "redial",
    "idle",
    "revoked",
    "stopped",
];

/// Serves `/metrics` on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, board: StatusBoard) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let board = board.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), respond(stream, board)).await;
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, board: StatusBoard) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let is = |p: &[u8], name: &[u8]| {
        p == name || p.strip_prefix(name).is_some_and(|r| r.starts_with(b"?"))
    };
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(p)) if is(p, b"/metrics") => ("200 OK", render(&board.snapshot())),
        (Some(b"GET"), Some(p)) if is(p, b"/healthz") => ("200 OK", "ok\n".to_string()),
        (Some(b"GET"), Some(p)) if is(p, b"/readyz") => match readiness(&board.snapshot()) {
            Ok(body) => ("200 OK", body),
            Err(body) => ("503 Service Unavailable", body),
        },
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// `/readyz`: ready when every tenant's link is up and handshaken (`ready` or
/// `idle`); otherwise the body names the tenants that are not, with their state.
fn readiness(tenants: &[TenantStatus]) -> Result<String, String> {
    let waiting: Vec<String> = tenants
        .iter()
        .filter(|t| !matches!(t.state.as_str(), "ready" | "idle"))
        .map(|t| format!("{} {}", t.tenant, t.state))
        .collect();
    if waiting.is_empty() {
        Ok(format!("ready: {} tenants\n", tenants.len()))
    } else {
        Err(format!("not ready: {}\n", waiting.join(", ")))
    }
}

/// The Prometheus text exposition of every tenant.
fn render(tenants: &[TenantStatus]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&TenantStatus) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for t in tenants {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\"}} {}",
                escape(&t.tenant),
                value(t)
            );
        }
    };
    family(
        "relay_frames_in_total",
        "counter",
        "Frames received from the connector.",
        &|t| t.frames_in,
    );
    family(
        "relay_frames_out_total",
        "counter",
        "Frames written to the connector.",
        &|t| t.frames_out,
    );
    family(
        "relay_pending_outbound",
        "gauge",
        "Outbound requests waiting for a result.",
        &|t| t.pending_outbound,
    );
    family(
        "relay_restarts_total",
        "counter",
        "Guest instance rebuilds after a failure.",
        &|t| t.restarts,
    );
    family(
        "relay_connected",
        "gauge",
        "1 while a socket to the connector is open.",
        &|t| u64::from(t.connected_since_ms.is_some()),
    );
    let _ = writeln!(
        out,
        "# HELP relay_state The tenant's current link state (1 for the current one).\n# TYPE relay_state gauge"
    );
    for t in tenants {
        for state in STATES {
            let _ = writeln!(
                out,
                "relay_state{{tenant=\"{}\",state=\"{state}\"}} {}",
                escape(&t.tenant),
                u64::from(t.state == state)
            );
        }
    }
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_tenant_is_up() {
        let t = |tenant: &str, state: &str| TenantStatus {
            tenant: tenant.into(),
            state: state.into(),
            ..TenantStatus::default()
        };
        assert_eq!(
            readiness(&[t("a", "ready"), t("b", "idle")]),
            Ok("ready: 2 tenants\n".into())
        );
        assert_eq!(
            readiness(&[t("a", "ready"), t("b", "backoff"), t("c", "revoked")]),
            Err("not ready: b backoff, c revoked\n".into())
        );
    }

    #[test]
    fn renders_counters_and_escapes_labels() {
        let text = render(&[TenantStatus {
            tenant: "a\"b".into(),
            state: "ready".into(),
            frames_in: 3,
            connected_since_ms: Some(1),
            ..TenantStatus::default()
        }]);
        assert!(
            text.contains("relay_frames_in_total{tenant=\"a\\\"b\"} 3"),
            "{text}"
        );
        assert!(text.contains("relay_connected{tenant=\"a\\\"b\"} 1"));
        assert!(text.contains("relay_state{tenant=\"a\\\"b\",state=\"ready\"} 1"));
        assert!(text.contains("relay_state{tenant=\"a\\\"b\",state=\"idle\"} 0"));
    }
}
