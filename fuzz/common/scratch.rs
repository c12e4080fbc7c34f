//! A scratch directory made once per fuzzing process, for the targets whose API takes a path.
//!
//! libFuzzer leaves through `exit()`, so no destructor would remove a `tempfile::TempDir`:
//! each process instead takes `$TMPDIR/syslog2ban-fuzz/<target>-<pid>` and removes the
//! directories of processes that are gone (fork mode starts many).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch directory, created empty on first use.
pub fn dir(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("syslog2ban-fuzz");
        std::fs::create_dir_all(&root).expect("create scratch root");
        let prefix = format!("{target}-");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = root.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}
