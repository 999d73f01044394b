//! What every switchyard binary does the same way with its clap command line: the
//! hidden `--generate-man DIR` that `make install` makes the man pages with, and clap's
//! verdict on a bad command line (`PROGRAM: ...` on stderr, exit 2).

use std::ffi::OsString;
use std::path::Path;

/// `PROGRAM --generate-man DIR` writes the man page of `command` and one for every
/// visible subcommand (`swctl-port-set.1`, ...) into DIR, all in `section`, and exits: 0
/// when written, 1 when DIR cannot be written. Hidden (not in `--help`) and looked for
/// before the parse, as the first and only argument; any other command line returns at
/// once, without building the command.
pub fn generate_man_if_asked(command: impl FnOnce() -> clap::Command, section: &str) {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(dir) = man_dir(&args) else {
        return;
    };
    let command = command();
    let program = command.get_name().to_string();
    match write_man_pages(command, section, Path::new(dir)) {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            let dir = Path::new(dir).display();
            eprintln!("{program}: cannot write the man pages into {dir}: {err}");
            std::process::exit(1);
        }
    }
}

/// The pages of `command` and its visible subcommands, in `section`, into `dir`.
fn write_man_pages(command: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    fn write(command: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), section, dir)?;
        }
        clap_mangen::Man::new(command)
            .section(section.to_string())
            .generate_to(dir)?;
        Ok(())
    }
    // As clap_mangen::generate_to: built, so that subcommands know their full names
    // (`swctl-port-set`), and without clap's `help` subcommand.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    write(command, section, dir)
}

/// clap's verdict on a command line: `--help` and `--version` on stdout (exit 0); a
/// usage error as `PROGRAM: ...` on stderr (exit 2), clap's `error: ` left out.
pub fn usage_exit(program: &str, err: clap::Error) -> ! {
    if !err.use_stderr() {
        let _ = err.print();
        std::process::exit(0);
    }
    let text = err.render().to_string();
    eprint!(
        "{program}: {}",
        text.strip_prefix("error: ").unwrap_or(&text)
    );
    std::process::exit(2);
}

/// The directory of `--generate-man DIR` when that is the whole command line (`args`,
/// without the program's name).
fn man_dir(args: &[OsString]) -> Option<&OsString> {
    match args {
        [flag, dir] if flag == "--generate-man" => Some(dir),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_flag_and_a_directory_ask_for_pages() {
        let os = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        let man = os(&["--generate-man", "/tmp/man"]);
        assert_eq!(man_dir(&man), Some(&man[1]));
        assert_eq!(man_dir(&os(&["--generate-man"])), None);
        assert_eq!(man_dir(&os(&["--generate-man", "/tmp/man", "x"])), None);
        assert_eq!(man_dir(&os(&["status", "/tmp/man"])), None);
    }

    #[test]
    fn every_visible_subcommand_gets_a_page_in_the_section() {
        let command = clap::Command::new("tool")
            .subcommand(clap::Command::new("port").subcommand(clap::Command::new("set")))
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = std::env::temp_dir().join(format!("switchyard-os-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_man_pages(command, "8", &dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let page = std::fs::read_to_string(dir.join("tool-port-set.8")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["tool-port-set.8", "tool-port.8", "tool.8"]);
        assert!(page.contains(".TH tool-port-set 8"), "{page}");
    }
}
