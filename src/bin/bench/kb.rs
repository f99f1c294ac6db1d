//! Area D, knowledge search: import generated Korean/English documents through the API, then
//! search them one query at a time.

use std::time::Instant;

use serde_json::{Value, json};

use super::report::describe;
use super::setup::{ADMIN, Common, Herald};

#[derive(clap::Args)]
pub struct KbSearch {
    #[arg(long, default_value_t = 10_000)]
    documents: usize,
    #[arg(long, default_value_t = 3000)]
    queries: usize,
    /// Documents per POST /api/v1/kb/documents.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

const KOREAN_WORDS: &[&str] = &[
    "휴가",
    "신청",
    "방법",
    "비밀번호",
    "초기화",
    "회의실",
    "예약",
    "출장",
    "경비",
    "정산",
    "보안",
    "교육",
    "서버",
    "배포",
    "장애",
    "대응",
    "네트워크",
    "프린터",
    "계정",
    "권한",
    "메일",
    "설정",
    "데이터베이스",
    "백업",
    "복구",
    "모니터링",
    "알림",
    "일정",
    "팀장",
    "승인",
    "급여",
    "명세서",
    "복지",
    "포인트",
    "건강검진",
    "주차",
    "등록",
    "출입",
    "카드",
    "노트북",
    "교체",
    "소프트웨어",
    "설치",
    "라이선스",
    "문서",
    "양식",
    "계약서",
    "검토",
    "법무",
    "구매",
    "요청",
    "견적",
    "세금",
    "계산서",
    "인사",
    "평가",
    "목표",
    "면접",
    "채용",
    "온보딩",
    "퇴사",
    "절차",
    "재택근무",
    "원격",
    "접속",
    "화상회의",
    "장비",
    "대여",
    "사무용품",
    "택배",
    "우편",
    "식당",
    "메뉴",
    "셔틀버스",
    "시간표",
    "동호회",
    "지원금",
    "교육비",
    "자격증",
    "도서",
    "구입",
    "코드",
    "리뷰",
    "저장소",
    "브랜치",
    "빌드",
    "테스트",
    "릴리스",
    "버전",
    "관리",
    "이슈",
    "티켓",
    "고객",
    "문의",
    "응대",
    "매뉴얼",
    "가이드",
    "정책",
    "규정",
    "변경",
    "공지",
    "연차",
    "와이파이",
    "무선랜",
];
const ENGLISH_WORDS: &[&str] = &[
    "vacation",
    "request",
    "password",
    "reset",
    "meeting",
    "room",
    "booking",
    "travel",
    "expense",
    "report",
    "security",
    "training",
    "server",
    "deploy",
    "incident",
    "response",
    "network",
    "printer",
    "account",
    "access",
    "email",
    "settings",
    "database",
    "backup",
    "restore",
    "monitoring",
    "alert",
    "schedule",
    "manager",
    "approval",
    "payroll",
    "benefits",
    "health",
    "parking",
    "badge",
    "laptop",
    "software",
    "license",
    "document",
    "template",
    "contract",
    "review",
    "legal",
    "purchase",
    "quote",
    "invoice",
    "performance",
    "goal",
    "interview",
    "hiring",
    "onboarding",
    "offboarding",
    "remote",
    "vpn",
    "video",
    "equipment",
    "supplies",
    "delivery",
    "cafeteria",
    "shuttle",
    "club",
    "budget",
    "certification",
    "book",
    "code",
    "repository",
    "branch",
    "build",
    "test",
    "release",
    "version",
    "issue",
    "ticket",
    "customer",
    "support",
    "manual",
    "guide",
    "policy",
    "rule",
    "change",
    "notice",
    "wifi",
    "leave",
];
const PARTICLES: &[&str] = &[
    "", "", "", "을", "를", "이", "가", "은", "는", "에", "의", "로", "에서", "으로",
];

/// A small deterministic generator (xorshift64*), so every run indexes the same documents.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    /// `n` words: Korean (with a particle now and then), English, or mixed.
    fn words(&mut self, n: usize, korean_share: usize) -> String {
        (0..n)
            .map(|_| {
                if self.below(100) < korean_share {
                    format!("{}{}", self.pick(KOREAN_WORDS), self.pick(PARTICLES))
                } else {
                    self.pick(ENGLISH_WORDS).to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub async fn kb_search(common: &Common, run: &KbSearch) {
    let KbSearch {
        documents,
        queries,
        batch,
    } = *run;
    let herald = Herald::start(common, &[("HERALD_POLL_INTERVAL", "1h".into())]).await;
    let mut rng = Lcg(0x9E37_79B9_7F4A_7C15);
    let generated: Vec<Value> = (0..documents)
        .map(|n| {
            // A third Korean, a third English, a third mixed.
            let korean_share = [90, 10, 50][n % 3];
            let title_words = 3 + rng.below(4);
            let body_words = 30 + rng.below(50);
            json!({
                "id": format!("bench-{n}"),
                "title": rng.words(title_words, korean_share),
                "body": rng.words(body_words, korean_share),
                "tags": [rng.pick(KOREAN_WORDS), rng.pick(ENGLISH_WORDS)],
                "url": format!("https://wiki.example.com/bench/{n}"),
            })
        })
        .collect();
    let bytes: usize = generated.iter().map(|d| d.to_string().len()).sum();
    let started = Instant::now();
    for chunk in generated.chunks(batch) {
        herald
            .admin("/api/v1/kb/documents", Value::Array(chunk.to_vec()))
            .await;
    }
    let import = started.elapsed();
    let (cpu, rss) = herald.usage();
    println!(
        "backend: {:?}; imported {documents} documents ({:.1} MiB of JSON) in batches of {batch} through the API: {:.2} s ({:.0} documents/s); herald RSS {} MiB, CPU so far {cpu:.1} s",
        common.backend,
        bytes as f64 / (1024.0 * 1024.0),
        import.as_secs_f64(),
        documents as f64 / import.as_secs_f64(),
        rss / 1024
    );

    let query_texts: Vec<String> = (0..queries + 200)
        .map(|n| {
            let korean_share = [100, 0, 50][n % 3];
            let words = 1 + rng.below(3);
            rng.words(words, korean_share)
        })
        .collect();
    let mut samples = Vec::with_capacity(queries);
    let mut hits_total = 0usize;
    let mut empty = 0usize;
    let (cpu0, _) = herald.usage();
    let measured = Instant::now();
    for (n, query) in query_texts.iter().enumerate() {
        let started = Instant::now();
        let response = herald
            .client
            .get(format!("{}/api/v1/kb/search", herald.url))
            .query(&[("q", query.as_str()), ("limit", "10")])
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("search");
        assert!(
            response.status().is_success(),
            "{query}: {}",
            response.status()
        );
        let answer: Value = response.json().await.expect("json");
        let elapsed = started.elapsed();
        if n >= 200 {
            samples.push(elapsed);
            let hits = answer["hits"].as_array().map(Vec::len).unwrap_or(0);
            hits_total += hits;
            if hits == 0 {
                empty += 1;
            }
        }
    }
    let (cpu1, rss) = herald.usage();
    println!(
        "{queries} queries one at a time (1–3 words; Korean with particles, English, mixed; after 200 warm-up): {:.0} queries/s, {:.1} hits per query on average, {empty} with none; herald CPU {:.0} % of one core, RSS {} MiB",
        queries as f64 / measured.elapsed().as_secs_f64(),
        hits_total as f64 / queries as f64,
        100.0 * (cpu1 - cpu0) / measured.elapsed().as_secs_f64(),
        rss / 1024
    );
    describe("search answered (HTTP, limit 10)", samples);
}
