//! The preflight (`dkms-hook preflight`): its hook file, and finding, reading and unpacking the
//! package files of what a transaction brings, on real packages (made with bsdtar and makepkg's
//! format), a real sync database (made with `repo-add`) and a local database written as pacman
//! writes it.

use crate::pacman::action;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    let p = repo().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `Target = ...` lines of a hook file, in order.
fn triggers(hook: &str) -> Vec<String> {
    hook.lines()
        .filter_map(|l| l.trim().strip_prefix("Target"))
        .map(|l| l.trim_start().trim_start_matches('=').trim().to_owned())
        .collect()
}

#[test]
fn the_preflight_hook_aborts_before_the_remove_hook_on_what_arrives() {
    let name = "70-dkms-hook-preflight.hook";
    let text = read(&format!("libalpm-hooks.d/{name}"));
    let a = action(&text);
    let get = |k: &str| a.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(get("Exec"), Some("/usr/bin/dkms-hook preflight"));
    assert_eq!(get("When"), Some("PreTransaction"));
    assert_eq!(get("Depends"), Some("dkms"));
    assert!(get("NeedsTargets").is_some(), "no NeedsTargets");
    assert!(get("AbortOnFail").is_some(), "no AbortOnFail");
    // pacman runs a phase's hooks by file name (compared without the suffix).
    assert!("70-dkms-hook-preflight" < "70-dkms-hook-remove");
    assert!(text.contains("Operation = Install\nOperation = Upgrade\nType = Path\n"));
    assert!(!text.contains("Operation = Remove"));
    // What arrives: headers and sources, with the other hooks' negations (the last match wins).
    assert_eq!(
        triggers(&text),
        [
            "usr/src/*/dkms.conf",
            "!usr/src/*/*/*",
            "!usr/lib/modules/*/*/*",
            "usr/lib/modules/*/build/include/",
        ]
    );
    let install = triggers(&read("libalpm-hooks.d/70-dkms-hook-install.hook"));
    for t in triggers(&text) {
        assert!(
            install.contains(&t),
            "{t}: not a pattern of the install hook"
        );
    }
}

#[test]
fn the_package_ships_the_config_example_as_a_backup_file() {
    let pkgbuild = read("PKGBUILD");
    assert!(
        pkgbuild.contains("backup=(etc/dkms-hook.conf)"),
        "no backup=()"
    );
    assert!(pkgbuild.contains("install -Dm644 dkms-hook.conf -t \"$pkgdir/etc/\""));
    // Every setting in the example is commented out, and names a real key.
    let example = read("dkms-hook.conf");
    let (cfg, errors) = dkms_hook::config::Config::parse(&example, Path::new("dkms-hook.conf"));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cfg, dkms_hook::config::Config::default());
    let uncommented: String = example
        .lines()
        .filter_map(|l| l.trim().strip_prefix('#'))
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let (cfg, errors) = dkms_hook::config::Config::parse(&uncommented, Path::new("x"));
    assert!(errors.is_empty(), "{errors:?}");
    assert_ne!(cfg, dkms_hook::config::Config::default());
}
