//! Hysteresis: confirmation of a new candidate and a minimum dwell.

use serde::{Deserialize, Serialize};

use crate::Regime;

/// The regime in force and the candidate waiting to replace it.
///
/// At each evaluation the rules give a candidate `c`. The first candidate is taken
/// as is. Afterwards `c` replaces the current regime only when (a) `c` came out on
/// `confirm` consecutive evaluations (the streak counts `c` only; any other output
/// restarts it) and (b) the current regime has been in force for at least
/// `min_dwell` evaluations. So every regime but the last lasts `min_dwell`
/// evaluations or more.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dwell {
    current: Option<Regime>,
    /// Evaluations the current regime has been in force (this one included).
    held: u32,
    /// The candidate differing from `current` and its streak of consecutive evaluations.
    pending: Option<(Regime, u32)>,
}

impl Dwell {
    /// The regime in force, if any evaluation happened.
    pub const fn current(&self) -> Option<Regime> {
        self.current
    }

    /// Evaluations the current regime has been in force.
    pub const fn held(&self) -> u32 {
        self.held
    }

    /// Takes one candidate; returns the regime in force after it and whether it changed.
    pub fn step(&mut self, candidate: Regime, confirm: u32, min_dwell: u32) -> (Regime, bool) {
        let Some(cur) = self.current else {
            self.current = Some(candidate);
            self.held = 1;
            self.pending = None;
            return (candidate, true);
        };
        if candidate == cur {
            self.pending = None;
            self.held = self.held.saturating_add(1);
            return (cur, false);
        }
        let streak = match self.pending {
            Some((r, n)) if r == candidate => n.saturating_add(1),
            _ => 1,
        };
        if streak >= confirm && self.held >= min_dwell {
            self.current = Some(candidate);
            self.held = 1;
            self.pending = None;
            (candidate, true)
        } else {
            self.pending = Some((candidate, streak));
            self.held = self.held.saturating_add(1);
            (cur, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Regime::{HighVolatility as H, Ranging as R, TrendingUp as U};

    fn run(cands: &[Regime], confirm: u32, dwell: u32) -> Vec<Regime> {
        let mut d = Dwell::default();
        cands.iter().map(|&c| d.step(c, confirm, dwell).0).collect()
    }

    #[test]
    fn first_candidate_is_taken_then_a_change_needs_confirmation() {
        assert_eq!(run(&[R, U, R, U, U, U], 2, 1), [R, R, R, R, U, U]);
    }

    #[test]
    fn a_streak_restarts_when_another_candidate_interrupts() {
        assert_eq!(run(&[R, U, H, U, U], 2, 1), [R, R, R, R, U]);
    }

    #[test]
    fn minimum_dwell_holds_a_fresh_regime() {
        // U is confirmed at once (confirm 1) but R must first last 3 evaluations.
        assert_eq!(run(&[R, U, U, U, R], 1, 3), [R, R, R, U, U]);
        // then U must last 3 too, so R comes back at the 3rd evaluation of U.
        assert_eq!(run(&[R, U, U, U, R, R, R], 1, 3), [R, R, R, U, U, U, R]);
    }

    #[test]
    fn confirm_one_dwell_one_follows_the_candidates() {
        let c = [R, U, H, R, R, U];
        assert_eq!(run(&c, 1, 1), c);
    }
}
