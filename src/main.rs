fn main() {
    std::process::exit(s3cryptfs::cli::main());
}
