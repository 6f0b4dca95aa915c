//! Constrained sampling: before each token is drawn, the logits of every token whose text would
//! break the output's grammar are set to −∞, so the sampler can only pick tokens that keep the
//! output valid. The grammar here is JSON ([`json`]); the vocabulary is turned into bytes once
//! and laid out as a trie ([`TokenTrie`]), so one pass over the trie with the recogniser's state
//! finds every allowed token, and a byte that breaks the grammar cuts off every token that
//! starts with it. The recogniser's state repeats often (every token inside one string value
//! starts from the same state), so the allowed set is cached per state.

mod json;

use std::collections::HashMap;
use std::sync::Arc;

use json::JsonState;
pub use json::Top;

use crate::model::tokenizer::Tokenizer;

/// Why a constrained generation cannot go on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConstraintError {
    /// No token at all can continue the output as JSON.
    #[error("json: no token of the vocabulary can continue the output {text:?} as JSON")]
    NoToken {
        /// The output so far.
        text: String,
    },
    /// The sampled token does not continue the output as JSON.
    #[error("json: token {token} ({piece:?}) does not continue the output {text:?} as JSON")]
    Rejected {
        /// The token id.
        token: u32,
        /// Its text.
        piece: String,
        /// The output before it.
        text: String,
    },
}

/// One trie node, stored in depth-first order: the byte on the edge into it, its depth (1 for
/// the first byte), the index just past its subtree, and the tokens whose text ends here.
#[derive(Debug, Clone, Copy)]
struct Node {
    byte: u8,
    depth: u16,
    skip: u32,
    tok_start: u32,
    tok_len: u32,
}

/// The vocabulary as bytes: each token's text (as `token_to_piece` gives it, control tokens
/// empty), and a trie over those texts for masking.
#[derive(Debug)]
pub struct TokenTrie {
    nodes: Vec<Node>,
    /// Token ids grouped by the node their text ends at.
    ids: Vec<u32>,
    /// Token `i`'s bytes are `bytes[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    /// The longest token text, in bytes.
    max_len: usize,
    /// End-of-generation tokens (allowed once the value is complete).
    eog: Vec<u32>,
}

impl TokenTrie {
    /// Reads every token's bytes from `tok` and builds the trie (tens of milliseconds for a
    /// 150k-token vocabulary; done once per loaded model).
    pub fn new(tok: &Tokenizer) -> TokenTrie {
        let pieces = (0..tok.n_vocab() as u32).map(|id| tok.piece(id, false));
        TokenTrie::from_pieces(pieces, tok.eog_ids().iter().copied().collect())
    }

    /// The trie over token texts given in id order, with the end-of-generation ids.
    fn from_pieces(pieces: impl Iterator<Item = Vec<u8>>, eog: Vec<u32>) -> TokenTrie {
        let mut offsets = vec![0u32];
        let mut bytes = Vec::new();
        for p in pieces {
            bytes.extend_from_slice(&p);
            offsets.push(bytes.len() as u32);
        }
        let n = offsets.len() - 1;
        let piece = |i: u32| &bytes[offsets[i as usize] as usize..offsets[i as usize + 1] as usize];
        // Sorted texts put each prefix before its extensions, so every trie node's tokens and
        // subtree are contiguous.
        let mut order: Vec<u32> = (0..n as u32).filter(|&i| !piece(i).is_empty()).collect();
        order.sort_by(|&a, &b| piece(a).cmp(piece(b)).then(a.cmp(&b)));
        let mut nodes = Vec::new();
        let mut ids = Vec::with_capacity(order.len());
        build(&order, 0, &piece, &mut nodes, &mut ids);
        let max_len = order.iter().map(|&i| piece(i).len()).max().unwrap_or(0);
        TokenTrie {
            nodes,
            ids,
            offsets,
            bytes,
            max_len,
            eog,
        }
    }

    /// Number of tokens described.
    pub fn n_vocab(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The bytes of token `id` (empty for control tokens and ids outside the vocabulary).
    pub fn piece(&self, id: u32) -> &[u8] {
        match (
            self.offsets.get(id as usize),
            self.offsets.get(id as usize + 1),
        ) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The tokens whose whole text `state` accepts, as a bit set over the vocabulary.
    fn allowed_after(&self, state: JsonState) -> Vec<u64> {
        let mut allowed = vec![0u64; self.n_vocab().div_ceil(64)];
        // states[d]: the state after the first d bytes of the current path.
        let mut states = vec![state; self.max_len + 1];
        let mut i = 0;
        while i < self.nodes.len() {
            let n = self.nodes[i];
            let d = n.depth as usize;
            let mut s = states[d - 1];
            if s.feed(n.byte) {
                states[d] = s;
                for &t in &self.ids[n.tok_start as usize..(n.tok_start + n.tok_len) as usize] {
                    allowed[t as usize / 64] |= 1 << (t % 64);
                }
                i += 1;
            } else {
                // No token through this byte can be valid.
                i = n.skip as usize;
            }
        }
        allowed
    }
}

/// Allowed sets kept per constraint; past this many states the cache starts over (each set is
/// n_vocab / 8 bytes: 19 KiB for a 150k-token vocabulary).
const CACHE_STATES: usize = 64;

/// Lays out the trie below a node at `depth` whose tokens (sorted by text, all sharing the
/// node's `depth`-byte prefix and all longer than it) are `group`.
fn build<'a>(
    group: &[u32],
    depth: usize,
    piece: &impl Fn(u32) -> &'a [u8],
    nodes: &mut Vec<Node>,
    ids: &mut Vec<u32>,
) {
    let mut i = 0;
    while i < group.len() {
        let b = piece(group[i])[depth];
        let j = i + group[i..]
            .iter()
            .take_while(|&&t| piece(t)[depth] == b)
            .count();
        let child = &group[i..j];
        let ending = child
            .iter()
            .take_while(|&&t| piece(t).len() == depth + 1)
            .count();
        let at = nodes.len();
        nodes.push(Node {
            byte: b,
            depth: (depth + 1) as u16,
            skip: 0,
            tok_start: ids.len() as u32,
            tok_len: ending as u32,
        });
        ids.extend_from_slice(&child[..ending]);
        build(&child[ending..], depth + 1, piece, nodes, ids);
        nodes[at].skip = nodes.len() as u32;
        i = j;
    }
}

/// A generation kept to JSON: the recogniser's state over the tokens accepted so far.
#[derive(Debug, Clone)]
pub struct JsonConstraint {
    trie: Arc<TokenTrie>,
    state: JsonState,
    /// The text accepted so far (for error messages).
    text: Vec<u8>,
    /// Allowed sets of states met before.
    cache: HashMap<JsonState, Arc<Vec<u64>>>,
}

impl JsonConstraint {
    /// A constraint to one JSON value whose top level is `top`, over the vocabulary in `trie`.
    pub fn new(trie: Arc<TokenTrie>, top: Top) -> JsonConstraint {
        JsonConstraint {
            trie,
            state: JsonState::new(top),
            text: Vec::new(),
            cache: HashMap::new(),
        }
    }

    /// Sets the logits of every token that would break the JSON to −∞ (end-of-generation tokens
    /// stay only once the value is complete). Ids past the tokenizer's vocabulary (padding rows
    /// of the output matrix) are masked too.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let allowed = match self.cache.get(&self.state) {
            Some(a) => a.clone(),
            None => {
                if self.cache.len() >= CACHE_STATES {
                    self.cache.clear();
                }
                let a = Arc::new(self.trie.allowed_after(self.state));
                self.cache.insert(self.state, a.clone());
                a
            }
        };
        let can_end = self.state.can_end();
        let eog = &self.trie.eog;
        let mut any = false;
        for (t, l) in logits.iter_mut().enumerate() {
            let ok = allowed.get(t / 64).is_some_and(|w| w >> (t % 64) & 1 == 1)
                || (can_end && eog.contains(&(t as u32)));
            if ok {
                any |= *l != f32::NEG_INFINITY && !l.is_nan();
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if !any {
            return Err(ConstraintError::NoToken {
                text: String::from_utf8_lossy(&self.text).into_owned(),
            });
        }
        Ok(())
    }

    /// Advances over a sampled token (not an end-of-generation token). A token the mask allowed
    /// is always accepted; anything else is an error naming it.
    pub fn accept(&mut self, token: u32) -> Result<(), ConstraintError> {
        let piece = self.trie.piece(token);
        let mut s = self.state;
        if piece.is_empty() || !s.feed_all(piece) {
            return Err(ConstraintError::Rejected {
                token,
                piece: String::from_utf8_lossy(piece).into_owned(),
                text: String::from_utf8_lossy(&self.text).into_owned(),
            });
        }
        self.state = s;
        self.text.extend_from_slice(piece);
        Ok(())
    }

    /// Whether the top-level value has closed (generation should end).
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trie over the given texts (ids in order), without a tokenizer.
    fn trie(texts: &[&str], eog: &[u32]) -> TokenTrie {
        TokenTrie::from_pieces(texts.iter().map(|t| t.as_bytes().to_vec()), eog.to_vec())
    }

    /// The ids the constraint allows after accepting `prefix` (ids of `texts`).
    fn allowed(c: &mut JsonConstraint, n: usize) -> Vec<u32> {
        let mut l = vec![0.0f32; n];
        c.mask(&mut l).unwrap();
        (0..n as u32).filter(|&i| l[i as usize] == 0.0).collect()
    }

    const TEXTS: [&str; 12] = [
        "", "{", "{\"", "}", "\"", "a", "\":", " 1", "1}", "}x", "\",\"", "<eos>",
    ];

    #[test]
    fn mask_matches_feeding_each_token_alone() {
        let t = Arc::new(trie(&TEXTS, &[0]));
        let mut c = JsonConstraint::new(t.clone(), Top::Object);
        // At the start only `{` and `{"` begin an object.
        assert_eq!(allowed(&mut c, TEXTS.len()), vec![1, 2]);
        for tok in [2, 5, 6] {
            c.accept(tok).unwrap(); // {"a":
        }
        // A value: an object (`{`, `{"`), a string (`"`, `":` and `","` open one), a number.
        assert_eq!(allowed(&mut c, TEXTS.len()), vec![1, 2, 4, 6, 7, 8, 10]);
        // The same set by brute force over every token.
        for (i, text) in TEXTS.iter().enumerate() {
            let mut s = c.state;
            let ok = !text.is_empty() && s.feed_all(text.as_bytes());
            assert_eq!(
                ok,
                allowed(&mut c, TEXTS.len()).contains(&(i as u32)),
                "{text:?}"
            );
        }
        c.accept(8).unwrap();
        assert!(c.is_done());
        // Once done the end-of-generation token is allowed (and only whitespace besides).
        assert_eq!(allowed(&mut c, TEXTS.len()), vec![0]);
        assert!(matches!(
            c.accept(9),
            Err(ConstraintError::Rejected { token: 9, .. })
        ));
    }

    #[test]
    fn padding_ids_and_a_dead_end_are_handled() {
        let t = Arc::new(trie(&["[", "x"], &[]));
        let mut c = JsonConstraint::new(t, Top::Object);
        // Nothing in this vocabulary can start an object.
        let mut l = vec![1.0; 4];
        assert!(matches!(
            c.mask(&mut l),
            Err(ConstraintError::NoToken { .. })
        ));
        assert!(l.iter().all(|&x| x == f32::NEG_INFINITY), "padding masked");
    }
}
