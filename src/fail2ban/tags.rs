//! fail2ban's `<tag>` language: option substitution (`<mode>`, `<lt_<logtype>/datepattern>`)
//! and the regex tags (`<HOST>`, `<ADDR>`, `<F-USER>...</F-USER>`, ...).
//!
//! Owns the expansion of tags into option values and into regex fragments (the fragments are
//! written for this project from fail2ban's documented semantics). It does not compile
//! regexes and does not read files.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

/// fail2ban gives up resolving after this many substitutions of one tag in one value.
const MAX_TAG_REPLACE: usize = 10;

/// Longest value a tag substitution may produce.
const MAX_EXPANDED: usize = 1024 * 1024;

/// A tag loop.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("option '{option}': tag <{tag}> refers to itself, loops, or expands past 1 MiB")]
pub struct TagLoop {
    /// The option being expanded.
    pub option: String,
    /// The offending tag.
    pub tag: String,
}

/// An IPv4 address (dotted quad, each octet 0-255).
const IP4: &str =
    r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)";
/// An IPv6 address, loosely: hex groups joined by one or two colons, optionally with an IPv4
/// tail (the capture is parsed afterwards, so a superset is fine). fail2ban's own pattern uses
/// a look-behind; every repetition here already ends with ':', which makes it unnecessary and
/// keeps `<HOST>` on the linear engine.
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|:){1,7}(?:[0-9a-fA-F]{1,4}|:)";
/// A host name.
const DNS: &str = r"[\w\-.^_]*\w";

fn ip4_group() -> String {
    format!(r"(?:::f{{4,6}}:)?(?P<ip4>{IP4})")
}
fn ip6_group() -> String {
    format!(r"(?P<ip6>{IP6})")
}
fn addr() -> String {
    format!(r"\[?(?:{}|{})\]?", ip4_group(), ip6_group())
}
fn host(use_dns: bool) -> String {
    if use_dns {
        format!(r"(?:{}|(?P<dns>{DNS}))", addr())
    } else {
        addr()
    }
}
fn subnet() -> String {
    format!(
        r"\[?(?:{}|{})(?:/(?P<cidr>\d+))?\]?",
        ip4_group(),
        ip6_group()
    )
}

/// Replaces `<name>` in every value by other values (or by `lookup(name)` for names that are
/// not in `tags`), repeatedly, as fail2ban's `substituteRecursiveTags`. Unknown tags stay.
pub fn substitute_recursive(
    tags: &mut BTreeMap<String, String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), TagLoop> {
    let keys: Vec<String> = tags.keys().cloned().collect();
    let mut cache: HashMap<String, Option<String>> = HashMap::new();
    let mut rounds: HashMap<String, usize> = HashMap::new();
    loop {
        let mut again = false;
        for key in &keys {
            let Some(original) = tags.get(key).cloned() else {
                continue;
            };
            if !original.contains('<') {
                continue;
            }
            let mut value = original.clone();
            let mut counts: HashMap<String, usize> = HashMap::new();
            let mut pos = 0;
            while let Some((start, end, name)) = next_tag(&value, pos) {
                if name == *key || counts.get(&name).copied().unwrap_or(0) >= MAX_TAG_REPLACE {
                    return Err(TagLoop {
                        option: key.clone(),
                        tag: name,
                    });
                }
                let repl = match tags.get(&name) {
                    Some(v) => Some(v.clone()),
                    None => cache
                        .entry(name.clone())
                        .or_insert_with(|| lookup(&name))
                        .clone(),
                };
                match repl {
                    Some(r) => {
                        let pattern = format!("<{name}>");
                        value = value.replace(&pattern, &r);
                        // Tags that each use the previous one eight times grow eightfold per
                        // level: a few hundred bytes would expand to gigabytes.
                        if value.len() > MAX_EXPANDED {
                            return Err(TagLoop {
                                option: key.clone(),
                                tag: name,
                            });
                        }
                        *counts.entry(name).or_default() += 1;
                        pos = start;
                    }
                    None => pos = end,
                }
            }
            if value != original {
                if next_tag(&value, 0).is_some() {
                    let n = rounds.entry(key.clone()).or_default();
                    *n += 1;
                    if *n <= MAX_TAG_REPLACE {
                        again = true;
                    }
                }
                tags.insert(key.clone(), value);
            }
        }
        if !again {
            return Ok(());
        }
    }
}

/// The next `<name>` (no spaces or angle brackets inside) at or after `from`.
fn next_tag(value: &str, from: usize) -> Option<(usize, usize, String)> {
    let bytes = value.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let mut j = i + 1;
            while j < bytes.len() && !matches!(bytes[j], b' ' | b'<' | b'>') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'>' && j > i + 1 {
                return Some((i, j + 1, value.get(i + 1..j)?.to_string()));
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

/// Group name for an `F-` tag: lower case, with fail2ban's renames of `id` and `port`.
pub fn f_tag_group(tag: &str) -> String {
    let lower = tag.to_lowercase().replace('-', "_");
    match lower.as_str() {
        "id" => "fid".into(),
        "port" => "fport".into(),
        _ => lower,
    }
}

/// Replaces the regex tags: `<HOST>`, `<ADDR>`, `<IP4>`, `<IP6>`, `<DNS>`, `<CIDR>`,
/// `<SUBNET>`, `<SKIPLINES>`, `<F-NAME>...</F-NAME>` (a named group `name`), and the
/// self-closing `<F-ID/>`-style forms. Anything else in angle brackets is left alone.
pub fn expand_regex_tags(regex: &str, use_dns: bool) -> String {
    let mut out = String::with_capacity(regex.len() * 2);
    let mut open: Vec<String> = Vec::new();
    let mut skiplines = 0;
    let mut rest = regex;
    while let Some((before, from)) = rest
        .find('<')
        .and_then(|start| rest.split_at_checked(start))
    {
        out.push_str(before);
        let after = from.get(1..).unwrap_or_default();
        let len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '/'))
            .unwrap_or(after.len());
        let (tag, tail) = after.split_at_checked(len).unwrap_or((after, ""));
        if tail.starts_with('>') && len > 0 {
            let whole = from.get(..len + 2).unwrap_or(from);
            let replacement = regex_tag(tag, use_dns, &mut open, &mut skiplines);
            out.push_str(replacement.as_deref().unwrap_or(whole));
            rest = tail.get(1..).unwrap_or_default();
        } else {
            out.push('<');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn regex_tag(
    tag: &str,
    use_dns: bool,
    open: &mut Vec<String>,
    skiplines: &mut usize,
) -> Option<String> {
    let simple = |t: &str| -> Option<String> {
        Some(match t {
            "HOST" => host(use_dns),
            "ADDR" => addr(),
            "IP4" => ip4_group(),
            "IP6" => ip6_group(),
            "DNS" => format!("(?P<dns>{DNS})"),
            "CIDR" => r"(?P<cidr>\d+)".into(),
            "SUBNET" => subnet(),
            _ => return None,
        })
    };
    if tag == "SKIPLINES" {
        let n = *skiplines;
        *skiplines += 1;
        return Some(format!(r"\n(?P<skiplines{n}>(?:(?:.*\n)*?))"));
    }
    if let Some(r) = simple(tag) {
        return Some(r);
    }
    // Self-closing forms: <F-ID/>, <F-PORT/>, <F-IP4/>, ...
    if let Some(name) = tag.strip_prefix("F-").and_then(|t| t.strip_suffix('/')) {
        return match name {
            "ID" => Some(r"(?P<fid>\S+)".into()),
            "PORT" => Some(r"(?P<fport>\w+)".into()),
            other => simple(other),
        };
    }
    if let Some(name) = tag.strip_prefix("/F-") {
        if let Some(i) = open.iter().position(|o| o == name) {
            open.remove(i);
            return Some(")".into());
        }
        return None;
    }
    let name = tag.strip_prefix("F-")?;
    // fail2ban's custom tags are upper case (`F-USER`, `F-ALT_USER`).
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return None;
    }
    open.push(name.to_string());
    Some(format!("(?P<{}>", f_tag_group(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail2ban::pyre::{Flags, PyRegex};

    #[test]
    fn recursive_and_nested_tags() {
        let mut tags: BTreeMap<String, String> = [
            ("failregex", "^<pre><mdre-<mode>>$\n<HOST>"),
            ("mode", "ddos"),
            ("pre", "<lt_<logtype>/p> "),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let lookup = |name: &str| -> Option<String> {
            match name {
                "logtype" => Some("file".into()),
                "lt_file/p" => Some("FILE".into()),
                "mdre-ddos" => Some("x<mode>".into()),
                _ => None,
            }
        };
        substitute_recursive(&mut tags, &lookup).unwrap();
        assert_eq!(tags["failregex"], "^FILE xddos$\n<HOST>");
        let mut tags: BTreeMap<String, String> = [
            ("a".to_string(), "<b>".to_string()),
            ("b".into(), "<a>".into()),
        ]
        .into();
        assert!(substitute_recursive(&mut tags, &|_| None).is_err());
    }

    #[test]
    fn regex_tags_capture_what_fail2ban_captures() {
        let re = expand_regex_tags(
            r"^user <F-USER>\S+</F-USER> from <HOST>(?: id <F-ID/>)?(?P<x>a)?$",
            true,
        );
        let re = PyRegex::new(&re, Flags::default()).expect(&re);
        let m = re.search("user bob from 192.0.2.1 id 77").unwrap();
        assert_eq!(m.groups.value("user"), Some("bob"));
        assert_eq!(m.groups.value("ip4"), Some("192.0.2.1"));
        assert_eq!(m.groups.value("fid"), Some("77"));
        let m = re.search("user bob from [2001:db8::1]").unwrap();
        assert_eq!(m.groups.value("ip6"), Some("2001:db8::1"));
        let m = re.search("user bob from ::ffff:10.0.0.1").unwrap();
        assert_eq!(m.groups.value("ip4"), Some("10.0.0.1"));
        let m = re.search("user bob from mail.example.com").unwrap();
        assert_eq!(m.groups.value("dns"), Some("mail.example.com"));
        let no_dns = PyRegex::new(&expand_regex_tags("^<HOST>$", false), Flags::default()).unwrap();
        assert!(no_dns.search("example.com").is_none());
        let sub = PyRegex::new(&expand_regex_tags("^<SUBNET>$", false), Flags::default()).unwrap();
        assert_eq!(
            sub.search("10.0.0.0/8").unwrap().groups.value("cidr"),
            Some("8")
        );
    }

    #[test]
    fn tags_that_fan_out_are_refused_instead_of_expanded() {
        // Ten tags, each using the previous one eight times (fuzz/README.md): gigabytes.
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        tags.insert("a".into(), "0123456789".into());
        for pair in names.windows(2) {
            tags.insert(pair[1].into(), format!("<{}>", pair[0]).repeat(8));
        }
        tags.insert("failregex".into(), "<j> <HOST>".into());
        assert!(substitute_recursive(&mut tags, &|_| None).is_err());
    }
}
