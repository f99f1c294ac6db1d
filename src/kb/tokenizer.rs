//! The knowledge base's one way of cutting text into terms, used for indexing, for queries and
//! for synonym terms alike, so that all three always agree.
//!
//! - A run of Hangul, CJK ideographs or kana becomes its character bigrams (`휴가신청` →
//!   `휴가`, `가신`, `신청`); a run of a single such character stays a unigram. Korean has no
//!   reliable word boundaries and particles glue onto words (`연차를`), so bigrams find `연차`
//!   inside `연차를` without a morphological analyser.
//! - A run of other letters or digits (Latin, Cyrillic, …) becomes one lowercase word.
//! - Everything else (spaces, punctuation, symbols) separates terms.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the tokenizer is registered under in the index.
pub const TOKENIZER_NAME: &str = "herald_ko_bigram";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Hangul, CJK ideographs, kana: cut into bigrams.
    Cjk,
    /// Any other letter or digit: kept as whole lowercase words.
    Word,
    /// Separators.
    Other,
}

pub fn script_of(c: char) -> Script {
    let code = c as u32;
    let cjk = matches!(code,
        0x1100..=0x11FF     // Hangul Jamo
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3130..=0x318F   // Hangul compatibility Jamo
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xA960..=0xA97F   // Hangul Jamo extended A
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xD7B0..=0xD7FF   // Hangul Jamo extended B
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // half-width Katakana
        | 0x20000..=0x2FA1F // CJK extensions B..
    );
    if cjk {
        Script::Cjk
    } else if c.is_alphanumeric() {
        Script::Word
    } else {
        Script::Other
    }
}

/// A maximal run of one script in a text: its byte range and script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    pub end: usize,
    pub script: Script,
}

/// The letter/digit runs of `text` (separators dropped), in order.
pub fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut current: Option<Run> = None;
    for (at, c) in text.char_indices() {
        let script = script_of(c);
        match &mut current {
            Some(run) if run.script == script => run.end = at + c.len_utf8(),
            _ => {
                if let Some(run) = current.take()
                    && run.script != Script::Other
                {
                    out.push(run);
                }
                current = Some(Run {
                    start: at,
                    end: at + c.len_utf8(),
                    script,
                });
            }
        }
    }
    if let Some(run) = current
        && run.script != Script::Other
    {
        out.push(run);
    }
    out
}

/// The terms of `text`, exactly as the index stores them.
pub fn terms(text: &str) -> Vec<String> {
    let mut stream = BigramTokenizer.token_stream_owned(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The words of `text`: its runs, lowercased, in order. Synonym terms and query words are
/// compared in this form (`VPN접속` → `vpn`, `접속`).
pub fn words(text: &str) -> Vec<String> {
    runs(text)
        .into_iter()
        .map(|run| text[run.start..run.end].to_lowercase())
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct BigramTokenizer;

impl BigramTokenizer {
    fn token_stream_owned(&self, text: &str) -> BigramStream {
        BigramStream::new(text)
    }
}

impl Tokenizer for BigramTokenizer {
    type TokenStream<'a> = BigramStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> BigramStream {
        BigramStream::new(text)
    }
}

/// All tokens are computed up front: texts are small (bounded document sizes) and it keeps the
/// bigram bookkeeping out of `advance`.
pub struct BigramStream {
    tokens: Vec<Token>,
    next: usize,
    /// What `token()` shows before the first `advance` or for an empty text.
    none: Token,
}

impl BigramStream {
    fn new(text: &str) -> BigramStream {
        let mut tokens = Vec::new();
        let mut position = 0;
        let mut push = |from: usize, to: usize, text: String| {
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text,
                position_length: 1,
            });
            position += 1;
        };
        for run in runs(text) {
            let slice = &text[run.start..run.end];
            match run.script {
                Script::Cjk => {
                    let chars: Vec<(usize, char)> = slice.char_indices().collect();
                    if chars.len() == 1 {
                        push(run.start, run.end, slice.to_string());
                        continue;
                    }
                    for pair in chars.windows(2) {
                        let (first_at, _) = pair[0];
                        let (second_at, second) = pair[1];
                        let end = second_at + second.len_utf8();
                        push(
                            run.start + first_at,
                            run.start + end,
                            slice[first_at..end].to_string(),
                        );
                    }
                }
                Script::Word => push(run.start, run.end, slice.to_lowercase()),
                Script::Other => {}
            }
        }
        BigramStream {
            tokens,
            next: 0,
            none: Token::default(),
        }
    }
}

impl TokenStream for BigramStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        match self.next.checked_sub(1) {
            Some(at) => self.tokens.get(at).unwrap_or(&self.none),
            None => &self.none,
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.next.checked_sub(1) {
            Some(at) if at < self.tokens.len() => &mut self.tokens[at],
            _ => &mut self.none,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangul_runs_become_bigrams_and_single_syllables_stay() {
        assert_eq!(terms("휴가 신청 방법"), ["휴가", "신청", "방법"]);
        assert_eq!(terms("휴가신청"), ["휴가", "가신", "신청"]);
        assert_eq!(terms("비밀번호를"), ["비밀", "밀번", "번호", "호를"]);
        assert_eq!(terms("집 에"), ["집", "에"]);
    }

    #[test]
    fn latin_and_digits_are_lowercase_words() {
        assert_eq!(terms("VPN Setup, step-2!"), ["vpn", "setup", "step", "2"]);
        assert_eq!(terms("Wi-Fi 6E"), ["wi", "fi", "6e"]);
    }

    #[test]
    fn mixed_scripts_split_at_the_boundary() {
        assert_eq!(terms("VPN접속 방법"), ["vpn", "접속", "방법"]);
        assert_eq!(words("VPN접속, 방법"), ["vpn", "접속", "방법"]);
        assert_eq!(terms("東京タワー"), ["東京", "京タ", "タワ", "ワー"]);
    }

    #[test]
    fn offsets_point_at_the_original_text() {
        let text = "Herald 휴가를";
        let mut stream = BigramTokenizer.token_stream_owned(text);
        let mut seen = Vec::new();
        while stream.advance() {
            let token = stream.token();
            seen.push((
                text[token.offset_from..token.offset_to].to_string(),
                token.position,
            ));
        }
        assert_eq!(
            seen,
            [
                ("Herald".to_string(), 0),
                ("휴가".to_string(), 1),
                ("가를".to_string(), 2)
            ]
        );
    }

    #[test]
    fn nothing_to_index_is_an_empty_stream() {
        assert!(terms("  ,.!? ").is_empty());
        assert!(terms("").is_empty());
    }
}
