//! RDAP lookups (the JSON successor of WHOIS) for a mail's `<whois>`: who holds the banned
//! address's network, its country and abuse contact.
//!
//! Owns the lookup, its cache, and the summary. The answer is attacker-influenced data (a
//! network's holder writes its own names): it is read as JSON, each value reduced to one
//! printable line and capped, and the summary goes into a template as a value, never as
//! template text, a header or a command. A lookup that fails says so in the summary; it never
//! holds a notification back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::event::printable;
use crate::config::{HttpUrl, RdapConfig};
use crate::http_client as http;

/// Largest answer read.
const MAX_ANSWER: usize = 256 * 1024;
/// Redirects followed (a bootstrap service sends one to the registry).
const MAX_REDIRECTS: usize = 3;
/// How long a summary is reused.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a failed lookup is not tried again.
const FAILED_TTL: Duration = Duration::from_secs(600);
/// Most summaries cached.
const CACHE_CAP: usize = 10_000;
/// Longest value kept, and longest summary.
const VALUE_CAP: usize = 200;
const SUMMARY_CAP: usize = 2000;

/// Lookups with a cache.
#[derive(Debug, Default)]
pub struct Rdap {
    cache: HashMap<String, (Instant, String)>,
}

impl Rdap {
    /// The summary for `address` (an address or prefix; a prefix is looked up by its first
    /// address).
    pub async fn summary(&mut self, config: &RdapConfig, address: &str) -> String {
        let key = address.split('/').next().unwrap_or(address).to_string();
        if let Some((at, text)) = self.cache.get(&key) {
            if at.elapsed() < TTL {
                return text.clone();
            }
        }
        let (text, ttl) = match lookup(config, &key).await {
            Ok(answer) => (summarise(&key, &answer), TTL),
            Err(e) => (format!("RDAP lookup of {key} failed: {e}"), FAILED_TTL),
        };
        if self.cache.len() >= CACHE_CAP {
            self.cache.clear();
        }
        // Stored so that it expires after `ttl`, whichever TTL applies.
        let stamp = Instant::now()
            .checked_sub(TTL - ttl)
            .unwrap_or_else(Instant::now);
        self.cache.insert(key, (stamp, text.clone()));
        text
    }
}

async fn lookup(config: &RdapConfig, address: &str) -> Result<Value, String> {
    let mut url = config.base.clone();
    url.path.push_str(address);
    let headers = [("Accept", "application/rdap+json".to_string())];
    for _ in 0..=MAX_REDIRECTS {
        let answer = http::get(&url, &headers, config.timeout, MAX_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        match answer.status {
            200 => {
                return serde_json::from_slice(&answer.body)
                    .map_err(|e| format!("the answer is not JSON: {e}"))
            }
            301 | 302 | 303 | 307 | 308 => {
                let location = answer
                    .header("location")
                    .ok_or("a redirect without Location")?;
                url = if location.starts_with('/') {
                    HttpUrl {
                        path: location.to_string(),
                        ..url
                    }
                } else {
                    HttpUrl::parse(location)?
                };
            }
            code => return Err(format!("{} answered {code}", url.host)),
        }
    }
    Err("too many redirects".into())
}

/// One printable, capped line of a JSON string value.
fn text(value: &Value) -> Option<String> {
    let s = value.as_str()?;
    let line: String = printable(s).chars().take(VALUE_CAP).collect();
    let line = line.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// A vCard property's text (`["fn", {}, "text", "Example Org"]`).
fn vcard(entity: &Value, property: &str) -> Option<String> {
    entity["vcardArray"][1]
        .as_array()?
        .iter()
        .find(|p| p[0].as_str() == Some(property))
        .and_then(|p| text(&p[3]))
}

/// Entities of `value` and theirs, with their roles.
fn entities(value: &Value, out: &mut Vec<(Vec<String>, Value)>, depth: usize) {
    let Some(list) = value["entities"].as_array() else {
        return;
    };
    for entity in list.iter().take(32) {
        let roles = entity["roles"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push((roles, entity.clone()));
        if depth < 3 {
            entities(entity, out, depth + 1);
        }
    }
}

/// The summary of an RDAP ip network object.
pub fn summarise(address: &str, answer: &Value) -> String {
    let mut lines = vec![format!("RDAP for {address}:")];
    let mut add = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            lines.push(format!("  {label}: {v}"));
        }
    };
    let range = match (text(&answer["startAddress"]), text(&answer["endAddress"])) {
        (Some(a), Some(b)) => Some(format!("{a} - {b}")),
        _ => None,
    };
    add("range", range);
    add("network", text(&answer["name"]));
    add("handle", text(&answer["handle"]));
    add("country", text(&answer["country"]));
    let mut all = Vec::new();
    entities(answer, &mut all, 0);
    let with_role = |role: &str| {
        all.iter()
            .filter(|(roles, _)| roles.iter().any(|r| r == role))
            .map(|(_, e)| e)
            .collect::<Vec<_>>()
    };
    for entity in with_role("registrant").into_iter().take(2) {
        add("holder", vcard(entity, "fn"));
    }
    for entity in with_role("abuse").into_iter().take(2) {
        add("abuse", vcard(entity, "email"));
    }
    if lines.len() == 1 {
        lines.push("  (no network data in the answer)".into());
    }
    lines.join("\n").chars().take(SUMMARY_CAP).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_keeps_the_network_and_makes_every_value_one_line() {
        let answer: Value = serde_json::from_str(
            r#"{"objectClassName":"ip network","handle":"NET-198-51-100-0-1",
                "startAddress":"198.51.100.0","endAddress":"198.51.100.255",
                "name":"EXAMPLE-NET\r\nBcc: victim@example.org","country":"ZZ",
                "entities":[{"roles":["registrant"],"vcardArray":["vcard",[["version",{},"text","4.0"],
                  ["fn",{},"text","Example $(touch /tmp/pwned) Org"]]],
                  "entities":[{"roles":["abuse"],"vcardArray":["vcard",[["email",{},"text","abuse@example.net"]]]}]}]}"#,
        )
        .unwrap();
        let s = summarise("198.51.100.7", &answer);
        assert_eq!(
            s,
            "RDAP for 198.51.100.7:\n  range: 198.51.100.0 - 198.51.100.255\n  \
             network: EXAMPLE-NET  Bcc: victim@example.org\n  handle: NET-198-51-100-0-1\n  \
             country: ZZ\n  holder: Example $(touch /tmp/pwned) Org\n  abuse: abuse@example.net"
        );
        assert_eq!(
            summarise("198.51.100.7", &Value::Null),
            "RDAP for 198.51.100.7:\n  (no network data in the answer)"
        );
    }
}
