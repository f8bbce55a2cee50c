//! The `winback` binary: a thin composition root; everything lives in the `winback_cli` library.

// Rendering (html5ever, mrml, minijinja) and the HTTP service allocate many short-lived small
// strings; mimalloc serves them faster than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    winback_cli::main()
}
