//! The suite's own honesty (issue 16, item 10): a test that cannot run never counts as passed.
//! With dkms 3.4.3 hidden, as in a plain clone (no `shared/dkms` beside it), `tests/run` counts
//! the tests that need it as skipped in its closing line, naming each with the reason, and a test
//! that goes through every newer dkms as run in part; `.ci/run`, which must cover every dkms
//! version, fails them. Both run for real here, in a mount namespace where an empty tmpfs covers
//! `tests/.cache/dkms-3.4.3` and `DKMSHOOK_SHARED` names an empty folder (so tests/setup.sh
//! cannot build it again), each on a few tests chosen by name.

use crate::common::{repo_dir, run_command, RunOutput, SKIPPED_ENV};
use std::process::Command;

/// Two tests that need dkms 3.4.3, one that goes through 3.2.2 and 3.4.3, and a unit test that
/// needs neither.
const FILTERS: [&str; 4] = [
    "newer_dkms::dkms_3_4_3::status_speaks_the_newer_dkms_dialect",
    "signing::dkms_3_4_signs_nothing_in_a_chroot_unless_told",
    "dkmsconf_rules::a_crlf_dkms_conf_builds_and_installs_on_the_newer_dkms",
    "version::tests::orders_like_sort_v",
];

#[test]
#[ignore = "needs root: runs tests/run and .ci/run"]
fn without_dkms_3_4_3_its_tests_are_counted_as_skipped_and_ci_fails() {
    let out = without_dkms_343("tests/run");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        closing_line(&out),
        "tests/run: 2 passed, 0 failed, 2 skipped (1 of the passed ran in part)",
        "{}",
        out.dump()
    );
    let missing = "dkms 3.4.3: ";
    for test in &FILTERS[..2] {
        assert!(
            out.stdout.lines().any(|l| l
                .starts_with(&format!("tests/run: skipped {test}: {missing}"))
                && l.ends_with("missing (no shared/dkms/dkms-3.4.3.tar.gz beside the repository for tests/setup.sh to build it from)")),
            "{test} is not named as skipped, with why: {}",
            out.dump()
        );
    }
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(&format!("tests/run: ran in part {}: {missing}", FILTERS[2]))),
        "{}",
        out.dump()
    );

    let ci = without_dkms_343(".ci/run");
    assert_ne!(
        ci.code,
        0,
        ".ci/run passed without dkms 3.4.3: {}",
        ci.dump()
    );
    assert_eq!(
        closing_line(&ci),
        "tests/run: 1 passed, 3 failed, 0 skipped",
        "{}",
        ci.dump()
    );
    for test in &FILTERS[..3] {
        assert!(
            ci.stdout
                .lines()
                .any(|l| l.starts_with(&format!("test {test} ... FAILED"))),
            "{test} did not fail under .ci/run: {}",
            ci.dump()
        );
    }
    assert!(
        ci.stdout.contains(&format!("cannot run: {missing}")),
        "{}",
        ci.dump()
    );
}

/// Runs `script` (tests/run or .ci/run) on [`FILTERS`] with dkms 3.4.3 out of sight; stdout and
/// stderr together.
fn without_dkms_343(script: &str) -> RunOutput {
    let repo = repo_dir();
    let shared = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "bash", "-c"])
        .arg(
            r#"set -e
            dir=$1 script=$2
            shift 2
            if [[ -d $dir ]]; then mount -t tmpfs dkmshook-hidden "$dir"; fi
            exec bash "$script" "$@" 2>&1"#,
        )
        .arg("without-dkms-3.4.3")
        .arg(repo.join("tests/.cache/dkms-3.4.3"))
        .arg(script)
        .args(FILTERS)
        .current_dir(&repo)
        .env("DKMSHOOK_SHARED", shared.path())
        // What the outer tests/run set for this test is not the inner runs'.
        .env_remove(SKIPPED_ENV)
        .env_remove("DKMSHOOK_NO_SKIP");
    run_command(cmd, "")
}

/// The last line of a run's output.
fn closing_line(out: &RunOutput) -> &str {
    out.stdout.lines().last().unwrap_or_default()
}
