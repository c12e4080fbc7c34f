//! The `regex` command (fail2ban-regex's counterpart): resolving FILTER (a jail name, a jail
//! file, a fail2ban filter file with options, a jail with `[mode=...]`) and checking a log's
//! lines with it, natively in parallel or through the fail2ban engine in order. Part of the
//! binary, beside `main.rs`, which dispatches to `regex_command`.

use std::fmt::Write as _;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use syslog2ban::config::{self, JailConfig};
use syslog2ban::regex_check;

use crate::DEFAULT_CONFIG;

/// What `regex` runs: a syslog2ban jail's filter, or a fail2ban filter file.
pub(crate) enum FilterUnderTest {
    Native(Box<JailConfig>),
    Fail2ban(syslog2ban::fail2ban::Fail2banMatcher),
}

impl FilterUnderTest {
    fn name(&self) -> String {
        match self {
            FilterUnderTest::Native(jail) => jail.name.to_string(),
            FilterUnderTest::Fail2ban(m) => m.filter().path().display().to_string(),
        }
    }

    fn failregex_source(&self, i: usize) -> String {
        match self {
            FilterUnderTest::Native(jail) => jail.filter.failregex_source(i),
            FilterUnderTest::Fail2ban(m) => m.filter().failregex_source(i),
        }
        .unwrap_or("")
        .to_string()
    }
}

/// FILTER is a fail2ban filter file (`x.conf`, `x.conf[opts]`), a path to a jail file, or a
/// jail name in the config's conf.d.
pub(crate) fn resolve_filter(filter: &str, config: Option<&Path>) -> Result<FilterUnderTest> {
    let name = filter.split_once('[').map_or(filter, |(n, _)| n).trim();
    if name.ends_with(".conf") {
        let spec = syslog2ban::fail2ban::FilterSpec::parse(filter)?;
        let loaded = syslog2ban::fail2ban::load(&spec)?;
        return Ok(FilterUnderTest::Fail2ban(
            syslog2ban::fail2ban::Fail2banMatcher::new(std::sync::Arc::new(loaded)),
        ));
    }
    // A jail name may pick one of its modes, as fail2ban filters take `[mode=...]`.
    let mode = match filter.split_once('[') {
        None => None,
        Some((_, options)) => {
            let options = options.trim().strip_suffix(']').unwrap_or(options);
            match options.split_once('=') {
                Some(("mode", mode)) if !mode.trim().is_empty() => Some(mode.trim().to_string()),
                _ => bail!("{filter}: a jail takes only [mode=NAME] (other options apply to fail2ban filter files)"),
            }
        }
    };
    let jail = resolve_jail(name, config, mode.as_deref())?;
    // A jail that uses a fail2ban filter is tested as fail2ban-regex tests that filter: on
    // file lines, with their dates.
    if let Some(source) = &jail.fail2ban {
        return Ok(FilterUnderTest::Fail2ban(
            syslog2ban::fail2ban::Fail2banMatcher::new(source.filter.clone()),
        ));
    }
    Ok(FilterUnderTest::Native(Box::new(jail)))
}

/// A jail from a .toml file or by name from the config's conf.d.
fn resolve_jail(name: &str, config: Option<&Path>, mode: Option<&str>) -> Result<JailConfig> {
    let path = Path::new(name);
    let (files, wanted) = if path.extension().is_some_and(|e| e == "toml") || path.is_file() {
        if !path.is_file() {
            bail!("{name}: no such file");
        }
        (vec![path.to_path_buf()], None)
    } else {
        let base = match config {
            Some(c) => c.to_path_buf(),
            None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => PathBuf::from("."),
        };
        let mut files = config::config_files(&base);
        if files.is_empty() {
            // `./conf.d` of a checkout, without a main file.
            files = config::config_files(&base.join("conf.d").join("none.toml"));
        }
        (files, Some(name.to_string()))
    };
    // A mode applies to a named jail: a jail file's one jail is named by the file.
    let wanted = match (&wanted, mode) {
        (None, Some(_)) => config::load_jails(&files, None)
            .ok()
            .filter(|jails| jails.len() == 1)
            .map(|jails| jails[0].name.to_string()),
        _ => wanted,
    };
    let jails = config::load_jails_in_mode(&files, wanted.as_deref(), mode)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match wanted {
        Some(name) => jails
            .into_iter()
            .find(|j| j.name.as_str() == name)
            .with_context(|| {
                format!(
                    "no jail '{name}' in {}",
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        None => {
            let mut jails = jails;
            match jails.len() {
                1 => Ok(jails.remove(0)),
                0 => bail!("{name}: holds no [jail.*] table"),
                n => bail!("{name}: holds {n} jails; name one instead of the file"),
            }
        }
    }
}

pub(crate) fn regex_command(
    log: &Path,
    filter: &mut FilterUnderTest,
    json: bool,
    show_matched: bool,
    show_missed: bool,
) -> Result<()> {
    let input: Box<dyn Read + Send> = if log == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(log).with_context(|| format!("{}: cannot open", log.display()))?,
        )
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let listing = regex_check::Listing {
        json,
        matched: show_matched,
        missed: show_missed,
    };
    let report = match filter {
        FilterUnderTest::Native(jail) => regex_native(input, log, &jail.filter, listing, &mut out)?,
        FilterUnderTest::Fail2ban(matcher) => {
            regex_fail2ban(input, log, matcher, listing, &mut out)?
        }
    };
    let summary = &report.summary;
    if !json {
        writeln!(out, "Jail: {}", filter.name())?;
        writeln!(
            out,
            "Lines: {} lines, {} matched, {} ignored, {} missed",
            summary.lines, summary.matched, summary.ignored, summary.missed
        )?;
        writeln!(out, "Failregex hits:")?;
        for (i, hits) in summary.per_regex.iter().enumerate() {
            writeln!(out, "  {i:>2}) {hits:>6}  {}", filter.failregex_source(i))?;
        }
        if let FilterUnderTest::Fail2ban(m) = filter {
            let slow = m.filter().backtracking_regexes();
            if !slow.is_empty() {
                writeln!(
                    out,
                    "On the backtracking engine (look-around, back-references):"
                )?;
                for (key, index, _) in slow {
                    writeln!(out, "  {key}[{index}]")?;
                }
            }
        }
        if show_matched {
            writeln!(out, "Matched lines:")?;
            out.write_all(report.matched.as_bytes())?;
        }
        if show_missed {
            writeln!(out, "Missed lines:")?;
            out.write_all(report.missed.as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A native jail filter is stateless: checked on every core, output in input order.
fn regex_native(
    input: Box<dyn Read + Send>,
    log: &Path,
    filter: &syslog2ban::jail::filter::Filter,
    listing: regex_check::Listing,
    out: &mut impl Write,
) -> Result<regex_check::ChunkReport> {
    let now = chrono::Utc::now();
    let parallel = regex_check::Parallel::all_cores();
    regex_check::check_reader(filter, input, out, now, listing, parallel).map_err(|e| match e {
        regex_check::CheckError::Read(e) => {
            anyhow::Error::new(e).context(format!("{}: read error", log.display()))
        }
        other => other.into(),
    })
}

/// A fail2ban filter keeps multi-line state: line by line, in order.
fn regex_fail2ban(
    input: Box<dyn Read + Send>,
    log: &Path,
    matcher: &mut syslog2ban::fail2ban::Fail2banMatcher,
    listing: regex_check::Listing,
    out: &mut impl Write,
) -> Result<regex_check::ChunkReport> {
    let mut report = regex_check::ChunkReport::default();
    let summary = &mut report.summary;
    let regex_count = matcher.filter().failregex_count();
    for (i, line) in std::io::BufReader::new(input).split(b'\n').enumerate() {
        let bytes = line.with_context(|| format!("{}: read error", log.display()))?;
        let line = String::from_utf8_lossy(&bytes);
        let r = regex_check::check_fail2ban_line(matcher, i + 1, &line);
        if listing.json {
            serde_json::to_writer(&mut *out, &r)?;
            out.write_all(b"\n")?;
        }
        let result: regex_check::Verdict = (&r).into();
        regex_check::tally(summary, result, &line, regex_count);
        if listing.json {
            // Already written above.
        } else if result.matched && listing.matched {
            report.matched.push_str(&r.matched_listing(&line));
        } else if !result.matched
            && !result.ignored
            && listing.missed
            && !line.trim().is_empty()
            && !line.starts_with('#')
        {
            writeln!(report.missed, "{:>6} | {}", i + 1, line.trim_end())?;
        }
    }
    Ok(report)
}
