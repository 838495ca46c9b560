//! The reporter: turns runner events into what the user reads.
//!
//! Under pacman there is no TTY: pacman prints each line of a hook as it arrives, so the reporter
//! writes plain, fixed-width lines only (a right-aligned status word, `[  12.3s]`, a `(3/7)` counter,
//! the job's label), a failure in full right after its FAILED line, the failures again at the end, one
//! summary line and, when anything failed, a final `==> ERROR:` line naming the kernels not to boot.
//! The runner knows nothing of this: it hands over events ([`crate::run::events`]) that carry their own
//! data, so the reporter only counts and formats, and tests render it into a string.
//!
//! On a TTY the same lines are printed, coloured unless NO_COLOR is set, above one progress bar of
//! the running jobs. The bar is drawn on stderr and cleared around each line written to `out`.

use crate::plan::{Action, Decision, JobInfo};
use crate::run::events::{Event, Failure, JobResult, KeptGone, KeptSettled, Settled, Tally};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regex::Regex;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// How output looks: decided once, by a pure function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Draw a progress bar of the running jobs (only ever on a TTY).
    pub progress: bool,
    /// Colour status words and errors.
    pub color: bool,
}

impl Style {
    /// `is_tty`: the output is a terminal; `no_color`: the user asked for no colour (NO_COLOR is set).
    /// Without a TTY (pacman, a pipe, a file): plain lines only.
    pub fn detect(is_tty: bool, no_color: bool) -> Style {
        Style {
            progress: is_tty,
            color: is_tty && !no_color,
        }
    }
}

/// Width of the status word column; the longest words (`EXCLUDED`) keep two spaces before them.
const STATUS_WIDTH: usize = 10;

/// The colour of a status word or a message prefix.
#[derive(Debug, Clone, Copy)]
enum Tone {
    Start,
    Good,
    Skip,
    Bad,
    Plain,
}

/// What kind of work a failure stops, for the final line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stops {
    /// A module is missing on `kernel` (a failed build, a planner failure).
    Build,
    Remove,
    Depmod,
}

/// One failure, as listed again at the end.
struct Failed {
    /// `label: what`, the text after `error: `.
    line: String,
    stops: Stops,
    /// `name/version`, or the dkms.conf path for a module whose identity is unknown.
    module: String,
    kernel: Option<String>,
}

pub struct Reporter {
    out: Box<dyn Write + Send>,
    style: Style,
    /// Where a progress bar would be drawn; hidden in tests.
    bar_target: fn() -> ProgressDrawTarget,
    bar: Option<ProgressBar>,
    /// The jobs now running (by their id), in start order, with their labels for the bar's
    /// message.
    running: Vec<(usize, String)>,
    /// Jobs of the run, from RunStarted (the counter's width).
    total: usize,
    /// The failures as they came, listed again at the end (the summary counts the tally's).
    failures: Vec<Failed>,
    /// What a failure the planner reports stops: a build, or (in a removal run) a removal.
    planned: Stops,
    /// The system root: paths are shown relative to it, as the admin sees them there.
    root: PathBuf,
    /// The preflight's trial builds: nothing is installed on the system either way.
    trial: bool,
    /// The trial ran out of room for its own writes: its failures say nothing of the modules.
    out_of_space: bool,
    /// The trial's failures that wrote where its view lets nothing write (module, kernel): not
    /// checked, not "would not build".
    refused: Vec<(String, String)>,
    /// The signal that stopped the run, and how many jobs it left undone.
    interrupted: Option<(String, usize)>,
}

impl Reporter {
    pub fn new(out: Box<dyn Write + Send>, style: Style) -> Reporter {
        Reporter {
            out,
            style,
            bar_target: ProgressDrawTarget::stderr,
            bar: None,
            running: Vec::new(),
            total: 0,
            failures: Vec::new(),
            planned: Stops::Build,
            root: PathBuf::from("/"),
            trial: false,
            out_of_space: false,
            refused: Vec::new(),
            interrupted: None,
        }
    }

    /// A removal run (`dkms-hook remove`): what the planner fails is a module it could not
    /// remove, not one it could not build.
    pub fn removing(mut self) -> Reporter {
        self.planned = Stops::Remove;
        self
    }

    /// The preflight's trial builds: the last line says what would not build where, not what
    /// is not installed (the preflight's own lines then say what that means for the transaction).
    pub fn trial(mut self) -> Reporter {
        self.trial = true;
        self
    }

    /// The trial's writes ran out of room: the last line says its failures were not checked,
    /// not that the modules would not build.
    pub fn trial_out_of_space(&mut self) {
        self.out_of_space = true;
    }

    /// The trial build of `module` (`M/V`, as failures name it) for `kernel` failed writing where the view lets nothing
    /// write: the last line says it was not checked.
    pub fn trial_refused(&mut self, module: &str, kernel: &str) {
        self.refused.push((module.to_owned(), kernel.to_owned()));
    }

    /// Paths under `root` are shown as on the system itself (`/var/log/...`), like every path
    /// dkms-hook shows ([`crate::system::trees::display_under`]).
    pub fn under_root(mut self, root: &Path) -> Reporter {
        self.root = root.to_path_buf();
        self
    }

    /// Whether anything failed: a job, depmod, or a module the planner could not plan.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    pub fn handle(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                jobs,
                concurrency,
                skipped,
                failed,
                notes,
            } => self.run_started(*jobs, *concurrency, skipped, failed, notes),
            Event::JobStarted { id, job } => {
                // No counter: it counts finished jobs, and a start has none, so that `(2/4)`
                // always means the same thing.
                let line = self.status_line("START", Tone::Start, None, None, &job.label());
                self.emit(line);
                self.running.push((*id, job.label()));
                self.update_bar(None);
            }
            Event::JobFinished {
                id,
                job,
                result,
                elapsed,
                finished,
                total,
            } => {
                self.job_finished(job, result, *elapsed, (*finished, *total));
                self.stopped_running(*id, Some(*finished));
            }
            Event::JobSkipped {
                id,
                job,
                reason,
                finished,
                total,
            } => {
                let text = format!("{}: {reason}", job.label());
                let line = self.status_line(
                    "SKIPPED",
                    Tone::Skip,
                    None,
                    Some((*finished, *total)),
                    &text,
                );
                self.emit(line);
                self.stopped_running(*id, Some(*finished));
            }
            Event::Depmod {
                kernel,
                result,
                elapsed,
            } => match result {
                Ok(()) => {
                    let line = self.status_line("DEPMOD", Tone::Good, Some(*elapsed), None, kernel);
                    self.emit(line);
                }
                Err(e) => {
                    let label = format!("depmod {kernel}");
                    let message = &e.said;
                    let mut lines =
                        vec![self.status_line("FAILED", Tone::Bad, Some(*elapsed), None, &label)];
                    lines.extend(self.failure_lines(&label, message, &[], &[], None));
                    self.emit_all(lines);
                    self.failures.push(Failed {
                        line: format!("{label}: {}", first_line(message)),
                        stops: Stops::Depmod,
                        module: String::new(),
                        kernel: Some(kernel.clone()),
                    });
                }
            },
            Event::Interrupted {
                signal,
                running,
                grace,
            } => {
                self.interrupted = Some((signal.clone(), 0));
                let text = format!(
                    "{signal}: no job starts any more; the {running} running {} told to stop \
                     (killed if still running after {} s)",
                    plural(*running, "is", "are"),
                    grace.as_secs()
                );
                let line = format!("{} {text}", self.paint(&pad("Stopping"), Tone::Skip, true));
                self.emit(line);
            }
            Event::JobInterrupted { id, job, elapsed } => {
                let line =
                    self.status_line("STOPPED", Tone::Skip, Some(*elapsed), None, &job.label());
                self.emit(line);
                self.stopped_running(*id, None);
            }
            Event::Settled { job, result, .. } => self.settled(job, result),
            Event::LeftUndone { jobs } => {
                if let Some((_, n)) = &mut self.interrupted {
                    *n = jobs.len();
                }
                if !jobs.is_empty() {
                    // A trial's are not for a next run: they were not checked.
                    let what = match self.trial {
                        true => "not checked (interrupted):",
                        false => "left undone, for the next run:",
                    };
                    let mut lines =
                        vec![format!("{} {what}", self.paint("note:", Tone::Start, true))];
                    lines.extend(jobs.iter().map(|j| indent(&j.label())));
                    self.emit_all(lines);
                }
            }
            Event::RunFinished { elapsed, tally } => self.run_finished(*elapsed, tally),
            Event::Kept(kept) => self.kept(kept),
        }
    }

    /// What the settling of the kept versions after the run did with one of them.
    fn kept(&mut self, kept: &KeptSettled) {
        let line = match kept {
            KeptSettled::Removed {
                module,
                version,
                why,
            } => {
                let why = match why {
                    KeptGone::NoSources => "its module has no sources left",
                    KeptGone::Replaced => "a newer version is installed wherever it was",
                };
                format!("  removed the kept {module}/{version}: {why}")
            }
            KeptSettled::NotRemoved {
                module,
                version,
                dkms,
            } => self.error_line(&format!(
                "removing the kept {module}/{version}: dkms remove: {dkms}"
            )),
            KeptSettled::DepmodFailed(e) => self.error_line(&e.to_string()),
        };
        self.emit(line);
    }

    /// An interrupted job's pair, made whole.
    fn settled(&mut self, job: &JobInfo, result: &Result<Settled, String>) {
        let label = job.label();
        let text = match (result, job.action) {
            (Ok(Settled::Installed), _) => format!("{label}: installed and verified"),
            (Ok(Settled::Rebuild), _) => format!(
                "{label}: installed and verified as it was: its rebuild was cut short, and the \
                 next run does it"
            ),
            (Ok(Settled::Kept { version }), _) => format!(
                "{label}: not installed; kept {} {version} on {}, put back, installed and verified",
                job.module,
                job.kernel.as_deref().unwrap_or_default()
            ),
            (Ok(Settled::Absent { .. }), Action::RemoveFromKernel | Action::Unregister) => {
                format!("{label}: removed")
            }
            (Ok(Settled::Absent { removed: true }), _) => {
                format!("{label}: not installed; what it had left half done was removed")
            }
            (Ok(Settled::Absent { removed: false }), _) => {
                format!("{label}: not installed; nothing of it was left")
            }
            (Err(e), _) => {
                let mut lines = vec![self.status_line("FAILED", Tone::Bad, None, None, &label)];
                let what = format!("interrupted, and could not be made whole: {e}");
                lines.extend(self.failure_lines(&label, &what, &[], &[], None));
                self.emit_all(lines);
                self.failures.push(Failed {
                    line: format!("{label}: {}", first_line(&what)),
                    stops: match job.action {
                        Action::Build => Stops::Build,
                        Action::RemoveFromKernel | Action::Unregister => Stops::Remove,
                    },
                    module: format!("{}/{}", job.module, job.version),
                    kernel: job.kernel.clone(),
                });
                return;
            }
        };
        let line = self.status_line("SETTLED", Tone::Skip, None, None, &text);
        self.emit(line);
    }

    fn run_started(
        &mut self,
        jobs: usize,
        concurrency: usize,
        skipped: &[Decision],
        failed: &[Decision],
        notes: &[String],
    ) {
        self.total = jobs;
        if jobs > 0 {
            let at_once = concurrency.clamp(1, jobs);
            let header = format!(
                "{} {}, {at_once} at a time",
                jobs,
                plural(jobs, "job", "jobs")
            );
            let line = format!(
                "{} {header}",
                self.paint(&pad("Starting"), Tone::Plain, true)
            );
            self.emit(line);
        }
        for note in notes {
            let line = format!("{} {note}", self.paint("note:", Tone::Start, true));
            self.emit(line);
        }
        for decision in failed {
            let text = decision.to_string();
            let line = self.error_line(&text);
            self.emit(line);
            self.failures.push(Failed {
                line: text,
                stops: self.planned,
                module: decision.subject.clone(),
                kernel: decision.kernel.clone(),
            });
        }
        for decision in skipped {
            let text = decision.to_string();
            let line = self.status_line("SKIPPED", Tone::Skip, None, None, &text);
            self.emit(line);
        }
        if self.style.progress && jobs > 0 {
            let bar = ProgressBar::with_draw_target(Some(jobs as u64), (self.bar_target)());
            let template = if self.style.color {
                "{spinner:.cyan} [{elapsed:>4}] {bar:25.cyan/blue} {pos}/{len} {wide_msg}"
            } else {
                "{spinner} [{elapsed:>4}] {bar:25} {pos}/{len} {wide_msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
    }

    fn job_finished(
        &mut self,
        job: &JobInfo,
        result: &JobResult,
        elapsed: Duration,
        counter: (usize, usize),
    ) {
        let label = job.label();
        match result {
            JobResult::Done { note } => {
                let word = match job.action {
                    Action::Build => "BUILT",
                    Action::RemoveFromKernel | Action::Unregister => "REMOVED",
                };
                let text = match note {
                    Some(note) => format!("{label}: {note}"),
                    None => label,
                };
                let line = self.status_line(word, Tone::Good, Some(elapsed), Some(counter), &text);
                self.emit(line);
            }
            JobResult::Excluded { reason } => {
                let text = format!("{label}: {reason}");
                let line =
                    self.status_line("EXCLUDED", Tone::Skip, Some(elapsed), Some(counter), &text);
                self.emit(line);
            }
            JobResult::Failed(failure) => {
                let Failure {
                    what,
                    errors,
                    output,
                    log,
                    ..
                } = failure;
                // One write for the whole block, so a progress bar is not redrawn inside it.
                let mut lines = vec![self.status_line(
                    "FAILED",
                    Tone::Bad,
                    Some(elapsed),
                    Some(counter),
                    &label,
                )];
                lines.extend(self.failure_lines(&label, what, errors, output, log.as_deref()));
                self.emit_all(lines);
                self.failures.push(Failed {
                    line: format!("{label}: {}", first_line(what)),
                    stops: match job.action {
                        Action::Build => Stops::Build,
                        Action::RemoveFromKernel | Action::Unregister => Stops::Remove,
                    },
                    module: format!("{}/{}", job.module, job.version),
                    kernel: job.kernel.clone(),
                });
            }
        }
    }

    /// A failure in full, right after its FAILED line: `error: label: what`, then the compiler's own
    /// error lines (or the tail of dkms's output when there are none), then where the full log is.
    fn failure_lines(
        &self,
        label: &str,
        what: &str,
        errors: &[String],
        output: &[String],
        log: Option<&std::path::Path>,
    ) -> Vec<String> {
        let mut what_lines = what.lines();
        let mut lines =
            vec![self.error_line(&format!("{label}: {}", what_lines.next().unwrap_or("")))];
        lines.extend(what_lines.map(indent));
        if !errors.is_empty() {
            lines.extend(errors.iter().map(|l| indent(l)));
        } else if !output.is_empty() {
            lines.push(indent("dkms's output ended with:"));
            lines.extend(output.iter().map(|l| indent(&indent(l))));
        }
        if let Some(log) = log {
            let log = crate::system::trees::display_under(&self.root, log);
            lines.push(indent(&format!("full log: {log}")));
        }
        lines
    }

    fn run_finished(&mut self, elapsed: Duration, tally: &Tally) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let lines: Vec<String> = self
            .failures
            .iter()
            .map(|f| self.error_line(&f.line))
            .collect();
        self.emit_all(lines);

        let mut parts = Vec::new();
        if tally.built > 0 {
            parts.push(format!("{} built", tally.built));
        }
        if tally.removed > 0 {
            parts.push(format!("{} removed", tally.removed));
        }
        if !tally.skipped.is_empty() {
            let reasons: Vec<String> = skip_groups(&tally.skipped)
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            parts.push(format!(
                "{} skipped ({})",
                tally.skipped.len(),
                reasons.join(", ")
            ));
        }
        let failed = format!("{} failed", tally.failed);
        parts.push(if tally.failed == 0 {
            failed
        } else {
            self.paint(&failed, Tone::Bad, true)
        });
        let summary = format!(
            "{} {} {}",
            self.paint(&pad("Summary"), Tone::Plain, true),
            duration(Some(elapsed)),
            parts.join(", ")
        );
        self.emit(summary);

        if let Some(verdict) = self.verdict(tally.failed) {
            let head = if self.trial {
                "==> preflight:"
            } else {
                "==> ERROR:"
            };
            let line = format!("{} {verdict}", self.paint(head, Tone::Bad, true));
            self.emit(line);
        }
        if let (Some((signal, undone)), true) = (&self.interrupted, self.trial) {
            let text = format!(
                "interrupted by {signal}: {undone} trial {} not checked",
                plural(*undone, "build", "builds")
            );
            let line = format!("{} {text}", self.paint("==> preflight:", Tone::Bad, true));
            self.emit(line);
        } else if let Some((signal, undone)) = &self.interrupted {
            let text = format!(
                "interrupted by {signal}: {undone} {} left undone; every pair is either installed \
                 or absent: run dkms-hook again to finish",
                plural(*undone, "job", "jobs")
            );
            let line = format!("{} {text}", self.paint("==> ERROR:", Tone::Bad, true));
            self.emit(line);
        }
    }

    /// The last line when anything failed: as many failures as the summary counts, then what is
    /// missing where: the modules not installed for each kernel, those not removed, the kernels
    /// whose module index was not updated.
    fn verdict(&self, failed: usize) -> Option<String> {
        if failed == 0 {
            return None;
        }
        let mut parts = Vec::new();
        let build = match (self.trial, self.out_of_space) {
            (true, true) => (
                "not checked (out of space)",
                "not checked (out of space) for",
            ),
            (true, false) => ("would not build", "would not build for"),
            (false, _) => ("not built", "not installed for"),
        };
        for (stops, none, some) in [
            (Stops::Build, build.0, build.1),
            (
                Stops::Remove,
                "not removed from every kernel",
                "not removed from",
            ),
        ] {
            // module -> its kernels, then the modules of each set of kernels.
            let mut kernels: BTreeMap<&str, Vec<Option<&str>>> = BTreeMap::new();
            let refused = |f: &&Failed| {
                f.kernel
                    .as_ref()
                    .is_some_and(|k| self.refused.iter().any(|(m, rk)| *m == f.module && rk == k))
            };
            for f in self
                .failures
                .iter()
                .filter(|f| f.stops == stops && !refused(f))
            {
                let ks = kernels.entry(&f.module).or_default();
                if !ks.contains(&f.kernel.as_deref()) {
                    ks.push(f.kernel.as_deref());
                }
            }
            let mut modules: BTreeMap<Vec<Option<&str>>, Vec<&str>> = BTreeMap::new();
            for (m, mut ks) in kernels {
                ks.sort_by(|a, b| crate::system::version::cmp(a.unwrap_or(""), b.unwrap_or("")));
                modules.entry(ks).or_default().push(m);
            }
            for (ks, ms) in modules {
                let named: Vec<&str> = ks.iter().flatten().copied().collect();
                let modules = join_words(&ms, "and");
                if named.len() < ks.len() {
                    parts.push(format!("{none}: {modules}"));
                }
                if !named.is_empty() {
                    parts.push(format!("{some} {}: {modules}", join_words(&named, "and")));
                }
            }
        }
        for (m, k) in &self.refused {
            parts.push(format!(
                "not checked (it writes outside the trial's view) for {k}: {m}"
            ));
        }
        let depmod: Vec<&str> = self
            .failures
            .iter()
            .filter(|f| f.stops == Stops::Depmod)
            .filter_map(|f| f.kernel.as_deref())
            .collect();
        if !depmod.is_empty() {
            parts.push(format!(
                "module index not updated (depmod) for {}",
                join_words(&depmod, "and")
            ));
        }
        Some(format!("{failed} failed: {}", parts.join("; ")))
    }

    /// Job `id` runs no more; `finished` jobs have.
    fn stopped_running(&mut self, id: usize, finished: Option<usize>) {
        self.running.retain(|(i, _)| *i != id);
        self.update_bar(finished);
    }

    fn update_bar(&self, finished: Option<usize>) {
        if let Some(bar) = &self.bar {
            if let Some(finished) = finished {
                bar.set_position(finished as u64);
            }
            let labels: Vec<&str> = self.running.iter().map(|(_, l)| l.as_str()).collect();
            bar.set_message(labels.join(", "));
        }
    }

    /// `    STATUS [  12.3s] (3/7) text`: the word right-aligned, the time or blanks, the counter or
    /// blanks of the same width.
    fn status_line(
        &self,
        word: &str,
        tone: Tone,
        elapsed: Option<Duration>,
        counter: Option<(usize, usize)>,
        text: &str,
    ) -> String {
        let width = self
            .total
            .max(counter.map_or(0, |(_, t)| t))
            .to_string()
            .len();
        let counter = match counter {
            Some((n, total)) => format!("({n:>width$}/{total:>width$})"),
            _ => " ".repeat(2 * width + 3),
        };
        format!(
            "{} {} {counter} {text}",
            self.paint(&pad(word), tone, true),
            duration(elapsed)
        )
    }

    fn error_line(&self, text: &str) -> String {
        format!("{} {text}", self.paint("error:", Tone::Bad, true))
    }

    fn paint(&self, text: &str, tone: Tone, bold: bool) -> String {
        if !self.style.color {
            return text.to_string();
        }
        let style = console::Style::new().force_styling(true);
        let style = match tone {
            Tone::Start => style.cyan(),
            Tone::Good => style.green(),
            Tone::Skip => style.yellow(),
            Tone::Bad => style.red(),
            Tone::Plain => style,
        };
        let style = if bold { style.bold() } else { style };
        style.apply_to(text).to_string()
    }

    fn emit(&mut self, line: String) {
        self.emit_all(vec![line]);
    }

    /// Writes lines, clearing the progress bar around them. A write error is ignored: there is
    /// nowhere left to report it, and the exit status still tells what happened.
    fn emit_all(&mut self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let out = &mut self.out;
        let mut write = move || {
            for line in &lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// The skips counted under their reasons, or under the dkms directive that excluded them (reasons
/// name a pattern and a kernel: `BUILD_EXCLUSIVE_KERNEL="^5\." does not match 6.1.0-56-amd64`), so
/// the summary stays one short line; in the order first seen.
fn skip_groups(reasons: &[String]) -> Vec<(&str, usize)> {
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for r in reasons {
        let group = skip_group(r);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, n)) => *n += 1,
            None => groups.push((group, 1)),
        }
    }
    groups
}

fn skip_group(reason: &str) -> &str {
    static DIRECTIVE: OnceLock<Regex> = OnceLock::new();
    let directive = DIRECTIVE.get_or_init(|| Regex::new(r"\bBUILD_EXCLUSIVE(_[A-Z]+)*\b").unwrap());
    directive.find(reason).map_or(reason, |m| m.as_str())
}

fn pad(word: &str) -> String {
    format!("{word:>STATUS_WIDTH$}")
}

fn duration(elapsed: Option<Duration>) -> String {
    match elapsed {
        Some(d) => format!("[{:>6.1}s]", d.as_secs_f64()),
        None => format!("[{}]", " ".repeat(7)),
    }
}

fn indent(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!("    {line}")
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

pub(crate) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join_words(words: &[&str], last: &str) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., tail] => format!("{} {last} {tail}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::depmod::DepmodError;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// An `out` the test can read back after the reporter wrote to it.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    const PLAIN: Style = Style {
        progress: false,
        color: false,
    };

    /// Renders `events` and returns the text and whether the reporter saw a failure.
    fn render_with(style: Style, events: &[Event], hidden_bar: bool) -> (String, bool) {
        let buffer = Buffer::default();
        let mut reporter = Reporter::new(Box::new(buffer.clone()), style);
        if hidden_bar {
            reporter.bar_target = ProgressDrawTarget::hidden;
        }
        for event in &tallied(events) {
            reporter.handle(event);
        }
        (buffer.text(), reporter.failed())
    }

    /// `events`, their RunFinished carrying what the runner counts of them.
    fn tallied(events: &[Event]) -> Vec<Event> {
        let tally = Tally::of(events);
        events
            .iter()
            .map(|e| match e {
                Event::RunFinished { elapsed, .. } => Event::RunFinished {
                    elapsed: *elapsed,
                    tally: tally.clone(),
                },
                e => e.clone(),
            })
            .collect()
    }

    fn render(events: &[Event]) -> (String, bool) {
        render_with(PLAIN, events, false)
    }

    fn job(module: &str, version: &str, kernel: Option<&str>, action: Action) -> JobInfo {
        JobInfo {
            module: module.into(),
            version: version.into(),
            kernel: kernel.map(str::to_string),
            action,
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    const K: &str = "6.1.0-56-amd64";

    /// A kernel upgrade: one module built, one excluded by dkms, one failing to compile, one that needed
    /// it skipped, one planner skip and one dkms.conf that does not parse.
    fn kernel_upgrade() -> Vec<Event> {
        let vpoll = job("vpoll", "0.1", Some(K), Action::Build);
        let broken = job("broken", "1.0", Some(K), Action::Build);
        let tp = job("tp_smapi", "0.44", Some(K), Action::Build);
        let needs = job("needs-broken", "2.0", Some(K), Action::Build);
        vec![
            Event::RunStarted {
                jobs: 4,
                concurrency: 2,
                skipped: vec![
                    Decision {
                        subject: "acpi-call/1.2.2".into(),
                        kernel: Some(K.into()),
                        reason: "already installed".into(),
                    },
                    Decision {
                        subject: "digimend/10".into(),
                        kernel: Some(K.into()),
                        reason: r#"BUILD_EXCLUSIVE_KERNEL="^5\." does not match 6.1.0-56-amd64"#.into(),
                    },
                ],
                failed: vec![Decision {
                    subject: "/usr/src/foo-1.0/dkms.conf".into(),
                    kernel: None,
                    reason: "line 3: syntax error near unexpected token `('".into(),
                }],
                notes: vec!["kernel 6.1.0-54-amd64 has no headers: nothing is built for it".into()],
            },
            Event::JobStarted {
                id: 0,
                job: vpoll.clone(),
            },
            Event::JobStarted {
                id: 1,
                job: broken.clone(),
            },
            Event::JobFinished {
                id: 0,
                job: vpoll,
                result: JobResult::Done { note: None },
                elapsed: secs(12.34),
                finished: 1,
                total: 4,
            },
            Event::JobStarted {
                id: 2,
                job: tp.clone(),
            },
            Event::JobFinished {
                id: 2,
                job: tp,
                result: JobResult::Excluded {
                    reason: "dkms: BUILD_EXCLUSIVE directive does not match this kernel".into(),
                },
                elapsed: secs(0.42),
                finished: 2,
                total: 4,
            },
            Event::JobFinished {
                id: 1,
                job: broken,
                result: JobResult::Failed(Failure {
                    what: "make failed (dkms exit 10)".into(),
                    errors: vec![
                        "/var/lib/dkms/broken/1.0/build/main.c: In function ‘broken_init’:".into(),
                        "/var/lib/dkms/broken/1.0/build/main.c:9:16: error: implicit declaration of function ‘missing_function’ [-Werror=implicit-function-declaration]".into(),
                        "    9 |         return missing_function(3);".into(),
                        "      |                ^~~~~~~~~~~~~~~~".into(),
                        "cc1: some warnings being treated as errors".into(),
                    ],
                    log: Some(PathBuf::from("/var/lib/dkms/broken/1.0/6.1.0-56-amd64/x86_64/log/make.log")),
                    output: vec!["Error! Bad return status for module build on kernel: 6.1.0-56-amd64 (x86_64)".into()],
                }),
                elapsed: secs(20.07),
                finished: 3,
                total: 4,
            },
            Event::JobSkipped {
                id: 3,
                job: needs,
                reason: "needs broken/1.0, which failed".into(),
                finished: 4,
                total: 4,
            },
            Event::Depmod {
                kernel: K.into(),
                result: Ok(()),
                elapsed: secs(0.2),
            },
            Event::RunFinished {
                elapsed: secs(33.0),
                tally: Tally::default(),
            },
        ]
    }

    const KERNEL_UPGRADE: &str = "  Starting 4 jobs, 2 at a time
note: kernel 6.1.0-54-amd64 has no headers: nothing is built for it
error: /usr/src/foo-1.0/dkms.conf: line 3: syntax error near unexpected token `('
   SKIPPED [       ]       acpi-call/1.2.2 for 6.1.0-56-amd64: already installed
   SKIPPED [       ]       digimend/10 for 6.1.0-56-amd64: BUILD_EXCLUSIVE_KERNEL=\"^5\\.\" does not match 6.1.0-56-amd64
     START [       ]       vpoll/0.1 for 6.1.0-56-amd64
     START [       ]       broken/1.0 for 6.1.0-56-amd64
     BUILT [  12.3s] (1/4) vpoll/0.1 for 6.1.0-56-amd64
     START [       ]       tp_smapi/0.44 for 6.1.0-56-amd64
  EXCLUDED [   0.4s] (2/4) tp_smapi/0.44 for 6.1.0-56-amd64: dkms: BUILD_EXCLUSIVE directive does not match this kernel
    FAILED [  20.1s] (3/4) broken/1.0 for 6.1.0-56-amd64
error: broken/1.0 for 6.1.0-56-amd64: make failed (dkms exit 10)
    /var/lib/dkms/broken/1.0/build/main.c: In function ‘broken_init’:
    /var/lib/dkms/broken/1.0/build/main.c:9:16: error: implicit declaration of function ‘missing_function’ [-Werror=implicit-function-declaration]
        9 |         return missing_function(3);
          |                ^~~~~~~~~~~~~~~~
    cc1: some warnings being treated as errors
    full log: /var/lib/dkms/broken/1.0/6.1.0-56-amd64/x86_64/log/make.log
   SKIPPED [       ] (4/4) needs-broken/2.0 for 6.1.0-56-amd64: needs broken/1.0, which failed
    DEPMOD [   0.2s]       6.1.0-56-amd64
error: /usr/src/foo-1.0/dkms.conf: line 3: syntax error near unexpected token `('
error: broken/1.0 for 6.1.0-56-amd64: make failed (dkms exit 10)
   Summary [  33.0s] 1 built, 4 skipped (1 already installed, 1 BUILD_EXCLUSIVE_KERNEL, 1 BUILD_EXCLUSIVE, 1 needs broken/1.0, which failed), 2 failed
==> ERROR: 2 failed: not built: /usr/src/foo-1.0/dkms.conf; not installed for 6.1.0-56-amd64: broken/1.0
";

    /// Three jobs, two running when SIGTERM comes: one ends installed, the other absent, and the
    /// third never starts.
    fn interrupted_run() -> Vec<Event> {
        let a = job("acpi-call", "1.2.2", Some(K), Action::Build);
        let b = job("vpoll", "0.1", Some(K), Action::Build);
        let c = job("vpoll", "0.1", Some("6.1.0-57-amd64"), Action::Build);
        vec![
            Event::RunStarted {
                jobs: 3,
                concurrency: 2,
                skipped: vec![],
                failed: vec![],
                notes: vec![],
            },
            Event::JobStarted {
                id: 0,
                job: a.clone(),
            },
            Event::JobStarted {
                id: 1,
                job: b.clone(),
            },
            Event::Interrupted {
                signal: "SIGTERM".into(),
                running: 2,
                grace: Duration::from_secs(10),
            },
            Event::JobInterrupted {
                id: 0,
                job: a.clone(),
                elapsed: secs(3.0),
            },
            Event::JobInterrupted {
                id: 1,
                job: b.clone(),
                elapsed: secs(3.1),
            },
            Event::Settled {
                id: 0,
                job: a.clone(),
                result: Ok(Settled::Installed),
            },
            Event::Settled {
                id: 1,
                job: b.clone(),
                result: Ok(Settled::Absent { removed: true }),
            },
            Event::Depmod {
                kernel: K.into(),
                result: Ok(()),
                elapsed: secs(0.1),
            },
            Event::LeftUndone { jobs: vec![b, c] },
            Event::RunFinished {
                elapsed: secs(3.5),
                tally: Tally::default(),
            },
        ]
    }

    #[test]
    fn an_interrupted_run_renders_exactly() {
        let (text, failed) = render(&interrupted_run());
        let want = "  Starting 3 jobs, 2 at a time
     START [       ]       acpi-call/1.2.2 for 6.1.0-56-amd64
     START [       ]       vpoll/0.1 for 6.1.0-56-amd64
  Stopping SIGTERM: no job starts any more; the 2 running are told to stop (killed if still running after 10 s)
   STOPPED [   3.0s]       acpi-call/1.2.2 for 6.1.0-56-amd64
   STOPPED [   3.1s]       vpoll/0.1 for 6.1.0-56-amd64
   SETTLED [       ]       acpi-call/1.2.2 for 6.1.0-56-amd64: installed and verified
   SETTLED [       ]       vpoll/0.1 for 6.1.0-56-amd64: not installed; what it had left half done was removed
    DEPMOD [   0.1s]       6.1.0-56-amd64
note: left undone, for the next run:
    vpoll/0.1 for 6.1.0-56-amd64
    vpoll/0.1 for 6.1.0-57-amd64
   Summary [   3.5s] 1 built, 0 failed
==> ERROR: interrupted by SIGTERM: 2 jobs left undone; every pair is either installed or absent: run dkms-hook again to finish
";
        assert_eq!(text, want, "\n{text}");
        assert!(!failed, "an interruption is not a failure of a module");
    }

    /// The preflight's trial interrupted: what it did not finish is not checked, and there is no
    /// next run to finish it (the preflight says what follows).
    #[test]
    fn an_interrupted_trial_says_what_it_did_not_check() {
        let buffer = Buffer::default();
        let mut reporter = Reporter::new(Box::new(buffer.clone()), PLAIN).trial();
        for event in &tallied(&interrupted_run()) {
            reporter.handle(event);
        }
        let text = buffer.text();
        let tail = text.split("DEPMOD").nth(1).unwrap_or_default();
        assert_eq!(
            tail,
            " [   0.1s]       6.1.0-56-amd64
note: not checked (interrupted):
    vpoll/0.1 for 6.1.0-56-amd64
    vpoll/0.1 for 6.1.0-57-amd64
   Summary [   3.5s] 1 built, 0 failed
==> preflight: interrupted by SIGTERM: 2 trial builds not checked
",
            "\n{text}"
        );
    }

    #[test]
    fn kernel_upgrade_renders_exactly() {
        let (text, failed) = render(&kernel_upgrade());
        assert_eq!(text, KERNEL_UPGRADE, "\n{text}");
        assert!(failed);
    }

    #[test]
    fn all_good_ends_with_the_summary_and_no_error() {
        let a = job("acpi-call", "1.2.2", Some("6.1.0-55-amd64"), Action::Build);
        let b = job("acpi-call", "1.2.2", Some(K), Action::Build);
        let events = [
            Event::RunStarted {
                jobs: 2,
                concurrency: 4,
                skipped: vec![],
                failed: vec![],
                notes: vec![],
            },
            Event::JobStarted {
                id: 0,
                job: a.clone(),
            },
            Event::JobFinished {
                id: 0,
                job: a,
                result: JobResult::Done { note: None },
                elapsed: secs(7.0),
                finished: 1,
                total: 2,
            },
            Event::JobStarted {
                id: 1,
                job: b.clone(),
            },
            Event::JobFinished {
                id: 1,
                job: b,
                result: JobResult::Done { note: None },
                elapsed: secs(6.96),
                finished: 2,
                total: 2,
            },
            Event::Depmod {
                kernel: "6.1.0-55-amd64".into(),
                result: Ok(()),
                elapsed: secs(0.31),
            },
            Event::Depmod {
                kernel: K.into(),
                result: Ok(()),
                elapsed: secs(0.29),
            },
            Event::RunFinished {
                elapsed: secs(14.6),
                tally: Tally::default(),
            },
        ];
        let (text, failed) = render(&events);
        assert_eq!(
            text,
            "  Starting 2 jobs, 2 at a time
     START [       ]       acpi-call/1.2.2 for 6.1.0-55-amd64
     BUILT [   7.0s] (1/2) acpi-call/1.2.2 for 6.1.0-55-amd64
     START [       ]       acpi-call/1.2.2 for 6.1.0-56-amd64
     BUILT [   7.0s] (2/2) acpi-call/1.2.2 for 6.1.0-56-amd64
    DEPMOD [   0.3s]       6.1.0-55-amd64
    DEPMOD [   0.3s]       6.1.0-56-amd64
   Summary [  14.6s] 2 built, 0 failed
",
            "\n{text}"
        );
        assert!(!failed);
    }

    #[test]
    fn removal_and_depmod_failures() {
        let gone = job(
            "ddcci",
            "0.4.4",
            Some("6.1.0-55-amd64"),
            Action::RemoveFromKernel,
        );
        let unreg = job("evdi", "1.14.1", None, Action::Unregister);
        let events = [
            Event::RunStarted {
                jobs: 12,
                concurrency: 2,
                skipped: vec![],
                failed: vec![],
                notes: vec![],
            },
            Event::JobStarted {
                id: 0,
                job: gone.clone(),
            },
            Event::JobFinished {
                id: 0,
                job: gone,
                result: JobResult::Done {
                    note: Some("dkms could not remove it; removed its files directly".into()),
                },
                elapsed: secs(0.5),
                finished: 10,
                total: 12,
            },
            Event::JobFinished {
                id: 1,
                job: unreg,
                result: JobResult::Failed(Failure {
                    what: "dkms remove failed (dkms exit 4)".into(),
                    errors: vec![],
                    log: None,
                    output: vec![
                        "Error! Could not locate dkms.conf file.".into(),
                        "File: /var/lib/dkms/evdi/1.14.1/source/dkms.conf does not exist.".into(),
                    ],
                }),
                elapsed: secs(1.25),
                finished: 11,
                total: 12,
            },
            Event::Depmod {
                kernel: "6.1.0-55-amd64".into(),
                result: Err(DepmodError {
                    kernel: "6.1.0-55-amd64".into(),
                    said: "depmod: WARNING: could not open modules.order at /lib/modules/6.1.0-55-amd64\ndepmod: ERROR: could not open directory /lib/modules/6.1.0-55-amd64: No such file or directory".into(),
                }),
                elapsed: secs(0.05),
            },
            Event::RunFinished {
                elapsed: secs(125.0),
                tally: Tally::default(),
            },
        ];
        let (text, failed) = render(&events);
        assert_eq!(
            text,
            "  Starting 12 jobs, 2 at a time
     START [       ]         ddcci/0.4.4 for 6.1.0-55-amd64
   REMOVED [   0.5s] (10/12) ddcci/0.4.4 for 6.1.0-55-amd64: dkms could not remove it; removed its files directly
    FAILED [   1.2s] (11/12) evdi/1.14.1 on every kernel
error: evdi/1.14.1 on every kernel: dkms remove failed (dkms exit 4)
    dkms's output ended with:
        Error! Could not locate dkms.conf file.
        File: /var/lib/dkms/evdi/1.14.1/source/dkms.conf does not exist.
    FAILED [   0.1s]         depmod 6.1.0-55-amd64
error: depmod 6.1.0-55-amd64: depmod: WARNING: could not open modules.order at /lib/modules/6.1.0-55-amd64
    depmod: ERROR: could not open directory /lib/modules/6.1.0-55-amd64: No such file or directory
error: evdi/1.14.1 on every kernel: dkms remove failed (dkms exit 4)
error: depmod 6.1.0-55-amd64: depmod: WARNING: could not open modules.order at /lib/modules/6.1.0-55-amd64
   Summary [ 125.0s] 1 removed, 2 failed
==> ERROR: 2 failed: not removed from every kernel: evdi/1.14.1; module index not updated (depmod) for 6.1.0-55-amd64
",
            "\n{text}"
        );
        assert!(failed);
    }

    #[test]
    fn planner_failure_alone_is_a_failure() {
        let events = [
            Event::RunStarted {
                jobs: 0,
                concurrency: 2,
                skipped: vec![],
                failed: vec![Decision {
                    subject: "zfs/2.2.2".into(),
                    kernel: Some(K.into()),
                    reason: "BUILD_DEPENDS names spl, which is not a dkms module".into(),
                }],
                notes: vec![],
            },
            Event::RunFinished {
                elapsed: secs(0.01),
                tally: Tally::default(),
            },
        ];
        let (text, failed) = render(&events);
        assert_eq!(
            text,
            "error: zfs/2.2.2 for 6.1.0-56-amd64: BUILD_DEPENDS names spl, which is not a dkms module
error: zfs/2.2.2 for 6.1.0-56-amd64: BUILD_DEPENDS names spl, which is not a dkms module
   Summary [   0.0s] 1 failed
==> ERROR: 1 failed: not installed for 6.1.0-56-amd64: zfs/2.2.2
",
            "\n{text}"
        );
        assert!(failed);

        // The preflight's trial: nothing is installed either way; the last line says what
        // would not build.
        let buffer = Buffer::default();
        let mut reporter = Reporter::new(Box::new(buffer.clone()), PLAIN).trial();
        for event in &tallied(&events) {
            reporter.handle(event);
        }
        assert!(
            buffer.text().ends_with(
                "==> preflight: 1 failed: would not build for 6.1.0-56-amd64: zfs/2.2.2\n"
            ),
            "\n{}",
            buffer.text()
        );
    }

    #[test]
    fn nothing_to_do() {
        let events = [
            Event::RunStarted {
                jobs: 0,
                concurrency: 2,
                skipped: vec![],
                failed: vec![],
                notes: vec!["nothing to do".into()],
            },
            Event::RunFinished {
                elapsed: secs(0.01),
                tally: Tally::default(),
            },
        ];
        let (text, failed) = render(&events);
        assert_eq!(text, "note: nothing to do\n   Summary [   0.0s] 0 failed\n");
        assert!(!failed);
    }

    #[test]
    fn a_progress_bar_changes_nothing_in_the_lines_written() {
        // On a TTY the bar goes to its own target (hidden here); `out` gets the very same lines.
        let style = Style {
            progress: true,
            color: false,
        };
        let (text, failed) = render_with(style, &kernel_upgrade(), true);
        assert_eq!(text, KERNEL_UPGRADE);
        assert!(failed);
    }

    #[test]
    fn colour_only_adds_escape_codes() {
        let style = Style {
            progress: false,
            color: true,
        };
        let (text, _) = render_with(style, &kernel_upgrade(), false);
        assert!(
            text.contains("\x1b[31m\x1b[1m    FAILED\x1b[0m"),
            "\n{text:?}"
        );
        assert!(
            text.contains("\x1b[32m\x1b[1m     BUILT\x1b[0m"),
            "\n{text:?}"
        );
        assert!(
            text.contains("\x1b[33m\x1b[1m  EXCLUDED\x1b[0m"),
            "\n{text:?}"
        );
        assert_eq!(console::strip_ansi_codes(&text), KERNEL_UPGRADE);
    }

    #[test]
    fn detect_style() {
        // Under pacman (no TTY): plain lines whatever NO_COLOR says.
        assert_eq!(
            Style::detect(false, false),
            Style {
                progress: false,
                color: false
            }
        );
        assert_eq!(
            Style::detect(false, true),
            Style {
                progress: false,
                color: false
            }
        );
        assert_eq!(
            Style::detect(true, false),
            Style {
                progress: true,
                color: true
            }
        );
        // NO_COLOR removes colour, not the progress bar.
        assert_eq!(
            Style::detect(true, true),
            Style {
                progress: true,
                color: false
            }
        );
    }

    #[test]
    fn skips_group_under_the_directive_that_excluded_them() {
        assert_eq!(
            skip_group(r#"BUILD_EXCLUSIVE_KERNEL_MIN="6.5": 6.1.0-56-amd64 is older"#),
            "BUILD_EXCLUSIVE_KERNEL_MIN"
        );
        assert_eq!(
            skip_group("BUILD_EXCLUSIVE_CONFIG: CONFIG_DRM is not enabled in 6.1.0-56-amd64"),
            "BUILD_EXCLUSIVE_CONFIG"
        );
        assert_eq!(
            skip_group("dkms: BUILD_EXCLUSIVE directive does not match this kernel"),
            "BUILD_EXCLUSIVE"
        );
        assert_eq!(skip_group("already installed"), "already installed");
    }

    #[test]
    fn join_words_reads_as_english() {
        assert_eq!(join_words(&["a"], "or"), "a");
        assert_eq!(join_words(&["a", "b"], "or"), "a or b");
        assert_eq!(join_words(&["a", "b", "c"], "and"), "a, b and c");
    }

    fn failed_decision(subject: &str, kernel: Option<&str>) -> Decision {
        Decision {
            subject: subject.into(),
            kernel: kernel.map(str::to_string),
            reason: "cannot tell which module to remove: no PACKAGE_NAME directive".into(),
        }
    }

    fn started_with_failures(failed: Vec<Decision>) -> [Event; 2] {
        [
            Event::RunStarted {
                jobs: 0,
                concurrency: 2,
                skipped: vec![],
                failed,
                notes: vec![],
            },
            Event::RunFinished {
                elapsed: secs(0.01),
                tally: Tally::default(),
            },
        ]
    }

    /// Defect: what the planner failed in a removal run was summed up as "failed to build".
    #[test]
    fn a_removal_run_says_what_was_not_removed() {
        let events = started_with_failures(vec![failed_decision("/usr/src/x-1.0", None)]);
        let buffer = Buffer::default();
        let mut reporter = Reporter::new(Box::new(buffer.clone()), PLAIN).removing();
        for e in &tallied(&events) {
            reporter.handle(e);
        }
        let text = buffer.text();
        let last = text.lines().last().unwrap();
        assert_eq!(
            last,
            "==> ERROR: 1 failed: not removed from every kernel: /usr/src/x-1.0"
        );
        assert!(!text.contains("build"), "{text}");
    }

    /// Defect: the summary counted failed pairs, the last line failed modules, and it told to
    /// avoid every kernel named anywhere. Now both count the same failures, and the last line
    /// says which module is missing on which kernel.
    #[test]
    fn the_last_line_counts_what_the_summary_counts_and_says_what_is_missing_where() {
        let events = started_with_failures(vec![
            failed_decision("a/1", Some("6.1.0-55-amd64")),
            failed_decision("a/1", Some("6.1.0-56-amd64")),
            failed_decision("b/2", Some("6.1.0-56-amd64")),
        ]);
        let (text, failed) = render(&events);
        assert!(failed);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[lines.len() - 2], "   Summary [   0.0s] 3 failed");
        assert_eq!(
            lines[lines.len() - 1],
            "==> ERROR: 3 failed: not installed for 6.1.0-55-amd64 and 6.1.0-56-amd64: a/1; \
             not installed for 6.1.0-56-amd64: b/2"
        );
    }

    /// Every path is shown as on the system itself, the log's too.
    #[test]
    fn a_log_under_the_root_is_shown_as_on_the_system() {
        let j = job("x", "1", Some(K), Action::Build);
        let events = [Event::JobFinished {
            id: 0,
            job: j,
            result: JobResult::Failed(Failure {
                what: "make failed (dkms exit 10)".into(),
                errors: vec![],
                log: Some(PathBuf::from("/srv/root/var/log/dkms-hook/x-1_K.log")),
                output: vec![],
            }),
            elapsed: secs(1.0),
            finished: 1,
            total: 1,
        }];
        let buffer = Buffer::default();
        let mut reporter =
            Reporter::new(Box::new(buffer.clone()), PLAIN).under_root(Path::new("/srv/root"));
        for e in &events {
            reporter.handle(e);
        }
        assert!(
            buffer
                .text()
                .contains("    full log: /var/log/dkms-hook/x-1_K.log\n"),
            "{}",
            buffer.text()
        );
    }
}
