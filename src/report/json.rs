//! `--dry-run --json`: the plan as one JSON document, for jq and scripts (`status --json` is
//! [`crate::status::json`], the listing's own items).
//!
//! A single document (not JSON lines): any JSON parser reads it whole, jq streams it with
//! `.[]`, and a cut-off output does not parse, so a script cannot mistake half a plan for the
//! plan. The shapes are built here from the same values the text forms print, so the two never
//! disagree; the README documents them field by field.

use crate::plan::Plan;
use crate::plan::{Action, Decision};
use serde::Serialize;

/// The `--dry-run --json` document.
#[derive(Debug, Serialize)]
pub struct PlanDoc<'a> {
    /// Jobs at once (`-j`).
    pub jobs_at_once: usize,
    /// In the order they would start one at a time (the text form's numbering).
    pub jobs: Vec<JobDoc<'a>>,
    /// `from` must succeed before `to` starts (BUILD_DEPENDS), by job id.
    pub edges: Vec<Edge>,
    /// Kernels depmod runs for after their last job.
    pub depmod: Vec<&'a str>,
    pub skipped: Vec<DecisionDoc<'a>>,
    pub failed: Vec<DecisionDoc<'a>>,
    pub notes: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct JobDoc<'a> {
    /// Stable within this document: what `edges` and `needs` name.
    pub id: usize,
    pub module: &'a str,
    pub version: &'a str,
    /// `null` for a job that covers every kernel (`unregister`).
    pub kernel: Option<&'a str>,
    pub action: ActionDoc,
    /// Removed by deleting dkms's files directly (the kernel's headers are gone).
    pub direct: bool,
    /// A build that installs the preflight's build of the same inputs instead of compiling.
    pub prebuilt: bool,
    /// Jobs that must succeed first.
    pub needs: &'a [usize],
}

/// [`Action`], spelt for JSON.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionDoc {
    Build,
    RemoveFromKernel,
    Unregister,
}

impl From<Action> for ActionDoc {
    fn from(a: Action) -> ActionDoc {
        match a {
            Action::Build => ActionDoc::Build,
            Action::RemoveFromKernel => ActionDoc::RemoveFromKernel,
            Action::Unregister => ActionDoc::Unregister,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
}

#[derive(Debug, Serialize)]
pub struct DecisionDoc<'a> {
    /// `name/version`, or the dkms.conf path when the module's identity is unknown.
    pub subject: &'a str,
    pub kernel: Option<&'a str>,
    pub reason: &'a str,
}

impl<'a> From<&'a Decision> for DecisionDoc<'a> {
    fn from(d: &'a Decision) -> DecisionDoc<'a> {
        DecisionDoc {
            subject: &d.subject,
            kernel: d.kernel.as_deref(),
            reason: &d.reason,
        }
    }
}

/// The plan as `--dry-run --json` prints it.
pub fn plan(plan: &Plan, jobs_at_once: usize) -> String {
    let jobs = crate::plan::queue::serial_order(&plan.jobs)
        .into_iter()
        .map(|id| {
            let j = &plan.jobs[id];
            JobDoc {
                id,
                module: &j.info.module,
                version: &j.info.version,
                kernel: j.info.kernel.as_deref(),
                action: j.info.action.into(),
                direct: j.direct,
                prebuilt: j.prebuilt.is_some(),
                needs: &j.needs,
            }
        })
        .collect();
    let edges = plan
        .jobs
        .iter()
        .enumerate()
        .flat_map(|(to, j)| j.needs.iter().map(move |&from| Edge { from, to }))
        .collect();
    let doc = PlanDoc {
        jobs_at_once,
        jobs,
        edges,
        depmod: plan.depmod.iter().map(String::as_str).collect(),
        skipped: plan.skipped.iter().map(Into::into).collect(),
        failed: plan.failed.iter().map(Into::into).collect(),
        notes: &plan.notes,
    };
    to_string(&doc)
}

fn to_string<T: Serialize>(value: &T) -> String {
    // Serializing plain structs of strings and numbers into a String cannot fail.
    serde_json::to_string_pretty(value).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Job;
    use crate::plan::JobInfo;

    fn job(id: usize, module: &str, needs: Vec<usize>) -> Job {
        Job {
            id,
            info: JobInfo {
                module: module.into(),
                version: "1".into(),
                kernel: Some("6.1.0-55-amd64".into()),
                action: Action::Build,
            },
            source: None,
            headers: None,
            direct: false,
            expect: vec![],
            needs,
            shares: vec![],
            touches: vec![],
            cost: 1,
            prebuilt: None,
            remembered: None,
        }
    }

    #[test]
    fn plan_lists_jobs_in_start_order_with_their_edges() {
        // b is job 0 but needs a (job 1): a starts first.
        let p = Plan {
            jobs: vec![job(0, "b", vec![1]), job(1, "a", vec![])],
            skipped: vec![Decision {
                subject: "c/2".into(),
                kernel: Some("6.1.0-55-amd64".into()),
                reason: "already installed".into(),
            }],
            ..Plan::default()
        };
        let v: serde_json::Value = serde_json::from_str(&plan(&p, 2)).unwrap();
        assert_eq!(v["jobs_at_once"], 2);
        assert_eq!(v["jobs"][0]["module"], "a");
        assert_eq!(v["jobs"][1]["module"], "b");
        assert_eq!(v["jobs"][1]["needs"], serde_json::json!([1]));
        assert_eq!(v["jobs"][0]["action"], "build");
        assert_eq!(v["edges"], serde_json::json!([{"from": 1, "to": 0}]));
        assert_eq!(v["skipped"][0]["reason"], "already installed");
        assert_eq!(v["failed"], serde_json::json!([]));
    }
}
