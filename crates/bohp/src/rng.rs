//! Seeded, position-addressable random streams.
//!
//! Every random draw in bohp comes from a ChaCha8 generator keyed by the run's seed and a
//! [`Stream`], positioned on one item (an episode, the initial parameters). Episode `e` of a run
//! is therefore the same whatever the batch size, the backend, or whether the run was
//! interrupted and resumed: resuming needs no saved generator state.

use rand::{RngCore, SeedableRng};
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
    /// Generated meta-tasks, per task (`rl::metatask::generate`).
    Tasks,
}

impl Stream {
    fn domain(self) -> u64 {
        match self {
            Stream::Init => 0x1bd1_1bda_a9fc_1a22,
            Stream::Train => 0x6a09_e667_f3bc_c908,
            Stream::Eval => 0xbb67_ae85_84ca_a73b,
            Stream::Act => 0x3c6e_f372_fe94_f82b,
            Stream::Tasks => 0xa54f_f53a_5f1d_36f1,
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
    /// The generator's key, as ChaCha's state holds it (words 4-11).
    key: [u32; 8],
}

impl Streams {
    /// The items of `stream` in a run seeded with `seed`.
    pub fn new(seed: u64, stream: Stream) -> Streams {
        let keyed = ChaCha8Rng::seed_from_u64(seed ^ stream.domain());
        let seed = keyed.get_seed();
        let key = std::array::from_fn(|i| {
            u32::from_le_bytes(seed[4 * i..4 * i + 4].try_into().expect("4 bytes"))
        });
        Streams { keyed, key }
    }

    /// Calls `f(i, rng)` for items `first + i`, `i` in `0..n`, in order, where `rng` draws what
    /// `self.item(first + i)` draws: its first [`PREFIX_WORDS`] words come from one pass of
    /// ChaCha8's block function over [`LANES`] items at once (the lanes of SIMD vectors; the
    /// generator itself computes four blocks per refill, serially per item), the rest from the
    /// item's own generator. Tested word for word against [`Streams::item`].
    pub fn for_items(&self, first: u64, n: usize, mut f: impl FnMut(usize, &mut Prefixed)) {
        let mut words = [[0u32; LANES]; PREFIX_WORDS];
        for start in (0..n).step_by(LANES) {
            chacha8_first_block(&self.key, first.wrapping_add(start as u64), &mut words);
            for lane in 0..LANES.min(n - start) {
                let mut rng = Prefixed {
                    streams: self,
                    index: first.wrapping_add((start + lane) as u64),
                    words: &words,
                    lane,
                    pos: 0,
                    rest: None,
                };
                f(start + lane, &mut rng);
            }
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

/// Items whose first words [`Streams::for_items`] computes together.
pub const LANES: usize = 16;

/// Words computed ahead per item: ChaCha's first block.
pub const PREFIX_WORDS: usize = 16;

/// An item's generator whose first [`PREFIX_WORDS`] words were computed ahead
/// ([`Streams::for_items`]); past them, or for `fill_bytes`, the item's own ChaCha8 generator
/// positioned at the next word.
pub struct Prefixed<'a> {
    streams: &'a Streams,
    index: u64,
    /// `[word][lane]`.
    words: &'a [[u32; LANES]; PREFIX_WORDS],
    lane: usize,
    /// Words drawn so far.
    pos: usize,
    rest: Option<ChaCha8Rng>,
}

impl Prefixed<'_> {
    /// The item's generator, at the word after those drawn.
    fn rest(&mut self) -> &mut ChaCha8Rng {
        let (streams, index, pos) = (self.streams, self.index, self.pos);
        self.rest.get_or_insert_with(|| {
            let mut rng = streams.item(index);
            rng.set_word_pos(pos as u128);
            rng
        })
    }
}

impl RngCore for Prefixed<'_> {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        if self.rest.is_none() && self.pos < PREFIX_WORDS {
            self.pos += 1;
            self.words[self.pos - 1][self.lane]
        } else {
            self.rest().next_u32()
        }
    }

    /// Two words, the first the low half (as ChaCha8's generator reads them).
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let low = u64::from(self.next_u32());
        (u64::from(self.next_u32()) << 32) | low
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.rest().fill_bytes(dst)
    }
}

/// ChaCha8's block 0 (counter 0) for the [`LANES`] streams `first, first + 1, ...` under
/// `key`, written `[word][lane]`: the state is rand_chacha's (constants, key, 64-bit block
/// counter, 64-bit stream), four double rounds, then the state added back. Each step is one
/// operation across the lanes, which the compiler runs as vectors.
fn chacha8_first_block(key: &[u32; 8], first: u64, out: &mut [[u32; LANES]; PREFIX_WORDS]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { chacha8_first_block_avx2(key, first, out) };
    }
    chacha8_first_block_generic(key, first, out)
}

/// [`chacha8_first_block_generic`] compiled for AVX2 (integer arithmetic: the same words).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chacha8_first_block_avx2(key: &[u32; 8], first: u64, out: &mut [[u32; LANES]; PREFIX_WORDS]) {
    chacha8_first_block_generic(key, first, out)
}

#[inline(always)]
fn chacha8_first_block_generic(key: &[u32; 8], first: u64, out: &mut [[u32; LANES]; PREFIX_WORDS]) {
    const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
    let mut init = [[0u32; LANES]; 16];
    for i in 0..4 {
        init[i] = [SIGMA[i]; LANES];
    }
    for i in 0..8 {
        init[4 + i] = [key[i]; LANES];
    }
    // Words 12-13: the block counter (0); 14-15: the stream, low word first.
    for l in 0..LANES {
        let stream = first.wrapping_add(l as u64);
        init[14][l] = stream as u32;
        init[15][l] = (stream >> 32) as u32;
    }
    let mut x = init;
    #[inline(always)]
    fn quarter(x: &mut [[u32; LANES]; 16], a: usize, b: usize, c: usize, d: usize) {
        for l in 0..LANES {
            let (mut va, mut vb, mut vc, mut vd) = (x[a][l], x[b][l], x[c][l], x[d][l]);
            va = va.wrapping_add(vb);
            vd = (vd ^ va).rotate_left(16);
            vc = vc.wrapping_add(vd);
            vb = (vb ^ vc).rotate_left(12);
            va = va.wrapping_add(vb);
            vd = (vd ^ va).rotate_left(8);
            vc = vc.wrapping_add(vd);
            vb = (vb ^ vc).rotate_left(7);
            (x[a][l], x[b][l], x[c][l], x[d][l]) = (va, vb, vc, vd);
        }
    }
    for _ in 0..4 {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for (o, (x, i)) in out.iter_mut().zip(x.iter().zip(&init)) {
        for l in 0..LANES {
            o[l] = x[l].wrapping_add(i[l]);
        }
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

    /// [`Streams::for_items`] draws, item by item, what each item's own generator draws:
    /// words inside and past the computed prefix, `u64`s across its end, bytes, and the draws
    /// the tasks make (`random::<bool>`, `random_range`), for batches that end mid-way through
    /// a pass of [`LANES`] items and for stream numbers that wrap around.
    #[test]
    fn prefixed_items_draw_what_their_own_generators_draw() {
        for (seed, stream, first, n) in [
            (1, Stream::Train, 0, 37),
            (9, Stream::Eval, 1_000_003, 16),
            (3, Stream::Act, u64::MAX - 5, 20),
        ] {
            let streams = Streams::new(seed, stream);
            // Draw patterns that stop in the prefix, at its end, and past it.
            for (pattern, words) in [(0, 9), (1, 16), (2, 40)] {
                let mut seen = 0;
                streams.for_items(first, n, |i, rng| {
                    let mut own = streams.item(first.wrapping_add(i as u64));
                    let mut a = Vec::new();
                    let mut b = Vec::new();
                    match pattern {
                        0 => {
                            for _ in 0..8 {
                                a.push(rng.random::<bool>() as u64);
                                b.push(own.random::<bool>() as u64);
                            }
                            a.push(rng.random_range(0..8usize) as u64);
                            b.push(own.random_range(0..8usize) as u64);
                        }
                        1 => {
                            for _ in 0..words - 1 {
                                a.push(rng.next_u32().into());
                                b.push(own.next_u32().into());
                            }
                            // A u64 across the end of the prefix.
                            a.push(rng.next_u64());
                            b.push(own.next_u64());
                        }
                        _ => {
                            for _ in 0..words {
                                a.push(rng.next_u64());
                                b.push(own.next_u64());
                            }
                            let (mut x, mut y) = ([0u8; 7], [0u8; 7]);
                            rng.fill_bytes(&mut x);
                            own.fill_bytes(&mut y);
                            assert_eq!(x, y);
                            a.push(rng.next_u32().into());
                            b.push(own.next_u32().into());
                        }
                    }
                    assert_eq!(a, b, "seed {seed}, item {i}, pattern {pattern}");
                    assert_eq!(i, seen);
                    seen += 1;
                });
                assert_eq!(seen, n);
            }
        }
    }
}
