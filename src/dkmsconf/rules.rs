//! What a dkms.conf means, as dkms 3.4.3's `read_conf` reads it before a build: from the raw
//! directives the evaluator emits to a [`DkmsConf`] ([`to_conf`]): the module records (dense or
//! sparse arrays, defaults), what dkms refuses ([`Refusal`]) and what it only warns about. The
//! planner, `lint` and `status` read dkms.conf through these rules alone.

use crate::dkmsconf::exclusive::Exclusive;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directives of one dkms.conf for one kernel that planning needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkmsConf {
    pub name: String,
    pub version: String,
    pub autoinstall: bool,
    /// Module names that must be installed for the same kernel first.
    pub build_depends: Vec<String>,
    pub exclusive: Exclusive,
    /// BUILT_MODULE_NAME entries: the .ko files (without suffix) a build produces, one per
    /// module record as dkms 3.4.3 counts them (see [`records`]), PACKAGE_NAME where dkms
    /// defaults to it, an empty string in a hole of a sparse array.
    pub built_modules: Vec<String>,
    /// DEST_MODULE_NAME entries (same order as `built_modules`; empty string when unset).
    pub dest_names: Vec<String>,
    /// BUILT_MODULE_LOCATION entries (same order as `built_modules`; empty string when unset).
    pub built_locations: Vec<String>,
    /// DEST_MODULE_LOCATION entries (same order as `built_modules`; empty string when unset).
    pub dest_locations: Vec<String>,
    /// AUTOINSTALL as written (`autoinstall` says only whether it is set).
    pub autoinstall_value: String,
    /// PATCH entries: file names under the source's `patches/` directory.
    pub patches: Vec<String>,
    /// The PATCH entries dkms applies for this kernel (PATCH_MATCH), those that stay in
    /// `patches/`.
    pub kernel_patches: Vec<String>,
    /// MAKE entries as evaluated (`MAKE` or `MAKE[0]` is the build command).
    pub make: Vec<String>,
    /// What dkms 3.4.3 refuses in this file before it builds (`read_conf`, `read_conf_strict`,
    /// and its patch step for this kernel's patches): any one makes dkms exit 8 (5 for a patch).
    pub refusals: Vec<Refusal>,
    /// What dkms 3.4.3 warns about and builds anyway: obsolete directives, no module at all.
    pub warnings: Vec<String>,
}

/// One thing dkms 3.4.3 refuses in a dkms.conf before a build. Each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A module record (of several) without BUILT_MODULE_NAME: dkms defaults it to PACKAGE_NAME
    /// only when there is one record. A hole in a sparse array is such a record.
    #[error(
        "module #{index} has no BUILT_MODULE_NAME (dkms names the module after PACKAGE_NAME \
         only when there is one)"
    )]
    NoBuiltName { index: usize },
    #[error("{directive}[{index}]=\"{value}\" ends in .o or .ko: give the module name alone")]
    Suffix {
        directive: &'static str,
        index: usize,
        value: String,
    },
    #[error("module #{index} has no DEST_MODULE_LOCATION")]
    NoDestLocation { index: usize },
    #[error(
        "DEST_MODULE_LOCATION[{index}]=\"{value}\" does not begin with /kernel, /updates or /extra"
    )]
    BadDestLocation { index: usize, value: String },
    /// Two records build the same file (BUILT_MODULE_LOCATION + BUILT_MODULE_NAME).
    #[error(
        "BUILT_MODULE_NAME \"{name}\" is listed {} times (modules {})",
        .indices.len(),
        list_indices(.indices)
    )]
    DuplicateBuilt { name: String, indices: Vec<usize> },
    /// Two records install under one name: one would overwrite the other.
    #[error(
        "{} modules are installed as \"{name}\" (modules {}; DEST_MODULE_NAME, or \
         BUILT_MODULE_NAME where unset): one would overwrite the other",
        .indices.len(),
        list_indices(.indices)
    )]
    DuplicateDest { name: String, indices: Vec<usize> },
    #[error("{directive}=\"{value}\" is neither yes nor no")]
    NotYesNo {
        directive: &'static str,
        value: String,
    },
    #[error("module arrays reach index {index}: more than {MAX_MODULES} modules")]
    TooManyModules { index: usize },
    #[error("PATCH \"{name}\" climbs out of patches/ with ..")]
    PatchClimbs { name: String },
    #[error("PATCH \"{name}\" is not in the source's patches/ directory")]
    PatchMissing { name: String },
}

fn list_indices(i: &[usize]) -> String {
    let v: Vec<String> = i.iter().map(|i| format!("#{i}")).collect();
    v.join(", ")
}

/// A dkms.conf that cannot be used: the file (as given to the evaluator) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .path.display(), .problem)]
pub struct ConfError {
    pub path: PathBuf,
    pub problem: Problem,
}

/// What is wrong with a dkms.conf, without its path (for where the path is already shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// bash's own message, `line N: syntax error ...` (or that the file cannot be read).
    #[error("{message}")]
    Syntax { message: String },
    #[error("no {directive} directive")]
    Missing { directive: &'static str },
    #[error("evaluation stopped early (does it call exit?){}", output_suffix(.output))]
    Aborted {
        /// What the file printed before it stopped.
        output: String,
    },
    #[error("cannot run bash: {message}")]
    Bash { message: String },
    #[error(
        "sourcing it did not end within {seconds} s (does it wait for something?): stopped, \
         and not sourced again for any kernel"
    )]
    TimedOut {
        /// The kernel it was sourced for when it hung.
        kernel: String,
        seconds: u64,
    },
}

fn output_suffix(o: &str) -> String {
    let o = o.trim();
    if o.is_empty() {
        String::new()
    } else {
        format!(": {o}")
    }
}

/// The directives a plan (or `lint`) reads: unset before each file is sourced, so that none comes
/// from the environment, and the names the evaluator's `_dh_emit_directives` reports.
pub(crate) const DIRECTIVES: &str = "PACKAGE_NAME PACKAGE_VERSION AUTOINSTALL BUILD_DEPENDS \
    BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_KERNEL_MIN BUILD_EXCLUSIVE_KERNEL_MAX \
    BUILD_EXCLUSIVE_ARCH BUILD_EXCLUSIVE_CONFIG BUILT_MODULE_NAME DEST_MODULE_NAME \
    BUILT_MODULE_LOCATION DEST_MODULE_LOCATION PATCH PATCH_MATCH MAKE \
    BUILD_DEPENDS_REBUILD NO_WEAK_MODULES OBSOLETE_BY CLEAN REMAKE_INITRD MODULES_CONF \
    MODULES_CONF_OBSOLETES MODULES_CONF_ALIAS_TYPE MODULES_CONF_OBSOLETE_ONLY";

/// The four arrays that describe the modules of a dkms.conf, one record per index.
const MODULE_ARRAYS: [&str; 4] = [
    "BUILT_MODULE_NAME",
    "BUILT_MODULE_LOCATION",
    "DEST_MODULE_NAME",
    "DEST_MODULE_LOCATION",
];

/// More module records than any real dkms.conf has: an array index beyond this (bash takes
/// `BUILT_MODULE_NAME[4000000000]=x`) is refused rather than walked.
pub(crate) const MAX_MODULES: usize = 1024;

/// Obsolete directives dkms 3.4.3 warns about (`safe_source` under `read_conf_strict`), with
/// what it says instead.
const OBSOLETE: [(&str, &str); 6] = [
    ("REMAKE_INITRD", "dkms 3.x ignores it"),
    ("MODULES_CONF", "dkms 3.x ignores it"),
    ("MODULES_CONF_OBSOLETES", "dkms 3.x ignores it"),
    ("MODULES_CONF_ALIAS_TYPE", "dkms 3.x ignores it"),
    ("MODULES_CONF_OBSOLETE_ONLY", "dkms 3.x ignores it"),
    (
        "OBSOLETE_BY",
        "use BUILD_EXCLUSIVE_KERNEL_MAX instead (dkms 3.4.3 reads it as that when that is unset)",
    ),
];

/// Directives from the emitter's `NAME INDEX VALUE` triples, read for `kernel` as dkms 3.4.3's
/// `read_conf` and `read_conf_strict` read them before a build (see [`DkmsConf::refusals`]).
pub(crate) fn to_conf(fields: &[String], kernel: &str) -> Result<DkmsConf, Problem> {
    let mut vars: BTreeMap<&str, BTreeMap<usize, &str>> = BTreeMap::new();
    for t in fields.chunks_exact(3) {
        // bash gives numbers here; an associative array's keys are not module records.
        let Ok(idx) = t[1].parse() else { continue };
        // CR stripped: dkms 3.2+ drops one trailing CR from every value (`${VAR[i]%$CR}` in
        // safe_source), so a dkms.conf with CRLF line endings reads as its LF twin. 3.0.10 keeps
        // the CR (PACKAGE_NAME "foo\r", refused for naming no directory). Follow 3.4.3.
        let v = t[2].strip_suffix('\r').unwrap_or(&t[2]);
        vars.entry(&t[0]).or_default().insert(idx, v);
    }
    let get = |n: &str, i: usize| -> &str {
        vars.get(n)
            .and_then(|m| m.get(&i))
            .copied()
            .unwrap_or_default()
    };
    let scalar = |n: &str| -> Option<String> {
        Some(get(n, 0))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let list = |n: &str| -> Vec<String> {
        vars.get(n)
            .map(|m| m.values().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    };
    let missing = |directive| Problem::Missing { directive };
    let name = scalar("PACKAGE_NAME").ok_or_else(|| missing("PACKAGE_NAME"))?;
    let version = scalar("PACKAGE_VERSION").ok_or_else(|| missing("PACKAGE_VERSION"))?;
    let words = |n: &str| -> Vec<String> {
        list(n)
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_string)
            .collect()
    };
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();

    // Sparse arrays: dkms 3.4.3 (and 3.2.2) counts the records up to the highest index used in
    // any of the four arrays, so a hole is a record of its own; 3.0.10 counted the elements of
    // the longest array and lost the records past that count. Follow 3.4.3.
    let highest = MODULE_ARRAYS
        .iter()
        .filter_map(|n| vars.get(n).and_then(|m| m.keys().next_back()).copied())
        .max();
    let count = match highest {
        Some(h) if h >= MAX_MODULES => {
            refusals.push(Refusal::TooManyModules { index: h });
            0
        }
        Some(h) => h + 1,
        None => 0,
    };
    let mut built_modules = Vec::with_capacity(count);
    let mut dest_names = Vec::with_capacity(count);
    let mut built_locations = Vec::with_capacity(count);
    let mut dest_locations = Vec::with_capacity(count);
    for i in 0..count {
        // BUILT_MODULE_NAME defaults to PACKAGE_NAME when there is one record (3.4.3); 3.0.10
        // defaulted it when DEST_MODULE_LOCATION had one element. Follow 3.4.3.
        let mut built = get("BUILT_MODULE_NAME", i).to_string();
        if built.is_empty() && count == 1 {
            built = name.clone();
        }
        let dest = get("DEST_MODULE_NAME", i);
        let dest_location = get("DEST_MODULE_LOCATION", i);
        if built.is_empty() {
            refusals.push(Refusal::NoBuiltName { index: i });
        }
        for (directive, value) in [
            ("BUILT_MODULE_NAME", built.as_str()),
            ("DEST_MODULE_NAME", dest),
        ] {
            if value.ends_with(".o") || value.ends_with(".ko") {
                refusals.push(Refusal::Suffix {
                    directive,
                    index: i,
                    value: value.to_string(),
                });
            }
        }
        if dest_location.is_empty() {
            refusals.push(Refusal::NoDestLocation { index: i });
        } else if !["/kernel", "/updates", "/extra"]
            .iter()
            .any(|p| dest_location.starts_with(p))
        {
            refusals.push(Refusal::BadDestLocation {
                index: i,
                value: dest_location.to_string(),
            });
        }
        built_modules.push(built);
        dest_names.push(dest.to_string());
        built_locations.push(get("BUILT_MODULE_LOCATION", i).to_string());
        dest_locations.push(dest_location.to_string());
    }
    if count == 0 && highest.is_none() {
        // 3.4.3 warns ("Zero modules specified") and builds, installing nothing; 3.0.10 refused
        // it ("No 'DEST_MODULE_LOCATION' directive specified"). Follow 3.4.3.
        warnings.push(
            "names no module (BUILT_MODULE_NAME, DEST_MODULE_NAME and their locations are all \
             unset): dkms 3.4.3 builds it and installs nothing"
                .to_string(),
        );
    }
    // dkms 3.4.3 takes yes or no (any case) or nothing in these, and refuses anything else;
    // 3.0.10 took any non-empty value as yes. Follow 3.4.3.
    for directive in ["AUTOINSTALL", "BUILD_DEPENDS_REBUILD", "NO_WEAK_MODULES"] {
        let value = get(directive, 0);
        if !(value.is_empty()
            || value.eq_ignore_ascii_case("yes")
            || value.eq_ignore_ascii_case("no"))
        {
            refusals.push(Refusal::NotYesNo {
                directive,
                value: value.to_string(),
            });
        }
    }
    if vars.contains_key("CLEAN")
        && !["true", "/bin/true", "/usr/bin/true"].contains(&get("CLEAN", 0))
    {
        warnings.push("CLEAN is deprecated: dkms 3.x ignores it".to_string());
    }
    for (directive, instead) in OBSOLETE {
        if vars.contains_key(directive) {
            warnings.push(format!("{directive} is deprecated: {instead}"));
        }
    }
    // The patches dkms applies for this kernel: 3.4.3 walks PATCH by its element count (so a
    // sparse PATCH loses its entries past that count) and keeps those whose PATCH_MATCH is
    // unset or matches the kernel.
    let patch_count = vars.get("PATCH").map_or(0, BTreeMap::len);
    let mut kernel_patches = Vec::new();
    for (&i, &p) in vars.get("PATCH").into_iter().flatten() {
        if i >= patch_count {
            warnings.push(format!(
                "PATCH[{i}] is past the array's {patch_count} elements: dkms never applies it"
            ));
            continue;
        }
        let pattern = get("PATCH_MATCH", i);
        let applies =
            pattern.is_empty() || regex::Regex::new(pattern).is_ok_and(|re| re.is_match(kernel));
        if p.is_empty() || !applies {
            continue;
        }
        if Path::new(p)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            refusals.push(Refusal::PatchClimbs {
                name: p.to_string(),
            });
        } else {
            kernel_patches.push(p.to_string());
        }
    }
    let kernel_max = scalar("BUILD_EXCLUSIVE_KERNEL_MAX").or_else(|| scalar("OBSOLETE_BY"));
    let mut conf = DkmsConf {
        autoinstall_value: scalar("AUTOINSTALL").unwrap_or_default(),
        built_locations,
        dest_locations,
        patches: list("PATCH"),
        kernel_patches,
        make: list("MAKE"),
        name,
        version,
        // dkms 3.4 reads "no" (any case) as unset; 3.0.10 took any non-empty value. Follow 3.4.
        autoinstall: scalar("AUTOINSTALL").is_some_and(|v| !v.eq_ignore_ascii_case("no")),
        build_depends: words("BUILD_DEPENDS"),
        exclusive: Exclusive {
            kernel: scalar("BUILD_EXCLUSIVE_KERNEL"),
            kernel_min: scalar("BUILD_EXCLUSIVE_KERNEL_MIN"),
            kernel_max,
            arch: scalar("BUILD_EXCLUSIVE_ARCH"),
            config: words("BUILD_EXCLUSIVE_CONFIG"),
        },
        built_modules,
        dest_names,
        refusals,
        warnings,
    };
    let duplicates = conf.duplicates();
    conf.refusals.extend(duplicates);
    Ok(conf)
}

impl DkmsConf {
    /// Module records that build the same file (BUILT_MODULE_LOCATION + BUILT_MODULE_NAME) or
    /// install under the same name (DEST_MODULE_NAME, else BUILT_MODULE_NAME), as dkms 3.2+'s
    /// `read_conf_strict` finds them (3.0.10 built and installed them, one over the other).
    /// Shared with `lint`'s duplicate-module-name.
    pub fn duplicates(&self) -> Vec<Refusal> {
        let mut built: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut dest: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, name) in self.built_modules.iter().enumerate() {
            if name.is_empty() {
                continue; // refused on its own
            }
            let mut loc = self.built_locations.get(i).cloned().unwrap_or_default();
            if !loc.is_empty() && !loc.ends_with('/') {
                loc.push('/');
            }
            built.entry(format!("{loc}{name}")).or_default().push(i);
            let d = self
                .dest_names
                .get(i)
                .filter(|d| !d.is_empty())
                .unwrap_or(name);
            dest.entry(d.clone()).or_default().push(i);
        }
        let mut out: Vec<Refusal> = built
            .into_iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(name, indices)| Refusal::DuplicateBuilt { name, indices })
            .collect();
        out.extend(
            dest.into_iter()
                .filter(|(_, v)| v.len() > 1)
                .map(|(name, indices)| Refusal::DuplicateDest { name, indices }),
        );
        out
    }

    /// Refuses the patches for this kernel that are not in the source's `patches/` directory,
    /// as dkms's build does before it runs anything. `conf` is this file's path.
    pub(crate) fn refuse_absent_patches(&mut self, conf: &Path) {
        let dir = conf.parent().unwrap_or(Path::new("/")).join("patches");
        for p in &self.kernel_patches {
            // dkms looks for `patches/$p`: an absolute PATCH is still under patches/.
            if !dir.join(p.trim_start_matches('/')).is_file() {
                self.refusals
                    .push(Refusal::PatchMissing { name: p.clone() });
            }
        }
    }
}
