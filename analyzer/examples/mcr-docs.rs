//! Writes the man pages and shell completions of `mcrd`, `mcrctl`, `trafficgen` and `analyzer`,
//! generated from the clap definitions the binaries parse with, so they cannot drift from the
//! flags.
//!
//! ```text
//! cargo run --release -p analyzer --example mcr-docs -- OUT_DIR
//! ```
//! writes `OUT_DIR/man/*.{1,8}` (one page per command and sub-command, e.g.
//! `mcrctl-rules-add.1`) and `OUT_DIR/completions/{bash,zsh,fish}/`, named as the shells look
//! them up (`mcrctl`, `_mcrctl`, `mcrctl.fish`). It lives in `analyzer` because that is the one
//! crate that already depends on the other two; the binaries themselves do not depend on the
//! generators.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

/// A binary and the manual section its pages go in (8: daemons, 1: user commands).
struct Program {
    command: clap::Command,
    section: &'static str,
}

fn programs() -> Vec<Program> {
    vec![
        Program {
            command: relay::cli::mcrd::command(),
            section: "8",
        },
        Program {
            command: relay::cli::mcrctl::command(),
            section: "1",
        },
        Program {
            command: trafficgen::cli::command(),
            section: "1",
        },
        Program {
            command: analyzer::cli::command(),
            section: "1",
        },
    ]
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: mcr-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&out)) {
        Ok(n) => {
            println!(
                "mcr-docs: wrote {n} files under {}",
                Path::new(&out).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcr-docs: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Writes every page and completion file; returns how many files it wrote.
fn write_all(out: &Path) -> anyhow::Result<usize> {
    let man_dir = out.join("man");
    create_dir(&man_dir)?;
    let mut written = 0;
    for p in programs() {
        written += write_man_pages(p.command.clone(), p.section, &man_dir)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let dir = out.join("completions").join(shell.to_string());
            create_dir(&dir)?;
            let mut cmd = p.command.clone();
            let name = cmd.get_name().to_string();
            let path = dir.join(completion_file_name(shell, &name));
            write_file(&path, |w| {
                clap_complete::generate(shell, &mut cmd, &name, w);
                Ok(())
            })?;
            written += 1;
        }
    }
    Ok(written)
}

/// The file name each shell's completion loader looks for.
fn completion_file_name(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_string(),
    }
}

/// One page for the command and one for each (visible) sub-command, named `PARENT-SUB.N`.
fn write_man_pages(cmd: clap::Command, section: &str, dir: &Path) -> anyhow::Result<usize> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Sub-command pages name the program and version in their footer, as the main page does.
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut written = 0;
    let mut stack = vec![cmd];
    while let Some(cmd) = stack.pop() {
        stack.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = clap_mangen::Man::new(cmd)
            .section(section)
            .source(source.clone());
        let path = dir.join(man.get_filename());
        write_file(&path, |w| man.render(w))?;
        written += 1;
    }
    Ok(written)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write_file(
    path: &PathBuf,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    body(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}
