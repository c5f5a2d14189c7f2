//! The shell scripts a build runs: the build commands, in one shell (so `cd` and
//! `export` carry over as in CodeBuild), each announced by a marker line so the log says
//! which one failed (`run.pre-run` last); and the image's start command.

/// The prefix of the line announcing each build command: `--> [2/3] npm ci`.
pub const MARKER: &str = "--> [";

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The first line of a command, shortened, for the marker and error messages.
pub fn summary(command: &str) -> String {
    let first = command.trim().lines().next().unwrap_or("").trim();
    let mut out: String = first.chars().take(200).collect();
    if out.len() < first.len() || command.trim().lines().nth(1).is_some() {
        out.push_str(" ...");
    }
    out
}

/// The script running `commands` in order from `workdir`: stops at the first that fails
/// (with its exit status), whether it failed as a simple command or as a list.
pub fn build_script(workdir: &str, commands: &[String]) -> String {
    let n = commands.len();
    // One stream: a command's errors stay below its marker line (two pipes read in
    // turn can put them above it).
    let mut s = String::from("exec 2>&1\nset -e\n");
    s.push_str(&format!("cd {}\n", quote(workdir)));
    for (i, command) in commands.iter().enumerate() {
        let marker = format!("{MARKER}{}/{n}] {}", i + 1, summary(command));
        s.push_str(&format!("printf '%s\\n' {}\n", quote(&marker)));
        s.push_str(command.trim_end());
        // `set -e` ignores a failure inside `a && b`; the status of the whole still counts.
        s.push_str(
            "\n__runway_status=$?; [ \"$__runway_status\" -eq 0 ] || exit \"$__runway_status\"\n",
        );
    }
    s
}

/// The command line that runs `script` with bash, as Amazon Linux's `sh` is, or with the
/// image's `sh` where it has no bash.
pub fn with_bash(script: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        r#"if command -v bash >/dev/null 2>&1; then exec bash -c "$1"; fi; exec /bin/sh -c "$1""#
            .into(),
        "sh".into(),
        script.to_string(),
    ]
}

/// The 1-based number of the command a marker line announces.
pub fn parse_marker(line: &str) -> Option<usize> {
    let rest = line.strip_prefix(MARKER)?;
    let (number, rest) = rest.split_once('/')?;
    let (_, _) = rest.split_once("] ")?;
    number.parse().ok()
}

/// The image's start command: the run command, replacing the shell when it is a single
/// simple command so that it gets the stop signal itself. (`run.pre-run` is not part of
/// it: it runs at the end of the build.)
pub fn start_script(command: &str) -> String {
    let mut s = String::new();
    let command = command.trim();
    let simple = !command.contains(['\n', ';', '&', '|', '(', ')', '`'])
        && !command.starts_with("cd ")
        && !command.starts_with("exec ")
        && !command
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('='));
    if simple {
        s.push_str("exec ");
    }
    s.push_str(command);
    s
}

#[cfg(test)]
mod tests;
