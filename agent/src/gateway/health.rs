//! Backend health from active checks, with hysteresis.

use serde::{Deserialize, Serialize};

/// What the checks say of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked yet. Gets traffic, so a new gateway serves before its first check ends.
    Unknown,
    Up,
    Down,
}

impl Health {
    /// Whether the backend gets new connections.
    pub fn usable(self) -> bool {
        matches!(self, Self::Unknown | Self::Up)
    }
}

/// The health of one backend and the streak of check results that disagree with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthState {
    health: Health,
    streak: u32,
}

impl Default for HealthState {
    fn default() -> Self {
        Self {
            health: Health::Unknown,
            streak: 0,
        }
    }
}

impl HealthState {
    pub fn health(&self) -> Health {
        self.health
    }

    /// Takes one check result. Until a first success, and while up, `fall` failures in a row take
    /// the backend down; `rise` successes in a row bring a down backend back up.
    pub fn record(&mut self, ok: bool, fall: u32, rise: u32) -> Health {
        let (agrees, needed, flipped) = match self.health {
            // A first success is proof enough; a first failure is not: the first check of a
            // backend on another node often waits for the tunnel's first handshake.
            Health::Unknown if ok => {
                self.health = Health::Up;
                self.streak = 0;
                return self.health;
            }
            Health::Unknown | Health::Up => (ok, fall, Health::Down),
            Health::Down => (!ok, rise, Health::Up),
        };
        if agrees {
            self.streak = 0;
        } else {
            self.streak += 1;
            if self.streak >= needed.max(1) {
                self.health = flipped;
                self.streak = 0;
            }
        }
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(results: &[bool]) -> Vec<Health> {
        let mut state = HealthState::default();
        results.iter().map(|ok| state.record(*ok, 2, 2)).collect()
    }

    #[test]
    fn a_first_success_decides_and_a_first_failure_counts_like_any() {
        use Health::{Down, Unknown, Up};
        assert_eq!(run(&[true]), [Up]);
        assert_eq!(run(&[false, false]), [Unknown, Down]);
        assert_eq!(run(&[false, true]), [Unknown, Up]);
        assert!(HealthState::default().health().usable());
    }

    #[test]
    fn two_failures_take_a_backend_down_and_two_successes_bring_it_back() {
        use Health::{Down, Up};
        assert_eq!(
            run(&[true, false, true, false, false, true, false, true, true]),
            [Up, Up, Up, Up, Down, Down, Down, Down, Up]
        );
        assert!(!Down.usable());
    }
}
