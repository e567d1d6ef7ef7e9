//! One typed configuration: flags with environment fallbacks (`verilimit --help`). Secrets are
//! redacted in `Debug`.

use std::net::SocketAddr;

use clap::{ArgAction, Parser};

/// The development account, accepted only when no account is configured and only on loopback.
pub const DEV_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const DEV_AUTH_TOKEN: &str = "verilimit-dev-token";

#[derive(Parser, Clone)]
#[command(
    name = "verilimit",
    version,
    about = "A local Twilio Verify v2 server that enforces Service Rate Limits exactly"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address and port to listen on (`127.0.0.1:0` picks a free port). The server prints
    /// `verilimit listening on http://ADDR` on stdout once it listens.
    #[arg(long, env = "VERILIMIT_LISTEN", default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,

    /// Database: `sqlite://PATH` (created if missing) or `sqlite::memory:` for a throwaway run.
    #[arg(
        long,
        env = "VERILIMIT_DATABASE_URL",
        default_value = "sqlite://verilimit.db"
    )]
    pub database_url: String,

    /// The Twilio account SID this server accepts (with --auth-token).
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub account_sid: Option<String>,

    /// The auth token of --account-sid.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// More accounts: comma-separated `ACSID:TOKEN` pairs.
    #[arg(
        long,
        env = "VERILIMIT_ACCOUNTS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub accounts: Vec<String>,

    /// API keys: comma-separated `SKSID:SECRET[:ACSID]`; without an account the key belongs to
    /// the first configured account.
    #[arg(
        long,
        env = "VERILIMIT_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// Base URL for `url`, `links` and paging URLs (e.g. `https://verify.example.test`);
    /// otherwise built from the request's Host header.
    #[arg(long, env = "VERILIMIT_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Serve the development account on a non-loopback address. Without it, the server refuses
    /// to start there unless real credentials are configured.
    #[arg(long, env = "VERILIMIT_ALLOW_DEV_ACCOUNT_ANYWHERE", action = ArgAction::Set,
          default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub allow_dev_account_anywhere: bool,

    /// Serve the test control plane under /emulator/v1 (captured codes, clock, reset, usage).
    #[arg(long, env = "VERILIMIT_CONTROL_PLANE", action = ArgAction::Set,
          default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    pub control_plane: bool,

    /// Sends to one `To` per service allowed within --send-attempts-window (error 60203 past it);
    /// 0 switches the rule off.
    #[arg(long, env = "VERILIMIT_SEND_ATTEMPTS_LIMIT", default_value_t = 5)]
    pub send_attempts_limit: u32,

    /// Seconds of the send-attempts window.
    #[arg(long, env = "VERILIMIT_SEND_ATTEMPTS_WINDOW", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub send_attempts_window: u32,

    /// Wrong checks a verification allows; the next check gets 60202 and ends it. 0 switches
    /// the rule off.
    #[arg(long, env = "VERILIMIT_CHECK_ATTEMPTS_LIMIT", default_value_t = 5)]
    pub check_attempts_limit: u32,

    /// MiB of live state the SQLite engine keeps in memory (admission logs, recipients and
    /// their pending verifications, and the filter of what it evicted); past it, what was used
    /// least recently is evicted and read back from the database when needed. 0: no limit.
    #[arg(long, env = "VERILIMIT_CACHE_MEMORY", default_value_t = 128)]
    pub cache_memory: usize,

    /// Seconds a code stays valid.
    #[arg(long, env = "VERILIMIT_CODE_TTL", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub code_ttl: u32,

    /// Rate limits one service may have (error 60207 past it).
    #[arg(
        long,
        env = "VERILIMIT_MAX_RATE_LIMITS_PER_SERVICE",
        default_value_t = 100
    )]
    pub max_rate_limits_per_service: u32,

    /// Buckets one rate limit may have (error 60210 past it).
    #[arg(
        long,
        env = "VERILIMIT_MAX_BUCKETS_PER_RATE_LIMIT",
        default_value_t = 20
    )]
    pub max_buckets_per_rate_limit: u32,

    /// Seconds a request may take before it is answered 503 (also bounds slow request bodies).
    #[arg(long, env = "VERILIMIT_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,

    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `verilimit=debug`.
    #[arg(long, env = "VERILIMIT_LOG", default_value = "info")]
    pub log: String,

    /// A JSON file of services, rate limits and buckets to create (or bring up to date) at
    /// start-up; see the README's "Seed file".
    #[arg(long, env = "VERILIMIT_SEED")]
    pub seed: Option<std::path::PathBuf>,

    /// PostgreSQL connections per instance (with a postgres:// database URL).
    #[arg(long, env = "VERILIMIT_PG_POOL_SIZE", default_value_t = 16)]
    pub pg_pool_size: u32,

    /// Days a verification (it holds a phone number or email) is kept after it was created;
    /// older ones are deleted with their codes. Twilio keeps `To` for 30 days.
    #[arg(long, env = "VERILIMIT_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,

    /// Also serve HTTPS on --tls-listen, as `verify.twilio.com` and `events.twilio.com` (and
    /// their regional and edge forms), with a certificate from verilimit's own certificate
    /// authority (README: "Every official SDK, unchanged").
    #[arg(long, env = "VERILIMIT_TLS", action = ArgAction::Set,
          default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub tls: bool,

    /// Address and port of the HTTPS listener (with --tls). The server prints
    /// `verilimit listening on https://ADDR` on stdout once it listens.
    #[arg(long, env = "VERILIMIT_TLS_LISTEN", default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,

    /// More names for the server certificate (comma-separated in the environment), e.g. the
    /// compose service name.
    #[arg(long = "tls-name", env = "VERILIMIT_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,

    /// A CA certificate (PEM) to issue the server certificate with, instead of the one verilimit
    /// makes and keeps in the database (with --tls-ca-key).
    #[arg(long, env = "VERILIMIT_TLS_CA_CERT")]
    pub tls_ca_cert: Option<std::path::PathBuf>,

    /// The private key (PKCS#8 PEM) of --tls-ca-cert.
    #[arg(long, env = "VERILIMIT_TLS_CA_KEY")]
    pub tls_ca_key: Option<std::path::PathBuf>,

    /// Where to write the CA certificate (PEM, mode 0644) at start-up, e.g. a volume shared with
    /// the application's container.
    #[arg(long, env = "VERILIMIT_TLS_CA_OUT")]
    pub tls_ca_out: Option<std::path::PathBuf>,
}

/// What to do; with none, serve.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Exit 0 if the server answers `GET /healthz` with 200, else 1 (for container health
    /// checks: no curl needed).
    Healthcheck {
        /// The URL to check; by default /healthz on the --listen port of this host.
        #[arg(long)]
        url: Option<String>,
    },
    /// Replay recorded starts through a rate-limit configuration, with the server's core and
    /// no server (README: "Replay").
    Replay(Box<crate::replay::ReplayArgs>),
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url_password(&self.database_url))
            .field("account_sid", &self.account_sid)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("accounts", &format!("{} configured", self.accounts.len()))
            .field("api_keys", &format!("{} configured", self.api_keys.len()))
            .field("public_url", &self.public_url)
            .field("control_plane", &self.control_plane)
            .field("tls", &self.tls)
            .field("tls_listen", &self.tls_listen)
            .field("tls_names", &self.tls_names)
            .field("tls_ca_cert", &self.tls_ca_cert)
            .field("tls_ca_key", &self.tls_ca_key)
            .field("tls_ca_out", &self.tls_ca_out)
            .finish_non_exhaustive()
    }
}

/// `scheme://user:password@host/…` with the password hidden.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// What the configured credentials resolve to.
pub struct ResolvedCredentials {
    pub credentials: crate::twilio::auth::Credentials,
    pub dev_account: bool,
    /// The first configured account (or the development account).
    pub default_account: String,
}

impl Config {
    /// Parses the account and key settings; refuses contradictory or malformed ones, and the
    /// development account on a non-loopback address unless explicitly allowed.
    pub fn credentials(&self) -> Result<ResolvedCredentials, String> {
        use crate::twilio::sid;
        let mut creds = crate::twilio::auth::Credentials::default();
        let mut first: Option<String> = None;
        let add = |s: &str,
                   t: &str,
                   creds: &mut crate::twilio::auth::Credentials,
                   first: &mut Option<String>| {
            if !sid::is_valid(s, sid::ACCOUNT) {
                return Err(format!("{s:?} is not an account SID (AC + 32 hex digits)"));
            }
            if t.is_empty() {
                return Err(format!("account {s} has an empty auth token"));
            }
            creds.add_account(s, t);
            first.get_or_insert_with(|| s.to_owned());
            Ok(())
        };
        match (&self.account_sid, &self.auth_token) {
            (Some(s), Some(t)) => add(s, t, &mut creds, &mut first)?,
            (None, None) => {}
            _ => {
                return Err(
                    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set together".to_owned(),
                );
            }
        }
        for pair in self.accounts.iter().filter(|p| !p.is_empty()) {
            let (s, t) = pair
                .split_once(':')
                .ok_or_else(|| "VERILIMIT_ACCOUNTS entries are ACSID:TOKEN".to_owned())?;
            add(s, t, &mut creds, &mut first)?;
        }
        let dev_account = first.is_none();
        if dev_account {
            // Either listener counts: --tls-listen on 0.0.0.0 exposes the account as well.
            let exposed = [Some(self.listen), self.tls.then_some(self.tls_listen)]
                .into_iter()
                .flatten()
                .find(|a| !a.ip().is_loopback());
            if let Some(addr) = exposed
                && !self.allow_dev_account_anywhere
            {
                return Err(format!(
                    "refusing to serve the development account on {}: set TWILIO_ACCOUNT_SID and \
                     TWILIO_AUTH_TOKEN, or pass --allow-dev-account-anywhere",
                    addr.ip()
                ));
            }
            add(DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, &mut creds, &mut None)?;
        }
        let default_account = first.clone().unwrap_or_else(|| DEV_ACCOUNT_SID.to_owned());
        for entry in self.api_keys.iter().filter(|p| !p.is_empty()) {
            let mut parts = entry.splitn(3, ':');
            let (Some(k), Some(secret)) = (parts.next(), parts.next()) else {
                return Err("VERILIMIT_API_KEYS entries are SKSID:SECRET[:ACSID]".to_owned());
            };
            let account = parts.next().unwrap_or(&default_account);
            if !sid::is_valid(k, sid::API_KEY) {
                return Err(format!("{k:?} is not an API key SID (SK + 32 hex digits)"));
            }
            if secret.is_empty() {
                return Err(format!("API key {k} has an empty secret"));
            }
            if !creds.accounts().any(|a| a == account) {
                return Err(format!("API key {k} names an unknown account {account}"));
            }
            creds.add_key(k, secret, account);
        }
        Ok(ResolvedCredentials {
            credentials: creds,
            dev_account,
            default_account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut v = vec!["verilimit"];
        v.extend_from_slice(args);
        Config::try_parse_from(v).unwrap()
    }

    #[test]
    fn dev_account_only_on_loopback_unless_allowed() {
        assert!(
            parse(&["--listen", "127.0.0.1:0"])
                .credentials()
                .unwrap()
                .dev_account
        );
        assert!(parse(&["--listen", "0.0.0.0:0"]).credentials().is_err());
        assert!(
            parse(&["--listen", "0.0.0.0:0", "--allow-dev-account-anywhere"])
                .credentials()
                .is_ok()
        );
        let c = parse(&[
            "--listen",
            "0.0.0.0:0",
            "--account-sid",
            "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "--auth-token",
            "t",
        ]);
        assert!(!c.credentials().unwrap().dev_account);
        // The HTTPS listener counts too, when it is on.
        let tls_anywhere = ["--listen", "127.0.0.1:0", "--tls-listen", "0.0.0.0:0"];
        assert!(parse(&tls_anywhere).credentials().is_ok());
        let mut with_tls = tls_anywhere.to_vec();
        with_tls.push("--tls");
        let err = parse(&with_tls).credentials().err().unwrap();
        assert!(err.contains("0.0.0.0"), "{err}");
        with_tls.push("--allow-dev-account-anywhere");
        assert!(parse(&with_tls).credentials().is_ok());
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://u:secret@h:5432/db"),
            "postgres://u:<redacted>@h:5432/db"
        );
        assert_eq!(redact_url_password("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn debug_redacts_the_token() {
        let c = parse(&[
            "--account-sid",
            "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "--auth-token",
            "s3cret-token",
        ]);
        assert!(!format!("{c:?}").contains("s3cret-token"));
    }
}
