//! The error of a config file that cannot be used, always pointing at the file and the key.

use std::path::PathBuf;

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is readable but a key is missing, unknown, of the wrong type or has an unusable value.
    #[error("{}{}: {}{message}", path.display(), position(*.line, *.column), key_prefix(key))]
    Invalid {
        path: PathBuf,
        /// Dotted path of the offending key (`dynamics.admin.client_id`); empty for whole-file problems.
        key: String,
        /// 1-based, when the TOML parser knows where the problem is.
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
}

impl ConfigError {
    /// The dotted key at fault, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } if !key.is_empty() => Some(key),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        path: &std::path::Path,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}
