//! The `meridian` binary: everything lives in the library; see `meridian_server::cli`.

fn main() -> std::process::ExitCode {
    meridian_server::cli::main()
}
