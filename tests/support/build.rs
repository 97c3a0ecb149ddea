//! Tells the integration tests which real services this machine can start: a test that needs
//! one it lacks is reported as ignored, never as passed. On CI (`CI` set) every such test runs,
//! so a missing service fails it: `.ci/run` installs the services, `cargo test` installs nothing.
//! The full-disk test mounts a small tmpfs, so it runs as root (or on CI) only.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_redis_server)");
    println!("cargo::rustc-check-cfg=cfg(can_mount_tmpfs)");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    let on_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
    match on_path("redis-server") {
        Some(found) => {
            println!("cargo::rerun-if-changed={}", found.display());
            println!("cargo::rustc-cfg=has_redis_server");
        }
        None => {
            // Installed later (same PATH): looked for again then.
            println!("cargo::rerun-if-changed=/usr/bin/redis-server");
            if on_ci {
                println!("cargo::rustc-cfg=has_redis_server");
            }
        }
    }
    // A full disk is a small tmpfs, which only root may mount.
    if on_ci || is_root() {
        println!("cargo::rustc-cfg=can_mount_tmpfs");
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
