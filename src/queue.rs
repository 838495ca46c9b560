//! The dependency queue: which job may start now.
//!
//! Three calls, after cargo's `DependencyQueue`: [`Queue::take_ready`] takes a ready job, [`Queue::finish`]
//! reports one finished and returns the jobs that will now never run (everything that needs a failed
//! job), [`Queue::is_done`] says when nothing is left. Two constraints decide readiness: a job's
//! dependencies have all succeeded, and no other job of the same group (module version) is running,
//! because dkms builds every kernel of a module version in one shared directory. Among ready jobs the
//! highest priority starts first: its own cost, plus everything waiting on it through dependencies,
//! plus the work left in its module version's other kernels (those jobs can only run one after the
//! other, a chain like a dependency). Ties go to the lower id, so the order is stable.

use crate::plan::Job;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
pub struct Queue {
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    /// Each job's groups (module versions whose build directory it uses).
    groups: Vec<Vec<usize>>,
    priority: Vec<u64>,
    cost: Vec<u64>,
    /// Per group: the cost of its jobs not started yet.
    unstarted: Vec<u64>,
    state: Vec<State>,
    busy_groups: BTreeSet<usize>,
}

impl Queue {
    /// A queue over `jobs` (ids are indices). The plan guarantees there are no cycles.
    pub fn new(jobs: &[Job]) -> Queue {
        let mut ids: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let groups = jobs
            .iter()
            .map(|j| {
                j.groups()
                    .map(|g| {
                        let n = ids.len();
                        *ids.entry(g).or_insert(n)
                    })
                    .collect()
            })
            .collect();
        let groups: Vec<Vec<usize>> = groups;
        let mut unstarted = vec![0; ids.len()];
        for (j, g) in jobs.iter().zip(&groups) {
            unstarted[g[0]] += j.cost;
        }
        let mut dependents = vec![Vec::new(); jobs.len()];
        for j in jobs {
            for &d in &j.needs {
                dependents[d].push(j.id);
            }
        }
        Queue {
            needs: jobs.iter().map(|j| j.needs.clone()).collect(),
            dependents,
            groups,
            priority: jobs.iter().map(|j| j.priority).collect(),
            cost: jobs.iter().map(|j| j.cost).collect(),
            unstarted,
            state: vec![State::Waiting; jobs.len()],
            busy_groups: BTreeSet::new(),
        }
    }

    /// The ready job to start next, marked running; `None` when nothing can start now.
    pub fn take_ready(&mut self) -> Option<usize> {
        let best = (0..self.state.len())
            .filter(|&i| self.state[i] == State::Waiting)
            .filter(|&i| self.groups[i].iter().all(|g| !self.busy_groups.contains(g)))
            .filter(|&i| {
                self.needs[i]
                    .iter()
                    .all(|&d| self.state[d] == State::Succeeded)
            })
            .max_by(|&a, &b| self.rank(a).cmp(&self.rank(b)).then(b.cmp(&a)))?;
        self.state[best] = State::Running;
        self.unstarted[self.groups[best][0]] -= self.cost[best];
        self.busy_groups.extend(&self.groups[best]);
        Some(best)
    }

    /// Marks `id` finished. On failure, returns every waiting job that needs it (transitively),
    /// each with the id of the failed or skipped job it needed; those jobs will never start.
    pub fn finish(&mut self, id: usize, ok: bool) -> Vec<(usize, usize)> {
        self.state[id] = if ok { State::Succeeded } else { State::Failed };
        for g in &self.groups[id] {
            self.busy_groups.remove(g);
        }
        let mut skipped = Vec::new();
        if !ok {
            let mut stack = vec![id];
            while let Some(x) = stack.pop() {
                for &d in &self.dependents[x] {
                    if self.state[d] == State::Waiting {
                        self.state[d] = State::Skipped;
                        skipped.push((d, x));
                        stack.push(d);
                    }
                }
            }
        }
        skipped
    }

    /// A waiting job's priority now: its own (cost and dependents) plus what is left to do in its
    /// module version's other jobs, which must follow it one at a time.
    fn rank(&self, i: usize) -> u64 {
        self.priority[i] + self.unstarted[self.groups[i][0]] - self.cost[i]
    }

    pub fn running(&self) -> usize {
        self.state.iter().filter(|&&s| s == State::Running).count()
    }

    /// Jobs that have not finished (waiting or running).
    pub fn unfinished(&self) -> usize {
        self.state
            .iter()
            .filter(|&&s| matches!(s, State::Waiting | State::Running))
            .count()
    }

    pub fn is_done(&self) -> bool {
        self.unfinished() == 0
    }
}

/// The order jobs would start in with one at a time and every job succeeding (for `--dry-run`).
pub fn serial_order(jobs: &[Job]) -> Vec<usize> {
    let mut q = Queue::new(jobs);
    let mut out = Vec::new();
    while let Some(id) = q.take_ready() {
        q.finish(id, true);
        out.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Action, JobInfo};

    fn job(id: usize, module: &str, kernel: &str, needs: &[usize], priority: u64) -> Job {
        Job {
            id,
            info: JobInfo {
                module: module.into(),
                version: "1".into(),
                kernel: Some(kernel.into()),
                action: Action::Build,
            },
            source: None,
            headers: None,
            direct: false,
            expect: vec![],
            needs: needs.to_vec(),
            shares: vec![],
            touches: vec![kernel.into()],
            cost: 1,
            priority,
        }
    }

    #[test]
    fn dependencies_and_priority_decide_the_order() {
        // 0: spl/k1, 1: zfs/k1 needs 0, 2: small/k1
        let jobs = [
            job(0, "spl", "k1", &[], 10),
            job(1, "zfs", "k1", &[0], 9),
            job(2, "small", "k1", &[], 1),
        ];
        let mut q = Queue::new(&jobs);
        assert_eq!(q.take_ready(), Some(0));
        assert_eq!(q.take_ready(), Some(2)); // zfs waits for spl
        assert_eq!(q.take_ready(), None);
        assert_eq!(q.finish(2, true), vec![]);
        assert_eq!(q.take_ready(), None);
        assert_eq!(q.finish(0, true), vec![]);
        assert_eq!(q.take_ready(), Some(1));
        assert_eq!(q.finish(1, true), vec![]);
        assert!(q.is_done());
    }

    #[test]
    fn same_module_version_never_runs_twice_at_once() {
        let jobs = [
            job(0, "nvidia", "k1", &[], 5),
            job(1, "nvidia", "k2", &[], 5),
            job(2, "v4l2", "k1", &[], 1),
        ];
        let mut q = Queue::new(&jobs);
        assert_eq!(q.take_ready(), Some(0));
        assert_eq!(q.take_ready(), Some(2)); // nvidia/k2 shares the build dir with the running nvidia/k1
        assert_eq!(q.take_ready(), None);
        q.finish(0, true);
        assert_eq!(q.take_ready(), Some(1));
    }

    #[test]
    fn a_build_waits_while_a_module_it_may_rebuild_is_busy() {
        // dkms 3.2+ rebuilds spl's dependents itself after installing spl: while zfs builds for
        // k2, spl for k1 must wait (it would rebuild zfs in the same build directory).
        let mut spl = job(0, "spl", "k1", &[], 1);
        spl.shares = vec![("zfs".into(), "1".into())];
        let jobs = [
            job(1, "zfs", "k2", &[], 9),
            spl,
            job(2, "other", "k1", &[], 0),
        ];
        let jobs: Vec<Job> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, mut j)| {
                j.id = i;
                j
            })
            .collect();
        let mut q = Queue::new(&jobs);
        assert_eq!(q.take_ready(), Some(0)); // zfs/k2
        assert_eq!(q.take_ready(), Some(2)); // not spl: it shares zfs's build directory
        assert_eq!(q.take_ready(), None);
        q.finish(0, true);
        assert_eq!(q.take_ready(), Some(1));
    }

    #[test]
    fn a_module_with_work_left_on_other_kernels_goes_first() {
        // big/k1 and big/k2 are a chain (one build dir); mid is cheaper than big/k1 alone but
        // not than both big jobs: big goes first, and its second kernel still outranks small.
        let mut jobs = vec![
            job(0, "mid", "k1", &[], 0),
            job(1, "big", "k1", &[], 0),
            job(2, "big", "k2", &[], 0),
            job(3, "small", "k1", &[], 0),
        ];
        for (j, c) in jobs.iter_mut().zip([6, 4, 4, 1]) {
            j.cost = c;
            j.priority = c;
        }
        let mut q = Queue::new(&jobs);
        assert_eq!(q.take_ready(), Some(1)); // big: 4 + 4 left on k2
        assert_eq!(q.take_ready(), Some(0)); // mid: 6; big/k2 waits for the build dir
        assert_eq!(q.take_ready(), Some(3));
        q.finish(1, true);
        q.finish(3, true);
        assert_eq!(q.take_ready(), Some(2));
    }

    #[test]
    fn failure_skips_dependents_transitively_and_nothing_else() {
        let jobs = [
            job(0, "a", "k1", &[], 3),
            job(1, "b", "k1", &[0], 2),
            job(2, "c", "k1", &[1], 1),
            job(3, "d", "k1", &[], 1),
        ];
        let mut q = Queue::new(&jobs);
        assert_eq!(q.take_ready(), Some(0));
        assert_eq!(q.take_ready(), Some(3));
        assert_eq!(q.finish(0, false), vec![(1, 0), (2, 1)]);
        assert_eq!(q.running(), 1);
        assert!(!q.is_done());
        q.finish(3, true);
        assert!(q.is_done());
        assert_eq!(q.take_ready(), None);
    }

    #[test]
    fn serial_order_is_stable_and_topological() {
        let jobs = [
            job(0, "b", "k1", &[1], 1),
            job(1, "a", "k1", &[], 2),
            job(2, "c", "k1", &[], 2),
        ];
        assert_eq!(serial_order(&jobs), vec![1, 2, 0]);
    }
}
