//! Embeds the SFDX metadata under `salesforce/` (the one source of truth for
//! our custom objects and fields) into the emulator binary, so it runs
//! anywhere without the repository checked out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect(&path, base, out);
        } else if path.to_string_lossy().ends_with("-meta.xml") {
            let rel = path
                .strip_prefix(base)
                .expect("walked path is under its base")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let base = manifest.join("../../salesforce/force-app/main/default");
    println!("cargo:rerun-if-changed={}", base.display());
    let mut files = Vec::new();
    collect(&base, &base, &mut files);
    let mut code = String::from("/// SFDX metadata files embedded at build time: (path relative to force-app/main/default, XML text).\npub static EMBEDDED_METADATA: &[(&str, &str)] = &[\n");
    for (rel, path) in files {
        let abs = path.canonicalize().expect("metadata file exists");
        writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("metadata_files.rs");
    std::fs::write(out, code).expect("writing generated metadata list");
}
