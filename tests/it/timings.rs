//! `--timings FILE` after a real run: real dkms builds of our fixtures for two kernels, one module
//! that builds and one that fails, two jobs at once; the page must show each job as a bar with its
//! name, kernel and outcome, be well-formed, and fetch nothing.

use crate::common::{two_newest_kernels, TestRoot};

/// The elements of `html` nest properly (every opened element closed in order, void elements
/// aside) and the page is one `<html>` element: what a browser needs to read it as written.
fn assert_well_formed(html: &str) {
    const VOID: [&str; 4] = ["meta", "br", "hr", "img"];
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("an unterminated tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if let Some(closing) = tag.strip_prefix('/') {
            let name = closing.trim();
            assert_eq!(
                open.pop().as_deref(),
                Some(name),
                "</{name}> closes nothing open"
            );
        } else if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "left open: {open:?}");
    assert!(html.starts_with("<!DOCTYPE html>\n<html"));
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_real_run_writes_one_bar_per_job() {
    let root = TestRoot::new();
    let (k1, k2) = two_newest_kernels();
    root.add_kernel(&k1);
    root.add_kernel(&k2);
    root.add_fixture("dkmshook-plain-1.0");
    root.add_fixture("dkmshook-broken-1.0");
    let page = root.path().join("timings.html");
    let out = root.run(&["-j", "2", "--timings", page.to_str().unwrap()], "");
    assert_eq!(out.code, 1, "the broken fixture fails: {}", out.dump());
    let html = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{e}: {}", out.dump()));
    assert_well_formed(&html);
    let bars: Vec<&str> = html
        .match_indices(r#"<g class="bar "#)
        .map(|(i, _)| html[i..].split('>').next().unwrap())
        .collect();
    let jobs: Vec<&&str> = bars
        .iter()
        .filter(|b| !b.contains(r#"data-name="depmod""#))
        .collect();
    assert_eq!(jobs.len(), 4, "{bars:#?}");
    for k in [&k1, &k2] {
        for (name, outcome) in [
            ("dkmshook-plain/1.0", "built"),
            ("dkmshook-broken/1.0", "failed"),
        ] {
            let want = format!(r#"data-name="{name}" data-kernel="{k}" data-outcome="{outcome}""#);
            assert_eq!(
                jobs.iter().filter(|b| b.contains(&want)).count(),
                1,
                "{want} in {bars:#?}"
            );
        }
        // plain changed the kernel's modules: depmod ran for it, and is on the page.
        let depmod = format!(r#"data-name="depmod" data-kernel="{k}" data-outcome="depmod""#);
        assert!(bars.iter().any(|b| b.contains(&depmod)), "{bars:#?}");
    }
    // The failure says why, in the tooltip and the table.
    assert!(html.contains("make failed"), "{html}");
    // Two jobs at once: two slots, no more.
    assert!(
        html.contains(">slot 2<") && !html.contains(">slot 3<"),
        "{html}"
    );
    let without_ns = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    assert!(
        !without_ns.contains("http://") && !without_ns.contains("https://"),
        "the page fetches nothing"
    );
    assert!(!html.contains("<script") && !html.contains("<link"));
}

/// `--timings` on a dry run is refused: a dry run has no timeline, and saying so beats an
/// empty page.
#[test]
fn timings_is_refused_for_a_dry_run_or_status() {
    let root = TestRoot::new();
    for args in [
        &["--dry-run", "--timings", "t.html"][..],
        &["status", "--timings", "t.html"],
    ] {
        let out = root.run(args, "");
        assert_eq!(out.code, 2, "{}", out.dump());
        assert!(
            out.stderr.contains("--timings: only for a run"),
            "{}",
            out.dump()
        );
    }
}
