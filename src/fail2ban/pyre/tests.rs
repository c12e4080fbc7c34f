use super::*;

fn tr(p: &str) -> String {
    translate(p).pattern
}

#[test]
fn python_only_syntax_is_rewritten() {
    assert_eq!(tr(r"a\Z"), r"a\z");
    assert_eq!(tr(r"x{ y}"), r"x\{ y\}");
    assert_eq!(tr(r"a{,3}b{2}c{1,}"), r"a{0,3}b{2}c{1,}");
    assert_eq!(tr(r"[[]x[^]a]"), r"[\[]x[^\]a]");
    assert_eq!(tr(r"\<\>\_\ "), r"\x{3c}\x{3e}\_\x20");
    assert_eq!(tr(r"a(?#note)b"), "ab");
    assert_eq!(tr(r"^foo(?i)bar"), r"(?i)^foobar");
    assert_eq!(tr(r"(?iu)x"), r"(?i)x");
    assert_eq!(tr(r"((?i)x)"), r"((?i)x)");
    assert_eq!(tr(r"a\0b\012[\0]"), r"a\x{0}b\x{a}[\x00]");
}

#[test]
fn engine_choice() {
    assert!(!translate(r"^(?P<user>\S+) from (?:a|b)$").needs_backtracking);
    for p in [
        r"a(?=b)",
        r"(?<!x)y",
        r"(a)\1",
        r"(?P<s>-)x(?P=s)",
        r"(?P<c>a)?(?(c)b|d)",
    ] {
        assert!(translate(p).needs_backtracking, "{p}");
        PyRegex::new(p, Flags::default()).unwrap();
    }
    let re = PyRegex::new(r"(?P<sep>[-/])x(?P=sep)", Flags::default()).unwrap();
    assert_eq!(re.engine(), Engine::Backtracking);
    assert!(re.is_match("-x-") && !re.is_match("-x/"));
    let re = PyRegex::new(r"^(?P<c>a)?(?(c)b|d)$", Flags::default()).unwrap();
    assert!(re.is_match("ab") && re.is_match("d") && !re.is_match("ad"));
}

#[test]
fn search_reports_groups() {
    let re = PyRegex::new(
        r"user (?P<user>\w+)(?: from (?P<ip>\S+))?",
        Flags::default(),
    )
    .unwrap();
    assert_eq!(re.engine(), Engine::Linear);
    let m = re.search("x user bob").unwrap();
    assert_eq!(m.groups.value("user"), Some("bob"));
    assert_eq!(m.groups.get("ip"), Some(&None));
    assert_eq!(m.groups.get("nope"), None);
    assert_eq!((m.start, m.end), (2, 10));
    assert!(PyRegex::new("(", Flags::default()).is_err());
}

#[test]
fn relaxed_patterns_are_linear_supersets() {
    assert_eq!(relax(r"a(?=b)c"), "a(?:)c");
    assert_eq!(relax(r"(?<!x(y))z[(?!]"), "(?:)z[(?!]");
    assert_eq!(relax(r"^a(?=b){0}$"), "^a(?:){0}$");
    assert_eq!(relax(r"(a)\12b"), "(a)(?s:.*)b");
    assert_eq!(relax(r"(?P<s>-)x(?P=s)"), "(?P<s>-)x(?s:.*)");
    assert_eq!(relax(r"(?P<c>a)?(?(<c>)b|d)e"), "(?P<c>a)?(?:b|d)?e");
    assert_eq!(relax(r"(?>a+)(?i)b"), "(?:a+)(?i)b");
    // Every text the backtracking pattern matches, the relaxed one matches too.
    for (p, texts) in [
        (r"^(?P<c>x )?(?(c)a|b)$", &["x a", "b"][..]),
        (r"^(?:(?! from ).)*?y$", &["a y"]),
        (r"^(?P<w>\w+) (?P=w)$", &["ab ab"]),
    ] {
        let exact = PyRegex::new(p, Flags::default()).unwrap();
        assert_eq!(exact.engine(), Engine::Backtracking);
        let relaxed = regex::Regex::new(&exact.superset).unwrap();
        for t in texts {
            assert!(exact.is_match(t) && relaxed.is_match(t), "{p} on {t:?}");
        }
    }
}

#[test]
fn prefilter_keeps_order_and_rejects() {
    let patterns: Vec<PyRegex> = [r"^a(?=b)", r"^x", r"^(?P<u>\w+) (?P=u)$"]
        .iter()
        .map(|p| PyRegex::new(p, Flags::default()).unwrap())
        .collect();
    let pre = Prefilter::new(&patterns);
    assert!(pre.set.is_some());
    let c = pre.candidates("ac");
    assert!(c.may_match(0), "a superset: a candidate, not a match");
    assert!(!patterns[0].is_match("ac"));
    assert!(!c.may_match(1) && !c.may_match(2));
    let c = pre.candidates("xy xz");
    assert!(!c.may_match(0) && c.may_match(1) && c.may_match(2));
}

#[test]
fn backtracking_limit_is_no_match() {
    let re = PyRegex::new(r"^(a+)+(?=b)", Flags::default()).unwrap();
    assert!(!re.is_match(&"a".repeat(40)));
}
