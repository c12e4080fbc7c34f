//! `config::load` on a configuration directory: `syslog2ban.toml` is the input, up to a line
//! `#%conf.d%`; what follows that line becomes `conf.d/fuzz.toml` (a jail file). Errors are
//! expected; asserts only that nothing panics.
#![no_main]

#[path = "../common/scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;

const SPLIT: &[u8] = b"\n#%conf.d%\n";

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir("config");
    let (main, jail) = match data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(i) => (&data[..i], Some(&data[i + SPLIT.len()..])),
        None => (data, None),
    };
    std::fs::write(dir.join("syslog2ban.toml"), main).expect("write main file");
    let conf_d = dir.join("conf.d");
    let jail_file = conf_d.join("fuzz.toml");
    match jail {
        Some(jail) => {
            std::fs::create_dir_all(&conf_d).expect("mkdir conf.d");
            std::fs::write(&jail_file, jail).expect("write jail file");
        }
        None => {
            let _ = std::fs::remove_file(&jail_file);
        }
    }
    let _ = syslog2ban::config::load(dir);
});
