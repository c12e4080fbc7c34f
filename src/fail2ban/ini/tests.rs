use super::*;

fn ini(text: &str) -> Ini {
    Ini::parse_str(text, Path::new("test.conf")).unwrap()
}

#[test]
fn values_continuations_and_comments() {
    let i = ini("# head\n[Definition]\nfailregex = ^a\n  ^b ; trailing\n\n# c\n    ^c\nother: x=y\nsemi = a;b\n");
    assert_eq!(
        i.get("Definition", "failregex").unwrap().unwrap(),
        "^a\n^b\n\n^c"
    );
    assert_eq!(i.get("Definition", "other").unwrap().unwrap(), "x=y");
    assert_eq!(i.get("Definition", "semi").unwrap().unwrap(), "a;b");
    assert_eq!(i.get("Definition", "missing").unwrap(), None);
}

#[test]
fn keys_are_case_insensitive_and_repeats_replace() {
    let i = ini("[S]\nKey = 1\nkey = 2\n");
    assert_eq!(i.get("S", "KEY").unwrap().unwrap(), "2");
}

#[test]
fn interpolation_binds_late_to_the_reading_section() {
    let i = ini("[DEFAULT]\n_daemon = \\S*\nprefix = <%(_daemon)s>\n[A]\n_daemon = sshd\nre = %(prefix)s x 100%%\n[B]\nre = %(prefix)s\n");
    assert_eq!(i.get("A", "re").unwrap().unwrap(), "<sshd> x 100%");
    assert_eq!(i.get("B", "re").unwrap().unwrap(), "<\\S*>");
}

#[test]
fn cross_section_known_and_vars() {
    let mut i = ini("[DEFAULT]\nv = d\n[lt_file]\np = file-%(v)s\n[Definition]\nx = %(lt_file/p)s\nf = one\nm = %(mode)s\n");
    i.merge_str("[Definition]\nf = %(known/f)s two\n", Path::new("x.local"))
        .unwrap();
    assert_eq!(i.get("Definition", "x").unwrap().unwrap(), "file-d");
    assert_eq!(i.get("Definition", "f").unwrap().unwrap(), "one two");
    let mut vars = Options::new();
    vars.insert("mode".into(), "aggressive".into());
    assert_eq!(
        i.get_with("Definition", "m", &vars).unwrap().unwrap(),
        "aggressive"
    );
    assert_eq!(
        i.get_ex("Definition", "lt_file/p", &vars).unwrap().unwrap(),
        "file-d"
    );
}

#[test]
fn section_name_and_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("jail.conf"),
        "[DEFAULT]\naction = ban[name=%(__name__)s]\nmaxretry = 5\n[sshd]\nenabled = false\n",
    )
    .unwrap();
    std::fs::write(
        p.join("jail.local"),
        "[sshd]\nenabled = true\nmaxretry = 3\n",
    )
    .unwrap();
    let i = Ini::load_all(&[
        p.join("jail.conf"),
        p.join("absent.local"),
        p.join("jail.local"),
    ])
    .unwrap();
    assert_eq!(i.get("sshd", "action").unwrap().unwrap(), "ban[name=sshd]");
    assert_eq!(i.get("sshd", "enabled").unwrap().unwrap(), "true");
    assert_eq!(i.get("sshd", "maxretry").unwrap().unwrap(), "3");
    assert_eq!(i.sections().collect::<Vec<_>>(), vec!["sshd"]);
}

#[test]
fn errors_are_specific() {
    let i = ini("[S]\na = %(nope)s\nb = 5%\nc = %(c)s\n");
    assert!(matches!(
        i.get("S", "a"),
        Err(IniError::MissingOption { ref name, .. }) if name == "nope"
    ));
    assert!(matches!(
        i.get("S", "b"),
        Err(IniError::Interpolation { .. })
    ));
    assert!(matches!(
        i.get("S", "c"),
        Err(IniError::Interpolation { .. })
    ));
    let e = Ini::parse_str("a = 1\n", Path::new("f.conf")).unwrap_err();
    assert!(e.to_string().starts_with("f.conf:1:"), "{e}");
    let e = Ini::parse_str("[S]\njunk\n", Path::new("f.conf")).unwrap_err();
    assert!(e.to_string().starts_with("f.conf:2:"), "{e}");
}

#[test]
fn includes_and_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(
        p.join("common.conf"),
        "[INCLUDES]\nafter = common.local\n[DEFAULT]\npre = common\n",
    )
    .unwrap();
    std::fs::write(p.join("common.local"), "[DEFAULT]\npre = common-local\n").unwrap();
    std::fs::write(
        p.join("f.conf"),
        "[INCLUDES]\nbefore = common.conf\nafter = missing.conf\n[Definition]\nre = %(pre)s one\n",
    )
    .unwrap();
    std::fs::write(p.join("f.local"), "[Definition]\nre = %(known/re)s two\n").unwrap();
    let i = Ini::load(&p.join("f.conf")).unwrap();
    assert_eq!(
        i.get("Definition", "re").unwrap().unwrap(),
        "common-local one two"
    );
    assert_eq!(i.files().len(), 4);
    assert!(matches!(
        Ini::load(&p.join("absent.conf")),
        Err(IniError::Io { .. })
    ));
}

/// Ten options, each naming the previous one eight times: 465 bytes that would expand to
/// about 1.3 GB (found by the `fail2ban_filter` fuzz target's author, fuzz/README.md).
fn fan_out(reference: impl Fn(&str) -> String) -> String {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut text = String::from("a = 0123456789\n");
    for pair in names.windows(2) {
        text.push_str(&format!("{} = {}\n", pair[1], reference(pair[0]).repeat(8)));
    }
    text
}

#[test]
fn references_that_fan_out_are_refused_instead_of_expanded() {
    let text = format!("[Definition]\n{}", fan_out(|name| format!("%({name})s")));
    let ini = ini(&text);
    let err = ini.get("Definition", "j").unwrap_err();
    assert!(err.to_string().contains("expands past"), "{err}");
    // Moderate sharing still works.
    assert_eq!(ini.get("Definition", "b").unwrap().unwrap().len(), 80);
}
