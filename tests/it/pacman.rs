//! dkms-hook under a real pacman: every transaction a user makes, end to end.
//!
//! Each `#[ignore]`d test runs one scenario script of `tests/pacman/` (bash, so a maintainer can
//! run one by hand): a real pacman 6 in a private mount namespace whose /usr, /etc and /var are
//! overlays on a tmpfs, installing our package as makepkg builds it from this checkout, with the
//! Debian host's real dkms building real module sources against two real kernels' headers
//! packaged the way Arch packages them. Scripts assert with `dkms status`, the files under
//! /usr/lib/modules and pacman's printed output. The packages are built once per run
//! (`tests/pacman/build-packages.sh`) and shared by all scenarios.
//!
//! The tests that are not ignored check the packaging files themselves (hook files, PKGBUILD)
//! without pacman, so `cargo test` in the PKGBUILD's check() runs them as an unprivileged user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The hook files of the package (sorted as pacman runs them), and the stock dkms hooks the
/// package masks. The preflight hook's own checks are in `preflight.rs`.
const OUR_HOOKS: [&str; 3] = [
    "70-dkms-hook-install.hook",
    "70-dkms-hook-preflight.hook",
    "70-dkms-hook-remove.hook",
];
const STOCK_HOOKS: [&str; 3] = [
    "70-dkms-install.hook",
    "70-dkms-upgrade.hook",
    "71-dkms-remove.hook",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds every package once per test process; a failure fails every scenario with its output.
fn packages() -> &'static Path {
    static PKGS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PKGS.get_or_init(|| {
        let dir = repo().join("tests/.cache/pacman-pkgs");
        let start = Instant::now();
        let out = Command::new("bash")
            .arg(repo().join("tests/pacman/build-packages.sh"))
            .arg(&dir)
            .current_dir(repo())
            .output()
            .map_err(|e| format!("bash tests/pacman/build-packages.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the test packages failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        println!("packages built in {:.1}s", start.elapsed().as_secs_f64());
        Ok(dir)
    });
    match result {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `tests/pacman/<script>`: passes if it exits 0; its whole output is shown on failure
/// (and with --nocapture), with the time it took.
pub(crate) fn scenario(script: &str) {
    scenario_with(script, &[]);
}

/// [`scenario`] with variables added to the script's environment.
pub(crate) fn scenario_with(script: &str, env: &[(&str, &Path)]) {
    let pkgs = packages();
    let start = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("tests/pacman").join(script))
        .env("DKMSHOOK_PKGS", pkgs)
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("bash tests/pacman/{script}: {e}"));
    let secs = start.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}\n{script}: {secs:.1}s");
    assert!(
        out.status.success(),
        "scenario {script} failed ({}) after {secs:.1}s:\n{text}",
        out.status
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s00_hooks_parse_mask_the_stock_ones_and_route_each_path() {
    scenario("00-hooks-and-routing.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s01_installing_a_module_builds_it_for_every_kernel() {
    scenario("01-install-module.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s02_a_new_kernel_gets_every_module() {
    scenario("02-new-kernel.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s03_removing_a_kernel_leaves_nothing_of_it() {
    scenario("03-remove-kernel.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s04_upgrading_a_module_replaces_the_old_version_everywhere() {
    scenario("04-upgrade-module.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s05_a_same_version_rebuild_installs_the_new_build() {
    scenario("05-rebuild-same-version.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s06_removing_a_module_removes_and_unregisters_it() {
    scenario("06-remove-module.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s07_a_new_kernel_and_module_together_build_each_pair_once() {
    scenario("07-kernel-and-module-together.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s08_build_depends_in_one_transaction() {
    scenario("08-build-depends.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s09_a_failed_build_is_loud_and_spares_the_others() {
    scenario("09-build-failure.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s10_modules_are_installed_before_the_initramfs_hook() {
    scenario("10-before-initramfs.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s11_uninstalling_dkms_hook_brings_the_stock_hooks_back() {
    scenario("11-uninstall-dkms-hook.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s12_a_system_upgrade_moves_modules_to_the_new_kernel() {
    scenario("12-system-upgrade.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s13_a_kernel_reinstalled_then_removed_piece_by_piece() {
    scenario("13-kernel-pieces.sh");
}

/// The package makepkg builds from this checkout holds the hook scripts, executable where the
/// hook files Exec them, the completions and man page that build.rs generated from this
/// checkout's command line (the same text as beside the binary makepkg built, so not stale), and
/// the README with the guides it links to.
#[test]
#[ignore = "needs makepkg and bsdtar (tests/setup.sh installs them): run tests/run"]
fn the_package_holds_the_hook_scripts_completions_and_man_page() {
    let dir = packages();
    let pkg = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("dkms-hook-") && name.ends_with(".pkg.tar.zst")
        })
        .expect("no dkms-hook package built");
    let list = Command::new("bsdtar")
        .arg("-tvf")
        .arg(&pkg)
        .output()
        .unwrap();
    assert!(list.status.success(), "bsdtar -tvf {}", pkg.display());
    let list = String::from_utf8_lossy(&list.stdout);
    // `-rwxr-xr-x  0 root root  325 Nov 29 10:46 usr/share/...`: mode first, path last.
    let mode_of = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{path}: not in the package:\n{list}"))
            .to_string()
    };
    for c in ["install", "preflight", "remove"] {
        let script = script_exec(c);
        assert_eq!(mode_of(&script[1..]), "-rwxr-xr-x", "{script}");
    }
    // Where build-packages.sh had makepkg build: the same CARGO_TARGET_DIR rule.
    let built = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo().join("target"), PathBuf::from)
        .join("dist/share");
    for (path, generated) in [
        (
            "usr/share/bash-completion/completions/dkms-hook",
            "bash-completion/completions/dkms-hook",
        ),
        (
            "usr/share/zsh/site-functions/_dkms-hook",
            "zsh/site-functions/_dkms-hook",
        ),
        (
            "usr/share/fish/vendor_completions.d/dkms-hook.fish",
            "fish/vendor_completions.d/dkms-hook.fish",
        ),
        ("usr/share/man/man8/dkms-hook.8.gz", "man/man8/dkms-hook.8"),
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(
                r#"bsdtar -xOf "$0" "$1" | if [ "${1%.gz}" != "$1" ]; then gzip -dc; else cat; fi"#,
            )
            .arg(&pkg)
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: cannot read it from the package"
        );
        let want = std::fs::read(built.join(generated)).unwrap();
        assert!(out.stdout == want, "{path}: not what build.rs generated");
    }
    // The README and the guides its links lead to, laid out as in the checkout.
    for doc in [
        "README.md",
        "docs/user-guide.md",
        "docs/packaging.md",
        "docs/promises.md",
    ] {
        assert_eq!(
            mode_of(&format!("usr/share/doc/dkms-hook/{doc}")),
            "-rw-r--r--",
            "{doc}"
        );
    }
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s14_an_upgrade_that_fails_on_one_kernel_keeps_the_old_version_there() {
    scenario("14-upgrade-keeps-old.sh");
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn s15_a_module_that_changes_package_name_keeps_its_old_version_there() {
    scenario("15-renamed-package-keeps-old.sh");
}

// The packaging files, checked without pacman.

fn read(path: &str) -> String {
    let p = repo().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `key = value` lines of a hook file's `[Action]` section (comments and blanks skipped).
pub(crate) fn action(hook: &str) -> Vec<(String, String)> {
    let mut in_action = false;
    let mut out = Vec::new();
    for line in hook.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            in_action = line == "[Action]";
            continue;
        }
        if in_action {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

/// What a hook file Execs for `command`: its script from hooks/, installed where dkms and
/// mkinitcpio keep theirs.
pub(crate) fn script_exec(command: &str) -> String {
    format!("/usr/share/libalpm/scripts/dkms-hook-{command}")
}

/// Every hook file Execs one script of hooks/, and every script is one hook's: each runs
/// `dkms-hook COMMAND` in place of itself (`exec`: pacman stays the binary's parent, and its
/// exit status is the hook's), passing its arguments on; the PKGBUILD installs them where the
/// hook files look, executable.
#[test]
fn each_hook_execs_its_script_and_each_script_execs_the_binary() {
    let mut scripts: Vec<String> = std::fs::read_dir(repo().join("hooks"))
        .expect("hooks/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    scripts.sort();
    assert_eq!(
        scripts,
        [
            "dkms-hook-install",
            "dkms-hook-preflight",
            "dkms-hook-remove"
        ]
    );
    for (hook, command) in [
        ("70-dkms-hook-install.hook", "install"),
        ("70-dkms-hook-preflight.hook", "preflight"),
        ("70-dkms-hook-remove.hook", "remove"),
    ] {
        let a = action(&read(&format!("libalpm-hooks.d/{hook}")));
        let exec = a.iter().find(|(k, _)| k == "Exec").map(|(_, v)| v.clone());
        assert_eq!(exec, Some(script_exec(command)), "{hook}");
        let script = format!("hooks/dkms-hook-{command}");
        let text = read(&script);
        assert!(text.starts_with("#!/bin/sh\n"), "{script}: not a sh script");
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            code,
            [format!("exec /usr/bin/dkms-hook {command} \"$@\"")],
            "{script}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(repo().join(&script))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{script}: not executable");
    }
    assert!(
        read("PKGBUILD")
            .contains("install -Dm755 hooks/* -t \"$pkgdir/usr/share/libalpm/scripts/\""),
        "PKGBUILD: hooks/ not installed to /usr/share/libalpm/scripts/"
    );
}

#[test]
fn hooks_run_our_binary_with_targets_and_need_dkms() {
    for (name, command, when) in [
        ("70-dkms-hook-install.hook", "install", "PostTransaction"),
        ("70-dkms-hook-remove.hook", "remove", "PreTransaction"),
    ] {
        let a = action(&read(&format!("libalpm-hooks.d/{name}")));
        let get = |k: &str| a.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Exec"), Some(script_exec(command).as_str()), "{name}");
        assert_eq!(get("When"), Some(when), "{name}");
        assert_eq!(get("Depends"), Some("dkms"), "{name}");
        assert!(get("NeedsTargets").is_some(), "{name}: no NeedsTargets");
        assert!(
            get("AbortOnFail").is_none(),
            "{name}: must not block removals"
        );
    }
}

#[test]
fn hooks_sort_before_mkinitcpio_and_do_not_take_the_stock_names() {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("libalpm-hooks.d"))
        .expect("libalpm-hooks.d")
        .map(|e| {
            e.expect("libalpm-hooks.d entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".hook"))
        .collect();
    names.sort();
    assert_eq!(names, OUR_HOOKS);
    for n in &names {
        // pacman compares the names without the suffix, byte by byte.
        assert!(
            n.trim_end_matches(".hook") < "90-mkinitcpio-install",
            "{n} would run after mkinitcpio"
        );
        assert!(
            !STOCK_HOOKS.contains(&n.as_str()),
            "{n} is masked by our own package"
        );
    }
}

#[test]
fn pkgbuild_matches_the_crate_and_masks_the_stock_hooks() {
    let pkgbuild = read("PKGBUILD");
    let pkgver = pkgbuild
        .lines()
        .find_map(|l| l.strip_prefix("pkgver="))
        .expect("PKGBUILD: no pkgver=");
    assert_eq!(pkgver, env!("CARGO_PKG_VERSION"), "PKGBUILD pkgver");
    let masked = pkgbuild
        .lines()
        .find_map(|l| l.strip_prefix("_stock_hooks=("))
        .expect("PKGBUILD: no _stock_hooks=(");
    assert_eq!(
        masked
            .trim_end_matches(')')
            .split_whitespace()
            .collect::<Vec<_>>(),
        STOCK_HOOKS
    );
    let depends = pkgbuild
        .lines()
        .find(|l| l.starts_with("depends=("))
        .expect("PKGBUILD: no depends=(");
    for name in ["dkms", "bash", "kmod"] {
        assert!(depends.contains(name), "PKGBUILD: {depends}: no {name}");
    }
    // The hook runs after pacman may have moved to a new libalpm soname.
    assert!(
        !depends.contains("pacman") && !depends.contains("libalpm"),
        "PKGBUILD: {depends}"
    );
}
