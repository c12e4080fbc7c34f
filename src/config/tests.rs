use super::*;
use std::fs;
use std::time::Duration;

const MAIN: &str = r#"
[[listen]]
type = "udp"
address = "127.0.0.1:5514"

[[listen]]
type = "tcp"
address = "127.0.0.1:5514"

[defaults]
maxretry = 5
findtime = "10m"
bantime = "1h"

[ban]
backend = "log"
"#;

const SSHD: &str = r#"
[jail.sshd]
enabled = true
programs = ["sshd", "sshd-session"]
failregex = ['^Failed password for \S+ from <HOST> port \d+ ssh2$']
"#;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
    for (name, text) in files {
        fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

fn load_no_env(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(
        path,
        Env::prefixed("SYSLOG2BAN_TEST_NEVER_SET_").split("__"),
    )
}

#[test]
fn loads_main_and_conf_d_with_defaults() {
    let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/sshd.toml", SSHD)]);
    let config = load_no_env(dir.path()).expect("valid");
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(config.jails.len(), 1);
    let sshd = &config.jails[0];
    assert_eq!(sshd.name.as_str(), "sshd");
    assert_eq!(sshd.maxretry, 5);
    assert_eq!(sshd.findtime, Duration::from_secs(600));
    assert_eq!(sshd.bantime, BanTime::For(Duration::from_secs(3600)));
    assert_eq!(sshd.ignoreip.len(), 2);
    assert_eq!(config.ban.backend, Backend::Log);
}

#[test]
fn later_conf_d_file_overrides_one_key() {
    let dir = dir_with(&[
        ("syslog2ban.toml", MAIN),
        ("conf.d/sshd.toml", SSHD),
        (
            "conf.d/zz-local.toml",
            "[jail.sshd]\nmaxretry = 3\nbantime = -1\n",
        ),
    ]);
    let config = load_no_env(dir.path()).expect("valid");
    let sshd = &config.jails[0];
    assert_eq!(sshd.maxretry, 3);
    assert_eq!(sshd.bantime, BanTime::Permanent);
    assert_eq!(sshd.programs, vec!["sshd", "sshd-session"]);
    assert_eq!(sshd.findtime, Duration::from_secs(600));
}

#[test]
#[allow(clippy::result_large_err)] // figment's test jail API, not ours
fn environment_overrides_a_key() {
    let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/sshd.toml", SSHD)]);
    figment::Jail::expect_with(|jail| {
        jail.set_env("SYSLOG2BAN_JAIL__SSHD__MAXRETRY", "2");
        let config = load(dir.path()).expect("valid");
        assert_eq!(config.jails[0].maxretry, 2);
        Ok(())
    });
}

#[test]
fn errors_name_file_key_and_line() {
    let dir = dir_with(&[
        ("syslog2ban.toml", MAIN),
        ("conf.d/sshd.toml", SSHD),
        (
            "conf.d/zz-local.toml",
            "[jail.sshd]\nmaxretry = 0\nfindtime = \"soon\"\nignoreip = [\"10.0.0.0/8\", \"nope\"]\n",
        ),
    ]);
    let errors = load_no_env(dir.path()).unwrap_err().0;
    let local = dir.path().join("conf.d/zz-local.toml");
    let find = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"))
    };
    assert_eq!(find("jail.sshd.maxretry").file.as_ref(), Some(&local));
    assert_eq!(find("jail.sshd.maxretry").line, Some(2));
    assert!(find("jail.sshd.findtime").message.contains("soon"));
    assert_eq!(find("jail.sshd.ignoreip[1]").line, Some(4));
}

#[test]
fn a_key_of_another_listener_type_is_an_unknown_key() {
    for (listener, key) in [
        (
            "type = \"udp\"\naddress = \"127.0.0.1:514\"\nidle_timeout = \"1m\"\n",
            "idle_timeout",
        ),
        (
            "type = \"unix\"\npath = \"/dev/log\"\nallow = [\"127.0.0.1\"]\n",
            "allow",
        ),
        (
            "type = \"tcp\"\naddress = \"127.0.0.1:514\"\ncert = \"/c.pem\"\n",
            "cert",
        ),
        (
            "type = \"journal-stream\"\naddress = \"127.0.0.1:514\"\nrecv_buffer = 4096\n",
            "recv_buffer",
        ),
    ] {
        let dir = dir_with(&[("syslog2ban.toml", &format!("[[listen]]\n{listener}"))]);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        let key = format!("listen[0].{key}");
        let e = errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"));
        assert!(e.message.starts_with("unknown key for type"), "{e:?}");
        assert_eq!(
            e.file.as_deref(),
            Some(dir.path().join("syslog2ban.toml").as_path())
        );
    }
}

#[test]
fn unknown_keys_are_rejected_with_file() {
    let dir = dir_with(&[
        ("syslog2ban.toml", MAIN),
        ("conf.d/sshd.toml", &format!("{SSHD}maxretyr = 3\n")),
    ]);
    let errors = load_no_env(dir.path()).unwrap_err().0;
    let e = errors
        .iter()
        .find(|e| e.key == "jail.sshd.maxretyr")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!(e.message, "unknown key");
    assert_eq!(e.file.as_ref(), Some(&dir.path().join("conf.d/sshd.toml")));

    let dir = dir_with(&[(
        "syslog2ban.toml",
        &format!("{MAIN}\n[bogus]\nx = 1\n")
            .replace("backend = \"log\"", "backend = \"log\"\nfoo = 1"),
    )]);
    let errors = load_no_env(dir.path()).unwrap_err().0;
    assert!(
        errors
            .iter()
            .any(|e| e.key == "bogus" || e.key == "ban.foo"),
        "{errors:?}"
    );
}

#[test]
fn type_errors_inside_a_jail_name_the_key_and_line() {
    let dir = dir_with(&[
        ("syslog2ban.toml", MAIN),
        ("conf.d/sshd.toml", SSHD),
        ("conf.d/zz-local.toml", "[jail.sshd]\nmaxretry = \"lots\"\n"),
    ]);
    let errors = load_no_env(dir.path()).unwrap_err().0;
    let e = errors
        .iter()
        .find(|e| e.key == "jail.sshd.maxretry")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!(
        e.file.as_ref(),
        Some(&dir.path().join("conf.d/zz-local.toml"))
    );
    assert_eq!(e.line, Some(2));
}

#[test]
fn bad_listener_and_regex_are_reported() {
    let main = MAIN.replace(
        "127.0.0.1:5514\"\n\n[[listen]]",
        "localhost\"\n\n[[listen]]",
    );
    let dir = dir_with(&[
        ("syslog2ban.toml", &main),
        (
            "conf.d/sshd.toml",
            "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\nfailregex = ['from <HOST>']\n",
        ),
    ]);
    let errors = load_no_env(dir.path()).unwrap_err().0;
    assert!(
        errors.iter().any(|e| e.key == "listen[0].address"),
        "{errors:?}"
    );
    let regex = errors
        .iter()
        .find(|e| e.key == "jail.sshd.failregex[0]")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(regex.message.contains("must start with '^'"));
}

#[test]
fn jail_names_are_restricted() {
    assert!(JailName::new("sshd-2_a").is_ok());
    assert!(JailName::new("ssh d").is_err());
    assert!(JailName::new("").is_err());
}

#[test]
fn a_jail_may_not_take_a_feeds_jail_name() {
    let jail =
        "[jail.feed-bl]\nenabled = true\nprograms = [\"sshd\"]\nfailregex = ['^x <HOST>$']\n";
    let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/f.toml", jail)]);
    let errors = load_no_env(dir.path()).unwrap_err().to_string();
    assert!(
        errors.contains("jail.feed-bl") && errors.contains("blocklist feeds"),
        "{errors}"
    );
}

/// A fail2ban-style filter written for these tests.
const DEMO_FILTER: &str = "[DEFAULT]\n_daemon = demo(?:-auth)?\n[Definition]\nfailregex = ^(?:\\S+ )?%(_daemon)s(?:\\[\\d+\\])?: bad <what> from <HOST>$\n[Init]\nwhat = login\n";

#[test]
fn jail_with_a_fail2ban_filter() {
    let dir = dir_with(&[
        ("syslog2ban.toml", MAIN),
        (
            "conf.d/demo.toml",
            "[jail.demo]\nenabled = true\nfail2ban_filter = \"filters/demo.conf[what=attempt]\"\nignoreregex = ['from 10\\.']\n",
        ),
    ]);
    fs::create_dir(dir.path().join("conf.d/filters")).expect("mkdir");
    fs::write(dir.path().join("conf.d/filters/demo.conf"), DEMO_FILTER).expect("write");
    let config = load_no_env(dir.path()).expect("loads");
    let demo = config
        .jails
        .iter()
        .find(|j| j.name.as_str() == "demo")
        .expect("demo jail");
    assert_eq!(demo.programs, vec!["demo", "demo-auth"]);
    let source = demo.fail2ban.as_ref().expect("fail2ban filter");
    assert_eq!(source.spec, "filters/demo.conf[what=attempt]");
    assert!(source
        .filter
        .failregex_source(0)
        .is_some_and(|r| r.contains("bad attempt from")));
    assert!(demo.filter.is_ignored("bad attempt from 10.0.0.1"));
}

#[test]
fn fail2ban_filter_errors_name_file_and_key() {
    let cases = [
        (
            "fail2ban_filter = \"filters/demo.conf\"\nfailregex = ['^x <HOST>$']\n",
            "jail.demo.fail2ban_filter",
            "not both",
        ),
        (
            "fail2ban_filter = \"filters/missing.conf\"\n",
            "jail.demo.fail2ban_filter",
            "missing.conf: cannot read",
        ),
        (
            "fail2ban_filter = \"filters/open.conf\"\n",
            "jail.demo.programs",
            "names no fixed program",
        ),
        (
            "fail2ban_filter = \"filters/demo.conf[what\"\n",
            "jail.demo.fail2ban_filter",
            "bad filter options",
        ),
    ];
    for (jail, key, message) in cases {
        let dir = dir_with(&[
            ("syslog2ban.toml", MAIN),
            (
                "conf.d/demo.toml",
                &format!("[jail.demo]\nenabled = true\n{jail}"),
            ),
        ]);
        fs::create_dir(dir.path().join("conf.d/filters")).expect("mkdir");
        fs::write(dir.path().join("conf.d/filters/demo.conf"), DEMO_FILTER).expect("write");
        fs::write(
            dir.path().join("conf.d/filters/open.conf"),
            "[Definition]\nfailregex = ^<HOST>$\n",
        )
        .expect("write");
        let errors = load_no_env(dir.path()).expect_err(key).0;
        let error = errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"));
        assert!(error.message.contains(message), "{error:?}");
        assert_eq!(
            error.file.as_deref(),
            Some(dir.path().join("conf.d/demo.toml").as_path())
        );
    }
}

#[test]
#[allow(clippy::result_large_err)] // figment's test jail API, not ours
fn test_knobs_are_not_config_keys_but_unknown_prefixed_ones_are_errors() {
    let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/sshd.toml", SSHD)]);
    let path = dir.path().to_path_buf();
    figment::Jail::expect_with(move |jail| {
        jail.set_env("S2B_F2B_CORPUS", "/somewhere/corpus");
        load(&path).map_err(|e| e.to_string())?;
        jail.set_env("SYSLOG2BAN_NOT_A_KEY", "1");
        let err = load(&path).expect_err("unknown key");
        assert!(err.to_string().contains("not_a_key"), "{err}");
        Ok(())
    });
}

#[test]
fn every_broken_section_is_reported_with_its_line() {
    let main =
        format!("{MAIN}\n[bann]\nx = 1\n\n[control]\nsockt = \"/tmp/x\"\n\n[state]\ndir = 5\n");
    let dir = dir_with(&[("syslog2ban.toml", &main)]);
    let errors = load_no_env(dir.path()).unwrap_err().0;
    let line_of = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error at {key}: {errors:?}"))
            .line
    };
    let text_line = |needle: &str| main.lines().position(|l| l.trim() == needle).map(|n| n + 1);
    assert_eq!(line_of("bann"), text_line("[bann]"));
    assert_eq!(line_of("control.sockt"), text_line("sockt = \"/tmp/x\""));
    assert_eq!(line_of("state.dir"), text_line("dir = 5"));
}

#[test]
fn a_missing_file_is_named_without_a_key_placeholder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = load_no_env(dir.path()).unwrap_err().to_string();
    assert!(
        text.ends_with("syslog2ban.toml: configuration file not found"),
        "{text}"
    );
    assert!(!text.contains("-:"), "{text}");
}

#[test]
fn a_jail_mode_adds_its_patterns_and_those_it_includes() {
    let jail = |mode: &str| {
        format!(
            "[jail.web]\nenabled = true\nprograms = [\"web\"]\nmode = \"{mode}\"\n\
             failregex = ['^auth failed from <HOST>$']\n\
             [jail.web.modes.ddos]\nfailregex = ['^flood from <HOST>$']\n\
             [jail.web.modes.extra]\nfailregex = ['^probe from <HOST>$']\n\
             [jail.web.modes.aggressive]\nincludes = [\"ddos\", \"extra\"]\n"
        )
    };
    let patterns = |mode: &str| {
        let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/web.toml", &jail(mode))]);
        let config = load_no_env(dir.path()).unwrap_or_else(|e| panic!("{mode}: {e}"));
        let web = config
            .jails
            .iter()
            .find(|j| j.name.as_str() == "web")
            .unwrap();
        (0..web.filter.failregex_count())
            .filter_map(|i| web.filter.failregex_source(i).map(str::to_string))
            .map(|p| p.split(" from").next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(patterns("normal"), ["^auth failed"]);
    assert_eq!(patterns("ddos"), ["^auth failed", "^flood"]);
    assert_eq!(patterns("aggressive"), ["^auth failed", "^flood", "^probe"]);
    let dir = dir_with(&[
        ("syslog2ban.toml", MAIN),
        ("conf.d/web.toml", &jail("loud")),
    ]);
    let e = load_no_env(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("jail.web.mode") && e.contains("normal, aggressive, ddos, extra"),
        "{e}"
    );
}

#[test]
fn each_backend_takes_its_own_keys_and_says_whose_a_stray_key_is() {
    let with_ban = |ban: &str| {
        let main = MAIN.replace("backend = \"log\"\n", ban);
        dir_with(&[("syslog2ban.toml", &main)])
    };
    let dir = with_ban(
        "backend = \"command\"\nban = [\"/usr/local/sbin/block\", \"<ip>\", \"<jail>\"]\n\
         unban = [\"/usr/local/sbin/unblock\", \"<ip>\"]\ncommand_timeout = \"3s\"\n",
    );
    let config = load_no_env(dir.path()).unwrap();
    let Backend::Command(command) = &config.ban.backend else {
        panic!("{:?}", config.ban.backend)
    };
    assert_eq!(command.timeout, Duration::from_secs(3));
    assert_eq!(command.concurrency, 4);
    assert_eq!(command.ban.args.len(), 2);

    let dir = with_ban("backend = \"hosts-deny\"\nhosts_deny = \"/srv/hosts.deny\"\n");
    let config = load_no_env(dir.path()).unwrap();
    assert_eq!(
        config.ban.backend,
        Backend::HostsDeny(HostsDenyConfig {
            path: "/srv/hosts.deny".into(),
            daemons: "ALL".into(),
        })
    );

    for (ban, key, needle) in [
        (
            "backend = \"ipset\"\nhosts_deny = \"/x\"\n",
            "ban.hosts_deny",
            "backend \"hosts-deny\"",
        ),
        (
            "backend = \"command\"\nban = [\"/bin/x\", \"<address>\"]\nunban = [\"/bin/x\"]\n",
            "ban.ban",
            "unknown placeholder <address>",
        ),
        (
            "backend = \"command\"\nban = [\"/bin/x\"]\n",
            "ban.unban",
            "needs it",
        ),
        ("backend = \"iptables\"\n", "ban.backend", "\"ipset\""),
        (
            "backend = \"ipset\"\ntable = \"a_table_name_far_too_long_for_ipset\"\n",
            "ban.table",
            "26",
        ),
    ] {
        let dir = with_ban(ban);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        let e = errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{ban}: {errors:?}"));
        assert!(e.message.contains(needle), "{ban}: {}", e.message);
    }
}

#[test]
fn recidive_hears_the_default_notifiers_unless_it_names_its_own() {
    let notifiers = "\n[notify.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n\
                     [notify.mail]\ntype = \"mail\"\nsmtp = \"localhost\"\ntls = \"none\"\n\
                     from = \"s2b@example.org\"\nto = [\"ops@example.org\"]\n";
    let main = format!("{MAIN}{notifiers}[recidive]\nenabled = true\n")
        .replace("[defaults]\n", "[defaults]\nnotify = [\"ops\"]\n");
    let dir = dir_with(&[("syslog2ban.toml", &main), ("conf.d/sshd.toml", SSHD)]);
    let config = load_no_env(dir.path()).expect("valid");
    let recidive = config.recidive.expect("enabled");
    assert_eq!(recidive.notify.len(), 1);
    assert_eq!(recidive.notify[0].as_str(), "ops");
    let main = main.replace(
        "enabled = true\n",
        "enabled = true\nnotify = [\"mail\", \"nobody\"]\n",
    );
    let dir = dir_with(&[("syslog2ban.toml", &main), ("conf.d/sshd.toml", SSHD)]);
    let errors = load_no_env(dir.path()).expect_err("nobody is not a notifier");
    assert!(
        errors.to_string().contains("recidive.notify[1]"),
        "{errors}"
    );
}

#[test]
fn two_targets_managing_the_same_table_on_one_host_are_refused() {
    let target = |name: &str, address: &str, extra: &str| {
        format!("\n[target.{name}]\naddress = \"{address}\"\norigins = [\"{name}\"]\n{extra}")
    };
    let load = |targets: &str| {
        let main = format!("{MAIN}{targets}");
        let dir = dir_with(&[("syslog2ban.toml", &main)]);
        load_no_env(dir.path())
    };
    // The same host and port, both on [ban] table: refused on the second, naming the first.
    let errors = load(&format!(
        "{}{}",
        target("a", "web1.example", ""),
        target("b", "WEB1.example", "user = \"deploy\"\nsudo = true\n")
    ))
    .unwrap_err()
    .0;
    let e = errors
        .iter()
        .find(|e| e.key == "target.b.address")
        .unwrap_or_else(|| panic!("{errors:?}"));
    assert!(
        e.message.contains("target.a's host") && e.message.contains("syslog2ban"),
        "{}",
        e.message
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    // A table of its own, another port, or another host: fine.
    for second in [
        target("b", "web1.example", "table = \"viasudo\"\n"),
        target("b", "web1.example", "port = 2222\n"),
        target("b", "web2.example", ""),
        target("b", "web1.example", "backend = \"ipset\"\n"),
    ] {
        let config = load(&format!("{}{second}", target("a", "web1.example", "")))
            .unwrap_or_else(|e| panic!("{second}: {e:?}"));
        assert_eq!(config.targets.len(), 2);
    }
}
