//! What a run is in the middle of, on disk: so that a run that dies without a word (SIGKILL, the
//! OOM killer, a power loss) leaves the next run enough to make every pair whole.
//!
//! A signal or a time limit is handled in the run itself ([`crate::execute::settle`]); a run killed with
//! SIGKILL handles nothing, and what it leaves looks to dkms like any state: a pair half
//! installed, a build moved aside by `--force`, a kept version uninstalled for a swap that never
//! finished (the new version not installed, the old one nowhere). So each job writes an entry
//! here before its first change, `ROOT/var/lib/dkms-hook/journal/PID-ID` (synced), says in it
//! when it uninstalls a kept version for its swap, and deletes it when it ends. An entry found
//! by a run that holds the run lock is one a dead run left: that run settles its pair first, as
//! after a signal (see `recover` in [`crate::execute::settle`]).
//!
//! A `--force` rebuild that was cut short leaves its pair as it was (the previous build put
//! back), and an entry `rebuild-PID-ID` that makes the next run that plans the pair rebuild it
//! (see [`Inventory`](crate::plan::inventory::Inventory)'s `rebuild`), until a build of the pair ends.
//!
//! An entry is `key=value` lines: the dkms tree it works on (the preflight's is a scratch one,
//! whose entries a run of the system leaves alone), the job's action, module, version, kernel,
//! headers, whether it removes directly, the module names it must build, the kernels whose index
//! it changes, whether it is forced, and the kept version its swap took out (`swap-from`).

use crate::plan::Job;
use crate::plan::{Action, JobInfo};
use crate::system::dkms_tree::{ModuleVersion, PairId};
use crate::system::trees::Trees;
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the entries live, under the root.
pub const JOURNAL_DIR: &str = "var/lib/dkms-hook/journal";

/// The prefix of a pending rebuild's entry.
const REBUILD: &str = "rebuild-";

/// One entry: a job of a run that did not end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// The job, as far as settling it needs (no dependencies, no source, no cost).
    pub job: Job,
    /// A `--force` rebuild.
    pub force: bool,
    /// The kept version its swap uninstalled (see `Worker::replace_kept` in [`crate::execute::work`]).
    pub swap_from: Option<String>,
    /// The pid of the run that wrote it.
    pub pid: Option<u32>,
    /// The dkms tree the job worked on: the preflight's jobs work on a scratch tree, under the
    /// system's root.
    pub dkms_tree: Option<PathBuf>,
}

fn dir(trees: &Trees) -> PathBuf {
    trees.root.join(JOURNAL_DIR)
}

/// This run's entry of `job`.
fn path_of(trees: &Trees, job: &Job) -> PathBuf {
    dir(trees).join(format!("{}-{}", std::process::id(), job.id))
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Build => "build",
        Action::RemoveFromKernel => "remove-from-kernel",
        Action::Unregister => "unregister",
    }
}

fn text(trees: &Trees, job: &Job, force: bool, swap_from: Option<&str>) -> Result<String, String> {
    let i = &job.info;
    let mut fields = vec![
        ("dkms-tree", trees.dkms.to_string_lossy().into_owned()),
        ("action", action_word(i.action).to_string()),
        ("module", i.module.clone()),
        ("version", i.version.clone()),
        ("kernel", i.kernel.clone().unwrap_or_default()),
        (
            "headers",
            job.headers
                .as_deref()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        ("direct", u8::from(job.direct).to_string()),
        ("expect", job.expect.join(" ")),
        ("touches", job.touches.join(" ")),
        ("force", u8::from(force).to_string()),
    ];
    if let Some(old) = swap_from {
        fields.push(("swap-from", old.to_string()));
    }
    let mut out = String::new();
    for (k, v) in fields {
        if v.contains('\n') {
            return Err(format!("{}: a {k} with a line break", i.label()));
        }
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

/// Writes `text` to `path` in one rename, synced, and the directory after.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let parent = path.parent().expect("an entry has a directory");
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(parent)?.sync_all()
}

fn shown(trees: &Trees, p: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", trees.display(p))
}

/// Records that `job` starts (before it changes anything).
pub fn begin(trees: &Trees, job: &Job, force: bool) -> Result<(), String> {
    let p = path_of(trees, job);
    write(&p, &text(trees, job, force, None)?).map_err(|e| shown(trees, &p, e))
}

/// Records that `job`'s swap took the kept version `old` out (`None`: it is over, one way or
/// the other).
pub fn swapping(trees: &Trees, job: &Job, force: bool, old: Option<&str>) -> Result<(), String> {
    let p = path_of(trees, job);
    write(&p, &text(trees, job, force, old)?).map_err(|e| shown(trees, &p, e))
}

/// The kept version `job`'s swap (in this run) took out, if it is not over.
pub fn swap_of(trees: &Trees, job: &Job) -> Option<String> {
    parse(&path_of(trees, job)).and_then(|e| e.swap_from)
}

/// `job` ended: its entry goes, and with a build the pending rebuilds of its pair.
pub fn end(trees: &Trees, job: &Job) {
    let _ = fs::remove_file(path_of(trees, job));
    if job.info.action == Action::Build {
        for e in rebuilds(trees) {
            if e.job.info == job.info {
                let _ = fs::remove_file(&e.path);
            }
        }
    }
}

/// `job` was a `--force` rebuild cut short: its entry becomes a pending rebuild.
pub fn to_rebuild(trees: &Trees, job: &Job) {
    let from = path_of(trees, job);
    let to = dir(trees).join(format!(
        "{REBUILD}{}",
        from.file_name().unwrap_or_default().to_string_lossy()
    ));
    if fs::rename(&from, &to).is_err() {
        if let Ok(t) = text(trees, job, true, None) {
            let _ = write(&to, &t);
        }
    }
}

/// An entry of a dead run made a pending rebuild, or dropped once settled.
pub fn settled(trees: &Trees, e: &Entry, rebuild: bool) {
    if rebuild {
        let name = e.path.file_name().unwrap_or_default().to_string_lossy();
        let _ = fs::rename(&e.path, dir(trees).join(format!("{REBUILD}{name}")));
    } else {
        let _ = fs::remove_file(&e.path);
    }
}

/// The entries of this dkms tree.
fn entries(trees: &Trees) -> Vec<Entry> {
    let mut out: Vec<Entry> = all(trees)
        .into_iter()
        .filter(|e| e.dkms_tree.as_deref().is_none_or(|d| d == trees.dkms))
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Drops the entries of another dkms tree (a preflight's scratch, emptied by the next
/// preflight): nothing of this system to settle.
pub fn drop_foreign(trees: &Trees) {
    for e in all(trees) {
        if e.dkms_tree.as_deref().is_some_and(|d| d != trees.dkms) {
            let _ = fs::remove_file(&e.path);
        }
    }
}

fn all(trees: &Trees) -> Vec<Entry> {
    let mut out: Vec<Entry> = fs::read_dir(dir(trees))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| parse(&e.path()))
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The entries runs left without ending them (call with the run lock held: no live run's).
pub fn left(trees: &Trees) -> Vec<Entry> {
    entries(trees)
        .into_iter()
        .filter(|e| !is_rebuild(&e.path))
        .collect()
}

/// The pending rebuilds.
pub fn rebuilds(trees: &Trees) -> Vec<Entry> {
    entries(trees)
        .into_iter()
        .filter(|e| is_rebuild(&e.path))
        .collect()
}

/// The pair of every pending rebuild.
pub fn rebuild_pairs(trees: &Trees) -> BTreeSet<PairId> {
    rebuilds(trees)
        .into_iter()
        .filter_map(|e| {
            let i = e.job.info;
            Some(PairId::new(i.module, i.version, i.kernel?))
        })
        .collect()
}

/// Whether a rebuild of `m/v` for `kernel` is pending.
pub fn rebuild_pending(trees: &Trees, m: &str, v: &str, kernel: &str) -> bool {
    rebuilds(trees).iter().any(|e| {
        e.job.info.module == m
            && e.job.info.version == v
            && e.job.info.kernel.as_deref() == Some(kernel)
    })
}

/// The kept version of every swap not over: those kept versions must stay registered.
pub fn pending_swaps(trees: &Trees) -> Vec<ModuleVersion> {
    entries(trees)
        .into_iter()
        .filter_map(|e| Some(ModuleVersion::new(e.job.info.module, e.swap_from?)))
        .collect()
}

/// What each entry that a dead run left says to someone who looks (`dkms-hook status`), without
/// the run lock: an entry whose run is alive is that run's business, and one of another dkms
/// tree (a preflight's) is not the system's.
pub fn left_by_dead_runs(trees: &Trees) -> Vec<String> {
    let alive = |pid: u32| Path::new("/proc").join(pid.to_string()).exists();
    entries(trees)
        .into_iter()
        .filter(|e| e.pid.is_some_and(|p| !alive(p)))
        .filter(|e| e.dkms_tree.as_ref().is_none_or(|t| *t == trees.dkms))
        .map(|e| {
            let i = &e.job.info;
            let (m, v) = (&i.module, &i.version);
            let on = i.kernel.as_deref().map(|k| format!(" on {k}")).unwrap_or_default();
            let pid = e.pid.unwrap_or_default();
            if is_rebuild(&e.path) {
                return format!(
                    "a --force rebuild of {m}/{v}{on} was cut short (pid {pid}): the previous \
                     build is installed; the next run as root rebuilds it"
                );
            }
            match &e.swap_from {
                Some(old) => format!(
                    "a dkms-hook run (pid {pid}) was killed while it swapped {m} {old} for {v}{on}: \
                     {old} is not installed there until dkms-hook runs again as root (it puts \
                     it back first)"
                ),
                None => format!(
                    "a dkms-hook run (pid {pid}) was killed in the middle of {} {m}/{v}{on}: run \
                     dkms-hook as root to make it whole",
                    match i.action {
                        Action::Build => "building",
                        _ => "removing",
                    }
                ),
            }
        })
        .collect()
}

fn is_rebuild(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(REBUILD))
}

fn parse(path: &Path) -> Option<Entry> {
    let text = fs::read_to_string(path).ok()?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
    };
    let action = match get("action")?.as_str() {
        "build" => Action::Build,
        "remove-from-kernel" => Action::RemoveFromKernel,
        "unregister" => Action::Unregister,
        _ => return None,
    };
    let kernel = get("kernel").filter(|k| !k.is_empty());
    let name = path.file_name()?.to_string_lossy().into_owned();
    let pid = name
        .trim_start_matches(REBUILD)
        .split('-')
        .next()
        .and_then(|p| p.parse().ok());
    Some(Entry {
        path: path.to_path_buf(),
        job: Job {
            id: 0,
            info: JobInfo {
                module: get("module")?,
                version: get("version")?,
                kernel: kernel.clone(),
                action,
            },
            source: None,
            headers: get("headers").filter(|h| !h.is_empty()).map(PathBuf::from),
            direct: get("direct").as_deref() == Some("1"),
            expect: get("expect")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            needs: vec![],
            shares: vec![],
            touches: match get("touches") {
                Some(t) => t.split_whitespace().map(str::to_string).collect(),
                None => kernel.into_iter().collect(),
            },
            cost: 0,
            prebuilt: None,
            remembered: None,
        },
        force: get("force").as_deref() == Some("1"),
        swap_from: get("swap-from").filter(|v| !v.is_empty()),
        pid,
        dkms_tree: get("dkms-tree")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: 3,
            info: JobInfo {
                module: "foo".into(),
                version: "1.1".into(),
                kernel: Some("6.1.0-1-amd64".into()),
                action: Action::Build,
            },
            source: None,
            headers: Some(PathBuf::from("/usr/lib/modules/6.1.0-1-amd64/build")),
            direct: false,
            expect: vec!["foo".into(), "bar".into()],
            needs: vec![],
            shares: vec![],
            touches: vec!["6.1.0-1-amd64".into()],
            cost: 0,
            prebuilt: None,
            remembered: None,
        }
    }

    #[test]
    fn an_entry_holds_the_job_and_its_swap_until_it_ends() {
        let d = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(d.path());
        let j = job();
        begin(&trees, &j, false).unwrap();
        assert_eq!(swap_of(&trees, &j), None);
        swapping(&trees, &j, false, Some("1.0")).unwrap();
        assert_eq!(swap_of(&trees, &j).as_deref(), Some("1.0"));
        assert_eq!(pending_swaps(&trees), [ModuleVersion::new("foo", "1.0")]);
        let left = left(&trees);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].job.info, j.info);
        assert_eq!(left[0].job.headers, j.headers);
        assert_eq!(left[0].job.expect, j.expect);
        assert_eq!(left[0].pid, Some(std::process::id()));
        end(&trees, &j);
        assert!(super::left(&trees).is_empty());
        assert!(pending_swaps(&trees).is_empty());
    }

    /// The preflight's jobs work on a scratch dkms tree under the system's root: a run of the
    /// system does not settle them.
    #[test]
    fn entries_of_another_dkms_tree_are_not_this_ones() {
        let d = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(d.path());
        let scratch = Trees {
            root: trees.root.clone(),
            ..Trees::defaults(&d.path().join("scratch"))
        };
        begin(&scratch, &job(), false).unwrap();
        assert_eq!(left(&scratch).len(), 1);
        assert!(left(&trees).is_empty());
        drop_foreign(&trees);
        assert!(left(&scratch).is_empty());
    }

    #[test]
    fn a_rebuild_cut_short_stays_pending_until_a_build_of_the_pair_ends() {
        let d = tempfile::tempdir().unwrap();
        let trees = Trees::defaults(d.path());
        let j = job();
        begin(&trees, &j, true).unwrap();
        to_rebuild(&trees, &j);
        assert!(left(&trees).is_empty());
        assert!(rebuild_pending(&trees, "foo", "1.1", "6.1.0-1-amd64"));
        let mut other = job();
        other.id = 9;
        begin(&trees, &other, true).unwrap();
        end(&trees, &other);
        assert!(rebuild_pairs(&trees).is_empty());
    }
}
