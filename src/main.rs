fn main() -> std::process::ExitCode {
    ralf_sh::app::main()
}
