//! Build script shared by the workspace crates that produce binaries (CLIs, tests, benches,
//! the server, the C library): replays skinlesion-core's libtorch link arguments (rpath to the
//! venv's torch/lib, forced libtorch_cuda), which cargo does not pass on to dependents.
pub fn main() {
    let args = std::env::var("DEP_SKINLESION_LINK_ARGS").unwrap_or_default();
    for arg in args.split('\t').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
}
