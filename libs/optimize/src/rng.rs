//! A seeded ChaCha8 stream whose position is part of a search's saved
//! state, so a restored search draws exactly what it would have drawn.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Seed and word position (split in two u64 for any serde format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stream {
    seed: u64,
    pos: (u64, u64),
}

impl Stream {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, pos: (0, 0) }
    }

    /// The generator at the saved position.
    pub(crate) fn rng(&self) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_word_pos((u128::from(self.pos.0) << 64) | u128::from(self.pos.1));
        rng
    }

    /// Remembers where `rng` stands.
    pub(crate) fn save(&mut self, rng: &ChaCha8Rng) {
        let pos = rng.get_word_pos();
        #[allow(clippy::cast_possible_truncation, reason = "split in halves")]
        let halves = ((pos >> 64) as u64, pos as u64);
        self.pos = halves;
    }
}
