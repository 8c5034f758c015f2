//! The ID generator's full simulation: 1,000 nodes under seeded faults, 100 million IDs by
//! default, checked for duplicates. Run it optimised:
//!
//! ```text
//! cargo run --release -p meridian-server --example id-sim -- --ids 100000000 [--nodes 1000] [--seed N]
//! ```
//!
//! The seed is printed; `--seed N` (or `MERIDIAN_SIM_SEED=N`) replays a run exactly. Exits
//! non-zero when a check fails.

use std::process::ExitCode;

use meridian_server::ids::sim::{self, SimConfig};

fn main() -> ExitCode {
    let mut ids: u64 = 100_000_000;
    let mut nodes: usize = 1000;
    let mut seed: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.replace('_', "").parse::<u64>().ok())
                .unwrap_or_else(|| {
                    eprintln!("{name} needs a number");
                    std::process::exit(2)
                })
        };
        match arg.as_str() {
            "--ids" => ids = value("--ids"),
            "--nodes" => nodes = value("--nodes") as usize,
            "--seed" => seed = Some(value("--seed")),
            other => {
                eprintln!("unknown argument {other:?}; use --ids N --nodes N --seed N");
                return ExitCode::from(2);
            }
        }
    }
    let seed = seed.unwrap_or_else(sim::seed_from_env);
    println!("simulating {ids} IDs on {nodes} nodes; seed {seed}");
    let report = sim::run(&SimConfig::new(seed, nodes, ids));
    println!("{report}");
    if report.ok() && report.ids >= ids {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
