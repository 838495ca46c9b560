//! Beyond two cores, on paper: the makespan of a set of module builds at 2, 4, 16 and 64 cores,
//! projected from job profiles for three schedulers, against the lower bound.
//!
//! Run: `cargo run --release --example simulate [-- PROFILES.tsv [CORES...]]` (defaults:
//! `bench/profiles.tsv`, 2 4 16 64). It prints a markdown table and exits 1 when the scheduler
//! after issue 18 is not within 10% of the bound at 16 cores.
//!
//! A profile line is one job, `module kernel serial_s parallel_s dkms_s` (tab-separated, after a
//! header line; `#` lines are comments): the CPU-seconds that cannot be spread (a configure, a
//! link, one big file), the CPU-seconds of work make spreads, dkms's own time per call. A job on
//! the cores it holds takes `dkms_s` on one core, then `serial_s` on one core, then `parallel_s`
//! spread over the cores it holds (a fluid model: cores are shared continuously, no make has a
//! limit of its own on how wide it goes). The schedulers:
//!
//! - **stock**: one `dkms install` at a time, in the file's order, make at `-j` = cores.
//! - **before** (dkms-hook before issue 18): the crate's own [`Queue`] with the cost guessed from
//!   the sources (which see the C that make compiles, not a serial configure: `dkms_s +
//!   parallel_s`), one kernel of a module version at a time (one group per module), as many jobs
//!   at once as cores (`--jobs`' default), and each job's make `-j` = cores divided by the jobs
//!   running or ready when it starts, fixed for its life (the runner's `make_jobs`); when the
//!   threads outnumber the cores, every thread gets the same share.
//! - **after** (issue 18): the same [`Queue`], the cost from history (what the job took alone:
//!   longest first), the kernels of one version at once (no group), only a short install step
//!   ([`INSTALL_S`] of the job's `dkms_s`) serialized per module version, and one jobserver: the
//!   cores go to whatever still runs (each running job an equal share, a serial step at most one
//!   core, the rest to the makes).
//! - **bound**: max(the longest single job on every core, the total CPU / cores).
//!
//! The "before" and "after" schedulers reuse the crate's real `plan::queue::Queue`, which is why
//! this is an example of the crate and not a program of its own.

use dkms_hook::plan::queue::{Ended, Node, Queue};
use std::collections::BTreeMap;
use std::path::Path;

/// The install step of a job in the "after" scheduler (the `dkms install` of a build placed from
/// its private tree), serialized per module version; the rest of `dkms_s` is the build's call.
pub const INSTALL_S: f64 = 1.0;

/// One job's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub module: String,
    pub kernel: String,
    pub serial_s: f64,
    pub parallel_s: f64,
    pub dkms_s: f64,
}

impl Profile {
    /// What the job takes alone on `cores`.
    pub fn alone(&self, cores: f64) -> f64 {
        self.dkms_s + self.serial_s + self.parallel_s / cores
    }
    /// Its CPU-seconds.
    pub fn cpu(&self) -> f64 {
        self.dkms_s + self.serial_s + self.parallel_s
    }
}

/// The profiles in `text` (bench/profiles.tsv's format).
pub fn parse(text: &str, name: &str) -> Result<Vec<Profile>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    let header = "module\tkernel\tserial_s\tparallel_s\tdkms_s";
    match lines.next() {
        Some((_, h)) if h == header => {}
        _ => {
            return Err(format!(
                "{name}: the first line is not the header `{header}`"
            ))
        }
    }
    lines
        .map(|(n, l)| {
            let bad = || format!("{name}: line {}: not five tab-separated fields", n + 1);
            let f: Vec<&str> = l.split('\t').collect();
            let [m, k, s, p, d] = f[..] else {
                return Err(bad());
            };
            let num = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        format!("{name}: line {}: {v:?} is not a number of seconds", n + 1)
                    })
            };
            Ok(Profile {
                module: m.to_string(),
                kernel: k.to_string(),
                serial_s: num(s)?,
                parallel_s: num(p)?,
                dkms_s: num(d)?,
            })
        })
        .collect()
}

/// One step of a job: work on one core (dkms, a serial step), or work make spreads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    One(f64),
    Spread(f64),
    /// The install step, under its module version's lock.
    Install(f64),
}

/// How a scheduler shares the cores among the running jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sharing {
    /// Each make at the `-j` it started with; every thread an equal share of the cores.
    FixedJ,
    /// One jobserver: each job an equal share, a one-core step at most one core.
    Jobserver,
}

struct Running {
    job: usize,
    steps: Vec<Step>,
    /// make's `-j` (FixedJ only).
    width: f64,
    /// Waiting for its module version's install lock.
    waiting: bool,
}

/// The cores each running job gets now.
fn rates(running: &[Running], cores: f64, sharing: Sharing) -> Vec<f64> {
    let want = |r: &Running| match (r.waiting, r.steps.first(), sharing) {
        (true, _, _) | (_, None, _) => 0.0,
        (_, Some(Step::One(_) | Step::Install(_)), _) => 1.0,
        (_, Some(Step::Spread(_)), Sharing::FixedJ) => r.width,
        (_, Some(Step::Spread(_)), Sharing::Jobserver) => f64::INFINITY,
    };
    let wants: Vec<f64> = running.iter().map(want).collect();
    match sharing {
        Sharing::FixedJ => {
            let threads: f64 = wants.iter().sum();
            let share = if threads > cores {
                cores / threads
            } else {
                1.0
            };
            wants.iter().map(|w| w * share).collect()
        }
        Sharing::Jobserver => {
            // Water-filling: equal shares, none above what it can use.
            let mut got = vec![0.0; wants.len()];
            let mut left = cores;
            let mut open: Vec<usize> = (0..wants.len()).filter(|&i| wants[i] > 0.0).collect();
            while !open.is_empty() && left > 1e-12 {
                let share = left / open.len() as f64;
                let capped: Vec<usize> = open
                    .iter()
                    .copied()
                    .filter(|&i| wants[i] - got[i] <= share)
                    .collect();
                if capped.is_empty() {
                    for &i in &open {
                        got[i] += share;
                    }
                    break;
                }
                for &i in &capped {
                    left -= wants[i] - got[i];
                    got[i] = wants[i];
                }
                open.retain(|i| !capped.contains(i));
            }
            got
        }
    }
}

/// A scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    Stock,
    Before,
    After,
}

/// The makespan of `jobs` on `cores` under `scheduler`, and the order the jobs started in.
pub fn makespan(jobs: &[Profile], cores: usize, scheduler: Scheduler) -> (f64, Vec<usize>) {
    let c = cores as f64;
    let nodes: Vec<Node> = jobs
        .iter()
        .map(|j| match scheduler {
            // The file's order: the first job ranks highest, one at a time.
            Scheduler::Stock => Node::new((jobs.len() as u64) * 2, &[], &["stock"]),
            Scheduler::Before => Node::new(ms(j.dkms_s + j.parallel_s), &[], &[&j.module]),
            // A group of its own: no two kernels of a version wait for each other (and the
            // queue's rank counts a node's own cost through its first group).
            Scheduler::After => Node::new(
                ms(j.alone(c)),
                &[],
                &[&format!("{}/{}", j.module, j.kernel)],
            ),
        })
        .collect();
    let nodes = match scheduler {
        Scheduler::Stock => nodes
            .into_iter()
            .enumerate()
            .map(|(i, mut n)| {
                n.cost -= i as u64;
                n
            })
            .collect(),
        _ => nodes,
    };
    let mut queue = Queue::new(nodes);
    let (at_once, sharing) = match scheduler {
        Scheduler::Stock => (1, Sharing::FixedJ),
        Scheduler::Before => (cores, Sharing::FixedJ),
        Scheduler::After => (cores, Sharing::Jobserver),
    };
    let steps = |j: &Profile| -> Vec<Step> {
        let mut s = match scheduler {
            Scheduler::After => {
                let install = INSTALL_S.min(j.dkms_s);
                vec![
                    Step::One(j.dkms_s - install),
                    Step::One(j.serial_s),
                    Step::Spread(j.parallel_s),
                    Step::Install(install),
                ]
            }
            _ => vec![
                Step::One(j.dkms_s),
                Step::One(j.serial_s),
                Step::Spread(j.parallel_s),
            ],
        };
        s.retain(|&s| work(s) > 0.0);
        s
    };
    let mut running: Vec<Running> = Vec::new();
    // Module -> the job that holds its install lock.
    let mut installing: BTreeMap<&str, usize> = BTreeMap::new();
    let mut order = Vec::new();
    let mut t = 0.0;
    loop {
        // What ended is finished, what is ready starts, installs take their locks; again until
        // nothing changes (a job may have nothing to do).
        loop {
            let ended: Vec<usize> = running
                .iter()
                .filter(|r| r.steps.is_empty())
                .map(|r| r.job)
                .collect();
            running.retain(|r| !r.steps.is_empty());
            for id in &ended {
                queue.finish(*id, Ended::Succeeded);
            }
            let mut batch = Vec::new();
            while queue.running() < at_once {
                let Some(id) = queue.take_ready() else { break };
                batch.push(id);
            }
            // The runner's make_jobs: the cores over the jobs running or able to start now.
            let sharing_jobs = at_once.min(queue.running() + queue.ready()).max(1);
            let width = match scheduler {
                Scheduler::Stock => c,
                _ => (cores / sharing_jobs).max(1) as f64,
            };
            for &id in &batch {
                order.push(id);
                running.push(Running {
                    job: id,
                    steps: steps(&jobs[id]),
                    width,
                    waiting: false,
                });
            }
            for r in running.iter_mut() {
                if let Some(Step::Install(_)) = r.steps.first() {
                    let holder = installing
                        .entry(jobs[r.job].module.as_str())
                        .or_insert(r.job);
                    r.waiting = *holder != r.job;
                }
            }
            if ended.is_empty() && batch.is_empty() {
                break;
            }
        }
        if running.is_empty() {
            assert!(queue.is_done(), "jobs left that can never start");
            return (t, order);
        }
        let rate = rates(&running, c, sharing);
        // The first step to end.
        let dt = running
            .iter()
            .zip(&rate)
            .filter(|(_, &r)| r > 0.0)
            .map(|(run, &r)| work(run.steps[0]) / r)
            .fold(f64::INFINITY, f64::min);
        assert!(dt.is_finite(), "no running job makes progress");
        t += dt;
        for (run, &r) in running.iter_mut().zip(&rate) {
            if r <= 0.0 {
                continue;
            }
            let step = &mut run.steps[0];
            let (Step::One(w) | Step::Spread(w) | Step::Install(w)) = step;
            *w -= r * dt;
            if *w <= 1e-9 {
                if matches!(step, Step::Install(_)) {
                    installing.remove(jobs[run.job].module.as_str());
                }
                run.steps.remove(0);
            }
        }
    }
}

/// The work a step has left.
fn work(s: Step) -> f64 {
    match s {
        Step::One(w) | Step::Spread(w) | Step::Install(w) => w,
    }
}

/// Seconds as the queue's costs, in milliseconds.
fn ms(s: f64) -> u64 {
    (s * 1000.0).round() as u64
}

/// The lower bound: max(the longest single job on every core, the total CPU / cores).
pub fn bound(jobs: &[Profile], cores: usize) -> f64 {
    let c = cores as f64;
    let longest = jobs.iter().map(|j| j.alone(c)).fold(0.0, f64::max);
    let cpu: f64 = jobs.iter().map(Profile::cpu).sum();
    longest.max(cpu / c)
}

/// The table, in markdown, and whether "after" is within 10% of the bound at 16 cores.
pub fn table(jobs: &[Profile], cores: &[usize]) -> (String, Option<bool>) {
    let mut out = String::from(
        "| cores | stock serial | before (-j fixed, a version one kernel at a time) | after (jobserver, kernels at once, longest first) | bound | after / bound |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    let mut goal = None;
    for &c in cores {
        let stock = makespan(jobs, c, Scheduler::Stock).0;
        let before = makespan(jobs, c, Scheduler::Before).0;
        let after = makespan(jobs, c, Scheduler::After).0;
        let b = bound(jobs, c);
        let ratio = after / b;
        if c == 16 {
            goal = Some(ratio <= 1.10);
        }
        out.push_str(&format!(
            "| {c} | {stock:.0} s ({:.2} x) | {before:.0} s ({:.2} x) | {after:.0} s | {b:.0} s | {ratio:.2} |\n",
            stock / b,
            before / b,
        ));
    }
    (out, goal)
}

const USAGE: &str = "usage: cargo run --release --example simulate [PROFILES.tsv [CORES...]] \
    (CORES: whole numbers from 1 to 4096; default 2 4 16 64)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return;
    }
    if let Some(bad) = args
        .iter()
        .skip(1)
        .find(|a| !a.parse::<usize>().is_ok_and(|n| (1..=4096).contains(&n)))
    {
        eprintln!("simulate: {bad}: not a number of cores\n{USAGE}");
        std::process::exit(2);
    }
    let file = args
        .first()
        .cloned()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/bench/profiles.tsv").to_string());
    let mut cores: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if cores.is_empty() {
        cores = vec![2, 4, 16, 64];
    }
    let shown = Path::new(&file)
        .file_name()
        .map_or(file.clone(), |f| f.to_string_lossy().into_owned());
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        eprintln!("simulate: {file}: {e}");
        std::process::exit(2)
    });
    let jobs = parse(&text, &file).unwrap_or_else(|e| {
        eprintln!("simulate: {e}");
        std::process::exit(2)
    });
    let cpu: f64 = jobs.iter().map(Profile::cpu).sum();
    println!(
        "Projected makespan of {} jobs ({cpu:.0} CPU-seconds) from {shown}; x = times the bound.\n",
        jobs.len()
    );
    let (table, goal) = table(&jobs, &cores);
    print!("{table}");
    match goal {
        Some(true) => println!("\ngoal met: after is within 10% of the bound at 16 cores"),
        Some(false) => {
            println!("\ngoal missed: after is more than 10% above the bound at 16 cores");
            std::process::exit(1)
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(module: &str, kernel: &str, serial: f64, parallel: f64, dkms: f64) -> Profile {
        Profile {
            module: module.into(),
            kernel: kernel.into(),
            serial_s: serial,
            parallel_s: parallel,
            dkms_s: dkms,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn one_job_alone_takes_its_serial_part_plus_its_parallel_part_over_the_cores() {
        let j = [job("gpu", "k1", 10.0, 400.0, 5.0)];
        for s in [Scheduler::Stock, Scheduler::Before, Scheduler::After] {
            let (t, order) = makespan(&j, 4, s);
            assert!(close(t, 5.0 + 10.0 + 100.0), "{s:?}: {t}");
            assert_eq!(order, [0]);
        }
        assert!(close(bound(&j, 4), 115.0));
    }

    #[test]
    fn stock_runs_one_at_a_time_in_the_files_order() {
        let j = [
            job("a", "k1", 1.0, 8.0, 1.0),
            job("b", "k1", 0.0, 40.0, 0.0),
        ];
        let (t, order) = makespan(&j, 2, Scheduler::Stock);
        assert!(close(t, (1.0 + 1.0 + 4.0) + 20.0), "{t}");
        assert_eq!(order, [0, 1]);
    }

    #[test]
    fn before_keeps_the_j_it_started_with_and_after_hands_freed_cores_over() {
        // Two cores: a long make and a short one start together at -j1 each. Before: the long
        // one stays at -j1 once the short one ends; after: it takes both cores.
        let j = [
            job("long", "k1", 0.0, 100.0, 0.0),
            job("short", "k1", 0.0, 10.0, 0.0),
        ];
        let (before, _) = makespan(&j, 2, Scheduler::Before);
        assert!(close(before, 100.0), "{before}");
        let (after, _) = makespan(&j, 2, Scheduler::After);
        // 10 s at one core each, then the long one's 90 CPU-seconds left on two cores.
        assert!(close(after, 10.0 + 45.0), "{after}");
        assert!(close(bound(&j, 2), 55.0));
    }

    #[test]
    fn before_builds_a_version_for_one_kernel_at_a_time_after_only_installs_so() {
        let j = [
            job("fs", "k1", 50.0, 0.0, 2.0),
            job("fs", "k2", 50.0, 0.0, 2.0),
        ];
        let (before, _) = makespan(&j, 2, Scheduler::Before);
        assert!(close(before, 104.0), "{before}");
        // Both build at once (1 + 50 each), then the two installs of 1 s one after the other.
        let (after, _) = makespan(&j, 2, Scheduler::After);
        assert!(close(after, 53.0), "{after}");
    }

    #[test]
    fn after_starts_the_longest_first() {
        let j = [
            job("small", "k1", 0.0, 2.0, 0.0),
            job("big", "k1", 30.0, 0.0, 0.0),
        ];
        let (_, order) = makespan(&j, 1, Scheduler::After);
        assert_eq!(order, [1, 0]);
    }

    #[test]
    fn a_profile_file_reads_and_a_bad_one_is_named() {
        let text = "# placeholder\nmodule\tkernel\tserial_s\tparallel_s\tdkms_s\nzfs\t6.6-lts\t45\t330\t6\n";
        assert_eq!(
            parse(text, "p.tsv").unwrap(),
            [job("zfs", "6.6-lts", 45.0, 330.0, 6.0)]
        );
        assert!(parse("zfs\t1\t2\t3\t4\n", "p.tsv")
            .unwrap_err()
            .starts_with("p.tsv: the first line"));
        let bad = "module\tkernel\tserial_s\tparallel_s\tdkms_s\nzfs\tk\tlong\t1\t1\n";
        assert!(parse(bad, "p.tsv").unwrap_err().contains("line 2"));
    }
}
