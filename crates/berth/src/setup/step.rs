//! One step of a storage set-up: what it prints (an exact shell command, or
//! what berth does in-process in those terms), how it runs, and how it is
//! undone when a later step fails.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_storage::{open_driver, DriverConfig};

/// A step of a [`super::Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new sparse image file of `size` bytes (`truncate -s`).
    CreateFile { path: PathBuf, size: u64 },
    /// `mkdir -p`.
    MakeDir { path: PathBuf },
    /// A command; `undo` is the command that reverses it, if any; `hint`
    /// is added to its failure (the likely cause).
    Run {
        argv: Vec<String>,
        undo: Option<Vec<String>>,
        hint: Option<String>,
    },
    /// Appends `line` to the fstab at `fstab`.
    AppendFstab { fstab: PathBuf, line: String },
    /// Opens berth's `driver` on `data_root`, as berthd will, which also
    /// records the driver in `<data-root>/engine.json`.
    OpenDriver { driver: String, data_root: PathBuf },
}

/// What running a step left to undo.
#[derive(Debug)]
pub(super) enum Undo {
    Nothing,
    RemoveFile(PathBuf),
    /// Directories made, outermost first.
    RemoveDirs(Vec<PathBuf>),
    Run(Vec<String>),
    Restore {
        path: PathBuf,
        contents: Vec<u8>,
    },
}

/// Quotes an argument for a POSIX shell when it needs it.
pub(super) fn shell_word(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=,@%+-".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_word(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn path_text(path: &Path) -> String {
    shell_word(&path.to_string_lossy())
}

impl Step {
    /// A command for `argv`, undone by `undo`.
    pub(super) fn run(argv: &[&str], undo: Option<&[&str]>) -> Step {
        Step::Run {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            undo: undo.map(|u| u.iter().map(|s| s.to_string()).collect()),
            hint: None,
        }
    }

    /// The same step with `hint` added to its failure.
    pub(super) fn with_hint(mut self, text: &str) -> Step {
        if let Step::Run { hint, .. } = &mut self {
            *hint = Some(text.to_string());
        }
        self
    }

    /// The step as one line an operator could type.
    pub fn describe(&self) -> String {
        match self {
            Step::CreateFile { path, size } => {
                format!("truncate -s {size} {}", path_text(path))
            }
            Step::MakeDir { path } => format!("mkdir -p {}", path_text(path)),
            Step::Run { argv, .. } => shell_line(argv),
            Step::AppendFstab { fstab, line } => {
                format!("echo {} >> {}", shell_word(line), path_text(fstab))
            }
            Step::OpenDriver { driver, data_root } => format!(
                "check that berth's {driver} driver opens on {} (records it in engine.json)",
                path_text(data_root)
            ),
        }
    }

    /// Runs the step; the error is what to tell the operator.
    pub(super) fn execute(&self) -> Result<Undo, String> {
        match self {
            Step::CreateFile { path, size } => {
                let file = std::fs::File::create(path)
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
                file.set_len(*size)
                    .map_err(|e| format!("sizing {}: {e}", path.display()))?;
                Ok(Undo::RemoveFile(path.clone()))
            }
            Step::MakeDir { path } => {
                let made: Vec<PathBuf> = path
                    .ancestors()
                    .filter(|p| !p.exists())
                    .map(Path::to_path_buf)
                    .collect();
                std::fs::create_dir_all(path)
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
                Ok(Undo::RemoveDirs(made.into_iter().rev().collect()))
            }
            Step::Run { argv, undo, hint } => {
                run_command(argv).map_err(|e| match hint {
                    Some(h) => format!("{e}\n  hint: {h}"),
                    None => e,
                })?;
                Ok(undo.clone().map_or(Undo::Nothing, Undo::Run))
            }
            Step::AppendFstab { fstab, line } => {
                let contents = match std::fs::read(fstab) {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(format!("reading {}: {e}", fstab.display())),
                };
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(fstab)
                    .map_err(|e| format!("opening {}: {e}", fstab.display()))?;
                let mut text = String::new();
                if !contents.is_empty() && !contents.ends_with(b"\n") {
                    text.push('\n');
                }
                let _ = writeln!(text, "{line}");
                file.write_all(text.as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| format!("writing {}: {e}", fstab.display()))?;
                Ok(Undo::Restore {
                    path: fstab.clone(),
                    contents,
                })
            }
            Step::OpenDriver { driver, data_root } => {
                open_driver(&DriverConfig {
                    data_root: data_root.clone(),
                    name: Some(driver.clone()),
                    options: Vec::new(),
                })
                .map_err(|e| format!("berth's {driver} driver refuses the result: {e}"))?;
                Ok(Undo::Nothing)
            }
        }
    }
}

impl Undo {
    /// What undoing prints, if anything.
    pub(super) fn describe(&self) -> Option<String> {
        match self {
            Undo::Nothing => None,
            Undo::RemoveFile(p) => Some(format!("rm {}", path_text(p))),
            Undo::RemoveDirs(dirs) => dirs.first().map(|d| format!("rmdir {}", path_text(d))),
            Undo::Run(argv) => Some(shell_line(argv)),
            Undo::Restore { path, .. } => Some(format!("restore {}", path_text(path))),
        }
    }

    /// Undoes; failures are reported, not fatal (the rest is still undone).
    pub(super) fn execute(&self) -> Result<(), String> {
        match self {
            Undo::Nothing => Ok(()),
            Undo::RemoveFile(p) => std::fs::remove_file(p).map_err(|e| e.to_string()),
            Undo::RemoveDirs(dirs) => {
                for dir in dirs.iter().rev() {
                    std::fs::remove_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                Ok(())
            }
            Undo::Run(argv) => run_command(argv),
            Undo::Restore { path, contents } => {
                std::fs::write(path, contents).map_err(|e| e.to_string())
            }
        }
    }
}

/// Runs `argv` and turns a failure into what it printed.
fn run_command(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{program}: command not found"),
            _ => format!("{program}: {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.is_empty() {
        text = stdout;
    }
    Err(format!("{program} exited with {}: {text}", out.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/tmp/x.img"), "/tmp/x.img");
        assert_eq!(shell_word("loop,pquota"), "loop,pquota");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
