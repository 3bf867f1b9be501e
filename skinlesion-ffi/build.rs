//! Links libskinlesion.so with libtorch's rpath (as every workspace binary), and writes
//! pkg-config files for using the library straight from the build directory.
use std::path::{Path, PathBuf};

#[path = "../scripts/libtorch-link-args.rs"]
mod libtorch_link_args;

fn main() {
    libtorch_link_args::main();
    println!("cargo:rerun-if-changed=build.rs");
    let (Some(out_dir), Some(manifest_dir)) = (
        std::env::var_os("OUT_DIR"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return;
    };
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out; the libraries land in <target>/<profile>.
    let Some(lib_dir) = Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
    else {
        return;
    };
    let include_dir = PathBuf::from(manifest_dir).join("include");
    let torch_lib = std::env::var("DEP_SKINLESION_LIBTORCH_LIB").unwrap_or_default();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    for (name, pc) in pkg_config_files(&lib_dir, &include_dir, &torch_lib, &version) {
        // Best effort: a read-only target directory must not fail the build.
        let _ = std::fs::write(lib_dir.join(name), pc);
    }
}

/// `skinlesion.pc` links the shared library (which finds libtorch by its own rpath);
/// `skinlesion-static.pc` links the static library plus libtorch and the C++ runtime.
fn pkg_config_files(
    lib_dir: &Path,
    include_dir: &Path,
    torch_lib: &str,
    version: &str,
) -> [(&'static str, String); 2] {
    let head = |description: &str| {
        format!(
            "libdir={}\nincludedir={}\ntorchlibdir={torch_lib}\n\n\
             Name: skinlesion\n\
             Description: {description} (research and education only; not a medical device)\n\
             Version: {version}\n\
             Cflags: -I${{includedir}}\n",
            lib_dir.display(),
            include_dir.display(),
        )
    };
    [
        (
            "skinlesion.pc",
            head("Dermoscopic skin-lesion classification, shared library")
                + "Libs: -L${libdir} -Wl,-rpath,${libdir} -lskinlesion\n",
        ),
        (
            "skinlesion-static.pc",
            head("Dermoscopic skin-lesion classification, static library")
                + "Libs: ${libdir}/libskinlesion.a -L${torchlibdir} -Wl,-rpath,${torchlibdir} \
                   -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed \
                   -lstdc++ -lpthread -ldl -lm\n",
        ),
    ]
}
