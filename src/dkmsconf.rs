//! dkms.conf, evaluated the way dkms evaluates it: sourced by bash, per kernel.
//!
//! dkms.conf is a bash script, and real ones contain logic (Debian's v4l2loopback reads the kernel's
//! .config to decide what to build), so it is never parsed with a regex. Each file is first checked
//! for syntax (a syntax error fails that module alone, with `bash -n`'s own message naming the file
//! and line), then sourced once per kernel in a subshell with the variables dkms sets (`kernelver`,
//! `arch`, `kernel_source_dir`, `dkms_tree`, `source_tree`, `install_tree`). The directives we plan
//! with come back NUL-separated on a private file descriptor, so whatever the script prints cannot be
//! mistaken for them. One bash process serves a whole batch of files, so planning a hundred modules for
//! six kernels costs a few hundred subshell forks, not six hundred bash start-ups.

use crate::trees::Trees;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The directives of one dkms.conf for one kernel that planning needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DkmsConf {
    pub name: String,
    pub version: String,
    pub autoinstall: bool,
    /// Module names that must be installed for the same kernel first.
    pub build_depends: Vec<String>,
    pub exclusive: Exclusive,
    /// BUILT_MODULE_NAME entries: the .ko files (without suffix) a build produces.
    pub built_modules: Vec<String>,
    /// DEST_MODULE_NAME entries (same order as `built_modules`; empty string when unset).
    pub dest_names: Vec<String>,
    /// BUILT_MODULE_LOCATION entries (same order as `built_modules`; empty string when unset).
    pub built_locations: Vec<String>,
    /// AUTOINSTALL as written (`autoinstall` says only whether it is set).
    pub autoinstall_value: String,
    /// PATCH entries: file names under the source's `patches/` directory.
    pub patches: Vec<String>,
    /// MAKE entries as evaluated (`MAKE` or `MAKE[0]` is the build command).
    pub make: Vec<String>,
    /// Anything the script printed while being evaluated (stdout and stderr).
    pub output: String,
}

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

/// A dkms.conf that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: no {directive} directive{}", kernel_suffix(.kernel))]
    Missing {
        path: String,
        directive: &'static str,
        kernel: Option<String>,
    },
    #[error("{path}: evaluation stopped early (does it call exit?){}{}", kernel_suffix(.kernel), output_suffix(.output))]
    Aborted {
        path: String,
        kernel: Option<String>,
        output: String,
    },
    #[error("{path}: cannot run bash: {message}")]
    Bash { path: String, message: String },
}

impl ConfError {
    /// The message without the leading file path, for where the path is already shown.
    pub fn detail(&self) -> String {
        let full = self.to_string();
        let path = match self {
            ConfError::Syntax { path, .. }
            | ConfError::Missing { path, .. }
            | ConfError::Aborted { path, .. }
            | ConfError::Bash { path, .. } => path,
        };
        full.strip_prefix(&format!("{path}: "))
            .map(str::to_string)
            .unwrap_or(full)
    }
}

fn kernel_suffix(k: &Option<String>) -> String {
    k.as_ref()
        .map(|k| format!(" when evaluated for kernel {k}"))
        .unwrap_or_default()
}

fn output_suffix(o: &str) -> String {
    let o = o.trim();
    if o.is_empty() {
        String::new()
    } else {
        format!(": {o}")
    }
}

/// A kernel to evaluate a dkms.conf for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub kernel: String,
    /// What dkms sets `kernel_source_dir` to: the kernel's headers.
    pub kernel_source_dir: PathBuf,
}

/// One dkms.conf evaluated for every context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    pub path: PathBuf,
    /// kernel -> directives. Empty when the file did not pass `bash -n`.
    pub per_kernel: BTreeMap<String, Result<DkmsConf, ConfError>>,
    /// A failure common to every kernel (syntax error, bash not runnable).
    pub error: Option<ConfError>,
}

impl Evaluated {
    /// Name and version: from the first kernel that evaluates cleanly.
    pub fn identity(&self) -> Result<(&str, &str), ConfError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut first_err = None;
        for r in self.per_kernel.values() {
            match r {
                Ok(c) => return Ok((&c.name, &c.version)),
                Err(e) => {
                    first_err.get_or_insert_with(|| e.clone());
                }
            }
        }
        Err(first_err.unwrap_or_else(|| ConfError::Missing {
            path: self.path.display().to_string(),
            directive: "PACKAGE_NAME",
            kernel: None,
        }))
    }

    pub fn for_kernel(&self, kernel: &str) -> Option<&Result<DkmsConf, ConfError>> {
        self.per_kernel.get(kernel)
    }
}

const DIRECTIVES: &[&str] = &[
    "PACKAGE_NAME",
    "PACKAGE_VERSION",
    "AUTOINSTALL",
    "BUILD_DEPENDS",
    "BUILD_EXCLUSIVE_KERNEL",
    "BUILD_EXCLUSIVE_KERNEL_MIN",
    "BUILD_EXCLUSIVE_KERNEL_MAX",
    "BUILD_EXCLUSIVE_ARCH",
    "BUILD_EXCLUSIVE_CONFIG",
    "BUILT_MODULE_NAME",
    "DEST_MODULE_NAME",
    "BUILT_MODULE_LOCATION",
    "PATCH",
    "MAKE",
];

/// The evaluator. Arguments: ARCH DKMS_TREE SOURCE_TREE INSTALL_TREE, then for each file
/// `--conf PATH` followed by pairs `KERNELVER KERNEL_SOURCE_DIR`.
const SCRIPT: &str = r#"
exec 3>&1 1>/dev/null </dev/null
emit() {
    local n i
    for n in "$@"; do
        eval 'for i in "${!'"$n"'[@]}"; do printf "%s\0%s\0%s\0" "$n" "$i" "${'"$n"'[$i]}" >&3; done'
    done
}
arch=$1 dkms_tree=$2 source_tree=$3 install_tree=$4
shift 4
# Indexing an array, not shifting "$@" (each shift copies every remaining argument).
args=("$@")
set --
n=${#args[@]} a=0
while ((a < n)); do
    conf=${args[a+1]}
    ((a += 2))
    ctx=()
    while ((a < n)) && [[ ${args[a]} != --conf ]]; do ctx+=("${args[a]}" "${args[a+1]}"); ((a += 2)); done
    printf '%s\0%s\0' @conf "$conf" >&3
    # Syntax first, without starting a bash per file: parsing the text as a function body
    # executes nothing. Only when that fails does `bash -n` run, for bash's own message.
    src=
    IFS= read -r -d '' src <"$conf"
    if eval "__dkms_hook_syntax() {
$src
}" 2>/dev/null; then
        unset -f __dkms_hook_syntax
    elif ! err=$(LC_ALL=C bash -n "$conf" 2>&1); then
        printf '%s\0%s\0' @syntax "$err" >&3
        continue
    fi
    for ((j = 0; j < ${#ctx[@]}; j += 2)); do
        printf '%s\0%s\0' @kernel "${ctx[j]}" >&3
        out=$(
            kernelver=${ctx[j]} kernel_source_dir=${ctx[j+1]}
            unset DIRECTIVES_PLACEHOLDER
            . "$conf" 2>&1
            emit DIRECTIVES_PLACEHOLDER
            printf '%s\0' @done >&3
        )
        printf '%s\0%s\0' @output "$out" >&3
    done
done
"#;

/// Evaluates every dkms.conf in `confs` for every context, in parallel batches.
pub fn evaluate(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) -> Vec<Evaluated> {
    if confs.is_empty() {
        return Vec::new();
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(confs.len());
    let chunk = confs.len().div_ceil(workers);
    confs
        .par_chunks(chunk)
        .flat_map_iter(|batch| evaluate_batch(batch, contexts, trees, arch))
        .collect()
}

fn evaluate_batch(
    confs: &[PathBuf],
    contexts: &[Context],
    trees: &Trees,
    arch: &str,
) -> Vec<Evaluated> {
    let script = SCRIPT.replace("DIRECTIVES_PLACEHOLDER", &DIRECTIVES.join(" "));
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(script)
        .arg("dkms-hook-eval")
        .arg(arch)
        .arg(&trees.dkms)
        .arg(&trees.source)
        .arg(&trees.install);
    for c in confs {
        cmd.arg("--conf").arg(c);
        for ctx in contexts {
            cmd.arg(&ctx.kernel).arg(&ctx.kernel_source_dir);
        }
    }
    for d in DIRECTIVES {
        cmd.env_remove(d);
    }
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return confs
                .iter()
                .map(|p| Evaluated {
                    path: p.clone(),
                    per_kernel: BTreeMap::new(),
                    error: Some(ConfError::Bash {
                        path: p.display().to_string(),
                        message: e.to_string(),
                    }),
                })
                .collect()
        }
    };
    let results = parse_output(&out.stdout);
    // A file bash never reached (it died): say so rather than dropping the module.
    confs
        .iter()
        .map(|p| {
            results
                .iter()
                .find(|e| &e.path == p)
                .cloned()
                .unwrap_or_else(|| Evaluated {
                    path: p.clone(),
                    per_kernel: BTreeMap::new(),
                    error: Some(ConfError::Bash {
                        path: p.display().to_string(),
                        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    }),
                })
        })
        .collect()
}

/// Turns the evaluator's NUL-separated records into results.
fn parse_output(bytes: &[u8]) -> Vec<Evaluated> {
    let text = String::from_utf8_lossy(bytes);
    let mut fields = text.split('\0');
    let mut out: Vec<Evaluated> = Vec::new();
    // The kernel being read, its raw directives, and whether it reached its end.
    let mut kernel: Option<String> = None;
    let mut vars: BTreeMap<String, BTreeMap<usize, String>> = BTreeMap::new();
    let mut done = false;
    while let Some(tag) = fields.next() {
        match tag {
            "@conf" => {
                let path = PathBuf::from(fields.next().unwrap_or_default());
                out.push(Evaluated {
                    path,
                    per_kernel: BTreeMap::new(),
                    error: None,
                });
            }
            "@syntax" => {
                let msg = fields.next().unwrap_or_default();
                if let Some(e) = out.last_mut() {
                    e.error = Some(ConfError::Syntax {
                        path: e.path.display().to_string(),
                        message: clean_bash_message(msg, &e.path),
                    });
                }
            }
            "@kernel" => {
                kernel = Some(fields.next().unwrap_or_default().to_string());
                vars.clear();
                done = false;
            }
            "@done" => done = true,
            "@output" => {
                let output = fields.next().unwrap_or_default().to_string();
                if let (Some(e), Some(k)) = (out.last_mut(), kernel.take()) {
                    let path = e.path.display().to_string();
                    let r = if done {
                        to_conf(&vars, output, &path, &k)
                    } else {
                        Err(ConfError::Aborted {
                            path,
                            kernel: Some(k.clone()),
                            output,
                        })
                    };
                    e.per_kernel.insert(k, r);
                }
            }
            "" => {}
            name => {
                let idx = fields.next().and_then(|i| i.parse().ok()).unwrap_or(0);
                let value = fields.next().unwrap_or_default().to_string();
                vars.entry(name.to_string()).or_default().insert(idx, value);
            }
        }
    }
    out
}

/// bash says `path: line 3: syntax error ...`; keep that, drop duplicated path prefixes.
fn clean_bash_message(msg: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    msg.lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}

fn to_conf(
    vars: &BTreeMap<String, BTreeMap<usize, String>>,
    output: String,
    path: &str,
    kernel: &str,
) -> Result<DkmsConf, ConfError> {
    let scalar = |n: &str| -> Option<String> {
        vars.get(n)
            .and_then(|m| m.get(&0))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let list = |n: &str| -> Vec<String> {
        vars.get(n)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    };
    let missing = |directive| ConfError::Missing {
        path: path.to_string(),
        directive,
        kernel: Some(kernel.to_string()),
    };
    let name = scalar("PACKAGE_NAME").ok_or_else(|| missing("PACKAGE_NAME"))?;
    let version = scalar("PACKAGE_VERSION").ok_or_else(|| missing("PACKAGE_VERSION"))?;
    let words = |n: &str| -> Vec<String> {
        list(n)
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(str::to_string)
            .collect()
    };
    let built = list("BUILT_MODULE_NAME");
    let dest_map = vars.get("DEST_MODULE_NAME");
    let dest_names = (0..built.len())
        .map(|i| {
            dest_map
                .and_then(|m| m.get(&i))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let built_locations = (0..built.len())
        .map(|i| {
            vars.get("BUILT_MODULE_LOCATION")
                .and_then(|m| m.get(&i))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    Ok(DkmsConf {
        autoinstall_value: scalar("AUTOINSTALL").unwrap_or_default(),
        built_locations,
        patches: list("PATCH"),
        make: list("MAKE"),
        name,
        version,
        autoinstall: scalar("AUTOINSTALL").is_some(),
        build_depends: words("BUILD_DEPENDS"),
        exclusive: Exclusive {
            kernel: scalar("BUILD_EXCLUSIVE_KERNEL"),
            kernel_min: scalar("BUILD_EXCLUSIVE_KERNEL_MIN"),
            kernel_max: scalar("BUILD_EXCLUSIVE_KERNEL_MAX"),
            arch: scalar("BUILD_EXCLUSIVE_ARCH"),
            config: words("BUILD_EXCLUSIVE_CONFIG"),
        },
        built_modules: built,
        dest_names,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn eval(conf: &str, kernels: &[&str]) -> Evaluated {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dkms.conf");
        fs::write(&p, conf).unwrap();
        let trees = Trees::defaults(d.path());
        let ctx: Vec<Context> = kernels
            .iter()
            .map(|k| Context {
                kernel: k.to_string(),
                kernel_source_dir: d.path().join(k),
            })
            .collect();
        for k in kernels {
            fs::create_dir_all(d.path().join(k)).unwrap();
            fs::write(
                d.path().join(k).join(".config"),
                format!("CONFIG_K=\"{k}\"\n"),
            )
            .unwrap();
        }
        evaluate(&[p], &ctx, &trees, "x86_64").remove(0)
    }

    #[test]
    fn evaluates_per_kernel_with_dkms_variables() {
        let e = eval(
            r#"
PACKAGE_NAME="foo-bar"
PACKAGE_VERSION="1.2-rc3-7"
echo "this goes to the output, not to the directives"
echo "and so does this" >&2
. "$kernel_source_dir/.config"
if [[ $CONFIG_K == 6.2* ]]; then BUILD_EXCLUSIVE_KERNEL="^never$"; fi
BUILD_DEPENDS=("zfs-utils" "spl")
BUILT_MODULE_NAME[0]="$PACKAGE_NAME"
BUILT_MODULE_NAME[1]="second"
DEST_MODULE_NAME[1]="renamed"
BUILD_EXCLUSIVE_CONFIG="CONFIG_A !CONFIG_B"
AUTOINSTALL=yes
MAKE="make KVER=$kernelver ARCH=$arch"
"#,
            &["6.1.0", "6.2.0"],
        );
        assert_eq!(e.identity().unwrap(), ("foo-bar", "1.2-rc3-7"));
        let a = e.for_kernel("6.1.0").unwrap().as_ref().unwrap();
        let b = e.for_kernel("6.2.0").unwrap().as_ref().unwrap();
        assert_eq!(a.exclusive.kernel, None);
        assert_eq!(b.exclusive.kernel.as_deref(), Some("^never$"));
        assert_eq!(a.build_depends, ["zfs-utils", "spl"]);
        assert_eq!(a.built_modules, ["foo-bar", "second"]);
        assert_eq!(a.dest_names, ["", "renamed"]);
        assert_eq!(a.exclusive.config, ["CONFIG_A", "!CONFIG_B"]);
        assert!(a.autoinstall);
        assert!(a.output.contains("this goes to the output"));
        assert!(a.output.contains("and so does this"));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let e = eval(
            "PACKAGE_NAME=x\nif true; then\n  PACKAGE_VERSION=1\n",
            &["6.1.0"],
        );
        let err = e.identity().unwrap_err().to_string();
        assert!(err.contains("dkms.conf"), "{err}");
        assert!(err.contains("line"), "{err}");
        let detail = e.identity().unwrap_err().detail();
        assert!(
            detail.starts_with("line "),
            "the path is said once: {detail}"
        );
        assert!(err.contains("syntax error"), "{err}");
        assert!(e.per_kernel.is_empty());
    }

    #[test]
    fn the_fast_syntax_check_never_rejects_what_bash_accepts() {
        // A comment on the last line without a newline, braces in strings, functions, and a
        // here-document ended by the end of the file (bash -n only warns about that one).
        let cases = [
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1 # last line, no newline",
            "PACKAGE_NAME=\"}\"\nPACKAGE_VERSION='{1'\nf() { :; }\n",
            "PACKAGE_NAME=a\nPACKAGE_VERSION=1\ncat <<EOF\nnever closed\n",
        ];
        for c in cases {
            let e = eval(c, &["6.1.0"]);
            assert!(e.error.is_none(), "{c:?}: {:?}", e.error);
            assert!(e.identity().is_ok(), "{c:?}");
        }
    }

    #[test]
    fn missing_version_and_exit_are_errors() {
        let e = eval("PACKAGE_NAME=x\n", &["6.1.0"]);
        assert!(matches!(
            e.identity(),
            Err(ConfError::Missing {
                directive: "PACKAGE_VERSION",
                ..
            })
        ));
        let e = eval(
            "PACKAGE_NAME=x\nPACKAGE_VERSION=1\necho bye; exit 3\n",
            &["6.1.0"],
        );
        let err = e.identity().unwrap_err().to_string();
        assert!(
            err.contains("stopped early") && err.contains("bye"),
            "{err}"
        );
    }

    #[test]
    fn many_files_in_batches_keep_their_own_results() {
        let d = tempfile::tempdir().unwrap();
        let mut confs = Vec::new();
        for i in 0..9 {
            let p = d.path().join(format!("m{i}.conf"));
            let body = if i == 4 {
                "PACKAGE_NAME=m4\nPACKAGE_VERSION=\"unterminated\n".to_string()
            } else {
                format!("PACKAGE_NAME=m{i}\nPACKAGE_VERSION={i}.0\n")
            };
            fs::write(&p, body).unwrap();
            confs.push(p);
        }
        let ctx = [Context {
            kernel: "6.1.0".into(),
            kernel_source_dir: d.path().into(),
        }];
        let r = evaluate(&confs, &ctx, &Trees::defaults(d.path()), "x86_64");
        assert_eq!(r.len(), 9);
        for (i, e) in r.iter().enumerate() {
            assert_eq!(e.path, confs[i]);
            if i == 4 {
                assert!(e.identity().is_err());
            } else {
                assert_eq!(
                    e.identity().unwrap(),
                    (&*format!("m{i}"), &*format!("{i}.0"))
                );
            }
        }
    }
}
