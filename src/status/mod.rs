//! `dkms-hook status`: the lines `dkms status` prints, read from the trees directly.
//!
//! `dkms status` is a bash loop that sources every dkms.conf once per kernel in subshells and
//! diffs every installed module: about a second for a handful of modules, 45 s for 600 pairs.
//! This module walks the same directories in the same order (bash's glob order, which follows
//! `LC_COLLATE`), decides the same states with the same tests, and evaluates the dkms.conf files
//! with bash too (they are scripts), but in one batched bash per core instead of several
//! processes per pair. Built and installed modules are compared byte for byte, as dkms's `diff`
//! does, sizes first.
//!
//! dkms's status code changed over 3.x; [`Flavour`] holds the installed dkms's version (read
//! from the dkms script's text, not by running it) and every rule that depends on it:
//! - 3.0.13: a version whose `source` link dangles (or that was never added but has sources) is
//!   printed as `M/V: broken`; "added" needs a `source` link to a directory; the compression
//!   suffix and the kernel source dir come from the install tree instead of `/lib/modules`.
//! - 3.1.3: warnings reworded (`(Original modules exist)`, `(Built modules are missing in the
//!   kernel modules folder)`, `(Differences between built and installed modules)`), at most one
//!   module warning per line, compression detected by finding `*.ko.{gz,xz,zst}` files.
//! - 3.1.4: `M/kernel-*-*` entries are skipped before any test.
//! - 3.1.8: "built" only needs `M/V/K/ARCH/module/`; before, every DEST_MODULE_NAME had to be
//!   there, which meant reading dkms.conf, and a bad dkms.conf ended the listing.
//! - 3.2.2: dkms.conf module arrays may be sparse (count = highest index + 1), and one trailing
//!   CR is stripped from every value (a CRLF dkms.conf reads as its LF twin).
//! - 3.3.0: modules excluded by per-module BUILD_EXCLUSIVE_* directives are not checked.

pub mod orphans;

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rayon::prelude::*;

use crate::dkmsconf::eval::{run_units, Emitter, Record, Unit};
use crate::dkmsconf::rules::{self, Dialect, Directives, DIRECTIVES};
use crate::dkmsconf::{self, Once};
use crate::system::dkms_tree;
use crate::system::kernel::KernelConfig;
use crate::system::trees::Trees;

/// The status lines for `trees`, exactly as the installed `dkms status` would print them.
/// ([`report`] also gives what dkms would print on stderr.)
pub fn lines(trees: &Trees) -> Vec<String> {
    report(trees, &Flavour::detect()).lines
}

/// The `status --json` document: an array, one object per line `dkms status` would print, as
/// one document (see [`crate::report::json`] for why not JSON lines).
pub fn json(items: &[Item]) -> String {
    // Plain structs of strings serialize into a String without fail.
    serde_json::to_string_pretty(items).expect("plain data serializes")
}

/// What `dkms status` prints: its stdout lines, and what it would say on stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
    pub errors: Vec<String>,
    /// What each line says, field by field (for `status --json`, and `-k`).
    pub items: Vec<Item>,
}

/// The state of one module version (on one kernel), as `dkms status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Registered, built for no kernel.
    Added,
    /// Its source directory or the link to it is missing (dkms 3.0.13+).
    Broken,
    Built,
    Installed,
}

/// One line of the listing, field by field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub module: String,
    pub version: String,
    /// `None` for a version that is only added or broken: it belongs to no kernel.
    pub kernel: Option<String>,
    pub arch: Option<String>,
    pub state: State,
    /// The parenthesised warnings of the line, without their parentheses.
    pub warnings: Vec<String>,
}

impl Report {
    /// `-k`: the lines of these kernels (all when `kernels` is empty), and the lines of versions
    /// that are only added or broken, which belong to no kernel.
    pub fn only_kernels(mut self, kernels: &[String]) -> Report {
        if kernels.is_empty() {
            return self;
        }
        let keep: Vec<bool> = self
            .items
            .iter()
            .map(|i| i.kernel.as_ref().is_none_or(|k| kernels.contains(k)))
            .collect();
        let mut keep_iter = keep.iter();
        self.lines.retain(|_| *keep_iter.next().unwrap_or(&true));
        let mut keep_iter = keep.iter();
        self.items.retain(|_| *keep_iter.next().unwrap_or(&true));
        self
    }
}

/// The dkms version whose output is reproduced, and the host paths that dkms reads whatever
/// trees it is given (`/lib/modules` before 3.0.13, `/etc/dkms/<module>*.conf` overrides,
/// `/etc/os-release`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flavour {
    pub version: (u32, u32, u32),
    /// `/lib/modules`: dkms before 3.0.13 looks here for modules.dep and kernel headers.
    pub host_modules: PathBuf,
    /// `/etc/dkms`: per-module dkms.conf overrides.
    pub etc_dkms: PathBuf,
    /// `/etc/os-release`, which decides where dkms installs modules (`/updates/dkms` on Debian
    /// and Arch).
    pub os_release: PathBuf,
}

/// The newest dkms whose status code was read for this module.
const NEWEST_KNOWN: (u32, u32, u32) = (3, 4, 3);

impl Flavour {
    /// The flavour of a given dkms version, with the usual host paths.
    pub fn new(version: (u32, u32, u32)) -> Flavour {
        Flavour {
            version,
            host_modules: PathBuf::from("/lib/modules"),
            etc_dkms: PathBuf::from("/etc/dkms"),
            os_release: PathBuf::from("/etc/os-release"),
        }
    }

    /// The flavour of the `dkms` found in `PATH` (or the usual places); the newest known
    /// format when there is none.
    pub fn detect() -> Flavour {
        let version = crate::system::dkms::find_program()
            .and_then(|p| script_version(&p))
            .unwrap_or(NEWEST_KNOWN);
        Flavour::new(version)
    }

    fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version >= v
    }
    fn has_broken(&self) -> bool {
        self.at_least((3, 0, 13))
    }
    fn built_reads_conf(&self) -> bool {
        !self.at_least((3, 1, 8))
    }
    fn new_wording(&self) -> bool {
        self.at_least((3, 1, 3))
    }
    fn skips_kernel_links(&self) -> bool {
        self.at_least((3, 1, 4))
    }
    fn sparse_arrays(&self) -> bool {
        self.at_least((3, 2, 2))
    }
    fn per_module_exclusive(&self) -> bool {
        self.at_least((3, 3, 0))
    }
    fn extra_override_names(&self) -> bool {
        self.at_least((3, 1, 0))
    }
    fn original_warning(&self) -> &'static str {
        if self.new_wording() {
            "Original modules exist"
        } else {
            "original_module exists"
        }
    }
    fn missing_warning(&self) -> &'static str {
        if self.new_wording() {
            "Built modules are missing in the kernel modules folder"
        } else {
            "WARNING! Missing some built modules!"
        }
    }
    fn diff_warning(&self) -> &'static str {
        if self.new_wording() {
            "Differences between built and installed modules"
        } else {
            "WARNING! Diff between built and installed module!"
        }
    }
    /// Where dkms reads the kernel's headers for `kernel` (`kernel_source_dir`).
    fn kernel_source_dir(&self, trees: &Trees, kernel: &str) -> PathBuf {
        if self.at_least((3, 0, 13)) {
            trees.install.join(kernel).join("build")
        } else {
            self.host_modules.join(kernel).join("build")
        }
    }
}

/// The version a dkms script carries in its text (`dkms-3.0.10`, as `dkms --version` prints
/// it), without running it.
pub fn script_version(script: &Path) -> Option<(u32, u32, u32)> {
    let text = fs::read(script).ok()?;
    let re = regex::bytes::Regex::new(r"dkms-(\d+)\.(\d+)\.(\d+)").ok()?;
    let c = re.captures(&text)?;
    let num = |i: usize| std::str::from_utf8(&c[i]).ok()?.parse().ok();
    Some((num(1)?, num(2)?, num(3)?))
}

/// What one dkms.conf says for one kernel, as far as status needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Conf {
    /// `[[ -r dkms.conf ]]` held.
    readable: bool,
    /// dkms's read_conf accepted it (before 3.1.8 a rejection ends the listing).
    valid: bool,
    modules: Vec<DestModule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DestModule {
    name: String,
    /// Where dkms looks for the installed copy, in order (relative to the kernel's directory).
    locations: Vec<String>,
    /// Skipped by a BUILD_EXCLUSIVE_* directive (3.3+).
    excluded: bool,
}

/// One `M/V/K/ARCH` directory with a `module/` subdirectory.
#[derive(Debug, Clone)]
struct Pair {
    module: String,
    version: String,
    kernel: String,
    arch: String,
}

/// One `M/V` of the dkms tree, as the listing takes it.
enum Version {
    /// Its `source` link dangles, or it has sources but was never added (dkms 3.0.13+).
    Broken { module: String, version: String },
    /// Added, with the indexes of its built pairs.
    Added {
        module: String,
        version: String,
        pairs: Vec<usize>,
    },
}

/// One line of the listing: a version on no kernel, or a built/installed pair whose warnings are
/// still to be worked out.
enum Entry {
    Version {
        module: String,
        version: String,
        state: State,
    },
    Pair {
        pair: usize,
        installed: bool,
    },
}

/// An item as `dkms status` prints it.
fn line(i: &Item) -> String {
    let state = match i.state {
        State::Added => "added",
        State::Broken => "broken",
        State::Built => "built",
        State::Installed => "installed",
    };
    let mut s = match (&i.kernel, &i.arch) {
        (Some(k), Some(a)) => format!("{}/{}, {k}, {a}: {state}", i.module, i.version),
        _ => format!("{}/{}: {state}", i.module, i.version),
    };
    for w in &i.warnings {
        s.push_str(&format!(" ({w})"));
    }
    s
}

/// Computes what `dkms status` (of dkms `flavour`) prints for `trees`.
pub fn report(trees: &Trees, flavour: &Flavour) -> Report {
    report_sorted_by(trees, flavour, &Collator::from_env())
}

/// Computes what `dkms status` prints, sorting names with `collator`.
fn report_sorted_by(trees: &Trees, flavour: &Flavour, collator: &Collator) -> Report {
    let (versions, pairs) = read_versions(trees, flavour, collator);
    let confs = evaluate_confs(trees, flavour, &pairs);
    let mut suffixes = SuffixCache::default();
    let (entries, errors) = listing(trees, flavour, &versions, &pairs, &confs, &mut suffixes);

    // The parenthesised warnings: independent per line, so in parallel.
    let kernels: Vec<&str> = pairs.iter().map(|p| p.kernel.as_str()).collect();
    for k in kernels {
        suffixes.get(trees, flavour, k);
    }
    let items: Vec<Item> = entries
        .par_iter()
        .map(|e| match e {
            Entry::Version {
                module,
                version,
                state,
            } => Item {
                module: module.clone(),
                version: version.clone(),
                kernel: None,
                arch: None,
                state: *state,
                warnings: Vec::new(),
            },
            Entry::Pair { pair, installed } => {
                let p = &pairs[*pair];
                let suffix = suffixes.peek(&p.kernel);
                let warnings = extra(trees, flavour, p, &confs[*pair], *installed, &suffix);
                Item {
                    module: p.module.clone(),
                    version: p.version.clone(),
                    kernel: Some(p.kernel.clone()),
                    arch: Some(p.arch.clone()),
                    state: if *installed {
                        State::Installed
                    } else {
                        State::Built
                    },
                    warnings: warnings.iter().map(|w| w.to_string()).collect(),
                }
            }
        })
        .collect();
    let lines = items.iter().map(line).collect();
    Report {
        lines,
        errors,
        items,
    }
}

/// First pass, `"$dkms_tree/"*/*` sorted as bash sorts a glob's results: every version of the
/// dkms tree, broken or added, and the pairs each added one has built.
fn read_versions(
    trees: &Trees,
    flavour: &Flavour,
    collator: &Collator,
) -> (Vec<Version>, Vec<Pair>) {
    let dkms = trees.dkms.to_string_lossy().into_owned();

    let mut mvs: Vec<(String, String, CString)> = Vec::new();
    for m in names(&trees.dkms) {
        for v in names(&trees.dkms.join(&m)) {
            let full = format!("{dkms}/{m}/{v}");
            mvs.push((m.clone(), v, cstring(&full)));
        }
    }
    collator.sort(&mut mvs, |e| &e.2);

    let mut pairs: Vec<Pair> = Vec::new();
    let mut versions: Vec<Version> = Vec::new();
    for (m, v, _) in &mvs {
        let dir = dkms_tree::version_dir(&trees.dkms, m, v);
        if !dir.is_dir() {
            continue;
        }
        if flavour.skips_kernel_links() && is_kernel_link_name(v) {
            continue;
        }
        let source = dkms_tree::source_link(&trees.dkms, m, v);
        let is_link = source.symlink_metadata().is_ok_and(|md| md.is_symlink());
        let is_dir = source.is_dir();
        if flavour.has_broken() {
            let unlinked_sources = !is_link && trees.source.join(format!("{m}-{v}")).is_dir();
            if (is_link && !is_dir) || unlinked_sources {
                versions.push(Version::Broken {
                    module: m.clone(),
                    version: v.clone(),
                });
                continue;
            }
        }
        let added = if flavour.has_broken() {
            is_link && is_dir
        } else {
            is_link || is_dir
        };
        if !added {
            continue;
        }
        let mut kas: Vec<(String, String, CString)> = Vec::new();
        for k in names(&dir).into_iter().filter(|k| is_kernel_dir_name(k)) {
            for a in names(&dir.join(&k)) {
                let full = format!("{dkms}/{m}/{v}/{k}/{a}");
                kas.push((k.clone(), a, cstring(&full)));
            }
        }
        collator.sort(&mut kas, |e| &e.2);
        let mut idx = Vec::new();
        for (k, a, _) in kas {
            if dkms_tree::built_dir(&trees.dkms, m, v, &k, &a).is_dir() {
                idx.push(pairs.len());
                pairs.push(Pair {
                    module: m.clone(),
                    version: v.clone(),
                    kernel: k,
                    arch: a,
                });
            }
        }
        versions.push(Version::Added {
            module: m.clone(),
            version: v.clone(),
            pairs: idx,
        });
    }
    (versions, pairs)
}

/// Second pass, in order: the listing, as module_status prints it, and what dkms would say on
/// stderr.
fn listing(
    trees: &Trees,
    flavour: &Flavour,
    versions: &[Version],
    pairs: &[Pair],
    confs: &[Conf],
    suffixes: &mut SuffixCache,
) -> (Vec<Entry>, Vec<String>) {
    let dkms = trees.dkms.to_string_lossy().into_owned();
    let mut errors = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut sticky = String::new(); // set_module_suffix's global, before 3.1.8
    'listing: for version in versions {
        let (m, v, idx) = match version {
            Version::Broken { module, version } => {
                let (m, v) = (module, version);
                entries.push(Entry::Version {
                    module: m.clone(),
                    version: v.clone(),
                    state: State::Broken,
                });
                errors.push(format!(
                    "{m}/{v}: Missing the module source directory or the symbolic link pointing \
                     to it.\nManual intervention is required!"
                ));
                continue;
            }
            Version::Added {
                module,
                version,
                pairs,
            } => (module, version, pairs),
        };
        let mut any = false;
        for &i in idx {
            let p = &pairs[i];
            if flavour.built_reads_conf() {
                let conf = &confs[i];
                if !conf.readable {
                    let conf = trees.dkms.join(m).join(v).join("source/dkms.conf");
                    errors.push(format!(
                        "Could not locate dkms.conf file.\nFile: {} does not exist.",
                        trees.display(&conf)
                    ));
                    break 'listing;
                }
                if !conf.valid {
                    errors.push(
                        "Bad conf file.\nFile:  does not represent a valid dkms.conf file.".into(),
                    );
                    break 'listing;
                }
                if let Some(s) = suffixes.get(trees, flavour, &p.kernel) {
                    sticky = s;
                }
                let moddir = built_dir(trees, p);
                if !conf
                    .modules
                    .iter()
                    .all(|d| find_ko(&moddir, &d.name, &sticky).is_some())
                {
                    continue;
                }
            }
            any = true;
            entries.push(Entry::Pair {
                pair: i,
                installed: is_installed(trees, p, &dkms),
            });
        }
        if !any {
            entries.push(Entry::Version {
                module: m.clone(),
                version: v.clone(),
                state: State::Added,
            });
        }
    }
    (entries, errors)
}

/// module_status_built_extra: the warnings after a built or installed line, each without its
/// parentheses.
fn extra(
    trees: &Trees,
    flavour: &Flavour,
    p: &Pair,
    conf: &Conf,
    installed: bool,
    suffix: &str,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !conf.readable {
        // read_conf dies inside the subshell: nothing is printed.
        return out;
    }
    let original = dkms_tree::original_module_dir(&trees.dkms, &p.module, &p.kernel, &p.arch);
    if original.is_dir() {
        out.push(flavour.original_warning());
    }
    let moddir = built_dir(trees, p);
    let kdir = trees.install.join(&p.kernel);
    for d in &conf.modules {
        if flavour.per_module_exclusive() && d.excluded {
            continue;
        }
        let Some(built) = find_ko(&moddir, &d.name, suffix) else {
            out.push(flavour.missing_warning());
            if flavour.new_wording() {
                break;
            }
            continue;
        };
        if !installed {
            continue;
        }
        // find_actual_dest_module_location: the first location whose copy has the same modinfo
        // version as the built one; a byte-identical copy needs no modinfo.
        let mut real: Option<PathBuf> = None;
        for loc in &d.locations {
            let Some(copy) = find_ko(&join_rel(&kdir, loc), &d.name, suffix) else {
                continue;
            };
            if same_contents(&built, &copy) || modinfo_version(&built) == modinfo_version(&copy) {
                real = Some(copy);
                break;
            }
        }
        let real = real.or_else(|| find_ko(&kdir, &d.name, suffix));
        if !real.is_some_and(|r| same_contents(&built, &r)) {
            out.push(flavour.diff_warning());
            if flavour.new_wording() {
                break;
            }
        }
    }
    out
}

fn built_dir(trees: &Trees, p: &Pair) -> PathBuf {
    dkms_tree::built_dir(&trees.dkms, &p.module, &p.version, &p.kernel, &p.arch)
}

/// `_is_module_installed`: `M/kernel-K-ARCH` is a link whose `readlink -f` is exactly the
/// pair's directory as spelt from the dkms tree path (so a dkms tree reached through a symlink
/// shows "built", as dkms shows it).
fn is_installed(trees: &Trees, p: &Pair, dkms: &str) -> bool {
    let link = dkms_tree::install_link(&trees.dkms, &p.module, &p.kernel, &p.arch);
    if !link.symlink_metadata().is_ok_and(|md| md.is_symlink()) {
        return false;
    }
    let want = format!("{dkms}/{}/{}/{}/{}", p.module, p.version, p.kernel, p.arch);
    fs::canonicalize(&link).is_ok_and(|real| real.as_os_str() == OsStr::new(&want))
}

/// `dir + loc` where loc is a dkms location like `/updates/dkms` (or empty).
fn join_rel(dir: &Path, loc: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(loc);
    PathBuf::from(s)
}

/// compressed_or_uncompressed: `dir/name.ko`, else `dir/name.ko<suffix>`, if it exists.
fn find_ko(dir: &Path, name: &str, suffix: &str) -> Option<PathBuf> {
    let plain = join_rel(dir, &format!("/{name}.ko"));
    if plain.exists() {
        return Some(plain);
    }
    let packed = join_rel(dir, &format!("/{name}.ko{suffix}"));
    packed.exists().then_some(packed)
}

/// `diff -q a b` succeeds: both readable, same bytes. Sizes first.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    if ma.len() != mb.len() {
        return false;
    }
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let na = match read_full(&mut fa, &mut ba) {
            Ok(n) => n,
            Err(_) => return false,
        };
        let nb = match read_full(&mut fb, &mut bb[..na.max(1)]) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            r => n += r,
        }
    }
    Ok(n)
}

/// The first word of the `version:` line `modinfo` prints for `path` ("" when none), as
/// dkms's compare_module_version reads it. Only needed when an installed copy differs from
/// the built module, so running modinfo is fine.
fn modinfo_version(path: &Path) -> String {
    let Ok(out) = Command::new("modinfo")
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return String::new();
    };
    let mut version = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("version:") {
            version = words.next().unwrap_or_default().to_string();
        }
    }
    version
}

/// Names in `dir` that bash's `*` matches (no leading dot), unsorted.
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// `+([0-9]).*`: digits, then a dot.
fn is_kernel_dir_name(name: &str) -> bool {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && name.as_bytes().get(digits) == Some(&b'.')
}

/// `M/V` matching `*/kernel-*-*` (dkms 3.1.4+ skips these before any test).
fn is_kernel_link_name(v: &str) -> bool {
    v.strip_prefix("kernel-")
        .is_some_and(|rest| rest.contains('-'))
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// The module compression suffix dkms's set_module_suffix finds for each kernel ("" for
/// none), computed once per kernel.
#[derive(Default)]
struct SuffixCache {
    map: HashMap<String, String>,
}

impl SuffixCache {
    /// The kernel's suffix if one is found (`None` leaves set_module_suffix's global as it was).
    fn get(&mut self, trees: &Trees, flavour: &Flavour, kernel: &str) -> Option<String> {
        let s = self
            .map
            .entry(kernel.to_string())
            .or_insert_with(|| compression_suffix(trees, flavour, kernel));
        (!s.is_empty()).then(|| s.clone())
    }

    fn peek(&self, kernel: &str) -> String {
        self.map.get(kernel).cloned().unwrap_or_default()
    }
}

fn compression_suffix(trees: &Trees, flavour: &Flavour, kernel: &str) -> String {
    let found = if flavour.at_least((3, 1, 3)) {
        // `find install_tree/K/ -name "*.ko.gz"` etc. (no links followed); zst wins over xz
        // over gz, because the later test overwrites the earlier.
        let mut found = [false; 3];
        walk_for_suffixes(&trees.install.join(kernel), &mut found);
        found
    } else {
        let dep = if flavour.at_least((3, 0, 13)) {
            trees.install.join(kernel).join("modules.dep")
        } else {
            flavour.host_modules.join(kernel).join("modules.dep")
        };
        let text = fs::read(dep).unwrap_or_default();
        [".gz:", ".xz:", ".zst:"].map(|n| text.windows(n.len()).any(|w| w == n.as_bytes()))
    };
    match found {
        [_, _, true] => ".zst",
        [_, true, _] => ".xz",
        [true, _, _] => ".gz",
        _ => "",
    }
    .to_string()
}

fn walk_for_suffixes(dir: &Path, found: &mut [bool; 3]) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if found[2] {
            return;
        }
        let name = e.file_name();
        let name = name.as_bytes();
        for (i, s) in [&b".ko.gz"[..], b".ko.xz", b".ko.zst"].iter().enumerate() {
            if name.ends_with(s) {
                found[i] = true;
            }
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_for_suffixes(&e.path(), found);
        }
    }
}

/// Sorts like bash sorts glob results: strcoll in the `LC_COLLATE` of the environment.
struct Collator {
    locale: Option<libc::locale_t>,
}

impl Collator {
    fn from_env() -> Collator {
        let name = ["LC_ALL", "LC_COLLATE", "LANG"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        let plain = match name.as_deref() {
            None | Some("C") | Some("POSIX") => true,
            Some(n) => n.starts_with("C."),
        };
        if plain {
            return Collator { locale: None };
        }
        // SAFETY: newlocale with an empty name reads the environment; a null result means the
        // locale is not installed, and bash then collates in C as well.
        let empty = CString::default();
        let loc =
            unsafe { libc::newlocale(libc::LC_COLLATE_MASK, empty.as_ptr(), std::ptr::null_mut()) };
        Collator {
            locale: (!loc.is_null()).then_some(loc),
        }
    }

    fn sort<T>(&self, items: &mut [T], key: impl Fn(&T) -> &CString) {
        match self.locale {
            None => items.sort_by(|a, b| key(a).as_bytes().cmp(key(b).as_bytes())),
            Some(loc) => {
                // SAFETY: uselocale only changes this thread's locale, restored right after;
                // strcoll reads two valid NUL-terminated strings.
                unsafe {
                    let old = libc::uselocale(loc);
                    items.sort_by(|a, b| libc::strcoll(key(a).as_ptr(), key(b).as_ptr()).cmp(&0));
                    libc::uselocale(old);
                }
            }
        }
    }
}

impl Drop for Collator {
    fn drop(&mut self) {
        if let Some(loc) = self.locale {
            // SAFETY: created by newlocale, no longer in use by any thread.
            unsafe { libc::freelocale(loc) };
        }
    }
}

/// Evaluates the dkms.conf of every pair for its kernel, the way dkms's read_conf does, in one
/// bash per core (a subshell per evaluation keeps one dkms.conf's side effects from the next).
/// The kernels of one version whose files cannot make their result depend on the kernel
/// (see [`crate::dkmsconf::once`]) share one evaluation.
fn evaluate_confs(trees: &Trees, flavour: &Flavour, pairs: &[Pair]) -> Vec<Conf> {
    evaluate_confs_counted(trees, flavour, pairs, Once::Allowed).0
}

/// [`evaluate_confs`], and how many evaluations it took.
fn evaluate_confs_counted(
    trees: &Trees,
    flavour: &Flavour,
    pairs: &[Pair],
    once: Once,
) -> (Vec<Conf>, usize) {
    if pairs.is_empty() {
        return (Vec::new(), 0);
    }
    let jobs = group(trees, flavour, pairs, once);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = jobs.len().div_ceil(workers);
    let chunks: Vec<(Vec<(usize, Conf)>, usize)> = jobs
        .par_chunks(chunk)
        .map(|c| evaluate_chunk(trees, flavour, pairs, c))
        .collect();
    let mut confs = vec![Conf::default(); pairs.len()];
    let mut count = 0;
    for (results, n) in chunks {
        count += n;
        for (i, c) in results {
            confs[i] = c;
        }
    }
    (confs, count)
}

/// One evaluation: the pairs it answers for (several only when sourced once with the
/// sentinels), and the files read_conf sources for them (those that exist).
struct Job {
    pairs: Vec<usize>,
    files: Vec<PathBuf>,
    readable: bool,
}

/// The evaluations `pairs` need: one per pair, except that the pairs of one version and arch
/// that source the same files, all declarative, share one.
fn group(trees: &Trees, flavour: &Flavour, pairs: &[Pair], once: Once) -> Vec<Job> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut shared: HashMap<(Vec<PathBuf>, &str, &str, &str), usize> = HashMap::new();
    let mut declarative: HashMap<PathBuf, bool> = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        let conf = trees
            .dkms
            .join(&p.module)
            .join(&p.version)
            .join("source/dkms.conf");
        // read_conf: `[[ -r dkms.conf ]]` or it stops; an unreadable one is left as it is.
        let readable = fs::File::open(&conf).is_ok();
        let files: Vec<PathBuf> = match readable {
            true => override_files(flavour, p, &conf)
                .into_iter()
                .filter(|f| f.exists())
                .collect(),
            false => Vec::new(),
        };
        let pure = readable
            && once == Once::Allowed
            && flavour
                .kernel_source_dir(trees, &p.kernel)
                .to_str()
                .is_some()
            && files.iter().all(|f| {
                *declarative.entry(f.clone()).or_insert_with(|| {
                    fs::read(f).is_ok_and(|text| dkmsconf::once::declarative(&text))
                })
            });
        if pure {
            let key = (
                files.clone(),
                p.arch.as_str(),
                p.module.as_str(),
                p.version.as_str(),
            );
            if let Some(&j) = shared.get(&key) {
                jobs[j].pairs.push(i);
                continue;
            }
            shared.insert(key, jobs.len());
        }
        jobs.push(Job {
            pairs: vec![i],
            files,
            readable,
        });
    }
    jobs
}

/// The emitter the shared evaluator ([`crate::dkmsconf::eval`]) runs after sourcing a pair's
/// dkms.conf and its `/etc/dkms` overrides: the distribution, then the raw directives.
const STATUS_EMITTER: &str = include_str!("status.sh");

/// Runs `jobs` in one evaluator: each pair's [`Conf`], and how many evaluations that took.
fn evaluate_chunk(
    trees: &Trees,
    flavour: &Flavour,
    pairs: &[Pair],
    jobs: &[Job],
) -> (Vec<(usize, Conf)>, usize) {
    let ksds: Vec<Vec<PathBuf>> = jobs
        .iter()
        .map(|j| {
            j.pairs
                .iter()
                .map(|&i| flavour.kernel_source_dir(trees, &pairs[i].kernel))
                .collect()
        })
        .collect();
    let mut units = Vec::new();
    for (id, j) in jobs.iter().enumerate() {
        if !j.readable {
            continue;
        }
        let p = &pairs[j.pairs[0]];
        let (kernel, ksd) = match j.pairs.len() {
            1 => (p.kernel.as_str(), ksds[id][0].as_path()),
            _ => (
                dkmsconf::once::KERNELVER,
                Path::new(dkmsconf::once::KERNEL_SOURCE_DIR),
            ),
        };
        units.push(Unit::Source {
            id,
            kernel,
            arch: &p.arch,
            kernel_source_dir: ksd,
            module: &p.module,
            version: &p.version,
            files: j.files.clone(),
        });
    }
    let count = units.len();
    let emitter = Emitter {
        prelude: STATUS_EMITTER,
        function: "_dh_emit_status",
        unset: DIRECTIVES,
        env: vec![(
            "_dh_os_release",
            flavour.os_release.clone().into_os_string(),
        )],
    };
    let records = run_units(&emitter, trees, &units).unwrap_or_default();
    let mut configs = KernelConfigs::default();
    let mut out: Vec<(usize, Conf)> = jobs
        .iter()
        .flat_map(|j| {
            j.pairs.iter().map(|&i| {
                let conf = Conf {
                    readable: j.readable,
                    ..Conf::default()
                };
                (i, conf)
            })
        })
        .collect();
    let mut at: HashMap<usize, usize> = HashMap::new();
    for (n, (i, _)) in out.iter().enumerate() {
        at.insert(*i, n);
    }
    for r in &records {
        // A pair whose record is missing or cut short (its dkms.conf exited the subshell)
        // counts as an invalid dkms.conf, as it would in dkms.
        let Record::Source {
            id,
            fields,
            done: true,
            ..
        } = r
        else {
            continue;
        };
        let Some(j) = jobs.get(*id) else { continue };
        for (n, &i) in j.pairs.iter().enumerate() {
            let p = &pairs[i];
            let ksd = &ksds[*id][n];
            let fields: Vec<String> = match j.pairs.len() {
                1 => fields.clone(),
                // Checked to be UTF-8 when grouped.
                _ => fields
                    .iter()
                    .map(|f| dkmsconf::once::for_kernel(f, &p.kernel, &ksd.to_string_lossy()))
                    .collect(),
            };
            let Some((distro, directives)) = fields.split_first() else {
                continue;
            };
            let config = configs.get(flavour, ksd);
            out[at[&i]].1 = read_conf(flavour, distro, directives, p, config);
        }
    }
    (out, count)
}

/// What dkms of `flavour` reads in a pair's dkms.conf, from the directives the evaluator wrote
/// (after `distro`, the distribution it installs for), by the rules the planner reads dkms.conf
/// with ([`rules`]): whether it is refused, and each module's installed name, the places dkms
/// looks for its installed copy, and whether a per-module BUILD_EXCLUSIVE_* rules it out.
fn read_conf(
    flavour: &Flavour,
    distro: &str,
    directives: &[String],
    p: &Pair,
    config: &KernelConfig,
) -> Conf {
    let dialect = match flavour.sparse_arrays() {
        true => Dialect::Sparse,
        false => Dialect::Dense,
    };
    let d = Directives::read(directives, dialect);
    let name = d.scalar("PACKAGE_NAME").unwrap_or_default();
    let records = rules::module_records(&d, &name, dialect).records;
    // A pattern bash cannot read is no match (`! $k =~ $bad` holds): the module is excluded.
    let excludes = |ex: &crate::dkmsconf::exclusive::Exclusive| {
        ex.excludes(&p.kernel, &p.arch, config) != Ok(None)
    };
    let whole = flavour.per_module_exclusive() && excludes(&d.exclusive(None));
    let addon = std::env::var("ADDON_MODULES_DIR")
        .ok()
        .filter(|a| !a.is_empty());
    let modules = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let l = r.dest_location.as_str();
            // Where dkms installs on this distribution, whatever DEST_MODULE_LOCATION says.
            let installs = match &addon {
                Some(a) => format!("/{a}"),
                None => match distro {
                    d if ["fedora", "centos", "rhel", "ovm"]
                        .iter()
                        .any(|p| d.starts_with(p)) =>
                    {
                        "/extra".to_string()
                    }
                    d if ["sles", "suse", "opensuse"]
                        .iter()
                        .any(|p| d.starts_with(p)) =>
                    {
                        "/updates".to_string()
                    }
                    d if ["debian", "ubuntu", "arch"]
                        .iter()
                        .any(|p| d.starts_with(p)) =>
                    {
                        "/updates/dkms".to_string()
                    }
                    _ => l.to_string(),
                },
            };
            let other = if l != installs { l } else { "" };
            DestModule {
                name: r.installed_name().to_string(),
                locations: [installs.as_str(), other]
                    .into_iter()
                    .flat_map(str::split_whitespace)
                    .map(str::to_string)
                    .collect(),
                excluded: flavour.per_module_exclusive()
                    && (whole || excludes(&d.exclusive(Some(i)))),
            }
        })
        .collect();
    Conf {
        readable: true,
        valid: rules::reads(&d, dialect),
        modules,
    }
}

/// Each kernel's configuration as dkms 3.3+ reads it for BUILD_EXCLUSIVE_CONFIG
/// (`include/config/auto.conf` when there is one, else `.config`; before 3.3, `.config`), read
/// once per kernel source directory.
#[derive(Default)]
struct KernelConfigs {
    read: HashMap<PathBuf, KernelConfig>,
}

impl KernelConfigs {
    fn get(&mut self, flavour: &Flavour, ksd: &Path) -> &KernelConfig {
        self.read.entry(ksd.to_path_buf()).or_insert_with(|| {
            let auto = ksd.join("include/config/auto.conf");
            let file = match flavour.per_module_exclusive() && auto.exists() {
                true => auto,
                false => ksd.join(".config"),
            };
            fs::read_to_string(file)
                .map(|text| KernelConfig::parse(&text))
                .unwrap_or_default()
        })
    }
}

/// The files read_conf sources: the dkms.conf, then the `/etc/dkms` overrides for the module.
fn override_files(flavour: &Flavour, p: &Pair, conf: &Path) -> Vec<PathBuf> {
    let etc = &flavour.etc_dkms;
    let (m, v, k, a) = (&p.module, &p.version, &p.kernel, &p.arch);
    let mut files = vec![
        conf.to_path_buf(),
        etc.join(format!("{m}.conf")),
        etc.join(format!("{m}-{v}.conf")),
        etc.join(format!("{m}-{v}-{k}.conf")),
        etc.join(format!("{m}-{v}-{k}-{a}.conf")),
    ];
    if flavour.extra_override_names() {
        files.push(etc.join(format!("{m}--{k}.conf")));
        files.push(etc.join(format!("{m}--{k}-{a}.conf")));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const K1: &str = "6.1.0-55-amd64";
    const K2: &str = "6.1.0-56-amd64";
    const OLD: (u32, u32, u32) = (3, 0, 10);
    const NEW: (u32, u32, u32) = (3, 4, 3);

    /// A synthetic system: the three trees under a temporary root, plus the host files dkms
    /// reads (os-release, /etc/dkms, /lib/modules) in the same directory.
    struct Sys {
        dir: tempfile::TempDir,
        trees: Trees,
    }

    impl Sys {
        fn new() -> Sys {
            let dir = tempfile::tempdir().unwrap();
            let trees = Trees::defaults(&dir.path().join("root"));
            for d in [&trees.source, &trees.dkms, &trees.install] {
                fs::create_dir_all(d).unwrap();
            }
            fs::write(dir.path().join("os-release"), "ID=debian\n").unwrap();
            Sys { dir, trees }
        }

        fn flavour(&self, version: (u32, u32, u32)) -> Flavour {
            Flavour {
                version,
                host_modules: self.dir.path().join("host-modules"),
                etc_dkms: self.dir.path().join("etc-dkms"),
                os_release: self.dir.path().join("os-release"),
            }
        }

        fn status(&self, version: (u32, u32, u32)) -> Vec<String> {
            report_sorted_by(
                &self.trees,
                &self.flavour(version),
                &Collator { locale: None },
            )
            .lines
        }

        /// usr/src/M-V with a dkms.conf building one module `<M>_mod` (or `conf` as given),
        /// and the `source` link that `dkms add` makes.
        fn add(&self, m: &str, v: &str, conf: Option<&str>) {
            let src = self.trees.source.join(format!("{m}-{v}"));
            fs::create_dir_all(&src).unwrap();
            let default = format!(
                "PACKAGE_NAME=\"{m}\"\nPACKAGE_VERSION=\"{v}\"\nBUILT_MODULE_NAME[0]=\"{}_mod\"\n\
                 DEST_MODULE_LOCATION[0]=\"/extra\"\nAUTOINSTALL=yes\n",
                m.replace('-', "_")
            );
            fs::write(src.join("dkms.conf"), conf.unwrap_or(&default)).unwrap();
            let vdir = self.trees.dkms.join(m).join(v);
            fs::create_dir_all(&vdir).unwrap();
            symlink(&src, vdir.join("source")).unwrap();
        }

        fn moddir(&self, m: &str, v: &str, k: &str) -> PathBuf {
            self.trees
                .dkms
                .join(m)
                .join(v)
                .join(k)
                .join("x86_64/module")
        }

        /// What `dkms build` leaves: M/V/K/x86_64/module/<file>.
        fn build(&self, m: &str, v: &str, k: &str, files: &[&str]) {
            let dir = self.moddir(m, v, k);
            fs::create_dir_all(&dir).unwrap();
            for f in files {
                fs::write(dir.join(f), format!("{m} {v} {k} {f}")).unwrap();
            }
        }

        /// What `dkms install` leaves: the kernel link and copies under updates/dkms.
        fn install(&self, m: &str, v: &str, k: &str) {
            let link = self.trees.dkms.join(m).join(format!("kernel-{k}-x86_64"));
            let _ = fs::remove_file(&link);
            symlink(format!("{v}/{k}/x86_64"), link).unwrap();
            let dest = self.trees.install.join(k).join("updates/dkms");
            fs::create_dir_all(&dest).unwrap();
            for e in fs::read_dir(self.moddir(m, v, k)).unwrap().flatten() {
                fs::copy(e.path(), dest.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn states_and_order_follow_dkms_globs() {
        let s = Sys::new();
        s.add("foo", "1.0", None);
        s.add("foo", "10.0", None);
        s.add("foo", "2.0", None);
        s.add("foo-bar", "1", None);
        s.add("fo", "1", None);
        s.build("foo", "1.0", K2, &["foo_mod.ko"]);
        s.build("foo", "1.0", K1, &["foo_mod.ko"]);
        s.install("foo", "1.0", K1);
        s.build("foo", "10.0", K2, &["foo_mod.ko"]);
        s.build("foo-bar", "1", K1, &["foo_bar_mod.ko"]);
        s.install("foo-bar", "1", K1);
        // Not kernels: dkms's glob wants digits then a dot.
        fs::create_dir_all(s.trees.dkms.join("foo/2.0/build")).unwrap();
        fs::create_dir_all(s.trees.dkms.join("foo/2.0/x1.0/x86_64/module")).unwrap();
        let want = [
            "fo/1: added".to_string(),
            format!("foo-bar/1, {K1}, x86_64: installed"),
            format!("foo/1.0, {K1}, x86_64: installed"),
            format!("foo/1.0, {K2}, x86_64: built"),
            format!("foo/10.0, {K2}, x86_64: built"),
            "foo/2.0: added".to_string(),
        ];
        assert_eq!(s.status(OLD), want);
        assert_eq!(s.status(NEW), want);
    }

    #[test]
    fn empty_or_missing_tree_prints_nothing() {
        let s = Sys::new();
        assert!(s.status(OLD).is_empty());
        fs::remove_dir_all(&s.trees.dkms).unwrap();
        assert!(s.status(NEW).is_empty());
    }

    #[test]
    fn install_link_to_another_version_means_built() {
        let s = Sys::new();
        s.add("foo", "1.0", None);
        s.add("foo", "2.0", None);
        s.build("foo", "1.0", K1, &["foo_mod.ko"]);
        s.build("foo", "2.0", K1, &["foo_mod.ko"]);
        s.install("foo", "2.0", K1);
        assert_eq!(
            s.status(OLD),
            [
                format!("foo/1.0, {K1}, x86_64: built"),
                format!("foo/2.0, {K1}, x86_64: installed"),
            ]
        );
    }

    #[test]
    fn missing_built_module_depends_on_the_version() {
        let s = Sys::new();
        let conf = "PACKAGE_NAME=foo\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=a\n\
                    BUILT_MODULE_NAME[1]=b\nDEST_MODULE_LOCATION[0]=/extra\n\
                    DEST_MODULE_LOCATION[1]=/extra\n";
        s.add("foo", "1", Some(conf));
        s.build("foo", "1", K1, &["a.ko"]);
        // 3.0.10: not every module is there, so not built at all.
        assert_eq!(s.status(OLD), ["foo/1: added"]);
        // 3.1.8+: built, with a warning.
        assert_eq!(
            s.status(NEW),
            [format!(
                "foo/1, {K1}, x86_64: built (Built modules are missing in the kernel modules folder)"
            )]
        );
    }

    #[test]
    fn differing_or_missing_installed_copy_warns() {
        let s = Sys::new();
        let conf = "PACKAGE_NAME=foo\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=a\n\
                    BUILT_MODULE_NAME[1]=b\nDEST_MODULE_LOCATION[0]=/extra\n\
                    DEST_MODULE_LOCATION[1]=/extra\n";
        s.add("foo", "1", Some(conf));
        s.build("foo", "1", K1, &["a.ko", "b.ko"]);
        s.install("foo", "1", K1);
        let line = format!("foo/1, {K1}, x86_64: installed");
        assert_eq!(s.status(OLD), std::slice::from_ref(&line));
        let dest = s.trees.install.join(K1).join("updates/dkms");
        fs::write(dest.join("a.ko"), "foo 1 other a.ko").unwrap(); // same size, other bytes
        fs::remove_file(dest.join("b.ko")).unwrap();
        let old = " (WARNING! Diff between built and installed module!)";
        assert_eq!(s.status(OLD), [format!("{line}{old}{old}")]);
        // 3.1.3+ stops at the first difference.
        assert_eq!(
            s.status(NEW),
            [format!(
                "{line} (Differences between built and installed modules)"
            )]
        );
    }

    #[test]
    fn saved_original_module_is_reported() {
        let s = Sys::new();
        s.add("foo", "1", None);
        s.build("foo", "1", K1, &["foo_mod.ko"]);
        s.install("foo", "1", K1);
        fs::create_dir_all(
            s.trees
                .dkms
                .join("foo/original_module")
                .join(K1)
                .join("x86_64"),
        )
        .unwrap();
        let line = format!("foo/1, {K1}, x86_64: installed");
        assert_eq!(s.status(OLD), [format!("{line} (original_module exists)")]);
        assert_eq!(s.status(NEW), [format!("{line} (Original modules exist)")]);
    }

    #[test]
    fn dangling_source_is_added_then_broken() {
        let s = Sys::new();
        s.add("foo", "1", None);
        fs::remove_dir_all(s.trees.source.join("foo-1")).unwrap();
        assert_eq!(s.status(OLD), ["foo/1: added"]);
        let r = report_sorted_by(&s.trees, &s.flavour(NEW), &Collator { locale: None });
        assert_eq!(r.lines, ["foo/1: broken"]);
        assert_eq!(r.errors.len(), 1);
    }

    #[test]
    fn rejected_dkms_conf_ends_the_old_listing() {
        let s = Sys::new();
        s.add("a", "1", None);
        s.add(
            "b",
            "1",
            Some("PACKAGE_NAME=b\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=b\n"),
        );
        s.add("c", "1", None);
        s.build("a", "1", K1, &["a_mod.ko"]);
        s.build("b", "1", K1, &["b.ko"]);
        s.build("c", "1", K1, &["c_mod.ko"]);
        let r = report_sorted_by(&s.trees, &s.flavour(OLD), &Collator { locale: None });
        assert_eq!(r.lines, [format!("a/1, {K1}, x86_64: built")]);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(
            s.status(NEW),
            [
                format!("a/1, {K1}, x86_64: built"),
                format!("b/1, {K1}, x86_64: built"),
                format!("c/1, {K1}, x86_64: built"),
            ]
        );
    }

    #[test]
    fn dkms_conf_is_evaluated_per_kernel() {
        let s = Sys::new();
        // The module's name depends on the kernel, as real dkms.conf files may do.
        let conf = "PACKAGE_NAME=foo\nPACKAGE_VERSION=1\nDEST_MODULE_LOCATION[0]=/extra\n\
                    if [[ $kernelver == *-55-* ]]; then BUILT_MODULE_NAME[0]=old; \
                    else BUILT_MODULE_NAME[0]=new; fi\nexec >&2; echo noise\n";
        s.add("foo", "1", Some(conf));
        s.build("foo", "1", K1, &["old.ko"]);
        s.build("foo", "1", K2, &["old.ko"]);
        assert_eq!(s.status(OLD), [format!("foo/1, {K1}, x86_64: built")]);
    }

    /// The kernels of a version share one evaluation of its dkms.conf when its result cannot
    /// depend on the kernel, and give what an evaluation per kernel gives; a dkms.conf that
    /// tests the kernel keeps one per pair, and an /etc/dkms override for one kernel sets that
    /// kernel apart.
    #[test]
    fn the_kernels_of_a_version_share_one_evaluation_when_the_kernel_cannot_change_it() {
        let s = Sys::new();
        let kernels = [K1, K2, "6.10.3-arch1-1"];
        s.add(
            "foo",
            "1",
            Some(
                "PACKAGE_NAME=foo\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=foo_mod\n\
                 DEST_MODULE_LOCATION[0]=\"/updates/$kernelver\"\n\
                 BUILD_EXCLUSIVE_KERNEL=\"^${kernelver}$\"\n",
            ),
        );
        s.add(
            "bar",
            "1",
            Some(
                "PACKAGE_NAME=bar\nPACKAGE_VERSION=1\nDEST_MODULE_LOCATION[0]=/extra\n\
                 if [[ $kernelver == *-55-* ]]; then BUILT_MODULE_NAME[0]=bar_mod; \
                 else BUILT_MODULE_NAME[0]=other; fi\n",
            ),
        );
        s.add("baz", "1", None);
        let etc = s.dir.path().join("etc-dkms");
        fs::create_dir_all(&etc).unwrap();
        fs::write(
            etc.join(format!("baz-1-{K1}.conf")),
            "BUILT_MODULE_NAME[0]=renamed\n",
        )
        .unwrap();
        for k in kernels {
            for m in ["foo", "bar", "baz"] {
                s.build(m, "1", k, &[&format!("{m}_mod.ko")]);
            }
        }
        let flavour = s.flavour(NEW);
        let (_, pairs) = read_versions(&s.trees, &flavour, &Collator { locale: None });
        assert_eq!(pairs.len(), 9);
        let (once, n_once) = evaluate_confs_counted(&s.trees, &flavour, &pairs, Once::Allowed);
        let (per, n_per) = evaluate_confs_counted(&s.trees, &flavour, &pairs, Once::Never);
        assert_eq!(n_per, 9);
        assert_eq!(
            n_once,
            1 + 3 + 2,
            "foo once, bar per kernel, baz once for the two kernels without an override"
        );
        assert_eq!(once, per);
        // Not vacuous: each kernel has its own results.
        let foo: Vec<&Conf> = pairs
            .iter()
            .zip(&once)
            .filter(|(p, _)| p.module == "foo")
            .map(|(_, c)| c)
            .collect();
        let k = |c: &Conf| c.modules[0].locations.last().cloned().unwrap_or_default();
        assert_eq!(
            foo.iter().map(|c| k(c)).collect::<Vec<_>>(),
            kernels.map(|k| format!("/updates/{k}"))
        );
        assert!(foo.iter().all(|c| c.valid && !c.modules[0].excluded));
    }

    #[test]
    fn compressed_modules_need_the_kernels_suffix() {
        let s = Sys::new();
        s.add("foo", "1", None);
        s.build("foo", "1", K1, &["foo_mod.ko.zst"]);
        // No kernel uses zstd: the file is not found, so not built (3.0.10).
        assert_eq!(s.status(OLD), ["foo/1: added"]);
        // 3.0.10 reads /lib/modules/K/modules.dep; 3.1.3+ looks for *.ko.zst in the kernel.
        let host = s.dir.path().join("host-modules").join(K1);
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("modules.dep"), "kernel/x.ko.zst:\n").unwrap();
        assert_eq!(s.status(OLD), [format!("foo/1, {K1}, x86_64: built")]);
        fs::create_dir_all(s.trees.install.join(K1).join("kernel")).unwrap();
        fs::write(s.trees.install.join(K1).join("kernel/x.ko.zst"), "").unwrap();
        s.install("foo", "1", K1);
        assert_eq!(s.status(NEW), [format!("foo/1, {K1}, x86_64: installed")]);
    }

    #[test]
    fn installed_copy_is_looked_for_where_the_distribution_puts_it() {
        let s = Sys::new();
        s.add("foo", "1", None); // DEST_MODULE_LOCATION /extra, Debian puts it in updates/dkms
        s.build("foo", "1", K1, &["foo_mod.ko"]);
        s.install("foo", "1", K1);
        assert_eq!(s.status(OLD), [format!("foo/1, {K1}, x86_64: installed")]);
        // Elsewhere (no os-release match), dkms uses /extra, where there is no copy.
        fs::write(s.dir.path().join("os-release"), "ID=gentoo\n").unwrap();
        assert_eq!(
            s.status(OLD),
            [format!(
                "foo/1, {K1}, x86_64: installed (WARNING! Diff between built and installed module!)"
            )]
        );
    }

    #[test]
    fn version_is_read_from_the_script_text() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("dkms");
        fs::write(
            &script,
            "#!/bin/bash\n--version)\n    echo $\"dkms-3.0.10\"\n",
        )
        .unwrap();
        assert_eq!(script_version(&script), Some((3, 0, 10)));
        fs::write(
            &script,
            "echo \"DKMS (dkms-3.4.3) make.log\"\necho \"dkms-3.4.3\"\n",
        )
        .unwrap();
        assert_eq!(script_version(&script), Some((3, 4, 3)));
        fs::write(&script, "no version here").unwrap();
        assert_eq!(script_version(&script), None);
    }

    #[test]
    fn same_contents_compares_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        fs::write(&a, &big).unwrap();
        fs::write(&b, &big).unwrap();
        let mut other = big.clone();
        other[150_000] ^= 1;
        fs::write(&c, &other).unwrap();
        assert!(same_contents(&a, &b));
        assert!(!same_contents(&a, &c));
        assert!(!same_contents(&a, &dir.path().join("missing")));
    }

    #[test]
    fn status_items_have_null_kernel_when_only_added() {
        let items = [Item {
            module: "foo".into(),
            version: "1".into(),
            kernel: None,
            arch: None,
            state: State::Added,
            warnings: vec![],
        }];
        let v: serde_json::Value = serde_json::from_str(&json(&items)).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"module": "foo", "version": "1", "kernel": null,
                "arch": null, "state": "added", "warnings": []}])
        );
    }
}
