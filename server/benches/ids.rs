//! IDs per second: our generator, `uuid::Uuid::now_v7`, and `ulid::Generator` (monotonic),
//! on one thread and contended by two, in one run. `cargo bench -p meridian-server --bench ids`.
//!
//! Our snowflakes are bounded by the layout: 1,024 per millisecond per node. So they are
//! measured two ways:
//! - `sustained`: back-to-back calls on the real clock. The figure is the layout's ceiling,
//!   1.024 M IDs/s, the clock being the only limit (the generator waits for the next
//!   millisecond and never wraps).
//! - `per_id`: the cost of one call within a millisecond's budget (the first 1,000 IDs
//!   after a millisecond starts, timed; the wait for the next millisecond is not). This is
//!   the figure to compare with the crates per ID.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meridian_server::ids::generator::{
    ActiveLease, GeneratorConfig, IdClock, SnowflakeGenerator, SystemIdClock, UuidV7Generator,
};

/// IDs timed per millisecond in the `per_id` benches (fewer than the 1,024 available, so
/// that a round never waits).
const PER_MS: u64 = 1000;

fn leased_generator() -> Arc<SnowflakeGenerator> {
    let clock = Arc::new(SystemIdClock::new());
    let generator = Arc::new(SnowflakeGenerator::new(
        clock.clone(),
        GeneratorConfig::default(),
        Arc::default(),
    ));
    let now = clock.wall_ms();
    generator.install(ActiveLease {
        node_id: 1,
        fencing_token: 1,
        floor_ms: now - 1,
        high_water_ms: now + 86_400_000,
        valid_until_mono_ns: u64::MAX,
        valid_until_wall_ms: now + 86_400_000,
    });
    generator
}

/// Spins until the wall clock enters a new millisecond.
fn next_millisecond(clock: &SystemIdClock) {
    let start = clock.wall_ms();
    while clock.wall_ms() == start {
        std::hint::spin_loop();
    }
}

/// Waits until `counter` reaches `round`: spins, then yields (on a loaded machine the other
/// thread may need this core to get there).
fn await_round(counter: &AtomicU64, round: u64) {
    let mut spins = 0u32;
    while counter.load(Ordering::Acquire) < round {
        spins += 1;
        if spins < 2_000 {
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

/// Runs `iters` calls of `work` split across `threads` threads; the wall time.
fn contended(threads: u64, iters: u64, work: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..threads {
            let share = iters / threads + u64::from(t < iters % threads);
            let work = &work;
            scope.spawn(move || {
                for _ in 0..share {
                    work();
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(20);

    let generator = leased_generator();
    group.bench_function("snowflake/sustained/1-thread", |b| {
        b.iter(|| black_box(generator.next_snowflake().unwrap()))
    });
    group.bench_function("snowflake/sustained/2-threads", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, || {
                black_box(generator.next_snowflake().unwrap());
            })
        })
    });

    group.finish();

    // Only the first thousand IDs of each millisecond are timed, so these take about 16
    // times their measured time: a shorter window.
    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
    group.sample_size(20);
    let clock = SystemIdClock::new();
    group.bench_function("snowflake/per_id/1-thread", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let n = (iters - done).min(PER_MS);
                next_millisecond(&clock);
                let start = Instant::now();
                for _ in 0..n {
                    black_box(generator.next_snowflake().unwrap());
                }
                timed += start.elapsed();
                done += n;
            }
            timed
        })
    });
    group.bench_function("snowflake/per_id/2-threads", |b| {
        b.iter_custom(|iters| {
            // Rounds of PER_MS IDs, half on this thread and half on a worker, started at a
            // fresh millisecond; the round is timed from the start signal until both are
            // done. The threads signal each other through atomics (spinning, then
            // yielding), which costs far less than a futex wake-up.
            let rounds = iters.div_ceil(PER_MS);
            let started = AtomicU64::new(0);
            let finished = AtomicU64::new(0);
            let mut timed = Duration::ZERO;
            thread::scope(|scope| {
                scope.spawn(|| {
                    for round in 1..=rounds {
                        await_round(&started, round);
                        for _ in 0..PER_MS / 2 {
                            black_box(generator.next_snowflake().unwrap());
                        }
                        finished.store(round, Ordering::Release);
                    }
                });
                for round in 1..=rounds {
                    next_millisecond(&clock);
                    let start = Instant::now();
                    started.store(round, Ordering::Release);
                    for _ in 0..PER_MS / 2 {
                        black_box(generator.next_snowflake().unwrap());
                    }
                    await_round(&finished, round);
                    timed += start.elapsed();
                }
            });
            // Scaled to the iterations asked for.
            timed.mul_f64(iters as f64 / (rounds * PER_MS) as f64)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(20);
    let uuids = UuidV7Generator::new(
        Arc::new(SystemIdClock::new()),
        GeneratorConfig::default(),
        Arc::default(),
    );
    group.bench_function("meridian-uuidv7/1-thread", |b| {
        b.iter(|| black_box(uuids.next_uuid_v7().unwrap()))
    });
    group.bench_function("meridian-uuidv7/2-threads", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, || {
                black_box(uuids.next_uuid_v7().unwrap());
            })
        })
    });

    group.bench_function("uuid-now_v7/1-thread", |b| {
        b.iter(|| black_box(uuid::Uuid::now_v7()))
    });
    group.bench_function("uuid-now_v7/2-threads", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, || {
                black_box(uuid::Uuid::now_v7());
            })
        })
    });

    let mut ulids = ulid::Generator::new();
    group.bench_function("ulid-monotonic/1-thread", |b| {
        b.iter(|| black_box(ulids.generate().unwrap()))
    });
    // `ulid::Generator` takes `&mut self`: shared by threads, it needs a lock.
    let shared = Mutex::new(ulid::Generator::new());
    group.bench_function("ulid-monotonic/2-threads", |b| {
        b.iter_custom(|iters| {
            contended(2, iters, || {
                black_box(shared.lock().unwrap().generate().unwrap());
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
