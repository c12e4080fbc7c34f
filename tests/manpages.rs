//! The man pages the package installs (`packaging/man/`) are the ones the CLI writes now:
//! after a change to the CLI, `cargo run -- manpage --dir packaging/man` brings them up to date.

use std::collections::BTreeMap;
use std::path::Path;

fn pages(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).expect("read page");
            (e.file_name().to_string_lossy().into_owned(), text)
        })
        .collect()
}

#[test]
fn packaged_man_pages_match_the_cli() {
    let fresh = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syslog2ban"))
        .args(["manpage", "--dir"])
        .arg(fresh.path())
        .output()
        .expect("run manpage");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = pages(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man"));
    let fresh = pages(fresh.path());
    assert!(
        fresh.contains_key("syslog2ban.1") && fresh.len() > 10,
        "{:?}",
        fresh.keys()
    );
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "packaging/man is stale: cargo run -- manpage --dir packaging/man"
    );
    for (name, text) in &fresh {
        assert!(
            committed.get(name) == Some(text),
            "packaging/man/{name} is stale: cargo run -- manpage --dir packaging/man"
        );
    }
    // Every page the top page names is one of them.
    for named in fresh["syslog2ban.1"]
        .split(|c: char| c.is_whitespace())
        .filter_map(|w| w.strip_suffix("(1)"))
    {
        let file = format!("{}.1", named.replace("\\-", "-"));
        assert!(
            fresh.contains_key(&file),
            "syslog2ban.1 names {file}, which is not written"
        );
    }
}
