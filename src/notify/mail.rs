//! Mail notifications over SMTP (lettre): STARTTLS or TLS with the Mozilla roots and an
//! optional private CA, SMTP AUTH, one plain-text mail per event or per digest.
//!
//! Owns the message: the subject and body templates filled with the event's values, and the
//! headers. Values are data: the subject is reduced to one printable line before it becomes a
//! header (lettre encodes it), the body is the mail's text and nothing reads it again, and
//! nothing runs a program. The Message-ID comes from the outbox row, so a mail sent again
//! after a crash is recognisable as the same one.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::event::{printable, Event};
use crate::config::{MailConfig, SmtpTls};

/// Longest subject, in characters.
const SUBJECT_CAP: usize = 200;

/// A mail notifier's connection settings and parsed addresses.
pub struct Mailer {
    config: MailConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .finish()
    }
}

impl Mailer {
    /// Builds the SMTP client; Err: the CA file cannot be read or parsed.
    pub fn new(config: &MailConfig) -> Result<Mailer, String> {
        let parameters = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                crate::tls_client::ca_certificates(&pem)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| e.to_string())
        };
        let tls = match config.tls {
            SmtpTls::Starttls => Tls::Required(parameters()?),
            SmtpTls::Tls => Tls::Wrapper(parameters()?),
            SmtpTls::None => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
                .port(config.port)
                .tls(tls)
                .timeout(Some(config.timeout));
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let parse = |text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("\"{text}\": {e}"))
        };
        Ok(Mailer {
            config: config.clone(),
            transport: builder.build(),
            from: parse(&config.from)?,
            to: config
                .to
                .iter()
                .map(|t| parse(t))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The mail for `event`; `id` names the delivery (the outbox row).
    pub async fn send_event(&self, id: &str, event: &Event, whois: &str) -> Result<(), String> {
        let subject = self.config.subject.fill(|f| event.field(f, whois));
        let body = self.config.body.fill(|f| event.field(f, whois));
        self.send(id, &subject, body).await
    }

    /// One mail for `events`; `id` names the delivery.
    pub async fn send_digest(&self, id: &str, events: &[Event]) -> Result<(), String> {
        let bans = events.iter().filter(|e| e.event == "ban").count();
        let subject = format!(
            "[syslog2ban] digest: {bans} bans, {} other events",
            events.len() - bans
        );
        let mut body = format!(
            "syslog2ban: {} events since the last digest\n\n",
            events.len()
        );
        for event in events {
            body.push_str(&event.digest_line());
            body.push('\n');
        }
        self.send(id, &subject, body).await
    }

    /// Whether the body template asks for the RDAP summary.
    pub fn wants_whois(&self) -> bool {
        use crate::config::Field;
        self.config.whois.is_some()
            && (self.config.body.uses(Field::Whois) || self.config.subject.uses(Field::Whois))
    }

    async fn send(&self, id: &str, subject: &str, body: String) -> Result<(), String> {
        let subject: String = printable(subject).chars().take(SUBJECT_CAP).collect();
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!(
                "<syslog2ban.{id}@{}>",
                self.from.email.domain()
            )))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message.body(body).map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}:{}: {e}", self.config.host, self.config.port))
    }

    /// The RDAP settings, when `<whois>` is looked up.
    pub fn whois(&self) -> Option<&crate::config::RdapConfig> {
        self.config.whois.as_ref()
    }
}
