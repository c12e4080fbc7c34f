//! Config files a user might write: everything in `tests/config/valid/` loads; everything in
//! `tests/config/invalid/` fails with an error naming the file and the key given in its
//! `# expect: KEY` first line. The shipped examples load too.

use std::fs;
use std::path::{Path, PathBuf};

use syslog2ban::config;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn toml_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .expect("directory exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_configs_load() {
    let files = toml_files(&dir("tests/config/valid"));
    assert!(files.len() >= 2);
    for file in files {
        if let Err(e) = config::load(&file) {
            panic!("{} should load:\n{e}", file.display());
        }
    }
}

#[test]
fn invalid_configs_name_file_and_key() {
    let files = toml_files(&dir("tests/config/invalid"));
    assert!(files.len() >= 10);
    for file in files {
        let text = fs::read_to_string(&file).expect("readable");
        let key = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be '# expect: KEY'", file.display()));
        let errors = match config::load(&file) {
            Ok(_) => panic!("{} should not load", file.display()),
            Err(e) => e.0,
        };
        assert!(
            errors
                .iter()
                .any(|e| e.key == key && e.file.as_deref() == Some(file.as_path())),
            "{}: expected an error at key '{key}' naming the file, got:\n{}",
            file.display(),
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn shipped_examples_load() {
    let quickstart = config::load(&dir("examples/quickstart.toml")).expect("quickstart loads");
    assert!(quickstart.jails.iter().any(|j| j.name.as_str() == "sshd"));
    config::load(&dir("examples/syslog2ban.toml")).expect("example loads");
    let webhook =
        config::load(&dir("examples/notify-webhook.toml")).expect("the webhook example loads");
    assert_eq!(webhook.notifiers.len(), 5);
    let mail = config::load(&dir("examples/notify-mail.toml")).expect("the mail example loads");
    assert_eq!(mail.notifiers.len(), 2);
    assert!(mail.notifiers.iter().any(|n| n.digest.is_some()));
    let feed = config::load(&dir("examples/feed-blocklist.toml")).expect("the feed example loads");
    let cluster = config::load(&dir("examples/cluster.toml")).expect("the cluster example loads");
    let c = cluster.cluster.expect("a [cluster]");
    assert_eq!((c.node.as_str(), c.urls[0].tls), ("collector-a", true));
    assert_eq!(c.announce_delay, std::time::Duration::from_secs(3));
    assert_eq!(feed.feeds[0].jail.as_str(), "feed-blocklist_de_ssh");
    assert_eq!(webhook.jails[0].notify.len(), 5);
}
