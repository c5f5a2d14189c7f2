//! runway's registry served in-process (its axum router on 127.0.0.1:0) and driven with
//! the real skopeo and podman binaries, and with raw HTTP for protocol details.

mod auth;
mod crash;
mod gc;
mod harness;
mod hosts;
mod import;
mod podman;
mod protocol;
mod skopeo;
