//! The instance shim as its own program, for this crate's tests; `runway shim` runs the
//! same entry point from the runway binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    runway_runtime::shim::main(std::env::args_os().skip(1))
}
