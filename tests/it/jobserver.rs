//! make's parallelism shared by one jobserver for the whole run: a long make that started beside
//! short jobs takes the cores they give back, and the compilations of every build together never
//! outnumber the CPUs, even where a dkms.conf gives make a `-j` of its own. Counted, not guessed:
//! a compiler wrapper first in PATH logs when each compilation of a `.c` file starts and ends, and
//! the tests sweep those intervals. dkms-hook runs pinned to two CPUs (`taskset`), so its `cpus`
//! limit is 2 on any machine. On dkms 3.0.10 here, and on 3.2.2 and 3.4.3 through
//! tests/it/newer_dkms.rs.

use crate::common::{status_line, TestRoot};
use std::path::Path;
use std::process::Command;

/// The CPUs dkms-hook is pinned to, and so its `cpus` limit.
const CPUS: usize = 2;

const MANY: &str = "dkmshook-many-1.0";

/// One compilation of a `.c` file, as the wrapper logged it: nanoseconds since the epoch.
#[derive(Debug, Clone)]
struct Compile {
    start: u128,
    end: u128,
    /// The source file's name.
    source: String,
}

impl Compile {
    /// Whether it is one of the long build's (the many-file fixture's parts, main and the
    /// `.mod.c` that Kbuild writes for it).
    fn long(&self) -> bool {
        self.source.starts_with("part_")
            || self.source == "main.c"
            || self.source.starts_with("dkmshook_many.")
    }
}

/// Compiler wrappers in `dir` (gcc and the kernel's own compiler name) that log each compilation
/// of a `.c` file to `log` and run the real compiler.
fn compiler_wrappers(root: &TestRoot, kernel: &str, dir: &Path, log: &Path) {
    let cc = crate::common::kernel_cc(&root.kernel_dir(kernel).join("build/.config"));
    for name in ["gcc".to_owned(), "cc".to_owned(), cc] {
        let real = format!("/usr/bin/{name}");
        if !Path::new(&real).exists() {
            continue;
        }
        let script = dir.join(&name);
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
src=
for a; do case $a in *.c) src=${{a##*/}} ;; esac; done
[ -n "$src" ] || exec {real} "$@"
echo "start $(date +%s%N) $$ $src" >>'{log}'
{real} "$@"
rc=$?
echo "end $(date +%s%N) $$" >>'{log}'
exit $rc
"#,
                log = log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The compilations the wrapper logged, in the order they started.
fn compiles(log: &Path) -> Vec<Compile> {
    let text = std::fs::read_to_string(log).expect("the compiler wrapper never ran");
    let mut open = std::collections::HashMap::new();
    let mut done = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["start", t, pid, src] => {
                open.insert(
                    pid.to_string(),
                    (t.parse::<u128>().unwrap(), src.to_string()),
                );
            }
            ["end", t, pid] => {
                let (start, source) = open.remove(*pid).expect("an end without its start");
                done.push(Compile {
                    start,
                    end: t.parse().unwrap(),
                    source,
                });
            }
            _ => panic!("the compiler log has a line of no known form: {line:?}"),
        }
    }
    assert!(open.is_empty(), "compilations never ended: {open:?}");
    done.sort_by_key(|c| c.start);
    done
}

/// How many compilations ran at once at most.
fn most_at_once(cs: &[Compile]) -> usize {
    let mut edges: Vec<(u128, i32)> = cs
        .iter()
        .flat_map(|c| [(c.start, 1), (c.end, -1)])
        .collect();
    // An end before a start at the same instant.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The share of the time between `from` and `to` during which at least `n` compilations ran.
fn share_with_at_least(cs: &[Compile], n: usize, from: u128, to: u128) -> f64 {
    let mut edges: Vec<(u128, i32)> = cs
        .iter()
        .flat_map(|c| [(c.start.clamp(from, to), 1), (c.end.clamp(from, to), -1)])
        .collect();
    edges.sort();
    let (mut now, mut at, mut covered) = (0i32, from, 0u128);
    for (t, d) in edges {
        if now >= n as i32 {
            covered += t - at;
        }
        at = t;
        now += d;
    }
    covered as f64 / (to - from).max(1) as f64
}

/// What a counted run showed.
struct Counted {
    compiles: Vec<Compile>,
    /// When the last short job ended: its line `(n/N) ...` came (nanoseconds since the epoch).
    short_jobs_end: u128,
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Runs dkms-hook on `root` for `kernel`, two jobs at once, pinned to [`CPUS`] CPUs, with the
/// compiler wrappers first in PATH; returns the compilations, and when the short jobs ended,
/// seen as their job lines arrive.
fn run_counted(root: &TestRoot, kernel: &str) -> Counted {
    // One such run at a time, so that no other counted build competes for the two CPUs.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("compiles.log");
    compiler_wrappers(root, kernel, tools.path(), &log);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0,1", crate::common::BIN, "--root"])
        .arg(root.path())
        .args(["-j", "2", "-k", kernel])
        .env(
            "PATH",
            format!(
                "{}:{}",
                tools.path().display(),
                std::env::var("PATH").unwrap()
            ),
        );
    match root.dkms_program() {
        p if p == Path::new("dkms") => cmd.env_remove("DKMS_HOOK_DKMS"),
        p => cmd.env("DKMS_HOOK_DKMS", p),
    };
    use std::io::BufRead;
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push((now_ns(), line.unwrap()));
    }
    let status = child.wait().unwrap();
    let shown: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert!(
        status.success(),
        "{status}\n{}\n{}",
        shown.join("\n"),
        errors.join().unwrap()
    );
    // A job's last line counts it: `(2/3) acpi-call/1.2.2 for K`.
    let short_jobs_end = lines
        .iter()
        .filter(|(_, l)| l.contains(" (") && l.contains("/3) ") && !l.contains("dkmshook-many"))
        .map(|(t, _)| *t)
        .max()
        .unwrap_or_else(|| panic!("no short job ended: {shown:#?}"));
    Counted {
        compiles: compiles(&log),
        short_jobs_end,
    }
}

/// Sets up the long build beside two short ones (our one-file fixture and a real small module)
/// for the older kernel; `make` is MAKE[0]'s start in the long build's dkms.conf.
fn long_beside_short(root: &TestRoot, make: &str) -> (String, String) {
    let (k1, _) = root.two_kernels();
    root.add_fixture(MANY);
    root.add_fixture("dkmshook-plain-1.0");
    let acpi = root.add_real_source("acpi-call");
    let conf = root.join(format!("usr/src/{MANY}/dkms.conf"));
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("MAKE[0]=\"make -C", &format!("MAKE[0]=\"{make} -C")),
    )
    .unwrap();
    (k1, acpi)
}

/// What every such run must show: never more compilations than CPUs, and once the short jobs
/// are done (their last steps after their last compilation hold their CPU), the long build
/// compiling on every CPU for most of what is left of its parts.
fn assert_shared(root: &TestRoot, k1: &str, acpi: &str, run: &Counted) {
    let cs = &run.compiles[..];
    let at_once = most_at_once(cs);
    assert!(
        at_once <= CPUS,
        "{at_once} compilations ran at once on {CPUS} CPUs: {cs:#?}"
    );
    assert!(
        cs.iter().any(|c| !c.long()),
        "the short builds compiled nothing"
    );
    let short_end = run.short_jobs_end;
    // Up to the start of the last part: what follows (that part, modpost, the link) is serial.
    let parts_end = cs
        .iter()
        .filter(|c| c.source.starts_with("part_"))
        .map(|c| c.start)
        .max()
        .unwrap();
    let after = cs
        .iter()
        .filter(|c| c.source.starts_with("part_") && c.start >= short_end)
        .count();
    assert!(
        after >= 4,
        "only {after} of the long build's parts started after the short jobs ended: \
         nothing to measure: {cs:#?}"
    );
    let share = share_with_at_least(cs, CPUS, short_end, parts_end);
    assert!(
        share >= 0.5,
        "after the short jobs ended, the long build compiled on {CPUS} CPUs only {:.0}% of its \
         remaining {:.1} s: {cs:#?}",
        share * 100.0,
        (parts_end - short_end) as f64 / 1e9
    );
    eprintln!(
        "measured: at most {at_once} compilations at once; after the short jobs, {:.0}% of \
         {:.1} s on {CPUS} CPUs, {after} parts",
        share * 100.0,
        (parts_end - short_end) as f64 / 1e9
    );
    let acpi = acpi
        .rsplit_once('-')
        .map(|(m, v)| format!("{m}/{v}"))
        .unwrap();
    let status = root.dkms_status_lines();
    for mv in ["dkmshook-many/1.0", "dkmshook-plain/1.0", &acpi] {
        assert!(
            status.contains(&status_line(mv, k1, "installed")),
            "{mv} is not installed for {k1}: {status:?}"
        );
    }
}

/// A long make beside short jobs takes the cores they give back, and never more than the CPUs.
pub fn long_make_takes_the_freed_cores(root: &TestRoot) {
    let (k1, acpi) = long_beside_short(root, "make");
    let run = run_counted(root, &k1);
    assert_shared(root, &k1, &acpi, &run);
}

/// A dkms.conf whose MAKE gives make its own `-j$(nproc)` joins the run's jobserver all the same.
pub fn a_make_with_its_own_j_joins_the_jobserver(root: &TestRoot) {
    let (k1, acpi) = long_beside_short(root, "make -j$(nproc)");
    let run = run_counted(root, &k1);
    assert_shared(root, &k1, &acpi, &run);
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_long_make_takes_the_cores_short_jobs_give_back() {
    long_make_takes_the_freed_cores(&TestRoot::new());
}

#[test]
#[ignore = "needs root, dkms and kernel headers: run tests/run"]
fn a_dkms_conf_with_its_own_make_j_joins_the_jobserver() {
    a_make_with_its_own_j_joins_the_jobserver(&TestRoot::new());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(start: u128, end: u128, source: &str) -> Compile {
        Compile {
            start,
            end,
            source: source.to_string(),
        }
    }

    #[test]
    fn the_sweep_counts_overlaps_and_shares() {
        let cs = [
            c(0, 10, "a.c"),
            c(5, 15, "part_01.c"),
            c(10, 20, "part_02.c"),
        ];
        assert_eq!(most_at_once(&cs), 2);
        assert_eq!(share_with_at_least(&cs, 2, 0, 20), 0.5);
        assert_eq!(share_with_at_least(&cs, 1, 10, 20), 1.0);
    }
}
