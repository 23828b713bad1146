//! [`Secret`]: a value that is never printed, and where secrets come from.

use std::fmt;
use std::path::Path;

/// A value that must never be printed: passwords, tokens, routing keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The only way to read the value: call sites are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret from the environment variable `var`.
pub fn secret_from_env(var: &str) -> Result<Secret, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        Ok(_) => Err(format!("environment variable {var} is empty")),
        Err(_) => Err(format!("environment variable {var} is not set")),
    }
}

pub fn secret_from_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(value))
}

/// Where a secret is read from, as the config names it. Parsing the config
/// reads no secret: each is resolved where it is used (`run` and `test-alert`
/// resolve the webhooks', the verbs that talk to the sentinels the password),
/// so `status`, `reconcile` and `iam-policy` work from a shell that does not
/// hold the service's secrets, and `check` reports a missing one as a check.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable, read at resolve time.
    Env(String),
    /// A file (e.g. a systemd credential), read at resolve time.
    File(std::path::PathBuf),
    /// Written in the config itself (a webhook `url`).
    Value(Secret),
}

impl SecretSource {
    /// The secret's value, or why it cannot be read (naming the variable or
    /// the file, never a value).
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Env(var) => secret_from_env(var),
            SecretSource::File(path) => secret_from_file(path),
            SecretSource::Value(s) => Ok(s.clone()),
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "Env({var})"),
            SecretSource::File(path) => write!(f, "File({})", path.display()),
            SecretSource::Value(_) => f.write_str("Value(***)"),
        }
    }
}
