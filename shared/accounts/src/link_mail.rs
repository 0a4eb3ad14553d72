//! The mails that carry a link: a password reset (login's forgot-password flow, and an
//! admin's forced reset) and an address confirmation (signup, its resend, and an
//! admin's resend). Each issues the link and queues its mail in the caller's
//! transaction; the caller decides whether one may be sent now.

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_contracts::{Mail, Message};
use flotilla_db::AnyConnection;
use flotilla_db::diesel::QueryResult;
use flotilla_jobs::NewJob;

use crate::LinkPurpose;
use crate::email_link::{self, Issued};

/// Where a link leads (the site's public URL) and how long it works.
#[derive(Debug, Clone, Copy)]
pub struct LinkMail<'a> {
    pub public_url: &'a str,
    pub ttl: TimeDelta,
}

impl LinkMail<'_> {
    /// A reset link for the account `user_id` at `email`, mailed:
    /// `<public_url>/login/reset?token=…`. `client_addr` is who asked, shown in the
    /// mail (`None`: not shown).
    pub fn password_reset(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        email: &str,
        client_addr: Option<String>,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let purpose = LinkPurpose::PasswordReset;
        let Issued { token, hash } =
            email_link::issue(conn, user_id, purpose, email, self.ttl, now)?;
        let mail = Mail {
            to: email.to_owned(),
            message: Message::PasswordReset {
                link: format!("{}/login/reset?token={token}", self.public_url),
                valid_minutes: self.ttl.num_minutes(),
                client_addr,
            },
        };
        let job = NewJob::new(mail, format!("password_reset:{}", &hash[..32]));
        flotilla_jobs::enqueue(conn, &job)?;
        Ok(())
    }

    /// A confirmation link for the address `email` of `user_id`, mailed:
    /// `<public_url>/signup/verify?token=…`.
    pub fn verification(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        email: &str,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let purpose = LinkPurpose::VerifyEmail;
        let Issued { token, hash } =
            email_link::issue(conn, user_id, purpose, email, self.ttl, now)?;
        let mail = Mail {
            to: email.to_owned(),
            message: Message::VerifyEmail {
                link: format!("{}/signup/verify?token={token}", self.public_url),
                valid_hours: self.ttl.num_hours(),
            },
        };
        let job = NewJob::new(mail, format!("verify_email:{}", &hash[..32]));
        flotilla_jobs::enqueue(conn, &job)?;
        Ok(())
    }
}
