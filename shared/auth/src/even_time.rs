//! An answer that must not tell whether an address has an account (forgot, resend)
//! goes out no sooner than [`FLOOR`] after its request came in. Both cases already do
//! the same kind of work (one write transaction, an auth event, a wake-up), but only
//! an account gets a link issued and a mail queued: a few statements more, which a
//! patient client could measure. The floor is far above that work and far below what a
//! person notices. A request whose work takes longer than the floor (an overloaded
//! database) is not held further: its time is then noise from the load, not from the
//! address.

use std::time::{Duration, Instant};

/// How long such an answer takes at least.
pub const FLOOR: Duration = Duration::from_millis(50);

/// Started when the request comes in; [`EvenTime::finish`] waits out the rest of the
/// floor before the answer is sent.
#[derive(Debug, Clone, Copy)]
pub struct EvenTime {
    started: Instant,
}

impl EvenTime {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
        }
    }

    /// Sleeps (without holding a thread) until [`FLOOR`] after the start.
    pub async fn finish(self) {
        if let Some(left) = FLOOR.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(left).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quick_answer_waits_for_the_floor_and_a_slow_one_does_not() {
        let quick = EvenTime::start();
        quick.finish().await;
        assert!(quick.started.elapsed() >= FLOOR);

        let slow = EvenTime {
            started: Instant::now() - FLOOR * 2,
        };
        let before = Instant::now();
        slow.finish().await;
        assert!(before.elapsed() < FLOOR / 2, "not held further");
    }
}
