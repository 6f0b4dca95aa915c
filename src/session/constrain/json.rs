//! An incremental JSON recogniser over bytes: a pushdown state machine that says, byte by byte,
//! whether the text so far is still a prefix of a valid JSON value (RFC 8259). Its state is
//! `Copy` (the container stack is a bit set), so the token mask can try a byte on a copy and
//! throw the copy away; that is what keeps masking a whole vocabulary cheap.

/// Containers nest at most this deep (one bit of the stack each); deeper is refused.
const MAX_DEPTH: u8 = 128;

/// At most this many whitespace bytes in a row are accepted: without a bound a model can emit
/// newlines for ever while staying "valid" (llama.cpp's JSON grammar bounds it too).
const MAX_WS_RUN: u8 = 24;

/// What the top-level value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Top {
    /// Any JSON value.
    Any,
    /// An object (`--format json`, OpenAI's `json_object`, like llama.cpp's JSON grammar).
    Object,
}

/// Where inside a number the text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Num {
    /// After `-`.
    Minus,
    /// After a leading `0`.
    Zero,
    /// In the integer digits (first one 1–9).
    Int,
    /// After `.`.
    Dot,
    /// In the fraction digits.
    Frac,
    /// After `e` / `E`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent digits.
    ExpDigits,
}

impl Num {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

/// Where inside a string the text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Str {
    /// Plain characters.
    Plain,
    /// After `\`.
    Escape,
    /// In a `\u` escape, this many hex digits still to come.
    Hex(u8),
    /// In a multi-byte UTF-8 character: `left` continuation bytes still to come, the next one
    /// in `lo..=hi` (narrower than 0x80..=0xBF after some lead bytes, which rules out overlong
    /// forms, surrogates and code points past U+10FFFF).
    Utf8 { left: u8, lo: u8, hi: u8 },
}

/// What comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lex {
    /// Before the top-level value.
    Start,
    /// A value (after `:` or after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closer.
    AfterValue,
    /// Inside a string (`key`: an object key, followed by `:`).
    InStr {
        key: bool,
        at: Str,
    },
    Number(Num),
    /// Inside `true` / `false` / `null`: which one (index into `LITERALS`) and bytes matched.
    Literal {
        which: u8,
        pos: u8,
    },
    /// The top-level value is complete.
    Done,
}

const LITERALS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// The recogniser's state: everything needed to continue, in a few bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JsonState {
    /// Bit `i` set: the container at depth `i` (0 = outermost) is an object, else an array.
    stack: u128,
    depth: u8,
    ws_run: u8,
    lex: Lex,
    top: Top,
}

impl JsonState {
    pub fn new(top: Top) -> JsonState {
        JsonState {
            stack: 0,
            depth: 0,
            ws_run: 0,
            lex: Lex::Start,
            top,
        }
    }

    /// Whether the top-level value is finished: nothing but whitespace may follow.
    pub fn is_done(&self) -> bool {
        self.lex == Lex::Done
    }

    /// Whether the text so far is a complete JSON value (a top-level number can always be
    /// followed by more digits, so this is not the same as [`JsonState::is_done`]).
    pub fn can_end(&self) -> bool {
        match self.lex {
            Lex::Done => true,
            Lex::Number(n) => self.depth == 0 && n.complete(),
            _ => false,
        }
    }

    /// Feeds a whole byte string; `false` (and the state unspecified) if some byte broke it.
    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(b))
    }

    /// Feeds one byte: `true` if the text is still a valid prefix, else `false` (and the state
    /// is then unspecified: feed bytes to a copy when only asking).
    pub fn feed(&mut self, b: u8) -> bool {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.lex {
            Lex::InStr { key, at } => return self.in_string(key, at, b),
            Lex::Literal { which, pos } => {
                let lit = LITERALS[which as usize];
                if lit[pos as usize] != b {
                    return false;
                }
                self.lex = if pos as usize + 1 == lit.len() {
                    self.after_value()
                } else {
                    Lex::Literal {
                        which,
                        pos: pos + 1,
                    }
                };
                return true;
            }
            Lex::Number(n) => {
                if let Some(next) = number_step(n, b) {
                    self.lex = Lex::Number(next);
                    return true;
                }
                if !n.complete() {
                    return false;
                }
                // The number ended; the byte belongs to what follows it.
                self.lex = self.after_value();
                return self.feed(b);
            }
            _ => {}
        }
        if ws {
            if self.ws_run >= MAX_WS_RUN {
                return false;
            }
            self.ws_run += 1;
            return true;
        }
        self.ws_run = 0;
        match self.lex {
            Lex::Start if self.top == Top::Object => b == b'{' && self.open(true),
            Lex::Start | Lex::Value => self.value_start(b),
            Lex::ArrayFirst => (b == b']' && self.close(false)) || self.value_start(b),
            Lex::ObjectFirst => (b == b'}' && self.close(true)) || self.key_start(b),
            Lex::Key => self.key_start(b),
            Lex::Colon => {
                if b != b':' {
                    return false;
                }
                self.lex = Lex::Value;
                true
            }
            Lex::AfterValue => {
                let in_object = self.in_object();
                match b {
                    b',' => {
                        self.lex = if in_object { Lex::Key } else { Lex::Value };
                        true
                    }
                    b'}' if in_object => self.close(true),
                    b']' if !in_object => self.close(false),
                    _ => false,
                }
            }
            // Only whitespace after the top-level value.
            Lex::Done => false,
            Lex::InStr { .. } | Lex::Literal { .. } | Lex::Number(_) => unreachable!(),
        }
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.stack >> (self.depth - 1) & 1 == 1
    }

    /// What follows a finished value: `,` or a closer inside a container, else the end.
    fn after_value(&self) -> Lex {
        if self.depth == 0 {
            Lex::Done
        } else {
            Lex::AfterValue
        }
    }

    fn open(&mut self, object: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        let bit = 1u128 << self.depth;
        if object {
            self.stack |= bit;
        } else {
            self.stack &= !bit;
        }
        self.depth += 1;
        self.lex = if object {
            Lex::ObjectFirst
        } else {
            Lex::ArrayFirst
        };
        true
    }

    fn close(&mut self, object: bool) -> bool {
        if self.depth == 0 || self.in_object() != object {
            return false;
        }
        self.depth -= 1;
        self.lex = self.after_value();
        true
    }

    fn key_start(&mut self, b: u8) -> bool {
        if b != b'"' {
            return false;
        }
        self.lex = Lex::InStr {
            key: true,
            at: Str::Plain,
        };
        true
    }

    /// The first byte of a value.
    fn value_start(&mut self, b: u8) -> bool {
        self.lex = match b {
            b'{' => return self.open(true),
            b'[' => return self.open(false),
            b'"' => Lex::InStr {
                key: false,
                at: Str::Plain,
            },
            b'-' => Lex::Number(Num::Minus),
            b'0' => Lex::Number(Num::Zero),
            b'1'..=b'9' => Lex::Number(Num::Int),
            b't' => Lex::Literal { which: 0, pos: 1 },
            b'f' => Lex::Literal { which: 1, pos: 1 },
            b'n' => Lex::Literal { which: 2, pos: 1 },
            _ => return false,
        };
        true
    }

    fn in_string(&mut self, key: bool, at: Str, b: u8) -> bool {
        let at = match at {
            Str::Plain => match b {
                b'"' => {
                    self.lex = if key { Lex::Colon } else { self.after_value() };
                    return true;
                }
                b'\\' => Str::Escape,
                0x00..=0x1f => return false,
                0x20..=0x7f => Str::Plain,
                // UTF-8 lead bytes and the range their second byte must be in (RFC 3629).
                0xc2..=0xdf => Str::Utf8 {
                    left: 1,
                    lo: 0x80,
                    hi: 0xbf,
                },
                0xe0 => Str::Utf8 {
                    left: 2,
                    lo: 0xa0,
                    hi: 0xbf,
                },
                0xed => Str::Utf8 {
                    left: 2,
                    lo: 0x80,
                    hi: 0x9f,
                },
                0xe1..=0xef => Str::Utf8 {
                    left: 2,
                    lo: 0x80,
                    hi: 0xbf,
                },
                0xf0 => Str::Utf8 {
                    left: 3,
                    lo: 0x90,
                    hi: 0xbf,
                },
                0xf1..=0xf3 => Str::Utf8 {
                    left: 3,
                    lo: 0x80,
                    hi: 0xbf,
                },
                0xf4 => Str::Utf8 {
                    left: 3,
                    lo: 0x80,
                    hi: 0x8f,
                },
                _ => return false,
            },
            Str::Escape => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Str::Plain,
                b'u' => Str::Hex(4),
                _ => return false,
            },
            Str::Hex(n) => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                if n == 1 {
                    Str::Plain
                } else {
                    Str::Hex(n - 1)
                }
            }
            Str::Utf8 { left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return false;
                }
                if left == 1 {
                    Str::Plain
                } else {
                    Str::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xbf,
                    }
                }
            }
        };
        self.lex = Lex::InStr { key, at };
        true
    }
}

/// The number state after `b`, or `None` if `b` cannot continue the number.
fn number_step(n: Num, b: u8) -> Option<Num> {
    let digit = b.is_ascii_digit();
    Some(match (n, b) {
        (Num::Minus, b'0') => Num::Zero,
        (Num::Minus, b'1'..=b'9') => Num::Int,
        (Num::Int, _) if digit => Num::Int,
        (Num::Zero | Num::Int, b'.') => Num::Dot,
        (Num::Dot | Num::Frac, _) if digit => Num::Frac,
        (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
        (Num::Exp, b'+' | b'-') => Num::ExpSign,
        (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Num::ExpDigits,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `text` is a valid prefix for a recogniser of `top`.
    fn prefix(top: Top, text: &str) -> bool {
        JsonState::new(top).feed_all(text.as_bytes())
    }

    /// Whether `text` is a whole JSON value according to the recogniser.
    fn whole(text: &str) -> bool {
        let mut s = JsonState::new(Top::Any);
        s.feed_all(text.as_bytes()) && s.can_end()
    }

    #[test]
    fn valid_prefixes_are_accepted() {
        for t in [
            "",
            "  {",
            "{\"a",
            "{\"a\"",
            "{\"a\" :",
            "{\"a\": [1, 2.5e-3, -0, tr",
            "[{\"k\": null}, {}, [], \"x\"",
            "{\"a\": {\"b\": {\"c\": fals",
        ] {
            assert!(prefix(Top::Any, t), "{t:?} is a valid prefix");
        }
    }

    #[test]
    fn invalid_prefixes_are_refused() {
        for t in [
            "}",
            "{,",
            "{\"a\" 1",
            "{\"a\":}",
            "[1,]",
            "[1 2",
            "{\"a\":1]",
            "[}",
            "tru e",
            "nul1",
            "01",
            "-a",
            "1.e5",
            "[1.]",
            "{'a': 1}",
            "{\"a\":1}x",
            "{\"a\":1},",
            "[1] [2]",
        ] {
            assert!(!prefix(Top::Any, t), "{t:?} must be refused");
            assert!(serde_json::from_str::<serde_json::Value>(t).is_err());
        }
    }

    #[test]
    fn whole_values_match_serde_json() {
        for t in [
            "{}",
            "[]",
            "0",
            "-12.5E+07",
            "\"x\"",
            "true",
            "null",
            " {\"a\" : [1, {\"b\": \"c\\n\\u00e9\"}], \"d\": false } ",
            "[[[[]]], {\"\": -0.0}]",
            "\"caf\u{e9} \u{1F600}\"",
        ] {
            assert!(whole(t), "{t:?} is a whole value");
            assert!(serde_json::from_str::<serde_json::Value>(t).is_ok());
        }
        for t in ["{\"a\":", "[1,", "\"abc", "tru", "1.", "-"] {
            assert!(prefix(Top::Any, t) && !whole(t), "{t:?} is incomplete");
            assert!(serde_json::from_str::<serde_json::Value>(t).is_err());
        }
    }

    #[test]
    fn string_escapes_and_control_bytes() {
        assert!(prefix(Top::Any, r#""a\"b\\c\/d\b\f\n\r\t\u12aF""#));
        assert!(!prefix(Top::Any, r#""\x"#));
        assert!(!prefix(Top::Any, r#""\u12g"#));
        assert!(prefix(Top::Any, r#""\u12"#));
        // An escaped quote does not end the string; a raw newline is not allowed in one.
        assert!(!JsonState::new(Top::Any).feed_all(br#""a\""#) || !whole(r#""a\""#));
        assert!(!prefix(Top::Any, "\"a\nb\""));
        assert!(!prefix(Top::Any, "\"a\tb\""));
    }

    #[test]
    fn utf8_in_strings_is_checked_byte_by_byte() {
        let mut s = JsonState::new(Top::Any);
        assert!(s.feed_all(b"\"\xe2\x82"), "a character split across tokens");
        assert!(s.feed_all(b"\xac\""), "€ completed");
        assert!(s.can_end());
        for bad in [
            &b"\"\x80"[..],    // a stray continuation byte
            b"\"\xc0\xaf",     // overlong
            b"\"\xed\xa0\x80", // a surrogate
            b"\"\xf4\x90\x80", // past U+10FFFF
            b"\"\xe2\x82\"",   // cut short
            b"\"\xff",         // never valid
        ] {
            assert!(!JsonState::new(Top::Any).feed_all(bad), "{bad:?}");
        }
    }

    #[test]
    fn numbers_end_at_the_next_structural_byte() {
        let mut s = JsonState::new(Top::Any);
        assert!(s.feed_all(b"[10"));
        assert!(s.feed(b','), "a comma ends the number");
        assert!(s.feed_all(b"-0.5e3]"));
        assert!(s.is_done());
        // A top-level number can end (at the end of generation) but is never "done".
        let mut s = JsonState::new(Top::Any);
        assert!(s.feed_all(b"42"));
        assert!(s.can_end() && !s.is_done());
        assert!(s.feed(b' ') && s.is_done());
    }

    #[test]
    fn nesting_and_done() {
        let mut s = JsonState::new(Top::Object);
        assert!(s.feed_all(b"{\"a\": [{\"b\": [[]]}]"));
        assert!(!s.is_done());
        let mut c = s;
        assert!(!c.feed(b']'), "the object must close first");
        assert!(s.feed(b'}'));
        assert!(s.is_done() && s.can_end());
        assert!(s.feed_all(b"\n "), "whitespace may follow the value");
        assert!(!s.feed(b'{'), "a second value may not");
        // Depth is bounded.
        let mut s = JsonState::new(Top::Any);
        assert!(s.feed_all(&[b'['; MAX_DEPTH as usize]));
        let mut c = s;
        assert!(!c.feed(b'['));
        assert!(s.feed_all(&[b']'; MAX_DEPTH as usize]) && s.is_done());
    }

    #[test]
    fn object_top_and_whitespace_limits() {
        assert!(!prefix(Top::Object, "["));
        assert!(!prefix(Top::Object, "\"a\""));
        assert!(prefix(Top::Object, " \n{"));
        let ws = " ".repeat(MAX_WS_RUN as usize);
        assert!(prefix(Top::Object, &format!("{{{ws}")));
        assert!(!prefix(Top::Object, &format!("{{{ws} ")));
        // The run restarts after any other byte.
        assert!(prefix(Top::Object, &format!("{{{ws}\"a\":{ws}1")));
    }
}
