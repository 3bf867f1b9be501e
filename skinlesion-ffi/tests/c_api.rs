//! The C API from C and C++: the examples, compiled with the system compilers against the
//! checked-in header and the freshly built library (found through its pkg-config file), agree
//! with the Rust core on real HAM10000 images; the error-path program passes under valgrind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skinlesion_core::testing::{ham10000_sample, shipped_model};
use skinlesion_core::{Classifier, Device};

/// The core's mean-colour test network with a dermoscopy gate that accepts every real image.
fn tiny_gated_model(dir: &Path) -> PathBuf {
    use skinlesion_core::testing::{write_gated_mean_colour_model, MeanColourWeights};
    use skinlesion_core::{Calibration, DermoscopyGate, GateScore, LesionClass};
    let classes = LesionClass::DIAGNOSES;
    let calibration = Calibration {
        unknown_threshold: 0.2,
        dermoscopy_gate: Some(DermoscopyGate {
            score: GateScore::Mahalanobis,
            threshold: 1e6,
        }),
        ..Calibration::default()
    };
    let weights = MeanColourWeights::distinct(classes.len());
    write_gated_mean_colour_model(dir, "tiny", &classes, &weights, [0.0; 3], calibration).unwrap()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The folder with the libskinlesion.so/.a that cargo built for this test run: the test
/// binary's own (`target/<profile>/deps`). The pkg-config files live one level up.
fn lib_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pkg_config(package: &str) -> Vec<String> {
    let lib_dir = lib_dir();
    let out = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", lib_dir.parent().unwrap())
        .arg(format!("--define-variable=libdir={}", lib_dir.display()))
        .args(["--cflags", "--libs", package])
        .output()
        .expect("pkg-config runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compiles `source` with warnings as errors into a program in a fresh temporary folder (which
/// the caller keeps alive), linked against pkg-config `package`.
fn compile(
    compiler: &str,
    std: &str,
    source: &Path,
    package: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join(source.file_stem().unwrap());
    let status = Command::new(compiler)
        .args([std, "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"])
        .arg(source)
        .arg("-o")
        .arg(&program)
        .args(pkg_config(package))
        .status()
        .expect("the compiler runs");
    assert!(
        status.success(),
        "{compiler} failed on {}",
        source.display()
    );
    (dir, program)
}

/// The program's stdout, after checking it exited successfully.
fn success(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs an example on real test images and checks each line against the Rust core.
fn example_agrees_with_core(binary: &Path) {
    let mut images: Vec<PathBuf> = ham10000_sample("test", 16)
        .into_iter()
        .map(|i| i.path)
        .collect();
    // And a photograph that is not dermoscopy, which the gate refuses.
    images.push(workspace().join("skinlesion-core/tests/data/not-dermoscopy/coffee.jpg"));
    let out = Command::new(binary)
        .arg(shipped_model())
        .args(&images)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let shows_disclaimer = String::from_utf8_lossy(&out.stderr).contains("not a medical device");
    let stdout = success(out, &binary.display().to_string());
    assert!(
        shows_disclaimer,
        "{} shows the disclaimer",
        binary.display()
    );
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .build()
        .unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), images.len(), "{stdout}");
    for (line, image) in lines.iter().zip(&images) {
        let expected = classifier.classify(image).unwrap();
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[0], image.display().to_string());
        assert_eq!(fields[1], expected.class().code(), "{line}");
        assert_eq!(fields[2], expected.class().name(), "{line}");
        let confidence: f32 = fields[3].parse().unwrap();
        assert!((confidence - expected.confidence()).abs() < 1e-5, "{line}");
        let cancerous = if expected.is_cancerous() {
            "cancerous"
        } else {
            "not cancerous"
        };
        assert_eq!(fields[4], cancerous, "{line}");
        let reason = expected.unknown_reason().map_or("-", |r| r.code());
        assert_eq!(fields[5], reason, "{line}");
    }
    assert!(
        lines.last().unwrap().ends_with("\tnot_dermoscopy"),
        "{stdout}"
    );
}

#[test]
fn c_example_links_the_shared_library_and_agrees_with_the_core() {
    let (dir, binary) = compile(
        "cc",
        "-std=c11",
        &workspace().join("examples/c/classify.c"),
        "skinlesion",
    );
    example_agrees_with_core(&binary);

    // --overlay: the same answers, and each image's overlay exactly as the core renders it.
    let images: Vec<PathBuf> = ham10000_sample("test", 3)
        .into_iter()
        .map(|i| i.path)
        .collect();
    let overlays = dir.path().join("overlays");
    std::fs::create_dir(&overlays).unwrap();
    let out = Command::new(&binary)
        .arg("--overlay")
        .arg(&overlays)
        .arg(shipped_model())
        .args(&images)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = success(out, "the example with --overlay");
    let classifier = Classifier::builder(shipped_model())
        .device(Device::Cpu)
        .build()
        .unwrap();
    for (n, (line, image)) in stdout.lines().zip(&images).enumerate() {
        let expected = classifier.explain(image, None).unwrap();
        assert!(
            line.contains(expected.prediction().class().code()),
            "{line}"
        );
        let written = skinlesion_core::image::open(overlays.join(format!("{}.png", n + 1)))
            .unwrap()
            .to_rgb8();
        let decoded = skinlesion_core::image::open(image).unwrap();
        assert_eq!(written, expected.heatmap().overlay(&decoded));
    }
}

#[test]
fn cpp_example_links_the_static_library_and_agrees_with_the_core() {
    let (_dir, binary) = compile(
        "c++",
        "-std=c++17",
        &workspace().join("examples/cpp/classify.cpp"),
        "skinlesion-static",
    );
    // Statically linked: no libskinlesion.so needed at run time.
    let needed = Command::new("readelf").arg("-d").arg(&binary).output();
    if let Ok(needed) = needed {
        assert!(!String::from_utf8_lossy(&needed.stdout).contains("libskinlesion.so"));
    }
    example_agrees_with_core(&binary);
}

#[test]
fn every_error_path_is_an_error_under_valgrind() {
    let (dir, binary) = compile(
        "cc",
        "-std=c11",
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/errors.c"),
        "skinlesion",
    );
    // A tiny gated model (valgrind runs every forward pass about 50× slower: the shipped
    // network would take minutes), and a copy whose weights are cut short: the checksum no
    // longer matches.
    let manifest = tiny_gated_model(dir.path());
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let weights = manifest.with_extension("pt");
    let bad_manifest = bad.join(manifest.file_name().unwrap());
    std::fs::copy(&manifest, &bad_manifest).unwrap();
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(
        bad.join(weights.file_name().unwrap()),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let image = &ham10000_sample("test", 1)[0].path;
    let args = [manifest, image.clone(), bad_manifest];

    // Like the examples, found through their rpath alone: cargo's LD_LIBRARY_PATH would put
    // target/<profile>'s libskinlesion.so, possibly stale, before the one built for this run.
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if !valgrind {
        // CI installs valgrind (scripts/setup.sh --test); elsewhere run the checks plainly.
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is missing in CI"
        );
        eprintln!("valgrind not found: running the error checks without it");
        success(
            Command::new(&binary)
                .args(&args)
                .env_remove("LD_LIBRARY_PATH")
                .output()
                .unwrap(),
            "the error checks",
        );
        return;
    }
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite",
        ])
        .arg(format!(
            "--suppressions={}",
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/c/libtorch.supp")
                .display()
        ))
        .arg(&binary)
        .args(&args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = success(out, "the error checks under valgrind");
    assert!(stdout.contains("all checks passed"));
}

#[test]
fn readme_c_example_compiles() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let example = readme
        .split("```c\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README has a C example");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("readme.c");
    std::fs::write(&source, example).unwrap();
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(dir.path().join("readme.o"))
        .args(pkg_config("skinlesion"))
        .status()
        .unwrap();
    assert!(status.success(), "the README's C example does not compile");
}
