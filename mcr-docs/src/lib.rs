//! Man pages and shell completions of the MCR binaries, generated from their clap definitions
//! so that they cannot drift from the flags.
//!
//! Each binary calls [`generate_if_asked`] first thing in `main`: when its first argument is
//! `--generate`, it writes what was asked into a directory and exits, before its own command
//! line (with its required sub-commands and flags) is parsed.
//!
//! ```no_run
//! # fn command() -> clap::Command { clap::Command::new("mcrctl") }
//! if let Some(code) = mcr_docs::generate_if_asked(command, "1") {
//!     std::process::exit(code);
//! }
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The hidden first argument that asks for documentation.
pub const FLAG: &str = "--generate";

/// The usage line of [`FLAG`], for a binary's `--help` text.
pub const USAGE: &str = "--generate man|bash|zsh|fish DIR: write the man pages or the shell \
                         completion into DIR (for source installs)";

/// What `--generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One page for the command and one for each visible sub-command (`mcrctl-rules-add.1`).
    Man,
    /// The completion file of a shell, named as the shell looks it up.
    Completion(Shell),
}

impl Kind {
    /// `man`, `bash`, `zsh` or `fish`.
    pub fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "man" => Kind::Man,
            "bash" => Kind::Completion(Shell::Bash),
            "zsh" => Kind::Completion(Shell::Zsh),
            "fish" => Kind::Completion(Shell::Fish),
            _ => return None,
        })
    }
}

/// If the process's first argument is [`FLAG`], writes what it asks for and returns the exit
/// code (0 written, 1 a file could not be written, 2 bad arguments); otherwise `None`, and
/// the binary parses its command line as usual. `section` is the man section of the
/// binary's pages (8 for daemons, 1 for user commands).
pub fn generate_if_asked(command: impl FnOnce() -> clap::Command, section: &str) -> Option<i32> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().map(|a| a != FLAG).unwrap_or(true) {
        return None;
    }
    let cmd = command();
    let name = cmd.get_name().to_string();
    let (kind, dir) = match &args[1..] {
        [kind, dir] => match kind.to_str().and_then(Kind::parse) {
            Some(k) => (k, PathBuf::from(dir)),
            None => {
                eprintln!(
                    "{name}: {FLAG}: `{}` is not man, bash, zsh or fish",
                    kind.to_string_lossy()
                );
                return Some(2);
            }
        },
        _ => {
            eprintln!("{name}: usage: {name} {USAGE}");
            return Some(2);
        }
    };
    match generate(cmd, section, kind, &dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            Some(0)
        }
        Err(e) => {
            eprintln!("{name}: {FLAG}: {e}");
            Some(1)
        }
    }
}

/// Writes `kind` for `cmd` into `dir` (created if missing); returns the files written.
pub fn generate(
    cmd: clap::Command,
    section: &str,
    kind: Kind,
    dir: &Path,
) -> Result<Vec<PathBuf>, GenerateError> {
    std::fs::create_dir_all(dir).map_err(|e| GenerateError::new(dir, e))?;
    match kind {
        Kind::Man => man_pages(cmd, section, dir),
        Kind::Completion(shell) => {
            let mut cmd = cmd;
            let name = cmd.get_name().to_string();
            let path = dir.join(completion_file_name(shell, &name));
            write_file(&path, |w| {
                clap_complete::generate(shell, &mut cmd, &name, w);
                Ok(())
            })?;
            Ok(vec![path])
        }
    }
}

/// A file or directory that could not be written.
#[derive(Debug)]
pub struct GenerateError {
    path: PathBuf,
    source: io::Error,
}

impl GenerateError {
    fn new(path: &Path, source: io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl std::fmt::Display for GenerateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for GenerateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The file name each shell's completion loader looks for.
fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_string(),
    }
}

/// One page for the command and one for each visible sub-command, named `PARENT-SUB.N`.
fn man_pages(cmd: clap::Command, section: &str, dir: &Path) -> Result<Vec<PathBuf>, GenerateError> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Sub-command pages name the program and version in their footer, as the main page does.
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut written = Vec::new();
    let mut stack = vec![cmd];
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(cmd)
            .section(section)
            .source(source.clone());
        let path = dir.join(man.get_filename());
        write_file(&path, |w| man.render(w))?;
        written.push(path);
    }
    Ok(written)
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), GenerateError> {
    let file = File::create(path).map_err(|e| GenerateError::new(path, e))?;
    let mut w = BufWriter::new(file);
    body(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| GenerateError::new(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> clap::Command {
        clap::Command::new("tool")
            .version("1.2.3")
            .arg(
                clap::Arg::new("verbose")
                    .long("verbose")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(clap::Command::new("rules").subcommand(clap::Command::new("add")))
            .subcommand(clap::Command::new("hidden").hide(true))
    }

    #[test]
    fn man_pages_cover_every_visible_sub_command_in_the_section() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut files: Vec<String> = generate(tool(), "8", Kind::Man, dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["tool-rules-add.8", "tool-rules.8", "tool.8"]);
        let page = std::fs::read_to_string(dir.join("tool.8")).unwrap();
        assert!(
            page.contains("verbose") && page.contains("tool 1.2.3"),
            "{page}"
        );
    }

    #[test]
    fn completions_are_named_as_each_shell_looks_them_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (shell, file) in [("bash", "tool"), ("zsh", "_tool"), ("fish", "tool.fish")] {
            let kind = Kind::parse(shell).unwrap();
            let written = generate(tool(), "1", kind, dir).unwrap();
            assert_eq!(written, [dir.join(file)]);
            let text = std::fs::read_to_string(&written[0]).unwrap();
            assert!(text.contains("verbose"), "{shell}: {text}");
        }
        assert_eq!(Kind::parse("powershell"), None);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let file = dir.join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = generate(tool(), "1", Kind::Man, &file.join("sub")).unwrap_err();
        assert!(e.to_string().contains("a-file"), "{e}");
    }
}
