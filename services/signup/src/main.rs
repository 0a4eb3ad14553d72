fn main() -> std::process::ExitCode {
    flotilla_kit::cli::main(&flotilla_signup::SERVICE)
}
