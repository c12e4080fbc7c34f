//! `syslog2ban regex` as a user runs it: the real binary over a file that mixes matching,
//! ignored, unrelated, comment and blank lines.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_syslog2ban"))
}

const LOG: &str = "\
# a comment line
Nov 25 08:32:44 web1 sshd[16313]: Failed password for nltest from 198.51.100.66 port 54290 ssh2

Nov 25 08:32:45 web1 sshd[16313]: Failed password for monitor from 198.51.100.67 port 54291 ssh2
Nov 25 08:32:46 web1 cron[200]: (root) CMD (run-parts /etc/cron.hourly)
<38>1 2026-11-25T08:32:47.000000+00:00 web1 sshd 16314 - -  Failed password for invalid user admin from 2001:db8::66 port 4242 ssh2
Nov 25 08:32:48 web1 sshd[16315]: Accepted publickey for root from 198.51.100.10 port 50000 ssh2: ED25519 SHA256:abc
";

const JAIL: &str = r#"
[jail.test]
enabled = true
programs = ["sshd"]
failregex = ['^Failed password for (?:invalid user )?(?P<user>\S+) from <HOST> port \d+ ssh2$']
ignoreregex = ['^Failed password for monitor ']
"#;

fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("auth.log");
    let jail = dir.path().join("test.toml");
    std::fs::write(&log, LOG).expect("write log");
    std::fs::write(&jail, JAIL).expect("write jail");
    (dir, log, jail)
}

#[test]
fn json_has_one_object_per_input_line() {
    let (_dir, log, jail) = files();
    let out = bin()
        .arg("regex")
        .arg(&log)
        .arg(&jail)
        .arg("--json")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), LOG.lines().count());
    let expect = [
        (1, false, None, false),
        (2, true, Some("198.51.100.66"), false),
        (3, false, None, false),
        (4, false, None, true),
        (5, false, None, false),
        (6, true, Some("2001:db8::66"), false),
        (7, false, None, false),
    ];
    for (got, (line, matched, host, ignored)) in lines.iter().zip(expect) {
        assert_eq!(got["line"], line);
        assert_eq!(got["matched"], matched, "line {line}: {got}");
        assert_eq!(got["host"].as_str(), host, "line {line}: {got}");
        assert_eq!(got["ignored"], ignored, "line {line}: {got}");
    }
    assert_eq!(lines[1]["user"], "nltest");
    assert_eq!(lines[5]["user"], "admin");
}

#[test]
fn human_summary_counts_matched_ignored_missed() {
    let (_dir, log, jail) = files();
    let out = bin()
        .arg("regex")
        .arg(&log)
        .arg(&jail)
        .arg("--show-matched")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Lines: 7 lines, 2 matched, 1 ignored, 2 missed"),
        "{text}"
    );
    assert!(text.contains("0)      2"), "per-regex hits: {text}");
    assert!(
        text.contains("198.51.100.66 port 54290"),
        "matched lines shown: {text}"
    );
    assert!(
        text.contains("| host=198.51.100.66 user="),
        "matched lines show the captured host and user: {text}"
    );
}

#[test]
fn shipped_jail_by_name_and_clear_errors() {
    let (_dir, log, _) = files();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = bin()
        .current_dir(&repo)
        .arg("regex")
        .arg(&log)
        .arg("sshd")
        .arg("--config")
        .arg(repo.join("examples/quickstart.toml"))
        .arg("--json")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let matched = String::from_utf8_lossy(&out.stdout)
        .matches("\"matched\":true")
        .count();
    assert_eq!(
        matched, 3,
        "the shipped sshd jail has no ignoreregex for 'monitor'"
    );

    let unknown = bin()
        .arg("regex")
        .arg(&log)
        .arg("nosuchjail")
        .arg("--config")
        .arg(repo.join("examples/quickstart.toml"))
        .output()
        .expect("runs");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no jail 'nosuchjail'"));

    let f2b = bin()
        .arg("regex")
        .arg(&log)
        .arg("/nonexistent/filter.d/sshd.conf[mode=aggressive]")
        .output()
        .expect("runs");
    assert!(!f2b.status.success());
    let stderr = String::from_utf8_lossy(&f2b.stderr);
    assert!(
        stderr.contains("/nonexistent/filter.d/sshd.conf: cannot read"),
        "{stderr}"
    );
}

/// A fail2ban-style filter file (written for this test): includes, [Init], options in
/// brackets, a prefregex with <F-CONTENT>, <F-USER> and <HOST>.
#[test]
fn fail2ban_conf_filters_with_options() {
    let (dir, log, _jail) = files();
    std::fs::write(
        dir.path().join("prefix.conf"),
        "[DEFAULT]\n_daemon = \\S+\n__prefix = \\s*\\S+ %(_daemon)s(?:\\[\\d+\\])?:\\s+\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("demo.conf"),
        "[INCLUDES]\nbefore = prefix.conf\n[DEFAULT]\n_daemon = sshd\n[Definition]\n\
         prefregex = ^%(__prefix)s<F-CONTENT>.+</F-CONTENT>$\n\
         failregex = ^Failed password for (?:invalid user )?<F-USER>\\S+</F-USER> from <HOST> port \\d+ ssh2$\n\
         \x20           <extra-<mode>>\n\
         extra-normal =\nextra-all = ^Accepted publickey for <F-USER>\\S+</F-USER> from <HOST>\n\
         ignoreregex = for <skip> \n[Init]\nmode = normal\nskip = monitor\n",
    )
    .expect("write");
    let run = |filter: String| {
        let out = bin()
            .arg("regex")
            .arg(&log)
            .arg(filter)
            .arg("--json")
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let conf = dir.path().join("demo.conf").display().to_string();
    let lines: Vec<String> = run(conf.clone()).lines().map(String::from).collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert_eq!(
        lines[0],
        r#"{"line":1,"matched":false,"host":null,"user":null,"ignored":false}"#
    );
    assert_eq!(
        lines[1],
        r#"{"line":2,"matched":true,"host":"198.51.100.66","user":"nltest","ignored":false}"#
    );
    assert_eq!(
        lines[3],
        r#"{"line":4,"matched":false,"host":null,"user":null,"ignored":true}"#
    );
    // The RFC 5424 line has no file date in front: as in fail2ban, no date, no failure.
    assert!(lines[5].contains(r#""matched":false"#), "{}", lines[5]);
    assert!(lines[6].contains(r#""matched":false"#), "{}", lines[6]);
    let all = run(format!("{conf}[mode=all, skip=nobody]"));
    let all: Vec<&str> = all.lines().collect();
    assert!(all[3].contains(r#""host":"198.51.100.67""#), "{}", all[3]);
    assert!(
        all[6].contains(r#""host":"198.51.100.10","user":"root""#),
        "{}",
        all[6]
    );

    // A jail file that uses the filter is tested with it.
    let jail = dir.path().join("f2b.toml");
    std::fs::write(
        &jail,
        "[jail.f2b]\nenabled = true\nfail2ban_filter = \"demo.conf[mode=all]\"\n",
    )
    .expect("write");
    let by_jail = run(jail.display().to_string());
    assert_eq!(by_jail.lines().nth(6), Some(all[6]));
}

#[test]
fn every_shipped_jail_works_by_name() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut jails = 0;
    for entry in std::fs::read_dir(repo.join("tests/fixtures")).expect("fixtures") {
        let path = entry.expect("entry").path();
        let matches = path.join("match.log");
        if !matches.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_string();
        // Fixture lines are `EXPECTED_IP LINE`; the CLI reads plain log lines.
        let text = std::fs::read_to_string(&matches).expect("read");
        let expected: Vec<(&str, &str)> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split_once(' ').expect("IP LINE"))
            .collect();
        let log = dir.path().join(format!("{name}.log"));
        std::fs::write(
            &log,
            expected
                .iter()
                .map(|(_, l)| format!("{l}\n"))
                .collect::<String>(),
        )
        .expect("write");
        let out = bin()
            .arg("regex")
            .arg(&log)
            .arg(&name)
            .arg("--config")
            .arg(repo.join("examples/quickstart.toml"))
            .arg("--json")
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(results.len(), expected.len(), "{name}");
        for (got, (ip, line)) in results.iter().zip(&expected) {
            assert_eq!(got["host"].as_str(), Some(*ip), "{name}: {line}");
        }
        jails += 1;
    }
    assert!(jails >= 40, "only {jails} jails have fixtures");
}
