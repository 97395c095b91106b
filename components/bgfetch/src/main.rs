//! The `bgfetch` program.

fn main() {
    std::process::exit(bgfetch::cli::main());
}
