//! The second factor in use: setting up an authenticator app, making recovery codes,
//! and checking a code typed at a sign-in's second step or on a route that asks for
//! the second factor again (step-up). One implementation for login and profile:
//! [`SecondFactors`] holds the key the secrets are sealed with and counts failures like
//! the password checks do (per account, or per account and known device at sign-in),
//! so a stolen password or session cannot guess codes faster by spreading them.
//!
//! A code is a TOTP code (6 digits; spaces are ignored) or a recovery code
//! (`xxxxx-xxxxx`, however it is typed). A TOTP code is accepted once: its time step
//! must be newer than the last one used, and that is written with a guarded update in
//! the same transaction. A recovery code is deleted by its use, and its owner mailed.

use std::sync::Arc;

use actix_web::web;
use base64::Engine as _;
use chrono::NaiveDateTime;
use flotilla_accounts::{
    Challenge, ChallengePurpose, Origin, PasskeyRow, RecoveryCodes, TotpFactor, User,
};
use flotilla_contracts::{AuthEventKind, FactorChange};
use flotilla_db::diesel::QueryResult;
use flotilla_db::{AnyConnection, write_transaction};
use flotilla_kit::work::blocking;
use flotilla_kit::{ConfigError, Env, Error, State};

use crate::factors::{FactorKey, TotpSecret, normalise_recovery_code};
use crate::passkeys::{PasskeyRefusal, Passkeys};
use crate::throttle::{self, InFlight, ThrottleSettings};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a sealed TOTP secret belongs to (its associated data).
fn totp_owner(user_id: &str) -> Vec<u8> {
    format!("totp:{user_id}").into_bytes()
}

/// What a TOTP secret waiting for its first code (an enrolment's form) belongs to.
fn pending_owner(user_id: &str) -> Vec<u8> {
    format!("totp-pending:{user_id}").into_bytes()
}

/// How long an enrolment's form stays good: the time to open an app and scan.
const PENDING_SECS: i64 = 30 * 60;

/// What the person typed in a code field, sorted out before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// Six digits.
    Totp(String),
    /// A recovery code in its normal form.
    Recovery(String),
}

impl Code {
    /// The code typed, or what is wrong with it (the field's message).
    pub fn parse(typed: &str) -> Result<Self, &'static str> {
        let compact: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            return Err("is required");
        }
        if compact.len() == 6 && compact.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::Totp(compact));
        }
        // Only the form codes are issued in (`xxxxx-xxxxx`, lower-case letters and
        // digits): any other 11 bytes are no recovery code.
        let recovery = normalise_recovery_code(&compact);
        let issued_form = recovery.len() == 11
            && recovery.bytes().enumerate().all(|(i, b)| match i {
                5 => b == b'-',
                _ => b.is_ascii_lowercase() || b.is_ascii_digit(),
            });
        if issued_form {
            return Ok(Self::Recovery(recovery));
        }
        Err("is not a 6-digit code from your authenticator app or a recovery code")
    }
}

/// What the person gave as their second factor: a code, or a passkey's answer to a
/// challenge the same site gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Code(Code),
    Passkey {
        /// The challenge's token ([`SecondFactors::passkey_challenge`]).
        challenge: String,
        /// The browser's `PublicKeyCredential`, as JSON.
        answer: String,
    },
}

impl Proof {
    /// From a form's or JSON's `code`, or `passkey` with `passkey_challenge`: the proof,
    /// or the field that is wrong and why.
    pub fn read(
        code: Option<&str>,
        passkey: Option<&str>,
        challenge: Option<&str>,
    ) -> Result<Self, (&'static str, &'static str)> {
        Self::read_as("code", code, passkey, challenge)
    }

    /// [`Proof::read`] of a form whose code field is named `code_field`.
    pub fn read_as(
        code_field: &'static str,
        code: Option<&str>,
        passkey: Option<&str>,
        challenge: Option<&str>,
    ) -> Result<Self, (&'static str, &'static str)> {
        match passkey.map(str::trim).filter(|p| !p.is_empty()) {
            Some(answer) => match challenge.map(str::trim).filter(|c| !c.is_empty()) {
                Some(challenge) => Ok(Self::Passkey {
                    challenge: challenge.to_owned(),
                    answer: answer.to_owned(),
                }),
                None => Err(("passkey_challenge", "is required with a passkey")),
            },
            None => Code::parse(code.unwrap_or_default())
                .map(Self::Code)
                .map_err(|problem| (code_field, problem)),
        }
    }
}

/// A second factor that was right: which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorUsed {
    Totp,
    /// A recovery code: this many are left.
    RecoveryCode {
        left: i64,
    },
    /// A passkey: `hwk` or `swk` ([`crate::passkeys::amr_of`]).
    Passkey {
        amr: &'static str,
    },
}

impl FactorUsed {
    /// The `amr` value (RFC 8176) of the factor: `otp` for an app's code, `hwk`/`swk`
    /// for a passkey; a recovery code has no registered name, and says `rc`.
    pub fn amr(self) -> &'static str {
        match self {
            Self::Totp => "otp",
            Self::RecoveryCode { .. } => "rc",
            Self::Passkey { amr } => amr,
        }
    }
}

/// Why a code was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRefusal {
    /// 403 `wrong_code`: not the app's code now (or used already), nor an unused
    /// recovery code.
    Wrong,
    /// 429: the account's free checks are all under way.
    InFlight,
    /// 429: too many wrong codes; wait this long.
    TooMany { wait_secs: i64 },
    /// 403 `passkey_refused`: the passkey's answer did not hold (or its challenge was
    /// used, ended, or is another's).
    PasskeyRefused,
    /// 409 `passkeys_unavailable`: the site's address is no domain name.
    PasskeysUnavailable,
}

impl CodeRefusal {
    pub fn message(&self) -> String {
        match self {
            Self::Wrong => "The code is not right, or was used already. Type the code your \
                            authenticator app shows now, or a recovery code you have not used."
                .into(),
            Self::InFlight => {
                "Too many codes for this account are being checked: try again in a moment.".into()
            }
            Self::TooMany { wait_secs } => format!(
                "Too many wrong codes for this account: wait {wait_secs} seconds and try again."
            ),
            Self::PasskeyRefused => "The passkey was not accepted: try again, or use another \
                                     passkey, your authenticator app or a recovery code."
                .into(),
            Self::PasskeysUnavailable => "Passkeys are not available on this site.".into(),
        }
    }
}

impl From<CodeRefusal> for Error {
    fn from(refusal: CodeRefusal) -> Self {
        let message = refusal.message();
        match refusal {
            CodeRefusal::Wrong => Error::Forbidden {
                code: "wrong_code",
                message,
            },
            CodeRefusal::InFlight => Error::TooManyRequests {
                code: "too_many_attempts",
                message,
                retry_after_secs: 1,
            },
            CodeRefusal::TooMany { wait_secs } => Error::TooManyRequests {
                code: "too_many_attempts",
                message,
                retry_after_secs: u32::try_from(wait_secs).unwrap_or(u32::MAX),
            },
            CodeRefusal::PasskeyRefused => Error::Forbidden {
                code: "passkey_refused",
                message,
            },
            CodeRefusal::PasskeysUnavailable => Error::Refused {
                code: "passkeys_unavailable",
                message,
            },
        }
    }
}

/// Where a code check counts its failures and what it records them as.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The throttle's key ([`SecondFactors::step_up_key`], or the sign-in's).
    pub key: String,
    pub failure: AuthEventKind,
    /// What a passkey's challenge must have been made for.
    pub purpose: ChallengePurpose,
    pub session_id: Option<String>,
    pub from: Origin,
}

/// An authenticator app being set up: the secret, shown to the person, and the same
/// sealed for the form that confirms it (nothing is stored until a first code is
/// right, and the form stops working after half an hour).
pub struct Enrolment {
    pub secret: TotpSecret,
    /// Goes back in the confirming form's hidden field.
    pub pending: String,
}

/// The fleet's second factors: the sealing key, the code checks in flight, and the
/// sign-in throttle's settings for them.
#[derive(Clone)]
pub struct SecondFactors {
    key: Arc<FactorKey>,
    in_flight: InFlight,
    settings: ThrottleSettings,
    public_url: String,
    /// The relying party of `public_url` (off on an IP address).
    pub passkeys: Passkeys,
}

impl std::fmt::Debug for SecondFactors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondFactors").finish_non_exhaustive()
    }
}

impl SecondFactors {
    /// `FLOTILLA_FACTOR_KEY` (or the data folder's `factor.key`) and the throttle.
    pub fn from_env(
        env: &Env,
        public_url: &str,
        settings: ThrottleSettings,
    ) -> Result<Self, ConfigError> {
        let hex = flotilla_kit::config::factor_key_hex(env)?;
        let key = FactorKey::from_hex(&hex).ok_or_else(|| ConfigError {
            variable: "FLOTILLA_FACTOR_KEY".into(),
            value: "(hidden)".into(),
            expected: "64 hex digits (`openssl rand -hex 32`), the same on every host".into(),
        })?;
        Ok(Self::new(key, public_url, settings))
    }

    pub fn new(key: FactorKey, public_url: &str, settings: ThrottleSettings) -> Self {
        let (passkeys, off) = Passkeys::from_public_url(public_url);
        if let Some(why) = off {
            log::info!("{why}");
        }
        Self {
            key: Arc::new(key),
            in_flight: InFlight::new(settings.max_failures),
            settings,
            public_url: public_url.to_owned(),
            passkeys,
        }
    }

    /// The throttle key of an account's step-up checks (`auth_events.login_key`).
    pub fn step_up_key(user_id: &str) -> String {
        crate::token_hash(&format!("second-factor:{user_id}"))
    }

    /// The throttle key of a sign-in's second step: the known device's own count when
    /// the browser has signed in to the account before, else the account's.
    pub fn sign_in_key(user_id: &str, device_key: Option<&str>) -> String {
        match device_key {
            Some(device) => crate::token_hash(&format!("second-factor:{user_id}:{device}")),
            None => crate::token_hash(&format!("second-factor:{user_id}:any")),
        }
    }

    /// A new secret for `user_id` and its sealed form for the confirming form.
    pub fn begin_enrolment(&self, user_id: &str, now: NaiveDateTime) -> Enrolment {
        let secret = TotpSecret::generate();
        let mut plain = now.and_utc().timestamp().to_be_bytes().to_vec();
        plain.extend_from_slice(secret.as_bytes());
        let pending = B64.encode(self.key.seal(&plain, &pending_owner(user_id)));
        Enrolment { secret, pending }
    }

    /// The secret of an enrolment's form, if the form is this account's and recent.
    pub fn pending_secret(
        &self,
        user_id: &str,
        pending: &str,
        now: NaiveDateTime,
    ) -> Option<TotpSecret> {
        let sealed = B64.decode(pending.trim()).ok()?;
        let plain = self.key.open(&sealed, &pending_owner(user_id)).ok()?;
        let (at, secret) = plain.split_at_checked(8)?;
        let at = i64::from_be_bytes(at.try_into().ok()?);
        let age = now.and_utc().timestamp() - at;
        if !(0..=PENDING_SECS).contains(&age) {
            return None;
        }
        TotpSecret::from_bytes(secret.to_vec())
    }

    /// Seals a confirmed secret for its row.
    pub fn seal_secret(&self, user_id: &str, secret: &TotpSecret) -> String {
        B64.encode(self.key.seal(secret.as_bytes(), &totp_owner(user_id)))
    }

    fn open_secret(&self, row: &TotpFactor) -> Result<TotpSecret, Error> {
        let unreadable = || {
            Error::Internal(anyhow::anyhow!(
                "the authenticator secret of account {} does not open with FLOTILLA_FACTOR_KEY \
                 (was the key changed?)",
                row.user_id
            ))
        };
        let sealed = B64.decode(&row.secret).map_err(|_| unreadable())?;
        let plain = self
            .key
            .open(&sealed, &totp_owner(&row.user_id))
            .map_err(|_| unreadable())?;
        TotpSecret::from_bytes(plain).ok_or_else(unreadable)
    }

    /// Ten new recovery codes for the account, replacing its old ones (in the caller's
    /// transaction). The codes, to show once.
    pub fn new_recovery_codes(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        now: NaiveDateTime,
    ) -> QueryResult<Vec<String>> {
        let codes = crate::factors::recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| self.key.recovery_hash(user_id, &normalise_recovery_code(c)))
            .collect();
        RecoveryCodes::replace(conn, user_id, &hashes, now)?;
        Ok(codes)
    }

    /// Checks `proof` for `account` under `attempt`'s throttle: which factor it was, or
    /// 403 `wrong_code`/`passkey_refused` (recorded as `attempt.failure`), or 429 with
    /// `Retry-After`. A recovery code used is recorded and mailed to the owner in the
    /// same transaction; a passkey's use is written on it.
    pub async fn check(
        &self,
        state: &web::Data<State>,
        account: &User,
        proof: Proof,
        attempt: Attempt,
    ) -> Result<FactorUsed, Error> {
        let Some((_in_flight, others)) = self.in_flight.begin(&attempt.key).await else {
            return Err(CodeRefusal::InFlight.into());
        };
        let (this, user) = (self.clone(), account.clone());
        let outcome = blocking(state, move |conn| {
            this.check_in(conn, &user, &proof, &attempt, others)
        })
        .await?;
        outcome.map_err(Error::from)
    }

    /// A challenge for one of the account's passkeys (`{"challenge","publicKey"}` for
    /// the browser), kept for `purpose`; 409 when the site has no passkeys, or the
    /// account none.
    pub async fn passkey_challenge(
        &self,
        state: &web::Data<State>,
        user_id: &str,
        purpose: ChallengePurpose,
    ) -> Result<serde_json::Value, Error> {
        if !self.passkeys.enabled() {
            return Err(CodeRefusal::PasskeysUnavailable.into());
        }
        let (this, user_id) = (self.clone(), user_id.to_owned());
        blocking(state, move |conn| {
            let keys = crate::passkeys::keys_of(&PasskeyRow::of(conn, &user_id)?);
            if keys.is_empty() {
                return Err(Error::Refused {
                    code: "no_passkeys",
                    message: "This account has no passkey.".into(),
                });
            }
            let (options, kept) = this
                .passkeys
                .start_authentication(&keys)
                .map_err(|_| Error::from(CodeRefusal::PasskeysUnavailable))?;
            let now = chrono::Utc::now().naive_utc();
            let token = Challenge::create(conn, purpose, Some(&user_id), &kept, now)?;
            Ok(challenge_json(token, options))
        })
        .await
    }

    /// Checks a passkey's answer to one of the account's challenges for `purpose`, and
    /// writes its use (and counter) on it.
    fn passkey_in(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        challenge: &str,
        answer: &str,
        purpose: ChallengePurpose,
        now: NaiveDateTime,
    ) -> Result<Option<FactorUsed>, Error> {
        if !self.passkeys.enabled() {
            return Err(CodeRefusal::PasskeysUnavailable.into());
        }
        let Some((_, kept)) = Challenge::take(conn, challenge, purpose, Some(user_id), now)? else {
            return Ok(None);
        };
        let Ok(answer) = crate::passkeys::read_assertion(answer) else {
            return Ok(None);
        };
        let result = match self.passkeys.finish_authentication(&kept, &answer) {
            Ok(result) => result,
            Err(PasskeyRefusal::Unavailable) => {
                return Err(CodeRefusal::PasskeysUnavailable.into());
            }
            Err(_) => return Ok(None),
        };
        let used_id = crate::passkeys::credential_id_text(result.cred_id().as_ref());
        let Some(row) =
            PasskeyRow::by_credential_id(conn, &used_id)?.filter(|row| row.user_id == user_id)
        else {
            return Ok(None);
        };
        passkey_used(conn, &row, &result, now)?;
        Ok(Some(FactorUsed::Passkey {
            amr: crate::passkeys::amr_of(&result),
        }))
    }

    fn check_in(
        &self,
        conn: &mut AnyConnection,
        account: &User,
        proof: &Proof,
        attempt: &Attempt,
        others: usize,
    ) -> Result<Result<FactorUsed, CodeRefusal>, Error> {
        let now = chrono::Utc::now().naive_utc();
        let attempts = throttle::Attempts {
            key: &attempt.key,
            failure: attempt.failure,
            success: None,
        };
        if let Some(wait_secs) = throttle::wait(conn, &self.settings, attempts, others, now)? {
            return Ok(Err(CodeRefusal::TooMany { wait_secs }));
        }
        write_transaction(conn, |conn| {
            let user_id = account.id.as_str();
            let used = match proof {
                Proof::Passkey { challenge, answer } => {
                    let purpose = attempt.purpose;
                    self.passkey_in(conn, user_id, challenge, answer, purpose, now)?
                }
                Proof::Code(Code::Totp(digits)) => match TotpFactor::of(conn, user_id)? {
                    Some(row) => {
                        let secret = self.open_secret(&row)?;
                        let unix = u64::try_from(now.and_utc().timestamp()).unwrap_or(0);
                        let last = row.last_step.and_then(|s| u64::try_from(s).ok());
                        match secret.check(digits, unix, last) {
                            Some(step) => {
                                let step = i64::try_from(step).unwrap_or(i64::MAX);
                                TotpFactor::spend_step(conn, user_id, step, now)?
                                    .then_some(FactorUsed::Totp)
                            }
                            None => None,
                        }
                    }
                    None => None,
                },
                Proof::Code(Code::Recovery(normal)) => {
                    let hash = self.key.recovery_hash(user_id, normal);
                    if RecoveryCodes::spend(conn, user_id, &hash)? {
                        let left = RecoveryCodes::left(conn, user_id)?;
                        self.recovery_code_used(conn, account, attempt, left, now)?;
                        Some(FactorUsed::RecoveryCode { left })
                    } else {
                        None
                    }
                }
            };
            if used.is_none() {
                let event = attempt.from.event(
                    attempt.failure,
                    Some(user_id),
                    Some(&attempt.key),
                    attempt.session_id.as_deref(),
                );
                event.record(conn, now)?;
            }
            let refusal = match proof {
                Proof::Passkey { .. } => CodeRefusal::PasskeyRefused,
                Proof::Code(_) => CodeRefusal::Wrong,
            };
            Ok::<_, Error>(used.ok_or(refusal))
        })
    }

    fn recovery_code_used(
        &self,
        conn: &mut AnyConnection,
        account: &User,
        attempt: &Attempt,
        left: i64,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let kind = AuthEventKind::RecoveryCodeUsed;
        let event =
            attempt
                .from
                .event(kind, Some(&account.id), None, attempt.session_id.as_deref());
        event.record(conn, now)?;
        self.notify(
            conn,
            account,
            FactorChange::RecoveryCodeUsed,
            Some(left),
            &attempt.from,
            now,
        )
    }

    /// Queues the owner's mail about a change of their factors.
    pub fn notify(
        &self,
        conn: &mut AnyConnection,
        account: &User,
        change: FactorChange,
        codes_left: Option<i64>,
        from: &Origin,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let notice = flotilla_accounts::FactorNotice {
            to: &account.email,
            change,
            codes_left,
            public_url: &self.public_url,
            key: &format!("{}:{}", account.id, flotilla_accounts::new_token()),
        };
        notice.queue(conn, from, now)
    }
}

/// A challenge as the browser's script takes it: the token to send back with the
/// answer, and the options for `navigator.credentials`.
pub fn challenge_json(token: String, options: serde_json::Value) -> serde_json::Value {
    let mut body = options;
    if let Some(fields) = body.as_object_mut() {
        fields.insert("challenge".into(), serde_json::Value::String(token));
    }
    body
}

/// Writes a passkey's use on it: when, and its counter when the authenticator keeps one.
pub fn passkey_used(
    conn: &mut AnyConnection,
    row: &PasskeyRow,
    result: &webauthn_rs::prelude::AuthenticationResult,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let updated = crate::passkeys::read_passkey(&row.credential)
        .ok()
        .and_then(|mut key| {
            (key.update_credential(result) == Some(true))
                .then(|| crate::passkeys::passkey_text(&key).ok())
                .flatten()
        });
    PasskeyRow::used(conn, &row.id, updated.as_deref(), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_sorted_out_before_it_is_looked_up() {
        assert_eq!(Code::parse(" 123 456 "), Ok(Code::Totp("123456".into())));
        assert!(matches!(Code::parse("abcde-fghij"), Ok(Code::Recovery(_))));
        assert_eq!(Code::parse("  "), Err("is required"));
        assert!(Code::parse("12345").is_err());
        assert!(Code::parse("1234567").is_err());
        assert!(Code::parse("<script>").is_err());
    }

    fn factors() -> SecondFactors {
        let key = FactorKey::from_hex(&"ab".repeat(32)).unwrap();
        let settings = ThrottleSettings {
            max_failures: 5,
            window: chrono::TimeDelta::seconds(900),
            max_delay_secs: 900,
        };
        SecondFactors::new(key, "http://example.test", settings)
    }

    #[test]
    fn an_enrolment_form_works_for_its_account_for_half_an_hour() {
        let factors = factors();
        let now = chrono::Utc::now().naive_utc();
        let enrolment = factors.begin_enrolment("ada", now);
        let back = factors.pending_secret("ada", &enrolment.pending, now);
        assert_eq!(back.as_ref(), Some(&enrolment.secret));
        assert!(
            factors
                .pending_secret("bob", &enrolment.pending, now)
                .is_none()
        );
        let late = now + chrono::TimeDelta::seconds(PENDING_SECS + 1);
        assert!(
            factors
                .pending_secret("ada", &enrolment.pending, late)
                .is_none()
        );
        assert!(factors.pending_secret("ada", "not base64!", now).is_none());
        // A pending form is not a stored secret: it does not open as one.
        let row = TotpFactor {
            user_id: "ada".into(),
            secret: enrolment.pending.clone(),
            last_step: None,
            created_at: now,
            last_used_at: None,
        };
        assert!(factors.open_secret(&row).is_err());
        let sealed = factors.seal_secret("ada", &enrolment.secret);
        let row = TotpFactor {
            secret: sealed,
            ..row
        };
        assert_eq!(factors.open_secret(&row).ok(), Some(enrolment.secret));
    }
}
