//! `cargo atlas`: see `atlas_actix::cli`.

fn main() -> std::process::ExitCode {
    let code = atlas_actix::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::ExitCode::from(code)
}
