//! The sessions this service refuses: filled from `session.revoked` events and from
//! the database's catch-up, each kept until every token issued for it has expired.

use std::collections::HashMap;
use std::sync::Mutex;

/// Revoked sessions: id → unix time until which their tokens are refused.
#[derive(Default)]
pub struct DenyList {
    entries: Mutex<HashMap<String, i64>>,
}

impl DenyList {
    pub fn deny(&self, sid: &str, until: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            let slot = entries.entry(sid.to_owned()).or_insert(until);
            *slot = (*slot).max(until);
        }
    }

    pub fn is_denied(&self, sid: &str) -> bool {
        self.entries
            .lock()
            .map(|entries| entries.contains_key(sid))
            .unwrap_or(true)
    }

    /// Forgets the sessions whose tokens have all expired.
    pub(crate) fn prune(&self, now: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, until| *until >= now);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_sessions_are_forgotten_once_their_tokens_expired() {
        let list = DenyList::default();
        list.deny("a", 100);
        list.deny("b", 300);
        list.deny("a", 50);
        assert!(list.is_denied("a") && list.is_denied("b"));
        list.prune(200);
        assert!(!list.is_denied("a"));
        assert!(list.is_denied("b"));
        assert_eq!(list.len(), 1);
    }
}
