//! BUILD_EXCLUSIVE_*: the directives that keep a module off a kernel or an architecture, and the
//! one home of the rule that decides it, for the planner and for `status` alike.

use crate::system::kernel::Kernel;

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
    /// Whether these directives keep a module off `kernel`: `Ok(Some(reason))` when they do,
    /// `Err` when a directive cannot be understood.
    pub fn excludes(&self, kernel: &Kernel, arch: &str) -> Result<Option<String>, String> {
        let ex = self;
        let k = &kernel.release;
        let re = |what: &str, pat: &str| {
            regex::Regex::new(pat)
                .map_err(|e| format!("{what}=\"{pat}\" is not a valid regular expression: {e}"))
        };
        if let Some(pat) = &ex.kernel {
            if !re("BUILD_EXCLUSIVE_KERNEL", pat)?.is_match(k) {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_KERNEL=\"{pat}\" does not match {k}"
                )));
            }
        }
        if let Some(min) = &ex.kernel_min {
            if crate::system::version::cmp(k, min).is_lt() {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_KERNEL_MIN=\"{min}\": {k} is older"
                )));
            }
        }
        if let Some(max) = &ex.kernel_max {
            if crate::system::version::cmp(k, max).is_gt() {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_KERNEL_MAX=\"{max}\": {k} is newer"
                )));
            }
        }
        if let Some(pat) = &ex.arch {
            if !re("BUILD_EXCLUSIVE_ARCH", pat)?.is_match(arch) {
                return Ok(Some(format!(
                    "BUILD_EXCLUSIVE_ARCH=\"{pat}\" does not match {arch}"
                )));
            }
        }
        if kernel.config.known {
            for opt in &ex.config {
                let (negated, name) = match opt.strip_prefix('!') {
                    Some(n) => (true, n),
                    None => (false, opt.as_str()),
                };
                if kernel.config.enabled(name) == negated {
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
