//! Text from outside, made safe to print for a person.
//!
//! File names, annotations, labels, references and registry error bodies come from images and
//! registries that other people control. Printed raw, a control character could move the cursor,
//! colour the output or forge a line of a report. Human output passes every such string through
//! [`escape`] (or [`Escaped`] in a `format!`), as `ls` and git quote names; `--json` output stays
//! exact, because a JSON encoder already escapes control characters.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls, DEL, and the Unicode
/// format characters that reorder text (bidirectional overrides and isolates), which can make a
/// line read differently from its bytes.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control or reordering character written as an escape (`\n`, `\t`, `\r`,
/// `\x1b`, `\u{202e}`) and backslashes doubled when anything was escaped, so the printed form is
/// unambiguous. Borrows when nothing needs escaping (the common case).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Display adapter: `format!("{}", Escaped(name))` prints `escape(name)`; width and alignment
/// (`{:<20}`) apply to the escaped text.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(escape("models/model.joblib"), Cow::Borrowed(_)));
        assert_eq!(escape("modèle ünïcode"), "modèle ünïcode");
        assert_eq!(escape(r"a\b"), r"a\b");
    }

    #[test]
    fn controls_and_reordering_characters_are_escaped() {
        assert_eq!(escape("x\n\x1b[32mpass\x1b[0m"), r"x\n\x1b[32mpass\x1b[0m");
        assert_eq!(escape("a\tb\rc\x7f"), r"a\tb\rc\x7f");
        assert_eq!(escape("\u{9b}"), r"\x9b");
        assert_eq!(escape("evil\u{202e}txt.exe"), r"evil\u{202e}txt.exe");
        assert_eq!(escape("a\\b\n"), r"a\\b\n");
        assert_eq!(Escaped("a\nb").to_string(), r"a\nb");
        assert_eq!(format!("[{:<6}]", Escaped("a\nb")), r"[a\nb  ]");
    }

    #[test]
    fn escaped_output_has_no_control_characters() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!escape(&all).chars().any(needs_escape));
    }
}
