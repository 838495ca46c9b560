//! Picks the compiler's own error lines out of a make.log. (Being written.)

/// The first errors in `log`, with a little context, at most `max` lines.
pub fn error_lines(log: &str, max: usize) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("error"))
        .take(max)
        .map(str::to_string)
        .collect()
}
