//! Configuration: loads `syslog2ban.toml` and `conf.d/*.toml` (merged in name order, later
//! files overriding single keys), applies `SYSLOG2BAN_` environment overrides, and compiles the
//! raw values into runtime types.
//!
//! Owns the raw → compiled conversion and its error reporting (file, key and, where it can be
//! found, line). It must not open sockets or run anything: it only reads files. Here: the
//! loading; `types` holds the runtime types, `raw` mirrors the TOML, `compile/` turns one into
//! the other (one file per concern), `error` says what is wrong where.

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

mod backend;
mod cluster;
mod compile;
mod duration;
mod error;
mod notify;
mod raw;
mod template;
mod types;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

pub use backend::*;
pub use cluster::*;
use compile::Compiler;
pub use duration::{ParsedDuration, RawDuration};
pub use error::{ConfigError, ConfigErrors};
pub use notify::*;
use raw::RawJailSettings;
pub use types::*;

/// Finds the main file and the jail directory for `--config PATH` (file or directory).
pub fn locate(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        (path.join("syslog2ban.toml"), path.join("conf.d"))
    } else {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (path.to_path_buf(), dir.join("conf.d"))
    }
}

/// Loads and compiles the configuration at `path` with environment overrides.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, Env::prefixed(ENV_PREFIX).split("__"))
}

fn load_with_env(path: &Path, env: Env) -> Result<Config, ConfigErrors> {
    let (figment, files) = merged(path, env)?;
    let mut config = Compiler::new(&figment).compile()?;
    config.files = files;
    Ok(config)
}

/// The files of the configuration at `path` merged in order, then `env`; an error when the
/// main file is missing.
fn merged(path: &Path, env: Env) -> Result<(Figment, Vec<PathBuf>), ConfigErrors> {
    let (main, _) = locate(path);
    if !main.is_file() {
        return Err(ConfigErrors(vec![ConfigError {
            file: Some(main),
            line: None,
            key: "-".into(),
            message: "configuration file not found".into(),
        }]));
    }
    let files = config_files(path);
    let mut figment = Figment::new();
    for file in &files {
        figment = figment.merge(Toml::file_exact(file));
    }
    Ok((figment.merge(env), files))
}

/// The control socket the configuration at `path` names (`[control] socket`, or the default),
/// for the CLI's control commands: only that key is read, so a config with errors elsewhere
/// still tells the client where its daemon listens.
pub fn control_socket(path: &Path) -> Result<PathBuf, ConfigErrors> {
    let (figment, _) = merged(path, Env::prefixed(ENV_PREFIX).split("__"))?;
    match figment.extract_inner::<Option<PathBuf>>("control.socket") {
        Ok(socket) => Ok(socket.unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET))),
        Err(e) if e.missing() => Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        Err(e) => {
            let mut compiler = Compiler::new(&figment);
            compiler.figment_error("control.socket", e);
            Err(ConfigErrors(compiler.errors))
        }
    }
}

/// Compiles only the `[jail.*]` tables of `files` (enabled or not; only the one named `only`
/// when given), for `syslog2ban regex` and filter tests, which need no listeners.
pub fn load_jails(files: &[PathBuf], only: Option<&str>) -> Result<Vec<JailConfig>, ConfigErrors> {
    load_jails_in_mode(files, only, None)
}

/// [`load_jails`], with jail `only` in `mode` whatever its files say (`regex LOG
/// JAIL[mode=aggressive]`).
pub fn load_jails_in_mode(
    files: &[PathBuf],
    only: Option<&str>,
    mode: Option<&str>,
) -> Result<Vec<JailConfig>, ConfigErrors> {
    let mut figment = Figment::new();
    for file in files {
        figment = figment.merge(Toml::file_exact(file));
    }
    if let (Some(jail), Some(mode)) = (only, mode) {
        figment = figment.merge(figment::providers::Serialized::default(
            &format!("jail.{jail}.mode"),
            mode,
        ));
    }
    let mut compiler = Compiler::new(&figment);
    let names = match figment
        .extract_inner::<std::collections::BTreeMap<String, figment::value::Value>>("jail")
    {
        // Compiling a jail's regexes is the expensive part: skip the ones not asked for.
        Ok(jails) => jails
            .into_keys()
            .filter(|n| only.is_none_or(|o| o == n))
            .collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    let defaults = compiler.defaults(&RawJailSettings::default());
    let jails: Vec<JailConfig> = names
        .iter()
        .filter_map(|name| compiler.jail(name, &defaults).map(|(j, _)| j))
        .collect();
    if compiler.errors.is_empty() {
        Ok(jails)
    } else {
        Err(ConfigErrors(compiler.errors))
    }
}

/// The main file and the `conf.d/*.toml` files of `--config PATH`, in merge order.
pub fn config_files(path: &Path) -> Vec<PathBuf> {
    let (main, conf_dir) = locate(path);
    let conf_dir = match Figment::from(Toml::file(&main)).extract_inner::<PathBuf>("conf_dir") {
        Ok(dir) => main.parent().unwrap_or(Path::new(".")).join(dir),
        Err(_) => conf_dir,
    };
    let mut files = Vec::new();
    if main.is_file() {
        files.push(main);
    }
    if let Ok(entries) = std::fs::read_dir(&conf_dir) {
        let mut jail_files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        jail_files.sort();
        files.extend(jail_files);
    }
    files
}

#[cfg(test)]
mod tests;
