//! The server's config file: YAML, with profiles and `${ENV:default}` substitution.
//!
//! ```yaml
//! server:                      # what the command-line flags say
//!   flight: 127.0.0.1:50051
//!   http: ${FERRIS_HTTP:127.0.0.1:9090}
//!   state_dir: /var/lib/ferris
//!   auth_token: ${FERRIS_TOKEN}
//! jobs:                        # options every job gets unless its WITH sets them
//!   checkpoint.interval: 10s
//! profiles:
//!   dev:                       # --profile dev: laid over the above
//!     server: { state_dir: ./state, log_format: text }
//!     jobs: { checkpoint.interval: 1s }
//! ```
//!
//! A flag on the command line wins over its `FERRIS_*` variable, which wins over the file.

use std::collections::BTreeMap;

/// The server settings a config file may give (`server:`).
pub const SERVER_KEYS: [&str; 13] = [
    "flight",
    "http",
    "auth_token",
    "kafka",
    "state_dir",
    "tls_cert",
    "tls_key",
    "log_format",
    "cluster",
    "node_id",
    "advertise",
    "slots",
    "lease_ttl",
];

/// A config file, its profile laid over it, variables substituted.
#[derive(Debug, Default, PartialEq)]
pub struct ServerFile {
    /// `server:` settings, by key.
    pub server: BTreeMap<String, String>,
    /// `jobs:` options, by key, in order.
    pub jobs: Vec<(String, String)>,
}

impl ServerFile {
    /// Reads `path` with `profile` laid over it.
    pub fn load(path: &str, profile: Option<&str>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Self::parse(&text, profile, &|name| std::env::var(name).ok())
            .map_err(|e| format!("{path}: {e}"))
    }

    /// Parses a config's `text`, with `profile` laid over it; `${NAME}` and
    /// `${NAME:default}` are looked up with `env`.
    pub fn parse(
        text: &str,
        profile: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let root: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let root = mapping(&root, "the file")?;
        let mut file = Self::default();
        for (key, value) in root {
            match key_text(key)?.as_str() {
                "server" | "jobs" => file.lay_over(key_text(key)?.as_str(), value, env)?,
                "profiles" => {}
                other => {
                    return Err(format!(
                        "unknown section '{other}': server, jobs or profiles"
                    ));
                }
            }
        }
        if let Some(name) = profile {
            let profiles = root
                .iter()
                .find(|(k, _)| k.as_str() == Some("profiles"))
                .map(|(_, v)| mapping(v, "profiles"))
                .transpose()?;
            let chosen = profiles
                .and_then(|p| p.iter().find(|(k, _)| k.as_str() == Some(name)))
                .ok_or_else(|| format!("no profile '{name}' under profiles"))?;
            for (key, value) in mapping(chosen.1, &format!("profile '{name}'"))? {
                match key_text(key)?.as_str() {
                    section @ ("server" | "jobs") => file.lay_over(section, value, env)?,
                    other => {
                        return Err(format!(
                            "profile '{name}': unknown section '{other}': server or jobs"
                        ));
                    }
                }
            }
        }
        Ok(file)
    }

    fn lay_over(
        &mut self,
        section: &str,
        value: &serde_yaml::Value,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        for (key, value) in mapping(value, section)? {
            let key = key_text(key)?;
            let value = substitute(&scalar_text(value, &key)?, env)
                .map_err(|e| format!("{section}.{key}: {e}"))?;
            if section == "server" {
                if !SERVER_KEYS.contains(&key.as_str()) {
                    return Err(format!(
                        "unknown setting server.{key}: {}",
                        SERVER_KEYS.join(", ")
                    ));
                }
                self.server.insert(key, value);
            } else {
                self.jobs.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                self.jobs.push((key, value));
            }
        }
        Ok(())
    }
}

fn mapping<'a>(
    value: &'a serde_yaml::Value,
    what: &str,
) -> Result<&'a serde_yaml::Mapping, String> {
    match value {
        serde_yaml::Value::Mapping(mapping) => Ok(mapping),
        serde_yaml::Value::Null => Ok(empty()),
        _ => Err(format!("{what} must be a mapping of keys to values")),
    }
}

fn empty() -> &'static serde_yaml::Mapping {
    static EMPTY: std::sync::OnceLock<serde_yaml::Mapping> = std::sync::OnceLock::new();
    EMPTY.get_or_init(serde_yaml::Mapping::new)
}

fn key_text(key: &serde_yaml::Value) -> Result<String, String> {
    key.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("a key must be text, not {key:?}"))
}

fn scalar_text(value: &serde_yaml::Value, key: &str) -> Result<String, String> {
    match value {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{key} must be a single value")),
    }
}

/// Replaces `${NAME}` and `${NAME:default}` with the variable's value (or the default).
fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("'{text}': '${{' without its '}}'"))?
            + start;
        let inner = &rest[start + 2..end];
        let (name, default) = match inner.split_once(':') {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "the variable {name} is not set, and '${{{name}}}' has no default (write '${{{name}:default}}')"
                ));
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
server:
  flight: 127.0.0.1:50051
  http: ${HTTP_ADDR:127.0.0.1:9090}
  auth_token: ${TOKEN}
jobs:
  checkpoint.interval: 10s
  state.memory.limit: 512MB
profiles:
  dev:
    server: { state_dir: ./state }
    jobs: { checkpoint.interval: 1s }
";

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn a_profile_lies_over_the_file_and_variables_are_substituted() {
        let file = ServerFile::parse(FILE, Some("dev"), &env).unwrap();
        let server: Vec<_> = file
            .server
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            server,
            [
                ("auth_token", "s3cret"),
                ("flight", "127.0.0.1:50051"),
                ("http", "127.0.0.1:9090"),
                ("state_dir", "./state"),
            ]
        );
        assert_eq!(
            file.jobs,
            [
                ("state.memory.limit".to_string(), "512MB".to_string()),
                ("checkpoint.interval".to_string(), "1s".to_string()),
            ]
        );
        let base = ServerFile::parse(FILE, None, &env).unwrap();
        assert_eq!(base.jobs[0], ("checkpoint.interval".into(), "10s".into()));
        assert!(!base.server.contains_key("state_dir"));
    }

    #[test]
    fn mistakes_are_named() {
        let error = |text: &str, profile: Option<&str>| {
            ServerFile::parse(text, profile, &|_| None).unwrap_err()
        };
        assert!(error(FILE, None).contains(
            "server.auth_token: the variable TOKEN is not set, and '${TOKEN}' has no default"
        ));
        assert!(error("server: { flihgt: x }", None).contains("unknown setting server.flihgt"));
        assert!(error("servers: {}", None).contains("unknown section 'servers'"));
        assert!(error("server: {}", Some("prod")).contains("no profile 'prod'"));
        assert!(error("server: [1, 2]", None).contains("server must be a mapping"));
    }
}
