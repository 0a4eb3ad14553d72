//! Latencies kept whole (a run holds at most a few million) and read by nearest rank.

use std::time::Duration;

/// Durations, sorted once when read.
#[derive(Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn sort(&mut self) {
        self.0.sort_unstable();
    }

    /// The nearest-rank percentile in milliseconds (sorted first); `-` when empty.
    pub fn ms(&self, p: f64) -> String {
        match self.at(p) {
            Some(d) => format!("{:.1}", d.as_secs_f64() * 1000.0),
            None => "-".to_owned(),
        }
    }

    pub fn at(&self, p: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }
}
