//! The `meridian` binary, built inside this crate so that fault tests can start, kill -9
//! and restart real server processes (`CARGO_BIN_EXE_meridian-under-test`).

fn main() -> std::process::ExitCode {
    meridian_server::cli::main()
}
