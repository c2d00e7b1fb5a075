//! Decision latency of the embedded policy engine, in process: the largest starter pack
//! (treasury-agent: custom Cedar, budgets, schedule, payee lists, challenge threshold) deciding
//! its own simulation cases round-robin with realistic store state.
//!
//! Run with `cargo bench -p trustos --bench policy_decide`. First prints p50/p99/max over 100,000
//! timed decisions, then runs criterion for the median with confidence intervals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::Criterion;
use trustos::policy::engine::{Intent, State};
use trustos::policy::{self, simulate};
use trustos_kernel::timestamp::Timestamp;

const DECISIONS: usize = 100_000;

fn inputs(pack: &str) -> (policy::Compiled, Vec<(Intent, State, Timestamp)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(pack);
    let compiled = policy::open(&root.join("profile.toml")).unwrap();
    let cases = simulate::load_cases(&root.join("cases.toml")).unwrap();
    let inputs = cases
        .cases
        .iter()
        .map(|case| {
            let (intent, mut state, at) = case.inputs().unwrap();
            // Realistic state: a few hundred known payees beside the case's own.
            for index in 0..300 {
                state.known_payees.insert(format!("0x{index:040x}"));
            }
            (intent, state, at)
        })
        .collect();
    (compiled, inputs)
}

fn percentiles(pack: &str) {
    let (compiled, inputs) = inputs(pack);
    // Warm up.
    for (intent, state, at) in inputs.iter().cycle().take(10_000) {
        black_box(compiled.evaluate(intent, state, *at));
    }
    let mut nanos: Vec<u64> = Vec::with_capacity(DECISIONS);
    for (intent, state, at) in inputs.iter().cycle().take(DECISIONS) {
        let started = Instant::now();
        black_box(compiled.evaluate(intent, state, *at));
        nanos.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    nanos.sort_unstable();
    let at = |fraction: f64| nanos[((nanos.len() as f64 * fraction) as usize).min(nanos.len() - 1)];
    println!(
        "{pack}: {DECISIONS} decisions over {} cases: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        inputs.len(),
        at(0.50) as f64 / 1000.0,
        at(0.99) as f64 / 1000.0,
        at(0.999) as f64 / 1000.0,
        *nanos.last().unwrap() as f64 / 1000.0
    );
}

fn criterion_decide(c: &mut Criterion, pack: &str) {
    let (compiled, inputs) = inputs(pack);
    let mut index = 0;
    c.bench_function(&format!("decide_{pack}"), |b| {
        b.iter(|| {
            let (intent, state, at) = &inputs[index % inputs.len()];
            index += 1;
            compiled.evaluate(black_box(intent), state, *at)
        })
    });
}

fn main() {
    for pack in ["treasury-agent", "saas-agent"] {
        percentiles(pack);
    }
    let mut criterion = Criterion::default().configure_from_args();
    criterion_decide(&mut criterion, "treasury-agent");
    criterion_decide(&mut criterion, "saas-agent");
    criterion.final_summary();
}
