//! The command line end to end without root, dkms or kernel headers: `--dry-run --root` and
//! `status --root` on a root built from our fixtures, with kernels that count as having headers
//! (an empty `build/Makefile`). These run under plain `cargo test`.

use crate::common::{TestRoot, BIN};
use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};

const K1: &str = "6.1.0-1-amd64";
const K2: &str = "6.1.0-2-amd64";

/// Every fixture, two kernels with "headers", one kernel directory without, and two dkms.conf
/// files that give nothing: an empty one and one that ends in `exit 3`.
fn fixture_root() -> TestRoot {
    let root = TestRoot::new();
    for name in [
        "dkmshook-plain-1.0",
        "dkmshook-broken-1.0",
        "dkmshook-badconf-1.0",
        "dkmshook-exporter-1.0",
        "dkmshook-importer-1.0",
        "dkmshook-wrongkernel-1.0",
    ] {
        root.add_fixture(name);
    }
    root.write_file("usr/src/empty-1.0/dkms.conf", "");
    root.write_file(
        "usr/src/exits-1.0/dkms.conf",
        "PACKAGE_NAME=exits\nPACKAGE_VERSION=1.0\nAUTOINSTALL=yes\nexit 3\n",
    );
    root.add_fake_kernel(K1);
    root.add_fake_kernel(K2);
    root.mkdir("usr/lib/modules/6.0.0-old");
    root
}

/// The job lines of a dry run without their rank (`build M/V for K`), as a set: the order is
/// the queue's business.
fn job_lines(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.trim_start().split_once(". "))
        .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
        .map(|(_, rest)| rest.split("  (after").next().unwrap().trim().to_string())
        .collect()
}

fn lines_starting(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// One rule for paths: every path is shown as the admin sees it on the system, never with the
/// `--root` directory in front.
fn assert_no_root_path(root: &TestRoot, text: &str) {
    let shown = root.path().display().to_string();
    assert!(
        !text.contains(&shown),
        "a path keeps the root {shown}:\n{text}"
    );
}

#[test]
fn dry_run_plans_every_fixture_and_fails_every_unreadable_candidate() {
    let root = fixture_root();
    let out = root.run(&["--dry-run", "-j", "2"], "");
    assert_eq!(
        out.code,
        1,
        "a dkms.conf that cannot be read fails: {}",
        out.dump()
    );
    let mut want = BTreeSet::new();
    for m in ["plain", "broken", "exporter", "importer", "wrongkernel"] {
        for k in [K1, K2] {
            want.insert(format!("build  dkmshook-{m}/1.0 for {k}"));
        }
    }
    assert_eq!(job_lines(&out.stdout), want, "{}", out.dump());
    assert!(
        out.stdout
            .starts_with("dry run: 10 jobs, up to 2 at once; nothing is changed\n"),
        "{}",
        out.dump()
    );
    assert_eq!(
        lines_starting(&out.stdout, "note: "),
        [
            "note: kernel 6.0.0-old has no headers (/usr/lib/modules/6.0.0-old/build/Makefile is \
          missing): nothing is built for it"
        ]
    );
    let syntax = "line 10: syntax error: unexpected end of file";
    let stopped = "evaluation stopped early (does it call exit?)";
    let mut fails = Vec::new();
    for (conf, why) in [
        ("dkmshook-badconf-1.0", syntax),
        ("empty-1.0", "no PACKAGE_NAME directive"),
        ("exits-1.0", stopped),
    ] {
        for k in [K1, K2] {
            fails.push(format!("  fail /usr/src/{conf}/dkms.conf for {k}: {why}"));
        }
    }
    assert_eq!(lines_starting(&out.stdout, "  fail "), fails);
    assert_eq!(
        lines_starting(&out.stdout, "      depmod "),
        [format!("      depmod {K1}"), format!("      depmod {K2}")]
    );
    assert_no_root_path(&root, &out.combined);
}

/// Defect: a new kernel left out, without a word, every module whose dkms.conf gave nothing.
#[test]
fn a_new_kernel_fails_every_unreadable_candidate_for_itself() {
    let root = fixture_root();
    let out = root.run(
        &["--dry-run", "install"],
        &format!("usr/lib/modules/{K2}/modules.order\n"),
    );
    assert_eq!(out.code, 1, "{}", out.dump());
    let fails = lines_starting(&out.stdout, "  fail ");
    assert_eq!(fails.len(), 3, "{}", out.dump());
    for conf in ["dkmshook-badconf-1.0", "empty-1.0", "exits-1.0"] {
        let prefix = format!("  fail /usr/src/{conf}/dkms.conf for {K2}: ");
        assert!(fails.iter().any(|f| f.starts_with(&prefix)), "{fails:?}");
    }
    assert!(job_lines(&out.stdout).iter().all(|j| j.ends_with(K2)));
    assert_no_root_path(&root, &out.combined);
}

/// `remove` of a source whose dkms.conf cannot be read and that dkms does not know: a failure
/// to remove, shown as on the system.
#[test]
fn dry_run_remove_names_the_source_as_on_the_system() {
    let root = fixture_root();
    let out = root.run(&["--dry-run", "remove"], "usr/src/empty-1.0/dkms.conf\n");
    assert_eq!(out.code, 1, "{}", out.dump());
    assert_eq!(
        lines_starting(&out.stdout, "  fail "),
        [
            "  fail /usr/src/empty-1.0: cannot tell which module to remove: no PACKAGE_NAME \
          directive"
        ]
    );
    assert_no_root_path(&root, &out.combined);
}

/// A dkms tree as dkms leaves it: dkmshook-plain/1.0 installed for K1 and built for K2.
fn status_root() -> TestRoot {
    let root = fixture_root();
    let m = root.dkms_tree().join("dkmshook-plain");
    root.mkdir(m.join("1.0"));
    symlink(
        root.source_tree().join("dkmshook-plain-1.0"),
        m.join("1.0/source"),
    )
    .unwrap();
    for k in [K1, K2] {
        root.write_file(
            m.join(format!("1.0/{k}/x86_64/module/dkmshook_plain.ko")),
            "not really a module",
        );
    }
    symlink(
        m.join(format!("1.0/{K1}/x86_64")),
        m.join(format!("kernel-{K1}-x86_64")),
    )
    .unwrap();
    root.write_file(
        root.kernel_dir(K1).join("updates/dkms/dkmshook_plain.ko"),
        "not really a module",
    );
    root
}

#[test]
fn status_reads_the_trees_under_the_root() {
    let root = status_root();
    let out = root.run(&["status"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.stdout,
        format!(
            "dkmshook-plain/1.0, {K1}, x86_64: installed\ndkmshook-plain/1.0, {K2}, x86_64: built\n"
        )
    );
    assert_no_root_path(&root, &out.combined);
}

/// Defect: `-k` was silently ignored by `status`.
#[test]
fn status_honours_k() {
    let root = status_root();
    let out = root.run(&["status", "-k", K2], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        out.stdout,
        format!("dkmshook-plain/1.0, {K2}, x86_64: built\n")
    );
}

/// Defect: `status -k nonsense` printed the kernel-less lines and exited 0, where every other
/// mode refuses an unknown kernel with exit 2: a typo went unnoticed.
#[test]
fn status_refuses_an_unknown_kernel() {
    let root = status_root();
    let out = root.run(&["status", "-k", "nonsense"], "");
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(
        out.stderr
            .contains("-k nonsense: no such kernel under /usr/lib/modules"),
        "{}",
        out.dump()
    );
    assert_eq!(out.stdout, "");
    assert_no_root_path(&root, &out.combined);
}

/// Defect: `dkms-hook status | head -1` printed `error: Broken pipe` and exited 2. A reader that
/// stops reading ends the output quietly, with the status the run would have had (0 here).
#[test]
fn a_closed_pipe_ends_status_quietly() {
    let root = status_root();
    let mut cmd = Command::new(BIN);
    cmd.arg("--root").arg(root.path()).arg("status");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before dkms-hook writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// The evaluator's bash (src/dkmsconf.sh, and src/status.sh, which runs in front of it) is
/// shellcheck-clean, as the two run together.
#[test]
#[ignore = "needs shellcheck (tests/setup.sh installs it)"]
fn the_evaluator_is_shellcheck_clean() {
    let src = crate::common::repo_dir().join("src");
    let joined = format!(
        "{}\n{}",
        std::fs::read_to_string(src.join("status.sh")).unwrap(),
        std::fs::read_to_string(src.join("dkmsconf.sh")).unwrap()
    );
    for (what, input) in [
        (
            "dkmsconf.sh",
            std::fs::read_to_string(src.join("dkmsconf.sh")).unwrap(),
        ),
        ("status.sh + dkmsconf.sh", joined),
    ] {
        let mut child = Command::new("shellcheck")
            .args(["-s", "bash", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running shellcheck");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{what}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
