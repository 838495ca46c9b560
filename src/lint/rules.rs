//! The lint rules: pure functions from what a package says ([`PackageFacts`]) and what its
//! dkms.conf files evaluate to, to findings. Nothing here reads a file or runs a program, so each
//! rule is tested on facts written in a line.
//!
//! The rules come from the ArchWiki's DKMS package guidelines and from what breaks hooks: errors
//! are packages the hooks cannot handle right, warnings are packages that work against them.

use super::package::PackageFacts;
use crate::dkmsconf::rules::{ConfError, DkmsConf, Problem, Refusal};
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// How bad a finding is, namcap's way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn letter(self) -> char {
        match self {
            Severity::Error => 'E',
            Severity::Warning => 'W',
        }
    }
}

/// Every rule, in the order findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    DkmsNotInDepends,
    DkmsConfMissing,
    DkmsConfInvalid,
    DkmsConfMissingDirective,
    DkmsConfWrongDirectory,
    BuiltModuleShipped,
    ModulesDirShipped,
    DuplicateModuleName,
    PatchNotInPatches,
    NameWithoutDkms,
    HeadersInDepends,
    VersionDiffersFromPkgver,
    InstallRunsModuleTools,
    AutoinstallNotYes,
    MakeUsesUname,
    NoConflictsWithBase,
}

impl Rule {
    pub const ALL: [Rule; 16] = [
        Rule::DkmsNotInDepends,
        Rule::DkmsConfMissing,
        Rule::DkmsConfInvalid,
        Rule::DkmsConfMissingDirective,
        Rule::DkmsConfWrongDirectory,
        Rule::BuiltModuleShipped,
        Rule::ModulesDirShipped,
        Rule::DuplicateModuleName,
        Rule::PatchNotInPatches,
        Rule::NameWithoutDkms,
        Rule::HeadersInDepends,
        Rule::VersionDiffersFromPkgver,
        Rule::InstallRunsModuleTools,
        Rule::AutoinstallNotYes,
        Rule::MakeUsesUname,
        Rule::NoConflictsWithBase,
    ];

    /// The name printed in parentheses after each finding.
    pub fn name(self) -> &'static str {
        match self {
            Rule::DkmsNotInDepends => "dkms-not-in-depends",
            Rule::DkmsConfMissing => "dkms-conf-missing",
            Rule::DkmsConfInvalid => "dkms-conf-invalid",
            Rule::DkmsConfMissingDirective => "dkms-conf-missing-directive",
            Rule::DkmsConfWrongDirectory => "dkms-conf-wrong-directory",
            Rule::BuiltModuleShipped => "built-module-shipped",
            Rule::ModulesDirShipped => "modules-dir-shipped",
            Rule::DuplicateModuleName => "duplicate-module-name",
            Rule::PatchNotInPatches => "patch-not-in-patches",
            Rule::NameWithoutDkms => "name-without-dkms-suffix",
            Rule::HeadersInDepends => "headers-in-depends",
            Rule::VersionDiffersFromPkgver => "version-differs-from-pkgver",
            Rule::InstallRunsModuleTools => "install-runs-module-tools",
            Rule::AutoinstallNotYes => "autoinstall-not-yes",
            Rule::MakeUsesUname => "make-uses-uname",
            Rule::NoConflictsWithBase => "no-conflicts-with-base",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::DkmsNotInDepends
            | Rule::DkmsConfMissing
            | Rule::DkmsConfInvalid
            | Rule::DkmsConfMissingDirective
            | Rule::DkmsConfWrongDirectory
            | Rule::BuiltModuleShipped
            | Rule::ModulesDirShipped
            | Rule::DuplicateModuleName
            | Rule::PatchNotInPatches => Severity::Error,
            Rule::NameWithoutDkms
            | Rule::HeadersInDepends
            | Rule::VersionDiffersFromPkgver
            | Rule::InstallRunsModuleTools
            | Rule::AutoinstallNotYes
            | Rule::MakeUsesUname
            | Rule::NoConflictsWithBase => Severity::Warning,
        }
    }
}

/// One thing wrong with a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub message: String,
}

impl Finding {
    fn new(rule: Rule, message: impl Into<String>) -> Finding {
        Finding {
            rule,
            message: message.into(),
        }
    }

    pub fn severity(&self) -> Severity {
        self.rule.severity()
    }
}

/// One `usr/src/*/dkms.conf` of the package and what it evaluated to.
#[derive(Debug, Clone)]
pub struct ConfFacts {
    /// The path in the package: `usr/src/X/dkms.conf`.
    pub path: String,
    pub result: Result<DkmsConf, ConfError>,
}

impl ConfFacts {
    /// `usr/src/X`: the directory dkms.conf sits in.
    fn dir(&self) -> &str {
        self.path.strip_suffix("/dkms.conf").unwrap_or(&self.path)
    }
}

/// What the checks need besides the package.
#[derive(Debug, Clone)]
pub struct Context {
    /// The kernel dkms.conf was evaluated for.
    pub kernel: String,
    /// The release of the kernel this machine runs (what `uname -r` printed while dkms.conf was
    /// evaluated); empty when unknown.
    pub running_release: String,
}

/// Runs every rule; findings come in rule order, then in the order they were found.
pub fn check(pkg: &PackageFacts, confs: &[ConfFacts], cx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    depends(pkg, &mut out);
    if confs.is_empty() {
        out.push(Finding::new(
            Rule::DkmsConfMissing,
            "no usr/src/*/dkms.conf in the package: dkms and its hooks will never see a module",
        ));
    }
    for c in confs {
        conf(pkg, c, cx, &mut out);
    }
    shipped_modules(pkg, &mut out);
    name(pkg, confs, &mut out);
    install_script(pkg, &mut out);
    out.sort_by_key(|f| f.rule);
    out
}

fn depends(pkg: &PackageFacts, out: &mut Vec<Finding>) {
    if !pkg.depends.iter().any(|d| d == "dkms") {
        out.push(Finding::new(
            Rule::DkmsNotInDepends,
            "dkms is not in depends: without it nothing builds the module, and no hook \
             rebuilds it for a new kernel",
        ));
    }
    for d in &pkg.depends {
        if is_headers_package(d) {
            out.push(Finding::new(
                Rule::HeadersInDepends,
                format!(
                    "{d} in depends: dkms lists kernel headers as optional, and each kernel \
                     has its own; a -dkms package should not tie itself to one"
                ),
            ));
        }
    }
}

/// `linux-headers`, `linux-lts-headers`, `linux-zen-headers`...; not `linux-api-headers`
/// (glibc's userspace headers, nothing to do with building modules).
fn is_headers_package(name: &str) -> bool {
    name.starts_with("linux") && name.ends_with("-headers") && name != "linux-api-headers"
}

fn conf(pkg: &PackageFacts, c: &ConfFacts, cx: &Context, out: &mut Vec<Finding>) {
    let conf = match &c.result {
        Ok(conf) => conf,
        Err(
            e @ ConfError {
                problem: Problem::Missing { .. },
                ..
            },
        ) => {
            out.push(Finding::new(
                Rule::DkmsConfMissingDirective,
                format!("{}: {}: dkms refuses it", c.path, e.problem),
            ));
            return;
        }
        Err(e) => {
            out.push(Finding::new(
                Rule::DkmsConfInvalid,
                format!("{}: does not evaluate: {}", c.path, e.problem),
            ));
            return;
        }
    };
    let want = format!("usr/src/{}-{}", conf.name, conf.version);
    if c.dir() != want {
        out.push(Finding::new(
            Rule::DkmsConfWrongDirectory,
            format!(
                "{}: PACKAGE_NAME=\"{}\" PACKAGE_VERSION=\"{}\", so dkms looks for it in {want}/",
                c.path, conf.name, conf.version
            ),
        ));
    }
    if conf.version != pkg.pkgver {
        out.push(Finding::new(
            Rule::VersionDiffersFromPkgver,
            format!(
                "{}: PACKAGE_VERSION \"{}\" differs from pkgver \"{}\"",
                c.path, conf.version, pkg.pkgver
            ),
        ));
    }
    duplicates(c, conf, out);
    for p in &conf.patches {
        let want = format!("{}/patches/{p}", c.dir());
        if !pkg.has_file(&want) {
            out.push(Finding::new(
                Rule::PatchNotInPatches,
                format!(
                    "{}: PATCH \"{p}\" is not in the package at {want}: dkms fails to build",
                    c.path
                ),
            ));
        }
    }
    autoinstall(c, conf, out);
    make(c, conf, cx, out);
}

/// dkms 3.4 refuses a dkms.conf that names the same built module (location + name) or the same
/// destination name twice (`read_conf_strict`): found by the planner's own rule,
/// [`DkmsConf::duplicates`].
fn duplicates(c: &ConfFacts, conf: &DkmsConf, out: &mut Vec<Finding>) {
    let found = conf.duplicates();
    let built_dups: Vec<&Vec<usize>> = found
        .iter()
        .filter_map(|r| match r {
            Refusal::DuplicateBuilt { indices, .. } => Some(indices),
            _ => None,
        })
        .collect();
    for r in &found {
        match r {
            Refusal::DuplicateBuilt { name, indices } => out.push(Finding::new(
                Rule::DuplicateModuleName,
                format!(
                    "{}: BUILT_MODULE_NAME \"{name}\" is listed {} times: dkms 3.4 refuses the dkms.conf",
                    c.path,
                    indices.len()
                ),
            )),
            Refusal::DuplicateDest { name, indices } => {
                // The same module listed twice is said once, above.
                if built_dups.iter().any(|b| indices.iter().all(|i| b.contains(i))) {
                    continue;
                }
                out.push(Finding::new(
                    Rule::DuplicateModuleName,
                    format!(
                        "{}: {} modules are installed as \"{name}\" (DEST_MODULE_NAME, or BUILT_MODULE_NAME \
                         where unset): dkms 3.4 refuses the dkms.conf, older dkms installs one over the \
                         other",
                        c.path,
                        indices.len()
                    ),
                ));
            }
            _ => {}
        }
    }
}

fn autoinstall(c: &ConfFacts, conf: &DkmsConf, out: &mut Vec<Finding>) {
    let v = conf.autoinstall_value.as_str();
    let why = if v.is_empty() {
        "AUTOINSTALL is not set".to_string()
    } else if v.eq_ignore_ascii_case("yes") {
        return;
    } else if v.eq_ignore_ascii_case("no") {
        "AUTOINSTALL=\"no\"".to_string()
    } else {
        format!("AUTOINSTALL=\"{v}\" (dkms 3.4 accepts only yes or no and refuses the dkms.conf)")
    };
    out.push(Finding::new(
        Rule::AutoinstallNotYes,
        format!(
            "{}: {why}: the module is not rebuilt when a new kernel is installed",
            c.path
        ),
    ));
}

fn make(c: &ConfFacts, conf: &DkmsConf, cx: &Context, out: &mut Vec<Finding>) {
    static UNAME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"uname\s+(-r|--kernel-release)").unwrap());
    for (i, m) in conf.make.iter().enumerate() {
        let expanded_running = !cx.running_release.is_empty()
            && cx.running_release != cx.kernel
            && m.contains(&cx.running_release);
        let how = if UNAME.is_match(m) {
            "calls uname -r"
        } else if expanded_running {
            "holds the running kernel's release (uname -r, expanded when dkms.conf is read)"
        } else {
            continue;
        };
        out.push(Finding::new(
            Rule::MakeUsesUname,
            format!(
                "{}: MAKE[{i}] {how}: it builds for the running kernel, not for $kernelver (dkms \
                 builds for every installed kernel)",
                c.path
            ),
        ));
    }
}

/// Built modules anywhere, and anything under `usr/lib/modules/`, belong to the kernels' build,
/// not to the package: said once per top-most path under usr/lib/modules/.
fn shipped_modules(pkg: &PackageFacts, out: &mut Vec<Finding>) {
    for f in pkg
        .files
        .iter()
        .filter(|f| !f.is_dir && is_module_file(&f.path))
    {
        out.push(Finding::new(
            Rule::BuiltModuleShipped,
            format!(
                "{} is a built kernel module: ship the sources, dkms builds them for each kernel",
                f.path
            ),
        ));
    }
    // Grouped by the first directory below usr/lib/modules/ (a kernel release, usually).
    let mut tops: BTreeMap<String, usize> = BTreeMap::new();
    for f in &pkg.files {
        let Some(rest) = f.path.strip_prefix("usr/lib/modules/") else {
            continue;
        };
        let top = rest.split('/').next().unwrap_or(rest);
        *tops.entry(format!("usr/lib/modules/{top}")).or_default() += usize::from(!f.is_dir);
    }
    for (t, n) in tops {
        out.push(Finding::new(
            Rule::ModulesDirShipped,
            format!(
                "{t} ({n} file{}) is under usr/lib/modules/, which belongs to the kernel \
                 packages and to what dkms installs",
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
}

/// `foo.ko`, `foo.ko.zst`, `foo.ko.xz`, `foo.ko.gz`.
fn is_module_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".ko") || name.contains(".ko.")
}

/// The VCS suffixes of the ArchWiki's VCS package guidelines: `foo-dkms-git` is still foo's -dkms.
const VCS_SUFFIXES: &[&str] = &["-git", "-svn", "-hg", "-bzr", "-darcs", "-cvs", "-fossil"];

/// `foo` for `foo-dkms` and `foo-dkms-git`; `None` when the name has no -dkms suffix.
fn base_name(name: &str) -> Option<&str> {
    let trimmed = VCS_SUFFIXES
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    trimmed.strip_suffix("-dkms").filter(|b| !b.is_empty())
}

/// The prebuilt package may go by the -dkms package's base name or by the module's own
/// PACKAGE_NAME (Debian's tp-smapi-dkms ships PACKAGE_NAME=tp_smapi, Arch's prebuilt is
/// tp_smapi): a conflict with either is enough.
fn name(pkg: &PackageFacts, confs: &[ConfFacts], out: &mut Vec<Finding>) {
    let Some(base) = base_name(&pkg.name) else {
        out.push(Finding::new(
            Rule::NameWithoutDkms,
            format!(
                "package name {} does not end in -dkms: DKMS packages are named by appending \
                 -dkms to the original package name",
                pkg.name
            ),
        ));
        return;
    };
    let mut names = vec![base.to_string()];
    for c in confs {
        if let Ok(conf) = &c.result {
            if !names.contains(&conf.name) {
                names.push(conf.name.clone());
            }
        }
    }
    if names.iter().any(|n| pkg.conflicts.contains(n)) {
        return;
    }
    let which = match &names[..] {
        [one] => format!("{one} is not in conflicts"),
        [first, rest @ ..] => format!(
            "neither {first} nor {} (its PACKAGE_NAME) is in conflicts",
            rest.join(", ")
        ),
        [] => unreachable!("the base name is always there"),
    };
    out.push(Finding::new(
        Rule::NoConflictsWithBase,
        format!(
            "{which}: installed together with a prebuilt {base}, two copies of the module compete"
        ),
    ));
}

/// What an .INSTALL must not run, and why.
fn install_script(pkg: &PackageFacts, out: &mut Vec<Finding>) {
    static CALL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?:^|[\s;&|(`{!])(?:/usr)?(?:/s?bin/)?(dkms\s+(?:add|build|install|uninstall|remove|unbuild|autoinstall)|depmod|modprobe|insmod|rmmod)\b",
        )
        .unwrap()
    });
    let Some(script) = &pkg.install else {
        return;
    };
    for (n, line) in script.lines().enumerate() {
        let code = shell_code(line);
        for m in CALL.captures_iter(&code) {
            let what = m[1].split_whitespace().collect::<Vec<_>>().join(" ");
            let why = if what.starts_with("dkms") {
                "the dkms hooks build, install and remove modules"
            } else if what == "depmod" {
                "the hooks run depmod"
            } else {
                "loading and unloading modules is left to the user"
            };
            out.push(Finding::new(
                Rule::InstallRunsModuleTools,
                format!(".INSTALL line {} runs {what}: {why}", n + 1),
            ));
        }
    }
}

/// A shell line without its comment and without the text inside quotes, so that
/// `echo "then run modprobe foo"` is not taken for a call.
fn shell_code(line: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for ch in line.chars() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            None if ch == '\'' || ch == '"' => {
                quote = Some(ch);
                out.push(' ');
            }
            None if ch == '#' && (prev.is_whitespace() || prev == ';') => break,
            None => out.push(ch),
        }
        prev = ch;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::package::DataPath;

    fn good_pkg() -> PackageFacts {
        PackageFacts {
            name: "foo-dkms".into(),
            pkgver: "1.0".into(),
            depends: vec!["dkms".into()],
            conflicts: vec!["foo".into()],
            install: None,
            files: vec![file("usr/src/foo-1.0/dkms.conf")],
        }
    }

    fn file(p: &str) -> DataPath {
        DataPath {
            path: p.into(),
            is_dir: false,
        }
    }

    fn good_conf() -> ConfFacts {
        ConfFacts {
            path: "usr/src/foo-1.0/dkms.conf".into(),
            result: Ok(DkmsConf {
                name: "foo".into(),
                version: "1.0".into(),
                autoinstall: true,
                autoinstall_value: "yes".into(),
                built_modules: vec!["foo".into()],
                dest_names: vec![String::new()],
                built_locations: vec![String::new()],
                ..Default::default()
            }),
        }
    }

    fn cx() -> Context {
        Context {
            kernel: "6.12.0-arch1-1".into(),
            running_release: "6.1.0-9-amd64".into(),
        }
    }

    fn rules(pkg: &PackageFacts, conf: &ConfFacts) -> Vec<&'static str> {
        check(pkg, std::slice::from_ref(conf), &cx())
            .iter()
            .map(|f| f.rule.name())
            .collect()
    }

    fn with_conf(f: impl FnOnce(&mut DkmsConf)) -> ConfFacts {
        let mut c = good_conf();
        f(c.result.as_mut().unwrap());
        c
    }

    #[test]
    fn the_good_package_is_clean() {
        assert_eq!(rules(&good_pkg(), &good_conf()), Vec::<&str>::new());
    }

    #[test]
    fn rule_names_are_unique_and_errors_come_first() {
        let mut names: Vec<_> = Rule::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        let sev: Vec<_> = Rule::ALL.iter().map(|r| r.severity()).collect();
        let mut sorted = sev.clone();
        sorted.sort();
        assert_eq!(sev, sorted);
    }

    #[test]
    fn headers_packages_but_not_the_api_headers() {
        assert!(is_headers_package("linux-headers"));
        assert!(is_headers_package("linux-zen-headers"));
        assert!(is_headers_package("linux-lts-headers"));
        assert!(!is_headers_package("linux-api-headers"));
        assert!(!is_headers_package("linux-firmware"));
    }

    #[test]
    fn base_names_of_dkms_and_vcs_packages() {
        assert_eq!(base_name("foo-dkms"), Some("foo"));
        assert_eq!(base_name("hid-xpadneo-dkms-git"), Some("hid-xpadneo"));
        assert_eq!(base_name("foo"), None);
        assert_eq!(base_name("-dkms"), None);
        assert_eq!(base_name("foo-dkms-bin"), None);
    }

    #[test]
    fn module_files_by_name() {
        assert!(is_module_file("usr/lib/modules/6.1/extra/foo.ko"));
        assert!(is_module_file("usr/src/foo-1.0/foo.ko.zst"));
        assert!(!is_module_file("usr/src/foo-1.0/foo.kobj.c"));
        assert!(!is_module_file("usr/src/foo-1.0/foo.c"));
    }

    #[test]
    fn shell_code_drops_quotes_and_comments() {
        assert_eq!(
            shell_code("echo \"run modprobe x\" # or depmod").trim(),
            "echo"
        );
        assert_eq!(shell_code("dkms install 'foo/1.0'").trim(), "dkms install");
        assert_eq!(shell_code("x=a#b").trim(), "x=a#b");
    }

    #[test]
    fn install_calls_but_not_messages() {
        let mut pkg = good_pkg();
        pkg.install = Some(
            "post_install() {\n  echo \"load it with: modprobe foo\"\n  # depmod -a\n  \
             dkms install foo/1.0 && /usr/bin/depmod -a\n  [ -x x ] || modprobe foo\n}\n\
             pre_remove() { dkms status; dkms remove foo/1.0 --all; }\n"
                .into(),
        );
        let found = check(&pkg, &[good_conf()], &cx());
        let msgs: Vec<_> = found.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                ".INSTALL line 4 runs dkms install: the dkms hooks build, install and remove modules",
                ".INSTALL line 4 runs depmod: the hooks run depmod",
                ".INSTALL line 5 runs modprobe: loading and unloading modules is left to the user",
                ".INSTALL line 7 runs dkms remove: the dkms hooks build, install and remove modules",
            ]
        );
    }

    #[test]
    fn each_conf_rule_fires_alone() {
        let pkg = good_pkg();
        let c = with_conf(|c| c.version = "1.1".into());
        assert_eq!(
            rules(&pkg, &c),
            ["dkms-conf-wrong-directory", "version-differs-from-pkgver"]
        );
        let c = with_conf(|c| {
            c.built_modules = vec!["a".into(), "b".into()];
            c.dest_names = vec![String::new(), "a".into()];
            c.built_locations = vec![String::new(), String::new()];
        });
        assert_eq!(rules(&pkg, &c), ["duplicate-module-name"]);
        let c = with_conf(|c| {
            c.built_modules = vec!["a".into(), "a".into()];
            c.dest_names = vec![String::new(), String::new()];
            c.built_locations = vec!["x".into(), "x/".into()];
        });
        let f = check(&pkg, &[c], &cx());
        assert_eq!(f.len(), 1, "one duplicate, said once: {f:?}");
        // The same name in two directories, installed under two names, is fine.
        let c = with_conf(|c| {
            c.built_modules = vec!["a".into(), "a".into()];
            c.dest_names = vec!["a1".into(), "a2".into()];
            c.built_locations = vec!["x".into(), "y".into()];
        });
        assert_eq!(rules(&pkg, &c), Vec::<&str>::new());
        let c = with_conf(|c| c.patches = vec!["fix.patch".into()]);
        assert_eq!(rules(&pkg, &c), ["patch-not-in-patches"]);
        let mut with_patch = good_pkg();
        with_patch
            .files
            .push(file("usr/src/foo-1.0/patches/fix.patch"));
        assert_eq!(rules(&with_patch, &c), Vec::<&str>::new());
        for v in ["", "no", "y"] {
            let c = with_conf(|c| c.autoinstall_value = v.into());
            assert_eq!(rules(&pkg, &c), ["autoinstall-not-yes"], "{v:?}");
        }
        let c = with_conf(|c| c.autoinstall_value = "YES".into());
        assert_eq!(rules(&pkg, &c), Vec::<&str>::new());
        for m in [
            "make -C /lib/modules/$(uname -r)/build M=$PWD",
            "make -C /lib/modules/6.1.0-9-amd64/build M=$PWD",
        ] {
            let c = with_conf(|c| c.make = vec![m.into()]);
            assert_eq!(rules(&pkg, &c), ["make-uses-uname"], "{m}");
        }
        let c = with_conf(|c| c.make = vec!["make KVER=6.12.0-arch1-1".into()]);
        assert_eq!(rules(&pkg, &c), Vec::<&str>::new());
    }

    #[test]
    fn conflicts_with_the_base_name_or_the_package_name() {
        let mut pkg = good_pkg();
        pkg.name = "tp-smapi-dkms".into();
        pkg.conflicts.clear();
        let c = with_conf(|c| c.name = "tp_smapi".into());
        let f = check(&pkg, std::slice::from_ref(&c), &cx());
        let f: Vec<_> = f
            .iter()
            .filter(|f| f.rule == Rule::NoConflictsWithBase)
            .collect();
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .starts_with("neither tp-smapi nor tp_smapi (its PACKAGE_NAME) is in conflicts"),
            "{f:?}"
        );
        for name in ["tp-smapi", "tp_smapi"] {
            pkg.conflicts = vec![name.into()];
            let f = check(&pkg, std::slice::from_ref(&c), &cx());
            assert!(
                f.iter().all(|f| f.rule != Rule::NoConflictsWithBase),
                "{name}: {f:?}"
            );
        }
    }

    #[test]
    fn modules_dir_is_said_once_per_top_path() {
        let mut pkg = good_pkg();
        for p in [
            "usr/lib/modules",
            "usr/lib/modules/6.1.0/extramodules",
            "usr/lib/modules/6.1.0",
        ] {
            pkg.files.push(DataPath {
                path: p.into(),
                is_dir: true,
            });
        }
        pkg.files.sort();
        pkg.files
            .push(file("usr/lib/modules/6.1.0/extramodules/foo.ko.zst"));
        let f = check(&pkg, &[good_conf()], &cx());
        let names: Vec<_> = f.iter().map(|f| f.rule.name()).collect();
        assert_eq!(names, ["built-module-shipped", "modules-dir-shipped"]);
        assert!(
            f[1].message.starts_with("usr/lib/modules/6.1.0 (1 file)"),
            "{f:?}"
        );
    }
}
