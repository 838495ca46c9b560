//! The `--dry-run` text: what a run would do, in the order it would start the jobs one at a
//! time, then the kernels depmod would run for, then what is skipped and what fails.

use crate::plan::Plan;
use crate::report::reporter::plural;
use std::fmt::Write as _;

/// The `--dry-run` text: jobs in the order they would start, then the kernels depmod would run
/// for, then what is skipped and what fails.
pub fn text(plan: &Plan, jobs_at_once: usize) -> String {
    let mut s = String::new();
    let jobs = &plan.jobs;
    let _ = writeln!(
        s,
        "dry run: {} {}, up to {jobs_at_once} at once; nothing is changed",
        jobs.len(),
        plural(jobs.len(), "job", "jobs"),
    );
    for n in &plan.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for (pos, &id) in crate::plan::queue::serial_order(jobs).iter().enumerate() {
        let j = &jobs[id];
        let how = if j.direct {
            " (directly: no headers)"
        } else if j.prebuilt.is_some() {
            " (install the preflight's build)"
        } else {
            ""
        };
        let _ = write!(
            s,
            "{:>4}. {:<6} {}{how}",
            pos + 1,
            j.info.action.verb(),
            j.info.label()
        );
        let after: Vec<String> = j
            .needs
            .iter()
            .map(|&d| format!("{}/{}", jobs[d].info.module, jobs[d].info.version))
            .collect();
        if !after.is_empty() {
            let _ = write!(s, "  (after {})", after.join(", "));
        }
        s.push('\n');
    }
    for k in &plan.depmod {
        let _ = writeln!(s, "      depmod {k}");
    }
    for d in &plan.skipped {
        let _ = writeln!(s, "  skip {}", d);
    }
    for d in &plan.failed {
        let _ = writeln!(s, "  fail {}", d);
    }
    s
}
