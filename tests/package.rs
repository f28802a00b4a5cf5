//! The Debian package: `cargo deb` builds it from the metadata in Cargo.toml (from the binary
//! the tests use, not a second release build), and dpkg installs it into a scratch root.

mod common;

use std::path::Path;
use std::process::Command;

use common::mount::stderr;

fn dpkg(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // The scratch root has no packages at all (no libc6, no fuse3 to depend on).
        .arg("--force-depends")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_deb_installs_the_binary_helpers_and_units() {
    let out_dir = tempfile::tempdir().unwrap();
    let built = Command::new("cargo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "deb",
            "--no-build",
            "--no-strip",
            "--fast",
            "--profile",
            "dev",
            "--output",
        ])
        .arg(out_dir.path())
        .output()
        .expect("cargo deb (installed by scripts/install-test-deps.sh)");
    assert!(built.status.success(), "cargo deb: {}", stderr(&built));
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let fields = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .args(["Package", "Depends", "Section"])
        .output()
        .unwrap();
    let fields = String::from_utf8_lossy(&fields.stdout).to_string();
    assert!(fields.contains("Package: s3cryptfs"), "{fields}");
    assert!(fields.contains("fuse3"), "Depends names fuse3: {fields}");

    let root = tempfile::tempdir().unwrap();
    let admin = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    std::fs::write(admin.join("status"), "").unwrap();
    let out = dpkg(root.path(), &["--install", &deb.to_string_lossy()]);
    assert!(out.status.success(), "dpkg --install: {}", stderr(&out));

    let installed = |rel: &str| root.path().join(rel);
    let binary = installed("usr/bin/s3cryptfs");
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert!(version.status.success(), "{}", stderr(&version));
    for helper in ["sbin/mount.s3cryptfs", "sbin/mount.fuse.s3cryptfs"] {
        let link = std::fs::read_link(installed(helper)).unwrap();
        // Inside the scratch root: an absolute target is taken from its top.
        let resolved = match link.strip_prefix("/") {
            Ok(from_top) => root.path().join(from_top),
            Err(_) => installed(helper).parent().unwrap().join(&link),
        };
        assert_eq!(
            std::fs::canonicalize(resolved).unwrap(),
            std::fs::canonicalize(&binary).unwrap(),
            "{helper} -> {}",
            link.display()
        );
    }
    let unit =
        std::fs::read_to_string(installed("usr/lib/systemd/system/s3cryptfs@.service")).unwrap();
    assert!(unit.contains("LimitCORE=0"), "{unit}");
    let drop_in = std::fs::read_to_string(installed(
        "usr/lib/systemd/system/s3cryptfs@.service.d/deb.conf",
    ))
    .unwrap();
    assert!(
        drop_in.contains("ExecStart=/usr/bin/s3cryptfs mount"),
        "{drop_in}"
    );
    assert!(installed("usr/share/doc/s3cryptfs/examples/fstab.example").is_file());
    assert!(installed("usr/share/doc/s3cryptfs/KEYS.md").is_file());

    let out = dpkg(root.path(), &["--remove", "s3cryptfs"]);
    assert!(out.status.success(), "dpkg --remove: {}", stderr(&out));
    assert!(!binary.exists() && !installed("sbin/mount.s3cryptfs").exists());
}
