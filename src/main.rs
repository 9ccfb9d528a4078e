//! The `paydrop` binary: the command line and the demo; everything else is
//! the `paydrop` library.

#![forbid(unsafe_code)]

mod cli;
mod demo;

fn main() -> std::process::ExitCode {
    cli::main()
}
