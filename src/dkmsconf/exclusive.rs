//! BUILD_EXCLUSIVE_*: the directives that keep a module off a kernel or an architecture, and the
//! one home of the rule that decides it, for the planner (a whole module version) and for
//! `status` (each module record, dkms 3.3+) alike.
//!
//! The kernel bounds (`_MIN`, `_MAX`) are compared in dkms's own order: its `VER` pads every run
//! of digits to three and compares the strings ([`ver`]). That is not `sort -V`'s order (the
//! version order of [`crate::system::version`]): `6.1.0-1000` is older than `6.1.0-999` to dkms.

use crate::system::kernel::KernelConfig;
use std::cmp::Ordering;

/// BUILD_EXCLUSIVE_* directives, unset ones as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusive {
    pub kernel: Option<String>,
    pub kernel_min: Option<String>,
    pub kernel_max: Option<String>,
    pub arch: Option<String>,
    /// `CONFIG_A !CONFIG_B`, split on whitespace.
    pub config: Vec<String>,
}

impl Exclusive {
    /// Whether these directives keep a module off kernel `release` (of configuration
    /// `config`) on `arch`: `Ok(Some(reason))` when they do, `Err` when a directive cannot be
    /// understood (a pattern that is not a regular expression).
    pub fn excludes(
        &self,
        release: &str,
        arch: &str,
        config: &KernelConfig,
    ) -> Result<Option<String>, String> {
        let k = release;
        let re = |what: &str, pat: &str| {
            regex::Regex::new(pat)
                .map_err(|e| format!("{what}=\"{pat}\" is not a valid regular expression: {e}"))
        };
        if let Some(pat) = &self.kernel {
            if !re("BUILD_EXCLUSIVE_KERNEL", pat)?.is_match(k) {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_KERNEL=\"{pat}\" does not match {k}"
                )));
            }
        }
        if let Some(min) = &self.kernel_min {
            if ver_cmp(k, min).is_lt() {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_KERNEL_MIN=\"{min}\": {k} is older"
                )));
            }
        }
        if let Some(max) = &self.kernel_max {
            if ver_cmp(k, max).is_gt() {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_KERNEL_MAX=\"{max}\": {k} is newer"
                )));
            }
        }
        if let Some(pat) = &self.arch {
            if !re("BUILD_EXCLUSIVE_ARCH", pat)?.is_match(arch) {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_ARCH=\"{pat}\" does not match {arch}"
                )));
            }
        }
        // dkms checks the options only when it finds the kernel's configuration.
        if config.known {
            for opt in &self.config {
                let (negated, name) = match opt.strip_prefix('!') {
                    Some(n) => (true, n),
                    None => (false, opt.as_str()),
                };
                if config.enabled(name) == negated {
                    let state = if negated { "enabled" } else { "not enabled" };
                    return Ok(Some(format!(
                        "BUILD_EXCLUSIVE_CONFIG: {name} is {state} in {k}"
                    )));
                }
            }
        }
        Ok(None)
    }
}

/// dkms's `VER`: every run of digits padded with zeros to three digits at least
/// (`2.6.9-1cvs200409091247` -> `002.006.009-001cvs200409091247`).
pub fn ver(version: &str) -> String {
    let mut out = String::with_capacity(version.len() + 8);
    let mut run = String::new();
    for c in version.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            for _ in run.len()..3 {
                out.push('0');
            }
            out.push_str(&run);
            run.clear();
        }
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// Two versions in dkms's order for BUILD_EXCLUSIVE_KERNEL_MIN and _MAX: their [`ver`]s
/// compared byte by byte (as bash's `[[ a < b ]]` does in the C locale).
pub fn ver_cmp(a: &str, b: &str) -> Ordering {
    ver(a).as_bytes().cmp(ver(b).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What dkms's own VER (its sed, copied from dkms 3.4.3) makes of `v`.
    fn dkms_ver(v: &str) -> String {
        let out = std::process::Command::new("sed")
            .args([
                "-e",
                r"s:\([^0-9]\)\([0-9]\):\1 \2:g",
                "-e",
                r"s:\([0-9]\)\([^0-9]\):\1 \2:g",
                "-e",
                r"s:\(.*\): \1 :",
                "-e",
                r"s: \([0-9]\) : 00\1 :g",
                "-e",
                r"s: \([0-9][0-9]\) : 0\1 :g",
                "-e",
                r"s: ::g",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{v}\n").as_bytes())?;
                c.wait_with_output()
            })
            .expect("running sed");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    #[test]
    fn ver_pads_as_dkms_does() {
        for v in [
            "6.1.0-55-amd64",
            "6.10.2-arch1-1",
            "2.6.9-1cvs200409091247",
            "5.15",
            "1.0~rc1",
            "6.1.0-1000-amd64",
            "007",
            "a1b22c333d4444",
            "",
        ] {
            assert_eq!(ver(v), dkms_ver(v), "{v:?}");
        }
    }

    /// The bounds in dkms's order, where it differs from sort -V's: a run of four digits is
    /// older than one of three, and `~` comes after the end.
    #[test]
    fn kernel_bounds_are_compared_in_dkms_order() {
        let config = KernelConfig::default();
        let max = Exclusive {
            kernel_max: Some("6.1.0-999-amd64".into()),
            ..Exclusive::default()
        };
        assert_eq!(
            max.excludes("6.1.0-1000-amd64", "x86_64", &config),
            Ok(None)
        );
        assert!(crate::system::version::cmp("6.1.0-1000-amd64", "6.1.0-999-amd64").is_gt());
        let min = Exclusive {
            kernel_min: Some("6.1".into()),
            ..Exclusive::default()
        };
        assert_eq!(min.excludes("6.1.0-55-amd64", "x86_64", &config), Ok(None));
        assert_eq!(
            min.excludes("5.15.0-1-amd64", "x86_64", &config),
            Ok(Some(
                "BUILD_EXCLUSIVE_KERNEL_MIN=\"6.1\": 5.15.0-1-amd64 is older".into()
            ))
        );
    }
}
