//! The fail2ban filter loader: `FilterSpec::parse`, the INI dialect (`fail2ban::ini::Ini`,
//! with `%(name)s` interpolation through `get` / `get_ex`), and `fail2ban::load` on a filter
//! file holding the input, then a matcher over a few lines.
//!
//! Input (as text, invalid UTF-8 replaced): the first line is a filter reference
//! (`x.conf[key=value, ...]`, its options are passed to `load`), the rest is the filter
//! file. Comment lines `#line: ...` in the file are also fed to the loaded filter's matcher.
//! Asserts only that nothing panics.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use syslog2ban::fail2ban::ini::{Ini, Options, DEFAULT_SECTION};
use syslog2ban::fail2ban::{load, Fail2banMatcher, FilterSpec};

const LINES: [&str; 3] = [
    "Dec  3 10:00:00 host sshd[1]: Failed password for root from 198.51.100.7 port 22 ssh2",
    "2026-12-03 10:00:00 auth failure from 2001:db8::1 user=x",
    "host demod[7]: bad login from 203.0.113.9",
];

fn walk(ini: &Ini, vars: &Options) {
    let mut sections: Vec<String> = ini.sections().map(str::to_string).collect();
    sections.push(DEFAULT_SECTION.to_string());
    for section in &sections {
        for key in ini.options(section) {
            let _ = ini.get(section, &key);
            let _ = ini.get_with(section, &key, vars);
            let _ = ini.get_ex(section, &key, vars);
            let _ = ini.get_ex(section, &format!("known/{key}"), vars);
            let _ = ini.get_ex(section, &format!("default/{key}"), vars);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (spec_line, ini_text) = text.split_once('\n').unwrap_or((&text, ""));
    let spec = FilterSpec::parse(spec_line).ok();
    let vars: Options = spec
        .as_ref()
        .map(|s| s.options.iter().cloned().collect())
        .unwrap_or_default();

    let name = Path::new("fuzz.conf");
    if let Ok(mut ini) = Ini::parse_str(ini_text, name) {
        walk(&ini, &vars);
        // The same text again as a `.local` override: fills `known/` values.
        if ini.merge_str(ini_text, Path::new("fuzz.local")).is_ok() {
            walk(&ini, &vars);
        }
    }

    // The whole filter, from a file (includes resolve beside it and find nothing).
    let path = scratch::dir("fail2ban_filter").join("fuzz.conf");
    std::fs::write(&path, ini_text.as_bytes()).expect("write filter");
    let spec = FilterSpec {
        path,
        options: spec.map(|s| s.options).unwrap_or_default(),
    };
    let Ok(filter) = load(&spec) else {
        return;
    };
    let _ = filter.programs();
    let _ = filter.backtracking_regexes();
    let mut matcher = Fail2banMatcher::new(Arc::new(filter));
    let extra = ini_text.lines().filter_map(|l| l.strip_prefix("#line:"));
    for line in LINES.into_iter().chain(extra) {
        let _ = matcher.file_line(line);
        let _ = matcher.dated_line(line);
    }
});
