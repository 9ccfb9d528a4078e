//! The `paydrop` binary: the command line only; everything else is the library.

fn main() -> std::process::ExitCode {
    paydrop::cli::main()
}
