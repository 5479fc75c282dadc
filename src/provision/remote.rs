//! Command lines for a node's login shell, written once per node OS.
//!
//! `devcluster ssh NODE -- CMD ARG...` keeps every argument one word on the
//! node, as `kubectl exec` and `docker exec` do; a single argument is a
//! whole command line for the node's shell (`-- 'uptime; df -h'`). The
//! same rules serve the system `ssh` (which joins its arguments with
//! spaces, so it gets our one string) and devcluster's own client.
//!
//! # POSIX shell (Linux nodes)
//!
//! sshd runs `$SHELL -c STRING`. Each word goes in single quotes (`'` as
//! `'\''`), where nothing else is special: `$`, backticks, globs, `\`,
//! spaces, newlines stay as they are.
//!
//! # PowerShell (Windows nodes: Win32-OpenSSH with PowerShell as
//! `DefaultShell`)
//!
//! How the string reaches PowerShell, from Win32-OpenSSH's own source
//! (PowerShell/openssh-portable, `contrib/win32/win32compat/w32-doexec.c`
//! `do_exec_windows` and `misc.c` `build_commandline_string`; recorded in
//! `testdata/win32-openssh/README.md`):
//!
//! 1. A string that starts with `scp`, `sftp-server` or `internal-sftp`
//!    (any case) is rewritten to the bundled program (`build_exec_command`).
//! 2. With a `powershell` default shell the process is spawned with argv
//!    `["<shell>", "-c", STRING]`, and the Windows command line is made by
//!    `build_commandline_string`: STRING is put in double quotes only when
//!    it contains a space **and does not start with `'`**; every `"`
//!    becomes `\"`; a run of backslashes is doubled only when a `"`
//!    follows it, so a trailing backslash inside the added quotes escapes
//!    the closing one.
//! 3. powershell.exe splits its command line by the MSVC rules and joins
//!    the words after `-c` with single spaces as the script text.
//!
//! So STRING arrives unchanged exactly when it does not start with `'`,
//! `scp`, `sftp-server` or `internal-sftp` and does not end with `\`; a
//! string starting with `'` would be split at its spaces and rejoined
//! (`'a  b'` would become `'a b'`). Every string built here starts with
//! `$global:LASTEXITCODE = 0` and ends with `exit 1`, which keeps all
//! three rules whatever the user's words are.
//!
//! Words are PowerShell single-quoted strings (`'` doubled; PowerShell
//! also takes the typographic quotes U+2018..U+201B as single quotes, so
//! those are doubled too): `& 'CMD' 'ARG' ...`, where `$`, backticks,
//! globs and `"` are literal. Each word is one argument to a cmdlet or
//! function; a native program gets them through Windows PowerShell 5.1's
//! own argument passing, which drops an empty argument and does not
//! escape embedded `"` (PowerShell/PowerShell #1995) — the one-argument
//! form is there for such command lines.
//!
//! Exit codes: powershell.exe `-c` exits 0 or 1 by `$?` unless `exit N`
//! ran (Win32-OpenSSH #1933, #421 show the 0/1 answers), so the string
//! ends by passing a failed native command's `$LASTEXITCODE` through:
//! `-- cmd /c exit 3` exits 3, a failed cmdlet exits 1, `exit 5` exits 5.

use crate::plan::Os;

/// `s` as one word for a POSIX shell: unchanged when it is made of safe
/// characters only, else in single quotes.
pub fn posix_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The characters PowerShell's tokenizer takes as a single quote.
const PS_SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// `s` as one PowerShell single-quoted string literal (always quoted, so
/// that no word is read as an operator, a variable or a number).
pub fn pwsh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if PS_SINGLE_QUOTES.contains(&c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The PowerShell text that runs `words` (one word each; a single word is
/// a whole PowerShell command line).
pub fn pwsh_words(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [cmd, args @ ..] => {
            let mut out = format!("& {}", pwsh_quote(cmd));
            for a in args {
                out.push(' ');
                out.push_str(&pwsh_quote(a));
            }
            out
        }
    }
}

/// The exec string that runs PowerShell `script` through Win32-OpenSSH's
/// PowerShell default shell unchanged (see the module documentation) and
/// exits with its exit code.
pub fn pwsh_exec_string(script: &str) -> String {
    // Newlines around the script: a trailing `# comment` in it must not
    // swallow the exit handling. Win32-OpenSSH copies newlines as they are.
    format!(
        "$global:LASTEXITCODE = 0\n{script}\nif ($?) {{ exit 0 }}; if ($LASTEXITCODE) {{ exit $LASTEXITCODE }}; exit 1"
    )
}

/// The string to send as an SSH exec request so that `words` run on a node
/// of `os` (see the module documentation).
pub fn command_line(os: Os, words: &[String]) -> String {
    match os {
        Os::Linux => match words {
            [one] => one.clone(),
            _ => words
                .iter()
                .map(|w| posix_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
        },
        Os::Windows => pwsh_exec_string(&pwsh_words(words)),
    }
}

/// A model of what Win32-OpenSSH and powershell.exe make of an exec
/// string, ported from the sources the module documentation names: the
/// script text PowerShell evaluates. For tests of the strings built here.
#[cfg(test)]
pub(crate) mod win32_openssh {
    /// `build_exec_command`: `None` when sshd would run a bundled program
    /// instead of the shell.
    pub fn rewritten(command: &str) -> bool {
        let lower = command.to_ascii_lowercase();
        ["internal-sftp", "sftp-server", "scp"]
            .iter()
            .any(|p| lower.starts_with(p))
    }

    /// `build_commandline_string` for one argument (after the program).
    pub fn escape_arg(p: &str) -> String {
        let add_quotes = !p.starts_with('\'') && p.contains(' ');
        let mut out = String::new();
        if add_quotes {
            out.push('"');
        }
        let chars: Vec<char> = p.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    let mut n = 0;
                    while i + n < chars.len() && chars[i + n] == '\\' {
                        n += 1;
                    }
                    let before_quote = chars.get(i + n) == Some(&'"');
                    for _ in 0..n * if before_quote { 2 } else { 1 } {
                        out.push('\\');
                    }
                    i += n;
                    continue;
                }
                '"' => out.push_str("\\\""),
                c => out.push(c),
            }
            i += 1;
        }
        if add_quotes {
            out.push('"');
        }
        out
    }

    /// The MSVC / CommandLineToArgvW split of a command line's arguments.
    pub fn split_args(line: &str) -> Vec<String> {
        let chars: Vec<char> = line.chars().collect();
        let mut args = Vec::new();
        let mut i = 0;
        loop {
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
            if i >= chars.len() {
                return args;
            }
            let mut arg = String::new();
            let mut quoted = false;
            while i < chars.len() {
                let c = chars[i];
                if c == '\\' {
                    let mut n = 0;
                    while i + n < chars.len() && chars[i + n] == '\\' {
                        n += 1;
                    }
                    if chars.get(i + n) == Some(&'"') {
                        arg.extend(std::iter::repeat_n('\\', n / 2));
                        if n % 2 == 1 {
                            arg.push('"');
                            i += n + 1;
                        } else {
                            i += n;
                        }
                    } else {
                        arg.extend(std::iter::repeat_n('\\', n));
                        i += n;
                    }
                    continue;
                }
                if c == '"' {
                    if quoted && chars.get(i + 1) == Some(&'"') {
                        arg.push('"');
                        i += 2;
                        continue;
                    }
                    quoted = !quoted;
                    i += 1;
                    continue;
                }
                if !quoted && (c == ' ' || c == '\t') {
                    break;
                }
                arg.push(c);
                i += 1;
            }
            args.push(arg);
        }
    }

    /// The script text powershell.exe `-c` evaluates for an exec string.
    pub fn script_seen(command: &str) -> Option<String> {
        if rewritten(command) {
            return None;
        }
        Some(split_args(&escape_arg(command)).join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::win32_openssh::script_seen;
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    /// What `sh -c` makes of a command line: each word, via the real sh.
    fn sh_words(line: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut v: Vec<String> = text.split('\0').map(str::to_string).collect();
        v.pop();
        v
    }

    const HARD: &[&str] = &[
        "a  b",
        "",
        "it's",
        "$HOME",
        "$(rm -rf /)",
        "`id`",
        "*",
        "?.[ch]",
        "a\"b",
        "back\\slash\\",
        "\\\"",
        "tab\there",
        "new\nline",
        "'",
        "''",
        "\u{2019}quoted\u{2018}",
        "%PATH%",
        "-c",
        ";",
        "&",
        "|",
        "#",
    ];

    #[test]
    fn posix_words_survive_a_real_shell() {
        for w in HARD {
            assert_eq!(sh_words(&posix_quote(w)), [w.to_string()], "{w:?}");
        }
        let all = words(HARD);
        let line = command_line(
            Os::Linux,
            &[vec!["printf".to_string()], all.clone()].concat(),
        );
        assert_eq!(sh_words(&line[7..]), all);
    }

    #[test]
    fn posix_command_lines() {
        assert_eq!(
            command_line(Os::Linux, &words(&["sh", "-c", "exit 3"])),
            "sh -c 'exit 3'"
        );
        assert_eq!(
            command_line(Os::Linux, &words(&["printf", "%s\\n", "a  b"])),
            r"printf '%s\n' 'a  b'"
        );
        // One argument is a whole command line.
        assert_eq!(
            command_line(Os::Linux, &words(&["uptime; df -h"])),
            "uptime; df -h"
        );
        assert_eq!(command_line(Os::Linux, &words(&["echo", ""])), "echo ''");
        assert_eq!(posix_quote("/var/lib/x.sh"), "/var/lib/x.sh");
        assert_eq!(posix_quote("it's"), r"'it'\''s'");
    }

    /// The value of a PowerShell single-quoted literal (the tokenizer's
    /// rule: a quote character doubled is one of it).
    fn pwsh_unquote(lit: &str) -> String {
        let inner: Vec<char> = lit.chars().collect();
        assert!(PS_SINGLE_QUOTES.contains(&inner[0]));
        assert!(PS_SINGLE_QUOTES.contains(inner.last().unwrap()));
        let inner = &inner[1..inner.len() - 1];
        let mut out = String::new();
        let mut i = 0;
        while i < inner.len() {
            if PS_SINGLE_QUOTES.contains(&inner[i]) {
                assert!(
                    i + 1 < inner.len() && PS_SINGLE_QUOTES.contains(&inner[i + 1]),
                    "an undoubled quote ends the literal early: {lit}"
                );
                out.push(inner[i]);
                i += 2;
            } else {
                out.push(inner[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn pwsh_literals_round_trip_and_parse() {
        for w in HARD {
            let lit = pwsh_quote(w);
            assert_eq!(pwsh_unquote(&lit), *w, "{lit}");
            crate::test_support::assert_pwsh_parses(&format!("word {w:?}"), &format!("& {lit}"));
        }
        assert_eq!(pwsh_quote("it's"), "'it''s'");
        assert_eq!(pwsh_quote(""), "''");
        assert_eq!(pwsh_quote("$env:X `n *"), "'$env:X `n *'");
    }

    #[test]
    fn pwsh_command_lines() {
        assert_eq!(
            pwsh_words(&words(&["printf", "%s\\n", "a  b"])),
            r"& 'printf' '%s\n' 'a  b'"
        );
        assert_eq!(
            pwsh_words(&words(&["cmd", "/c", "exit 3"])),
            "& 'cmd' '/c' 'exit 3'"
        );
        assert_eq!(
            pwsh_words(&words(&["Get-Date; hostname"])),
            "Get-Date; hostname"
        );
        let line = command_line(Os::Windows, &words(&["hostname"]));
        assert_eq!(
            line,
            "$global:LASTEXITCODE = 0\nhostname\nif ($?) { exit 0 }; if ($LASTEXITCODE) { exit $LASTEXITCODE }; exit 1"
        );
        crate::test_support::assert_pwsh_parses("exec string", &line);
    }

    #[test]
    fn win32_openssh_hands_powershell_exactly_our_script() {
        let mut cases: Vec<Vec<String>> =
            HARD.iter().map(|w| words(&["Write-Output", w])).collect();
        cases.push(words(HARD));
        cases.push(words(&["scp -t /etc"]));
        cases.push(words(&["'a  b'"]));
        cases.push(words(&["Write-Output trailing\\"]));
        cases.push(words(&["sftp-server.exe", "x"]));
        for case in cases {
            let line = command_line(Os::Windows, &case);
            assert_eq!(
                script_seen(&line).as_deref(),
                Some(line.as_str()),
                "{case:?}"
            );
            crate::test_support::assert_pwsh_parses(&format!("{case:?}"), &line);
        }
    }

    #[test]
    fn the_model_reproduces_the_recorded_windows_behaviour() {
        // Win32-OpenSSH #1273 (maintainer): `ssh ... "cmd /c cd C:/ \`& dir"`
        // runs `powershell -c "cmd /c cd C:/ \`& dir"`.
        assert_eq!(
            win32_openssh::escape_arg("cmd /c cd C:/ `& dir"),
            "\"cmd /c cd C:/ `& dir\""
        );
        // A string starting with a single quote is not wrapped: its spaces
        // split it, and PowerShell rejoins the pieces with one space.
        assert_eq!(script_seen("'a  b'").as_deref(), Some("'a b'"));
        // Double quotes escaped by sshd come back; a trailing backslash in
        // the added quotes swallows the closing quote's meaning.
        assert_eq!(
            script_seen(r#"echo "x y""#).as_deref(),
            Some(r#"echo "x y""#)
        );
        assert_ne!(script_seen("echo a b\\").as_deref(), Some("echo a b\\"));
        assert_eq!(script_seen("scp -t x"), None);
    }
}
