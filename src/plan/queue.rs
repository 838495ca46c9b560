//! The dependency queue: which job may start now.
//!
//! Three calls, after cargo's `DependencyQueue`: [`Queue::take_ready`] takes a ready node,
//! [`Queue::finish`] reports one finished ([`Ended`]) and returns the nodes that will now never run
//! (everything that needs a failed node, each [`Skipped`] with the node it needed),
//! [`Queue::is_done`] says when nothing is left. The queue holds node ids,
//! their dependencies, groups and costs, and nothing else of a job. Two constraints decide
//! readiness: a node's dependencies have all succeeded, and no other node of any of its groups is
//! running, except that nodes which may run [`Node::together`] share their own group (the
//! builds of one module version for several kernels: each builds where it can, in dkms's tree
//! or a private one, and the executor takes turns where dkms itself would collide). Among ready
//! nodes the highest rank starts first (see [`crate::plan::cost`]); ties go to the lower id, so the order
//! is stable.

use crate::plan::cost;
use std::collections::{BTreeMap, BTreeSet};

/// What the queue knows of one job. Ids are indices in the list given to [`Queue::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Nodes that must succeed first.
    pub needs: Vec<usize>,
    /// Groups of which only one node runs at a time; the first is the node's own chain (its
    /// module version), whose work left raises the node's rank.
    pub groups: Vec<String>,
    pub cost: u64,
    /// It may run beside the other nodes of its own group (the first) that may too; its other
    /// groups stay exclusive, and so does its own towards every node that may not.
    pub together: bool,
}

impl Node {
    pub fn new(cost: u64, needs: &[usize], groups: &[&str]) -> Node {
        Node {
            needs: needs.to_vec(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            cost,
            together: false,
        }
    }

    /// This node, allowed to run beside the other [`Node::together`] nodes of its own group.
    pub fn together(self) -> Node {
        Node {
            together: true,
            ..self
        }
    }
}

/// How a node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// What needs it may start.
    Succeeded,
    /// What needs it never runs.
    Failed,
}

/// A node that will never run, because `needed`, a node it needs (directly or not), failed or
/// was skipped itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub id: usize,
    pub needed: usize,
}

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
    /// Each node's groups, as indices.
    groups: Vec<Vec<usize>>,
    priority: Vec<u64>,
    cost: Vec<u64>,
    /// Per group: the cost of the nodes whose own chain it is and that have not started.
    unstarted: Vec<u64>,
    state: Vec<State>,
    together: Vec<bool>,
    /// Groups a running node holds alone.
    busy_groups: BTreeSet<usize>,
    /// Own groups -> how many of their `together` nodes run.
    shared_groups: BTreeMap<usize, usize>,
}

impl Queue {
    /// A queue over `nodes`. The caller guarantees there are no cycles (the planner fails them).
    pub fn new(nodes: Vec<Node>) -> Queue {
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        let groups: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                n.groups
                    .iter()
                    .map(|g| {
                        let next = ids.len();
                        *ids.entry(g.clone()).or_insert(next)
                    })
                    .collect()
            })
            .collect();
        let cost: Vec<u64> = nodes.iter().map(|n| n.cost).collect();
        let mut unstarted = vec![0; ids.len()];
        for (c, g) in cost.iter().zip(&groups) {
            if let Some(&own) = g.first() {
                unstarted[own] += c;
            }
        }
        let mut dependents = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for &d in &n.needs {
                dependents[d].push(i);
            }
        }
        Queue {
            state: vec![State::Waiting; nodes.len()],
            together: nodes.iter().map(|n| n.together).collect(),
            priority: cost::priorities(&cost, &dependents),
            needs: nodes.into_iter().map(|n| n.needs).collect(),
            dependents,
            groups,
            cost,
            unstarted,
            busy_groups: BTreeSet::new(),
            shared_groups: BTreeMap::new(),
        }
    }

    /// Whether `i`'s `n`th group is its own, shared with the other `together` nodes.
    fn shares_own(&self, i: usize, n: usize) -> bool {
        n == 0 && self.together[i]
    }

    fn is_ready(&self, i: usize) -> bool {
        self.state[i] == State::Waiting
            && self.groups[i].iter().enumerate().all(|(n, g)| {
                !self.busy_groups.contains(g)
                    && (self.shares_own(i, n) || !self.shared_groups.contains_key(g))
            })
            && self.needs[i]
                .iter()
                .all(|&d| self.state[d] == State::Succeeded)
    }

    /// The ready node to start next, marked running; `None` when nothing can start now.
    pub fn take_ready(&mut self) -> Option<usize> {
        let best = (0..self.state.len())
            .filter(|&i| self.is_ready(i))
            .max_by(|&a, &b| self.rank(a).cmp(&self.rank(b)).then(b.cmp(&a)))?;
        self.state[best] = State::Running;
        if let Some(&own) = self.groups[best].first() {
            self.unstarted[own] -= self.cost[best];
        }
        for (n, &g) in self.groups[best].iter().enumerate() {
            if self.shares_own(best, n) {
                *self.shared_groups.entry(g).or_default() += 1;
            } else {
                self.busy_groups.insert(g);
            }
        }
        Some(best)
    }

    /// How many nodes could start now, each alone: the most that may run beside the running ones.
    /// Nodes of one group count once, since only one of them can start (unless they may run
    /// together).
    pub fn ready(&self) -> usize {
        let mut groups = BTreeSet::new();
        (0..self.state.len())
            .filter(|&i| self.is_ready(i))
            .filter(|&i| {
                self.together[i] || self.groups[i].first().is_none_or(|g| groups.insert(*g))
            })
            .count()
    }

    /// Marks `id` finished. When it failed, returns every waiting node that needs it
    /// (transitively); those nodes will never start.
    pub fn finish(&mut self, id: usize, how: Ended) -> Vec<Skipped> {
        let ok = how == Ended::Succeeded;
        self.state[id] = if ok { State::Succeeded } else { State::Failed };
        for (n, g) in self.groups[id].iter().enumerate() {
            if !self.shares_own(id, n) {
                self.busy_groups.remove(g);
            } else if let Some(c) = self.shared_groups.get_mut(g) {
                *c -= 1;
                if *c == 0 {
                    self.shared_groups.remove(g);
                }
            }
        }
        let mut skipped = Vec::new();
        if !ok {
            let mut stack = vec![id];
            while let Some(x) = stack.pop() {
                for &d in &self.dependents[x] {
                    if self.state[d] == State::Waiting {
                        self.state[d] = State::Skipped;
                        skipped.push(Skipped { id: d, needed: x });
                        stack.push(d);
                    }
                }
            }
        }
        skipped
    }

    fn rank(&self, i: usize) -> u64 {
        let left = self.groups[i].first().map_or(0, |&g| self.unstarted[g]);
        cost::rank(self.priority[i], left, self.cost[i])
    }

    pub fn running(&self) -> usize {
        self.state.iter().filter(|&&s| s == State::Running).count()
    }

    /// Nodes that have not finished (waiting or running).
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

/// The order nodes would start in with one at a time and every one succeeding (for `--dry-run`).
pub fn serial_order<'a, T>(items: &'a [T]) -> Vec<usize>
where
    &'a T: Into<Node>,
{
    let mut q = Queue::new(items.iter().map(Into::into).collect());
    let mut out = Vec::new();
    while let Some(id) = q.take_ready() {
        q.finish(id, Ended::Succeeded);
        out.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(cost: u64, needs: &[usize], groups: &[&str]) -> Node {
        Node::new(cost, needs, groups)
    }

    /// Takes every ready node, in order.
    fn take_all(q: &mut Queue) -> Vec<usize> {
        std::iter::from_fn(|| q.take_ready()).collect()
    }

    #[test]
    fn dependencies_and_priority_decide_the_order() {
        let mut q = Queue::new(vec![
            n(1, &[], &["spl"]),
            n(9, &[0], &["zfs"]),
            n(2, &[], &["small"]),
        ]);
        // spl: 1 + zfs's 9 waiting on it = 10 beats small's 2; zfs waits for spl.
        assert_eq!(take_all(&mut q), [0, 2]);
        assert_eq!(q.finish(2, Ended::Succeeded), []);
        assert_eq!(take_all(&mut q), [0usize; 0]);
        assert_eq!(q.finish(0, Ended::Succeeded), []);
        assert_eq!(take_all(&mut q), [1]);
        assert_eq!(q.finish(1, Ended::Succeeded), []);
        assert!(q.is_done());
    }

    #[test]
    fn same_group_never_runs_twice_at_once() {
        let mut q = Queue::new(vec![
            n(5, &[], &["nvidia"]),
            n(5, &[], &["nvidia"]),
            n(1, &[], &["v4l2"]),
        ]);
        assert_eq!(q.ready(), 2, "the two nvidia nodes count once");
        assert_eq!(take_all(&mut q), [0, 2]);
        assert_eq!(q.ready(), 0);
        q.finish(0, Ended::Succeeded);
        assert_eq!(q.ready(), 1);
        assert_eq!(take_all(&mut q), [1]);
    }

    #[test]
    fn nodes_that_may_run_together_share_their_own_group_only() {
        // Two kernels of nvidia's version build at once; a removal of that version waits for
        // both, and spl, whose install may rebuild nvidia itself, waits too.
        let mut q = Queue::new(vec![
            n(5, &[], &["nvidia"]).together(),
            n(5, &[], &["nvidia"]).together(),
            n(1, &[], &["nvidia"]),
            n(1, &[], &["spl", "nvidia"]).together(),
        ]);
        assert_eq!(q.ready(), 4, "the two builds count twice, the removal once");
        assert_eq!(take_all(&mut q), [0, 1]);
        q.finish(0, Ended::Succeeded);
        assert_eq!(take_all(&mut q), [0usize; 0], "node 1 still runs");
        q.finish(1, Ended::Succeeded);
        // The removal and spl both need nvidia's build directory alone: one, then the other.
        assert_eq!(take_all(&mut q), [2]);
        q.finish(2, Ended::Succeeded);
        assert_eq!(take_all(&mut q), [3]);
        // And one that may not run together waits for none of its own to run, nor they for it.
        let mut q = Queue::new(vec![n(9, &[], &["v"]), n(1, &[], &["v"]).together()]);
        assert_eq!(take_all(&mut q), [0]);
        q.finish(0, Ended::Succeeded);
        assert_eq!(take_all(&mut q), [1]);
    }

    #[test]
    fn a_node_waits_while_any_of_its_groups_is_busy() {
        // dkms 3.2+ rebuilds spl's dependents itself after installing spl: while zfs builds for
        // k2, spl for k1 must wait (it would rebuild zfs in the same build directory).
        let mut q = Queue::new(vec![
            n(9, &[], &["zfs"]),
            n(1, &[], &["spl", "zfs"]),
            n(0, &[], &["other"]),
        ]);
        assert_eq!(take_all(&mut q), [0, 2]);
        q.finish(0, Ended::Succeeded);
        assert_eq!(take_all(&mut q), [1]);
    }

    #[test]
    fn a_group_with_work_left_on_other_kernels_goes_first() {
        // big's two nodes are a chain (one build dir); mid is cheaper than both big nodes together:
        // big goes first, and its second node still outranks small.
        let mut q = Queue::new(vec![
            n(6, &[], &["mid"]),
            n(4, &[], &["big"]),
            n(4, &[], &["big"]),
            n(1, &[], &["small"]),
        ]);
        assert_eq!(take_all(&mut q), [1, 0, 3]);
        q.finish(1, Ended::Succeeded);
        q.finish(3, Ended::Succeeded);
        assert_eq!(take_all(&mut q), [2]);
    }

    #[test]
    fn failure_skips_dependents_transitively_and_nothing_else() {
        let mut q = Queue::new(vec![
            n(1, &[], &["a"]),
            n(1, &[0], &["b"]),
            n(1, &[1], &["c"]),
            n(1, &[], &["d"]),
        ]);
        assert_eq!(take_all(&mut q), [0, 3]);
        assert_eq!(
            q.finish(0, Ended::Failed),
            [Skipped { id: 1, needed: 0 }, Skipped { id: 2, needed: 1 }]
        );
        assert_eq!(q.running(), 1);
        assert!(!q.is_done());
        q.finish(3, Ended::Succeeded);
        assert!(q.is_done());
        assert_eq!(q.take_ready(), None);
    }

    #[test]
    fn serial_order_is_stable_and_topological() {
        let nodes = [n(1, &[1], &["b"]), n(1, &[], &["a"]), n(2, &[], &["c"])];
        // a: 1 + b's 1 = 2 ties with c's 2: the lower id goes first.
        assert_eq!(serial_order(&nodes), [1, 2, 0]);
    }

    impl From<&Node> for Node {
        fn from(n: &Node) -> Node {
            n.clone()
        }
    }
}
