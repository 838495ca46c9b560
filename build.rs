//! Writes the shell completions (bash, zsh, fish) and the man page dkms-hook(8) from the command
//! line's own definition (src/cli.rs, which the binary parses with), so they never drift from it.
//!
//! They land in `OUT_DIR/share/`, laid out as under /usr/share: a build script writes nowhere
//! else (cargo's rule). OUT_DIR's name holds a hash nobody can guess, so the PKGBUILD asks cargo
//! for it (the `build-script-executed` message of `--message-format=json`).

use clap_complete::Shell;
use roff::{bold, italic, roman, Roff};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

/// Each generated file: its path under `share/`, as under /usr/share.
const BASH: &str = "bash-completion/completions/dkms-hook";
const ZSH: &str = "zsh/site-functions/_dkms-hook";
const FISH: &str = "fish/vendor_completions.d/dkms-hook.fish";
const MAN: &str = "man/man8/dkms-hook.8";

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let share = out.join("share");
    let mut cmd = cli::command();
    for (shell, rel) in [(Shell::Bash, BASH), (Shell::Zsh, ZSH), (Shell::Fish, FISH)] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "dkms-hook", &mut buf);
        if shell == Shell::Bash {
            buf = bash_fixed(&buf);
        }
        write(&share.join(rel), &buf)?;
    }
    write(&share.join(MAN), &man_page(cmd)?)?;
    Ok(())
}

/// clap_complete (up to 4.6.12 at least, clap-rs/clap#6421) spells the state of a subcommand
/// of a bin name with a hyphen two ways: the loop that reads the words arrives at
/// `dkms__hook__subcmd__install`, the case arms expect `dkms__subcmd__hook__subcmd__install`, so
/// nothing after a subcommand ever completes. Spell the arms as the loop does.
fn bash_fixed(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("dkms__subcmd__hook", "dkms__hook")
        .into_bytes()
}

/// dkms-hook(8): clap's sections, then what clap does not know (hooks, exit status,
/// environment, files, examples).
fn man_page(mut cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .date(build_date())
        .source(format!("dkms-hook {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    man.render_options_section(&mut w)?;
    let mut r = Roff::new();
    // clap_mangen's own section points to one page per command (dkms-hook-install(8)); these
    // are short enough for one page.
    r.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut line = vec![bold(sub.get_name())];
        for arg in own_args(sub) {
            line.push(roman(" "));
            line.extend(synopsis(arg));
        }
        let about = sub.get_long_about().or(sub.get_about());
        r.control("TP", [])
            .text(line)
            .text([roman(about.map(ToString::to_string).unwrap_or_default())]);
        for arg in own_args(sub) {
            if let Some(help) = arg.get_help() {
                r.control("RS", [])
                    .text(synopsis(arg))
                    .control("RS", [])
                    .text([roman(help.to_string())])
                    .control("RE", [])
                    .control("RE", []);
            }
        }
    }
    r.control("SH", ["HOOKS"]).text([roman(
        "The package installs three pacman hooks in /usr/share/libalpm/hooks/. pacman runs \
         each one's script from /usr/share/libalpm/scripts/ with the paths the transaction \
         matched on stdin (NeedsTargets); the script runs dkms-hook. They sort before \
         90-mkinitcpio-install.hook, so the initramfs is generated with the modules.",
    )]);
    for (hook, what) in cli::HOOKS {
        r.control("TP", []).text([bold(*hook)]).text([roman(*what)]);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in cli::EXIT_STATUS {
        r.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(*what)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    for (var, what) in cli::ENVIRONMENT {
        r.control("TP", []).text([bold(*var)]).text([roman(*what)]);
    }
    r.control("SH", ["FILES"]);
    for (file, what) in cli::FILES {
        r.control("TP", [])
            .text([italic(*file)])
            .text([roman(*what)]);
    }
    r.control("SH", ["EXAMPLES"]);
    for (example, what) in cli::EXAMPLES {
        r.control("TP", [])
            .text([bold(*example)])
            .text([roman(*what)]);
    }
    r.control("SH", ["SEE ALSO"])
        .text([roman("dkms(8), alpm-hooks(5), pacman(8), mkinitcpio(8)")]);
    r.to_writer(&mut w)?;
    Ok(w)
}

/// A command's own arguments: not the global options, not --help.
fn own_args(sub: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    sub.get_arguments()
        .filter(|a| !a.is_global_set() && a.get_id() != "help")
}

/// The page's date, `YYYY-MM-DD`: SOURCE_DATE_EPOCH's (makepkg sets it, for reproducible
/// builds), else today's. Needed: clap_mangen writes an empty date as no argument at all, which
/// shifts the source and manual names into the wrong places of the header and footer.
fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// An argument as a synopsis shows it: `[--package FILE]...`, `[MODULE[/VERSION]]...`.
fn synopsis(arg: &clap::Arg) -> Vec<roff::Inline> {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(ToString::to_string)
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    let mut out = Vec::new();
    let (open, close) = if arg.is_required_set() {
        ("<", ">")
    } else {
        ("[", "]")
    };
    out.push(roman(open));
    if let Some(long) = arg.get_long() {
        out.push(bold(format!("--{long}")));
        // A flag (`--remove`) takes no value: nothing to name after it.
        if arg.get_action().takes_values() {
            out.push(roman(" "));
            out.push(italic(value));
        }
    } else {
        out.push(italic(value));
    }
    out.push(roman(close));
    if arg.get_num_args().is_some_and(|n| n.max_values() > 1)
        || matches!(arg.get_action(), clap::ArgAction::Append)
    {
        out.push(roman("..."));
    }
    out
}

/// Writes a file only when its contents change, so nothing downstream sees a new mtime for
/// the same text.
fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    fs::create_dir_all(path.parent().expect("a file under share/"))?;
    fs::File::create(path)?.write_all(contents)
}
