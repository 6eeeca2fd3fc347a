//! A secret given inline or through an environment variable, resolved once at load time.

use std::path::Path;

use mdsync_secret::Secret;

use crate::ConfigError;

/// Resolves `<name>` / `<name>_env` of the table at `table` (dotted) into a secret.
pub(crate) fn resolve(
    path: &Path,
    table: &str,
    name: &str,
    inline: Option<Secret>,
    env_name: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let key = format!("{table}.{name}");
    match (inline, env_name) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            path,
            key,
            format!("set either `{name}` or `{name}_env`, not both"),
        )),
        (Some(secret), None) if secret.is_empty() => {
            Err(ConfigError::invalid(path, key, "the secret is empty"))
        }
        (Some(secret), None) => Ok(secret),
        (None, Some(var)) => match env(var) {
            Some(value) if !value.is_empty() => Ok(Secret::new(value)),
            Some(_) => Err(ConfigError::invalid(
                path,
                format!("{key}_env"),
                format!("environment variable {var} is empty"),
            )),
            None => Err(ConfigError::invalid(
                path,
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )),
        },
        (None, None) => Err(ConfigError::invalid(
            path,
            key,
            format!(
                "missing: set `{name}` or `{name}_env` (the name of an environment variable holding it)"
            ),
        )),
    }
}
