fn main() {
    std::process::exit(lafs_runtime_std::debug::main_placeholder());
}
