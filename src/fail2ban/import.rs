//! `syslog2ban import-fail2ban DIR`: turns a fail2ban configuration (`jail.conf`,
//! `jail.d/*.conf`, `jail.local`, `jail.d/*.local`, merged as fail2ban merges them) into an
//! equivalent syslog2ban config, and lists what it could not map.
//!
//! Owns the mapping of jail settings to syslog2ban keys. It reads files only: it writes no
//! config (the CLI prints or saves the text) and never talks to a daemon. Filters are kept by
//! reference (`fail2ban_filter = ".../filter.d/NAME.conf[opts]"`), not translated.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::firewall;
use super::ini::{Ini, IniError, Options};
use super::{load, FilterSpec};

/// Sections of jail files that are not jails.
const NOT_JAILS: &[&str] = &["DEFAULT", "INCLUDES", "Init", "Definition"];

/// Why an import could not run at all (a jail that cannot be mapped is reported, not fatal).
#[derive(Debug, Error)]
pub enum ImportError {
    /// No jail.conf or jail.local in the directory.
    #[error(
        "{0}: neither jail.conf nor jail.local found (is this a fail2ban configuration directory?)"
    )]
    NoJailFile(PathBuf),
    /// A jail file could not be read or interpolated.
    #[error(transparent)]
    Ini(#[from] IniError),
}

/// The result: the config text, the jails it holds, and what needs a human.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// syslog2ban TOML.
    pub toml: String,
    /// Enabled jails written (recidive included when enabled).
    pub jails: Vec<String>,
    /// Settings that were not carried over, one line each, naming jail and key.
    pub unmapped: Vec<String>,
    /// The `[ban] backend` the jails' banaction stands for, when they agree on one.
    pub backend: Option<&'static str>,
}

/// The files beside `output` that are read after it (conf.d is merged in name order) and set
/// keys of one of `jails`, which would then override the imported values: (file, jail).
pub fn shadowing_files(output: &Path, jails: &[String]) -> Vec<(PathBuf, String)> {
    let (Some(dir), Some(own)) = (output.parent(), output.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut later: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| p.file_name().is_some_and(|name| name > own))
        .collect();
    later.sort();
    let mut found = Vec::new();
    for file in later {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for jail in jails {
            let table = format!("[jail.{jail}]");
            let sub = format!("[jail.{jail}.");
            if text
                .lines()
                .map(str::trim)
                .any(|l| l == table || l.starts_with(&sub))
            {
                found.push((file.clone(), jail.clone()));
            }
        }
    }
    found
}

/// Reads the fail2ban configuration in `dir` and maps its enabled jails.
pub fn import(dir: &Path) -> Result<Import, ImportError> {
    let ini = read_jail_files(dir)?;
    let mut out = Import::default();
    let mut body = String::new();
    let mut disabled = 0;
    // Port names resolve as on the host that ran fail2ban (usually this one).
    let services =
        firewall::Services::parse(&std::fs::read_to_string("/etc/services").unwrap_or_default());
    let mut backends: Vec<&'static str> = Vec::new();
    for jail in ini.sections().map(str::to_string).collect::<Vec<_>>() {
        if NOT_JAILS.contains(&jail.as_str()) {
            continue;
        }
        let vars = name_vars(&jail);
        let get = |key: &str| ini.get_with(&jail, key, &vars);
        let enabled = get("enabled")?.as_deref().map(truthy).unwrap_or(false);
        if !enabled {
            disabled += 1;
            continue;
        }
        if jail == "recidive" {
            recidive(&ini, &vars, &mut body, &mut out)?;
            continue;
        }
        if let Some(section) = map_jail(dir, &ini, &jail, &vars, &services, &mut out)? {
            body.push_str(&section);
            match firewall::backend(&get("banaction")?.unwrap_or_default()) {
                firewall::Backend::Maps(backend) => backends.push(backend),
                firewall::Backend::Unmapped(why) => {
                    out.unmapped.push(format!("[{jail}] banaction: {why}"));
                }
            }
            out.jails.push(jail);
        }
    }
    backends.dedup();
    match backends.as_slice() {
        [one] => out.backend = Some(one),
        [] => {}
        several => out.unmapped.push(format!(
            "banaction: the jails use firewalls of backends {}; syslog2ban has one [ban] backend per host",
            several.join(", ")
        )),
    }
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Imported from the fail2ban configuration in {} by `syslog2ban import-fail2ban`.\n\
         # Add [[listen]] (and [ban]) in syslog2ban.toml; forward the logs named below via syslog.",
        dir.display()
    );
    if disabled > 0 {
        let _ = writeln!(toml, "# {disabled} disabled jail(s) were left out.");
    }
    if let Some(backend) = out.backend {
        let _ = writeln!(
            toml,
            "# fail2ban's banaction corresponds to `backend = \"{backend}\"` in [ban] of syslog2ban.toml."
        );
    }
    if !out.unmapped.is_empty() {
        toml.push_str("#\n# Not carried over (review these):\n");
        for line in &out.unmapped {
            let _ = writeln!(toml, "#   - {line}");
        }
    }
    toml.push('\n');
    toml.push_str(&body);
    out.toml = toml;
    Ok(out)
}

/// `jail.conf`, `jail.d/*.conf`, `jail.local`, `jail.d/*.local` (each with its includes and
/// `.local`): the precedence fail2ban gives them.
fn read_jail_files(dir: &Path) -> Result<Ini, ImportError> {
    let conf = dir.join("jail.conf");
    let local = dir.join("jail.local");
    if !conf.is_file() && !local.is_file() {
        return Err(ImportError::NoJailFile(dir.to_path_buf()));
    }
    let mut dropins: Vec<PathBuf> = std::fs::read_dir(dir.join("jail.d"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    dropins.sort();
    let with_ext = |ext: &'static str| {
        dropins
            .iter()
            .filter(move |p| p.extension().is_some_and(|e| e == ext))
    };
    let mut files = Vec::new();
    if conf.is_file() {
        files.push(conf);
    }
    files.extend(with_ext("conf").cloned());
    if local.is_file() {
        files.push(local);
    }
    files.extend(with_ext("local").cloned());
    Ok(Ini::load_all(&files)?)
}

/// fail2ban's configparser knows the section's own name as `%(__name__)s`.
fn name_vars(jail: &str) -> Options {
    let mut vars = Options::new();
    vars.insert("__name__".into(), jail.to_string());
    vars
}

fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "yes" | "1" | "on"
    )
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// fail2ban's time strings: seconds, or number+unit terms (`10m`, `1h 30m`, `1w`, `2mo`);
/// a negative number means permanent. None when it cannot be read.
pub fn seconds(text: &str) -> Option<i64> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(n) = text.parse::<f64>() {
        return Some(if n < 0.0 { -1 } else { n.round() as i64 });
    }
    let mut total = 0.0;
    let mut rest = text.as_str();
    let mut terms = 0;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at_checked(num_len)?;
        let number: f64 = if num_len == 0 {
            1.0
        } else {
            number.parse().ok()?
        };
        rest = after.trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at_checked(unit_len)?;
        rest = after;
        let factor = match unit {
            "y" | "yy" | "year" | "years" => 365.2425 * 86400.0,
            "mo" | "month" | "months" => 365.2425 * 86400.0 / 12.0,
            "w" | "ww" | "week" | "weeks" => 7.0 * 86400.0,
            "d" | "dd" | "day" | "days" => 86400.0,
            "h" | "hh" | "hour" | "hours" => 3600.0,
            "m" | "mm" | "mi" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "s" | "ss" | "sec" | "secs" | "second" | "seconds" | "" => 1.0,
            _ => return None,
        };
        total += number * factor;
        terms += 1;
    }
    (terms > 0).then_some(total.round() as i64)
}

/// The literal start of a `_daemon` regex (up to its first regex syntax), for prefix routing.
fn literal_prefix(daemon: &str) -> String {
    daemon
        .trim_start_matches('^')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        .collect()
}

/// Splits fail2ban's space- or comma-separated lists.
fn list(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes one duration key, or reports it.
fn duration_key(
    out: &mut String,
    unmapped: &mut Vec<String>,
    jail: &str,
    key: &str,
    raw: Option<String>,
    permanent_ok: bool,
) {
    let Some(raw) = raw else { return };
    match seconds(&raw) {
        Some(s) if s < 0 && permanent_ok => {
            let _ = writeln!(out, "{key} = -1");
        }
        Some(s) if s > 0 => {
            let _ = writeln!(out, "{key} = {s}");
        }
        _ => unmapped.push(format!(
            "[{jail}] {key} = {raw}: not a time fail2ban would read"
        )),
    }
}

fn map_jail(
    dir: &Path,
    ini: &Ini,
    jail: &str,
    vars: &Options,
    services: &firewall::Services,
    out: &mut Import,
) -> Result<Option<String>, ImportError> {
    let get = |key: &str| ini.get_with(jail, key, vars);
    let unmapped = &mut out.unmapped;
    // Jail names are 1-32 of A-Z a-z 0-9 _ - in syslog2ban.
    let name_ok = !jail.is_empty()
        && jail.len() <= 32
        && jail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        unmapped.push(format!(
            "[{jail}]: the name is not a syslog2ban jail name (1-32 of A-Z a-z 0-9 _ -); jail skipped"
        ));
        return Ok(None);
    }
    let filter = get("filter")?.unwrap_or_else(|| jail.to_string());
    // The options keep their opening bracket: `sshd[mode=aggressive]`.
    let (filter_name, filter_opts) = match filter.find('[').and_then(|i| filter.split_at_checked(i))
    {
        Some((name, options)) => (name.trim().to_string(), options.trim().to_string()),
        None => (filter.trim().to_string(), String::new()),
    };
    let filter_path = dir.join("filter.d").join(format!("{filter_name}.conf"));
    let reference = format!("{}{}", filter_path.display(), filter_opts);
    let (programs, daemon) = match FilterSpec::parse(&reference).and_then(|spec| load(&spec)) {
        Ok(f) => (
            f.programs().map(<[String]>::to_vec),
            f.daemon().map(str::to_string),
        ),
        Err(e) => {
            unmapped.push(format!("[{jail}] filter = {filter}: {e}; jail skipped"));
            return Ok(None);
        }
    };
    let mut s = String::new();
    let _ = writeln!(s, "[jail.{jail}]\nenabled = true");
    let _ = writeln!(s, "fail2ban_filter = {}", quote(&reference));
    // A shipped native jail of the same name (conf.d/sshd.toml) merges with this one key by
    // key: empty patterns take its native ones out, so the fail2ban filter alone decides.
    let _ = writeln!(s, "failregex = []\nignoreregex = []");
    // Written out for the same reason: the filter's `_daemon` decides the routing, not the
    // programs of a shipped jail of the same name.
    if let Some(programs) = &programs {
        let list: Vec<String> = programs.iter().map(|p| quote(p)).collect();
        let _ = writeln!(s, "programs = [{}]", list.join(", "));
    }
    if programs.is_none() {
        match daemon.as_deref().map(literal_prefix) {
            // `postfix(-\w+)?/\w+` routes as `postfix*`; the filter itself still checks the
            // whole name.
            Some(prefix) if prefix.len() >= 3 => {
                let _ = writeln!(s, "programs = [{}]", quote(&format!("{prefix}*")));
            }
            _ => {
                // Nothing to route by: the program name is a guess the operator must confirm.
                let _ = writeln!(
                    s,
                    "# The filter names no fixed _daemon: set the syslog program name(s) this service logs with.\nprograms = [{}]",
                    quote(&filter_name)
                );
                unmapped.push(format!(
                    "[{jail}] programs: the filter's _daemon names no program; guessed [\"{filter_name}\"], check the syslog tag"
                ));
            }
        }
    }
    if let Some(raw) = get("maxretry")? {
        match raw.trim().parse::<u32>() {
            Ok(n) if n >= 1 => {
                let _ = writeln!(s, "maxretry = {n}");
            }
            _ => unmapped.push(format!("[{jail}] maxretry = {raw}: not a positive number")),
        }
    }
    duration_key(&mut s, unmapped, jail, "findtime", get("findtime")?, false);
    duration_key(&mut s, unmapped, jail, "bantime", get("bantime")?, true);
    if let Some(raw) = get("ignoreip")? {
        let mut nets: Vec<ipnet::IpNet> = Vec::new();
        for entry in list(&raw) {
            if let Some(net) = crate::config::parse_net(&entry) {
                nets.push(net.trunc());
            } else {
                unmapped.push(format!(
                    "[{jail}] ignoreip {entry}: host names are not resolved by syslog2ban; use addresses"
                ));
            }
        }
        // syslog2ban's own default (loopback) stays in: fail2ban's ignoreself covers it.
        for lo in ["127.0.0.0/8", "::1/128"] {
            if let Ok(lo) = lo.parse::<ipnet::IpNet>() {
                nets.push(lo);
            }
        }
        let mut seen = Vec::new();
        nets.retain(|n| {
            let new = !seen.contains(n);
            seen.push(*n);
            new
        });
        let nets: Vec<String> = nets.iter().map(|n| quote(&n.to_string())).collect();
        let _ = writeln!(s, "ignoreip = [{}]", nets.join(", "));
    }
    // fail2ban's multiport actions ban only the jail's ports; an allports one bans all.
    let action = format!(
        "{} {}",
        get("banaction")?.unwrap_or_default(),
        get("action")?.unwrap_or_default()
    );
    if !firewall::all_ports(&action) {
        if let Some(raw) = get("port")? {
            let protocol = get("protocol")?.unwrap_or_default();
            match firewall::ports(&raw, &protocol, services) {
                Ok(None) => {}
                Ok(Some((ports, protocol))) => {
                    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                    let _ = writeln!(
                        s,
                        "# fail2ban banned only these ports; leave both keys out to ban every port.\nports = [{}]\nprotocol = \"{protocol}\"",
                        list.join(", ")
                    );
                }
                Err(why) => unmapped.push(format!(
                    "[{jail}] port = {}: {why}; every port is banned",
                    raw.split_whitespace().collect::<Vec<_>>().join(" ")
                )),
            }
        }
    }
    increment(&mut s, unmapped, jail, &get)?;
    let defaults = ini.defaults();
    for (key, why) in [
        (
            "action",
            "actions are not run; bans go to [ban] backend (local) or [target.*] with placement",
        ),
        (
            "logpath",
            "forward this log to syslog2ban via syslog instead",
        ),
        (
            "backend",
            "syslog2ban receives messages; there is no backend",
        ),
        (
            "usedns",
            "<HOST> is always an address; names are never resolved",
        ),
        ("ignorecommand", "not supported"),
        (
            "bantime.formula",
            "not supported; bantime.factor/multipliers are",
        ),
        ("datepattern", "set it in the filter file"),
        (
            "journalmatch",
            "routing is by program name (the filter's _daemon)",
        ),
        ("maxlines", "set it in the filter file"),
    ] {
        // Report what the jail (or jail.local's DEFAULT) sets, not every stock default.
        let own = ini.section(jail).is_some_and(|o| o.contains_key(key));
        let stock = defaults.contains_key(key) && key != "action" && key != "banaction";
        if own || (key == "usedns" && get(key)?.as_deref() == Some("yes")) {
            if let Some(value) = get(key)? {
                let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                unmapped.push(format!("[{jail}] {key} = {value}: {why}"));
            }
        } else if stock && key == "logpath" {
            // logpath usually comes from jail.conf's paths-*.conf: still worth naming.
            if let Some(value) = get(key)? {
                unmapped.push(format!("[{jail}] logpath = {value}: {why}"));
            }
        }
    }
    s.push('\n');
    Ok(Some(s))
}

/// `bantime.*` → `[jail.NAME.increment]`.
fn increment(
    s: &mut String,
    unmapped: &mut Vec<String>,
    jail: &str,
    get: &dyn Fn(&str) -> Result<Option<String>, IniError>,
) -> Result<(), ImportError> {
    let enabled = get("bantime.increment")?.as_deref().map(truthy);
    if enabled != Some(true) {
        return Ok(());
    }
    let _ = writeln!(s, "\n[jail.{jail}.increment]\nenabled = true");
    if let Some(raw) = get("bantime.factor")? {
        match raw.trim().parse::<f64>() {
            Ok(f) if f > 0.0 => {
                let _ = writeln!(s, "factor = {f:?}");
            }
            _ => unmapped.push(format!("[{jail}] bantime.factor = {raw}: not a number")),
        }
    }
    if let Some(raw) = get("bantime.multipliers")? {
        let parsed: Option<Vec<String>> = list(&raw)
            .iter()
            .map(|m| m.parse::<f64>().ok().map(|m| format!("{m:?}")))
            .collect();
        match parsed {
            Some(ms) if !ms.is_empty() => {
                let _ = writeln!(s, "multipliers = [{}]", ms.join(", "));
            }
            _ => unmapped.push(format!("[{jail}] bantime.multipliers = {raw}: not numbers")),
        }
    }
    duration_key(s, unmapped, jail, "maxtime", get("bantime.maxtime")?, false);
    duration_key(s, unmapped, jail, "rndtime", get("bantime.rndtime")?, false);
    if let Some(raw) = get("bantime.overalljails")? {
        let _ = writeln!(s, "overalljails = {}", truthy(&raw));
    }
    Ok(())
}

/// fail2ban's recidive jail reads fail2ban.log; syslog2ban has it built in over its store.
fn recidive(
    ini: &Ini,
    vars: &Options,
    body: &mut String,
    out: &mut Import,
) -> Result<(), ImportError> {
    let get = |key: &str| ini.get_with("recidive", key, vars);
    let mut s = String::from("[recidive]\nenabled = true\n");
    if let Some(raw) = get("maxretry")? {
        match raw.trim().parse::<u32>() {
            Ok(n) if n >= 1 => {
                let _ = writeln!(s, "maxretry = {n}");
            }
            _ => out.unmapped.push(format!(
                "[recidive] maxretry = {raw}: not a positive number"
            )),
        }
    }
    duration_key(
        &mut s,
        &mut out.unmapped,
        "recidive",
        "findtime",
        get("findtime")?,
        false,
    );
    duration_key(
        &mut s,
        &mut out.unmapped,
        "recidive",
        "bantime",
        get("bantime")?,
        true,
    );
    s.push('\n');
    body.push_str(&s);
    out.jails.push("recidive".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail2ban_time_strings() {
        assert_eq!(seconds("600"), Some(600));
        assert_eq!(seconds("10m"), Some(600));
        assert_eq!(seconds("1h 30m"), Some(5400));
        assert_eq!(seconds("1d12h"), Some(129_600));
        assert_eq!(seconds("1w"), Some(604_800));
        assert_eq!(seconds("-1"), Some(-1));
        assert_eq!(seconds("2 hours"), Some(7200));
        assert_eq!(seconds("soon"), None);
    }

    #[test]
    fn daemon_regexes_route_by_their_literal_start() {
        assert_eq!(
            literal_prefix(r"postfix(-\w+)?/\w+(?:/smtp[ds])?"),
            "postfix"
        );
        assert_eq!(literal_prefix(r"^exim"), "exim");
        assert_eq!(literal_prefix(r"\S*"), "");
    }

    #[test]
    fn lists_split_on_spaces_and_commas() {
        assert_eq!(
            list("127.0.0.1/8 ::1, 10.0.0.0/8\n  host.example"),
            vec!["127.0.0.1/8", "::1", "10.0.0.0/8", "host.example"]
        );
    }

    #[test]
    fn a_directory_without_jail_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            import(dir.path()),
            Err(ImportError::NoJailFile(_))
        ));
    }

    #[test]
    fn maps_enabled_jails_recidive_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("filter.d")).unwrap();
        std::fs::write(
            d.join("filter.d/demo.conf"),
            "[Definition]\n_daemon = demod\nfailregex = ^bad login from <HOST>$\nignoreregex =\n",
        )
        .unwrap();
        std::fs::write(
            d.join("jail.conf"),
            "[DEFAULT]\nbantime = 10m\nfindtime = 10m\nmaxretry = 5\nfilter = %(__name__)s\n\
             banaction = iptables-multiport\nport = 0:65535\n\
             [demo]\nport = 2222, 2223\nlogpath = /var/log/demo.log\n[other]\nport = 1\n[recidive]\nbantime = 1w\nfindtime = 1d\n",
        )
        .unwrap();
        std::fs::write(
            d.join("jail.local"),
            "[DEFAULT]\nignoreip = 127.0.0.1/8 ::1 10.1.0.0/16 gw.example\n\
             [demo]\nenabled = true\nmaxretry = 3\nbantime = 1h\nbantime.increment = true\nbantime.factor = 2\n\
             [recidive]\nenabled = true\nmaxretry = 4\n",
        )
        .unwrap();
        let result = import(d).unwrap();
        assert_eq!(result.jails, vec!["demo", "recidive"]);
        let t = &result.toml;
        assert!(t.contains("[jail.demo]\nenabled = true\n"), "{t}");
        assert!(t.contains("filter.d/demo.conf\""), "{t}");
        assert!(
            t.contains("maxretry = 3\nfindtime = 600\nbantime = 3600\n"),
            "{t}"
        );
        assert!(
            t.contains("ignoreip = [\"127.0.0.0/8\", \"::1/128\", \"10.1.0.0/16\"]"),
            "{t}"
        );
        assert!(
            t.contains("[jail.demo.increment]\nenabled = true\nfactor = 2.0\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "[recidive]\nenabled = true\nmaxretry = 4\nfindtime = 86400\nbantime = 604800\n"
            ),
            "{t}"
        );
        // iptables-multiport banned only the jail's ports: carried over, with the backend.
        assert!(
            t.contains("ports = [2222, 2223]\nprotocol = \"tcp\"\n"),
            "{t}"
        );
        assert_eq!(result.backend, Some("ipset"));
        assert!(t.contains("backend = \"ipset\""), "{t}");
        assert!(
            !t.contains("[jail.other]"),
            "disabled jails are left out: {t}"
        );
        let unmapped = result.unmapped.join("\n");
        assert!(
            unmapped.contains("[demo] ignoreip gw.example"),
            "{unmapped}"
        );
        assert!(
            unmapped.contains("[demo] logpath = /var/log/demo.log"),
            "{unmapped}"
        );
    }
}
