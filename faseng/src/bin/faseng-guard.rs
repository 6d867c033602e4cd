//! `faseng-guard`: the guard faseng starts between itself and each provider
//! (`chima_guard`). Its own binary so that it starts fast: it links the guard
//! and the standard library, nothing of faseng.

fn main() -> std::process::ExitCode {
    chima_guard::main_standalone()
}
