//! Email: templates embedded in the binary, and the two transports.
//!
//! - `file` (default): one RFC 5322 `.eml` file per message under `FLOTILLA_MAIL_DIR`,
//!   named after its Message-ID, so a retried job never writes a second copy. Its
//!   link is logged only at debug level under the target [`LINK_LOG`], which `make run`
//!   turns on for the developer; at `info` (the default) no link reaches a log.
//! - `smtp`: lettre, with STARTTLS, TLS or plain, and optional credentials. A
//!   temporary SMTP failure (4xx, connection) is retried by the queue; a permanent
//!   one (5xx) is not.

use std::path::PathBuf;
use std::time::Duration;

use askama::Template;
use flotilla_contracts::{FactorChange, Mail, Message};
use flotilla_jobs::Failure;
use flotilla_kit::{ConfigError, Env};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{SmtpTransport, Transport as _};

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

/// The two bodies of a message, from `templates/mail/`: one file per message and format,
/// picked by the layout's `match` (text unescaped, HTML escaped by default). The
/// templates' own text is ASCII (the HTML writes the rest as entities), so that the
/// transport sends a body as 7-bit or quoted-printable text; only a value that is not
/// (a device's name, an address) can make it choose base64.
#[derive(Template)]
#[template(path = "mail/layout.txt")]
struct TextBody<'a> {
    message: &'a Message,
    subject: &'static str,
    site: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mail/layout.html")]
struct HtmlBody<'a> {
    message: &'a Message,
    subject: &'static str,
    preheader: &'static str,
    site: Option<&'a str>,
}

/// How times are shown in mails.
const TIME: &str = "%Y-%m-%d %H:%M UTC";
/// Shown where a message names the address a change came from and none was known.
const UNKNOWN_ADDRESS: &str = "an unknown address";
/// The site's colours (`shared/kit/assets/site.css`): links and buttons, whose white
/// text must stay readable on it (see the test), and what warns.
const ACCENT: &str = "#2457c5";
const DANGER: &str = "#b3261e";

fn subject(message: &Message) -> &'static str {
    match message {
        Message::VerifyEmail { .. } => "Confirm your email address",
        Message::SignupExisting { .. } => "Someone tried to sign up with your address",
        Message::PasswordReset { .. } => "Reset your password",
        Message::PasswordChanged { .. } => "Your password was changed",
        Message::NewDeviceLogin { .. } => "New sign-in to your account",
        Message::EmailChangeVerify { .. } => "Confirm your new email address",
        Message::EmailChangeNotice { .. } => "A change of your email address was asked for",
        Message::EmailChangeTaken { .. } => "Someone tried to use your email address",
        Message::AccountDeleted {} => "Your account is closed",
        Message::SecondFactorChanged { change, .. } => match change {
            FactorChange::TotpAdded => "An authenticator app was set up for your account",
            FactorChange::TotpRemoved => "The authenticator app was removed from your account",
            FactorChange::PasskeyAdded => "A passkey was added to your account",
            FactorChange::PasskeyRemoved => "A passkey was removed from your account",
            FactorChange::RecoveryCodeUsed => "A recovery code of your account was used",
            FactorChange::RecoveryCodesRegenerated => "Your account has new recovery codes",
            FactorChange::Reset => "Your account's second factors were reset",
        },
    }
}

/// What a mail client shows after the subject in its list, before the mail is opened.
fn preheader(message: &Message) -> &'static str {
    match message {
        Message::VerifyEmail { .. } => "One step left: confirm your address to finish signing up.",
        Message::SignupExisting { .. } => "This address already has an account: sign in instead.",
        Message::PasswordReset { .. } => "Choose a new password with the link inside.",
        Message::PasswordChanged { .. } | Message::NewDeviceLogin { .. } => {
            "If this was not you, reset your password now."
        }
        Message::EmailChangeVerify { .. } => "Confirm this address to make it your account's.",
        Message::EmailChangeNotice { .. } => {
            "If this was not you, someone knows your password: reset it now."
        }
        Message::EmailChangeTaken { .. } => "Nothing has changed: this address stays yours.",
        Message::AccountDeleted {} => "Every device was signed out and your data is being deleted.",
        Message::SecondFactorChanged { .. } => {
            "If this was not you, someone knows your password: reset it now."
        }
    }
}

/// The log target of the file transport's links: `FLOTILLA_LOG=info,mail_link=debug`
/// (what `make run` sets unless told otherwise) shows them.
pub const LINK_LOG: &str = "mail_link";

/// The link a message is about, logged by the file transport for a developer.
fn link(message: &Message) -> Option<&str> {
    match message {
        Message::VerifyEmail { link, .. }
        | Message::PasswordReset { link, .. }
        | Message::EmailChangeVerify { link, .. } => Some(link),
        Message::SignupExisting { login_link } => Some(login_link),
        _ => None,
    }
}

/// The site a message comes from, as its footer names it: the host (and port) of any
/// link it carries, since links are made from the site's public address. None for a
/// message without a link, whose footer stays generic.
fn site(message: &Message) -> Option<&str> {
    let link = match message {
        Message::PasswordChanged { reset_link, .. }
        | Message::NewDeviceLogin { reset_link, .. } => reset_link,
        Message::EmailChangeNotice { forgot_link, .. }
        | Message::EmailChangeTaken { forgot_link } => forgot_link,
        Message::SecondFactorChanged { security_link, .. } => security_link,
        _ => link(message)?,
    };
    let (_, rest) = link.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then_some(host)
}

struct Rendered {
    subject: &'static str,
    text: String,
    html: String,
}

fn render(message: &Message) -> Result<Rendered, Failure> {
    let failed = |e: askama::Error| Failure::Permanent(format!("cannot render the message: {e}"));
    let subject = subject(message);
    let site = site(message);
    Ok(Rendered {
        subject,
        text: TextBody {
            message,
            subject,
            site,
        }
        .render()
        .map_err(failed)?,
        html: HtmlBody {
            message,
            subject,
            preheader: preheader(message),
            site,
        }
        .render()
        .map_err(failed)?,
    })
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

/// Sends one mail job's message.
pub fn send(config: &MailConfig, idempotency_key: &str, mail: &Mail) -> Result<(), Failure> {
    let rendered = render(&mail.message)?;
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| Failure::Permanent(format!("bad recipient address: {e}")))?;
    let id = message_id(idempotency_key);
    let message = lettre::Message::builder()
        .from(config.from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| Failure::Permanent(format!("cannot build the message: {e}")))?;
    match &config.transport {
        Transport::File { dir } => write_file(dir, &id, &message, mail),
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
                        subject(&mail.message)
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

/// The file transport: one `.eml` per Message-ID, written atomically, never twice.
fn write_file(
    dir: &std::path::Path,
    id: &str,
    message: &lettre::Message,
    mail: &Mail,
) -> Result<(), Failure> {
    // The mails hold live links: the folder is its owner's alone (0700).
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
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
    log::info!(
        "mail \"{}\" written to {}",
        subject(&mail.message),
        path.display()
    );
    // For a developer running locally (`make run`): the link without opening the
    // file. Never at info: a live token does not belong in a production log.
    if let Some(link) = link(&mail.message) {
        log::debug!(target: LINK_LOG, "{id}: {link}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_testkit::{MARKUP, MARKUP_ESCAPED};

    #[test]
    fn message_ids_are_safe_and_stable() {
        assert_eq!(message_id("verify:ab/12 x"), "<verify_ab_12_x@flotilla>");
        assert_eq!(message_id("verify:ab"), message_id("verify:ab"));
    }

    fn mail(message: Message) -> Mail {
        Mail {
            to: "ada@example.org".into(),
            message,
        }
    }

    /// One message of each kind, every text it carries set to `text` and every link to
    /// `link`.
    fn every_message(link: &str, text: &str) -> [Message; 10] {
        let when = chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        [
            Message::VerifyEmail {
                link: link.into(),
                valid_hours: 48,
            },
            Message::SignupExisting {
                login_link: link.into(),
            },
            Message::PasswordReset {
                link: link.into(),
                valid_minutes: 60,
                client_addr: Some(text.into()),
            },
            Message::PasswordChanged {
                when,
                client_addr: Some(text.into()),
                reset_link: link.into(),
            },
            Message::NewDeviceLogin {
                device: text.into(),
                when,
                client_addr: Some(text.into()),
                reset_link: link.into(),
            },
            Message::EmailChangeVerify {
                link: link.into(),
                valid_hours: 24,
            },
            Message::EmailChangeNotice {
                new_email: text.into(),
                client_addr: Some(text.into()),
                forgot_link: link.into(),
            },
            Message::EmailChangeTaken {
                forgot_link: link.into(),
            },
            Message::SecondFactorChanged {
                change: FactorChange::RecoveryCodeUsed,
                when,
                client_addr: Some(text.into()),
                security_link: link.into(),
                codes_left: Some(2),
            },
            Message::AccountDeleted {},
        ]
    }

    #[test]
    fn every_message_renders_both_bodies_with_its_link_as_a_button_and_as_text() {
        let link = "https://accounts.example.org/l?token=t";
        for message in every_message(link, "Firefox on Linux") {
            let Rendered {
                subject,
                text,
                html,
            } = render(&message).unwrap();
            let name = message.template();
            assert!(
                html.starts_with("<!doctype html>\n<html lang=\"en\">"),
                "{name}"
            );
            assert!(html.ends_with("</body>\n</html>"), "{name}: {html}");
            assert!(
                html.contains(&format!("<title>{subject}</title>")),
                "{name}"
            );
            assert!(html.contains(&format!(">{subject}</h1>")), "{name}");
            assert!(
                text.starts_with(&format!("{subject}\n\n")),
                "{name}: {text}"
            );
            assert!(
                !text.contains("{{") && !text.contains('<'),
                "{name}: {text}"
            );
            assert!(!text.contains("\n\n\n"), "{name}: {text:?}");
            assert!(text.ends_with(".\n"), "{name}: {text:?}");
            assert!(
                text.contains("We never ask for your password")
                    && html.contains("We never ask for your password"),
                "{name}"
            );
            assert!(
                html.is_ascii() && text.is_ascii(),
                "{name}: sent as 7 bit or quoted-printable"
            );
            let button = format!(r#"<a class="button" href="{link}""#);
            let as_text = format!(
                r#"<a href="{link}" target="_blank" style="color:{ACCENT};word-break:break-all">{link}</a>"#
            );
            if name == "account_deleted" {
                assert!(!html.contains("<a "), "{name}");
                assert!(text.contains("for a flotilla account."), "{name}: {text}");
                assert!(html.contains("for a flotilla account."), "{name}");
            } else {
                assert_eq!(html.matches(&button).count(), 1, "{name}: {html}");
                assert!(
                    html.contains("Or copy this address into your browser:"),
                    "{name}"
                );
                assert!(html.contains(&as_text), "{name}: {html}");
                assert!(
                    html.find(&button) < html.find(&as_text),
                    "{name}: the button comes first"
                );
                assert!(text.contains(&format!("\n\n{link}\n\n")), "{name}: {text}");
                assert!(
                    text.contains("for an account at accounts.example.org."),
                    "{name}: {text}"
                );
                assert!(
                    html.contains("for an account at accounts.example.org."),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn the_html_body_escapes_and_the_text_body_does_not() {
        let link = format!("http://x/l?token=t&n={MARKUP}");
        let escaped = format!("http://x/l?token=t&amp;n={MARKUP_ESCAPED}");
        for message in every_message(&link, MARKUP) {
            let Rendered { text, html, .. } = render(&message).unwrap();
            let name = message.template();
            assert!(!html.contains(MARKUP), "{name}: {html}");
            assert!(!html.contains("<script"), "{name}: {html}");
            if name != "account_deleted" {
                assert!(
                    html.contains(&format!(r#"href="{escaped}""#)),
                    "{name}: {html}"
                );
                assert!(html.contains(&format!(">{escaped}</a>")), "{name}: {html}");
                assert!(text.contains(&format!("\n{link}\n")), "{name}: {text}");
            }
            // The messages that show a text they carry (an address, a device).
            if matches!(
                message,
                Message::PasswordChanged { .. }
                    | Message::NewDeviceLogin { .. }
                    | Message::EmailChangeNotice { .. }
                    | Message::SecondFactorChanged { .. }
            ) {
                assert!(html.contains(MARKUP_ESCAPED), "{name}: {html}");
                assert!(text.contains(MARKUP), "{name}: {text}");
            }
        }
        // A host that is markup is escaped in the footer as well.
        let Rendered { html, text, .. } = render(&Message::SignupExisting {
            login_link: format!("http://{MARKUP}/login"),
        })
        .unwrap();
        assert!(
            html.contains(&format!("an account at {MARKUP_ESCAPED}.")),
            "{html}"
        );
        assert!(text.contains(&format!("an account at {MARKUP}.")), "{text}");
    }

    #[test]
    fn the_details_of_a_notice_read_as_before() {
        let Rendered { text, .. } = render(&Message::PasswordChanged {
            when: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
            client_addr: Some("10.0.0.1".into()),
            reset_link: "http://x/login/forgot".into(),
        })
        .unwrap();
        assert!(
            text.contains("at 2025-11-24 16:00 UTC, from 10.0.0.1."),
            "{text}"
        );
        let Rendered { text, .. } = render(&Message::EmailChangeNotice {
            new_email: "a***@example.org".into(),
            client_addr: None,
            forgot_link: "http://x/login/forgot".into(),
        })
        .unwrap();
        assert!(
            text.contains("to a***@example.org was asked for, from an unknown address."),
            "{text}"
        );
    }

    #[test]
    fn white_on_the_accent_colour_is_readable() {
        // WCAG 2's relative luminance and contrast ratio; AA asks 4.5:1 for body text.
        fn luminance(hex: &str) -> f64 {
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
                if c <= 0.040_45 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
        }
        let white = luminance("#ffffff");
        for colour in [ACCENT, DANGER] {
            let ratio = (white + 0.05) / (luminance(colour) + 0.05);
            assert!(ratio >= 4.5, "{colour}: {ratio:.2}");
        }
    }

    #[test]
    fn the_file_transport_writes_one_file_per_message_id() {
        let dir = std::env::temp_dir().join(format!("flotilla-mail-{}", rand::random::<u32>()));
        let config = MailConfig {
            from: "flotilla <no-reply@localhost>".parse().unwrap(),
            transport: Transport::File { dir: dir.clone() },
        };
        let job = mail(Message::VerifyEmail {
            link: "http://x/v?token=t".into(),
            valid_hours: 48,
        });
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
