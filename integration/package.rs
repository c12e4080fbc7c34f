//! The Debian package, as an operator installs it: `cargo deb` builds it, `dpkg -i` installs it,
//! the daemon starts the way the shipped unit starts it, and five sshd failures from `logger`
//! ban. No systemd runs on the test machines, so the unit is read and followed by hand: its
//! `ExecStartPre`/`ExecStart` argv, as its `User` with its `AmbientCapabilities` (setpriv), with
//! the `RuntimeDirectory` systemd would make, inside a network namespace of its own (the
//! package's config listens on 0.0.0.0:514 and creates the `syslog2ban` table). Also: every man
//! page the top page names is installed and renders, and the README's fail2ban migration steps
//! run verbatim before the start, so the ban comes from the imported jail. The package is
//! purged afterwards (unless it was installed before the test).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::lab::{command, preflight, run, tool, wait_until, Lab};

const TOOLS: &[&str] = &["cargo", "dpkg", "ip", "nft", "logger", "setpriv", "man"];
const UNIT: &str = "/usr/lib/systemd/system/syslog2ban.service";
const ATTACKER: &str = "198.51.100.50";

/// The unit's value of `key` (the last one wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

/// Purges the package at the end unless it was there before.
struct Installed {
    purge: bool,
    runtime_dir: Option<&'static str>,
    /// A file the test wrote under /etc/syslog2ban (no package file: purge leaves it).
    extra_file: Option<&'static Path>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(dir) = self.runtime_dir {
            let _ = fs::remove_dir_all(dir);
        }
        if let Some(file) = self.extra_file {
            let _ = fs::remove_file(file);
        }
        if self.purge {
            let _ = Command::new("dpkg")
                .args(["--purge", "syslog2ban"])
                .output();
        }
    }
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: installs a package and uses network namespaces; runs as root or with CI=true"
)]
fn the_package_installs_starts_as_its_unit_says_and_bans() {
    if !preflight("package", TOOLS) {
        return;
    }
    let cargo_deb = run(
        command(tool("cargo")).args(["deb", "--version"]),
        Duration::from_secs(30),
    );
    assert!(
        cargo_deb.success(),
        "cargo-deb is missing (integration/install-deps.sh installs it): {}",
        cargo_deb.describe()
    );
    // Declared before the lab, so on a panic the daemon is stopped before the purge.
    let mut installed = Installed {
        purge: false,
        runtime_dir: None,
        extra_file: None,
    };
    let mut lab = Lab::bare("package");
    let ns = format!("{}-pkg", lab.id);
    lab.add_netns(&ns);

    // Build.
    let built = run(
        command(tool("cargo"))
            .args(["deb"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(1200),
    );
    assert!(built.success(), "cargo deb: {}", built.describe());
    let deb = built
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no .deb named by cargo deb: {}", built.describe()));
    lab.note(&format!("built {deb}"));

    // Install.
    let before = run(
        command("dpkg-query").args(["-W", "-f=${Status}", "syslog2ban"]),
        Duration::from_secs(30),
    );
    let was_installed = before.success() && before.stdout.contains("install ok installed");
    installed.purge = !was_installed;
    let install = run(command("dpkg").args(["-i", &deb]), Duration::from_secs(300));
    assert!(install.success(), "dpkg -i: {}", install.describe());
    for path in [
        "/usr/bin/syslog2ban",
        "/etc/syslog2ban/syslog2ban.toml",
        "/etc/syslog2ban/conf.d/sshd.toml",
        UNIT,
        "/usr/lib/systemd/system/syslog2ban-devlog.socket",
    ] {
        assert!(
            Path::new(path).exists(),
            "the package did not install {path}"
        );
    }
    let conffiles =
        fs::read_to_string("/var/lib/dpkg/info/syslog2ban.conffiles").unwrap_or_default();
    assert!(
        conffiles.contains("/etc/syslog2ban/syslog2ban.toml")
            && conffiles.contains("/etc/syslog2ban/conf.d/sshd.toml"),
        "the config files must be conffiles: {conffiles}"
    );
    let id = run(
        command("id").args(["-u", "syslog2ban"]),
        Duration::from_secs(10),
    );
    assert!(id.success(), "no system user syslog2ban: {}", id.describe());
    let state = run(
        command("stat").args(["-c", "%U %a", "/var/lib/syslog2ban"]),
        Duration::from_secs(10),
    );
    assert_eq!(
        state.stdout.trim(),
        "syslog2ban 700",
        "{}",
        state.describe()
    );

    // Every man page the top page names exists and renders.
    let man = |page: &str| {
        run(
            command("man")
                .arg(page)
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "80"),
            Duration::from_secs(30),
        )
    };
    let top = man("syslog2ban");
    assert!(
        top.success() && top.stdout.contains("NAME"),
        "man syslog2ban: {}",
        top.describe()
    );
    let named: Vec<String> = top
        .stdout
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| w.strip_suffix("(1)"))
        .filter(|w| w.starts_with("syslog2ban-"))
        .map(str::to_string)
        .collect();
    assert!(
        named.len() >= 10,
        "the top page names the commands' pages: {named:?}"
    );
    for page in &named {
        let out = man(page);
        assert!(
            out.success() && out.stdout.contains("NAME"),
            "man {page} (named by man syslog2ban): {}",
            out.describe()
        );
    }

    // The README's migration from fail2ban, verbatim (Debian's /etc/fail2ban is installed by
    // install-deps.sh; its sshd jail is enabled): the daemon below then bans with the imported
    // jail, which replaces the shipped native sshd jail.
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README");
    let section = readme
        .split("### Migrating from fail2ban")
        .nth(1)
        .expect("README has a migration section");
    let steps = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the migration section starts with a sh block");
    let imported = Path::new("/etc/syslog2ban/conf.d/zz-fail2ban.toml");
    installed.extra_file = Some(imported);
    for line in steps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let argv: Vec<&str> = line.split_whitespace().collect();
        let out = run(command(argv[0]).args(&argv[1..]), Duration::from_secs(60));
        assert!(
            out.success(),
            "README migration step `{line}`: {}",
            out.describe()
        );
        lab.note(&format!("README step ok: {line}"));
    }
    let imported_text = fs::read_to_string(imported).expect("the README's import wrote its file");
    assert!(imported_text.contains("[jail.sshd]") && imported_text.contains("fail2ban_filter"));

    // Start it as the unit does.
    let unit = fs::read_to_string(UNIT).expect("read the unit");
    let user = unit_value(&unit, "User").expect("the unit names a User");
    let caps: Vec<String> = unit_value(&unit, "AmbientCapabilities")
        .expect("the unit grants ambient capabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    let runtime = unit_value(&unit, "RuntimeDirectory").expect("RuntimeDirectory");
    assert_eq!(runtime, "syslog2ban");
    let runtime_dir = "/run/syslog2ban";
    installed.runtime_dir = (!Path::new(runtime_dir).exists()).then_some(runtime_dir);
    let mkdir = run(
        command("install").args(["-d", "-o", &user, "-g", &user, "-m", "0700", runtime_dir]),
        Duration::from_secs(10),
    );
    assert!(mkdir.success(), "{}", mkdir.describe());
    let as_unit = |line: &str| -> Vec<String> {
        let mut argv = vec![
            "setpriv".to_string(),
            format!("--reuid={user}"),
            format!("--regid={user}"),
            "--init-groups".to_string(),
            format!("--inh-caps={caps}"),
            format!("--ambient-caps={caps}"),
        ];
        argv.extend(line.split_whitespace().map(str::to_string));
        argv
    };
    let pre = unit_value(&unit, "ExecStartPre").expect("ExecStartPre");
    let checked = lab.exec(&ns, &as_unit(&pre), Duration::from_secs(60));
    assert!(
        checked.success(),
        "ExecStartPre as {user}: {}",
        checked.describe()
    );
    let start = unit_value(&unit, "ExecStart").expect("ExecStart");
    lab.spawn("syslog2ban", &ns, &as_unit(&start), &[]);
    lab.wait_ready(
        "syslog2ban",
        "the control socket",
        Duration::from_secs(20),
        |_| {
            run(
                command("/usr/bin/syslog2ban").arg("status"),
                Duration::from_secs(10),
            )
            .success()
        },
    );

    // The imported sshd jail (fail2ban's maxretry 5) over the package's TCP 514 listener.
    for _ in 0..5 {
        let sent = lab.exec(
            &ns,
            &[
                "logger",
                "--server",
                "127.0.0.1",
                "--port",
                "514",
                "--tcp",
                "--octet-count",
                "--rfc5424",
                "-t",
                "sshd",
                &format!("Failed password for root from {ATTACKER} port 4242 ssh2"),
            ],
            Duration::from_secs(10),
        );
        assert!(sent.success(), "logger: {}", sent.describe());
    }
    // The imported jail keeps fail2ban's multiport action: the ban is on port 22 only
    // (banned4port); a jail without `ports` bans every port (banned4). Either is the table's.
    let in_set = || {
        lab.exec(
            &ns,
            &["nft", "list", "table", "inet", "syslog2ban"],
            Duration::from_secs(10),
        )
        .stdout
        .contains(ATTACKER)
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), in_set).is_some(),
        "{ATTACKER} not in the package daemon's nft set; log:\n{}",
        lab.log_of("syslog2ban")
    );
    let banned = run(
        command("/usr/bin/syslog2ban").arg("banned"),
        Duration::from_secs(10),
    );
    assert!(
        banned.stdout.contains(ATTACKER),
        "banned: {}",
        banned.describe()
    );
    lab.note("banned by the installed package");
    drop(lab);
    drop(installed);
}
