//! `cargo atlas` for the workspace's integration tests: the same `atlas_actix::cli::run` as
//! the published `cargo-atlas` binary.

fn main() -> std::process::ExitCode {
    let code = atlas_actix::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::ExitCode::from(code)
}
