//! `integration/install-deps.sh` leaves the host's own services alone and says what it does:
//! run with stand-ins for `id`, `apt-get`, `service` and `cargo` on PATH (nothing is
//! installed, nothing needs root), where sshd was running before and the "install" starts
//! fail2ban. The script must stop fail2ban, leave ssh running, and say both.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn shim(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write shim");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn install_deps_stops_only_what_it_started_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let running = tmp.path().join("running");
    let calls = tmp.path().join("calls");
    std::fs::write(&running, "ssh\n").expect("write");
    let (running, calls) = (running.display(), calls.display());
    shim(&bin, "id", "echo 0");
    shim(&bin, "cargo", "exit 0");
    // The install starts fail2ban, as a package script would without policy-rc.d.
    shim(
        &bin,
        "apt-get",
        &format!("echo \"apt-get $*\" >> {calls}; case \"$*\" in *install*) echo fail2ban >> {running};; esac"),
    );
    shim(
        &bin,
        "service",
        &format!(
            "echo \"service $*\" >> {calls}\n\
             case \"$2\" in\n\
               status) grep -qx \"$1\" {running} ;;\n\
               stop) grep -vx \"$1\" {running} > {running}.new; mv {running}.new {running} ;;\n\
             esac"
        ),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/install-deps.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("S2B_POLICY_RC_D", tmp.path().join("policy-rc.d"))
        .output()
        .expect("run install-deps.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(tmp.path().join("calls")).expect("calls");
    assert!(
        calls.contains("service fail2ban stop"),
        "fail2ban (started by the install) must be stopped:\n{calls}"
    );
    assert!(
        !calls.contains("service ssh stop"),
        "the host's own sshd must be left alone:\n{calls}"
    );
    assert!(
        !calls.contains("service rsyslog stop"),
        "rsyslog was not running:\n{calls}"
    );
    assert!(
        stdout.contains("stopping fail2ban, which the install started")
            && stdout.contains("ssh was already running on this host; left running"),
        "the script says what it did:\n{stdout}"
    );
    assert!(
        !tmp.path().join("policy-rc.d").exists(),
        "its policy-rc.d is removed again"
    );
}
