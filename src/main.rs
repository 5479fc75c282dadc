fn main() -> std::process::ExitCode {
    devcluster::main()
}
