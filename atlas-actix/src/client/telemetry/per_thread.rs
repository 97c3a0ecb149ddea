//! Per-thread copies of small shared maps that every check reads (the features registered,
//! the check counters bound): a check finds its entry in memory only its own thread touches,
//! instead of taking a lock every worker shares.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The FxHash function (rustc's): a multiply and a rotate per word. The maps it serves hold
/// feature ids the app's code names, a few dozen, looked up on every check, where SipHash's
/// cost shows and its resistance to chosen keys buys nothing (their number is bounded).
#[derive(Default)]
pub(crate) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut rest = [0; 8];
        rest[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(rest));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// How many owners (clients) a thread keeps copies for: apps have one; tests make many.
const OWNERS: usize = 16;

/// One map per owner, found by a short scan: a thread serves one client, or a few.
pub(crate) struct PerOwner<V> {
    owners: Vec<(u64, FastMap<String, V>)>,
}

impl<V> Default for PerOwner<V> {
    fn default() -> Self {
        Self { owners: Vec::new() }
    }
}

impl<V> PerOwner<V> {
    pub(crate) fn get(&self, owner: u64) -> Option<&FastMap<String, V>> {
        self.owners
            .iter()
            .find(|(id, _)| *id == owner)
            .map(|(_, map)| map)
    }

    /// The owner's map, made when absent; the oldest owner's copy goes beyond [`OWNERS`].
    pub(crate) fn entry(&mut self, owner: u64) -> &mut FastMap<String, V> {
        let at = match self.owners.iter().position(|(id, _)| *id == owner) {
            Some(at) => at,
            None => {
                if self.owners.len() >= OWNERS {
                    self.owners.remove(0);
                }
                self.owners.push((owner, FastMap::default()));
                self.owners.len() - 1
            }
        };
        &mut self.owners[at].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_keep_their_own_entries_and_the_oldest_goes_first() {
        let mut maps: PerOwner<u32> = PerOwner::default();
        maps.entry(1).insert("seats".into(), 1);
        maps.entry(2).insert("seats".into(), 2);
        assert_eq!(maps.get(1).unwrap()["seats"], 1);
        assert_eq!(maps.get(2).unwrap()["seats"], 2);
        for owner in 3..3 + OWNERS as u64 {
            maps.entry(owner);
        }
        assert!(maps.get(1).is_none() && maps.get(2).is_none());
    }

    #[test]
    fn the_hash_tells_nearby_keys_apart() {
        let hash = |text: &str| {
            let mut hasher = FxHasher::default();
            std::hash::Hash::hash(text, &mut hasher);
            hasher.finish()
        };
        assert_ne!(hash("seats"), hash("seat"));
        assert_ne!(hash("data-explorer"), hash("data-explorer2"));
        assert_ne!(hash(""), hash("\0"));
    }
}
