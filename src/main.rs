//! The `sentinel-vip` command line (see `sentinel_vip::cli`).

fn main() -> std::process::ExitCode {
    sentinel_vip::cli::main()
}
