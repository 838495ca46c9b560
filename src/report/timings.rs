//! `--timings FILE`: a self-contained HTML page with a timeline of the run, like
//! `cargo build --timings`.
//!
//! Fed by the same events as the reporter ([`crate::run::events`]): a job's bar starts when its
//! `JobStarted` arrives and lasts the `elapsed` its `JobFinished` carries; a depmod's bar ends
//! when its event arrives and lasts its `elapsed`. Bars go to rows ("slots") by taking the lowest
//! slot free at their start, so the number of rows is the run's real concurrency. Jobs are
//! followed by their id; the page's summary line is the run's tally (`RunFinished`'s), the
//! numbers the reporter's summary says. The page needs
//! no network: the styles are inline, the timeline is inline SVG, and the tooltips are SVG
//! `<title>` elements (no script).

use crate::plan::{Action, JobInfo};
use crate::run::events::{Event, JobResult, Tally};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How one bar ended; also its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Built,
    Removed,
    /// dkms declined the pair (BUILD_EXCLUSIVE).
    Excluded,
    Failed,
    /// depmod for one kernel, which succeeded.
    Depmod,
    DepmodFailed,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Built => "built",
            Outcome::Removed => "removed",
            Outcome::Excluded => "excluded",
            Outcome::Failed => "failed",
            Outcome::Depmod => "depmod",
            Outcome::DepmodFailed => "depmod failed",
        }
    }
    fn class(self) -> &'static str {
        match self {
            Outcome::Built | Outcome::Removed => "ok",
            Outcome::Excluded => "excluded",
            Outcome::Failed | Outcome::DepmodFailed => "failed",
            Outcome::Depmod => "depmod",
        }
    }
}

/// One bar: what ran, when, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// `name/version`, or `depmod`.
    pub name: String,
    /// `None` for a job on every kernel.
    pub kernel: Option<String>,
    pub outcome: Outcome,
    /// Since the run started.
    pub start: Duration,
    pub duration: Duration,
    /// Assigned by [`Timings::slots`].
    pub slot: usize,
    /// The failure or skip in one line, for the tooltip.
    pub detail: Option<String>,
    /// Which bar started first when two start at the same time.
    order: usize,
}

/// A job that never ran, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrun {
    pub label: String,
    pub reason: String,
}

/// The timeline of one run, built from its events.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    started: Option<Instant>,
    /// Jobs running: (id, start, order of start).
    running: Vec<(usize, Duration, usize)>,
    starts: usize,
    bars: Vec<Bar>,
    unrun: Vec<Unrun>,
    total: Duration,
    concurrency: usize,
    /// The run's outcomes, counted by the runner.
    tally: Tally,
}

impl Timings {
    pub fn new() -> Timings {
        Timings::default()
    }

    /// Records `event` as it happens now.
    pub fn record(&mut self, event: &Event) {
        let started = *self.started.get_or_insert_with(Instant::now);
        self.record_at(event, started.elapsed());
    }

    /// Records `event` as arriving `at` after the run started (tests script the clock).
    pub fn record_at(&mut self, event: &Event, at: Duration) {
        match event {
            Event::RunStarted { concurrency, .. } => self.concurrency = *concurrency,
            Event::JobStarted { id, .. } => {
                self.running.push((*id, at, self.starts));
                self.starts += 1;
            }
            Event::JobFinished {
                id,
                job,
                result,
                elapsed,
                ..
            } => {
                let (outcome, detail) = match result {
                    JobResult::Done { note } => (
                        if job.action == Action::Build {
                            Outcome::Built
                        } else {
                            Outcome::Removed
                        },
                        note.clone(),
                    ),
                    JobResult::Excluded { reason } => (Outcome::Excluded, Some(reason.clone())),
                    JobResult::Failed(f) => (Outcome::Failed, Some(f.what.clone())),
                };
                self.finish(*id, job, *elapsed, at, outcome, detail);
            }
            // Stopped by a signal: a failed bar, said so.
            Event::JobInterrupted { id, job, elapsed } => self.finish(
                *id,
                job,
                *elapsed,
                at,
                Outcome::Failed,
                Some("interrupted".to_string()),
            ),
            Event::JobSkipped { job, reason, .. } => self.unrun.push(Unrun {
                label: job.label(),
                reason: reason.clone(),
            }),
            Event::Depmod {
                kernel,
                result,
                elapsed,
            } => self.bars.push(Bar {
                name: "depmod".to_string(),
                kernel: Some(kernel.clone()),
                outcome: if result.is_ok() {
                    Outcome::Depmod
                } else {
                    Outcome::DepmodFailed
                },
                start: at.saturating_sub(*elapsed),
                duration: *elapsed,
                slot: 0,
                detail: result.as_ref().err().map(ToString::to_string),
                order: usize::MAX,
            }),
            Event::RunFinished { elapsed, tally } => {
                self.total = *elapsed;
                self.tally = tally.clone();
            }
            Event::Interrupted { .. }
            | Event::Settled { .. }
            | Event::LeftUndone { .. }
            | Event::Kept(_) => {}
        }
    }

    /// The bar of job `id` that ended `at`, `elapsed` after it started.
    fn finish(
        &mut self,
        id: usize,
        job: &JobInfo,
        elapsed: Duration,
        at: Duration,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        let (start, order) = match self.running.iter().position(|(i, ..)| *i == id) {
            Some(i) => {
                let (_, start, order) = self.running.remove(i);
                (start, order)
            }
            None => (at.saturating_sub(elapsed), usize::MAX),
        };
        self.bars.push(Bar {
            name: format!("{}/{}", job.module, job.version),
            kernel: job.kernel.clone(),
            outcome,
            start,
            duration: elapsed,
            slot: 0,
            detail,
            order,
        });
    }

    /// The bars in start order, each on the lowest slot free at its start: jobs on the job slots,
    /// then depmod runs (which take no job slot) on rows of their own below them. Also the number
    /// of job slots.
    pub fn slots(&self) -> (Vec<Bar>, usize) {
        let mut bars = self.bars.clone();
        bars.sort_by_key(|b| (is_depmod(b), b.start, b.order));
        let job_rows = assign(bars.iter_mut().filter(|b| !is_depmod(b)), 0);
        assign(bars.iter_mut().filter(|b| is_depmod(b)), job_rows);
        bars.sort_by_key(|b| (b.start, b.order));
        (bars, job_rows)
    }

    /// The page.
    pub fn html(&self) -> String {
        let (bars, job_rows) = self.slots();
        let rows = bars.iter().map(|b| b.slot + 1).max().unwrap_or(0);
        let end = bars
            .iter()
            .map(|b| b.start + b.duration)
            .chain([self.total])
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            .max(0.001);

        let (left, width, row_h, top) = (110.0, 1000.0, 26.0, 24.0);
        let scale = width / end;
        let height = top + rows as f64 * row_h + 8.0;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" aria-label="timeline">"#,
            w = left + width + 20.0
        );
        // Grid: a tick every "nice" step, about ten across.
        let step = nice_step(end / 10.0);
        let mut t = 0.0;
        while t <= end + 1e-9 {
            let x = left + t * scale;
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}"/><text class="tick" x="{x:.1}" y="14">{}</text>"#,
                secs(t),
                y0 = top - 4.0,
                y1 = height - 4.0,
            );
            t += step;
        }
        for r in 0..rows {
            let y = top + r as f64 * row_h;
            let label = if r < job_rows {
                format!("slot {}", r + 1)
            } else {
                "depmod".to_string()
            };
            let _ = write!(
                svg,
                r#"<text class="slot" x="4" y="{:.1}">{label}</text>"#,
                y + 16.0,
            );
        }
        for b in &bars {
            let x = left + b.start.as_secs_f64() * scale;
            let w = (b.duration.as_secs_f64() * scale).max(2.0);
            let y = top + b.slot as f64 * row_h;
            let kernel = b.kernel.as_deref().unwrap_or("every kernel");
            let mut tip = format!(
                "{} for {kernel}: {} after {} ({} from the start)",
                b.name,
                b.outcome.word(),
                secs(b.duration.as_secs_f64()),
                secs(b.start.as_secs_f64())
            );
            if let Some(d) = &b.detail {
                let _ = write!(tip, "\n{d}");
            }
            let _ = write!(
                svg,
                r#"<g class="bar {class}" data-name="{name}" data-kernel="{kernel}" data-outcome="{word}"><title>{tip}</title><svg x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h}"><rect width="100%" height="100%" rx="3"/><text x="4" y="16">{name} {kernel}</text></svg></g>"#,
                class = b.outcome.class(),
                name = esc(&b.name),
                kernel = esc(kernel),
                word = b.outcome.word(),
                tip = esc(&tip),
                h = row_h - 4.0,
            );
        }
        svg.push_str("</svg>");

        let mut table = String::new();
        for b in bars.iter() {
            let _ = write!(
                table,
                r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                b.outcome.class(),
                esc(&b.name),
                esc(b.kernel.as_deref().unwrap_or("every kernel")),
                b.outcome.word(),
                secs(b.start.as_secs_f64()),
                secs(b.duration.as_secs_f64()),
                esc(b.detail.as_deref().unwrap_or("")),
            );
        }
        for u in &self.unrun {
            let _ = write!(
                table,
                r#"<tr class="skipped"><td colspan="3">{}</td><td>skipped</td><td></td><td>{}</td></tr>"#,
                esc(&u.label),
                esc(&u.reason),
            );
        }

        format!(
            r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dkms-hook timings</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }}
h1 {{ font-size: 18px; margin: 0 0 6px; }}
p.summary {{ margin: 0 0 12px; }}
svg text {{ font: 12px system-ui, sans-serif; }}
.tick {{ fill: #666; text-anchor: middle; }}
.slot {{ fill: #444; }}
.grid {{ stroke: #e4e4e4; }}
.bar rect {{ stroke: rgba(0,0,0,.25); }}
.bar text {{ fill: #fff; }}
.ok rect {{ fill: #2e8b57; }}
.failed rect {{ fill: #c0392b; }}
.excluded rect {{ fill: #8a8a8a; }}
.depmod rect {{ fill: #3465a4; }}
.bar:hover rect {{ stroke: #000; stroke-width: 2; }}
table {{ border-collapse: collapse; margin-top: 16px; }}
td, th {{ padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.failed td {{ color: #c0392b; }}
tr.skipped td, tr.excluded td {{ color: #777; }}
</style>
</head>
<body>
<h1>dkms-hook timings</h1>
<p class="summary">{total} in all, {jobs} jobs on up to {concurrency} slots: {built} built, {removed} removed, {skipped} skipped, {failed} failed; {depmods} depmod.</p>
{svg}
<table>
<thead><tr><th>module</th><th>kernel</th><th>outcome</th><th>start</th><th>time</th><th>detail</th></tr></thead>
<tbody>{table}</tbody>
</table>
</body>
</html>
"#,
            total = secs(self.total.as_secs_f64()),
            jobs = bars.iter().filter(|b| b.name != "depmod").count() + self.unrun.len(),
            concurrency = self.concurrency,
            built = self.tally.built,
            removed = self.tally.removed,
            skipped = self.tally.skipped.len(),
            failed = self.tally.failed,
            depmods = self.tally.depmods,
        )
    }
}

fn is_depmod(b: &Bar) -> bool {
    matches!(b.outcome, Outcome::Depmod | Outcome::DepmodFailed)
}

/// Gives each of `bars` (in start order) the lowest row from `first` on that is free at its
/// start; returns the number of rows used.
fn assign<'a>(bars: impl Iterator<Item = &'a mut Bar>, first: usize) -> usize {
    // When each row becomes free.
    let mut free_at: Vec<Duration> = Vec::new();
    for b in bars {
        let row = match free_at.iter().position(|&end| end <= b.start) {
            Some(r) => r,
            None => {
                free_at.push(Duration::ZERO);
                free_at.len() - 1
            }
        };
        free_at[row] = b.start + b.duration;
        b.slot = first + row;
    }
    free_at.len()
}

/// `1.2s`, `45s`, `2m05s`.
fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else {
        format!("{}m{:02.0}s", (s / 60.0).floor(), s % 60.0)
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.max(1e-3).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Text and attribute values, escaped for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::events::Failure;

    fn job(m: &str, k: &str) -> JobInfo {
        JobInfo {
            module: m.into(),
            version: "1".into(),
            kernel: Some(k.into()),
            action: Action::Build,
        }
    }

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn finished(id: usize, j: &JobInfo, result: JobResult, elapsed: f64) -> Event {
        Event::JobFinished {
            id,
            job: j.clone(),
            result,
            elapsed: s(elapsed),
            finished: 0,
            total: 0,
        }
    }

    /// a runs 0-3, b 0-1, c 1-2 (b's slot is free again), d 2.5-4 (b's slot again, the lowest).
    #[test]
    fn each_bar_takes_the_lowest_free_slot() {
        let (a, b, c, d) = (job("a", "k"), job("b", "k"), job("c", "k"), job("d", "k"));
        let done = || JobResult::Done { note: None };
        let mut t = Timings::new();
        let script = [
            (
                0.0,
                Event::JobStarted {
                    id: 0,
                    job: a.clone(),
                },
            ),
            (
                0.0,
                Event::JobStarted {
                    id: 1,
                    job: b.clone(),
                },
            ),
            (1.0, finished(1, &b, done(), 1.0)),
            (
                1.0,
                Event::JobStarted {
                    id: 2,
                    job: c.clone(),
                },
            ),
            (2.0, finished(2, &c, done(), 1.0)),
            (
                2.5,
                Event::JobStarted {
                    id: 3,
                    job: d.clone(),
                },
            ),
            (3.0, finished(0, &a, done(), 3.0)),
            (4.0, finished(3, &d, done(), 1.5)),
        ];
        for (at, e) in &script {
            t.record_at(e, s(*at));
        }
        let got: Vec<(String, usize, Duration)> = t
            .slots()
            .0
            .into_iter()
            .map(|b| (b.name, b.slot, b.start))
            .collect();
        assert_eq!(
            got,
            [
                ("a/1".to_string(), 0, s(0.0)),
                ("b/1".to_string(), 1, s(0.0)),
                ("c/1".to_string(), 1, s(1.0)),
                ("d/1".to_string(), 1, s(2.5)),
            ]
        );
    }

    #[test]
    fn page_has_one_bar_per_job_with_its_outcome_and_no_network() {
        let (a, b) = (job("a<x>", "k1"), job("b", "k2"));
        let mut t = Timings::new();
        t.record_at(
            &Event::JobStarted {
                id: 0,
                job: a.clone(),
            },
            s(0.0),
        );
        t.record_at(
            &Event::JobStarted {
                id: 1,
                job: b.clone(),
            },
            s(0.0),
        );
        t.record_at(
            &finished(0, &a, JobResult::Done { note: None }, 2.0),
            s(2.0),
        );
        let failure = Failure {
            what: "make failed (dkms exit 10)".into(),
            errors: vec![],
            log: None,
            output: vec![],
        };
        t.record_at(&finished(1, &b, JobResult::Failed(failure), 3.0), s(3.0));
        t.record_at(
            &Event::Depmod {
                kernel: "k1".into(),
                result: Ok(()),
                elapsed: s(0.5),
            },
            s(3.5),
        );
        t.record_at(
            &Event::RunFinished {
                elapsed: s(3.6),
                tally: Tally::default(),
            },
            s(3.6),
        );
        let html = t.html();
        assert_eq!(html.matches(r#"<g class="bar "#).count(), 3);
        // Two job slots, and depmod on a row of its own although a slot was free.
        assert_eq!(t.slots().1, 2);
        assert!(
            html.contains(">slot 2<") && html.contains(">depmod<") && !html.contains(">slot 3<")
        );
        assert!(html.contains(r#"data-name="a&lt;x&gt;/1" data-kernel="k1" data-outcome="built""#));
        assert!(html.contains(r#"data-name="b/1" data-kernel="k2" data-outcome="failed""#));
        assert!(html.contains(r#"data-name="depmod" data-kernel="k1" data-outcome="depmod""#));
        assert!(html.contains("make failed (dkms exit 10)"));
        // The only URL is the SVG namespace, which is a name, not something fetched.
        let without_ns = html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
        assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(secs(75.0), "1m15s");
    }
}
