//! Math answer checking (GSM8K and MATH style): is the final answer of a
//! response equal to the reference answer?
//!
//! A response is scored in three steps: its final answer is **extracted**
//! ([`extract`]), the extracted answer and the reference answer are brought
//! to a **canonical form** ([`canonical`]), and the response is **correct**
//! when both canonical forms exist and are equal ([`check`]).
//!
//! # Extraction
//!
//! [`AnswerStyle::Gsm8k`]: GSM8K calculator annotations (`<<48/2=24>>`) are
//! removed first, then the first rule that applies gives the answer:
//!
//! 1. **`####` marker.** If the response contains `####`, the answer is the
//!    rest of the line after the *last* `####`, trimmed (and stripped of
//!    surrounding markdown `**`). When that line is a number followed by
//!    nothing, by `.`/`!`, or by a space and a word (`#### 72 apples`), the
//!    answer is just the number. The marker is final: if the rest of its line
//!    is empty there is no answer, and the later rules are not tried (so a
//!    markdown heading `#### Step 3` at the end of a response is read as the
//!    answer `Step 3`).
//! 2. **Answer phrase.** Else the number right after the last `answer is` or
//!    `answer:` (ASCII case-insensitive, so `The answer is`, `Final Answer:`),
//!    skipping spaces, `:` and `*`. A phrase not followed by a number is
//!    ignored.
//! 3. **Last number** in the response.
//!
//! A *number* in these rules is an optional `$` or `\$`, an optional sign
//! (`-`, `+`, or the Unicode minus `−`), then digits, `.`, `,` and `/`
//! starting with a digit (or `.` and a digit), without trailing `.`, `,` or
//! `/`, and an optional `%` right after it: `$1,234.50`, `-3/4`, `.5`,
//! `50%`. A sign directly after a letter or digit is a hyphen, not a sign
//! (`pages 10-12` ends with the number `12`).
//!
//! [`AnswerStyle::Boxed`]: the contents of the *last* `\boxed{...}` or
//! `\fbox{...}`, braces balanced (nested braces are fine; `\{` and `\}` are
//! escaped and do not count), trimmed. `\boxed 5` (no braces) gives the
//! token up to the next whitespace or `$`. There is no fallback: without a
//! box, or when the last box is never closed, there is no answer.
//!
//! [`AnswerStyle::Auto`]: `Boxed` if the response has a `\boxed` or `\fbox`
//! command, else `Gsm8k`.
//!
//! # Canonical form
//!
//! An answer is normalised in this order:
//!
//! 1. Unbalanced braces (`{1`, `}`) make it malformed.
//! 2. Surrounding math delimiters are removed, repeatedly: `$...$`,
//!    `$$...$$`, `\(...\)`, `\[...\]` (a `.` after the closing one too).
//! 3. Replacements: `\dfrac` and `\tfrac` → `\frac`; `{,}` → `,`; `\%` → `%`;
//!    `\$` → `$`; `−` → `-`; removed: `\!` `\,` `\;` `\:` `\ ` (so
//!    `1\,000` is `1000`), `\displaystyle`, `^\circ`, `^{\circ}`, `°`,
//!    `\left` and `\right` (not `\leftarrow`).
//! 4. Whitespace is removed, except that one space is kept between two
//!    digits (`1 1/2` stays `1 1/2`, it is not `11/2`) and between a command
//!    and a letter (`\pi r`).
//! 5. Shorthand arguments get braces: `\frac34` → `\frac{3}{4}`,
//!    `\frac{3}4` → `\frac{3}{4}`, `\sqrt3` and `\sqrt 3` → `\sqrt{3}`,
//!    `\sqrt\pi` → `\sqrt{\pi}`.
//! 6. An answer that is entirely `\text{...}` (or `\textbf`, `\textrm`,
//!    `\mathrm`, `\mbox`) is unwrapped: `\text{(B)}` → `(B)`.
//! 7. One trailing `.` is removed, then one trailing `%` (so `50%` and
//!    `50\%` equal `50`, not `0.5`).
//! 8. A single-letter assignment is dropped: `x=5` → `5`, `y=2x+1` → `2x+1`.
//!
//! The result is then read as a **number** when it is one of:
//!
//! - a decimal: optional `$`, optional sign, optional `$` (`$5`, `-$5`,
//!   `+5`), digits with an optional fraction (`2.50`, `.5`, `007`);
//!   thousands separators must group correctly (`1,234,567`);
//! - a fraction of two such decimals, unsigned below the bar: `3/4`,
//!   `-3/4`, `1.5/2`;
//! - `\frac{A}{B}` with decimals `A` and `B`, optionally signed outside or
//!   inside: `-\frac{3}{4}`, `\frac{-3}{4}`;
//! - any of these followed by a unit starting with `\text{`, `\mbox{` or
//!   `\mathrm{`: `5\text{ cm}`, `5\text{ cm}^2` are `5`.
//!
//! Numbers are exact rationals (`i128` numerator and denominator, reduced):
//! `0.75`, `3/4`, `\frac{3}{4}` and `\frac{6}{8}` are the same number, while
//! `0.333` is not `1/3`. Scientific notation and mixed numbers (`1 1/2`,
//! `1\frac{1}{2}`) are not numbers; they are compared as text.
//!
//! **Malformed** answers have no canonical form (and are never correct):
//! empty answers, unbalanced braces, division by zero (`1/0`,
//! `\frac{1}{0}`), and strings made only of digits, `.`, `,`, `/`, `+`, `-`
//! and `$` that are not a valid number, such as `1..2`, `--3`, `5..` (one trailing
//! period is removed, the second is not) or `3/-4`, with one exception: a
//! string with a comma that is not a correctly grouped number is **text**,
//! because MATH answers list values that way (`-2, 3`), so `1,23` is
//! neither `123` nor `1.23` but the text `1,23`.
//!
//! Everything else is **text**: `\sqrt{2}`, `(1,2)`, `x^2+1`, `\pi`, `(C)`,
//! compared as the normalised string. There is no algebra: `x^2+1` is not
//! `1+x^2`, `2\sqrt{3}` is not `\sqrt{12}`, `(C)` is not `C`. A number too
//! large for `i128` is also text (with `$`, `+` and `,` removed), so it still
//! equals itself written with or without thousands separators.
//!
//! # Correctness
//!
//! The reference answer is the whole reference (trimmed), unless the
//! reference contains `####`, `\boxed` or `\fbox`: then it is a full GSM8K or
//! MATH solution and its answer is extracted with [`AnswerStyle::Auto`].
//! A response is correct when an answer was extracted from it, both it and
//! the reference answer have a canonical form, and the two are equal: two
//! numbers when they are the same rational, two texts when they are the same
//! string. A number never equals a text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the final answer is marked in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerStyle {
    /// `#### 42`, else "the answer is 42", else the last number.
    Gsm8k,
    /// The last `\boxed{...}` or `\fbox{...}`; nothing else.
    Boxed,
    /// `Boxed` when the response has a box, else `Gsm8k`.
    Auto,
}

/// An exact fraction: `i128` numerator and denominator, reduced, with a
/// positive denominator, so equal values are equal structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    num: i128,
    den: i128,
}

impl Rational {
    /// `num / den` reduced; None when `den` is zero or the reduced value does
    /// not fit in `i128`.
    pub fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs());
        let (n, d) = (num.unsigned_abs() / g, den.unsigned_abs() / g);
        let negative = (num < 0) != (den < 0) && n != 0;
        let num = if negative {
            0i128.checked_sub_unsigned(n)?
        } else {
            i128::try_from(n).ok()?
        };
        Some(Self {
            num,
            den: i128::try_from(d).ok()?,
        })
    }

    /// The integer `n`.
    pub fn integer(n: i128) -> Self {
        Self { num: n, den: 1 }
    }

    /// The numerator (its sign is the sign of the value).
    pub fn numer(self) -> i128 {
        self.num
    }

    /// The denominator, always positive.
    pub fn denom(self) -> i128 {
        self.den
    }

    /// `self / other`; None on overflow (the caller rejects a zero divisor).
    fn checked_div(self, other: Self) -> Option<Self> {
        let g1 = i128::try_from(gcd(self.num.unsigned_abs(), other.num.unsigned_abs())).ok()?;
        let g2 = i128::try_from(gcd(self.den.unsigned_abs(), other.den.unsigned_abs())).ok()?;
        let num = (self.num / g1).checked_mul(other.den / g2)?;
        let den = (self.den / g2).checked_mul(other.num / g1)?;
        Self::new(num, den)
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// A canonical form for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canonical {
    /// An exact number.
    Number(Rational),
    /// A normalised string (see the module documentation).
    Text(String),
}

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The answer extracted from the response, as written (trimmed).
    pub extracted: Option<String>,
    /// Whether it equals the reference answer.
    pub correct: bool,
}

/// Checks `response` against `reference` (a bare answer like `42` or
/// `\frac{1}{2}`, or a full GSM8K / MATH solution with a `####` or `\boxed`
/// marker); see the module documentation for the rules.
pub fn check(response: &str, reference: &str, style: AnswerStyle) -> Verdict {
    let extracted = extract(response, style);
    let got = extracted.as_deref().and_then(canonical);
    let want = reference_answer(reference).as_deref().and_then(canonical);
    let correct = matches!((got, want), (Some(got), Some(want)) if got == want);
    Verdict { extracted, correct }
}

/// The answer of a reference: extracted with [`AnswerStyle::Auto`] when it
/// contains `####`, `\boxed` or `\fbox`, else the whole reference, trimmed.
pub fn reference_answer(reference: &str) -> Option<String> {
    if reference.contains("####") || last_box(reference).is_some() {
        extract(reference, AnswerStyle::Auto)
    } else {
        non_empty(reference)
    }
}

// ---------------------------------------------------------------- extraction

const BOX_COMMANDS: [&str; 2] = ["\\boxed", "\\fbox"];
const ANSWER_PHRASES: [&str; 2] = ["answer is", "answer:"];
const SIGNS: [&str; 3] = ["-", "+", "−"];

/// The answer a response gives, as written (trimmed), or None.
pub fn extract(response: &str, style: AnswerStyle) -> Option<String> {
    match style {
        AnswerStyle::Boxed => extract_boxed(response),
        AnswerStyle::Gsm8k => extract_gsm8k(response),
        AnswerStyle::Auto if last_box(response).is_some() => extract_boxed(response),
        AnswerStyle::Auto => extract_gsm8k(response),
    }
}

fn extract_boxed(response: &str) -> Option<String> {
    let after = last_box(response)?.trim_start();
    if after.starts_with('{') {
        non_empty(braced_group(after)?.0)
    } else {
        let end = after
            .find(|c: char| c.is_whitespace() || c == '$')
            .unwrap_or(after.len());
        non_empty(&after[..end])
    }
}

/// The text after the last box command (`\boxed` or `\fbox` not followed by
/// a letter).
fn last_box(s: &str) -> Option<&str> {
    BOX_COMMANDS
        .iter()
        .filter_map(|cmd| {
            s.match_indices(cmd)
                .map(|(i, _)| (i, &s[i + cmd.len()..]))
                .filter(|(_, after)| !after.starts_with(|c: char| c.is_ascii_alphabetic()))
                .last()
        })
        .max_by_key(|(i, _)| *i)
        .map(|(_, after)| after)
}

fn extract_gsm8k(response: &str) -> Option<String> {
    let text = strip_annotations(response);
    if let Some((_, after)) = text.rsplit_once("####") {
        return marker_answer(after.lines().next().unwrap_or(""));
    }
    phrase_answer(&text)
        .or_else(|| last_number(&text))
        .and_then(non_empty)
}

/// Removes GSM8K calculator annotations `<<...>>`.
fn strip_annotations(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("<<") {
        let Some(close) = rest[open..].find(">>") else {
            break;
        };
        out.push_str(&rest[..open]);
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// The answer on the line after a `####` marker.
fn marker_answer(line: &str) -> Option<String> {
    let line = line.trim().trim_matches('*').trim();
    let answer = match number_end(line, 0) {
        Some(end) if is_trailer(&line[end..]) => &line[..end],
        _ => line,
    };
    non_empty(answer)
}

/// Whether `rest`, after a number, can be dropped: nothing, sentence
/// punctuation, or a space and a word (`72 apples`).
fn is_trailer(rest: &str) -> bool {
    let word = rest.trim_start();
    rest.chars().all(|c| matches!(c, '.' | '!'))
        || (word.len() < rest.len() && word.starts_with(|c: char| c.is_alphabetic()))
}

/// The number right after the last "answer is" / "answer:".
fn phrase_answer(s: &str) -> Option<&str> {
    // ASCII lowercasing keeps byte offsets, so indices carry over to `s`.
    let lower = s.to_ascii_lowercase();
    let end = ANSWER_PHRASES
        .iter()
        .filter_map(|p| lower.rfind(p).map(|i| i + p.len()))
        .max()?;
    let tail = &s[end..];
    let skipped = tail.len()
        - tail
            .trim_start_matches(|c: char| c.is_whitespace() || c == ':' || c == '*')
            .len();
    let start = end + skipped;
    number_end(s, start).map(|stop| &s[start..stop])
}

/// The last number in `s`.
fn last_number(s: &str) -> Option<&str> {
    let mut last = None;
    let mut i = 0;
    while i < s.len() {
        match number_end(s, i).filter(|_| sign_allowed(s, i)) {
            Some(end) => {
                last = Some(&s[i..end]);
                i = end;
            }
            None => i += s[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    last
}

/// A sign at `i` counts only when it does not follow a letter or digit.
fn sign_allowed(s: &str, i: usize) -> bool {
    let signed = SIGNS.iter().any(|sign| s[i..].starts_with(sign));
    !signed
        || !s[..i]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
}

/// The end (byte index) of a number token starting exactly at `start`.
fn number_end(s: &str, start: usize) -> Option<usize> {
    let rest = s.get(start..)?;
    let (currency, rest) = strip_currency(rest);
    let rest = SIGNS
        .iter()
        .find_map(|sign| rest.strip_prefix(sign))
        .unwrap_or(rest);
    let rest = if currency {
        rest
    } else {
        strip_currency(rest).1
    };
    let mut end = s.len() - rest.len() + number_body_len(rest)?;
    if s[end..].starts_with('%') {
        end += 1;
    }
    Some(end)
}

fn strip_currency(s: &str) -> (bool, &str) {
    match s.strip_prefix("\\$").or_else(|| s.strip_prefix('$')) {
        Some(rest) => (true, rest),
        None => (false, s),
    }
}

/// The length of the digits, `.`, `,` and `/` at the start of `s`, without
/// trailing punctuation; None unless it starts with a digit or `.digit`.
fn number_body_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !(digit_at(0) || (b.first() == Some(&b'.') && digit_at(1))) {
        return None;
    }
    let mut len = b
        .iter()
        .take_while(|&&c| c.is_ascii_digit() || matches!(c, b'.' | b',' | b'/'))
        .count();
    while matches!(b[len - 1], b'.' | b',' | b'/') {
        len -= 1;
    }
    Some(len)
}

/// `s` trimmed, or None when that is empty.
fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Splits a brace group off the front of `s` (which must start with `{`):
/// its contents and the text after it. Escaped `\{`, `\}` do not count.
fn braced_group(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('{')?;
    let mut depth = 1usize;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&body[..i], &body[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

// ------------------------------------------------------------- normalisation

const DELIMITERS: [(&str, &str); 4] = [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")];
const REPLACEMENTS: [(&str, &str); 15] = [
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("{,}", ","),
    ("\\!", ""),
    ("\\,", ""),
    ("\\;", ""),
    ("\\:", ""),
    ("\\ ", ""),
    ("\\displaystyle", ""),
    ("^{\\circ}", ""),
    ("^\\circ", ""),
    ("°", ""),
    ("\\%", "%"),
    ("\\$", "$"),
    ("−", "-"),
];
const TEXT_COMMANDS: [&str; 5] = ["\\text", "\\textbf", "\\textrm", "\\mathrm", "\\mbox"];
const UNIT_COMMANDS: [&str; 3] = ["\\text{", "\\mbox{", "\\mathrm{"];
/// How deep `\frac` / `\sqrt` arguments are normalised.
const MAX_DEPTH: usize = 32;

/// Canonical form of an answer string; None when it is empty or malformed
/// (see the module documentation).
pub fn canonical(answer: &str) -> Option<Canonical> {
    let s = normalise(answer)?;
    match parse_number(&s) {
        Ok(value) => Some(Canonical::Number(value)),
        Err(Bad::Malformed) => None,
        Err(Bad::Overflow) => Some(Canonical::Text(s.replace(['$', '+', ','], ""))),
        Err(Bad::NotNumber) => {
            Some(number_with_unit(&s).map_or(Canonical::Text(s), Canonical::Number))
        }
    }
}

/// Steps 1 to 8 of the normalisation; None when malformed or empty.
fn normalise(answer: &str) -> Option<String> {
    if !braces_balanced(answer) {
        return None;
    }
    let mut s = strip_delimiters(answer).to_string();
    for (from, to) in REPLACEMENTS {
        s = s.replace(from, to);
    }
    let s = remove_command(&remove_command(&s, "\\left"), "\\right");
    let s = fix_shorthand(&collapse_whitespace(&s), 0);
    let s = unwrap_text(&s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let s = s.strip_suffix('%').unwrap_or(s);
    let s = strip_assignment(s);
    (!s.is_empty()).then(|| s.to_string())
}

fn braces_balanced(s: &str) -> bool {
    let mut depth = 0usize;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' => depth += 1,
            '}' if depth == 0 => return false,
            '}' => depth -= 1,
            _ => {}
        }
    }
    depth == 0
}

fn strip_delimiters(mut s: &str) -> &str {
    loop {
        s = s.trim();
        let closed = |t: &&str| DELIMITERS.iter().any(|(_, close)| t.ends_with(close));
        let t = s.strip_suffix('.').filter(closed).unwrap_or(s);
        match DELIMITERS
            .iter()
            .find_map(|(open, close)| t.strip_prefix(open)?.strip_suffix(close))
        {
            Some(inner) => s = inner,
            None => return s,
        }
    }
}

/// Removes the command `name` wherever it is not followed by a letter.
fn remove_command(s: &str, name: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(name) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + name.len()..];
        if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push_str(name);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Removes whitespace, keeping one space between two digits and between a
/// command and a letter.
fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending = false;
    for c in s.chars() {
        if c.is_whitespace() {
            pending = true;
            continue;
        }
        if pending && keeps_space(&out, c) {
            out.push(' ');
        }
        pending = false;
        out.push(c);
    }
    out
}

fn keeps_space(before: &str, next: char) -> bool {
    let Some(prev) = before.chars().next_back() else {
        return false;
    };
    let stem = before.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let after_command = stem.len() < before.len() && stem.ends_with('\\');
    (prev.is_ascii_digit() && next.is_ascii_digit())
        || (after_command && next.is_ascii_alphabetic())
}

/// Braces the shorthand arguments of `\frac` and `\sqrt`.
fn fix_shorthand(s: &str, depth: usize) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let (command, after) = split_command(&rest[pos..]);
        out.push_str(command);
        rest = after;
        let arity = match command {
            "\\frac" => 2,
            "\\sqrt" => 1,
            _ => 0,
        };
        if arity == 1 {
            rest = copy_index(rest, &mut out);
        }
        for _ in 0..arity {
            let Some((arg, after)) = take_arg(rest, depth) else {
                break;
            };
            out.push_str(&arg);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Splits `\name` (letters) or `\c` (any one other char) off the front of
/// `s`, which starts with a backslash.
fn split_command(s: &str) -> (&str, &str) {
    let tail = &s[1..];
    let letters = tail
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(tail.len());
    let end = if letters > 0 {
        1 + letters
    } else {
        1 + tail.chars().next().map_or(0, char::len_utf8)
    };
    s.split_at(end)
}

/// Copies the optional `[n]` of `\sqrt[n]{x}`.
fn copy_index<'a>(s: &'a str, out: &mut String) -> &'a str {
    match s.strip_prefix('[').and_then(|t| t.find(']')) {
        Some(close) => {
            out.push_str(&s[..close + 2]);
            &s[close + 2..]
        }
        None => s,
    }
}

/// The next argument of a command, braced, and the text after it.
fn take_arg(s: &str, depth: usize) -> Option<(String, &str)> {
    let s = s.strip_prefix(' ').unwrap_or(s);
    if s.starts_with('{') {
        let (inner, after) = braced_group(s)?;
        let inner = if depth < MAX_DEPTH {
            fix_shorthand(inner, depth + 1)
        } else {
            inner.to_string()
        };
        return Some((format!("{{{inner}}}"), after));
    }
    let token = match s.chars().next()? {
        '}' => return None,
        '\\' => split_command(s).0,
        c => &s[..c.len_utf8()],
    };
    Some((format!("{{{token}}}"), &s[token.len()..]))
}

/// `\text{X}` (or another text command) around the whole answer → `X`.
fn unwrap_text(mut s: &str) -> &str {
    while let Some(inner) = TEXT_COMMANDS.iter().find_map(|cmd| {
        let (inner, after) = braced_group(s.strip_prefix(cmd)?)?;
        after.is_empty().then_some(inner)
    }) {
        s = inner;
    }
    s
}

/// `x=5` → `5` (a single ASCII letter on the left).
fn strip_assignment(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
        &s[2..]
    } else {
        s
    }
}

// ------------------------------------------------------------------- numbers

/// Why a normalised answer is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    /// Not number-like: compare as text.
    NotNumber,
    /// Number-like but invalid: no canonical form.
    Malformed,
    /// A valid number too large for `i128`: compare as text.
    Overflow,
}

fn parse_number(s: &str) -> Result<Rational, Bad> {
    if s.contains("\\frac") {
        parse_frac(s)
    } else {
        parse_plain(s)
    }
}

/// `[sign]\frac{A}{B}` with plain numbers `A` and `B`.
fn parse_frac(s: &str) -> Result<Rational, Bad> {
    let (negative, rest) = split_sign(s);
    let rest = rest.strip_prefix("\\frac").ok_or(Bad::NotNumber)?;
    let (top, rest) = braced_group(rest).ok_or(Bad::NotNumber)?;
    let (bottom, rest) = braced_group(rest).ok_or(Bad::NotNumber)?;
    if !rest.is_empty() {
        return Err(Bad::NotNumber);
    }
    let value = divide(parse_plain(top)?, parse_plain(bottom)?)?;
    apply_sign(negative, value)
}

/// A decimal or a fraction of two decimals, with `$` and sign.
fn parse_plain(s: &str) -> Result<Rational, Bad> {
    let numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.,/$".contains(&b));
    if !numeric || !s.bytes().any(|b| b.is_ascii_digit()) {
        return Err(Bad::NotNumber);
    }
    match signed_fraction(s) {
        Err(Bad::Malformed) if s.contains(',') => Err(Bad::NotNumber),
        other => other,
    }
}

fn signed_fraction(s: &str) -> Result<Rational, Bad> {
    let (s, currency) = match s.strip_prefix('$') {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let (negative, body) = split_sign(s);
    let body = if currency {
        body
    } else {
        body.strip_prefix('$').unwrap_or(body)
    };
    let value = match body.split_once('/') {
        Some((top, bottom)) => divide(decimal(top)?, decimal(bottom)?)?,
        None => decimal(body)?,
    };
    apply_sign(negative, value)
}

/// One leading `-` (true) or `+` off `s`.
fn split_sign(s: &str) -> (bool, &str) {
    match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    }
}

fn apply_sign(negative: bool, value: Rational) -> Result<Rational, Bad> {
    if !negative {
        return Ok(value);
    }
    let num = value.num.checked_neg().ok_or(Bad::Overflow)?;
    Ok(Rational {
        num,
        den: value.den,
    })
}

fn divide(top: Rational, bottom: Rational) -> Result<Rational, Bad> {
    if bottom.num == 0 {
        return Err(Bad::Malformed);
    }
    top.checked_div(bottom).ok_or(Bad::Overflow)
}

/// An unsigned decimal: `12`, `1,234.5`, `.5`, `007`.
fn decimal(s: &str) -> Result<Rational, Bad> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (s, None),
    };
    let int = ungroup(int)?;
    let frac = frac.unwrap_or("");
    let bad_frac =
        s.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()));
    if bad_frac || (int.is_empty() && frac.is_empty()) {
        return Err(Bad::Malformed);
    }
    decimal_value(&int, frac.trim_end_matches('0')).ok_or(Bad::Overflow)
}

/// The integer part's digits without thousands separators; the groups after
/// the first must have three digits, the first one to three.
fn ungroup(int: &str) -> Result<String, Bad> {
    let groups: Vec<&str> = int.split(',').collect();
    let digits = groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    let grouped = groups.len() == 1
        || ((1..=3).contains(&groups[0].len()) && groups[1..].iter().all(|g| g.len() == 3));
    if digits && grouped {
        Ok(groups.concat())
    } else {
        Err(Bad::Malformed)
    }
}

fn decimal_value(int: &str, frac: &str) -> Option<Rational> {
    let mut num: i128 = 0;
    for d in int.bytes().chain(frac.bytes()) {
        num = num.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
    }
    let den = 10i128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    Rational::new(num, den)
}

/// A number followed by a unit: `5\text{ cm}` → 5.
fn number_with_unit(s: &str) -> Option<Rational> {
    let cut = UNIT_COMMANDS.iter().filter_map(|m| s.find(m)).min()?;
    if cut == 0 {
        return None;
    }
    parse_number(&s[..cut]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_table(style: AnswerStyle, rows: &[(&str, &str, bool)]) {
        let failures: Vec<String> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, &(response, reference, expected))| {
                let verdict = check(response, reference, style);
                (verdict.correct != expected).then(|| {
                    format!(
                        "row {i}: response {response:?}, reference {reference:?}: expected {expected}, got {verdict:?} \
                         (canonical response {:?}, reference {:?})",
                        verdict.extracted.as_deref().and_then(canonical),
                        reference_answer(reference).as_deref().and_then(canonical),
                    )
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n")
        );
    }

    const NATALIA: &str = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n\
                           Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72";

    #[test]
    fn math_gsm8k_table() {
        let rows: &[(&str, &str, bool)] = &[
            // Equal, in different forms.
            (NATALIA, "72", true),
            (NATALIA, NATALIA, true),
            (
                "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n#### 10",
                "Weng earns 0.2 * 50 = $<<0.2*50=10>>10.\n#### 10",
                true,
            ),
            ("#### 72", "72.0", true),
            ("#### 72.00", "72", true),
            ("#### 072", "72", true),
            ("#### +72", "72", true),
            ("#### $72", "72", true),
            ("#### \\$72", "72", true),
            ("#### 72 clips", "72", true),
            ("#### 18 dollars per day", "18", true),
            ("#### 72.", "72", true),
            ("#### **72**", "72", true),
            ("#### 1,234,567", "1234567", true),
            ("#### 1234567", "1,234,567", true),
            ("#### 1,000", "1000", true),
            ("#### 42.1", "42.10", true),
            ("#### −5", "-5", true),
            ("#### -5", "−5", true),
            ("#### -0", "0", true),
            ("#### 0.75", "3/4", true),
            ("#### 3/4", "0.75", true),
            ("#### -3/4", "-0.75", true),
            ("#### 1/2", "0.50", true),
            ("#### .5", "0.5", true),
            ("#### 2.50", "5/2", true),
            ("#### 50%", "50", true),
            ("#### 7\n", "#### 7", true),
            ("#### 5\t", "5", true),
            ("<<3*4=12>>12 #### 12", "12", true),
            ("#### 72\nThe answer is 73", "72", true),
            ("#### 5\nsome text\n#### 7", "7", true),
            ("The answer is 72.", "72", true),
            ("so THE ANSWER IS $1,200.", "1200", true),
            ("Final answer: 18", "18", true),
            (
                "The answer is 5. Wait, I made an error. The answer is 6.",
                "6",
                true,
            ),
            ("The answer is 0.5", "1/2", true),
            ("The answer is \\boxed{72}", "72", true),
            (
                "She has 3 apples and buys 4 more, so 3 + 4 = 7 apples.",
                "7",
                true,
            ),
            ("She earns 12 * 5 = <<12*5=60>>60 dollars.", "60", true),
            ("Janet pays $18 every day.", "18", true),
            ("The temperature went from 3 to -4 degrees", "-4", true),
            ("Read pages 10-12", "12", true),
            (
                "#### 12345678901234567890123456789012345678901234567890",
                "12345678901234567890123456789012345678901234567890",
                true,
            ),
            // Unequal: close numbers, signs, wrong marker.
            ("#### 71", NATALIA, false),
            ("#### 42", "42.1", false),
            ("#### 42", "#### 42.1", false),
            ("#### 1,234", "1234.5", false),
            ("#### 1,23", "123", false),
            ("#### -5", "5", false),
            ("#### 3/4", "-3/4", false),
            ("#### 5\nsome text\n#### 7", "5", false),
            ("The answer is 5. Wait... the answer is 6.", "5", false),
            ("3 + 4 = 7, minus 2 gives 5", "7", false),
            ("She earns 12 * 5 = <<12*5=60>>", "60", false),
            ("Read pages 10-12", "-12", false),
            ("#### 2x", "2", false),
            (
                "#### 12345678901234567890123456789012345678901234567890",
                "12345678901234567890123456789012345678901234567891",
                false,
            ),
            // Malformed or missing answers, or references.
            ("The total is 72.\n####", "72", false),
            ("####   \n72", "72", false),
            ("#### abc", "72", false),
            ("#### 1/0", "1", false),
            ("#### 1..2", "1", false),
            ("#### --3", "-3", false),
            ("#### {72", "72", false),
            ("I don't know.", "7", false),
            ("", "7", false),
            ("#### 5", "abc", false),
            ("#### 5", "", false),
            ("#### 5", "5}", false),
        ];
        assert!(rows.len() >= 45);
        run_table(AnswerStyle::Gsm8k, rows);
    }

    #[test]
    fn math_boxed_table() {
        let rows: &[(&str, &str, bool)] = &[
            // Equal numbers, in different forms.
            ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", true),
            ("\\boxed{\\frac{1}{2}}", "0.5", true),
            ("\\boxed{\\frac12}", "\\frac{1}{2}", true),
            ("\\boxed{\\dfrac{3}{4}}", "\\frac34", true),
            ("\\boxed{\\tfrac{3}4}", "0.75", true),
            ("\\boxed{-\\frac{3}{4}}", "\\frac{-3}{4}", true),
            ("\\boxed{-\\frac{3}{4}}", "−0.75", true),
            ("\\boxed{\\frac{2}{6}}", "\\frac{1}{3}", true),
            ("\\boxed{\\frac{1}{2}}", "1/2.", true),
            ("\\boxed{007}", "7", true),
            ("\\boxed{12,345}", "12345", true),
            ("\\boxed{1\\,000}", "1000", true),
            ("\\boxed{50\\%}", "50", true),
            ("\\boxed{30^\\circ}", "30", true),
            ("\\boxed{30^{\\circ}}", "30^\\circ", true),
            ("\\boxed{\\$18.90}", "18.9", true),
            ("\\boxed{\\$1{,}000}", "1000", true),
            ("\\boxed{5\\text{ cm}}", "5", true),
            ("\\boxed{5\\text{ cm}^2}", "5", true),
            ("\\boxed{\\frac{1}{2}\\text{ inches}}", "0.5", true),
            ("\\boxed{x = 5}", "5", true),
            ("\\boxed{\\displaystyle \\frac{1}{2}}", "\\frac{1}{2}", true),
            ("\\boxed 5", "5", true),
            ("\\boxed 5.", "5", true),
            ("\\fbox{7}", "7", true),
            ("first \\boxed{3} then \\boxed{4}", "4", true),
            ("\\boxed{7}", "\\boxed{7}", true),
            // Equal texts.
            ("\\boxed{2\\sqrt{3}}", "2 \\sqrt 3", true),
            ("\\boxed{\\sqrt{2}}", "\\sqrt2", true),
            ("\\boxed{\\frac{\\sqrt3}{2}}", "\\frac{\\sqrt{3}}{2}", true),
            (
                "\\boxed{\\frac{\\sqrt{3}}{2}}",
                "We have $\\sin 60^\\circ = \\boxed{\\frac{\\sqrt{3}}{2}}$.",
                true,
            ),
            ("\\boxed{\\sqrt[3]{2}}", "\\sqrt[3]{2}", true),
            ("$\\boxed{\\text{(C)}}$", "(C)", true),
            ("\\boxed{\\textbf{(C)}}", "\\text{(C)}", true),
            ("\\boxed{(1, 2)}", "(1,2)", true),
            (
                "\\boxed{\\left( -\\infty, 3 \\right]}",
                "(-\\infty,3]",
                true,
            ),
            ("\\boxed{\\{1, 2\\}}", "\\{1,2\\}", true),
            ("\\boxed{x^2 + 1}", "x^2+1", true),
            ("\\boxed{\\pi}", "\\pi", true),
            ("\\boxed{2\\pi r}", "2\\pi r", true),
            ("\\boxed{-2, 3}", "-2,3", true),
            ("\\boxed{\\text{Monday}}", "Monday", true),
            ("Thus \\boxed{\\frac{a}{b}}", "\\dfrac{a}{b}", true),
            // Unequal.
            ("\\boxed{\\frac{3}{4}}", "-\\frac{3}{4}", false),
            ("\\boxed{0.333}", "\\frac{1}{3}", false),
            ("\\boxed{50\\%}", "0.5", false),
            ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", false),
            ("first \\boxed{3} then \\boxed{4}", "3", false),
            ("\\boxed{(C)}", "(B)", false),
            ("\\boxed{C}", "(C)", false),
            ("\\boxed{(-\\infty, 3)}", "(-\\infty,3]", false),
            ("\\boxed{[1,2]}", "(1,2)", false),
            ("\\boxed{1 + x^2}", "x^2+1", false),
            ("\\boxed{2\\pi r}", "2\\pir", false),
            ("\\boxed{3, -2}", "-2,3", false),
            ("\\boxed{\\text{Monday}}", "Tuesday", false),
            ("\\boxed{1\\frac{1}{2}}", "1.5", false),
            // Missing, unbalanced or malformed.
            ("The answer is 4.", "4", false),
            ("#### 5", "5", false),
            ("\\boxed{1", "1", false),
            ("\\boxed{5} and later \\boxed{6", "5", false),
            ("\\boxed{}", "", false),
            ("\\boxed{1..2}", "1", false),
            ("\\boxed{--3}", "-3", false),
            ("\\boxed{1/0}", "1/0", false),
            ("\\boxed{\\frac{1}{0}}", "0", false),
            ("\\boxed{5}", "{5", false),
        ];
        assert!(rows.len() >= 45);
        run_table(AnswerStyle::Boxed, rows);
    }

    #[test]
    fn math_auto_table() {
        let rows: &[(&str, &str, bool)] = &[
            ("\\boxed{72}", "#### 72", true),
            ("#### 72", "\\boxed{72}", true),
            ("The answer is 72", "72", true),
            ("#### 5 but \\boxed{6}", "6", true),
            ("#### 5 but \\boxed{6", "5", false),
            ("\\boxedx{5} #### 7", "7", true),
            ("no answer", "5", false),
            ("\\fbox{3}", "3", true),
            ("\\boxed{\\frac{1}{2}} then 7", "0.5", true),
            ("answer: 9", "\\boxed{9}", true),
            ("I think 12", "We get $x=\\boxed{12}$.", true),
            ("I think 12", "We get $x=\\boxed{13}$.", false),
        ];
        run_table(AnswerStyle::Auto, rows);
    }

    #[test]
    fn math_extract_cases() {
        use AnswerStyle::{Auto, Boxed, Gsm8k};
        let cases: &[(&str, AnswerStyle, Option<&str>)] = &[
            (NATALIA, Gsm8k, Some("72")),
            ("#### 72 apples", Gsm8k, Some("72")),
            ("#### abc", Gsm8k, Some("abc")),
            ("#### 2\\sqrt{3}", Gsm8k, Some("2\\sqrt{3}")),
            ("text\n####", Gsm8k, None),
            ("####   \n72", Gsm8k, None),
            ("The Answer Is: **$1,200**.", Gsm8k, Some("$1,200")),
            ("The answer is forty. 3 tries", Gsm8k, Some("3")),
            ("48/2 = <<48/2=24>>24", Gsm8k, Some("24")),
            ("x <<1+1=2>>", Gsm8k, None),
            ("from 10-12", Gsm8k, Some("12")),
            ("it is -7 degrees", Gsm8k, Some("-7")),
            ("Total: 1,234.", Gsm8k, Some("1,234")),
            ("a 50% discount", Gsm8k, Some("50%")),
            ("\\boxed{\\frac{1}{2}}", Boxed, Some("\\frac{1}{2}")),
            ("\\boxed{a} \\fbox{b}", Boxed, Some("b")),
            ("\\boxed{ {x} + \\{y\\} }", Boxed, Some("{x} + \\{y\\}")),
            ("$\\boxed 5$", Boxed, Some("5")),
            ("\\boxed {5}", Boxed, Some("5")),
            ("\\boxed{1", Boxed, None),
            ("\\boxed{ }", Boxed, None),
            ("#### 5", Boxed, None),
            ("\\boxedx{5}", Boxed, None),
            ("#### 5 \\boxed{6}", Auto, Some("6")),
            ("#### 5", Auto, Some("5")),
        ];
        for &(response, style, expected) in cases {
            assert_eq!(
                extract(response, style).as_deref(),
                expected,
                "extract({response:?}, {style:?})"
            );
        }
    }

    fn number(num: i128, den: i128) -> Option<Canonical> {
        Rational::new(num, den).map(Canonical::Number)
    }

    fn text(s: &str) -> Option<Canonical> {
        Some(Canonical::Text(s.to_string()))
    }

    #[test]
    fn math_canonical_cases() {
        let cases: &[(&str, Option<Canonical>)] = &[
            ("0.75", number(3, 4)),
            ("\\frac{6}{8}", number(3, 4)),
            ("-$1,234.50", number(-2469, 2)),
            ("$-5$", number(-5, 1)),
            ("+.5", number(1, 2)),
            ("  $$ 42 $$. ", number(42, 1)),
            ("\\(7\\)", number(7, 1)),
            ("1,23", text("1,23")),
            ("1 1/2", text("1 1/2")),
            ("\\left(1,2\\right)", text("(1,2)")),
            ("\\leftarrow", text("\\leftarrow")),
            ("\\sqrt x+\\sqrt\\pi", text("\\sqrt{x}+\\sqrt{\\pi}")),
            ("\\text{ (B) }", text("(B)")),
            ("1/0", None),
            ("\\frac{1}{0}", None),
            ("--3", None),
            ("1..2", None),
            ("3/-4", None),
            ("5..", None),
            ("{", None),
            ("}{", None),
            ("", None),
            ("  $ $ ", None),
        ];
        for (answer, expected) in cases {
            assert_eq!(&canonical(answer), expected, "canonical({answer:?})");
        }
    }

    #[test]
    fn math_overflow_is_text() {
        let digits = "1".repeat(60);
        let grouped = format!("1{}", ",111".repeat(20));
        assert_eq!(canonical(&digits), text(&digits));
        assert_eq!(canonical(&grouped), text(&"1".repeat(61)));
        assert_eq!(
            canonical(&format!("{digits}/3")),
            text(&format!("{digits}/3"))
        );
        // i128::MAX itself is a number; one more is text.
        assert_eq!(
            canonical("170141183460469231731687303715884105727"),
            number(i128::MAX, 1)
        );
        assert!(matches!(
            canonical("170141183460469231731687303715884105728"),
            Some(Canonical::Text(_))
        ));
        assert_eq!(
            canonical("-170141183460469231731687303715884105728"),
            text("-170141183460469231731687303715884105728")
        );
        // Long fractions with trailing zeros stay exact.
        assert_eq!(canonical(&format!("2.5{}", "0".repeat(100))), number(5, 2));
        assert_eq!(canonical(&format!("{}7", "0".repeat(100))), number(7, 1));
        assert!(check(&format!("#### {digits}"), &digits, AnswerStyle::Gsm8k).correct);
    }

    #[test]
    fn math_rational_basics() {
        let r = Rational::new(6, -8).unwrap();
        assert_eq!(
            (r.numer(), r.denom(), r.to_string()),
            (-3, 4, "-3/4".to_string())
        );
        assert_eq!(
            Rational::new(i128::MIN, i128::MIN),
            Some(Rational::integer(1))
        );
        assert_eq!(Rational::new(i128::MIN, -1), None);
        assert_eq!(Rational::new(1, 0), None);
        assert_eq!(Rational::integer(5).to_string(), "5");
    }

    /// xorshift64: a tiny deterministic generator, no dependency needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    const PIECES: &[&str] = &[
        "\\boxed{",
        "\\boxed ",
        "\\fbox{",
        "{",
        "}",
        "\\{",
        "\\}",
        "####",
        "#### ",
        "\n",
        " ",
        "\t",
        "1",
        "0",
        "9",
        "42",
        ",",
        ",000",
        ".",
        "..",
        "-",
        "+",
        "−",
        "/",
        "$",
        "\\$",
        "%",
        "\\%",
        "\\frac",
        "\\dfrac",
        "\\sqrt",
        "[3]",
        "\\text{",
        "\\textbf{",
        "\\left",
        "\\right",
        "(",
        ")",
        "[",
        "]",
        "^\\circ",
        "°",
        "\\",
        "\\\\",
        "<<",
        ">>",
        "=",
        "x",
        "x=",
        "The answer is ",
        "answer:",
        "**",
        "é",
        "😀",
        "中文",
        "\u{0}",
        "\u{200b}",
        "\u{a0}",
        "{,}",
        "\\,",
        "\\!",
        "\\pi",
        "abc",
        "1e5",
    ];

    fn random_string(rng: &mut Rng) -> String {
        let pieces = rng.below(16);
        let mut s: String = (0..pieces)
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect();
        if rng.below(20) == 0 {
            s.push_str(&"7".repeat(rng.below(300)));
        }
        s
    }

    fn exercise(s: &str) {
        for style in [AnswerStyle::Gsm8k, AnswerStyle::Boxed, AnswerStyle::Auto] {
            if let Some(answer) = extract(s, style) {
                assert!(
                    !answer.is_empty() && answer == answer.trim(),
                    "extract({s:?}) = {answer:?}"
                );
            }
            let _ = check(s, s, style);
            let _ = check(s, "42", style);
        }
        let _ = canonical(s);
        let _ = reference_answer(s);
    }

    #[test]
    fn math_number_forms_agree() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let p = i128::try_from(rng.below(2_000_001)).unwrap_or(0) - 1_000_000;
            let q = i128::try_from(rng.below(999)).unwrap_or(0) + 1;
            let want = number(p, q);
            let (sign, a) = (if p < 0 { "-" } else { "" }, p.abs());
            let forms = [
                format!("{p}/{q}"),
                format!("{sign}\\frac{{{a}}}{{{q}}}"),
                format!("\\dfrac{{{p}}}{{{q}}}"),
                format!("$ {sign}{a} / {q} $"),
            ];
            for form in &forms {
                assert_eq!(canonical(form), want, "canonical({form:?})");
            }
            // A decimal with k places equals the fraction over 10^k.
            let k = rng.below(4);
            let scale = 10i128.pow(u32::try_from(k).unwrap_or(0));
            let decimal = format!("{sign}{}.{:0k$}", a / scale, a % scale);
            let decimal = if k == 0 {
                decimal.trim_end_matches('.').to_string()
            } else {
                decimal
            };
            assert_eq!(
                canonical(&decimal),
                number(p, scale),
                "canonical({decimal:?})"
            );
        }
    }

    #[test]
    fn math_fuzz_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let s = random_string(&mut rng);
            exercise(&s);
            let marked = s.contains("####")
                || s.contains("\\boxed")
                || s.contains("\\fbox")
                || s.ends_with('\\');
            if !marked && canonical(&s).is_some() {
                let verdict = check(&format!("\\boxed{{{s}}}"), &s, AnswerStyle::Boxed);
                assert!(
                    verdict.correct,
                    "an answer must equal itself: {s:?} gave {verdict:?}"
                );
            }
        }
        let long = [
            "9".repeat(10_000),
            format!("1{}", ",000".repeat(3_000)),
            format!("0.{}", "3".repeat(5_000)),
            ".".repeat(10_000) + "5",
            "\\frac{".repeat(3_000) + &"}".repeat(3_000),
            "\\sqrt{".repeat(3_000) + "2" + &"}".repeat(3_000),
            "\\boxed{".repeat(3_000),
            "{".repeat(10_000),
            "<<".repeat(5_000),
            "#### ".repeat(2_000),
            "😀".repeat(5_000),
            "- ".repeat(5_000) + "1",
        ];
        for s in &long {
            exercise(s);
        }
    }
}
