//! `fieldpulse demo` writes `report.html`; headless Chromium opens it with
//! the network off, and the page must render every plot without a console
//! error (issue #11).
//!
//! Needs the `fieldpulse` binary of this workspace (`cargo test --workspace`
//! builds it; alone: `cargo build -p fieldpulse` first) and Chromium
//! (`/usr/bin/chromium`, or the `CHROMIUM` variable; `.ci/run` installs it).
//! Either missing fails the test with what to do.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fieldpulse_tests::fieldpulse_bin;

/// The `data-plot` kinds the page always has (crates/cli/src/demo/html/page.rs).
const PLOT_KINDS: [&str; 3] = ["timeline", "risk", "lead-time"];
/// At most this many timelines and risk plots (html/data.rs).
const MAX_PLOTS: usize = 12;

/// `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CHROMIUM={} is not a file; point it at a Chromium binary or unset it",
            path.display()
        );
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is not installed: the report test opens report.html in headless Chromium. \
         Install it (`apt-get install chromium`, as .ci/run does) or set CHROMIUM to its binary"
    );
}

/// Runs `cmd`, killing it after `limit`; (status success, stdout, stderr).
fn run_with_limit(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default(),
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The report as Chromium rendered it: (DOM after the scripts ran, console lines).
fn render(report: &Path, profile: &Path) -> (String, Vec<String>) {
    let url = format!("file://{}", report.display());
    let (ok, dom, stderr) = run_with_limit(
        Command::new(chromium()).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--log-level=0",
            "--v=0",
            // Nothing may come from the network: every name fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000",
            "--dump-dom",
            &url,
        ]),
        Duration::from_secs(120),
    );
    assert!(ok, "chromium failed on {url}:\n{stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    (dom, console)
}

#[test]
fn demo_report_renders_every_plot_in_headless_chromium_without_console_errors() {
    let bin = fieldpulse_bin();
    let out = tempfile::tempdir().unwrap();
    let demo_out = out.path().join("demo-out");
    // The small size of tests/tests/demo.rs: enough fleet time for Cases.
    let (ok, stdout, stderr) = run_with_limit(
        Command::new(&bin)
            .args([
                "demo",
                "--json",
                "--assets",
                "24",
                "--days",
                "20",
                "--warmup-days",
                "20",
                "--history-assets",
                "24",
                "--duration",
                "6s",
                "--out",
            ])
            .arg(&demo_out),
        Duration::from_secs(600),
    );
    assert!(ok, "demo failed:\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cases = summary["cases"].as_array().expect("cases in the summary");
    assert!(!cases.is_empty(), "the demo opened no Case: {summary}");
    let mut assets: Vec<&str> = cases.iter().filter_map(|c| c["asset"].as_str()).collect();
    assets.sort_unstable();
    assets.dedup();

    let report = demo_out.join("report.html");
    let html = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("reading {}: {e}", report.display()));
    // Self-contained: nothing to fetch (no external script, style, font or image).
    for fetch in ["src=", "<link", "@import", "url(", "<iframe", "<object"] {
        assert_eq!(count(&html, fetch), 0, "{fetch} in report.html");
    }

    let profile = out.path().join("chromium-profile");
    let (dom, console) = render(&report, &profile);
    assert!(
        console.is_empty(),
        "the page logged to the console:\n{}",
        console.join("\n")
    );
    // The script ran to its end and saw every plot.
    let n_plots = count(&dom, "data-plot=\"");
    assert!(
        dom.contains(&format!("data-rendered=\"{n_plots}\"")),
        "the page's script did not finish (no data-rendered=\"{n_plots}\" on <body>)"
    );
    for kind in PLOT_KINDS {
        assert!(
            dom.contains(&format!("data-plot=\"{kind}\"")),
            "no {kind} plot in the rendered page"
        );
    }
    let plots_of = |kind: &str| count(&dom, &format!("data-plot=\"{kind}\""));
    assert_eq!(plots_of("timeline"), cases.len().min(MAX_PLOTS));
    assert_eq!(plots_of("risk"), assets.len().min(MAX_PLOTS));
    assert_eq!(plots_of("lead-time"), 1);
    // Each plotted Case has readings to draw; every plot starts with its title.
    let mut drawn_timelines = 0;
    for plot in dom.split("<svg").skip(1) {
        let (tag, body) = plot.split_at(plot.find('>').unwrap_or(0));
        if !tag.contains("data-plot=") {
            continue;
        }
        assert!(
            body[1..].starts_with("<title>"),
            "a plot without a title: <svg{tag}>"
        );
        if tag.contains("data-plot=\"timeline\"") && !tag.contains("data-empty") {
            drawn_timelines += 1;
        }
    }
    assert_eq!(drawn_timelines, plots_of("timeline"));
    // Every Case is a row, linked to its record in the emulator's REST API.
    for n in 1..=cases.len() {
        assert!(
            dom.contains(&format!("id=\"case-{n}\"")),
            "no row for Case {n}"
        );
    }
    assert!(count(&dom, "/sobjects/Case/") >= cases.len());
}
