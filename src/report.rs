//! The reporter: turns runner events into what the user reads. (Being written: see the contract.)
//!
//! Contract: `Reporter::new(out: Box<dyn Write + Send>, style: Style)`, `handle(&mut self, &Event)`,
//! `Style::detect(is_tty, no_color_env)` (pure). Without a TTY (under pacman): plain lines only.

use crate::events::Event;
use std::io::Write;

/// How output looks: decided once, by a pure function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub progress: bool,
    pub color: bool,
}

impl Style {
    pub fn detect(is_tty: bool, no_color: bool) -> Style {
        Style {
            progress: is_tty,
            color: is_tty && !no_color,
        }
    }
}

pub struct Reporter {
    out: Box<dyn Write + Send>,
    #[allow(dead_code)]
    style: Style,
}

impl Reporter {
    pub fn new(out: Box<dyn Write + Send>, style: Style) -> Reporter {
        Reporter { out, style }
    }

    pub fn handle(&mut self, event: &Event) {
        let _ = writeln!(self.out, "{event:?}");
    }
}
