//! flotilla-profile: self-service for a signed-in person.
//!
//! | route | |
//! |---|---|
//! | `GET /profile/me` | the account of the access token (401 without a valid one) |
//!
//! Tokens are checked here with login's public keys only; a signed-out session is
//! refused within a second (bus) or the catch-up interval (database).

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::NaiveDateTime;
use flotilla_auth::{Auth, AuthConfig, Authenticated};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::users;
use flotilla_kit::{ConfigError, Env, Error, Routes, Service, State};

pub static SERVICE: Service = Service {
    name: "profile",
    default_port: 7103,
    setup,
    background: None,
    commands: &[],
};

fn setup(state: &web::Data<State>) -> anyhow::Result<Routes> {
    let env = Env::from_process();
    let config = AuthConfig::from_env(&env, &state.config, false)
        .map_err(|e: ConfigError| anyhow::anyhow!("invalid configuration: {e}"))?;
    let auth = Auth::start(config, state.pool.clone())?;
    let checker = auth.clone();
    state.add_ready_check(Arc::new(move || checker.readiness()));
    let auth = web::Data::new(auth);
    Ok(Arc::new(move |cfg| {
        cfg.app_data(auth.clone()).route("/me", web::get().to(me));
    }))
}

type MeRow = (
    String,
    String,
    Option<NaiveDateTime>,
    Option<String>,
    Option<String>,
    Option<String>,
    i32,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
);

async fn me(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let pool = state.pool.clone();
    let user_id = who.claims.sub.clone();
    let row = web::block(move || -> Result<Option<MeRow>, Error> {
        let mut conn = pool.get()?;
        users::table
            .filter(users::id.eq(&user_id))
            .select((
                users::id,
                users::email,
                users::email_verified_at,
                users::username,
                users::display_name,
                users::bio,
                users::is_public,
                users::role,
                users::created_at,
                users::disabled_at,
            ))
            .first(&mut conn)
            .optional()
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading the account")))
    })
    .await??;
    let Some((id, email, verified, username, display_name, bio, public, role, created, disabled)) =
        row
    else {
        return Err(Error::Unauthorized {
            code: "account_gone",
            message: "This account no longer exists.".into(),
        });
    };
    if disabled.is_some() {
        return Err(Error::Forbidden {
            code: "account_disabled",
            message: "This account has been disabled.".into(),
        });
    }
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "id": id,
            "email": email,
            "email_verified": verified.is_some(),
            "username": username,
            "display_name": display_name,
            "bio": bio,
            "public": public == 1,
            "role": role,
            "created_at": created.and_utc().to_rfc3339(),
        })))
}
