//! Helpers shared by the lane load harnesses (`x402_lane`, `circle_lane`), included by each
//! with `#[path = "support/mod.rs"] mod support;`: samples and percentiles ([`Phase`]), the
//! open loop (sends on a fixed clock, latency from the *scheduled* send time) and the closed
//! loop, and what the machine was doing (load, PSI, per-thread CPU from `schedstat`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Percentiles reported.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

/// The thread group of the open loop's pacer thread (named `pacer`).
pub const PACER: &str = "pacer";

// ---------------------------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------------------------

pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The latencies and errors of one phase.
#[derive(Default)]
pub struct Phase {
    /// Latency of each correct response, in nanoseconds (sorted by [`Phase::finish`]).
    pub nanos: Vec<u64>,
    /// Requests sent.
    pub sent: usize,
    /// Wrong or missing responses.
    pub errors: usize,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Completed requests per second (closed loop).
    pub rate: f64,
    /// Worst lateness of a scheduled send (open loop), in nanoseconds.
    pub max_send_lag: u64,
    /// Per thread group (see [`sched_by_group`]), during the phase (open loop): nanoseconds on a
    /// CPU, and runnable but waiting for one.
    pub sched: BTreeMap<&'static str, (u64, u64)>,
}

impl Phase {
    pub fn error(&mut self, err: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(err);
        }
    }

    /// Adds another slice of the same phase.
    pub fn absorb(&mut self, other: Phase) {
        self.nanos.extend(other.nanos);
        self.sent += other.sent;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.rate = other.rate;
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
        for (group, (cpu, wait)) in other.sched {
            let entry = self.sched.entry(group).or_default();
            entry.0 += cpu;
            entry.1 += wait;
        }
    }

    pub fn finish(mut self) -> Self {
        self.nanos.sort_unstable();
        if self.sent == 0 {
            self.sent = self.nanos.len();
        }
        self
    }

    /// Nearest-rank percentile in milliseconds (`1.0` is the maximum).
    pub fn ms(&self, fraction: f64) -> f64 {
        if self.nanos.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((self.nanos.len() as f64 * fraction).ceil() as usize).clamp(1, self.nanos.len());
        self.nanos[rank - 1] as f64 / 1e6
    }

    pub fn percentiles(&self) -> serde_json::Map<String, Value> {
        PERCENTILES
            .iter()
            .map(|(name, f)| {
                let key = format!("{}_ms", name.replace('.', ""));
                (key, json!(self.ms(*f)))
            })
            .collect()
    }

    /// On-CPU and waiting nanoseconds of all thread groups.
    pub fn sched_total(&self) -> (u64, u64) {
        self.sched
            .values()
            .fold((0, 0), |(c, w), (cpu, wait)| (c + cpu, w + wait))
    }

    /// Milliseconds of `total` per request sent.
    pub fn per_request_ms(&self, total: u64) -> f64 {
        total as f64 / 1e6 / self.sent.max(1) as f64
    }

    pub fn summary(&self) -> Value {
        let mut out = self.percentiles();
        let (cpu, wait) = self.sched_total();
        out.insert(
            "process_cpu_ms_per_request".into(),
            json!(self.per_request_ms(cpu)),
        );
        out.insert(
            "process_cpu_wait_ms_per_request".into(),
            json!(self.per_request_ms(wait)),
        );
        out.insert(
            "threads_ms_per_request".into(),
            self.sched
                .iter()
                .map(|(group, (cpu, wait))| {
                    let value = json!({
                        "on_cpu": self.per_request_ms(*cpu),
                        "waiting_for_cpu": self.per_request_ms(*wait),
                    });
                    ((*group).to_owned(), value)
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        out.insert("requests".into(), json!(self.sent));
        out.insert("ok".into(), json!(self.nanos.len()));
        out.insert("errors".into(), json!(self.errors));
        out.insert("first_error".into(), json!(self.first_error));
        out.insert("requests_per_s".into(), json!(self.rate));
        out.insert(
            "max_send_lag_ms".into(),
            json!(self.max_send_lag as f64 / 1e6),
        );
        Value::Object(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Loops
// ---------------------------------------------------------------------------------------------

/// Open loop: `rate` requests/s for `length`, each one `run()`, latency from each scheduled
/// send time to the end of `run()`. Sends are scheduled on a fixed clock by a sender thread
/// (`pacer`), so a stall delays every request behind it instead of hiding them (no coordinated
/// omission). `group` names the thread group of a thread name (see [`sched_by_group`]).
pub fn open_loop<F, Fut>(
    client_rt: &Runtime,
    rate: f64,
    length: Duration,
    group: fn(&str) -> &'static str,
    run: F,
) -> Phase
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let count = (rate * length.as_secs_f64()).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let scheduled = move |k: usize| start + interval * u32::try_from(k).unwrap();
    let (sender, mut due) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let before = sched_by_group(group);
    let (done, (max_lag, pacer_sched)) = std::thread::scope(|scope| {
        let pacer = std::thread::Builder::new()
            .name(PACER.into())
            .spawn_scoped(scope, move || {
                // Best effort: a small timer slack makes the schedule tighter.
                let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1000");
                let mut max_lag = 0u64;
                for k in 0..count {
                    let at = scheduled(k);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    max_lag = max_lag.max(nanos(Instant::now().saturating_duration_since(at)));
                    sender.send(k).unwrap();
                }
                // Its own share, read before it exits (the process totals lose exited threads).
                (max_lag, sched_of("/proc/thread-self/schedstat"))
            })
            .unwrap();
        let done = client_rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            while let Some(k) = due.recv().await {
                let request = run();
                tasks.spawn(async move {
                    let result = request.await;
                    (k, Instant::now(), result)
                });
            }
            let mut done = Vec::with_capacity(count);
            while let Some(joined) = tasks.join_next().await {
                done.push(joined.unwrap());
            }
            done
        });
        (done, pacer.join().unwrap())
    });
    let mut sched = sched_by_group(group);
    for (group, (cpu, wait)) in &mut sched {
        let (cpu0, wait0) = before.get(group).copied().unwrap_or_default();
        *cpu = cpu.saturating_sub(cpu0);
        *wait = wait.saturating_sub(wait0);
    }
    if let Some(pacer) = pacer_sched {
        sched.insert(PACER, pacer);
    }
    let mut phase = Phase {
        sent: count,
        max_send_lag: max_lag,
        rate: count as f64 / length.as_secs_f64(),
        sched,
        ..Phase::default()
    };
    for (k, at, result) in done {
        match result {
            Ok(()) => phase
                .nanos
                .push(nanos(at.saturating_duration_since(scheduled(k)))),
            Err(err) => phase.error(err),
        }
    }
    phase
}

/// Closed loop, one `run()` in flight at a time for `length`.
pub fn closed_loop<F, Fut>(client_rt: &Runtime, length: Duration, run: F) -> Phase
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    client_rt.block_on(async {
        let mut phase = Phase::default();
        let start = Instant::now();
        while start.elapsed() < length {
            let sent = Instant::now();
            phase.sent += 1;
            match run().await {
                Ok(()) => phase.nanos.push(nanos(sent.elapsed())),
                Err(err) => phase.error(err),
            }
        }
        phase.rate = phase.nanos.len() as f64 / start.elapsed().as_secs_f64();
        phase.finish()
    })
}

// ---------------------------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------------------------

pub fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(default)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Pressure-stall totals (`some`, microseconds) for CPU and I/O from `/proc/pressure`.
pub fn pressure() -> Option<(u64, u64)> {
    let some_total = |resource: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?;
        let line = text.lines().find(|l| l.starts_with("some"))?;
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("total="))?
            .parse()
            .ok()
    };
    Some((some_total("cpu")?, some_total("io")?))
}

/// The share of `wall` during which some task waited for a CPU and for the disk, in percent.
pub fn pressure_share(
    before: Option<(u64, u64)>,
    after: Option<(u64, u64)>,
    wall: Duration,
) -> Value {
    match (before, after) {
        (Some((cpu0, io0)), Some((cpu1, io1))) => {
            let micros = wall.as_secs_f64() * 1e6;
            json!({
                "cpu_some_pct": cpu1.saturating_sub(cpu0) as f64 / micros * 100.0,
                "io_some_pct": io1.saturating_sub(io0) as f64 / micros * 100.0,
            })
        }
        _ => Value::Null,
    }
}

/// On-CPU and run-queue-wait nanoseconds of one thread (`…/schedstat`).
pub fn sched_of(path: impl AsRef<Path>) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(cpu)), Some(Ok(wait))) => Some((cpu, wait)),
        _ => None,
    }
}

/// [`sched_of`] summed over this process's live threads (`/proc/self/task`), by the group
/// `group` gives each thread's name: how long each group ran, and how long its threads were
/// runnable but waited for a CPU (another process, or one another, had it). Empty when the
/// kernel does not report it. A thread that exits takes its share with it (the pacer reports
/// its own).
pub fn sched_by_group(group: fn(&str) -> &'static str) -> BTreeMap<&'static str, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Some((cpu, wait)) = sched_of(task.path().join("schedstat")) else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let entry: &mut (u64, u64) = out.entry(group(name.trim())).or_default();
        entry.0 += cpu;
        entry.1 += wait;
    }
    out
}

/// The load average (1, 5, 15 min) as `/proc/loadavg` shows it.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh scratch directory `<CARGO_TARGET_TMPDIR>/<name>-<pid>-<time>`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gateway serving as `trustos serve` does: the daemon opened from a home, its HTTP front on
/// a 2-worker multi-thread runtime, logging at `info` (or `TRUSTOS_LOG`) to `H/serve.log`.
pub struct Gateway {
    /// The runtime it runs on (kept alive with it).
    pub runtime: Runtime,
    /// The opened daemon (its enforcer and store).
    pub daemon: trustos::daemon::server::Daemon,
    /// Where the front listens.
    pub addr: std::net::SocketAddr,
    /// The front's accept loop.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the gateway of `home` with its front on `listen` (`127.0.0.1:0` for any port).
pub fn start_gateway(home: &trustos::home::Home, listen: &str) -> Gateway {
    let log = std::fs::File::create(home.root().join("serve.log")).unwrap();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUSTOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gateway")
        .enable_all()
        .build()
        .unwrap();
    let daemon = runtime
        .block_on(trustos::daemon::server::open(home))
        .unwrap_or_else(|err| panic!("opening the gateway: {err}"));
    let (addr, task) = runtime
        .block_on(trustos::front::serve(
            std::sync::Arc::clone(&daemon.enforcer),
            daemon.config.clone(),
            daemon.home.clone(),
            listen,
        ))
        .unwrap_or_else(|err| panic!("starting the front: {err}"));
    Gateway {
        runtime,
        daemon,
        addr,
        task,
    }
}

/// The open loop of every path for `length`, in slices of at most `slice` taking turns (each
/// round starting with the next path), so background noise falls on all alike. `run(path,
/// length)` runs one slice of one path.
pub fn interleaved<K: Copy + Ord>(
    paths: &[K],
    length: Duration,
    slice: Duration,
    mut run: impl FnMut(K, Duration) -> Phase,
) -> BTreeMap<K, Phase> {
    let mut open: BTreeMap<K, Phase> = BTreeMap::new();
    let slice = slice.min(length);
    let mut done = Duration::ZERO;
    let mut round = 0;
    while done < length {
        let this = slice.min(length - done);
        for turn in 0..paths.len() {
            let path = paths[(turn + round) % paths.len()];
            let part = run(path, this);
            open.entry(path).or_default().absorb(part);
        }
        done += this;
        round += 1;
    }
    open.into_iter().map(|(k, p)| (k, p.finish())).collect()
}

/// Prints the CPU-per-`unit` table of the open loop: for each path, each thread group's time
/// on a CPU and time runnable but waiting for one.
pub fn print_cpu_table<K: Copy + Ord>(
    unit: &str,
    paths: &[K],
    name: fn(K) -> &'static str,
    open: &BTreeMap<K, Phase>,
    groups: &[&str],
) {
    println!(
        "\nCPU per {unit} in the open loop, by thread (on a CPU / runnable but waiting for one), \
         ms"
    );
    print!("| path |");
    for group in groups {
        print!(" {group} |");
    }
    println!(" whole process |\n|---|{}---|", "---|".repeat(groups.len()));
    for &path in paths {
        let phase = &open[&path];
        print!("| {} |", name(path));
        for group in groups {
            let (cpu, wait) = phase.sched.get(group).copied().unwrap_or_default();
            print!(
                " {:.3} / {:.3} |",
                phase.per_request_ms(cpu),
                phase.per_request_ms(wait)
            );
        }
        let (cpu, wait) = phase.sched_total();
        println!(
            " {:.3} / {:.3} |",
            phase.per_request_ms(cpu),
            phase.per_request_ms(wait)
        );
    }
}
