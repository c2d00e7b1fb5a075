//! The adapter conformance suite run in-process against every rail's emulator: every check must
//! pass. (`trustos adapters conformance` runs the same suite with a killed worker process.)

use std::sync::Arc;

use trustos_adapters::conformance::circle::CircleUnderTest;
use trustos_adapters::conformance::x402::X402UnderTest;
use trustos_adapters::conformance::{
    AdapterReport, CHECKS, Gate, KernelGate, RailUnderTest, TaskCrasher, run_suite,
};
use trustos_adapters::ledger::MemoryLedger;

fn assert_all_passed(report: &AdapterReport) {
    assert_eq!(report.checks.len(), CHECKS.len());
    for (outcome, (id, _)) in report.checks.iter().zip(CHECKS) {
        assert_eq!(outcome.check, id);
        assert!(
            outcome.passed,
            "{} / {}: {}",
            report.adapter, outcome.check, outcome.detail
        );
    }
}

async fn run<R: RailUnderTest>(rail: R) -> AdapterReport {
    let rail = Arc::new(rail);
    let gate: Arc<dyn Gate> = Arc::new(KernelGate::new());
    let crasher = TaskCrasher::new(Arc::clone(&rail), Arc::clone(&gate));
    let report = run_suite(rail, gate, Arc::new(MemoryLedger::new()), &crasher).await;
    for outcome in &report.checks {
        eprintln!(
            "{} {} {}ms: {}",
            outcome.check, outcome.passed, outcome.millis, outcome.detail
        );
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_passes_every_check() {
    assert_all_passed(&run(CircleUnderTest::start().expect("emulator starts")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_passes_every_check() {
    assert_all_passed(&run(X402UnderTest::start().expect("emulator starts")).await);
}
