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

/// The keys of a JSON object, to check a document's shape exactly (a key added or dropped
/// must be a decision, and show up in the README).
fn keys(v: &serde_json::Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set(words: &[&'static str]) -> BTreeSet<&'static str> {
    words.iter().copied().collect()
}

/// `--dry-run --json` is the same plan as the text form, field by field: every job with its
/// module, version, kernel and action, the importer's edge to the exporter, the failures with
/// their reasons, the note and the depmod kernels.
#[test]
fn dry_run_json_is_the_plan_of_the_text_form() {
    let root = fixture_root();
    let text = root.run(&["--dry-run", "-j", "2"], "");
    let out = root.run(&["--dry-run", "--json", "-j", "2"], "");
    assert_eq!(out.code, text.code, "same exit status: {}", out.dump());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", out.dump()));
    assert_eq!(
        keys(&doc),
        set(&[
            "jobs_at_once",
            "jobs",
            "edges",
            "depmod",
            "skipped",
            "failed",
            "notes"
        ])
    );
    assert_eq!(doc["jobs_at_once"], 2);
    let jobs = doc["jobs"].as_array().unwrap();
    let mut lines = BTreeSet::new();
    let mut id_of = std::collections::BTreeMap::new();
    for j in jobs {
        assert_eq!(
            keys(j),
            set(&["id", "module", "version", "kernel", "action", "direct", "prebuilt", "needs"]),
            "{j}"
        );
        assert_eq!(j["action"], "build", "{j}");
        assert_eq!(j["direct"], false, "{j}");
        assert_eq!(j["prebuilt"], false, "{j}");
        let (m, v, k) = (
            j["module"].as_str().unwrap(),
            j["version"].as_str().unwrap(),
            j["kernel"].as_str().unwrap(),
        );
        lines.insert(format!("build  {m}/{v} for {k}"));
        id_of.insert((m.to_string(), k.to_string()), j["id"].as_u64().unwrap());
    }
    assert_eq!(lines, job_lines(&text.stdout), "{}", out.dump());
    // Ids are distinct, and each job's needs are exactly its edges.
    assert_eq!(id_of.len(), jobs.len());
    let edges: BTreeSet<(u64, u64)> = doc["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(keys(e), set(&["from", "to"]), "{e}");
            (e["from"].as_u64().unwrap(), e["to"].as_u64().unwrap())
        })
        .collect();
    let mut want_edges = BTreeSet::new();
    for k in [K1, K2] {
        let id = |m: &str| id_of[&(format!("dkmshook-{m}"), k.to_string())];
        want_edges.insert((id("exporter"), id("importer")));
    }
    assert_eq!(edges, want_edges, "importer builds after exporter");
    let from_needs: BTreeSet<(u64, u64)> = jobs
        .iter()
        .flat_map(|j| {
            let to = j["id"].as_u64().unwrap();
            j["needs"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |n| (n.as_u64().unwrap(), to))
        })
        .collect();
    assert_eq!(from_needs, edges);
    // A dependency starts before what needs it, as in the text's numbering.
    let pos = |id: u64| jobs.iter().position(|j| j["id"] == id).unwrap();
    assert!(edges.iter().all(|&(from, to)| pos(from) < pos(to)));
    assert_eq!(doc["depmod"], serde_json::json!([K1, K2]));
    let fails: Vec<String> = doc["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(keys(d), set(&["subject", "kernel", "reason"]), "{d}");
            format!(
                "  fail {} for {}: {}",
                d["subject"].as_str().unwrap(),
                d["kernel"].as_str().unwrap(),
                d["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(fails.len(), 6, "{}", out.dump());
    assert_eq!(fails, lines_starting(&text.stdout, "  fail "));
    assert_eq!(doc["skipped"], serde_json::json!([]));
    let notes: Vec<String> = lines_starting(&text.stdout, "note: ")
        .iter()
        .map(|n| n["note: ".len()..].to_string())
        .collect();
    assert_eq!(doc["notes"], serde_json::json!(notes));
    assert_no_root_path(&root, &out.combined);
}

/// With the plain module installed for K1, a bare `--dry-run --json -k K1` skips it with its
/// reason, and plans no job for it.
#[test]
fn dry_run_json_gives_skips_with_their_reasons() {
    let root = status_root();
    // dkms's own link is relative (the planner reads V/K/ARCH from it).
    let link = root
        .dkms_tree()
        .join(format!("dkmshook-plain/kernel-{K1}-x86_64"));
    std::fs::remove_file(&link).unwrap();
    symlink(format!("1.0/{K1}/x86_64"), &link).unwrap();
    let out = root.run(&["--dry-run", "--json", "-k", K1], "");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert!(!jobs.is_empty(), "{}", out.dump());
    assert!(
        jobs.iter().all(|j| j["module"] != "dkmshook-plain"),
        "{}",
        out.dump()
    );
    assert_eq!(
        doc["skipped"],
        serde_json::json!([{"subject": "dkmshook-plain/1.0", "kernel": K1,
            "reason": "already installed"}]),
        "{}",
        out.dump()
    );
}

/// `status --json`: one object per line of `status`, with the same module, version, kernel,
/// arch and state; a version that is only added has a null kernel.
#[test]
fn status_json_has_one_object_per_status_line() {
    let root = status_root();
    // Added, built for no kernel.
    let m = root.dkms_tree().join("dkmshook-exporter");
    root.mkdir(m.join("1.0"));
    symlink(
        root.source_tree().join("dkmshook-exporter-1.0"),
        m.join("1.0/source"),
    )
    .unwrap();
    let text = root.run(&["status"], "");
    let out = root.run(&["status", "--json"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", out.dump()));
    let items = doc.as_array().expect("an array");
    let fields = set(&["module", "version", "kernel", "arch", "state", "warnings"]);
    let mut rebuilt = String::new();
    for i in items {
        assert_eq!(keys(i), fields, "{i}");
        let (m, v, state) = (
            i["module"].as_str().unwrap(),
            i["version"].as_str().unwrap(),
            i["state"].as_str().unwrap(),
        );
        match (i["kernel"].as_str(), i["arch"].as_str()) {
            (Some(k), Some(a)) => rebuilt.push_str(&format!("{m}/{v}, {k}, {a}: {state}")),
            _ => rebuilt.push_str(&format!("{m}/{v}: {state}")),
        }
        for w in i["warnings"].as_array().unwrap() {
            rebuilt.push_str(&format!(" ({})", w.as_str().unwrap()));
        }
        rebuilt.push('\n');
    }
    assert_eq!(rebuilt, text.stdout);
    assert_eq!(
        text.stdout,
        format!(
            "dkmshook-exporter/1.0: added\ndkmshook-plain/1.0, {K1}, x86_64: installed\n\
             dkmshook-plain/1.0, {K2}, x86_64: built\n"
        )
    );
    assert_eq!(items[0]["kernel"], serde_json::Value::Null);
    assert_eq!(items[0]["state"], "added");
    assert_eq!(items[1]["state"], "installed");
    // -k keeps the kernel-less line and that kernel's.
    let out = root.run(&["status", "--json", "-k", K2], "");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let states: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["added", "built"], "{}", out.dump());
}

#[test]
fn json_is_refused_for_a_real_run() {
    let root = status_root();
    let out = root.run(&["--json"], "");
    assert_eq!(out.code, 2, "{}", out.dump());
    assert!(out.stderr.contains("--json: only with"), "{}", out.dump());
}

/// `--json` where it has no meaning is refused, not ignored: a script would read text as JSON.
#[test]
fn json_is_refused_where_it_means_nothing() {
    let root = status_root();
    for args in [
        &["orphans", "--json"][..],
        &["lint", "--json", "x.pkg.tar.zst"],
    ] {
        let out = root.run(args, "");
        assert_eq!(out.code, 2, "{args:?}: {}", out.dump());
        assert!(out.stderr.contains("--json: only with"), "{}", out.dump());
    }
}
