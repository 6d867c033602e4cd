//! How long one chat line takes to parse. The parser runs on every message in
//! every channel the bot is in, most of which are not for it.

use chima_command::{Addressee, parse};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let bot = Addressee::named("chima");
    let mut g = c.benchmark_group("parse");
    for (name, line) in [
        (
            "not_addressed",
            "lunch anyone? the place on 5th is open again",
        ),
        ("deploy_simple", "chima deploy hubot"),
        (
            "deploy_full",
            "chima deploy:migrate! hubot/atmos/branch to production/fe1,fe2 123456",
        ),
        ("near_miss", "chima deploy hubot/branch tos taging"),
        (
            "lock_reason",
            "chima lock hubot in production db migration running",
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| parse(black_box(line), &bot)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
