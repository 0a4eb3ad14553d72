//! The cookies that carry tokens to browsers: names (`__Host-`/`__Secure-` on https),
//! the access, refresh and device cookies, and the pair that clears the first two.

use actix_web::cookie::{Cookie, SameSite};

use crate::Auth;

impl Auth {
    pub fn access_cookie_name(&self) -> &'static str {
        if self.config().secure_cookies {
            "__Host-flotilla_access"
        } else {
            "flotilla_access"
        }
    }

    pub fn refresh_cookie_name(&self) -> &'static str {
        // `__Host-` needs `Path=/`; the refresh cookie is scoped to /login.
        if self.config().secure_cookies {
            "__Secure-flotilla_refresh"
        } else {
            "flotilla_refresh"
        }
    }

    pub fn device_cookie_name(&self) -> &'static str {
        if self.config().secure_cookies {
            "__Secure-flotilla_device"
        } else {
            "flotilla_device"
        }
    }

    pub fn second_step_cookie_name(&self) -> &'static str {
        if self.config().secure_cookies {
            "__Secure-flotilla_second_step"
        } else {
            "flotilla_second_step"
        }
    }

    /// The cookie that carries a sign-in from its password to its second step, sent to
    /// /login only; `max_age_secs` 0 deletes it.
    pub fn second_step_cookie(&self, token: &str, max_age_secs: i64) -> Cookie<'static> {
        self.cookie(
            self.second_step_cookie_name(),
            token,
            "/login",
            max_age_secs,
        )
    }

    /// The device cookie ([`crate::device`]), sent to /login only, kept a year. Signing
    /// out does not clear it: the browser stays a known device of its accounts.
    pub fn device_cookie(&self, value: &str) -> Cookie<'static> {
        let max_age = crate::device::LIFETIME.num_seconds();
        self.cookie(self.device_cookie_name(), value, "/login", max_age)
    }

    /// The access token cookie: HttpOnly, SameSite=Lax, whole site, Secure on https.
    pub fn access_cookie(&self, token: &str) -> Cookie<'static> {
        self.cookie(
            self.access_cookie_name(),
            token,
            "/",
            self.settings().ttl_secs,
        )
    }

    /// The refresh token cookie, sent to /login only.
    pub fn refresh_cookie(&self, token: &str, max_age_secs: i64) -> Cookie<'static> {
        self.cookie(self.refresh_cookie_name(), token, "/login", max_age_secs)
    }

    /// Cookies that delete both.
    pub fn clearing_cookies(&self) -> [Cookie<'static>; 2] {
        [
            self.cookie(self.access_cookie_name(), "", "/", 0),
            self.cookie(self.refresh_cookie_name(), "", "/login", 0),
        ]
    }

    /// Adds the cookies that delete both to an answer (signed out, or a session that
    /// ended).
    pub fn clear_cookies(&self, response: &mut actix_web::HttpResponse) {
        for cookie in self.clearing_cookies() {
            // A cookie built here always has a valid header form.
            let _ = response.add_cookie(&cookie);
        }
    }

    fn cookie(
        &self,
        name: &'static str,
        value: &str,
        path: &'static str,
        max_age: i64,
    ) -> Cookie<'static> {
        Cookie::build(name, value.to_owned())
            .path(path)
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.config().secure_cookies)
            .max_age(actix_web::cookie::time::Duration::seconds(max_age))
            .finish()
    }
}
