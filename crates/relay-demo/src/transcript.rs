//! How the demo prints: one short line per hop of a frame or event, tagged with
//! the tenant and the direction (connector → host → application and back).
//! Colours only when asked for, or when stdout is a terminal and `NO_COLOR` is
//! unset.

use std::io::IsTerminal as _;

/// `println!` that ignores a closed stdout (`relay-demo | head`): the demo
/// carries on and its exit status still counts.
macro_rules! say {
    () => {
        say!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// When to use ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Only when stdout is a terminal and `NO_COLOR` is not set.
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether colours are on for this process.
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// Which way a line travels. The host sits between the connector and the
/// application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A frame the connector wrote to the host.
    ConnToHost,
    /// An APP-PROTOCOL event the host gave the application.
    HostToApp,
    /// An APP-PROTOCOL command the application gave the host.
    AppToHost,
    /// A frame the host wrote to the connector.
    HostToConn,
    /// Something the application decided (no message travels).
    App,
    /// Something that happened at the connector itself.
    Conn,
}

impl Hop {
    /// Fixed width, arrows aligned.
    fn label(self) -> &'static str {
        match self {
            Hop::ConnToHost => "conn → host",
            Hop::HostToApp => "host → app ",
            Hop::AppToHost => " app → host",
            Hop::HostToConn => "host → conn",
            Hop::App => " app       ",
            Hop::Conn => "conn       ",
        }
    }
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
/// Tenant tags by position: cyan, magenta, yellow, green, blue.
const TAG_COLORS: [&str; 5] = ["\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m"];

/// Writes the transcript to stdout.
pub struct Transcript {
    color: bool,
    tags: Vec<String>,
    width: usize,
}

impl Transcript {
    /// `tags`: the tenant ids in order (they get their colours by position).
    pub fn new(color: bool, tags: &[&str]) -> Self {
        let width = tags.iter().map(|t| t.len()).max().unwrap_or(0);
        Transcript {
            color,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            width,
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// A plain line.
    pub fn plain(&self, text: &str) {
        say!("{text}");
    }

    /// A bold line (title, table header).
    pub fn bold(&self, text: &str) {
        say!("{}", self.paint(BOLD, text));
    }

    /// A dimmed line (legend, footnotes).
    pub fn dim(&self, text: &str) {
        say!("{}", self.paint(DIM, text));
    }

    /// The start of a scripted step.
    pub fn heading(&self, number: u32, title: &str) {
        say!();
        say!("{}", self.paint(BOLD, &format!("── {number}. {title}")));
    }

    /// One hop of one tenant: `[acme   ] conn → host  inbound "hi"`.
    pub fn line(&self, tenant: &str, hop: Hop, text: &str) {
        let tag = format!("[{tenant:<w$}]", w = self.width);
        let tag = match self.tags.iter().position(|t| t == tenant) {
            Some(i) => self.paint(TAG_COLORS[i % TAG_COLORS.len()], &tag),
            None => tag,
        };
        say!("{tag} {}  {text}", self.paint(DIM, hop.label()));
    }

    /// Something that concerns no single tenant (the connector restarting).
    pub fn event(&self, hop: Hop, text: &str) {
        let tag = format!("{:w$}", "", w = self.width + 2);
        say!(
            "{tag} {}  {}",
            self.paint(DIM, hop.label()),
            self.paint(BOLD, text)
        );
    }

    /// The failure that ends the demo (also goes to stderr from the caller).
    pub fn failure(&self, text: &str) {
        say!();
        say!("{}", self.paint(RED, &format!("✗ {text}")));
    }
}

/// A string as a short quoted literal (escapes kept, long text cut).
pub fn quote(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{:?}", cut + "…")
    }
}

/// A request id shortened for reading (`3f2a9c1e…`).
pub fn short_id(id: &str) -> String {
    if id.len() > 8 && id.is_char_boundary(8) {
        format!("{}…", &id[..8])
    } else {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_ids() {
        assert_eq!(quote("hi \"you\""), r#""hi \"you\"""#);
        assert_eq!(quote(&"x".repeat(80)).chars().count(), 62);
        assert_eq!(short_id("0123456789abcdef"), "01234567…");
        assert_eq!(short_id("m1"), "m1");
    }

    #[test]
    fn hops_align() {
        let widths: Vec<usize> = [
            Hop::ConnToHost,
            Hop::HostToApp,
            Hop::AppToHost,
            Hop::HostToConn,
            Hop::App,
            Hop::Conn,
        ]
        .iter()
        .map(|h| h.label().chars().count())
        .collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}");
    }
}
