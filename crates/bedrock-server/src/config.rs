//! `bedrock serve --config bedrock.toml`: every `serve` flag from a TOML
//! file, with the precedence **flag > `BEDROCK_*` environment variable >
//! file > default**.
//!
//! A key is a flag's long name, with dashes or underscores
//! (`client-addr` or `client_addr`); a value is a string, an integer or a
//! boolean (a boolean switch such as `client-cert-auth = true`). The file
//! may also be named by `BEDROCK_CONFIG`.
//!
//! How: before clap parses the command line, [`apply`] reads the file and
//! appends `--flag value` for each key whose flag is neither on the command
//! line nor set through its environment variable. clap then parses and
//! validates everything the same way, so a bad value in the file gets the
//! same error as on the command line, prefixed with the file's name. An
//! unknown key, a table or an array is an error naming the key and the
//! file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;

/// The environment variable that may name the config file.
pub const CONFIG_ENV: &str = "BEDROCK_CONFIG";

/// Why the config file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        message: String,
    },
    /// A key names no `serve` flag.
    #[error("config file {}: unknown key `{key}` (known keys: {known})", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Every accepted key.
        known: String,
    },
    /// A value is not a string, integer or boolean, or a boolean was given
    /// for a flag that takes a value (or the reverse).
    #[error("config file {}: key `{key}`: {reason}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// One `serve` flag as the config file sees it.
struct Flag {
    long: String,
    env: Option<String>,
    switch: bool,
}

fn serve_flags() -> Vec<Flag> {
    let cli = Cli::command();
    let Some(serve) = cli.find_subcommand("serve") else { return Vec::new() };
    serve
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?.to_string();
            if long == "config" || long == "help" {
                return None;
            }
            let switch = !arg.get_action().takes_values();
            Some(Flag { long, env: arg.get_env().map(|e| e.to_string_lossy().into_owned()), switch })
        })
        .collect()
}

/// The config file named by `serve --config F` (or `--config=F`) in
/// `argv`, or by [`CONFIG_ENV`]; `None` if `argv` is not `serve` or names
/// no file.
fn config_path(argv: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let serve = argv.iter().position(|a| a == "serve")?;
    let rest = &argv[serve + 1..];
    for (i, arg) in rest.iter().enumerate() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return rest.get(i + 1).map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    env(CONFIG_ENV).filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// Whether `--long` appears on the command line after `serve`.
fn on_command_line(argv: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    argv.iter().skip_while(|a| *a != "serve").any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&with_value)
    })
}

/// Returns `argv` with the config file's settings appended (see the module
/// docs); `argv` unchanged when no file is named. `env` looks up
/// environment variables (tests pass their own).
///
/// # Errors
/// [`ConfigError`] for an unreadable or malformed file, an unknown key or
/// a value of the wrong kind.
pub fn apply(argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(&argv, env) else { return Ok(argv) };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    merge(argv, &path, &text, env)
}

fn merge(
    mut argv: Vec<OsString>,
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
    let flags = serve_flags();
    let mut extra = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(flag) = flags.iter().find(|f| f.long == long) else {
            let known = flags.iter().map(|f| f.long.as_str()).collect::<Vec<_>>().join(", ");
            return Err(ConfigError::UnknownKey { path: path.to_path_buf(), key: key.clone(), known });
        };
        let bad =
            |reason: &str| ConfigError::BadValue { path: path.to_path_buf(), key: key.clone(), reason: reason.into() };
        let text = match (value, flag.switch) {
            (toml::Value::Boolean(on), true) => on.to_string(),
            (_, true) => return Err(bad("expected true or false")),
            (toml::Value::String(s), false) => s.clone(),
            (toml::Value::Integer(n), false) => n.to_string(),
            (toml::Value::Boolean(_), false) => return Err(bad("expected a string or a number, not a boolean")),
            (_, false) => return Err(bad("expected a string or a number")),
        };
        let from_env = flag.env.as_deref().is_some_and(|name| env(name).is_some());
        if on_command_line(&argv, &flag.long) || from_env {
            continue;
        }
        if flag.switch {
            if text == "true" {
                extra.push(OsString::from(format!("--{}", flag.long)));
            }
        } else {
            // `--flag=value`, so a value starting with `-` stays a value.
            extra.push(OsString::from(format!("--{}={text}", flag.long)));
        }
    }
    argv.extend(extra);
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, ServeArgs};
    use clap::Parser;

    fn serve(argv: &[&str], file: &str, env: &[(&str, &str)]) -> Result<ServeArgs, String> {
        let env_map: std::collections::HashMap<String, String> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = |name: &str| env_map.get(name).cloned();
        let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        let argv = merge(argv, Path::new("bedrock.toml"), file, &lookup).map_err(|e| e.to_string())?;
        // clap reads the real environment; only keys absent from it are used here.
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            _ => Err("not serve".into()),
        }
    }

    const FILE: &str = r#"
        data-dir = "/var/lib/bedrock"
        client_addr = "127.0.0.1:18080"
        raft-addr = "127.0.0.1:19000"
        id = 7
        sync = "every-ms=5"
        client-cert-auth = false
    "#;

    #[test]
    fn file_values_fill_in_what_flags_and_env_leave_unset() {
        let args = serve(&["bedrock", "serve", "--config", "bedrock.toml"], FILE, &[]).unwrap();
        assert_eq!(args.data_dir, PathBuf::from("/var/lib/bedrock"));
        assert_eq!(args.client_addr.to_string(), "127.0.0.1:18080");
        assert_eq!(args.raft_addr.to_string(), "127.0.0.1:19000");
        assert_eq!(args.id, 7);
        assert_eq!(args.sync, bedrock_wal::SyncPolicy::EveryMs(5));
        assert!(!args.client_cert_auth);
    }

    #[test]
    fn a_flag_beats_the_file_and_an_env_variable_keeps_the_file_out() {
        let args =
            serve(&["bedrock", "serve", "--id", "3", "--data-dir=/tmp/d"], FILE, &[("BEDROCK_SYNC", "never")]).unwrap();
        assert_eq!(args.id, 3, "flag > file");
        assert_eq!(args.data_dir, PathBuf::from("/tmp/d"), "flag (with =) > file");
        // BEDROCK_SYNC is set (as far as `merge` knows): the file's value is
        // not injected, so clap falls back to the env (unset in this test
        // process) or the default.
        assert_ne!(args.sync, bedrock_wal::SyncPolicy::EveryMs(5), "env > file");
        assert_eq!(args.raft_addr.to_string(), "127.0.0.1:19000", "file > default");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let err = serve(&["bedrock", "serve"], "data-dri = \"x\"\n", &[]).unwrap_err();
        assert!(err.contains("unknown key `data-dri`") && err.contains("data-dir"), "{err}");
        let err = serve(&["bedrock", "serve"], "id = \"seven\"\n", &[]).unwrap_err();
        assert!(err.contains("seven") && err.contains("--id"), "{err}");
        let err = serve(&["bedrock", "serve"], "id = true\n", &[]).unwrap_err();
        assert!(err.contains("key `id`: expected a string or a number"), "{err}");
        let err = serve(&["bedrock", "serve"], "client-cert-auth = \"yes\"\n", &[]).unwrap_err();
        assert!(err.contains("expected true or false"), "{err}");
        let err = serve(&["bedrock", "serve"], "[server]\nid = 1\n", &[]).unwrap_err();
        assert!(err.contains("unknown key `server`"), "{err}");
        let err = serve(&["bedrock", "serve"], "id = \n", &[]).unwrap_err();
        assert!(err.contains("bedrock.toml"), "{err}");
    }

    #[test]
    fn the_config_path_comes_from_the_flag_or_the_environment() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let none = |_: &str| None;
        let some = |_: &str| Some("/etc/bedrock.toml".to_string());
        assert_eq!(config_path(&argv(&["bedrock", "serve", "--config", "a.toml"]), &none), Some("a.toml".into()));
        assert_eq!(config_path(&argv(&["bedrock", "serve", "--config=b.toml"]), &none), Some("b.toml".into()));
        assert_eq!(config_path(&argv(&["bedrock", "serve"]), &some), Some("/etc/bedrock.toml".into()));
        assert_eq!(config_path(&argv(&["bedrock", "get", "k"]), &some), None, "only serve reads it");
    }
}
