//! The mount(8) helper: when the binary runs as `mount.s3cryptfs` or `mount.fuse.s3cryptfs`
//! (symlinks made at install), `mount -t s3cryptfs|fuse.s3cryptfs SOURCE DIR -o opts` and
//! fstab entries reach it as `SOURCE DIR -o opt,opt=value`. The options are turned into the
//! arguments of `s3cryptfs mount`; options meant for mount(8) or systemd are ignored.

use std::ffi::OsString;

/// Names the binary answers to as a mount helper.
const HELPER_NAMES: [&str; 2] = ["mount.s3cryptfs", "mount.fuse.s3cryptfs"];

/// Generic mount(8) options and ones meant for fstab or systemd: accepted and ignored, as
/// mount.fuse3 does with what it does not pass on. The mount is always `nosuid,nodev` and
/// `noatime` (safer, and atime updates would be a PUT each); `noexec` and `ro` are ours.
const IGNORED: [&str; 22] = [
    "_netdev",
    "nofail",
    "noauto",
    "auto",
    "user",
    "users",
    "nouser",
    "owner",
    "defaults",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "exec",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
];

/// The long options of `s3cryptfs mount`, from its clap definition, so that every flag the
/// command line has is an `-o` option too: (takes a value, name).
fn mount_options() -> Vec<(bool, String)> {
    let command = <super::args::Cli as clap::CommandFactory>::command();
    let mount = command
        .find_subcommand("mount")
        .expect("the CLI has a mount subcommand");
    mount
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            (long != "help").then(|| (arg.get_action().takes_values(), long.to_string()))
        })
        .collect()
}

/// If the program was invoked under a helper name, the equivalent `s3cryptfs mount` argv.
pub fn as_mount_helper(args: &[OsString]) -> Option<Result<Vec<OsString>, String>> {
    let program = std::path::Path::new(args.first()?).file_name()?.to_str()?;
    if !HELPER_NAMES.contains(&program) {
        return None;
    }
    Some(translate(&args[1..]))
}

/// `SOURCE DIR [-o opts] [-f] [-n] [-s] [-v]` → `s3cryptfs mount SOURCE DIR --flags`; empty
/// for a fake mount (`-f`).
fn translate(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut fake = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("-o") => {
                let opts = it.next().ok_or("-o needs a value")?;
                options.push(opts.to_str().ok_or("options must be UTF-8")?.to_string());
            }
            Some(o) if o.starts_with("-o") => options.push(o[2..].to_string()),
            // -f: fake (do nothing); -n: no mtab; -s: sloppy; -v: verbose (mount(8) passes
            // these through to helpers).
            Some("-f") => fake = true,
            Some("-n" | "-s" | "-v") => {}
            Some(o) if o.starts_with('-') => return Err(format!("unknown helper option {o}")),
            _ => positional.push(arg.clone()),
        }
    }
    let [source, dir] = positional.as_slice() else {
        return Err("usage: mount.s3cryptfs BUCKET[/PREFIX] MOUNTPOINT [-o options]".into());
    };
    let source = source
        .to_str()
        .ok_or("the source must be UTF-8")?
        // The `s3cryptfs#bucket` form of old fstab entries.
        .trim_start_matches("s3cryptfs#")
        .to_string();
    let mut argv: Vec<OsString> = vec![
        "s3cryptfs".into(),
        "mount".into(),
        source.into(),
        dir.clone(),
    ];
    for opts in &options {
        for opt in split_options(opts) {
            argv.extend(option_to_flags(&opt)?);
        }
    }
    // A fake mount checks the options and does nothing else.
    Ok(if fake { Vec::new() } else { argv })
}

/// Splits `a,b=c,d=e\,f` on unescaped commas.
fn split_options(opts: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = opts.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

fn option_to_flags(opt: &str) -> Result<Vec<OsString>, String> {
    let (name, value) = match opt.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (opt, None),
    };
    let normal = name.replace('_', "-");
    if IGNORED.contains(&name) || name.starts_with("x-") || name == "comment" {
        return Ok(Vec::new());
    }
    if (normal == "ro" || normal == "read-only") && value.is_none() {
        return Ok(vec!["--read-only".into()]);
    }
    let known = mount_options();
    let Some((takes_value, long)) = known.iter().find(|(_, long)| *long == normal) else {
        return Err(format!(
            "unknown mount option '{opt}' (the options are the long flags of `s3cryptfs mount --help`)"
        ));
    };
    match (takes_value, value) {
        (true, Some(v)) => Ok(vec![format!("--{long}").into(), v.into()]),
        (true, None) => Err(format!("option {name} needs a value")),
        (false, None) => Ok(vec![format!("--{long}").into()]),
        (false, Some(_)) => Err(format!("option {name} takes no value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Option<Result<Vec<String>, String>> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        as_mount_helper(&args).map(|r| {
            r.map(|v| {
                v.into_iter()
                    .map(|a| a.to_string_lossy().to_string())
                    .collect()
            })
        })
    }

    #[test]
    fn maps_options_and_ignores_mount_ones() {
        let argv = run(&[
            "/sbin/mount.fuse.s3cryptfs",
            "bkt/pre",
            "/mnt/x",
            "-o",
            "rw,_netdev,nofail,x-systemd.automount,comment=hi,key_file=/etc/k\\,ey,allow_other,endpoint-url=http://h:9,force_path_style,uid=5,ro,kms,kms_endpoint_url=http://k:1",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            argv,
            [
                "s3cryptfs",
                "mount",
                "bkt/pre",
                "/mnt/x",
                "--key-file",
                "/etc/k,ey",
                "--allow-other",
                "--endpoint-url",
                "http://h:9",
                "--force-path-style",
                "--uid",
                "5",
                "--read-only",
                "--kms",
                "--kms-endpoint-url",
                "http://k:1"
            ]
        );
    }

    #[test]
    fn every_long_flag_of_mount_is_an_option() {
        let options = mount_options();
        for name in [
            "key-file",
            "passphrase-file",
            "kms",
            "metrics-addr",
            "cache-dir",
            "max-cache-size",
            "allow-core-dumps",
            "noexec",
        ] {
            assert!(options.iter().any(|(_, long)| long == name), "{name}");
        }
        for (takes_value, long) in &options {
            let underscored = long.replace('-', "_");
            let opt = if *takes_value {
                format!("{underscored}=v")
            } else {
                underscored
            };
            let argv = run(&["mount.s3cryptfs", "b", "/m", "-o", &opt])
                .unwrap()
                .unwrap_or_else(|e| panic!("{opt}: {e}"));
            assert_eq!(argv[4], format!("--{long}"), "{opt}");
            if *takes_value {
                assert_eq!(argv[5], "v");
            }
        }
        for generic in IGNORED {
            let argv = run(&["mount.s3cryptfs", "b", "/m", "-o", generic])
                .unwrap()
                .unwrap();
            assert_eq!(argv.len(), 4, "{generic}");
        }
        assert!(
            run(&["mount.s3cryptfs", "b", "/m", "-o", "allow_other=1"])
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn other_names_are_not_helpers_and_bad_input_is_refused() {
        assert!(run(&["s3cryptfs", "mount", "b", "/m"]).is_none());
        assert!(run(&["mount.s3cryptfs", "b"]).unwrap().is_err());
        assert!(
            run(&["mount.s3cryptfs", "b", "/m", "-o", "bogus=1"])
                .unwrap()
                .is_err()
        );
        assert!(
            run(&["mount.s3cryptfs", "b", "/m", "-o", "key_file"])
                .unwrap()
                .is_err()
        );
        assert_eq!(
            run(&[
                "mount.s3cryptfs",
                "s3cryptfs#b",
                "/m",
                "-o",
                "key-file=/k",
                "-n"
            ])
            .unwrap()
            .unwrap()[2],
            "b"
        );
    }
}
