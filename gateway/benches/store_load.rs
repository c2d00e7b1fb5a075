//! Load harness for the durable store: `commit_decision` + `consume_decision` per second against
//! [`RedbStore`] at 1, 16 and 256 concurrent callers.
//!
//! Run with `cargo bench -p trustos --bench store_load`. One operation is one caller committing a
//! signed allow decision (one reservation against a large daily budget, so the budget path runs)
//! and then consuming it; both calls are durable (fsync'd) before they return, so one operation
//! is two write transactions. Callers are tokio tasks on a 2-worker multi-thread runtime.
//!
//! - Closed loop (1, 16, 256 callers): each caller starts its next operation as soon as the
//!   previous one returned, so there are always `callers` operations in flight; the 1-caller
//!   level is the fsync-bound figure.
//! - Open loop (`paced`): [`PACED_CALLERS`] callers offering [`PACED_RATE`] operations per
//!   second in total on a fixed schedule, i.e. the latency at the target load.
//!
//! Each level runs on a fresh database under `CARGO_TARGET_TMPDIR` (removed afterwards) until
//! [`MAX_OPS`] operations or [`MAX_TIME`] have passed, whichever comes first. Every commit must
//! succeed and every consume must return `Consumed`, and afterwards the log size and the
//! budget's reserved amount must equal the number of operations, or the harness panics.
//! Decisions are signed before the clock starts (signing is benchmarked in the kernel benches).
//! Before the levels, the raw cost of small writes + `fdatasync` on the same file system is
//! measured, to explain the single-caller figure.
//!
//! `STORE_LOAD_SECS=3` shortens the levels; `STORE_LOAD_CALLERS=1,paced` runs only those listed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use trustos::store::redb_store::RedbStore;
use trustos::store::{BudgetCharge, BudgetWindow, ConsumeOutcome, DecisionCommit, Store};
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION};
use trustos_kernel::keys::GatewayKey;
use trustos_kernel::objects::{BudgetReservation, DecisionType, Mode, Outcome, PolicyDecision};
use trustos_kernel::timestamp::Timestamp;

/// Concurrent callers per level.
const LEVELS: [usize; 3] = [1, 16, 256];
/// Most operations per level.
const MAX_OPS: usize = 100_000;
/// Longest a level runs (callers finish the operation in flight).
const MAX_TIME: Duration = Duration::from_secs(10);
/// The budget every decision reserves against.
const BUDGET_KEY: &str = "agent:bench";
/// The target load, also run open-loop: this many callers…
const PACED_CALLERS: usize = 256;
/// …offering this many operations per second in total.
const PACED_RATE: f64 = 5_000.0;
/// Raw fsync samples.
const FSYNC_SAMPLES: usize = 500;
/// Pages written before each fsync in the "like a small commit" measurement.
const PAGES_PER_SYNC: u64 = 12;

/// One prepared operation: the commit, and what the consume needs.
struct Prepared {
    commit: DecisionCommit,
    decision_id: String,
    fingerprint: Digest,
}

/// Latencies of the operations one caller completed, in nanoseconds.
#[derive(Default)]
struct Samples {
    op: Vec<u64>,
    commit: Vec<u64>,
    consume: Vec<u64>,
    /// Paced operations that could not start within half an interval of their scheduled time
    /// because the previous one was still running (the store fell behind the offered load).
    late: usize,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn issued_at() -> Timestamp {
    "2026-01-15T12:00:00.000Z".parse().unwrap()
}

fn prepare(key: &GatewayKey, index: usize) -> Prepared {
    let issued_at = issued_at();
    let (window_start, window_end) = BudgetWindow::Day.bounds(issued_at);
    let decision_id = format!("dec-{index:08}");
    let fingerprint = Digest::of(format!("request {index}").as_bytes());
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: decision_id.clone(),
        fingerprint,
        outcome: Outcome::Allow,
        reason_codes: vec![],
        policy_ids: vec!["bench".into()],
        profile_fingerprint: Digest::of(b"p"),
        reservations: vec![BudgetReservation {
            budget_key: BUDGET_KEY.into(),
            asset: "usdc".into(),
            amount: "1".parse().unwrap(),
            window_start,
            window_end,
        }],
        issued_at,
        expires_at: issued_at.checked_add_millis(60_000).unwrap(),
        mode: Mode::Hard,
    };
    let signed = jws::sign(key, TYP_DECISION, &decision).unwrap();
    Prepared {
        commit: DecisionCommit {
            consume: false,
            awaiting: None,
            decision,
            signed,
            charges: vec![BudgetCharge {
                budget_key: BUDGET_KEY.into(),
                window: BudgetWindow::Day,
                amount: 1,
                limit: u128::MAX / 2,
            }],
        },
        decision_id,
        fingerprint,
    }
}

/// Signs `count` decisions on every core.
fn prepare_all(key: &GatewayKey, count: usize) -> Vec<Prepared> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let start = (thread * chunk).min(count);
                    let end = ((thread + 1) * chunk).min(count);
                    (start..end)
                        .map(|index| prepare(key, index))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    })
}

fn clone_prepared(prepared: &Prepared) -> Prepared {
    Prepared {
        commit: prepared.commit.clone(),
        decision_id: prepared.decision_id.clone(),
        fingerprint: prepared.fingerprint,
    }
}

fn scratch_dir(label: &str) -> PathBuf {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store_load-{}-{label}-{stamp}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Value at quantile `q` (nearest rank) of sorted samples.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(nanos: u64) -> String {
    format!("{:.2}", nanos as f64 / 1e6)
}

/// Median, p99 and max of one latency series, in milliseconds.
fn summary(samples: &mut [u64]) -> (String, String, String) {
    samples.sort_unstable();
    (
        ms(quantile(samples, 0.50)),
        ms(quantile(samples, 0.99)),
        ms(samples.last().copied().unwrap_or(0)),
    )
}

/// Times `FSYNC_SAMPLES` rounds each of: overwrite 64 bytes at offset 0 + `fdatasync`; append
/// 4 KiB + `fdatasync` (which also commits the file size); and `PAGES_PER_SYNC` scattered 4 KiB
/// page overwrites + `fdatasync`, which is what one small redb commit does.
fn measure_fsync() {
    let dir = scratch_dir("fsync");
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("fsync.bin"))
        .unwrap();
    file.write_all_at(&[0u8; 4096], 0).unwrap();
    file.sync_all().unwrap();
    let mut overwrite = Vec::with_capacity(FSYNC_SAMPLES);
    for round in 0..FSYNC_SAMPLES {
        let started = Instant::now();
        file.write_all_at(&[round as u8; 64], 0).unwrap();
        file.sync_data().unwrap();
        overwrite.push(nanos(started.elapsed()));
    }
    let mut append = Vec::with_capacity(FSYNC_SAMPLES);
    for round in 0..FSYNC_SAMPLES {
        let started = Instant::now();
        let offset = 4096 * (round as u64 + 1);
        file.write_all_at(&[round as u8; 4096], offset).unwrap();
        file.sync_data().unwrap();
        append.push(nanos(started.elapsed()));
    }
    // The file now has FSYNC_SAMPLES + 1 pages; overwrite pages of it in a fixed pseudo-random
    // order (64-bit LCG).
    let pages = FSYNC_SAMPLES as u64 + 1;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut scattered = Vec::with_capacity(FSYNC_SAMPLES);
    for round in 0..FSYNC_SAMPLES {
        let started = Instant::now();
        for _ in 0..PAGES_PER_SYNC {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let offset = 4096 * ((state >> 33) % pages);
            file.write_all_at(&[round as u8; 4096], offset).unwrap();
        }
        file.sync_data().unwrap();
        scattered.push(nanos(started.elapsed()));
    }
    drop(file);
    fs::remove_dir_all(&dir).unwrap();

    println!(
        "raw fsync in {} ({FSYNC_SAMPLES} rounds each)",
        dir.display()
    );
    let scattered_label = format!("{PAGES_PER_SYNC} x 4 KiB pages + fdatasync");
    for (what, samples) in [
        ("overwrite 64 B + fdatasync", &mut overwrite),
        ("append 4 KiB + fdatasync", &mut append),
        (scattered_label.as_str(), &mut scattered),
    ] {
        let mean = samples.iter().sum::<u64>() / samples.len() as u64;
        let (p50, p99, max) = summary(samples);
        println!(
            "  {what:<30} p50 {p50} ms  p99 {p99} ms  max {max} ms  mean {} ms",
            ms(mean)
        );
    }
    println!();
}

/// CPU time (user + system) of `/proc/self/stat` or `/proc/self/task/<tid>/stat`, assuming the
/// usual 100 clock ticks per second. `None` where /proc is not available.
fn cpu_time(stat_path: &Path) -> Option<Duration> {
    let stat = fs::read_to_string(stat_path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time of the whole process.
fn process_cpu() -> Option<Duration> {
    cpu_time(Path::new("/proc/self/stat"))
}

/// Time the store's writer thread (`trustos-store-writer`, truncated by the kernel to 15 bytes)
/// spent on a CPU and runnable but waiting for one, from its `schedstat`.
fn writer_sched() -> Option<(Duration, Duration)> {
    fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|task| {
            let comm = fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim_end() != "trustos-store-w" {
                return None;
            }
            let schedstat = fs::read_to_string(task.path().join("schedstat")).ok()?;
            let mut fields = schedstat.split_whitespace();
            let running: u64 = fields.next()?.parse().ok()?;
            let waiting: u64 = fields.next()?.parse().ok()?;
            Some((Duration::from_nanos(running), Duration::from_nanos(waiting)))
        })
}

/// When a paced caller starts its operations: at `first`, then every `interval`.
#[derive(Clone, Copy)]
struct Pacing {
    first: Instant,
    interval: Duration,
}

/// One caller: commit then consume each of its decisions until they run out or time is up.
/// Unpaced (closed loop) it starts the next operation as soon as the previous one returned;
/// paced (open loop) it starts them on its schedule.
async fn caller(
    store: Arc<RedbStore>,
    work: Vec<Prepared>,
    deadline: Instant,
    pacing: Option<Pacing>,
) -> Result<Samples, String> {
    let consume_at = issued_at().checked_add_millis(1_000).unwrap();
    let mut samples = Samples::default();
    let mut next = pacing.map(|pacing| pacing.first);
    for prepared in work {
        if let (Some(at), Some(pacing)) = (next.as_mut(), pacing) {
            if Instant::now() > *at + pacing.interval / 2 {
                samples.late += 1;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(*at)).await;
            *at += pacing.interval;
        }
        if Instant::now() >= deadline {
            break;
        }
        let started = Instant::now();
        store
            .commit_decision(prepared.commit)
            .await
            .map_err(|err| format!("commit {} failed: {err}", prepared.decision_id))?;
        let committed = Instant::now();
        let outcome = store
            .consume_decision(&prepared.decision_id, &prepared.fingerprint, consume_at)
            .await
            .map_err(|err| format!("consume {} failed: {err}", prepared.decision_id))?;
        let consumed = Instant::now();
        if outcome != ConsumeOutcome::Consumed {
            return Err(format!(
                "consume {} returned {outcome:?}",
                prepared.decision_id
            ));
        }
        samples.commit.push(nanos(committed - started));
        samples.consume.push(nanos(consumed - committed));
        samples.op.push(nanos(consumed - started));
    }
    Ok(samples)
}

/// Runs one level on a fresh database and prints its figures; `rate` paces the callers to that
/// many operations per second in total.
async fn run_level(
    key: &Arc<GatewayKey>,
    signed: &[Prepared],
    callers: usize,
    limit: Duration,
    rate: Option<f64>,
) {
    let dir = scratch_dir(&format!("c{callers}"));
    let path = dir.join("trustos.redb");
    let store = Arc::new(RedbStore::open(&path, Arc::clone(key), "bench.trustos.local").unwrap());
    // Caller i gets operations i, i + callers, i + 2 × callers…
    let mut work: Vec<Vec<Prepared>> = (0..callers).map(|_| Vec::new()).collect();
    for (index, prepared) in signed.iter().enumerate() {
        work[index % callers].push(clone_prepared(prepared));
    }

    let cpu_before = (process_cpu(), writer_sched());
    let started = Instant::now();
    let deadline = started + limit;
    let tasks: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(index, work)| {
            // Paced callers are spread evenly over one interval.
            let pacing = rate.map(|rate| Pacing {
                first: started + Duration::from_secs_f64(index as f64 / rate),
                interval: Duration::from_secs_f64(callers as f64 / rate),
            });
            tokio::spawn(caller(Arc::clone(&store), work, deadline, pacing))
        })
        .collect();
    let mut all = Samples::default();
    let mut per_caller = Vec::with_capacity(callers);
    for task in tasks {
        let samples = task.await.unwrap().unwrap_or_else(|err| panic!("{err}"));
        per_caller.push(samples.op.len());
        all.late += samples.late;
        all.op.extend(samples.op);
        all.commit.extend(samples.commit);
        all.consume.extend(samples.consume);
    }
    let elapsed = started.elapsed();
    let cpu_after = (process_cpu(), writer_sched());

    // Nothing was silently lost: one log entry and one reserved unit per committed decision.
    let ops = all.op.len();
    let log_size = store.log_size().await.unwrap();
    assert_eq!(log_size, ops as u64, "log size does not match the commits");
    let usage = store
        .budget_usage(BUDGET_KEY, BudgetWindow::Day, issued_at())
        .await
        .unwrap();
    assert_eq!(
        usage.reserved, ops as u128,
        "reserved budget does not match"
    );
    Arc::into_inner(store)
        .expect("every caller has finished")
        .close()
        .await
        .unwrap();
    fs::remove_dir_all(&dir).unwrap();

    let throughput = ops as f64 / elapsed.as_secs_f64();
    let (op50, op99, opmax) = summary(&mut all.op);
    let (c50, c99, cmax) = summary(&mut all.commit);
    let (u50, u99, umax) = summary(&mut all.consume);
    let fewest = per_caller.iter().min().copied().unwrap_or(0);
    let most = per_caller.iter().max().copied().unwrap_or(0);
    let mode = rate.map_or_else(
        || "closed loop".to_owned(),
        |rate| format!("paced at {rate:.0} ops/s"),
    );
    println!(
        "{callers} callers, {mode}: {ops} ops in {:.2} s = {throughput:.0} ops/s \
         ({:.0} durable write calls/s)",
        elapsed.as_secs_f64(),
        2.0 * throughput
    );
    println!("    operation (commit + consume)  p50 {op50} ms  p99 {op99} ms  max {opmax} ms");
    println!("    commit_decision               p50 {c50} ms  p99 {c99} ms  max {cmax} ms");
    println!("    consume_decision              p50 {u50} ms  p99 {u99} ms  max {umax} ms");
    print!("    ops per caller: min {fewest}, max {most}");
    if rate.is_some() {
        print!("; started over half an interval late: {}", all.late);
    }
    println!();
    if let ((Some(p0), Some((r0, q0))), (Some(p1), Some((r1, q1)))) = (cpu_before, cpu_after) {
        let share = |before: Duration, after: Duration| {
            after.saturating_sub(before).as_secs_f64() / elapsed.as_secs_f64()
        };
        println!(
            "    CPU: process {:.2} cores; writer thread on a CPU {:.0}% of the time, \
             runnable but waiting for one {:.0}%",
            share(p0, p1),
            100.0 * share(r0, r1),
            100.0 * share(q0, q1)
        );
    }
}

fn main() {
    let limit = std::env::var("STORE_LOAD_SECS")
        .ok()
        .and_then(|secs| secs.parse::<f64>().ok())
        .map_or(MAX_TIME, Duration::from_secs_f64);
    // `STORE_LOAD_CALLERS=1,256,paced` runs only the listed levels (`paced`: the open-loop run).
    let selected = std::env::var("STORE_LOAD_CALLERS").ok();
    let wanted = |level: &str| {
        selected
            .as_deref()
            .is_none_or(|list| list.split(',').any(|item| item.trim() == level))
    };
    measure_fsync();

    let key = Arc::new(GatewayKey::from_seed(&[5; 32]));
    let signing = Instant::now();
    let signed = prepare_all(&key, MAX_OPS);
    println!(
        "pre-signed {} decisions in {:.2} s (not timed below)\n",
        signed.len(),
        signing.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    println!(
        "commit_decision + consume_decision, both durable; up to {MAX_OPS} ops or {:.0} s per level",
        limit.as_secs_f64()
    );
    for callers in LEVELS {
        if wanted(&callers.to_string()) {
            runtime.block_on(run_level(&key, &signed, callers, limit, None));
        }
    }
    if wanted("paced") {
        let rate = Some(PACED_RATE);
        runtime.block_on(run_level(&key, &signed, PACED_CALLERS, limit, rate));
    }
}
