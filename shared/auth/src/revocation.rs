//! Revoked sessions across the fleet. The deny-list is filled two ways:
//! `session.revoked` events over the bus (within milliseconds) and a catch-up from the
//! database at start and every `FLOTILLA_REVOCATION_CATCHUP_SECS` (the truth, for when
//! the bus is down). A session stays denied until every token issued for it has expired.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use flotilla_bus::{Event, EventSubscriber, EventTopic};
use flotilla_db::Pool;

use crate::{Auth, AuthConfig, DenyList};

/// Catch-up reads again what was revoked this long before its last pass, for
/// transactions that committed late and clocks that differ a little.
const OVERLAP: TimeDelta = TimeDelta::seconds(60);

/// Denies the sessions named by each `session.revoked` event on the bus.
pub(crate) fn subscribe(
    config: &AuthConfig,
    denied: Arc<DenyList>,
) -> anyhow::Result<EventSubscriber> {
    let hold = config.tokens.revocation_hold_secs();
    EventSubscriber::events(
        &config.events_out,
        &[EventTopic::SessionRevoked.as_str()],
        move |event| {
            if let Event::SessionRevoked { sids } = event {
                let until = Utc::now().timestamp() + hold;
                for sid in &sids {
                    denied.deny(sid, until);
                }
            }
        },
    )
}

/// Runs on the auth thread: reads the sessions revoked since its last pass, every
/// `catch_up`, and marks `auth` caught up after the first pass that succeeds.
pub(crate) async fn catch_up_loop(auth: Auth, pool: Pool) {
    let hold = TimeDelta::seconds(auth.hold_secs());
    let mut since = Utc::now().naive_utc() - hold;
    let mut ticker = tokio::time::interval(auth.config().catch_up);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = Utc::now().naive_utc();
        let pool = pool.clone();
        let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut conn = pool.get()?;
            Ok(flotilla_accounts::revoked_since(&mut conn, since)?)
        })
        .await;
        match read {
            Ok(Ok(rows)) => {
                for (sid, at) in rows {
                    let until = (at + hold).and_utc().timestamp();
                    auth.deny_list().deny(&sid, until);
                }
                auth.deny_list().prune(Utc::now().timestamp());
                auth.mark_caught_up();
                since = started - OVERLAP;
            }
            Ok(Err(e)) => log::warn!("revocation catch-up failed: {e:#}"),
            Err(e) => log::warn!("revocation catch-up failed: {e}"),
        }
    }
}

impl Auth {
    /// Denies the sessions here at once and tells the other services.
    pub fn announce_revoked(&self, sids: &[String]) {
        if sids.is_empty() {
            return;
        }
        let until = Utc::now().timestamp() + self.hold_secs();
        for sid in sids {
            self.deny_list().deny(sid, until);
        }
        self.publish(&Event::SessionRevoked {
            sids: sids.to_vec(),
        });
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.deny_list().is_denied(sid)
    }

    /// How long a revoked session stays denied: a token's life and the leeway.
    fn hold_secs(&self) -> i64 {
        self.settings().revocation_hold_secs()
    }
}
