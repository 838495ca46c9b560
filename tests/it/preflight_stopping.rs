//! The preflight stopped mid-trial, and what its trial may touch: killed with SIGKILL, no
//! process of the trial outlives the lock (the view's child and the dkms, make and compiler
//! groups it started die first); told to stop (SIGINT), the builds it did not finish are
//! reported as not checked, not as failures; and what a build writes outside the trees it
//! is meant to write (a PRE_BUILD's files in /tmp and /boot, dkms's `post_transaction`) stays in
//! the view. On real dkms, real headers, our fixtures.

use crate::common::TestRoot;
use crate::preflight::{scratch, trial_root};
use crate::stopping::{marked, start_with_input, wait_for_process, wait_until_none};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits up to `limit` for the run lock of `root` to be free, and takes it (released when the
/// returned file is dropped).
fn take_lock(root: &TestRoot, limit: Duration) -> fs::File {
    let file = fs::File::open(root.join("run/dkms-hook.lock")).expect("the run lock file");
    let end = Instant::now() + limit;
    loop {
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return file;
        }
        assert!(
            Instant::now() < end,
            "the lock is still held {limit:?} after the preflight died: {:?}",
            fs::read_to_string(root.join("run/dkms-hook.lock"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`crate::stopping::hold_pre_build`], the held PRE_BUILD deaf to the stopping signals (as
/// a build step that takes its time to stop): only SIGKILL ends it, so nothing but the run's
/// own killing can make the test pass.
fn hold_pre_build_deaf(root: &TestRoot, dir: &str) -> std::path::PathBuf {
    let hold = crate::stopping::hold_pre_build(root, dir);
    root.write_file(
        format!("usr/src/{dir}/hold.sh"),
        format!(
            "#!/bin/sh\n# Test hook: waits while {} exists, deaf to SIGTERM, SIGINT, SIGHUP.\n\
             trap '' TERM INT HUP\n[ -e '{}' ] && exec sleep 1000.5\nexit 0\n",
            hold.display(),
            hold.display()
        ),
    );
    hold
}

/// The preflight's arguments for the headers package `headers`.
fn args(headers: &Path) -> Vec<String> {
    vec![
        "preflight".into(),
        "--package".into(),
        headers.display().to_string(),
    ]
}

/// Issue: `kill -9` of the preflight while its view's child builds left the child's dkms and
/// make running, and the lock free, so a new run could start beside them. The trial's build of
/// the staying module for the new kernel is held in its PRE_BUILD (real dkms); the preflight is
/// killed; once the lock is free, no process of the run is left.
#[test]
#[ignore = "needs root, dkms, bsdtar and kernel headers: run tests/run"]
fn sigkill_of_the_preflight_mid_trial_leaves_no_build_once_the_lock_is_free() {
    let (_tmp, work, pkgs) = scratch();
    let (root, _old, new, headers, _broken) = trial_root(&work, &pkgs);
    let _hold = hold_pre_build_deaf(&root, "dkmshook-plain-1.0");
    let mark = format!("preflight-sigkill-{}", std::process::id());
    let targets = format!("usr/lib/modules/{new}/build/include/\n");
    let args = args(&headers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = start_with_input(&root, &args, &mark, Some(&targets));
    wait_for_process(&mark, "sleep 1000.5", Duration::from_secs(300));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGKILL) };
    let out = run.finish();
    assert_eq!(out.code, -1, "killed: {}", out.dump());
    let _lock = take_lock(&root, Duration::from_secs(5));
    let left = marked(&mark);
    assert_eq!(
        left,
        Vec::<String>::new(),
        "running once the lock was free\n{}",
        out.dump()
    );
}

/// Issue: SIGINT to the preflight alone, mid-trial, printed "would not build" for the module it
/// interrupted and the install hook's "run dkms-hook again" advice. The build it did not finish
/// is not checked; the run ends as an interrupted run does (128 + the signal), promptly, with
/// nothing left running and nothing kept for the install hook.
#[test]
#[ignore = "needs root, dkms, bsdtar and kernel headers: run tests/run"]
fn sigint_mid_trial_reports_the_unfinished_build_as_not_checked() {
    let (_tmp, work, pkgs) = scratch();
    let (root, _old, new, headers, _broken) = trial_root(&work, &pkgs);
    let _hold = crate::stopping::hold_pre_build(&root, "dkmshook-plain-1.0");
    let mark = format!("preflight-sigint-{}", std::process::id());
    let targets = format!("usr/lib/modules/{new}/build/include/\n");
    let args = args(&headers);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = start_with_input(&root, &args, &mark, Some(&targets));
    wait_for_process(&mark, "sleep 1000.5", Duration::from_secs(300));
    unsafe { libc::kill(run.child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let out = run.finish();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}\n{}",
        t.elapsed(),
        out.dump()
    );
    assert_eq!(out.code, 130, "{}", out.dump());
    let text = &out.combined;
    assert!(!text.contains("would not build"), "{}", out.dump());
    assert!(!text.contains("run dkms-hook again"), "{}", out.dump());
    assert!(!text.contains("for the next run"), "{}", out.dump());
    assert!(
        text.contains(&format!(
            "warning: preflight: dkmshook-plain not checked for {new} (interrupted by SIGINT)"
        )),
        "{}",
        out.dump()
    );
    assert!(
        text.contains("==> ERROR: preflight: interrupted by SIGINT"),
        "{}",
        out.dump()
    );
    let left = wait_until_none(&mark, Duration::from_secs(2));
    assert_eq!(left, Vec::<String>::new(), "{}", out.dump());
    let store = root.join("var/cache/dkms-hook/prebuilt");
    let kept: Vec<_> = fs::read_dir(&store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".notes")
        .collect();
    assert!(kept.is_empty(), "kept: {kept:?}\n{}", out.dump());
}

/// Issue: the view was not sealed: a build's writes outside the overlaid directories reached the
/// live system, and dkms's `post_transaction` (framework.conf, dkms 3.2+, run after each install)
/// ran in the trial. Here a PRE_BUILD writes into the root's `/tmp` and `/boot`, and a
/// framework.conf.d snippet of the system dkms reads sets a `post_transaction` that writes there
/// too (dkms 3.4.3; under `--root` dkms reads the running system's /etc/dkms, so the preflight
/// runs in a mount namespace of the test's own where /etc/dkms is a copy with the snippet). The
/// trial builds (with a TMPDIR in the root's /tmp, which the view's private /tmp still has), and
/// none of the markers is on the system afterwards.
#[test]
#[ignore = "needs root, dkms, bsdtar and kernel headers: run tests/run"]
fn the_trial_writes_nothing_outside_its_view() {
    let Some(dkms) = crate::common::dkms_343() else {
        return;
    };
    let (tmp, work, pkgs) = scratch();
    let (root, _old, new, headers, _broken) =
        crate::preflight::trial_root_with(&work, &pkgs, Some(dkms.clone()));
    let (tmp_dir, boot) = (root.mkdir("tmp"), root.mkdir("boot"));
    let markers = [
        tmp_dir.join("pre-build"),
        boot.join("pre-build"),
        tmp_dir.join("post-transaction"),
        boot.join("post-transaction"),
    ];
    let dir = "dkmshook-plain-1.0";
    let script = root.write_file(
        format!("usr/src/{dir}/mark.sh"),
        format!(
            "#!/bin/sh\n# Test hook: writes outside the trees.\ntouch '{}' '{}' 2>/dev/null\nexit 0\n",
            markers[0].display(),
            markers[1].display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let conf = root.join(format!("usr/src/{dir}/dkms.conf"));
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str("PRE_BUILD=\"mark.sh\"\n");
    fs::write(&conf, text).unwrap();
    // The system's dkms configuration, with a post_transaction.
    let etc_dkms = tmp.path().join("etc-dkms");
    fs::create_dir_all(etc_dkms.join("framework.conf.d")).unwrap();
    if Path::new("/etc/dkms").is_dir() {
        crate::preflight::run(
            std::process::Command::new("cp")
                .arg("-a")
                .arg("/etc/dkms/.")
                .arg(&etc_dkms),
        );
    }
    fs::write(
        etc_dkms.join("framework.conf.d/50-test-post-transaction.conf"),
        format!(
            "post_transaction=\"touch {} {}\"\n",
            markers[2].display(),
            markers[3].display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/dkms && exec \"$1\" --root \"$2\" preflight --package \"$3\" 2>&1")
        .arg(&etc_dkms)
        .arg(crate::common::BIN)
        .arg(root.path())
        .arg(&headers)
        .env("DKMS_HOOK_DKMS", &dkms)
        // A TMPDIR in the root's /tmp (as pam_tmpdir's /tmp/user/0): there in the view too.
        .env("TMPDIR", root.mkdir("tmp/user/0"));
    let targets = format!("usr/lib/modules/{new}/build/include/\n");
    let out = crate::common::run_command(cmd, &targets);
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined
            .contains(&format!("preflight: 1 DKMS module builds for {new}\n")),
        "{}",
        out.dump()
    );
    assert!(!out.combined.contains("not read-only"), "{}", out.dump());
    let reached: Vec<_> = markers.iter().filter(|m| m.exists()).collect();
    assert!(
        reached.is_empty(),
        "written on the system from the trial: {reached:?}\n{}",
        out.dump()
    );
}

/// A build that writes outside what the sealed view lets it write (here its MAKE touches the
/// root's /boot first) fails in the trial with `Read-only file system`: that says nothing of the
/// module, which may well build after the transaction, so the pair is not checked, with one
/// warning naming it, and never a reason to stop the transaction, even for an essential module.
#[test]
#[ignore = "needs root, dkms, bsdtar and kernel headers: run tests/run"]
fn a_build_the_seal_refuses_is_not_checked_never_would_not_build() {
    let (_tmp, work, pkgs) = scratch();
    let (root, _old, new, headers, _broken) = crate::preflight::trial_root_with(&work, &pkgs, None);
    let boot = root.mkdir("boot");
    let conf = root.join("usr/src/dkmshook-plain-1.0/dkms.conf");
    let text = fs::read_to_string(&conf).unwrap().replace(
        "MAKE[0]=\"make ",
        &format!("MAKE[0]=\"touch {}/stamp && make ", boot.display()),
    );
    assert!(text.contains("touch "), "{text}");
    fs::write(&conf, text).unwrap();
    root.write_file("etc/dkms-hook.conf", "essential = dkmshook-plain\n");
    let targets = format!("usr/lib/modules/{new}/build/include/\n");
    let out = root.run_merged(
        &["preflight", "--package", headers.to_str().unwrap()],
        &targets,
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(!out.combined.contains("would not build"), "{}", out.dump());
    assert!(
        out.combined.contains(&format!(
            "warning: preflight: dkmshook-plain not checked for {new}: its build writes outside \
             what the trial's view lets it write"
        )),
        "{}",
        out.dump()
    );
    assert!(
        !boot.join("stamp").exists(),
        "the trial wrote the system's /boot"
    );
}
