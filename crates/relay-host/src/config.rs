//! Tenant configuration: `relay-host run` flags (one tenant, `default`) or a TOML
//! file with many tenants. The format is documented in docs/CONFIG.md.
//!
//! Secrets are never written in the file: each tenant names an environment
//! variable (`secret_env`) or a file (`secret_file`) instead, and an inline
//! `secret` is an error. Error messages name the file and the field, never a
//! secret's value.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use crate::app::HostOptions;
use crate::link;
use crate::sandbox::Limits;
use crate::secret::Secret;
use crate::spec::{IdentitySpec, TenantSpec, Timeouts};
use crate::tenant::RestartBudget;

/// A configuration that cannot be used; `origin` is the file (or "command line").
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// Where the configuration came from: the file's path, or `command line`.
    pub origin: String,
    /// What is wrong, naming the field (never a secret's value).
    pub message: String,
}

/// What the host runs: its tenants and host-wide options.
#[derive(Debug)]
pub struct Loaded {
    /// Every tenant, in the order configured; their ids are distinct.
    pub tenants: Vec<TenantSpec>,
    /// Host-wide settings: the file's `[host]` table over the defaults (just the
    /// defaults for a tenant given by flags).
    pub options: HostOptions,
}

/// One tenant given by flags (tenant id `default`): the `relay-host run` flags of
/// the same names, checked like the TOML fields they stand for.
#[derive(Debug, Clone, Default)]
pub(crate) struct SingleTenant {
    pub url: String,
    pub platform: String,
    pub bot_id: String,
    pub gateway_id: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub prompt_nonce: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// The tenant id used for a tenant given by flags.
const DEFAULT_TENANT: &str = "default";

/// Builds the one tenant of `relay-host run --url ...`.
pub(crate) fn from_flags(flags: &SingleTenant) -> Result<Loaded, ConfigError> {
    let fail = |message: String| ConfigError {
        origin: "command line".into(),
        message,
    };
    let section = TenantSection {
        id: DEFAULT_TENANT.into(),
        url: flags.url.clone(),
        identities: vec![IdentitySection {
            platform: flags.platform.clone(),
            bot_id: flags.bot_id.clone(),
            command_manifest: None,
        }],
        gateway_id: flags.gateway_id.clone(),
        secret_env: flags.secret_env.clone(),
        secret_file: flags.secret_file.clone(),
        secret: None,
        prompt_nonce: flags.prompt_nonce.clone(),
        ca_file: flags.ca_file.clone(),
        ..TenantSection::default()
    };
    let spec = tenant_spec(&section, &Defaults::default(), Path::new("."))
        .map_err(|m| fail(flag_names(&m)))?;
    Ok(Loaded {
        tenants: vec![spec],
        options: HostOptions::default(),
    })
}

/// Field names in messages about flags read as flags.
fn flag_names(message: &str) -> String {
    message
        .replace("`secret_env`", "--secret-env")
        .replace("`secret_file`", "--secret-file")
        .replace("`gateway_id`", "--gateway-id")
        .replace("`ca_file`", "--ca-file")
}

/// Reads and checks a TOML configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|message| ConfigError { origin, message })
}

/// Parses configuration text; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Loaded, String> {
    // Only the message and the line: toml's own rendering quotes the source line,
    // which could hold a secret someone pasted inline.
    let file: FileConfig = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => format!(
            "line {}: {}",
            text.as_bytes()[..span.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            e.message().trim_end()
        ),
        None => e.message().trim_end().to_string(),
    })?;
    if file.tenants.is_empty() {
        return Err("no tenant: add at least one [[tenants]] table".into());
    }
    let defaults = file.defaults.unwrap_or_default();
    let mut tenants = Vec::with_capacity(file.tenants.len());
    for (i, section) in file.tenants.iter().enumerate() {
        let spec = tenant_spec(section, &defaults, base).map_err(|m| {
            format!(
                "tenants[{i}] (`{}`): {m}",
                section.id.chars().take(80).collect::<String>()
            )
        })?;
        if tenants.iter().any(|t: &TenantSpec| t.id == spec.id) {
            return Err(format!(
                "tenants[{i}]: tenant id `{}` is used twice",
                spec.id
            ));
        }
        tenants.push(spec);
    }
    let host = file.host.unwrap_or_default();
    let mut options = HostOptions::default();
    if let Some(ms) = host.shutdown_grace_ms {
        options.shutdown_grace = Duration::from_millis(ms);
    }
    if let Some(n) = host.command_queue {
        if n == 0 {
            return Err("host.command_queue must be positive".into());
        }
        options.command_queue = n;
    }
    options.restart_budget = RestartBudget {
        max_restarts: host
            .restart_max
            .unwrap_or(options.restart_budget.max_restarts),
        window: host
            .restart_window_s
            .map(Duration::from_secs)
            .unwrap_or(options.restart_budget.window),
    };
    if options.restart_budget.window.is_zero() {
        return Err("host.restart_window_s must be positive".into());
    }
    Ok(Loaded { tenants, options })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<HostSection>,
    defaults: Option<Defaults>,
    #[serde(default)]
    tenants: Vec<TenantSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    shutdown_grace_ms: Option<u64>,
    command_queue: Option<usize>,
    restart_max: Option<u32>,
    restart_window_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    timeouts: Option<TimeoutsSection>,
    limits: Option<LimitsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantSection {
    id: String,
    url: String,
    #[serde(default)]
    identities: Vec<IdentitySection>,
    gateway_id: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    /// Present only to be refused with a clear message; never printed.
    secret: Option<toml::Value>,
    prompt_nonce: Option<String>,
    seed: Option<u64>,
    reconnect_jitter_percent: Option<u8>,
    token_ttl_s: Option<i64>,
    ca_file: Option<PathBuf>,
    component: Option<PathBuf>,
    timeouts: Option<TimeoutsSection>,
    limits: Option<LimitsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySection {
    platform: String,
    bot_id: String,
    command_manifest: Option<toml::Value>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsSection {
    handshake_ms: Option<u64>,
    outbound_ms: Option<u64>,
    going_idle_ms: Option<u64>,
    dial_ms: Option<u64>,
    ping_interval_ms: Option<u64>,
    pong_timeout_ms: Option<u64>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    stable_connection_ms: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    memory_mib: Option<u64>,
    cpu_ms_per_call: Option<u64>,
    max_line_bytes: Option<u32>,
    max_message_bytes: Option<u64>,
}

fn tenant_spec(s: &TenantSection, d: &Defaults, base: &Path) -> Result<TenantSpec, String> {
    if s.id.trim().is_empty() {
        return Err("`id` is empty".into());
    }
    if s.url.trim().is_empty() {
        return Err("`url` is empty".into());
    }
    if s.secret.is_some() {
        return Err(
            "an inline `secret` is not allowed: name an environment variable with `secret_env` or a file with `secret_file`".into(),
        );
    }
    if s.identities.is_empty() {
        return Err(
            "no identity: add at least one [[tenants.identities]] (platform, bot_id)".into(),
        );
    }
    let mut identities = Vec::with_capacity(s.identities.len());
    for (i, id) in s.identities.iter().enumerate() {
        if id.platform.trim().is_empty() {
            return Err(format!("identities[{i}].platform is empty"));
        }
        identities.push(IdentitySpec {
            platform: id.platform.clone(),
            bot_id: id.bot_id.clone(),
            command_manifest: id
                .command_manifest
                .as_ref()
                .map(|m| {
                    manifest_json(m).map_err(|e| format!("identities[{i}].command_manifest {e}"))
                })
                .transpose()?,
        });
    }
    let secret = read_secret(s, base)?;
    let gateway_id = s.gateway_id.as_ref().map(|g| g.trim().to_string());
    match (&gateway_id, &secret) {
        (Some(g), _) if g.is_empty() => return Err("`gateway_id` is empty".into()),
        (Some(_), None) => {
            return Err(
                "`gateway_id` is set but no secret: add `secret_env` or `secret_file`".into(),
            )
        }
        (None, Some(_)) => return Err("a secret is set but no `gateway_id`".into()),
        _ => {}
    }
    let extra_roots = match &s.ca_file {
        Some(p) => link::load_pem_roots(&base.join(p)).map_err(|e| format!("`ca_file`: {e}"))?,
        None => Vec::new(),
    };
    let mut spec =
        TenantSpec::new(s.id.clone(), s.url.trim(), identities).map_err(|e| e.to_string())?;
    spec.tls = link::tenant_client_config(&spec.id, &extra_roots)
        .map_err(|e| format!("`ca_file`: {e}"))?;
    spec.gateway_id = gateway_id;
    spec.secret = secret;
    if let Some(p) = &s.component {
        let path = base.join(p);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => spec.component = Some(path),
            Ok(_) => return Err(format!("`component`: {} is not a file", path.display())),
            Err(e) => return Err(format!("`component`: cannot read {}: {e}", path.display())),
        }
    }
    spec.prompt_nonce = s.prompt_nonce.clone();
    spec.seed = s.seed.unwrap_or_else(|| unconfigured_seed(&spec.id));
    if let Some(j) = s.reconnect_jitter_percent {
        if j > 100 {
            return Err("`reconnect_jitter_percent` must be at most 100".into());
        }
        spec.reconnect_jitter_percent = Some(j);
    }
    spec.token_ttl_seconds = s.token_ttl_s;
    spec.timeouts = timeouts(merge_timeouts(s.timeouts, d.timeouts), Timeouts::default())?;
    let limits = merge_limits(s.limits, d.limits);
    let mib = positive(limits.memory_mib, "limits.memory_mib")?.unwrap_or(16);
    spec.limits = Limits {
        memory_bytes: usize::try_from(mib.saturating_mul(1 << 20))
            .map_err(|_| "`limits.memory_mib` is too large".to_string())?,
        cpu_per_call: Duration::from_millis(
            positive(limits.cpu_ms_per_call, "limits.cpu_ms_per_call")?.unwrap_or(50),
        ),
    };
    spec.max_line_bytes = positive(
        limits.max_line_bytes.map(u64::from),
        "limits.max_line_bytes",
    )?
    .map(|n| n as u32);
    // Unset: the component's default (room for four lines, at least 4 MiB).
    spec.max_message_bytes = positive(limits.max_message_bytes, "limits.max_message_bytes")?
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(spec)
}

/// The seed of a tenant whose file sets none: random per process, the same for
/// one tenant id on every load, so a reload does not see a change that nobody
/// made (request ids still differ between runs of the process).
fn unconfigured_seed(id: &str) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    h.write(id.as_bytes());
    h.finish()
}

fn read_secret(s: &TenantSection, base: &Path) -> Result<Option<Secret>, String> {
    let value = match (&s.secret_env, &s.secret_file) {
        (Some(_), Some(_)) => return Err("set only one of `secret_env` and `secret_file`".into()),
        (Some(var), None) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("`secret_env`: environment variable {var} is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("`secret_env`: environment variable {var} is not UTF-8")
            }
        })?,
        (None, Some(p)) => {
            let path = base.join(p);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("`secret_file`: cannot read {}: {e}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err("the secret named by `secret_env` / `secret_file` is empty".into());
    }
    Ok(Some(Secret::new(value)))
}

fn manifest_json(v: &toml::Value) -> Result<String, String> {
    let json = match v {
        toml::Value::String(text) => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("is not JSON: {e}"))?,
        other => serde_json::to_value(other).map_err(|e| format!("cannot be converted: {e}"))?,
    };
    if !json.is_array() {
        return Err("must be an array".into());
    }
    Ok(json.to_string())
}

fn merge_timeouts(t: Option<TimeoutsSection>, d: Option<TimeoutsSection>) -> TimeoutsSection {
    let (t, d) = (t.unwrap_or_default(), d.unwrap_or_default());
    TimeoutsSection {
        handshake_ms: t.handshake_ms.or(d.handshake_ms),
        outbound_ms: t.outbound_ms.or(d.outbound_ms),
        going_idle_ms: t.going_idle_ms.or(d.going_idle_ms),
        dial_ms: t.dial_ms.or(d.dial_ms),
        ping_interval_ms: t.ping_interval_ms.or(d.ping_interval_ms),
        pong_timeout_ms: t.pong_timeout_ms.or(d.pong_timeout_ms),
        backoff_base_ms: t.backoff_base_ms.or(d.backoff_base_ms),
        backoff_max_ms: t.backoff_max_ms.or(d.backoff_max_ms),
        stable_connection_ms: t.stable_connection_ms.or(d.stable_connection_ms),
    }
}

fn merge_limits(l: Option<LimitsSection>, d: Option<LimitsSection>) -> LimitsSection {
    let (l, d) = (l.unwrap_or_default(), d.unwrap_or_default());
    LimitsSection {
        memory_mib: l.memory_mib.or(d.memory_mib),
        cpu_ms_per_call: l.cpu_ms_per_call.or(d.cpu_ms_per_call),
        max_line_bytes: l.max_line_bytes.or(d.max_line_bytes),
        max_message_bytes: l.max_message_bytes.or(d.max_message_bytes),
    }
}

fn timeouts(t: TimeoutsSection, default: Timeouts) -> Result<Timeouts, String> {
    // Unset values stay unset: the component's defaults are the only ones.
    let ms = |v: Option<u64>, name: &str| -> Result<Option<Duration>, String> {
        Ok(positive(v, &format!("timeouts.{name}"))?.map(Duration::from_millis))
    };
    let t = Timeouts {
        handshake: ms(t.handshake_ms, "handshake_ms")?,
        outbound: ms(t.outbound_ms, "outbound_ms")?,
        going_idle: ms(t.going_idle_ms, "going_idle_ms")?,
        dial: ms(t.dial_ms, "dial_ms")?.unwrap_or(default.dial),
        ping_interval: ms(t.ping_interval_ms, "ping_interval_ms")?,
        pong_timeout: ms(t.pong_timeout_ms, "pong_timeout_ms")?,
        backoff_base: ms(t.backoff_base_ms, "backoff_base_ms")?,
        backoff_max: ms(t.backoff_max_ms, "backoff_max_ms")?,
        stable_connection: ms(t.stable_connection_ms, "stable_connection_ms")?,
    };
    match (t.backoff_base, t.backoff_max) {
        (Some(base), Some(max)) if max < base => {
            Err("`timeouts.backoff_max_ms` must be at least `timeouts.backoff_base_ms`".into())
        }
        _ => Ok(t),
    }
}

fn positive(v: Option<u64>, name: &str) -> Result<Option<u64>, String> {
    match v {
        Some(0) => Err(format!("`{name}` must be positive")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const GOOD: &str = r#"
[host]
shutdown_grace_ms = 2000

[defaults.limits]
memory_mib = 32

[[tenants]]
id = "acme"
url = "https://relay.example.com"
prompt_nonce = "acme"
seed = 7

[[tenants.identities]]
platform = "discord"
bot_id = "123"
command_manifest = [{ name = "ask", description = "Ask the agent" }]

[tenants.timeouts]
outbound_ms = 5000

[[tenants]]
id = "beta"
url = "ws://127.0.0.1:9000"
gateway_id = "gw-beta"
secret_env = "RELAY_HOST_CONFIG_TEST_SECRET"

[[tenants.identities]]
platform = "slack"
bot_id = "B1"
"#;

    #[test]
    fn parses_a_full_file() {
        std::env::set_var("RELAY_HOST_CONFIG_TEST_SECRET", " s3cret\n");
        let loaded = parse(GOOD, Path::new(".")).unwrap();
        assert_eq!(loaded.options.shutdown_grace, Duration::from_secs(2));
        let [a, b] = &loaded.tenants[..] else {
            panic!("two tenants")
        };
        assert_eq!(a.id, "acme");
        assert_eq!(a.seed, 7);
        assert_eq!(a.limits.memory_bytes, 32 << 20);
        assert_eq!(a.timeouts.outbound, Some(Duration::from_secs(5)));
        let manifest: serde_json::Value =
            serde_json::from_str(a.identities[0].command_manifest.as_deref().unwrap()).unwrap();
        assert_eq!(
            manifest,
            serde_json::json!([{"name": "ask", "description": "Ask the agent"}])
        );
        assert_eq!(b.secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{b:?}").contains("s3cret"));
    }

    fn error_of(text: &str) -> String {
        std::env::set_var("RELAY_HOST_CONFIG_TEST_SECRET", " s3cret\n");
        match parse(text, Path::new(".")) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_name_the_field_and_never_the_secret() {
        let inline = GOOD.replace(
            "secret_env = \"RELAY_HOST_CONFIG_TEST_SECRET\"",
            "secret = \"hunter2\"",
        );
        let e = error_of(&inline);
        assert!(e.contains("inline `secret`") && e.contains("beta"), "{e}");
        assert!(!e.contains("hunter2"));

        let broken = GOOD.replace(
            "secret_env = \"RELAY_HOST_CONFIG_TEST_SECRET\"",
            "secret = \"hunter2",
        );
        assert!(!error_of(&broken).contains("hunter2"));

        let e = error_of(&GOOD.replace("prompt_nonce", "promt_nonce"));
        assert!(e.contains("line 11") && e.contains("promt_nonce"), "{e}");

        let e = error_of(&GOOD.replace("memory_mib = 32", "memory_mib = 0"));
        assert!(e.contains("limits.memory_mib"), "{e}");

        let e = error_of(&GOOD.replace("secret_env = \"RELAY_HOST_CONFIG_TEST_SECRET\"", ""));
        assert!(e.contains("gateway_id"), "{e}");

        let e = error_of(&GOOD.replace(
            "secret_env = \"RELAY_HOST_CONFIG_TEST_SECRET\"",
            "secret_env = \"RELAY_HOST_CONFIG_TEST_UNSET\"",
        ));
        assert!(e.contains("RELAY_HOST_CONFIG_TEST_UNSET"), "{e}");

        let e = error_of(&GOOD.replace("id = \"beta\"", "id = \"acme\""));
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn loading_the_same_file_twice_changes_nothing() {
        std::env::set_var("RELAY_HOST_CONFIG_TEST_SECRET", " s3cret\n");
        let dir = std::env::temp_dir().join(format!("relay-config-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), TEST_CA_PEM).unwrap();
        // No seed for `beta`, an extra root for `acme`: neither may look changed.
        let text = GOOD.replace("seed = 7\n", "seed = 7\nca_file = \"ca.pem\"\n");
        let once = parse(&text, &dir).unwrap();
        let twice = parse(&text, &dir).unwrap();
        for (a, b) in once.tenants.iter().zip(&twice.tenants) {
            assert_eq!(a.differences(b), Vec::<&str>::new(), "{}", a.id);
        }
        // Each tenant keeps a TLS configuration of its own.
        assert!(!Arc::ptr_eq(&once.tenants[0].tls, &once.tenants[1].tls));

        let other_bot = parse(&text.replace("bot_id = \"B1\"", "bot_id = \"B2\""), &dir).unwrap();
        assert_eq!(
            once.tenants[1].differences(&other_bot.tenants[1]),
            ["identities"]
        );
        assert!(once.tenants[0]
            .differences(&other_bot.tenants[0])
            .is_empty());

        std::env::set_var("RELAY_HOST_CONFIG_TEST_SECRET", "rotated");
        let rotated = parse(&text, &dir).unwrap();
        std::env::set_var("RELAY_HOST_CONFIG_TEST_SECRET", " s3cret\n");
        assert_eq!(once.tenants[1].differences(&rotated.tenants[1]), ["secret"]);

        let seeded = parse(&text.replace("seed = 7", "seed = 8"), &dir).unwrap();
        assert_eq!(once.tenants[0].differences(&seeded.tenants[0]), ["seed"]);
        let no_ca = parse(&text.replace("ca_file = \"ca.pem\"\n", ""), &dir).unwrap();
        assert_eq!(once.tenants[0].differences(&no_ca.tenants[0]), ["tls"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A self-signed CA certificate (`openssl req -x509`), only ever parsed.
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBnzCCAUWgAwIBAgIUU6SazCAhnOZrnCeqbav5T0t93IQwCgYIKoZIzj0EAwIw
JDEiMCAGA1UEAwwZcmVsYXktaG9zdCBjb25maWcgdGVzdCBDQTAgFw0yNjEyMDIw
NzI2NDFaGA8yMTI2MTEwODA3MjY0MVowJDEiMCAGA1UEAwwZcmVsYXktaG9zdCBj
b25maWcgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABE8E7m6zRL+T
pC9+xHoB8umQLkjkB6OniQ2D+df/VrfOQKAqAt4CiODrcJYjnS04ttySxtnH2zU8
JT0C18mspvKjUzBRMB0GA1UdDgQWBBRa7pdzzNGIpInYTV/iEB2WPnr+FjAfBgNV
HSMEGDAWgBRa7pdzzNGIpInYTV/iEB2WPnr+FjAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0gAMEUCIQDRKgMAcz/vbVYx0GQrJIwyQFvCLTbWro9BZ08pyLha
TQIgbeGhEaw6oDfRG9c6+lmz+uUZDLs+6j4RRJD9ou1FTfc=
-----END CERTIFICATE-----
";

    #[test]
    fn component_paths_are_relative_to_the_file_and_must_exist() {
        let dir =
            std::env::temp_dir().join(format!("relay-config-component-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("guest.wasm"), b"\0asm").unwrap();
        let text = "[[tenants]]\nid = \"a\"\nurl = \"ws://x\"\ncomponent = \"guest.wasm\"\n\
                    [[tenants.identities]]\nplatform = \"discord\"\nbot_id = \"b\"\n";
        let loaded = parse(text, &dir).unwrap();
        assert_eq!(
            loaded.tenants[0].component.as_deref(),
            Some(dir.join("guest.wasm").as_path())
        );
        let e = parse(&text.replace("guest.wasm", "missing.wasm"), &dir).unwrap_err();
        assert!(
            e.contains("`component`") && e.contains("missing.wasm"),
            "{e}"
        );
        let e = parse(&text.replace("guest.wasm", "."), &dir).unwrap_err();
        assert!(e.contains("not a file"), "{e}");
        let loaded = parse(&text.replace("component = \"guest.wasm\"\n", ""), &dir).unwrap();
        assert!(loaded.tenants[0].component.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_make_the_default_tenant() {
        let loaded = from_flags(&SingleTenant {
            url: "ws://localhost:1".into(),
            platform: "discord".into(),
            bot_id: "b".into(),
            gateway_id: Some("g".into()),
            ..SingleTenant::default()
        });
        let e = loaded.unwrap_err();
        assert!(e.to_string().starts_with("command line:"), "{e}");
        assert!(e.to_string().contains("--gateway-id"), "{e}");
    }
}
