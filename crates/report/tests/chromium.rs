//! `report.html` opened in headless Chromium: every chart image loads with its full size, and a
//! screenshot of the page shows the charts' colours. Needs a Chromium (`chromium`,
//! `chromium-browser`, `google-chrome`, or the path in `$CHROME`); without one the test fails
//! with instructions. It never skips. As root on Debian it installs `chromium` with apt-get
//! first, as the other oracles provision themselves.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn find_chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROME") {
        return PathBuf::from(p);
    }
    if let Some(p) = on_path() {
        return p;
    }
    // Provisioned like the other oracles: Debian's package, when we may install packages.
    if tb_testkit::debian_package("chromium", || on_path().is_some()) {
        if let Some(p) = on_path() {
            return p;
        }
    }
    panic!(
        "headless Chromium is needed for this test and none was found on PATH (and it could not be installed with apt-get).\n\
         Install it (Debian/Ubuntu: `apt-get install -y chromium`) or set CHROME=/path/to/chrome."
    );
}

fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn chromium(args: &[String], profile: &Path) -> String {
    let exe = find_chromium();
    // Output goes to a file: a pipe would fill up (the DOM carries the base64 charts) and
    // block Chromium before it exits.
    let out_path = profile.with_extension("out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new(&exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", exe.display()));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = std::fs::read_to_string(&out_path).unwrap();
            assert!(
                status.success(),
                "{} {args:?} failed: {status}",
                exe.display()
            );
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} {args:?} did not finish in 180 s", exe.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_chart_loads_in_headless_chromium() {
    let inputs = common::fixture_inputs();
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();
    assert!(out.charts.len() >= 6);

    // 1. Image load check: a copy of the page with a script that reports every image's state.
    let html = std::fs::read_to_string(&out.html).unwrap();
    let probe = "<script>window.addEventListener('load',()=>{document.title=[...document.images]\
                 .map(i=>(i.complete?'ok':'pending')+':'+i.naturalWidth+'x'+i.naturalHeight).join(' ')})</script></body>";
    let check = dir.path().join("check.html");
    std::fs::write(&check, html.replace("</body>", probe)).unwrap();
    let dom = chromium(
        &[
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
            format!("file://{}", check.display()),
        ],
        &dir.path().join("profile1"),
    );
    // The answers side by side: one collapsed <details> per fixture question, and an answer
    // holding markup parsed as text, not as an element.
    let details = dom.matches("<details class=\"answers\">").count();
    assert_eq!(details, 2, "collapsed answer blocks in the DOM");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry"),
        "the answer with markup is not text in the DOM"
    );
    let title = dom
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(t, _)| t.to_string())
        .unwrap_or_default();
    let states: Vec<&str> = title.split_whitespace().collect();
    assert_eq!(
        states.len(),
        out.charts.len(),
        "images in the page: {title}"
    );
    // Each image loads at its PNG's size (960 wide; taller where the legend sits below). The
    // page orders charts by section, so the two lists are compared sorted.
    let mut want: Vec<String> = out
        .charts
        .iter()
        .map(|c| {
            let (w, h) = image::image_dimensions(&c.png).unwrap();
            assert_eq!(w, 960, "{}", c.png.display());
            format!("ok:{w}x{h}")
        })
        .collect();
    want.sort();
    let mut states = states;
    states.sort();
    assert_eq!(states, want, "image states: {title}");

    // 2. Screenshot of the real page: the charts' bar and line colours must be on it.
    let shot = dir.path().join("shot.png");
    chromium(
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,9000".into(),
            format!("file://{}", out.html.display()),
        ],
        &dir.path().join("profile2"),
    );
    let img = image::open(&shot).expect("screenshot is a PNG").to_rgb8();
    assert_eq!(img.dimensions(), (1280, 9000));
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    let blue = count([31, 119, 180]);
    let orange = count([255, 127, 14]);
    assert!(blue > 5_000, "chart blue pixels on the screenshot: {blue}");
    assert!(
        orange > 2_000,
        "chart orange pixels on the screenshot: {orange}"
    );
}
