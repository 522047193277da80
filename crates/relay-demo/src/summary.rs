//! The closing table: per tenant what the host counted (`HostHandle::status`)
//! and what the application saw, plus the wall time of the whole run.

use std::time::Duration;

use super::app::App;
use super::cast::CAST;
use super::transcript::Transcript;
use relay_host::TenantStatus;

const HEADERS: [&str; 9] = [
    "tenant",
    "platform",
    "state",
    "frames in",
    "frames out",
    "messages",
    "results",
    "reconnects",
    "restarts",
];

/// The rows, one per tenant in configuration order.
fn rows(statuses: &[TenantStatus], app: &App) -> Vec<[String; 9]> {
    statuses
        .iter()
        .map(|s| {
            // Every fronted platform (`discord+whatsapp`).
            let platform = CAST
                .iter()
                .find(|m| m.tenant == s.tenant)
                .map(|m| m.platforms())
                .unwrap_or_else(|| "?".into());
            let c = app.counts(&s.tenant);
            [
                s.tenant.clone(),
                platform,
                s.state.clone(),
                s.frames_in.to_string(),
                s.frames_out.to_string(),
                c.messages.to_string(),
                c.outbound_results.to_string(),
                c.reconnects().to_string(),
                s.restarts.to_string(),
            ]
        })
        .collect()
}

/// Text columns left-aligned, counts right-aligned.
fn render(rows: &[[String; 9]]) -> Vec<String> {
    let mut widths = HEADERS.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 9]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 3 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(HEADERS)];
    for row in rows {
        out.push(line(std::array::from_fn(|i| row[i].as_str())));
    }
    out
}

/// Prints the table and the totals.
pub fn print(
    out: &Transcript,
    statuses: &[TenantStatus],
    app: &App,
    connector_restarts: u32,
    elapsed: Duration,
) {
    out.heading(9, "summary");
    let lines = render(&rows(statuses, app));
    if let Some((header, body)) = lines.split_first() {
        out.bold(header);
        for l in body {
            out.plain(l);
        }
    }
    out.dim(
        "frames: relay frames counted by the host · results: outbound_result events · \
         restarts: sandbox rebuilds after a guest failure",
    );
    let times = if connector_restarts == 1 {
        "once".to_string()
    } else {
        format!("{connector_restarts} times")
    };
    out.plain(&format!(
        "connector restarted {times} · every step seen · wall time {:.2} s",
        elapsed.as_secs_f64()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let row = |t: &str, n: &str| {
            std::array::from_fn(|i| match i {
                0 => t.to_string(),
                3 => n.to_string(),
                _ => "x".to_string(),
            })
        };
        let lines = render(&[row("acme", "7"), row("initech", "12")]);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("tenant   platform"));
        assert!(lines[1].starts_with("acme     x"));
        // Counts are right-aligned: they end in the same column.
        let end = |l: &str, s: &str| l.find(s).map(|i| i + s.len());
        assert_eq!(end(&lines[1], " 7"), end(&lines[2], "12"));
    }
}
