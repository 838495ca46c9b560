//! The longest build first, from history: a run records what each module's build took (per
//! module and kernel series, in `var/lib/dkms-hook/build-times`), and a later run starts the
//! module that took longest first, even when the guess from its sources points the other way.
//! Real dkms, the machine's two kernels (one series: `6.1-amd64`), one job at once so that the
//! start order is the rank order.

use crate::common::{two_newest_kernels, TestRoot};

/// The history file, under the root.
const TIMES: &str = "var/lib/dkms-hook/build-times";

/// A module whose build is slow but whose sources are small: its MAKE sleeps first.
fn add_slow(root: &TestRoot) {
    let dir = "usr/src/dkmshook-slow-1.0";
    root.write_file(
        format!("{dir}/dkms.conf"),
        "PACKAGE_NAME=\"dkmshook-slow\"\nPACKAGE_VERSION=\"1.0\"\n\
         BUILT_MODULE_NAME[0]=\"dkmshook_slow\"\nDEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n\
         MAKE[0]=\"sleep 8 && make -C ${kernel_source_dir} \
         M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build modules\"\n\
         AUTOINSTALL=\"yes\"\n",
    );
    root.write_file(format!("{dir}/Makefile"), "obj-m := dkmshook_slow.o\n");
    root.write_file(
        format!("{dir}/dkmshook_slow.c"),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    );
}

/// A module whose build is quick but whose sources look big: 1 MB of C it never compiles.
fn add_wide(root: &TestRoot) {
    let dir = "usr/src/dkmshook-wide-1.0";
    root.write_file(
        format!("{dir}/dkms.conf"),
        "PACKAGE_NAME=\"dkmshook-wide\"\nPACKAGE_VERSION=\"1.0\"\n\
         BUILT_MODULE_NAME[0]=\"dkmshook_wide\"\nDEST_MODULE_LOCATION[0]=\"/updates/dkms\"\n\
         MAKE[0]=\"make -C ${kernel_source_dir} \
         M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build modules\"\n\
         AUTOINSTALL=\"yes\"\n",
    );
    root.write_file(format!("{dir}/Makefile"), "obj-m := dkmshook_wide.o\n");
    root.write_file(
        format!("{dir}/dkmshook_wide.c"),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    );
    let unused = "/* never compiled: it only makes the sources look big */\n".repeat(20_000);
    root.write_file(format!("{dir}/contrib/unused.c"), unused);
}

/// The modules in the order their jobs started (the `START` lines).
fn started(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            l.split_once("START [")
                .and_then(|(_, rest)| rest.split_once(']'))
        })
        .map(|(_, label)| label.trim().split('/').next().unwrap_or("").to_string())
        .collect()
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn the_module_that_took_longest_last_time_starts_first() {
    let root = TestRoot::new();
    let (k1, k2) = two_newest_kernels();
    root.add_kernel(&k1);
    add_slow(&root);
    add_wide(&root);

    // No history: the guess from the sources puts the wide module first.
    let out = root.run_merged(&["--jobs", "1"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        started(&out.combined),
        ["dkmshook-wide", "dkmshook-slow"],
        "the guess from the sources should point at the wide module: {}",
        out.combined
    );
    let times = root.read_file(TIMES);
    for m in ["dkmshook-slow", "dkmshook-wide"] {
        assert!(
            times
                .lines()
                .any(|l| l.starts_with(&format!("{m}\t6.1-amd64\t"))),
            "{m} not recorded for its kernel series: {times}"
        );
    }

    // A new kernel of the same series: the slow module, which took longest, starts first.
    root.add_kernel(&k2);
    let out = root.run_merged(&["--jobs", "1"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert_eq!(
        started(&out.combined),
        ["dkmshook-slow", "dkmshook-wide"],
        "{}\nhistory: {times}",
        out.combined
    );
    assert_eq!(
        root.dkms_status().len(),
        4,
        "both modules on both kernels: {:?}",
        root.dkms_status()
    );
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_corrupt_history_is_ignored_with_a_warning_naming_it() {
    let root = TestRoot::new();
    let (k1, _) = two_newest_kernels();
    root.add_kernel(&k1);
    add_slow(&root);
    root.write_file(TIMES, "\u{0}\u{1}garbage\n");
    let out = root.run_merged(&["--jobs", "1"], "");
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(
        out.combined.contains("build-times") && out.combined.contains("ignored"),
        "no warning naming the file: {}",
        out.combined
    );
    let times = root.read_file(TIMES);
    assert!(
        times
            .lines()
            .any(|l| l.starts_with("dkmshook-slow\t6.1-amd64\t")),
        "the run did not write a good file in its place: {times}"
    );
}
