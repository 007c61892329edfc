//! Triplit's `like`: a case-insensitive SQL LIKE where `%` matches any run and `_` one
//! character, with no escape character.
//!
//! Triplit compiles the pattern to a JavaScript RegExp with the `i` flag and no `u` or `s`
//! flag, so this matches on UTF-16 code units (an emoji needs `__`), wildcards do not match
//! line terminators, and case-insensitivity is JavaScript's non-Unicode canonicalization
//! (simple uppercase mapping, never mapping a non-ASCII unit to ASCII).

/// Whether `text` matches `pattern`.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<u16> = text.encode_utf16().map(canonicalize).collect();
    let pattern: Vec<u16> = pattern.encode_utf16().map(canonicalize).collect();
    matches(&text, &pattern)
}

const PERCENT: u16 = b'%' as u16;
const UNDERSCORE: u16 = b'_' as u16;

fn is_line_terminator(unit: u16) -> bool {
    matches!(unit, 0x0A | 0x0D | 0x2028 | 0x2029)
}

/// JavaScript's `Canonicalize` for a non-Unicode, case-insensitive RegExp.
fn canonicalize(unit: u16) -> u16 {
    let Some(c) = char::from_u32(u32::from(unit)) else { return unit }; // a lone surrogate
    let mut upper = c.to_uppercase();
    let (Some(u), None) = (upper.next(), upper.next()) else { return unit };
    let mapped = u as u32;
    if mapped > 0xFFFF || (unit >= 128 && mapped < 128) {
        return unit;
    }
    mapped as u16
}

/// Backtracking match with the usual star-position memo (linear for one `%`, quadratic worst case).
fn matches(text: &[u16], pattern: &[u16]) -> bool {
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == PERCENT {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len()
            && (pattern[p] == text[t] || (pattern[p] == UNDERSCORE && !is_line_terminator(text[t])))
        {
            t += 1;
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            // `%` cannot swallow a line terminator.
            if is_line_terminator(text[star_t]) {
                return false;
            }
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, t));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|u| *u == PERCENT)
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn wildcards_and_case() {
        assert!(like("Hello World", "hello%"));
        assert!(like("Hello World", "%WORLD"));
        assert!(like("Hello", "h_llo"));
        assert!(!like("Hello", "h_lo"));
        assert!(like("", "%"));
        assert!(!like("abc", ""));
        assert!(like("a.c", "a.c") && !like("abc", "a.c"), "regex metacharacters are literal");
        assert!(!like("Straße", "STRASSE"), "no multi-character folding");
        assert!(like("ÉMILE", "émile"), "non-ASCII case folding");
        assert!(!like("K", "\u{212A}"), "Kelvin sign never folds to ASCII");
    }

    #[test]
    fn utf16_units_and_line_terminators() {
        assert!(like("🚀", "__"), "an emoji is two UTF-16 units");
        assert!(!like("🚀", "_"));
        assert!(!like("a\nb", "a%b"), "% does not cross a newline");
        assert!(!like("a\nb", "a_b"));
        assert!(like("a\nb", "a\nb"));
    }
}
