//! flotilla-profile: everything a signed-in person can do about their own account, as
//! HTML pages (without JavaScript) and JSON on the same routes.
//!
//! | route | |
//! |---|---|
//! | `GET /profile` | the account page (anonymous browsers go to `/login?next=/profile`) |
//! | `GET /profile/me` | the account as JSON |
//! | `PATCH /profile/me` (form: `POST`) | username, display name, bio, public |
//! | `GET /profile/delete` | "Close your account": what it does, the form that does it |
//! | `DELETE /profile/me` (form: `POST /profile/delete`) | closes the account |
//! | `POST /profile/password` | a new password (and the second factor's `code`, when the account has one); every other session ends |
//! | `POST /profile/email` | a new address (the password, and the `code` with a second factor), confirmed by a link sent to it |
//! | `GET /profile/email/confirm?token=…` | the link: a page whose button posts the token |
//! | `POST /profile/email/confirm` | `{"token"}` (or the page's form) uses the link |
//! | `GET /profile/sessions` | live sessions |
//! | `DELETE /profile/sessions/{id}` (form: `POST …/revoke`) | ends one |
//! | `GET /profile/sessions/revoke-others` | the page that asks before ending them |
//! | `POST /profile/sessions/revoke-others` | ends all but this one |
//! | `GET /profile/factors` | the second factors: the authenticator app's dates, recovery codes left |
//! | `GET /profile/totp` | a new authenticator key: QR code and text (JSON: `secret`, `otpauth_url`, `pending`) |
//! | `POST /profile/totp` | `{"pending","code","password"}` turns it on: 201 with ten recovery codes, shown once |
//! | `GET /profile/totp/remove` | the page that asks before removing the app |
//! | `DELETE /profile/totp` (form: `POST /profile/totp/remove`) | `{"password","code"}` removes the app and its codes |
//! | `GET`/`POST /profile/recovery-codes` | `{"password","code"}`: ten new codes in place of the old (201) |
//! | `POST /profile/passkeys/options` | a registration challenge for a new passkey (for the page's script) |
//! | `POST /profile/passkeys` | `{"name","credential","credential_challenge","password"}` (and the second factor) adds it |
//! | `GET /profile/passkeys/{id}/remove` | the page that asks before removing one |
//! | `DELETE /profile/passkeys/{id}` (form: `POST …/remove`) | `{"password","code"}` (or a passkey) removes it |
//! | `GET /profile/activity` | recent sign-ins and changes |
//! | `GET /profile/export` | everything stored about the account, as a JSON download |
//!
//! Tokens are checked here with login's public keys only; a signed-out session is
//! refused within a second (bus) or the catch-up interval (database).

mod described;
mod domain;
mod errors;
mod factors;
mod handlers;
mod pages;
#[cfg(test)]
mod proptests;
mod store;

use std::sync::Arc;

use actix_web::web;
use chrono::TimeDelta;
use flotilla_auth::throttle::ThrottleSettings;
use flotilla_auth::{Auth, AuthConfig, HashPool, PasswordChecks, PasswordSettings, SecondFactors};
use flotilla_bus::WakeSender;
use flotilla_kit::{Api, ConfigError, Env, Provide, Service, State};

pub static SERVICE: Service = Service {
    name: "profile",
    default_port: 7103,
    api,
    setup,
    background: None,
    commands: &[],
};

/// What profile reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub public_url: String,
    pub passwords: PasswordSettings,
    /// `FLOTILLA_EMAIL_CHANGE_TOKEN_HOURS` (24): how long a new address's link works.
    pub email_change_ttl: TimeDelta,
    /// `FLOTILLA_BUS_WAKE`: where the worker takes wake-ups (and the bus secret).
    pub wake: flotilla_bus::BusEndpoint,
    /// Wrong current passwords allowed before checks are delayed (the sign-in
    /// throttle's `FLOTILLA_LOGIN_*` settings).
    pub throttle: ThrottleSettings,
}

impl ProfileConfig {
    pub fn from_env(env: &Env, kit: &flotilla_kit::Config) -> Result<Self, ConfigError> {
        Ok(Self {
            public_url: kit.public_url.clone(),
            passwords: PasswordSettings::from_env(env)?,
            email_change_ttl: TimeDelta::hours(env.number(
                "FLOTILLA_EMAIL_CHANGE_TOKEN_HOURS",
                store::default_email_change_ttl().num_hours(),
                1..=24 * 14,
            )?),
            wake: flotilla_kit::config::bus(env)?.wake,
            throttle: ThrottleSettings::from_env(env)?,
        })
    }
}

/// Profile's state, beside the kit's.
pub struct Profile {
    pub config: ProfileConfig,
    pub hashes: HashPool,
    pub wake: WakeSender,
    pub auth: Auth,
    /// The account's password asked again (throttled per account, as login's
    /// confirmation is).
    pub checks: PasswordChecks,
    /// The second factors (`FLOTILLA_FACTOR_KEY`): set up here, and their codes asked
    /// for before a sensitive change.
    pub factors: SecondFactors,
}

fn setup(state: &web::Data<State>) -> anyhow::Result<Provide> {
    let env = Env::from_process();
    let config = ProfileConfig::from_env(&env, &state.config)?;
    let auth = Auth::start_for(AuthConfig::from_env(&env, &state.config, false)?, state)?;
    let hashes = config.passwords.pool();
    let profile = web::Data::new(Profile {
        checks: PasswordChecks::new(hashes.clone(), config.throttle),
        factors: SecondFactors::from_env(&env, &config.public_url, config.throttle)?,
        hashes,
        wake: WakeSender::start(&config.wake)?,
        auth: auth.clone(),
        config,
    });
    let auth = web::Data::new(auth);
    Ok(Arc::new(move |data| {
        data.app_data(profile.clone()).app_data(auth.clone());
    }))
}

/// Profile's routes, each described by its handler's attribute.
fn api(api: Api) -> Api {
    use factors as f;
    use handlers as h;
    api.route::<h::__path_page, _, _>(h::page)
        .route::<h::__path_me, _, _>(h::me)
        .route::<h::__path_update, _, _>(h::update)
        .route::<h::__path_update_form, _, _>(h::update_form)
        .route::<h::__path_delete, _, _>(h::delete)
        .route::<h::__path_close_page, _, _>(h::close_page)
        .route::<h::__path_delete_form, _, _>(h::delete_form)
        .route::<h::__path_password, _, _>(h::password)
        .route::<h::__path_email, _, _>(h::email)
        .route::<h::__path_confirm_email_page, _, _>(h::confirm_email_page)
        .route::<h::__path_confirm_email, _, _>(h::confirm_email)
        .route::<h::__path_sessions, _, _>(h::sessions)
        .route::<h::__path_revoke_others_page, _, _>(h::revoke_others_page)
        .route::<h::__path_revoke_others, _, _>(h::revoke_others)
        .route::<h::__path_revoke, _, _>(h::revoke)
        .route::<h::__path_revoke_form, _, _>(h::revoke_form)
        .route::<f::__path_setup_page, _, _>(f::setup_page)
        .route::<f::__path_setup, _, _>(f::setup)
        .route::<f::__path_remove, _, _>(f::remove)
        .route::<f::__path_remove_page, _, _>(f::remove_page)
        .route::<f::__path_remove_form, _, _>(f::remove_form)
        .route::<f::__path_codes_page, _, _>(f::codes_page)
        .route::<f::__path_regenerate, _, _>(f::regenerate)
        .route::<f::__path_list, _, _>(f::list)
        .route::<f::__path_passkey_options, _, _>(f::passkey_options)
        .route::<f::__path_add_passkey, _, _>(f::add_passkey)
        .route::<f::__path_remove_passkey_page, _, _>(f::remove_passkey_page)
        .route::<f::__path_remove_passkey_form, _, _>(f::remove_passkey_form)
        .route::<f::__path_remove_passkey, _, _>(f::remove_passkey)
        .route::<h::__path_activity, _, _>(h::activity)
        .route::<h::__path_export, _, _>(h::export)
}

#[cfg(test)]
mod tests {

    use serde_json::Value;

    use super::SERVICE;

    #[test]
    fn every_route_is_described_once_and_the_document_holds_together() {
        assert_eq!(SERVICE.api().problems(), Vec::<String>::new());
    }

    /// The answer `typed` gives is byte for byte the `json!()` one it replaced (whose
    /// keys serde_json's map sorted), compact and indented.
    fn same_as_before(typed: &impl serde::Serialize, before: &Value) {
        let compact = serde_json::to_string(typed).unwrap_or_default();
        assert_eq!(compact, before.to_string());
        let pretty = serde_json::to_string_pretty(typed).unwrap_or_default();
        assert_eq!(
            pretty,
            serde_json::to_string_pretty(before).unwrap_or_default()
        );
    }

    #[test]
    fn typed_answers_are_the_json_they_replace() {
        use serde_json::json;

        use crate::factors::{RecoveryCodes, TotpSetupView};
        use crate::handlers::{
            ActivityEvent, ActivityList, EmailChangeSent, EmailLinkStatus, SessionList, SessionView,
        };
        use crate::store::{
            Export, ExportAccount, ExportEvent, ExportLink, ExportSession, FactorDatesView,
            FactorsView, PasskeyView,
        };

        let message = "Follow the link sent to the new address to confirm it; until then the \
                       address does not change.";
        same_as_before(
            &EmailChangeSent {
                message,
                status: "verification_sent",
            },
            &json!({"status": "verification_sent", "message": message}),
        );
        same_as_before(
            &EmailLinkStatus { status: "valid" },
            &json!({"status": "valid"}),
        );
        let session = SessionView {
            client_addr: "192.0.2.7".into(),
            created_at: "2026-12-03T04:27:08+00:00".into(),
            current: true,
            id: "s1".into(),
            last_used_at: "2026-12-03T04:28:08+00:00".into(),
            user_agent: "Firefox on Linux".into(),
        };
        same_as_before(
            &SessionList {
                sessions: vec![session],
            },
            &json!({"sessions": [{
                "id": "s1",
                "created_at": "2026-12-03T04:27:08+00:00",
                "last_used_at": "2026-12-03T04:28:08+00:00",
                "client_addr": "192.0.2.7",
                "user_agent": "Firefox on Linux",
                "current": true,
            }]}),
        );
        let event = ActivityEvent {
            at: "2026-12-03T04:27:08+00:00".into(),
            client_addr: "192.0.2.7".into(),
            kind: "login.succeeded".into(),
            user_agent: "Firefox on Linux".into(),
        };
        same_as_before(
            &ActivityList {
                events: vec![event],
            },
            &json!({"events": [{
                "kind": "login.succeeded",
                "at": "2026-12-03T04:27:08+00:00",
                "client_addr": "192.0.2.7",
                "user_agent": "Firefox on Linux",
            }]}),
        );
        same_as_before(
            &TotpSetupView {
                otpauth_url: "otpauth://totp/x".into(),
                pending: "p".into(),
                secret: "JBSWY3DP".into(),
            },
            &json!({"secret": "JBSWY3DP", "otpauth_url": "otpauth://totp/x", "pending": "p"}),
        );
        same_as_before(
            &RecoveryCodes {
                recovery_codes: None,
            },
            &json!({"recovery_codes": null}),
        );
        let codes = vec!["abcde-12345".to_owned()];
        same_as_before(
            &RecoveryCodes {
                recovery_codes: Some(codes.clone()),
            },
            &json!({"recovery_codes": codes}),
        );
        let factors = || FactorsView {
            passkeys: vec![PasskeyView {
                created_at: "2026-12-03T04:27:08Z".into(),
                id: "k1".into(),
                last_used_at: None,
                name: "Laptop".into(),
            }],
            recovery_codes_left: 10,
            totp: Some(FactorDatesView {
                created_at: "2026-12-03T04:27:08Z".into(),
                last_used_at: Some("2026-12-03T04:28:08Z".into()),
            }),
        };
        let factors_before = json!({
            "totp": {"created_at": "2026-12-03T04:27:08Z", "last_used_at": "2026-12-03T04:28:08Z"},
            "passkeys": [{
                "id": "k1",
                "name": "Laptop",
                "created_at": "2026-12-03T04:27:08Z",
                "last_used_at": null,
            }],
            "recovery_codes_left": 10,
        });
        same_as_before(&factors(), &factors_before);
        let none = FactorsView {
            passkeys: Vec::new(),
            recovery_codes_left: 0,
            totp: None,
        };
        same_as_before(
            &none,
            &json!({"totp": null, "passkeys": [], "recovery_codes_left": 0}),
        );
        // The export: every object's keys in the order serde_json's map gives them.
        let export = Export {
            account: ExportAccount {
                bio: None,
                created_at: "2026-12-03T04:27:08Z".into(),
                display_name: Some("Ada".into()),
                email: "ada@example.org".into(),
                email_verified: true,
                email_verified_at: Some("2026-12-03T04:27:09Z".into()),
                id: "u1".into(),
                public: false,
                role: "user".into(),
                updated_at: "2026-12-03T04:27:10Z".into(),
                username: Some("ada".into()),
            },
            activity: vec![ExportEvent {
                at: "2026-12-03T04:27:08Z".into(),
                client_addr: "192.0.2.7".into(),
                kind: "login.succeeded".into(),
                user_agent: "Mozilla/5.0".into(),
            }],
            email_links: vec![ExportLink {
                created_at: "2026-12-03T04:27:08Z".into(),
                email: "ada@example.org".into(),
                expires_at: "2026-12-05T04:27:08Z".into(),
                purpose: "verify_email".into(),
                used_at: None,
            }],
            exported_at: "2026-12-03T05:00:00Z".into(),
            second_factors: factors(),
            sessions: vec![ExportSession {
                client_addr: "192.0.2.7".into(),
                created_at: "2026-12-03T04:27:08Z".into(),
                expires_at: "2027-01-03T04:27:08Z".into(),
                id: "s1".into(),
                last_used_at: "2026-12-03T04:28:08Z".into(),
                revoked_at: None,
                revoked_reason: None,
                user_agent: "Mozilla/5.0".into(),
            }],
        };
        let sorted = serde_json::to_value(&export).unwrap_or_default();
        same_as_before(&export, &sorted);
        assert_eq!(sorted["second_factors"], factors_before);
        assert!(sorted["account"]["bio"].is_null());
    }
}
