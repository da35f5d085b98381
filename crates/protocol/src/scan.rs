//! One pass over a JSON envelope: the fast path of the JSON decoders (hub messages, classic
//! envelopes and server calls).
//!
//! The scanner reads the shapes these protocols send (objects of known keys, keys and names
//! without escapes, arguments kept raw) in a single pass over the bytes, allocating only the
//! strings it returns. Anything else — an escaped key, `null` where a value is optional, a
//! duplicate known key, a number it does not need to read, nesting deeper than [`MAX_DEPTH`],
//! any malformed input — is a [`Fallback`]: the caller then decodes with `serde_json` as
//! before, which gives the same result or the exact error. So this scanner only has to be
//! sound: whatever it accepts, `serde_json` accepts with the same meaning. The property tests
//! (`tests/roundtrip.rs`), the unit tests below and the fuzz oracles check that.
//!
//! The input is checked as UTF-8 once, up front (SIMD, `simdutf8`); every slice handed out is
//! then text without a second check.

/// Not read here: decode with `serde_json` instead.
#[derive(Debug)]
pub(crate) struct Fallback;

pub(crate) type Scan<T> = Result<T, Fallback>;

/// `bytes` as text, if they are UTF-8: SIMD for long inputs, the standard library's check
/// (quicker to start) for short ones.
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.len() < 256 {
        std::str::from_utf8(bytes).ok()
    } else {
        simdutf8::basic::from_utf8(bytes).ok()
    }
}

/// Sets a field read once; a key seen twice is left to serde_json (which refuses it for a
/// struct's field).
pub(crate) fn once<T>(slot: &mut Option<T>, value: T) -> Scan<()> {
    match slot {
        Some(_) => Err(Fallback),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Objects and arrays nest at most this deep (counted from the envelope). `serde_json` allows
/// 128 for typed values and any depth for raw ones; deeper input goes to it.
pub(crate) const MAX_DEPTH: usize = 100;

/// A cursor over one JSON text.
#[derive(Debug)]
pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    /// No byte below 0x20 anywhere (compact JSON has none): strings need no check for
    /// control characters, and their ends are found with `memchr2`.
    no_controls: bool,
}

/// A string token: where its contents are and whether they hold escapes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    /// The contents' start (after the opening quote).
    pub(crate) start: usize,
    /// The closing quote's position.
    pub(crate) end: usize,
    pub(crate) escaped: bool,
}

const ONES: u64 = u64::MAX / 255;
const HIGHS: u64 = ONES << 7;

/// The high bit of each byte equal to `byte` (exact for the lowest one, which is the one
/// used: a borrow may flag bytes above it).
#[inline]
fn bytes_equal(chunk: u64, byte: u8) -> u64 {
    let x = chunk ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Whether any byte of `chunk` is a quote, a backslash or a control character (exact for the
/// lowest flagged byte).
#[inline]
fn special(chunk: u64) -> u64 {
    let ctrl = chunk.wrapping_sub(ONES * 0x20) & !chunk & HIGHS;
    ctrl | quote_or_backslash(chunk)
}

#[inline]
fn quote_or_backslash(chunk: u64) -> u64 {
    bytes_equal(chunk, b'"') | bytes_equal(chunk, b'\\')
}

/// Eight bytes as a little-endian word.
#[inline]
fn word(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// The position of the first backslash in `bytes` from `from`, eight bytes at a time.
#[inline]
fn next_backslash(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let found = bytes_equal(word(chunk), b'\\');
        if found != 0 {
            return Some(from + found.trailing_zeros() as usize / 8);
        }
        from += 8;
    }
    bytes[from.min(bytes.len())..]
        .iter()
        .position(|&b| b == b'\\')
        .map(|i| from + i)
}

impl<'a> Scanner<'a> {
    /// A scanner over `bytes`, which must be UTF-8.
    pub(crate) fn new(bytes: &'a [u8]) -> Scan<Self> {
        let text = utf8(bytes).ok_or(Fallback)?;
        Ok(Self {
            text,
            bytes,
            pos: 0,
            depth: 0,
            no_controls: !has_controls(bytes),
        })
    }

    /// The text of `range`.
    pub(crate) fn text(&self, range: std::ops::Range<usize>) -> &'a str {
        &self.text[range]
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Fallback)
        }
    }

    /// Only whitespace is left.
    pub(crate) fn end(&mut self) -> Scan<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Fallback),
        }
    }

    fn nest(&mut self) -> Scan<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Fallback);
        }
        Ok(())
    }

    /// Reads an object, calling `member(key, scanner)` with the scanner at each member's
    /// value; `member` must consume the value. Keys with escapes fall back. Returns how many
    /// members there were.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&'a str, &mut Self) -> Scan<()>,
    ) -> Scan<usize> {
        self.eat(b'{')?;
        self.nest()?;
        let mut count = 0;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(count);
        }
        loop {
            let key = self.plain_str()?;
            self.eat(b':')?;
            self.ws();
            member(key, self)?;
            count += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(count);
                }
                _ => return Err(Fallback),
            }
        }
    }

    /// Reads an array, calling `item(scanner)` with the scanner at each item; `item` must
    /// consume it.
    pub(crate) fn array(&mut self, mut item: impl FnMut(&mut Self) -> Scan<()>) -> Scan<()> {
        self.eat(b'[')?;
        self.nest()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            item(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Fallback),
            }
        }
    }

    /// A string token at the cursor (after whitespace).
    pub(crate) fn string(&mut self) -> Scan<Token> {
        if self.peek() != Some(b'"') {
            return Err(Fallback);
        }
        let token = string_token(self.bytes, self.pos + 1, self.no_controls)?;
        self.pos = token.end + 1;
        Ok(token)
    }

    /// A string without escapes, as text.
    pub(crate) fn plain_str(&mut self) -> Scan<&'a str> {
        let token = self.string()?;
        if token.escaped {
            return Err(Fallback);
        }
        Ok(self.text(token.start..token.end))
    }

    /// An unsigned integer in `u64` (no sign, fraction or exponent; those fall back).
    pub(crate) fn u64(&mut self) -> Scan<u64> {
        self.ws();
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.bytes.get(self.pos) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(Fallback)?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') {
            return Err(Fallback);
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            return Err(Fallback);
        }
        Ok(n)
    }

    /// `true` or `false`.
    pub(crate) fn bool(&mut self) -> Scan<bool> {
        self.ws();
        let rest = &self.bytes[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(Fallback)
        }
    }

    /// Skips one value and returns where its text is (without surrounding whitespace).
    pub(crate) fn raw(&mut self) -> Scan<std::ops::Range<usize>> {
        self.ws();
        let start = self.pos;
        self.skip()?;
        Ok(start..self.pos)
    }

    /// Skips one value, checking it.
    pub(crate) fn skip(&mut self) -> Scan<()> {
        match self.peek().ok_or(Fallback)? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.pos += 1;
                self.nest()?;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                loop {
                    // Any key, escaped or not: its text is not needed.
                    self.string()?;
                    self.eat(b':')?;
                    self.skip()?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            self.depth -= 1;
                            return Ok(());
                        }
                        _ => return Err(Fallback),
                    }
                }
            }
            b'[' => self.array(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Fallback),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Fallback)
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as serde_json checks it.
    fn number(&mut self) -> Scan<()> {
        let b = self.bytes;
        let digits = |pos: &mut usize| {
            let start = *pos;
            while let Some(b'0'..=b'9') = b.get(*pos) {
                *pos += 1;
            }
            *pos - start
        };
        let mut pos = self.pos;
        if b.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match b.get(pos) {
            Some(b'0') => {
                pos += 1;
                if let Some(b'0'..=b'9') = b.get(pos) {
                    return Err(Fallback);
                }
            }
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return Err(Fallback),
        }
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            if digits(&mut pos) == 0 {
                return Err(Fallback);
            }
        }
        if let Some(b'e' | b'E') = b.get(pos) {
            pos += 1;
            if let Some(b'+' | b'-') = b.get(pos) {
                pos += 1;
            }
            if digits(&mut pos) == 0 {
                return Err(Fallback);
            }
        }
        self.pos = pos;
        Ok(())
    }
}

/// Whether any byte is below 0x20, eight bytes at a time.
fn has_controls(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut seen = 0;
    for chunk in words.by_ref() {
        let w = word(chunk);
        // Flags bytes below 0x20; a byte with its high bit set is never flagged.
        seen |= w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    }
    seen != 0 || words.remainder().iter().any(|&b| b < 0x20)
}

/// Finds the end of the string whose contents start at `start`: checks its escapes and (unless
/// the input has none) that it has no control characters.
fn string_token(bytes: &[u8], start: usize, no_controls: bool) -> Scan<Token> {
    let mut pos = start;
    let mut escaped = false;
    loop {
        // Eight bytes at a time to the next quote, backslash or control character.
        while let Some(chunk) = bytes.get(pos..pos + 8) {
            let chunk = word(chunk);
            let found = if no_controls {
                quote_or_backslash(chunk)
            } else {
                special(chunk)
            };
            if found != 0 {
                pos += found.trailing_zeros() as usize / 8;
                break;
            }
            pos += 8;
        }
        match *bytes.get(pos).ok_or(Fallback)? {
            b'"' => {
                return Ok(Token {
                    start,
                    end: pos,
                    escaped,
                });
            }
            b'\\' => {
                escaped = true;
                match bytes.get(pos + 1).ok_or(Fallback)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => pos += 2,
                    b'u' => {
                        let hex = bytes.get(pos + 2..pos + 6).ok_or(Fallback)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Fallback);
                        }
                        pos += 6;
                    }
                    _ => return Err(Fallback),
                }
            }
            0x00..=0x1f => return Err(Fallback),
            _ => pos += 1,
        }
    }
}

/// The text of a JSON string's contents (between its quotes) with its escapes resolved, as
/// `serde_json` reads it into a `String`; `None` for anything it would refuse (a lone
/// surrogate, a bad escape), which the caller leaves to `serde_json` for its error.
pub(crate) fn unescape(contents: &str) -> Option<String> {
    let bytes = contents.as_bytes();
    let mut out = String::with_capacity(contents.len());
    // The start of the run not copied yet, and where to look for the next backslash.
    let (mut done, mut from) = (0, 0);
    while let Some(at) = next_backslash(bytes, from) {
        // A backslash is ASCII: `at` is a character boundary.
        out.push_str(contents.get(done..at)?);
        let mut next = at + 2;
        match bytes.get(at + 1)? {
            // The escaped character is itself: it starts the next run.
            b'"' | b'\\' | b'/' => {
                (done, from) = (at + 1, at + 2);
                continue;
            }
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let unit = hex4(bytes.get(at + 2..at + 6)?)?;
                next = at + 6;
                let c = if (0xD800..0xDC00).contains(&unit) {
                    if bytes.get(next..next + 2)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(bytes.get(next + 2..next + 6)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    next += 6;
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                } else {
                    // A lone low surrogate is no char: `None`.
                    char::from_u32(unit)?
                };
                out.push(c);
            }
            _ => return None,
        }
        (done, from) = (next, next);
    }
    out.push_str(contents.get(done..)?);
    Some(out)
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some((acc << 4) | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(text: &str) -> Scan<std::ops::Range<usize>> {
        let mut s = Scanner::new(text.as_bytes())?;
        let range = s.raw()?;
        s.end()?;
        Ok(range)
    }

    #[test]
    fn values_it_accepts_serde_json_accepts_alike() {
        for text in [
            "0",
            "-0",
            "12.5e-3",
            "1E9",
            "true",
            " null ",
            r#""a\"b\\c\/\u00e9\n""#,
            r#"{"a":[1,{"b":null}],"c\u0041":"x"}"#,
            "[]",
            "{}",
            "[ 1 , 2 ]",
            "\"caf\u{e9} \u{2713}\"",
        ] {
            let range = skip_all(text).unwrap_or_else(|_| panic!("{text} should scan"));
            let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
            assert_eq!(&text[range], raw.get(), "{text}");
        }
    }

    #[test]
    fn what_serde_json_refuses_falls_back() {
        for text in [
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "tru",
            "nul",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "\"a",
            "\"\u{1}\"",
            "\"\\x\"",
            "\"\\u12\"",
            "[1 2]",
            "{1:2}",
            "1 2",
            "+1",
            "NaN",
        ] {
            assert!(skip_all(text).is_err(), "{text} should fall back");
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_err(),
                "serde_json refuses {text} too"
            );
        }
        // Deeper than MAX_DEPTH: serde_json decides.
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(skip_all(&deep).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(skip_all(&ok).is_ok());
    }

    #[test]
    fn strings_are_found_eight_bytes_at_a_time_and_exactly() {
        for len in 0..40 {
            for special in ["\"", "\\n", "\u{1f}", "\u{e9}"] {
                let text = format!("\"{}{special}{}\"", "x".repeat(len), "y".repeat(len % 9));
                let ours = skip_all(&text).is_ok();
                let theirs = serde_json::from_str::<String>(&text).is_ok();
                assert_eq!(ours, theirs, "{text:?}");
            }
        }
    }

    #[test]
    fn control_characters_are_found_anywhere() {
        for len in 0..40 {
            let clean: Vec<u8> = (0..len).map(|i| b" ~\x7f\xc3\xa9\x80"[i % 6]).collect();
            assert!(!has_controls(&clean), "{clean:?}");
            for at in 0..len {
                for control in [0x00, 0x09, 0x1f] {
                    let mut dirty = clean.clone();
                    dirty[at] = control;
                    assert!(has_controls(&dirty), "{dirty:?}");
                }
            }
        }
    }

    #[test]
    fn unescaping_matches_serde_json() {
        for contents in [
            "plain",
            r#"a\"b"#,
            r"\\\/\b\f\n\r\t",
            r"\u00e9\u2713",
            r"\ud83d\ude00 smile",
            r"tail\n",
            "caf\u{e9} \u{2713} \\\"q\\\"",
        ] {
            let quoted = format!("\"{contents}\"");
            let expected: String = serde_json::from_str(&quoted).unwrap();
            assert_eq!(
                unescape(contents).as_deref(),
                Some(&*expected),
                "{contents}"
            );
        }
        for lone in [r"\ud83d", r"\ud83d\u0041", r"\ude00", r"\ud83dx"] {
            assert_eq!(unescape(lone), None, "{lone}");
            assert!(serde_json::from_str::<String>(&format!("\"{lone}\"")).is_err());
        }
    }

    #[test]
    fn numbers_read_as_u64_only_when_plain() {
        let read = |t: &str| Scanner::new(t.as_bytes()).unwrap().u64().ok();
        assert_eq!(read("42"), Some(42));
        assert_eq!(read("0"), Some(0));
        assert_eq!(read("18446744073709551615"), Some(u64::MAX));
        for t in ["18446744073709551616", "01", "1.0", "1e2", "-1", "x"] {
            assert_eq!(read(t), None, "{t}");
        }
    }
}
