//! The `winback` binary: a thin composition root; everything lives in the `winback_cli` library.

fn main() -> std::process::ExitCode {
    winback_cli::main()
}
