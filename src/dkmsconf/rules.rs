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
    /// module record as dkms 3.4.3 counts them (see [`module_records`]), PACKAGE_NAME where dkms
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
    #[error(
        "sourcing it for {kernel} ended the shell that read it ({why}): not sourced again for \
         any kernel"
    )]
    EndedShell {
        /// The kernel it was sourced for.
        kernel: String,
        /// How the shell ended (`killed by SIGTERM`).
        why: String,
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

/// The directives that dkms.conf's readers here need (the planner, `lint`, `status`): unset
/// before each file is sourced, as dkms's read_conf unsets them, so that none comes from the
/// environment, and the names the evaluator's `_dh_emit_directives` reports.
pub(crate) const DIRECTIVES: &str = "PACKAGE_NAME PACKAGE_VERSION AUTOINSTALL BUILD_DEPENDS \
    BUILD_EXCLUSIVE_KERNEL BUILD_EXCLUSIVE_KERNEL_MIN BUILD_EXCLUSIVE_KERNEL_MAX \
    BUILD_EXCLUSIVE_ARCH BUILD_EXCLUSIVE_CONFIG BUILT_MODULE_NAME DEST_MODULE_NAME \
    BUILT_MODULE_LOCATION DEST_MODULE_LOCATION PATCH PATCH_MATCH MAKE MAKE_MATCH STRIP \
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

/// How a dkms version reads a dkms.conf's values and module arrays. The planner follows dkms
/// 3.4.3, what Arch ships; `status` follows the installed dkms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// dkms before 3.2.2 (3.0.10, Debian 12's): values as written (a trailing CR too); the
    /// module records are as many as the longest of the four arrays has elements (the records
    /// past that count of a sparse array are lost); BUILT_MODULE_NAME defaults to PACKAGE_NAME
    /// when DEST_MODULE_LOCATION has one element; a dkms.conf that names no module is refused.
    Dense,
    /// dkms 3.2.2 and later: one trailing CR stripped from every value (`${VAR[i]%$CR}` in
    /// safe_source), so a dkms.conf with CRLF line endings reads as its LF twin; the records go
    /// up to the highest index used in any of the four arrays (a hole is a record of its own);
    /// BUILT_MODULE_NAME defaults to PACKAGE_NAME when there is one record; a dkms.conf that
    /// names no module is built, installing nothing (3.4.3 warns).
    Sparse,
}

/// The raw directives of one dkms.conf for one kernel, from the evaluator's `NAME INDEX VALUE`
/// triples (`_dh_emit_directives`): each name's values by index (a scalar is index 0).
#[derive(Debug, Clone, Default)]
pub struct Directives<'a> {
    vars: BTreeMap<&'a str, BTreeMap<usize, &'a str>>,
}

impl<'a> Directives<'a> {
    /// Reads the triples of `fields` as `dialect` reads the values.
    pub fn read(fields: &'a [String], dialect: Dialect) -> Directives<'a> {
        let mut vars: BTreeMap<&str, BTreeMap<usize, &str>> = BTreeMap::new();
        for t in fields.chunks_exact(3) {
            // bash gives numbers here; an associative array's keys are not module records.
            let Ok(idx) = t[1].parse() else { continue };
            let v = match dialect {
                Dialect::Sparse => t[2].strip_suffix('\r').unwrap_or(&t[2]),
                Dialect::Dense => &t[2],
            };
            vars.entry(&t[0]).or_default().insert(idx, v);
        }
        Directives { vars }
    }

    /// Whether `name` is set (to anything, at any index).
    pub fn has(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// `name[index]`, empty when unset.
    pub fn get(&self, name: &str, index: usize) -> &'a str {
        self.vars
            .get(name)
            .and_then(|m| m.get(&index))
            .copied()
            .unwrap_or_default()
    }

    /// `name` (its element 0), when set and not empty.
    pub fn scalar(&self, name: &str) -> Option<String> {
        Some(self.get(name, 0))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// Every element of `name`, in index order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.vars
            .get(name)
            .map(|m| m.values().map(|v| v.to_string()).collect())
            .unwrap_or_default()
    }

    /// Every element of `name`, split into words.
    pub fn words(&self, name: &str) -> Vec<String> {
        self.list(name)
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_string)
            .collect()
    }

    /// The module-wide BUILD_EXCLUSIVE_* directives (each one's element 0; OBSOLETE_BY stands
    /// for an unset BUILD_EXCLUSIVE_KERNEL_MAX), or with `Some(i)` those of module record `i`
    /// alone (dkms 3.3+'s per-module directives, `BUILD_EXCLUSIVE_KERNEL[i]`).
    pub fn exclusive(&self, module: Option<usize>) -> Exclusive {
        let at = |name: &str| {
            Some(self.get(name, module.unwrap_or(0)))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let kernel_max = match module {
            None => at("BUILD_EXCLUSIVE_KERNEL_MAX").or_else(|| self.scalar("OBSOLETE_BY")),
            Some(_) => at("BUILD_EXCLUSIVE_KERNEL_MAX"),
        };
        Exclusive {
            kernel: at("BUILD_EXCLUSIVE_KERNEL"),
            kernel_min: at("BUILD_EXCLUSIVE_KERNEL_MIN"),
            kernel_max,
            arch: at("BUILD_EXCLUSIVE_ARCH"),
            config: at("BUILD_EXCLUSIVE_CONFIG")
                .map(|c| c.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
        }
    }
}

/// One module record of a dkms.conf: index `i` of the four module arrays, with dkms's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleRecord {
    /// BUILT_MODULE_NAME (PACKAGE_NAME where dkms defaults to it; empty in a hole).
    pub built: String,
    /// DEST_MODULE_NAME as written (empty when unset).
    pub dest: String,
    pub built_location: String,
    pub dest_location: String,
}

impl ModuleRecord {
    /// The name the module is installed as: DEST_MODULE_NAME, else BUILT_MODULE_NAME.
    pub fn installed_name(&self) -> &str {
        match self.dest.is_empty() {
            true => &self.built,
            false => &self.dest,
        }
    }
}

/// A dkms.conf's module records as a dialect counts them, and what read_conf refuses in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub records: Vec<ModuleRecord>,
    pub refusals: Vec<Refusal>,
    /// None of the four arrays is set: the dkms.conf names no module at all.
    pub none: bool,
}

/// The module records of `d` (whose PACKAGE_NAME is `name`), as `dialect` counts them, with
/// the refusals of each: a record without BUILT_MODULE_NAME, a name ending in .o or .ko, a
/// DEST_MODULE_LOCATION missing or outside /kernel, /updates and /extra; and (sparse) an index
/// beyond [`MAX_MODULES`].
pub fn module_records(d: &Directives, name: &str, dialect: Dialect) -> Records {
    let mut refusals = Vec::new();
    let highest = MODULE_ARRAYS
        .iter()
        .filter_map(|n| d.vars.get(n).and_then(|m| m.keys().next_back()).copied())
        .max();
    let count = match dialect {
        Dialect::Sparse => match highest {
            Some(h) if h >= MAX_MODULES => {
                refusals.push(Refusal::TooManyModules { index: h });
                0
            }
            Some(h) => h + 1,
            None => 0,
        },
        Dialect::Dense => MODULE_ARRAYS
            .iter()
            .map(|n| d.vars.get(n).map_or(0, BTreeMap::len))
            .max()
            .unwrap_or(0),
    };
    let single = match dialect {
        Dialect::Sparse => count == 1,
        Dialect::Dense => d.vars.get("DEST_MODULE_LOCATION").map_or(0, BTreeMap::len) == 1,
    };
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let mut built = d.get("BUILT_MODULE_NAME", i).to_string();
        if built.is_empty() && single {
            built = name.to_string();
        }
        let dest = d.get("DEST_MODULE_NAME", i);
        let dest_location = d.get("DEST_MODULE_LOCATION", i);
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
        records.push(ModuleRecord {
            built,
            dest: dest.to_string(),
            built_location: d.get("BUILT_MODULE_LOCATION", i).to_string(),
            dest_location: dest_location.to_string(),
        });
    }
    Records {
        records,
        refusals,
        none: highest.is_none(),
    }
}

/// Whether dkms of `dialect` reads the dkms.conf whose directives are `d` without refusing it
/// (what `status` needs before dkms 3.1.8, whose listing ends at a bad dkms.conf): its
/// PACKAGE_NAME and PACKAGE_VERSION set, at least one module, and no module record refused.
pub fn reads(d: &Directives, dialect: Dialect) -> bool {
    let (Some(name), Some(_)) = (d.scalar("PACKAGE_NAME"), d.scalar("PACKAGE_VERSION")) else {
        return false;
    };
    let r = module_records(d, &name, dialect);
    !r.records.is_empty() && r.refusals.is_empty()
}

/// Directives from the emitter's `NAME INDEX VALUE` triples, read for `kernel` as dkms 3.4.3's
/// `read_conf` and `read_conf_strict` read them before a build (see [`DkmsConf::refusals`]).
pub(crate) fn to_conf(fields: &[String], kernel: &str) -> Result<DkmsConf, Problem> {
    let d = Directives::read(fields, Dialect::Sparse);
    let (get, scalar) = (|n: &str, i| d.get(n, i), |n: &str| d.scalar(n));
    let missing = |directive| Problem::Missing { directive };
    let name = scalar("PACKAGE_NAME").ok_or_else(|| missing("PACKAGE_NAME"))?;
    let version = scalar("PACKAGE_VERSION").ok_or_else(|| missing("PACKAGE_VERSION"))?;
    let Records {
        records,
        mut refusals,
        none,
    } = module_records(&d, &name, Dialect::Sparse);
    let mut warnings = Vec::new();
    if none {
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
    if d.has("CLEAN") && !["true", "/bin/true", "/usr/bin/true"].contains(&get("CLEAN", 0)) {
        warnings.push("CLEAN is deprecated: dkms 3.x ignores it".to_string());
    }
    for (directive, instead) in OBSOLETE {
        if d.has(directive) {
            warnings.push(format!("{directive} is deprecated: {instead}"));
        }
    }
    // The patches dkms applies for this kernel: 3.4.3 walks PATCH by its element count (so a
    // sparse PATCH loses its entries past that count) and keeps those whose PATCH_MATCH is
    // unset or matches the kernel.
    let patch_count = d.vars.get("PATCH").map_or(0, BTreeMap::len);
    let mut kernel_patches = Vec::new();
    for (&i, &p) in d.vars.get("PATCH").into_iter().flatten() {
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
    let mut conf = DkmsConf {
        autoinstall_value: scalar("AUTOINSTALL").unwrap_or_default(),
        built_locations: records.iter().map(|r| r.built_location.clone()).collect(),
        dest_locations: records.iter().map(|r| r.dest_location.clone()).collect(),
        patches: d.list("PATCH"),
        kernel_patches,
        make: d.list("MAKE"),
        name,
        version,
        // dkms 3.4 reads "no" (any case) as unset; 3.0.10 took any non-empty value. Follow 3.4.
        autoinstall: scalar("AUTOINSTALL").is_some_and(|v| !v.eq_ignore_ascii_case("no")),
        build_depends: d.words("BUILD_DEPENDS"),
        exclusive: d.exclusive(None),
        built_modules: records.iter().map(|r| r.built.clone()).collect(),
        dest_names: records.iter().map(|r| r.dest.clone()).collect(),
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
