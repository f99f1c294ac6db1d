//! Area C, accounts: what a login costs — argon2id password checks per second with herald's
//! own hashing functions and parameters, no server involved.

use std::time::Instant;

#[derive(clap::Args)]
pub struct Login {
    #[arg(long, default_value_t = 200)]
    checks: usize,
}

pub async fn login_cost(run: &Login) {
    let hash = herald::accounts::hash_password("bench password".into())
        .await
        .expect("hash");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = run.checks.div_ceil(2);
    for _ in 0..2 {
        let hash = hash.clone();
        tasks.spawn(async move {
            for _ in 0..per_task {
                assert!(
                    herald::accounts::verify_password("bench password".into(), hash.clone()).await
                );
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "argon2id (m=19456 KiB, t=2, p=1): {:.0} password checks/s on 2 cores ({:.1} ms each on one core)",
        (per_task * 2) as f64 / elapsed,
        elapsed * 1000.0 * 2.0 / (per_task * 2) as f64
    );
}
