//! Cutting text to a limit, on character boundaries. Two kinds, each by characters or by bytes:
//! a *prefix* is the text's start, cut silently (for storage and inbound bounds), while an
//! *ellipsized* text ends with `…` when it was cut, the ellipsis counted within the limit (for
//! what a person reads, within a platform's limits).

/// The longest start of `text` of at most `max` characters.
pub fn prefix_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` if it has at most `max` characters, else its start ending with `…`, `max`
/// characters in all.
pub fn ellipsize_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` if it has at most `max` bytes, else its start ending with `…`, at most `max` bytes
/// in all (UTF-8) and cut on a character boundary.
pub fn ellipsize_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = '…';
    let end = max.saturating_sub(ellipsis.len_utf8());
    format!("{}{ellipsis}", prefix_bytes(text, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cut_silently_on_character_boundaries() {
        assert_eq!(prefix_chars("안녕하세요", 2), "안녕");
        assert_eq!(prefix_chars("안녕", 5), "안녕");
        assert_eq!(prefix_chars("abc", 0), "");
        // Each Hangul syllable is three bytes.
        assert_eq!(prefix_bytes("한글한글", 7), "한글");
        assert_eq!(prefix_bytes("한글", 2), "");
        assert_eq!(prefix_bytes("abc", 3), "abc");
        assert_eq!(prefix_bytes("abc", 2), "ab");
    }

    #[test]
    fn ellipsized_texts_end_with_an_ellipsis_within_the_limit() {
        assert_eq!(ellipsize_chars("안녕하세요", 10), "안녕하세요");
        assert_eq!(ellipsize_chars("안녕하세요", 5), "안녕하세요");
        assert_eq!(ellipsize_chars("안녕하세요", 3), "안녕…");
        assert_eq!(ellipsize_chars("abc", 0), "…");
        let cut = ellipsize_bytes("한글한글", 7);
        assert_eq!(cut, "한…");
        assert!(cut.len() <= 7, "{cut}");
        assert_eq!(ellipsize_bytes("abc", 3), "abc");
        assert_eq!(ellipsize_bytes("abcdef", 5), "ab…");
        assert_eq!(ellipsize_bytes("abcdef", 2), "…");
    }
}
