//! Synonyms in the Elasticsearch/Solr file syntax, expanded at query time (so a new synonym
//! file takes effect without reindexing):
//!
//! ```text
//! # a comment line
//! 휴가, 연차, 월차          ← equivalent: a query for any of them searches all three
//! pw => 비밀번호            ← one-way: a query for `pw` searches `비밀번호` instead
//! wifi, wi-fi => 무선랜, wifi
//! ```
//!
//! Terms are compared as the tokenizer's words (lowercase, split at script changes and
//! punctuation), so `Wi-Fi` and `wi fi` are the same term. A term may have several words; the
//! longest matching run of query words wins. Backslash escapes are not supported: a term cannot
//! contain `,` or `=>`.
//!
//! A Korean query word that matches no synonym is tried again without a trailing particle:
//! one of the two-syllable particles `에서 으로 에게 까지 부터 처럼 보다`, else one of the
//! syllables `을 를 이 가 은 는 에 의 로 도 와 과 만`, as long as two or more syllables remain
//! (`연차를` → `연차`, but `회의` stays). The word itself stays among the alternatives, so a
//! wrong guess only adds alternatives.

use std::collections::HashMap;

use super::tokenizer::{Script, script_of, words};

/// Most words a query is cut into; the rest is ignored (a query is not a document).
pub const MAX_QUERY_WORDS: usize = 32;

#[derive(Debug, Clone, Default)]
pub struct Synonyms {
    /// A term (its words joined by one space) → what a query for it searches, itself included
    /// unless the rule was one-way.
    alternatives: HashMap<String, Vec<String>>,
    /// The most words in any term.
    longest: usize,
    rules: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SynonymError {
    pub line: usize,
    pub message: String,
}

impl Synonyms {
    pub fn parse(text: &str) -> Result<Synonyms, SynonymError> {
        let mut synonyms = Synonyms::default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let rule = raw.trim();
            if rule.is_empty() || rule.starts_with('#') {
                continue;
            }
            let error = |message: String| SynonymError { line, message };
            if let Some((left, right)) = rule.split_once("=>") {
                if right.contains("=>") {
                    return Err(error("more than one `=>`".into()));
                }
                if left.trim().is_empty() {
                    return Err(error("nothing before `=>`".into()));
                }
                if right.trim().is_empty() {
                    return Err(error("nothing after `=>`".into()));
                }
                let from = parse_terms(left).map_err(error)?;
                let to = parse_terms(right).map_err(error)?;
                for term in from {
                    synonyms.add(term, &to);
                }
            } else {
                let group = parse_terms(rule).map_err(error)?;
                if group.len() < 2 {
                    return Err(error(format!(
                        "`{rule}` alone: a group needs two or more terms separated by commas \
                         (or `a => b` for a one-way rule)"
                    )));
                }
                for term in group.clone() {
                    synonyms.add(term, &group);
                }
            }
            synonyms.rules += 1;
        }
        Ok(synonyms)
    }

    /// How many rules (non-comment lines) the file had.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// How many distinct terms have synonyms.
    pub fn terms(&self) -> usize {
        self.alternatives.len()
    }

    fn add(&mut self, term: String, alternatives: &[String]) {
        self.longest = self.longest.max(term.split(' ').count());
        let entry = self.alternatives.entry(term).or_default();
        for alternative in alternatives {
            if !entry.contains(alternative) {
                entry.push(alternative.clone());
            }
        }
    }

    /// Cuts a query into words and gives, for each, the texts a document may contain instead
    /// (each to be matched whole: all of its terms).
    pub fn expand(&self, query: &str) -> Vec<Vec<String>> {
        let mut query_words = words(query);
        query_words.truncate(MAX_QUERY_WORDS);
        let mut out = Vec::new();
        let mut at = 0;
        'words: while at < query_words.len() {
            let most = self.longest.min(query_words.len() - at);
            for length in (2..=most).rev() {
                let phrase = query_words[at..at + length].join(" ");
                if let Some(alternatives) = self.alternatives.get(&phrase) {
                    out.push(alternatives.clone());
                    at += length;
                    continue 'words;
                }
            }
            out.push(self.alternatives_of_word(&query_words[at]));
            at += 1;
        }
        out
    }

    fn alternatives_of_word(&self, word: &str) -> Vec<String> {
        if let Some(alternatives) = self.alternatives.get(word) {
            return alternatives.clone();
        }
        let Some(stem) = strip_particle(word) else {
            return vec![word.to_string()];
        };
        let mut alternatives = vec![word.to_string()];
        let stem_alternatives = match self.alternatives.get(stem) {
            Some(found) => found.clone(),
            None => vec![stem.to_string()],
        };
        for alternative in stem_alternatives {
            if !alternatives.contains(&alternative) {
                alternatives.push(alternative);
            }
        }
        alternatives
    }
}

fn parse_terms(list: &str) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    for raw in list.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("an empty term (two commas in a row, or a comma at an end)".into());
        }
        let normalized = words(raw).join(" ");
        if normalized.is_empty() {
            return Err(format!("`{raw}` has no letters or digits"));
        }
        if !terms.contains(&normalized) {
            terms.push(normalized);
        }
    }
    Ok(terms)
}

const TWO_SYLLABLE_PARTICLES: [&str; 7] = ["에서", "으로", "에게", "까지", "부터", "처럼", "보다"];
const ONE_SYLLABLE_PARTICLES: [char; 13] = [
    '을', '를', '이', '가', '은', '는', '에', '의', '로', '도', '와', '과', '만',
];

/// `word` without a trailing Korean particle, when at least two syllables remain.
pub fn strip_particle(word: &str) -> Option<&str> {
    if !word.chars().all(|c| script_of(c) == Script::Cjk) {
        return None;
    }
    let syllables = word.chars().count();
    for particle in TWO_SYLLABLE_PARTICLES {
        if syllables >= 4
            && let Some(stem) = word.strip_suffix(particle)
        {
            return Some(stem);
        }
    }
    let last = word.chars().next_back()?;
    if syllables >= 3 && ONE_SYLLABLE_PARTICLES.contains(&last) {
        return Some(&word[..word.len() - last.len_utf8()]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Synonyms {
        Synonyms::parse(text).expect("valid synonyms")
    }

    #[test]
    fn an_equivalent_group_expands_every_member() {
        let synonyms = parse("휴가, 연차, 월차\n");
        assert_eq!(
            synonyms.expand("연차 신청"),
            [vec!["휴가", "연차", "월차"], vec!["신청"]]
        );
        assert_eq!(synonyms.rules(), 1);
        assert_eq!(synonyms.terms(), 3);
    }

    #[test]
    fn a_one_way_rule_replaces_and_does_not_go_back() {
        let synonyms = parse("pw, 패스워드 => 비밀번호\n");
        assert_eq!(synonyms.expand("PW"), [vec!["비밀번호"]]);
        assert_eq!(synonyms.expand("패스워드"), [vec!["비밀번호"]]);
        assert_eq!(synonyms.expand("비밀번호"), [vec!["비밀번호"]]);
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_ignored() {
        let synonyms = parse("\u{feff}# vacation words\r\n\r\n  휴가, vacation  \r\n# end\n");
        assert_eq!(synonyms.expand("Vacation"), [vec!["휴가", "vacation"]]);
        assert_eq!(synonyms.rules(), 1);
    }

    #[test]
    fn multi_word_terms_match_the_longest_run_of_query_words() {
        let synonyms = parse("wi-fi, wifi, 무선 인터넷\nwi, 위\n");
        assert_eq!(
            synonyms.expand("Wi-Fi 연결"),
            [vec!["wi fi", "wifi", "무선 인터넷"], vec!["연결"]]
        );
        assert_eq!(synonyms.expand("무선 인터넷")[0][0], "wi fi");
        assert_eq!(synonyms.expand("wi")[0], ["wi", "위"]);
    }

    #[test]
    fn rules_for_the_same_term_are_merged() {
        let synonyms = parse("휴가, 연차\n휴가, vacation\n");
        assert_eq!(synonyms.expand("휴가")[0], ["휴가", "연차", "vacation"]);
    }

    #[test]
    fn a_trailing_particle_is_tried_without_it() {
        let synonyms = parse("휴가, 연차, 월차\n");
        assert_eq!(
            synonyms.expand("연차를 신청")[0],
            ["연차를", "휴가", "연차", "월차"]
        );
        // A word without synonyms still gets its stem as an alternative.
        assert_eq!(synonyms.expand("비밀번호를")[0], ["비밀번호를", "비밀번호"]);
        assert_eq!(synonyms.expand("사무실에서")[0], ["사무실에서", "사무실"]);
        // Too short to guess: `회의` is a word, not `회` + `의`.
        assert_eq!(synonyms.expand("회의")[0], ["회의"]);
        assert_eq!(strip_particle("vpn"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("휴가, 연차\n휴가 연차 월차\n", 2, "alone"),
            ("a => b => c", 1, "more than one"),
            ("\n\n => b", 3, "nothing before"),
            ("a =>  ", 1, "nothing after"),
            ("a,, b", 1, "empty term"),
            ("a, !!!", 1, "no letters"),
        ];
        for (text, line, message) in cases {
            let error = Synonyms::parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
            assert!(error.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    #[test]
    fn queries_are_cut_at_a_bounded_number_of_words() {
        let long = "word ".repeat(100);
        assert_eq!(parse("").expand(&long).len(), MAX_QUERY_WORDS);
        assert!(parse("").expand("  ?! ").is_empty());
    }
}
