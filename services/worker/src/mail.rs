//! Email: templates embedded in the binary, and the two transports.
//!
//! - `file` (default): one RFC 5322 `.eml` file per message under `FLOTILLA_MAIL_DIR`,
//!   named after its Message-ID, so a retried job never writes a second copy; the
//!   message's link is also logged at info level for a developer running locally.
//! - `smtp`: lettre, with STARTTLS, TLS or plain, and optional credentials. A
//!   temporary SMTP failure (4xx, connection) is retried by the queue; a permanent
//!   one (5xx) is not.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_jobs::Failure;
use flotilla_kit::html::escape;
use flotilla_kit::{ConfigError, Env};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport as _};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    StartTls,
    Tls,
    None,
}

#[derive(Debug, Clone)]
pub enum Transport {
    File {
        dir: PathBuf,
    },
    Smtp {
        host: String,
        port: u16,
        security: Security,
        credentials: Option<(String, String)>,
        timeout: Duration,
    },
}

/// `FLOTILLA_MAIL_*` and `FLOTILLA_SMTP_*`.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: Mailbox,
    pub transport: Transport,
}

impl MailConfig {
    pub fn from_env(env: &Env, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let default_from: Mailbox =
            "flotilla <no-reply@localhost>"
                .parse()
                .map_err(|_| ConfigError {
                    variable: "FLOTILLA_MAIL_FROM".into(),
                    value: String::new(),
                    expected: "a mailbox".into(),
                })?;
        let from = env.parse(
            "FLOTILLA_MAIL_FROM",
            default_from,
            "a mailbox such as 'Example <no-reply@example.org>'",
            |v| v.parse().ok(),
        )?;
        let kind = env.parse(
            "FLOTILLA_MAIL_TRANSPORT",
            "file".to_owned(),
            "file or smtp",
            |v| matches!(v, "file" | "smtp").then(|| v.to_owned()),
        )?;
        let transport = if kind == "file" {
            Transport::File {
                dir: env.path("FLOTILLA_MAIL_DIR", data_dir.join("mail"))?,
            }
        } else {
            let host = env.parse("FLOTILLA_SMTP_HOST", String::new(), "a host name", |v| {
                Some(v.to_owned())
            })?;
            if host.is_empty() {
                return Err(ConfigError {
                    variable: "FLOTILLA_SMTP_HOST".into(),
                    value: String::new(),
                    expected: "a host name (required when FLOTILLA_MAIL_TRANSPORT=smtp)".into(),
                });
            }
            let security = env.parse(
                "FLOTILLA_SMTP_SECURITY",
                Security::StartTls,
                "starttls, tls or none",
                |v| match v {
                    "starttls" => Some(Security::StartTls),
                    "tls" => Some(Security::Tls),
                    "none" => Some(Security::None),
                    _ => None,
                },
            )?;
            let default_port = match security {
                Security::StartTls => 587,
                Security::Tls => 465,
                Security::None => 25,
            };
            let credentials = match (
                env.raw("FLOTILLA_SMTP_USERNAME"),
                env.raw("FLOTILLA_SMTP_PASSWORD"),
            ) {
                (Some(user), Some(password)) => Some((user, password)),
                _ => None,
            };
            Transport::Smtp {
                host,
                port: env.number("FLOTILLA_SMTP_PORT", default_port, 1..=65535)?,
                security,
                credentials,
                timeout: Duration::from_secs(env.number(
                    "FLOTILLA_SMTP_TIMEOUT_SECS",
                    10,
                    1..=300,
                )?),
            }
        };
        Ok(Self { from, transport })
    }
}

/// The payload of an `email` job.
#[derive(Debug, Deserialize)]
pub struct EmailJob {
    pub template: String,
    pub to: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

struct Rendered {
    subject: String,
    text: String,
    html: String,
    link: Option<String>,
}

fn param<'a>(job: &'a EmailJob, name: &str) -> Result<&'a str, Failure> {
    job.params
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            Failure::Permanent(format!(
                "template {} needs the parameter {name}",
                job.template
            ))
        })
}

fn html_body(paragraphs: &[String], link: Option<(&str, &str)>) -> String {
    let mut body = String::from("<!doctype html><html><body style=\"font-family:sans-serif\">");
    for p in paragraphs {
        body.push_str(&format!("<p>{}</p>", escape(p)));
    }
    if let Some((label, href)) = link {
        body.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>",
            escape(href),
            escape(label)
        ));
    }
    body.push_str("</body></html>");
    body
}

/// An optional text parameter, or `default`.
fn param_or<'a>(job: &'a EmailJob, name: &str, default: &'a str) -> &'a str {
    job.params
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or(default)
}

fn render(job: &EmailJob) -> Result<Rendered, Failure> {
    match job.template.as_str() {
        "verify_email" => {
            let link = param(job, "link")?;
            let hours = job
                .params
                .get("valid_hours")
                .and_then(|v| v.as_u64())
                .unwrap_or(48);
            let lines = vec![
                "Welcome to flotilla.".to_owned(),
                "Please confirm your email address by opening the link below.".to_owned(),
                format!(
                    "The link works once and expires in {hours} hours. If you did not sign up, ignore this message."
                ),
            ];
            Ok(Rendered {
                subject: "Confirm your email address".into(),
                text: format!("{}\n\n{link}\n\n{}\n", lines[..2].join("\n\n"), lines[2]),
                html: html_body(&lines, Some(("Confirm my address", link))),
                link: Some(link.to_owned()),
            })
        }
        "signup_existing" => {
            let login = param(job, "login_link")?;
            let lines = vec![
                "Someone tried to create a flotilla account with this email address, which already has one.".to_owned(),
                "If it was you, sign in instead; if you forgot your password, you can reset it from the sign-in page.".to_owned(),
                "If it was not you, you can ignore this message: nothing has changed.".to_owned(),
            ];
            Ok(Rendered {
                subject: "Someone tried to sign up with your address".into(),
                text: format!("{}\n\n{login}\n", lines.join("\n\n")),
                html: html_body(&lines, Some(("Sign in", login))),
                link: Some(login.to_owned()),
            })
        }
        "password_reset" => {
            let link = param(job, "link")?;
            let minutes = job
                .params
                .get("valid_minutes")
                .and_then(|v| v.as_u64())
                .unwrap_or(60);
            let lines = vec![
                "Someone asked to reset the password of your flotilla account.".to_owned(),
                "If it was you, choose a new password with the link below.".to_owned(),
                format!(
                    "The link works once and expires in {minutes} minutes. If you did not ask, \
                     ignore this message: your password has not changed."
                ),
            ];
            Ok(Rendered {
                subject: "Reset your password".into(),
                text: format!("{}\n\n{link}\n\n{}\n", lines[..2].join("\n\n"), lines[2]),
                html: html_body(&lines, Some(("Choose a new password", link))),
                link: Some(link.to_owned()),
            })
        }
        "password_changed" => {
            let when = param(job, "when")?;
            let forgot = param(job, "reset_link")?;
            let from = param_or(job, "client_addr", "an unknown address");
            let lines = vec![
                format!(
                    "The password of your flotilla account was changed at {when}, from {from}."
                ),
                "Every device that was signed in has been signed out.".to_owned(),
                "If this was not you, reset your password now with the link below, and tell \
                 the site's administrators."
                    .to_owned(),
            ];
            Ok(Rendered {
                subject: "Your password was changed".into(),
                text: format!("{}\n\n{forgot}\n", lines.join("\n\n")),
                html: html_body(&lines, Some(("Reset my password", forgot))),
                link: None,
            })
        }
        "new_device_login" => {
            let device = param(job, "device")?;
            let when = param(job, "when")?;
            let forgot = param(job, "reset_link")?;
            let from = param_or(job, "client_addr", "an unknown address");
            let lines = vec![
                format!(
                    "Your flotilla account was signed in to from a browser it had not been \
                     signed in from before: {device}, from {from}, at {when}."
                ),
                "If it was you, there is nothing to do.".to_owned(),
                "If it was not you, reset your password now with the link below (that signs \
                 every device out), and tell the site's administrators."
                    .to_owned(),
            ];
            Ok(Rendered {
                subject: "New sign-in to your account".into(),
                text: format!("{}\n\n{forgot}\n", lines.join("\n\n")),
                html: html_body(&lines, Some(("Reset my password", forgot))),
                link: None,
            })
        }
        "email_change_verify" => {
            let link = param(job, "link")?;
            let hours = job
                .params
                .get("valid_hours")
                .and_then(|v| v.as_u64())
                .unwrap_or(24);
            let lines = vec![
                "Someone asked to make this the address of their flotilla account.".to_owned(),
                "If it was you, confirm it with the link below; until then the account keeps \
                 its old address."
                    .to_owned(),
                format!(
                    "The link works once and expires in {hours} hours. If it was not you, \
                     ignore this message."
                ),
            ];
            Ok(Rendered {
                subject: "Confirm your new email address".into(),
                text: format!("{}\n\n{link}\n\n{}\n", lines[..2].join("\n\n"), lines[2]),
                html: html_body(&lines, Some(("Confirm the new address", link))),
                link: Some(link.to_owned()),
            })
        }
        "email_change_notice" => {
            let new_email = param(job, "new_email")?;
            let forgot = param(job, "forgot_link")?;
            let from = param_or(job, "client_addr", "an unknown address");
            let lines = vec![
                format!(
                    "A change of your flotilla account's address to {new_email} was asked for, \
                     from {from}. It happens only when the link sent to the new address is followed."
                ),
                "If this was not you, someone knows your password: reset it now with the link \
                 below."
                    .to_owned(),
            ];
            Ok(Rendered {
                subject: "A change of your email address was asked for".into(),
                text: format!("{}\n\n{forgot}\n", lines.join("\n\n")),
                html: html_body(&lines, Some(("Reset my password", forgot))),
                link: None,
            })
        }
        "email_change_taken" => {
            let forgot = param(job, "forgot_link")?;
            let lines = vec![
                "Someone asked to move another flotilla account to this email address, which \
                 already belongs to your account. Nothing has changed."
                    .to_owned(),
                "If it was you and you have forgotten your password, you can reset it with the \
                 link below."
                    .to_owned(),
            ];
            Ok(Rendered {
                subject: "Someone tried to use your email address".into(),
                text: format!("{}\n\n{forgot}\n", lines.join("\n\n")),
                html: html_body(&lines, Some(("Reset my password", forgot))),
                link: None,
            })
        }
        "account_deleted" => {
            let lines = vec![
                "Your flotilla account has been closed, as you asked.".to_owned(),
                "Every device was signed out, and the data stored about you is being deleted \
                 now. You will not receive further messages from us."
                    .to_owned(),
            ];
            Ok(Rendered {
                subject: "Your account is closed".into(),
                text: format!("{}\n", lines.join("\n\n")),
                html: html_body(&lines, None),
                link: None,
            })
        }
        other => Err(Failure::Permanent(format!(
            "unknown email template {other:?}"
        ))),
    }
}

/// The Message-ID of a job's message: derived from its idempotency key, so that a
/// retried job sends a recognisably identical message.
pub fn message_id(idempotency_key: &str) -> String {
    let local: String = idempotency_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<{local}@flotilla>")
}

/// Sends one `email` job's message.
pub fn send(config: &MailConfig, idempotency_key: &str, job: &EmailJob) -> Result<(), Failure> {
    let rendered = render(job)?;
    let to: Mailbox = job
        .to
        .parse()
        .map_err(|e| Failure::Permanent(format!("bad recipient address: {e}")))?;
    let id = message_id(idempotency_key);
    let message = Message::builder()
        .from(config.from.clone())
        .to(to)
        .subject(&rendered.subject)
        .message_id(Some(id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| Failure::Permanent(format!("cannot build the message: {e}")))?;
    match &config.transport {
        Transport::File { dir } => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::Temporary(format!("cannot create {}: {e}", dir.display())))?;
            let name = id.trim_matches(['<', '>']).replace('@', "_at_");
            let path = dir.join(format!("{name}.eml"));
            if path.exists() {
                log::info!(
                    "mail {id} was already written to {}; not again",
                    path.display()
                );
                return Ok(());
            }
            let partial = dir.join(format!(".{name}.eml.tmp"));
            std::fs::write(&partial, message.formatted())
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| Failure::Temporary(format!("cannot write {}: {e}", path.display())))?;
            // For a developer running locally: the link without opening the file.
            log::info!(
                "mail \"{}\" written to {}{}",
                rendered.subject,
                path.display(),
                rendered
                    .link
                    .map(|l| format!("; link: {l}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Transport::Smtp {
            host,
            port,
            security,
            credentials,
            timeout,
        } => {
            let tls = |host: &str| {
                TlsParameters::new(host.to_owned())
                    .map_err(|e| Failure::Temporary(format!("TLS set-up for {host}: {e}")))
            };
            let mut builder = SmtpTransport::builder_dangerous(host)
                .port(*port)
                .timeout(Some(*timeout));
            builder = match security {
                Security::None => builder.tls(Tls::None),
                Security::StartTls => builder.tls(Tls::Required(tls(host)?)),
                Security::Tls => builder.tls(Tls::Wrapper(tls(host)?)),
            };
            if let Some((user, password)) = credentials {
                builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            }
            match builder.build().send(&message) {
                Ok(_) => {
                    log::info!(
                        "mail {id} \"{}\" sent through {host}:{port}",
                        rendered.subject
                    );
                    Ok(())
                }
                Err(e) if e.is_permanent() => {
                    Err(Failure::Permanent(format!("SMTP refused the message: {e}")))
                }
                Err(e) => Err(Failure::Temporary(format!("SMTP: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_safe_and_stable() {
        assert_eq!(message_id("verify:ab/12 x"), "<verify_ab_12_x@flotilla>");
        assert_eq!(message_id("verify:ab"), message_id("verify:ab"));
    }

    #[test]
    fn templates_need_their_parameters_and_escape_them() {
        let job: EmailJob = serde_json::from_value(serde_json::json!({
            "template": "verify_email", "to": "a@example.org",
            "params": {"link": "http://x/verify?token=a&b=<c>"}
        }))
        .unwrap();
        let rendered = render(&job).unwrap();
        assert!(rendered.text.contains("http://x/verify?token=a&b=<c>"));
        assert!(
            rendered
                .html
                .contains("http://x/verify?token=a&amp;b=&lt;c&gt;")
        );
        let missing: EmailJob = serde_json::from_value(
            serde_json::json!({"template": "verify_email", "to": "a@example.org"}),
        )
        .unwrap();
        assert!(matches!(render(&missing), Err(Failure::Permanent(_))));
        let unknown: EmailJob =
            serde_json::from_value(serde_json::json!({"template": "nope", "to": "a@example.org"}))
                .unwrap();
        assert!(matches!(render(&unknown), Err(Failure::Permanent(_))));
    }

    #[test]
    fn the_file_transport_writes_one_file_per_message_id() {
        let dir = std::env::temp_dir().join(format!("flotilla-mail-{}", rand::random::<u32>()));
        let config = MailConfig {
            from: "flotilla <no-reply@localhost>".parse().unwrap(),
            transport: Transport::File { dir: dir.clone() },
        };
        let job: EmailJob = serde_json::from_value(serde_json::json!({
            "template": "verify_email", "to": "ada@example.org", "params": {"link": "http://x/v?token=t"}
        }))
        .unwrap();
        send(&config, "verify:abc", &job).unwrap();
        send(&config, "verify:abc", &job).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        let eml = std::fs::read_to_string(files[0].path()).unwrap();
        assert!(eml.contains("Message-ID: <verify_abc@flotilla>"), "{eml}");
        assert!(eml.contains("To: ada@example.org"));
        assert!(eml.contains("Subject: Confirm your email address"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
