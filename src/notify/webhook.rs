//! Webhook deliveries: the documented JSON event (or a digest of events), or the same shaped
//! for a Slack/Mattermost incoming webhook (`{"text": ...}`) or an ntfy topic (plain text
//! with a `Title` header), with the optional HMAC signature header.
//!
//! Owns the body shapes and the signature. Text from logs goes in as JSON string values
//! (serde escapes them), with Slack's control characters `& < >` escaped so that a log line
//! cannot mention a channel or forge a link; ntfy's title is one printable line.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::event::{printable, Event};
use crate::config::{WebhookConfig, WebhookFormat};
use crate::http_client as http;

/// The header carrying `sha256=HEX` of the body, keyed with the notifier's `secret`.
pub const SIGNATURE_HEADER: &str = "X-Syslog2ban-Signature";
/// The header carrying the outbox row id (the same on a repeat).
pub const DELIVERY_HEADER: &str = "X-Syslog2ban-Delivery";

/// Most matched lines shown in a chat message.
const CHAT_LINES: usize = 10;

/// What to POST: the content type, the body and extra headers.
struct Shaped {
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

/// `text` with Slack's three control characters escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chat text of one event: the summary, then the matched lines quoted.
fn chat_text(event: &Event) -> String {
    let mut text = format!("syslog2ban: {}", event.summary());
    for line in event.lines.iter().take(CHAT_LINES) {
        text.push_str("\n> ");
        text.push_str(&printable(line));
    }
    text
}

/// The chat text of a digest.
fn digest_text(events: &[Event]) -> String {
    let mut text = format!("syslog2ban digest: {} events", events.len());
    for event in events {
        text.push('\n');
        text.push_str(&event.digest_line());
    }
    text
}

fn shape_one(format: WebhookFormat, raw: &str, event: &Event) -> Shaped {
    match format {
        WebhookFormat::Json => Shaped {
            content_type: "application/json",
            body: raw.to_string(),
            headers: Vec::new(),
        },
        WebhookFormat::Slack => Shaped {
            content_type: "application/json",
            body: serde_json::json!({ "text": slack_escape(&chat_text(event)) }).to_string(),
            headers: Vec::new(),
        },
        WebhookFormat::Ntfy => Shaped {
            content_type: "text/plain; charset=utf-8",
            body: chat_text(event),
            headers: vec![
                (
                    "Title",
                    format!(
                        "syslog2ban: {} {} ({})",
                        event.event,
                        event.address,
                        printable(&event.jail)
                    ),
                ),
                ("Tags", "no_entry".to_string()),
            ],
        },
    }
}

fn shape_digest(format: WebhookFormat, raws: &[&str], events: &[Event]) -> Shaped {
    match format {
        WebhookFormat::Json => {
            let list: Vec<serde_json::Value> = raws
                .iter()
                .filter_map(|r| serde_json::from_str(r).ok())
                .collect();
            Shaped {
                content_type: "application/json",
                body: serde_json::json!({ "event": "digest", "events": list }).to_string(),
                headers: Vec::new(),
            }
        }
        WebhookFormat::Slack => Shaped {
            content_type: "application/json",
            body: serde_json::json!({ "text": slack_escape(&digest_text(events)) }).to_string(),
            headers: Vec::new(),
        },
        WebhookFormat::Ntfy => Shaped {
            content_type: "text/plain; charset=utf-8",
            body: digest_text(events),
            headers: vec![(
                "Title",
                format!("syslog2ban digest: {} events", events.len()),
            )],
        },
    }
}

/// POSTs one event (`raw`, the queued JSON) as row `delivery`.
pub async fn post_event(
    webhook: &WebhookConfig,
    delivery: &str,
    raw: &str,
    event: &Event,
) -> Result<(), String> {
    send(webhook, delivery, shape_one(webhook.format, raw, event)).await
}

/// POSTs a digest of `events` (queued as `raws`) as `delivery`.
pub async fn post_digest(
    webhook: &WebhookConfig,
    delivery: &str,
    raws: &[&str],
    events: &[Event],
) -> Result<(), String> {
    send(
        webhook,
        delivery,
        shape_digest(webhook.format, raws, events),
    )
    .await
}

async fn send(webhook: &WebhookConfig, delivery: &str, shaped: Shaped) -> Result<(), String> {
    let mut headers = vec![
        ("Content-Type", shaped.content_type.to_string()),
        (DELIVERY_HEADER, delivery.to_string()),
    ];
    headers.extend(shaped.headers);
    if let Some(secret) = &webhook.secret {
        headers.push((SIGNATURE_HEADER, signature(secret, shaped.body.as_bytes())));
    }
    match http::post(
        &webhook.url,
        &headers,
        shaped.body.as_bytes(),
        webhook.timeout,
    )
    .await
    {
        Ok(code) if (200..300).contains(&code) => Ok(()),
        Ok(code) => Err(format!("{} answered {code}", webhook.url.host)),
        Err(e) => Err(format!("{}:{}: {e}", webhook.url.host, webhook.url.port)),
    }
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn event() -> (String, Event) {
        let raw = r#"{"event":"ban","jail":"sshd","address":"198.51.100.7","failures":5,
            "bantime":600,"origin":"web1","lines":["Failed password for <!channel> from 198.51.100.7\r\nx"],
            "started":1800000000,"expires":1800000600}"#
            .to_string();
        let event = Event::parse(&raw).unwrap();
        (raw, event)
    }

    #[test]
    fn slack_text_cannot_ping_a_channel_and_ntfy_titles_are_one_line() {
        let (raw, event) = event();
        let slack = shape_one(WebhookFormat::Slack, &raw, &event);
        let v: serde_json::Value = serde_json::from_str(&slack.body).unwrap();
        assert_eq!(
            v["text"],
            "syslog2ban: banned 198.51.100.7 in sshd after 5 failures (from web1, 10m)\n\
             &gt; Failed password for &lt;!channel&gt; from 198.51.100.7  x"
        );
        let ntfy = shape_one(WebhookFormat::Ntfy, &raw, &event);
        assert_eq!(ntfy.headers[0].1, "syslog2ban: ban 198.51.100.7 (sshd)");
        assert!(ntfy.body.starts_with("syslog2ban: banned 198.51.100.7"));
        let json = shape_one(WebhookFormat::Json, &raw, &event);
        assert_eq!(json.body, raw);
        let digest = shape_digest(WebhookFormat::Json, &[&raw, &raw], &[event.clone(), event]);
        let v: serde_json::Value = serde_json::from_str(&digest.body).unwrap();
        assert_eq!(v["event"], "digest");
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
        assert_eq!(v["events"][1]["address"], "198.51.100.7");
    }
}
