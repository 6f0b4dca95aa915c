//! Stop strings over streamed text: generated text is released to the client only once it can
//! no longer turn out to be the start of a stop string, and a stop string found ends the text
//! just before it (the stop string itself is never sent, as in OpenAI's API). `run --stop` and
//! `serve`'s `stop` both use this one implementation.

/// Generated text so far, what of it was released, and the stop strings to look for.
#[derive(Debug, Default)]
pub struct StopText {
    stops: Vec<String>,
    text: String,
    sent: usize,
    /// Index into `stops` of the string that ended the text, once one did.
    matched: Option<usize>,
}

impl StopText {
    /// Empty stop strings are ignored (they would match everywhere).
    pub fn new(stops: Vec<String>) -> StopText {
        StopText {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            sent: 0,
            matched: None,
        }
    }

    /// Adds a piece of generated text. Returns the text that is safe to release now and whether
    /// a stop string was found (then the text ends before it and nothing more should be added).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.text.push_str(piece);
        // A stop string cannot start before `sent`: the longest tail that could begin one was
        // always held back, so searching the whole text finds the earliest real match.
        // The earliest match wins; at the same position the first stop string given.
        let hit = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.text.find(s.as_str()).map(|p| (p, i)))
            .min();
        if let Some((pos, i)) = hit {
            self.matched = Some(i);
            let pos = pos.max(self.sent);
            let out = self.text[self.sent..pos].to_string();
            self.text.truncate(pos);
            self.sent = pos;
            return (out, true);
        }
        let end = self.text.len() - self.held_back();
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        (out, false)
    }

    /// Releases what was held back (generation ended without a stop string).
    pub fn finish(&mut self) -> String {
        let out = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        out
    }

    /// All the text kept (released or not), without any stop string.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The stop string that ended the text, if one did.
    pub fn matched(&self) -> Option<&str> {
        self.matched.map(|i| self.stops[i].as_str())
    }

    /// Length in bytes of the longest unreleased tail that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let longest = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let room = self.text.len() - self.sent;
        for k in (1..longest.min(room + 1)).rev() {
            let start = self.text.len() - k;
            if !self.text.is_char_boundary(start) {
                continue;
            }
            let tail = &self.text[start..];
            if self.stops.iter().any(|s| s.starts_with(tail)) {
                return k;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` and returns (released text, whether a stop string ended it).
    fn feed(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut s = StopText::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (o, hit) = s.push(p);
            out.push_str(&o);
            if hit {
                assert_eq!(s.text(), out);
                return (out, true);
            }
        }
        out.push_str(&s.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_pieces_is_never_released() {
        let mut s = StopText::new(vec!["STOP".into()]);
        assert_eq!(s.push("hello ST"), ("hello ".to_string(), false));
        assert_eq!(s.push("O"), (String::new(), false));
        assert_eq!(s.matched(), None);
        assert_eq!(s.push("P and more"), (String::new(), true));
        assert_eq!(s.text(), "hello ");
        assert_eq!(s.matched(), Some("STOP"));
    }

    #[test]
    fn a_false_start_is_released_when_it_stops_matching() {
        assert_eq!(
            feed(&["STOP"], &["a ST", "ART b"]),
            ("a START b".into(), false)
        );
        assert_eq!(feed(&["\n\n"], &["x\n", "y"]), ("x\ny".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(feed(&["b", "a"], &["xxab"]), ("xx".into(), true));
        let mut s = StopText::new(vec!["b".into(), String::new(), "a".into()]);
        s.push("xxab");
        assert_eq!(s.matched(), Some("a"));
        // "abcdef" starts before "cd": it is the earlier match.
        assert_eq!(feed(&["cd", "abcdef"], &["ab", "cdef"]), ("".into(), true));
        assert_eq!(feed(&["cd", "abcdef"], &["ab", "cdx"]), ("ab".into(), true));
    }

    #[test]
    fn no_stops_or_empty_stop_release_everything_at_once() {
        let mut s = StopText::new(vec![String::new()]);
        assert_eq!(s.push("abc"), ("abc".to_string(), false));
        assert_eq!(feed(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        assert_eq!(feed(&["é!"], &["caf", "é", "!"]), ("caf".into(), true));
        assert_eq!(feed(&["éx"], &["aé", "b"]), ("aéb".into(), false));
    }
}
