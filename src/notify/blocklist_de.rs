//! blocklist.de reports: a ban event becomes one POST to its HTTP report API (form fields
//! `server`, `apikey`, `ip`, `service`, `format`, `logs`), at most once per address per
//! `period` for the whole collector, like AbuseIPDB's (the caller keeps the period).
//!
//! Owns the request shape; the redaction of the logs is AbuseIPDB's (`abuseipdb::redact`), so
//! both services get the same scrubbed lines.

use regex::Regex;

use super::abuseipdb::{form_value, redact, Reported};
use super::event::Event;
use crate::config::BlocklistDeConfig;
use crate::http_client as http;

/// Most characters of the logs sent.
const LOGS_CAP: usize = 8000;

/// The form for `event`, or why it is not reported.
pub fn form(config: &BlocklistDeConfig, event: &Event) -> Result<String, String> {
    if event.event != "ban" {
        return Err("only bans are reported".into());
    }
    if event.address.contains('/') {
        return Err(format!(
            "{} is a prefix; blocklist.de takes single addresses",
            event.address
        ));
    }
    let extra: Vec<Regex> = config
        .redact
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect();
    let logs: Vec<String> = event
        .lines
        .iter()
        .map(|l| redact(l, &event.address, &extra))
        .collect();
    let logs: String = logs.join("\n").chars().take(LOGS_CAP).collect();
    let service = config.service.as_deref().unwrap_or(&event.jail);
    Ok(format!(
        "server={}&apikey={}&ip={}&service={}&format=json&logs={}",
        form_value(&config.server),
        form_value(&config.key),
        form_value(&event.address),
        form_value(service),
        form_value(&logs)
    ))
}

/// Reports the ban `event`. Err: retry later.
pub async fn report(config: &BlocklistDeConfig, event: &Event) -> Result<Reported, String> {
    let form = match form(config, event) {
        Ok(form) => form,
        Err(why) => return Ok(Reported::Dropped(why)),
    };
    let headers = [(
        "Content-Type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    match http::post(&config.url, &headers, form.as_bytes(), config.timeout).await {
        Ok(code) if (200..300).contains(&code) => Ok(Reported::Sent),
        Ok(code @ (400 | 422)) => Ok(Reported::Dropped(format!(
            "blocklist.de refused the report of {} ({code})",
            event.address
        ))),
        Ok(code) => Err(format!("{} answered {code}", config.url.host)),
        Err(e) => Err(format!("{}:{}: {e}", config.url.host, config.url.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpUrl;
    use std::time::Duration;

    #[test]
    fn the_form_carries_the_service_and_scrubbed_logs() {
        let config = BlocklistDeConfig {
            url: HttpUrl::parse("http://127.0.0.1:1/en/httpreports.html").unwrap(),
            server: "ops@example.org".into(),
            key: "k&1".into(),
            service: None,
            period: Duration::from_secs(86_400),
            redact: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        let event = Event::parse(
            r#"{"event":"ban","jail":"sshd","address":"198.51.100.7","bantime":60,"expires":null,
               "lines":["Failed password for root from 198.51.100.7 port 22 ssh2","x from 10.0.0.1"]}"#,
        )
        .unwrap();
        assert_eq!(
            form(&config, &event).unwrap(),
            "server=ops%40example.org&apikey=k%261&ip=198.51.100.7&service=sshd&format=json\
             &logs=Failed+password+for+%5Buser%5D+from+198.51.100.7+port+22+ssh2%0Ax+from+%5Baddress%5D"
        );
        let prefix = Event {
            address: "198.51.100.0/24".into(),
            ..event
        };
        assert!(form(&config, &prefix).is_err());
    }
}
