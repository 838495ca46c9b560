//! Text from outside, made safe to show on one line of a terminal: a line pacman sent on stdin,
//! what a package file held, a path. Control characters are escaped (so no file can move the
//! cursor or clear the screen of whoever reads the message), and bytes that are not UTF-8 shown
//! as `\xNN`.

/// How much of a skipped line its note shows, in characters of the escaped text.
const SHOWN_MAX: usize = 120;

/// A line as a note shows it: UTF-8 text with its control characters escaped, other bytes as
/// `\xNN`, cut after [`SHOWN_MAX`] characters.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
        if out.chars().count() > SHOWN_MAX {
            let cut: String = out.chars().take(SHOWN_MAX).collect();
            return format!("{cut}...");
        }
    }
    out
}

/// `text` for one line of a terminal: control characters escaped (`\u{1b}`), the rest as it is.
/// For messages that quote what a file held (a package that is not one).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_debug().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(
            printable("bad field: \u{1b}[2J\u{0}\u{7}é\u{fffd}"),
            "bad field: \\u{1b}[2J\\0\\u{7}é\u{fffd}"
        );
    }
}
