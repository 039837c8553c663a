//! Records the git commit the binary was built from as `FIELDPULSE_GIT_SHA`
//! (model cards cite it as the code version). An explicit
//! `FIELDPULSE_GIT_SHA` in the build environment wins; outside a git
//! checkout (a source tarball) it is simply absent.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=FIELDPULSE_GIT_SHA");
    if let Ok(sha) = std::env::var("FIELDPULSE_GIT_SHA") {
        println!("cargo:rustc-env=FIELDPULSE_GIT_SHA={sha}");
        return;
    }
    let Some(sha) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=FIELDPULSE_GIT_SHA={sha}");
    // Rebuild when HEAD moves: the worktree's HEAD (a branch switch or a
    // detached commit), the branch's ref (a commit) and packed refs. Only
    // files that exist: cargo reruns every build for a missing one.
    let mut watch: Vec<PathBuf> = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(PathBuf::from(dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        watch.push(common.join("packed-refs"));
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(head_ref));
        }
    }
    for path in watch.into_iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
