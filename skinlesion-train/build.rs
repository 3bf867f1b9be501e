// Replays skinlesion-core's libtorch link arguments (rpath, CUDA) for this crate's binaries.
fn main() {
    let args = std::env::var("DEP_SKINLESION_LINK_ARGS").unwrap_or_default();
    for arg in args.split('\t').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
}
