//! The command line's definition: clap types, exit codes and the texts of `--help` and the man page.
//!
//! One file for two readers: the binary (`mod cli` in main.rs) parses with it, and build.rs
//! includes it to write the shell completions and dkms-hook(8) at build time, so the help, the
//! completions and the man page cannot drift apart. It may use only clap and std: build.rs
//! cannot see the library.

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// Everything planned succeeded (BUILD_EXCLUSIVE skips included).
pub const EXIT_OK: u8 = 0;
/// At least one job failed.
pub const EXIT_FAILED: u8 = 1;
/// Usage or configuration error: nothing was done.
pub const EXIT_USAGE: u8 = 2;

/// Each exit status and what it means, for every mode (`--help` and the man page).
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (
        EXIT_OK,
        "everything planned succeeded (a pair excluded by BUILD_EXCLUSIVE is a skip, not a \
         failure); preflight: the transaction may go on; lint: no package has an error",
    ),
    (
        EXIT_FAILED,
        "something failed: a module not built, installed, verified or removed, or a depmod; \
         preflight: an essential module would not build, and pacman aborts the transaction \
         (AbortOnFail); lint: a package has an error",
    ),
    (
        EXIT_USAGE,
        "a usage or configuration error (an unknown kernel, module or version, no root, a dkms \
         that cannot run): nothing was done; lint: a file is not a package",
    ),
    (
        143,
        "stopped by SIGTERM (130: SIGINT, 129: SIGHUP; 128 + the signal): no job started after \
         it, each interrupted pair was left installed or absent, and the next run finishes the \
         work",
    ),
];

/// Where the whole log of each failed job is kept, as `MODULE-VERSION_KERNEL.log`.
pub const LOG_DIR: &str = "/var/log/dkms-hook/";

/// Environment variables dkms-hook reads, and what for.
#[allow(dead_code)] // the man page's alone (build.rs)
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "DKMS_HOOK_DKMS",
        "the dkms program to run instead of the one on PATH (another dkms version, or a \
         wrapper)",
    ),
    (
        "DKMS_HOOK_PREFLIGHT",
        "abort, warn or off: overrides the preflight setting of /etc/dkms-hook.conf for one \
         command (DKMS_HOOK_PREFLIGHT=warn pacman -Syu)",
    ),
    (
        "NO_COLOR",
        "when set and not empty, no colour on a terminal (the progress bar stays)",
    ),
];

/// Files dkms-hook reads or writes, and what for.
#[allow(dead_code)] // the man page's alone (build.rs)
pub const FILES: &[(&str, &str)] = &[
    (
        "/etc/dkms-hook.conf",
        "the preflight's settings: which modules are essential (essential = nvidia zfs, or \
         all), and whether a failure aborts, warns or is not checked (preflight = \
         abort|warn|off)",
    ),
    (
        LOG_DIR,
        "the whole log of each failed job (what dkms printed, then make.log), as \
         MODULE-VERSION_KERNEL.log: dkms deletes its own make.log on the next build",
    ),
    (
        "/etc/dkms/framework.conf",
        "dkms's settings; its source_tree, dkms_tree and install_tree (also from \
         framework.conf.d/*.conf) move the trees dkms-hook reads",
    ),
    (
        "/usr/share/libalpm/hooks/70-dkms-hook-*.hook",
        "the pacman hooks (see HOOKS); each runs its script in /usr/share/libalpm/scripts/",
    ),
    (
        "/etc/pacman.d/hooks/70-dkms-install.hook, 70-dkms-upgrade.hook, 71-dkms-remove.hook",
        "links to /dev/null that mask the stock dkms hooks while dkms-hook is installed",
    ),
];

/// The pacman hooks of the package: file, what runs, when.
#[allow(dead_code)] // the man page's alone (build.rs)
pub const HOOKS: &[(&str, &str)] = &[
    (
        "70-dkms-hook-preflight.hook",
        "PreTransaction, AbortOnFail, on the module sources and kernel headers that arrive: \
         runs dkms-hook preflight, which trial-builds them from the package files pacman \
         downloaded before any file changes; an essential module that would not build aborts \
         the transaction with nothing changed",
    ),
    (
        "70-dkms-hook-remove.hook",
        "PreTransaction, on the module sources and kernels that leave or are upgraded in \
         place: runs dkms-hook remove while their files are still on disk",
    ),
    (
        "70-dkms-hook-install.hook",
        "PostTransaction, on the module sources and kernels that arrived: runs dkms-hook \
         install, which builds and installs their modules in parallel before \
         90-mkinitcpio-install.hook generates the initramfs; exit 1 when a build fails, so \
         pacman prints \"error: command failed to execute correctly\"",
    ),
];

/// Examples for the man page: command, what it does.
#[allow(dead_code)] // the man page's alone (build.rs)
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "dkms-hook",
        "build and install every missing module for every kernel with headers",
    ),
    (
        "dkms-hook --dry-run",
        "show that plan, as anybody who can read the trees, and change nothing",
    ),
    (
        "dkms-hook install nvidia/550.78",
        "build that version for every kernel, in parallel",
    ),
    (
        "dkms-hook install -k 6.9.1-arch1-1 nvidia",
        "build the newest nvidia in the source tree for that kernel only",
    ),
    (
        "dkms-hook remove nvidia/535.1",
        "remove that version from every kernel and from dkms",
    ),
    (
        "dkms-hook status",
        "one line per module version and kernel, as dkms status prints them",
    ),
    (
        "dkms-hook lint example-dkms-1.2-1-x86_64.pkg.tar.zst",
        "check a built -dkms package against the DKMS packaging rules",
    ),
    (
        "dkms-hook status --json | jq '.[] | select(.state != \"installed\")'",
        "the pairs that are not installed, for a script",
    ),
    (
        "dkms-hook orphans --remove",
        "delete module files dkms installed that no dkms record owns any more, then run depmod",
    ),
    (
        "dkms-hook --timings /tmp/run.html",
        "bring every kernel up to date and draw the run's jobs on a timeline",
    ),
    (
        "DKMS_HOOK_PREFLIGHT=warn pacman -Syu",
        "upgrade even if an essential module would not build",
    ),
];

/// The global options (by id) that mean something for each command. The others stay accepted
/// after it, as before (a script that passes them keeps working), but its `--help`, completions
/// and man page do not list them.
const APPLIES: &[(&str, &[&str])] = &[
    (
        "install",
        &[
            "root",
            "dry_run",
            "jobs",
            "kernels",
            "force",
            "json",
            "timings",
            "job_timeout",
        ],
    ),
    (
        "remove",
        &[
            "root",
            "dry_run",
            "jobs",
            "kernels",
            "json",
            "timings",
            "job_timeout",
        ],
    ),
    ("status", &["root", "kernels", "json"]),
    ("lint", &[]),
    ("orphans", &["root", "dry_run", "kernels"]),
    ("preflight", &["root", "jobs", "job_timeout"]),
];

/// The command line as parsed and documented: [`Cli`]'s, each command showing only the global
/// options that apply to it (see [`APPLIES`]).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    for (name, applies) in APPLIES {
        cmd = cmd.mut_subcommand(name, |mut sub| {
            // A command's own copy of a global option, hidden: clap propagates the global one
            // only where the command has none of that id, and parses the copy as the global.
            for g in globals
                .iter()
                .filter(|g| !applies.contains(&g.get_id().as_str()))
            {
                sub = sub.arg(g.clone().hide(true));
            }
            sub
        });
    }
    cmd
}

/// What `--help` says after the options: the bare command, exit codes, logs.
pub fn after_help() -> String {
    let mut s = String::from("Exit status:\n");
    for (code, what) in EXIT_STATUS {
        s.push_str(&format!("  {code}  {what}\n"));
    }
    s.push_str(&format!(
        "\nThe whole log of each failed job is kept in {LOG_DIR} (MODULE-VERSION_KERNEL.log).\n\
         See dkms-hook(8) for the hooks, the environment and the files."
    ));
    s
}

/// Builds, installs and removes DKMS modules for pacman: planned, ordered by BUILD_DEPENDS, run in
/// parallel, verified, and reported.
///
/// Without a command, brings every kernel up to date: every AUTOINSTALL module (the newest version
/// of each name) is built and installed for every kernel that has headers, where it is missing
/// (needs root; --dry-run shows the plan to anybody). pacman's hooks run `install`, `remove` and
/// `preflight` with the paths of what the transaction brings or takes away on stdin.
#[derive(Debug, Parser)]
#[command(name = "dkms-hook", version, after_long_help = after_help())]
pub struct Cli {
    /// The system root: trees are ROOT/usr/src, ROOT/var/lib/dkms, ROOT/usr/lib/modules (or what
    /// ROOT/etc/dkms/framework.conf says)
    #[arg(long, value_name = "DIR", default_value = "/", global = true, value_hint = clap::ValueHint::DirPath)]
    pub root: PathBuf,
    /// Print the ordered plan and change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Jobs at once [default: number of CPUs]
    #[arg(short = 'j', long, value_name = "N", global = true)]
    pub jobs: Option<usize>,
    /// Only these kernels (repeatable)
    #[arg(short = 'k', long = "kernel", value_name = "KVER", global = true)]
    pub kernels: Vec<String>,
    /// Rebuild pairs that are already installed
    #[arg(long, global = true)]
    pub force: bool,
    /// With `status` or `--dry-run`: print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// After a run (bare, install, remove): write an HTML timeline of its jobs to FILE
    #[arg(long, value_name = "FILE", global = true, value_hint = clap::ValueHint::FilePath)]
    pub timings: Option<PathBuf>,
    /// Fail a job (and kill its processes) still running after SECS seconds; 0: no limit
    #[arg(long, value_name = "SECS", default_value_t = 1800, global = true)]
    pub job_timeout: u64,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build and install the modules named, for every kernel (or the -k ones); without a module,
    /// hook mode: for the module sources and kernels on stdin (pacman's NeedsTargets)
    Install {
        /// A module version (nvidia/550.78), or a name for its newest version in the source tree
        #[arg(value_name = "MODULE[/VERSION]")]
        modules: Vec<String>,
    },
    /// Remove the module versions named from every kernel and from dkms (or from the -k kernels
    /// only); without a module, hook mode: what leaves, from stdin (pacman's NeedsTargets)
    Remove {
        /// A module version (nvidia/535.1), or a name that has one registered version
        #[arg(value_name = "MODULE[/VERSION]")]
        modules: Vec<String>,
        /// Package files of the transaction, to tell an upgrade from a removal (default: found
        /// from pacman's command line, or its sync databases and cache)
        #[arg(long = "package", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        packages: Vec<PathBuf>,
    },
    /// One line per module version x kernel, in `dkms status`'s format
    Status,
    /// Check built -dkms packages against the DKMS packaging rules (namcap-style lines; exit 1 on
    /// an error, 2 for a file that is not a package)
    Lint {
        /// Package files (.pkg.tar.zst, .pkg.tar.xz, .pkg.tar.gz)
        #[arg(required = true, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        files: Vec<PathBuf>,
    },
    /// List module files dkms installed (under updates/dkms, or a dkms.conf's DEST_MODULE_LOCATION)
    /// that no dkms record owns any more, and kernel directories left with nothing else
    Orphans {
        /// Delete them, then run depmod for the kernels that remain (needs root)
        #[arg(long)]
        remove: bool,
    },
    /// Hook mode, before the transaction: trial-build for the headers and module sources on stdin
    /// (pacman's NeedsTargets), from the package files pacman downloaded; exit 1 when an essential
    /// module would not build (see /etc/dkms-hook.conf)
    Preflight {
        /// The package files of the transaction (default: found from pacman's command line, or
        /// its sync databases and cache); the paths they bring still come on stdin
        #[arg(long = "package", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
        packages: Vec<PathBuf>,
    },
    /// Build ahead: refresh a private copy of pacman's sync databases, and when the repositories
    /// offer a new kernel, headers or -dkms version, download the upgrades into pacman's cache
    /// and trial-build for them as the preflight of `pacman -Syu` would, keeping the builds for
    /// it (run daily by dkms-hook-prebuild.timer); installs and removes nothing
    Prebuild,
    /// The preflight's own child: makes the view of the system after the transaction (it runs
    /// in a mount namespace of its own) and trial-builds there, as REQUEST says. Not for people.
    #[command(hide = true)]
    PreflightView { request: PathBuf },
}
