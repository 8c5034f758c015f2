//! Durable appends per second of the WAL engine on this machine's disk, one node (no
//! replication yet), with 1, 16 and 64 concurrent appenders of 100-byte records, and the
//! disk's own fsync rate (a 4 KiB write plus fdatasync, back to back) beside it.
//! `cargo bench -p meridian-server --bench wal`.
//!
//! An element is one append that resolved (durable). Group commit is what lets 64
//! appenders beat the fsync rate: after the run, fsyncs per append are printed.
//!
//! Measured on the 2-core development machine (virtual disk, shared with another build,
//! dev profile, which matters little here: the figures are fsync-bound), two runs an
//! hour apart, the disk's speed varying fivefold between them:
//!
//! ```text
//!                    run 1                         run 2
//! disk fsyncs/s      ~1,600                        ~8,600
//! 1 appender         ~2,000 appends/s (1.00 fsync/append)   ~5,500/s (1.00)
//! 16 appenders       ~15,000/s (0.095)             ~57,000/s (0.126)
//! 64 appenders       ~34,000/s (0.019)             ~85,000/s
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meridian_server::wal::{Disk, Log, LogOptions, Record, StdDisk};

fn fsync_rate(c: &mut Criterion, dir: &Path) {
    let disk = StdDisk::new();
    let path = dir.join("fsync-probe");
    disk.create(&path).expect("create");
    disk.allocate(&path, 64 * 1024 * 1024).expect("allocate");
    let block = vec![7u8; 4096];
    let mut offset = 0u64;
    let mut group = c.benchmark_group("wal_disk");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_4k_fdatasync", |b| {
        b.iter(|| {
            disk.write_at(&path, offset, &block).expect("write");
            disk.sync(&path).expect("sync");
            offset = (offset + 4096) % (64 * 1024 * 1024);
        })
    });
    group.finish();
}

fn durable_appends(c: &mut Criterion, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("wal_durable_append");
    for clients in [1u64, 16, 64] {
        let log_dir = dir.join(format!("log-{clients}"));
        let (log, _) =
            Log::open(Arc::new(StdDisk::new()), &log_dir, LogOptions::default()).expect("open");
        let next = Arc::new(std::sync::Mutex::new(1u64));
        let before = log.stats();
        let mut appended = 0u64;
        group.throughput(Throughput::Elements(clients));
        group.bench_function(format!("{clients}_clients"), |b| {
            b.iter_custom(|rounds| {
                let start = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..clients)
                        .map(|_| {
                            let (log, next) = (log.clone(), next.clone());
                            tokio::spawn(async move {
                                for _ in 0..rounds {
                                    let durable = {
                                        let mut next = next.lock().expect("index lock");
                                        let durable =
                                            log.append(vec![Record::new(*next, 1, vec![7; 100])]);
                                        *next += 1;
                                        durable
                                    };
                                    durable.await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("appender");
                    }
                });
                appended += rounds * clients;
                start.elapsed()
            })
        });
        let after = log.stats();
        eprintln!(
            "wal {clients} clients: {appended} appends, {} fsyncs ({:.3} per append)",
            after.fsyncs - before.fsyncs,
            (after.fsyncs - before.fsyncs) as f64 / appended.max(1) as f64
        );
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    // Beside the build, on the disk the project lives on (a temporary directory may be
    // in memory).
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&root).expect("target directory");
    let dir = tempfile::tempdir_in(&root).expect("temporary directory");
    fsync_rate(c, dir.path());
    durable_appends(c, dir.path());
}

criterion_group! {
    name = wal;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(wal);
