//! AbuseIPDB reports: a ban event becomes one v2 report (`POST /api/v2/report`, form fields
//! `ip`, `categories`, `comment`, the API key in the `Key` header), at most once per address
//! per `period` for the whole collector however many servers and jails saw the attacker.
//!
//! Owns the request shape and the comment's redaction: the matched lines leave only with user
//! names and every address but the reported one replaced, and with the operator's own
//! patterns applied. What it cannot report (a malformed event, a report AbuseIPDB refuses as
//! invalid) is dropped with a warning, since sending it again would fail the same way.

use std::sync::LazyLock;

use regex::Regex;

use super::event::Event;
use crate::config::AbuseIpdbConfig;
use crate::http_client as http;

/// Most characters of a comment (AbuseIPDB takes 1024).
const COMMENT_CAP: usize = 1000;

/// User names as daemons write them: `for root`, `for invalid user admin`, `user=bob`,
/// `user <bob>`, `sasl_username=bob`.
static USER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:for (?:invalid user |illegal user )?|user[= ]<?|sasl_username=|login[= ]<?)([^\s>,;]+)",
    )
    .expect("the user pattern compiles")
});

/// Anything that looks like an IPv4 or IPv6 address.
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})\b")
        .expect("the address pattern compiles")
});

/// What became of one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Reported {
    /// Sent; AbuseIPDB took it.
    Sent,
    /// Not sent, and not to be retried (why).
    Dropped(String),
}

/// The comment for `lines` about `address`: redacted, one line after another, capped.
pub fn comment(lines: &[&str], address: &str, extra: &[Regex]) -> String {
    redact(&lines.join(" | "), address, extra)
        .chars()
        .take(COMMENT_CAP)
        .collect()
}

/// `text` with user names, every address but `address`, and what `extra` matches replaced.
pub fn redact(text: &str, address: &str, extra: &[Regex]) -> String {
    let mut text = USER
        .replace_all(text, |c: &regex::Captures| {
            let whole = &c[0];
            let before = whole.strip_suffix(&c[1]).unwrap_or(whole);
            format!("{before}[user]")
        })
        .into_owned();
    text = ADDRESS
        .replace_all(&text, |c: &regex::Captures| {
            if &c[0] == address || !c[0].contains(['.', ':']) {
                c[0].to_string()
            } else {
                "[address]".to_string()
            }
        })
        .into_owned();
    for pattern in extra {
        text = pattern.replace_all(&text, "[redacted]").into_owned();
    }
    text
}

/// `application/x-www-form-urlencoded` of one value.
pub(super) fn form_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Reports the ban `event`. Err: retry later.
pub async fn report(config: &AbuseIpdbConfig, event: &Event) -> Result<Reported, String> {
    if event.event != "ban" {
        return Ok(Reported::Dropped("only bans are reported".into()));
    }
    let address = event.address.as_str();
    if address.contains('/') {
        return Ok(Reported::Dropped(format!(
            "{address} is a prefix; AbuseIPDB takes single addresses"
        )));
    }
    let lines: Vec<&str> = event.lines.iter().map(String::as_str).collect();
    let extra: Vec<Regex> = config
        .redact
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect();
    let categories: Vec<String> = config.categories.iter().map(u8::to_string).collect();
    let form = format!(
        "ip={}&categories={}&comment={}",
        form_value(address),
        form_value(&categories.join(",")),
        form_value(&comment(&lines, address, &extra))
    );
    let headers = [
        ("Key", config.key.clone()),
        ("Accept", "application/json".to_string()),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    match http::post(&config.url, &headers, form.as_bytes(), config.timeout).await {
        Ok(code) if (200..300).contains(&code) => Ok(Reported::Sent),
        // The request itself is wrong (an invalid address, a category): it would fail again.
        Ok(code @ (400 | 422)) => Ok(Reported::Dropped(format!(
            "AbuseIPDB refused the report of {address} ({code})"
        ))),
        Ok(code) => Err(format!("{} answered {code}", config.url.host)),
        Err(e) => Err(format!("{}:{}: {e}", config.url.host, config.url.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_keep_the_attack_and_drop_who_and_where() {
        let text = comment(
            &[
                "Failed password for invalid user admin from 198.51.100.7 port 4242 ssh2",
                "warning: unknown[198.51.100.7]: SASL LOGIN authentication failed, sasl_username=bob@example.com, client 10.0.0.5",
                "pam_unix(sshd:auth): authentication failure; user=carol rhost=2001:db8::9",
            ],
            "198.51.100.7",
            &[Regex::new("example\\.com").unwrap()],
        );
        assert!(text.contains("from 198.51.100.7 port 4242"), "{text}");
        for gone in [
            "admin",
            "bob",
            "carol",
            "10.0.0.5",
            "2001:db8::9",
            "example.com",
        ] {
            assert!(!text.contains(gone), "{gone} leaked: {text}");
        }
        assert!(text.contains("for invalid user [user]"), "{text}");
        assert!(text.contains("[address]"), "{text}");
        assert!(comment(&["x".repeat(5000).as_str()], "198.51.100.7", &[]).len() <= COMMENT_CAP);
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_value("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_value("18,22"), "18%2C22");
    }
}
