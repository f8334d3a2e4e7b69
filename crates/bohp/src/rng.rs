//! Seeded, position-addressable random streams.
//!
//! Every random draw in bohp comes from a ChaCha8 generator keyed by the run's seed and a
//! [`Stream`], positioned on one item (an episode, the initial parameters). Episode `e` of a run
//! is therefore the same whatever the batch size, the backend, or whether the run was
//! interrupted and resumed: resuming needs no saved generator state.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Independent purposes a run draws random numbers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Initial parameters.
    Init,
    /// Training episodes (including the frozen phase).
    Train,
    /// Episodes drawn by `bohp eval`, never seen during training.
    Eval,
    /// An agent's action sampling (reinforcement learning), per episode.
    Act,
}

impl Stream {
    fn domain(self) -> u64 {
        match self {
            Stream::Init => 0x1bd1_1bda_a9fc_1a22,
            Stream::Train => 0x6a09_e667_f3bc_c908,
            Stream::Eval => 0xbb67_ae85_84ca_a73b,
            Stream::Act => 0x3c6e_f372_fe94_f82b,
        }
    }
}

/// The generator for item `index` of `stream` in a run seeded with `seed`.
pub fn stream_rng(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    Streams::new(seed, stream).item(index)
}

/// The generators of one `(seed, stream)`, item by item: [`stream_rng`] without expanding the
/// key again for every item (a batch's episodes share it).
#[derive(Debug, Clone)]
pub struct Streams {
    keyed: ChaCha8Rng,
}

impl Streams {
    /// The items of `stream` in a run seeded with `seed`.
    pub fn new(seed: u64, stream: Stream) -> Streams {
        Streams {
            keyed: ChaCha8Rng::seed_from_u64(seed ^ stream.domain()),
        }
    }

    /// The generator for item `index`: `stream_rng(seed, stream, index)`.
    pub fn item(&self, index: u64) -> ChaCha8Rng {
        // The keyed generator has drawn nothing, so `set_stream` only sets the nonce.
        let mut rng = self.keyed.clone();
        rng.set_stream(index);
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: u64 = stream_rng(7, Stream::Train, 3).random();
        let b: u64 = stream_rng(7, Stream::Train, 3).random();
        let c: u64 = stream_rng(7, Stream::Train, 4).random();
        let d: u64 = stream_rng(7, Stream::Eval, 3).random();
        let e: u64 = stream_rng(8, Stream::Train, 3).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, e);
    }

    /// One keyed generator cloned per item draws what a generator keyed afresh for each item
    /// draws (the episodes of every run depend on it), and an item's generator does not depend
    /// on which items were drawn before it.
    #[test]
    fn a_shared_key_gives_each_items_own_draws() {
        for (seed, stream) in [
            (1, Stream::Train),
            (7, Stream::Eval),
            (u64::MAX, Stream::Init),
        ] {
            let streams = Streams::new(seed, stream);
            for index in [0, 1, 2, 1000, u64::MAX] {
                let mut fresh = ChaCha8Rng::seed_from_u64(seed ^ stream.domain());
                fresh.set_stream(index);
                let mut shared = streams.item(index);
                // Past the 64-word buffer, so that a refill is compared too.
                let want: Vec<u32> = (0..150).map(|_| fresh.random()).collect();
                let got: Vec<u32> = (0..150).map(|_| shared.random()).collect();
                assert_eq!(want, got, "seed {seed}, item {index}");
            }
        }
    }
}
