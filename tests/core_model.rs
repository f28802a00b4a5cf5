//! Reference-model test of the filesystem core: random sequences of namespace and file
//! operations run against the core (on the in-memory store, no FUSE) and against a plain
//! local directory, compared after every step: the same success or errno, the same bytes
//! read back, the same entries listed, the same permissions; remounts in between check that
//! what was saved is what the model holds.
//!
//! Each run prints its seed; `CORE_MODEL_SEED=<seed>` replays one, `CORE_MODEL_OPS=<n>` sets
//! the operations per seed (bench: `CORE_MODEL_OPS=100000`), `CORE_MODEL_TRACE=<text>` prints
//! every step whose description contains the text (and every remount) with both outcomes,
//! `CORE_MODEL_CHECK_EVERY_STEP=1` compares the whole tree after every step.
//!
//! With injected store failures, an operation may fail with an errno; then the file it
//! touched must hold either its contents from before or the ones the operation meant to
//! write, never a mix, never other bytes.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::in_process::{Core, Errno, FileOp, Settings};
use s3cryptfs::fs::NodeKind;
use s3cryptfs::store::StoreErrorKind;

/// A small deterministic generator (xorshift64*): a seed replays a run exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// Sizes that cross the 64 KiB segment boundaries and stay small enough to be fast.
    fn size(&mut self) -> usize {
        match self.below(4) {
            0 => self.below(100) as usize,
            1 => 65536 + self.below(3) as usize - 1,
            _ => self.below(200_000) as usize,
        }
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let fill = self.next();
        (0..len)
            .map(|i| (fill.wrapping_add(i as u64 * 0x9e37_79b9) >> 24) as u8)
            .collect()
    }
}

#[derive(Debug, Clone)]
enum Step {
    WriteNew(Vec<String>, Vec<Vec<u8>>),
    /// A new file written out of order, resized and read back through its one descriptor.
    NewFileOps(Vec<String>, Vec<FileOp>),
    /// An existing file opened, then unlinked (no target) or renamed while open, then
    /// written, resized and read through that descriptor.
    OpsAfterLosingName(Vec<String>, Option<Vec<String>>, Vec<FileOp>),
    WriteAt(Vec<String>, u64, Vec<u8>),
    Truncate(Vec<String>, u64),
    Read(Vec<String>, u32),
    Mkdir(Vec<String>),
    Unlink(Vec<String>),
    Rmdir(Vec<String>),
    Rename(Vec<String>, Vec<String>),
    List(Vec<String>),
    Chmod(Vec<String>, u32),
    Remount,
}

const NAMES: &[&str] = &["a", "b", "c", "d"];

fn random_path(rng: &mut Rng) -> Vec<String> {
    let depth = 1 + rng.below(3) as usize;
    (0..depth).map(|_| rng.pick(NAMES).to_string()).collect()
}

fn random_step(rng: &mut Rng, with_namespace: bool) -> Step {
    let path = if with_namespace {
        random_path(rng)
    } else {
        vec![rng.pick(NAMES).to_string()]
    };
    let choice = rng.below(if with_namespace { 100 } else { 50 });
    match choice {
        0..=14 => {
            let size = rng.size();
            let mut chunks = Vec::new();
            let mut left = size;
            while left > 0 {
                let n = (1 + rng.below(70_000) as usize).min(left);
                chunks.push(rng.bytes(n));
                left -= n;
            }
            Step::WriteNew(path, chunks)
        }
        93..=96 => Step::NewFileOps(path, random_ops(rng)),
        97..=99 => {
            let to = (rng.below(2) == 0).then(|| random_path(rng));
            Step::OpsAfterLosingName(path, to, random_ops(rng))
        }
        15..=24 => {
            let offset = rng.below(210_000);
            let max = if rng.below(2) == 0 { 100 } else { 70_000 };
            let len = 1 + rng.below(max) as usize;
            Step::WriteAt(path, offset, rng.bytes(len))
        }
        25..=31 => Step::Truncate(path, rng.size() as u64),
        32..=45 => Step::Read(path, *rng.pick(&[4096u32, 65536, 131072])),
        46..=47 => Step::Remount,
        48..=49 => Step::Chmod(path, *rng.pick(&[0o600u32, 0o644, 0o755, 0o400])),
        50..=61 => Step::Mkdir(path),
        62..=71 => Step::Unlink(path),
        72..=79 => Step::Rmdir(path),
        80..=91 => Step::Rename(path, random_path(rng)),
        92 => Step::List(path[..path.len() - 1].to_vec()),
        _ => Step::List(path[..path.len() - 1].to_vec()),
    }
}

/// Writes anywhere, resizes and reads through one descriptor.
fn random_ops(rng: &mut Rng) -> Vec<FileOp> {
    let mut ops = Vec::new();
    for _ in 0..1 + rng.below(8) {
        ops.push(match rng.below(4) {
            0 | 1 => {
                let offset = rng.below(150_000);
                let len = 1 + rng.below(70_000) as usize;
                FileOp::Write(offset, rng.bytes(len))
            }
            2 => FileOp::Truncate(rng.size() as u64),
            _ => FileOp::Read(rng.below(150_000), 1 + rng.below(131_072) as u32),
        });
    }
    ops
}

/// `ops` through the open file `f`: the bytes the reads returned, concatenated.
fn local_ops(f: &mut std::fs::File, ops: &[FileOp]) -> Result<Vec<u8>, Errno> {
    let mut reads = Vec::new();
    for op in ops {
        match op {
            FileOp::Write(offset, data) => {
                f.seek(SeekFrom::Start(*offset)).map_err(errno)?;
                f.write_all(data).map_err(errno)?;
            }
            FileOp::Truncate(size) => f.set_len(*size).map_err(errno)?,
            FileOp::Read(offset, len) => {
                let mut buf = vec![0u8; *len as usize];
                let n = std::os::unix::fs::FileExt::read_at(f, &mut buf, *offset).map_err(errno)?;
                buf.truncate(n);
                reads.push(buf);
            }
        }
    }
    Ok(reads.concat())
}

/// The same operations on a local directory.
struct Local {
    root: PathBuf,
}

fn errno(e: std::io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Local {
    fn path(&self, p: &[String]) -> PathBuf {
        p.iter().fold(self.root.clone(), |acc, c| acc.join(c))
    }

    fn apply(&self, step: &Step) -> Result<Option<Vec<u8>>, Errno> {
        use std::fs;
        match step {
            Step::WriteNew(p, chunks) => {
                let mut f = fs::File::create(self.path(p)).map_err(errno)?;
                for c in chunks {
                    f.write_all(c).map_err(errno)?;
                }
                Ok(None)
            }
            Step::NewFileOps(p, ops) => {
                let path = self.path(p);
                if path.is_dir() {
                    return Err(libc::EISDIR);
                }
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(path)
                    .map_err(errno)?;
                local_ops(&mut f, ops).map(Some)
            }
            Step::OpsAfterLosingName(p, to, ops) => {
                let path = self.path(p);
                if path.is_dir() {
                    return Err(libc::EISDIR);
                }
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(errno)?;
                match to {
                    None => fs::remove_file(&path).map_err(errno)?,
                    Some(to) => fs::rename(&path, self.path(to)).map_err(errno)?,
                }
                local_ops(&mut f, ops).map(Some)
            }
            Step::WriteAt(p, offset, data) => {
                let path = self.path(p);
                if path.is_dir() {
                    return Err(libc::EISDIR);
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(errno)?;
                f.seek(SeekFrom::Start(*offset)).map_err(errno)?;
                f.write_all(data).map_err(errno)?;
                Ok(None)
            }
            Step::Truncate(p, size) => {
                let path = self.path(p);
                if path.is_dir() {
                    return Err(libc::EISDIR);
                }
                fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(*size))
                    .map_err(errno)?;
                Ok(None)
            }
            Step::Read(p, _) => {
                let path = self.path(p);
                if path.is_dir() {
                    return Err(libc::EISDIR);
                }
                fs::read(path).map(Some).map_err(errno)
            }
            Step::Mkdir(p) => {
                let path = self.path(p);
                fs::create_dir(&path).map_err(errno)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(errno)?;
                Ok(None)
            }
            Step::Unlink(p) => fs::remove_file(self.path(p)).map(|_| None).map_err(errno),
            Step::Rmdir(p) => fs::remove_dir(self.path(p)).map(|_| None).map_err(errno),
            Step::Rename(from, to) => fs::rename(self.path(from), self.path(to))
                .map(|_| None)
                .map_err(errno),
            Step::List(_) | Step::Remount => Ok(None),
            Step::Chmod(p, mode) => {
                fs::set_permissions(self.path(p), fs::Permissions::from_mode(*mode))
                    .map(|_| None)
                    .map_err(errno)
            }
        }
    }

    /// Whether rename(2) of `from` to `to` would succeed here (and so be judged only by the
    /// key limit): the source exists, the target's parent is a directory, and the target is
    /// absent, a file replaced by a file, or an empty directory replaced by a directory.
    fn rename_succeeds(&self, from: &[String], to: &[String]) -> bool {
        let (source, target) = (self.path(from), self.path(to));
        let Ok(source_meta) = std::fs::symlink_metadata(&source) else {
            return false;
        };
        if from == to || !target.parent().is_some_and(|p| p.is_dir()) {
            return false;
        }
        match std::fs::symlink_metadata(&target) {
            Err(_) => true,
            Ok(t) if t.is_dir() => {
                source_meta.is_dir()
                    && std::fs::read_dir(&target).is_ok_and(|mut d| d.next().is_none())
            }
            Ok(_) => !source_meta.is_dir(),
        }
    }

    /// (name, is_dir) of a directory's entries, sorted.
    fn list(&self, p: &[String]) -> Result<Vec<(String, bool)>, Errno> {
        let mut out: Vec<(String, bool)> = std::fs::read_dir(self.path(p))
            .map_err(errno)?
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().into_string().expect("utf-8"),
                    e.file_type().expect("type").is_dir(),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn mode(&self, p: &[String]) -> Option<u32> {
        std::fs::metadata(self.path(p))
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }

    fn contents(&self, p: &[String]) -> Option<Vec<u8>> {
        let path = self.path(p);
        if path.is_file() {
            std::fs::read(path).ok()
        } else {
            None
        }
    }
}

async fn apply_core(core: &mut Core, step: &Step) -> Result<Option<Vec<u8>>, Errno> {
    match step {
        Step::WriteNew(p, chunks) => core.write_new(p, chunks).await.map(|_| None),
        Step::NewFileOps(p, ops) => core.new_file_ops(p, ops).await.map(|r| Some(r.concat())),
        Step::OpsAfterLosingName(p, to, ops) => core
            .ops_after_losing_name(p, to.as_deref(), ops)
            .await
            .map(|r| Some(r.concat())),
        Step::WriteAt(p, offset, data) => core.write_at(p, *offset, data).await.map(|_| None),
        Step::Truncate(p, size) => core.truncate(p, *size).await.map(|_| None),
        Step::Read(p, chunk) => core.read_all(p, *chunk).await.map(Some),
        Step::Mkdir(p) => core.mkdir(p, 0o755).await.map(|_| None),
        Step::Unlink(p) => core.unlink(p).await.map(|_| None),
        Step::Rmdir(p) => core.rmdir(p).await.map(|_| None),
        Step::Rename(from, to) => core.rename(from, to).await.map(|_| None),
        Step::Chmod(p, mode) => core.chmod(p, *mode).await.map(|_| None),
        Step::List(_) => Ok(None),
        Step::Remount => {
            core.remount().await;
            Ok(None)
        }
    }
}

/// Whether renaming `from` to `to` would give an object of the moved tree a key past S3's
/// 1,024 bytes: the core refuses such a rename with ENAMETOOLONG, where a local directory has
/// no limit. (Random renames of directories into each other grow deep trees, and encrypted
/// names are about 40 bytes a level.)
async fn rename_passes_key_limit(
    core: &Core,
    local: &Local,
    from: &[String],
    to: &[String],
) -> bool {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{rel}/{name}");
            if entry.path().is_dir() {
                out.push(format!("{path}/"));
                walk(&entry.path(), &path, out);
            } else {
                out.push(path);
            }
        }
    }
    let source = local.path(from);
    let target = to.join("/");
    let mut moved = Vec::new();
    if source.is_dir() {
        moved.push(format!("{target}/"));
        walk(&source, &target, &mut moved);
    } else if source.exists() {
        moved.push(target);
    }
    core.keys(&moved)
        .await
        .iter()
        .any(|key| key.len() > s3cryptfs::object_keys::MAX_KEY_BYTES)
}

/// Steps the kernel answers itself, before asking the filesystem: skipped. (A rename into
/// the source's own subtree, or onto one of its ancestors: EINVAL or ENOTEMPTY from the VFS.)
fn outside_contract(step: &Step) -> bool {
    let within = |inner: &[String], outer: &[String]| {
        inner.len() > outer.len() && inner[..outer.len()] == outer[..]
    };
    match step {
        Step::Rename(from, to) | Step::OpsAfterLosingName(from, Some(to), _) => {
            within(to, from) || within(from, to)
        }
        _ => false,
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::WriteNew(p, chunks) => format!(
            "write_new {} ({} bytes in {} writes)",
            p.join("/"),
            chunks.iter().map(Vec::len).sum::<usize>(),
            chunks.len()
        ),
        Step::WriteAt(p, o, d) => format!("write_at {} offset {o} len {}", p.join("/"), d.len()),
        Step::NewFileOps(p, ops) => {
            let ops: Vec<String> = ops
                .iter()
                .map(|op| match op {
                    FileOp::Write(o, d) => format!("write {o}+{}", d.len()),
                    FileOp::Truncate(n) => format!("truncate {n}"),
                    FileOp::Read(o, n) => format!("read {o}+{n}"),
                })
                .collect();
            format!("new file {}: {}", p.join("/"), ops.join(", "))
        }
        Step::OpsAfterLosingName(p, to, ops) => format!(
            "open {}, {}, then {} operations through it",
            p.join("/"),
            to.as_ref().map_or("unlink it".to_string(), |t| format!(
                "rename it to {}",
                t.join("/")
            )),
            ops.len()
        ),
        other => format!("{other:?}"),
    }
}

/// Compares everything the core shows of the tree with the local directory.
async fn compare_tree(core: &Core, local: &Local, dir: &[String], context: &str) {
    let want = local.list(dir).expect("local list");
    let got = core
        .list(dir)
        .await
        .unwrap_or_else(|e| panic!("{context}: listing /{} failed: errno {e}", dir.join("/")));
    let got: Vec<(String, bool)> = got
        .iter()
        .map(|e| (e.name.clone(), e.kind == NodeKind::Dir))
        .collect();
    assert_eq!(got, want, "{context}: entries of /{}", dir.join("/"));
    for (name, is_dir) in want {
        let mut path = dir.to_vec();
        path.push(name);
        let attr = core
            .resolve(&path)
            .await
            .unwrap_or_else(|e| panic!("{context}: lookup /{} failed: errno {e}", path.join("/")));
        assert_eq!(
            u32::from(attr.perm),
            local.mode(&path).expect("local mode"),
            "{context}: mode of /{}",
            path.join("/")
        );
        if is_dir {
            Box::pin(compare_tree(core, local, &path, context)).await;
        } else {
            let want = local.contents(&path).expect("local file");
            assert_eq!(
                attr.size,
                want.len() as u64,
                "{context}: size of /{}",
                path.join("/")
            );
            let got = core.read_all(&path, 131072).await.unwrap_or_else(|e| {
                panic!("{context}: reading /{} failed: errno {e}", path.join("/"))
            });
            assert!(
                got == want,
                "{context}: contents of /{} differ",
                path.join("/")
            );
        }
    }
}

fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("CORE_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("CORE_MODEL_SEED is a number")],
        Err(_) => default.to_vec(),
    }
}

fn ops(default: usize) -> usize {
    std::env::var("CORE_MODEL_OPS")
        .ok()
        .map(|s| s.parse().expect("CORE_MODEL_OPS is a number"))
        .unwrap_or(default)
}

async fn run_model(seed: u64, count: usize, encrypt_names: bool, object_format: u32) {
    eprintln!(
        "core model: seed {seed}, {count} operations, encrypted names: {encrypt_names}, \
         object format {object_format}"
    );
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let local = Local {
        root: dir.path().to_path_buf(),
    };
    let mut core = Core::with(Settings {
        encrypt_names,
        object_format,
        ..Settings::default()
    })
    .await;
    let started = std::time::Instant::now();
    for i in 0..count {
        let step = random_step(&mut rng, true);
        if outside_contract(&step) {
            continue;
        }
        let context = format!("seed {seed}, step {i}: {}", describe(&step));
        let want = match &step {
            Step::Rename(from, to)
                if local.rename_succeeds(from, to)
                    && rename_passes_key_limit(&core, &local, from, to).await =>
            {
                Err(libc::ENAMETOOLONG)
            }
            _ => local.apply(&step),
        };
        let got = apply_core(&mut core, &step).await;
        if let Ok(t) = std::env::var("CORE_MODEL_TRACE")
            && (context.contains(&t) || matches!(step, Step::Remount))
        {
            eprintln!(
                "{context}: local {:?}, core {:?}",
                want.as_ref().map(|_| ()),
                got.as_ref().map(|_| ())
            );
        }
        match (&want, &got) {
            (Ok(Some(w)), Ok(Some(g))) => assert!(w == g, "{context}: read back other bytes"),
            (Ok(_), Ok(_)) => {}
            _ => assert_eq!(
                got.as_ref().map(|_| ()).map_err(|e| *e),
                want.as_ref().map(|_| ()).map_err(|e| *e),
                "{context}: outcome (Err = errno)"
            ),
        }
        let every_step = std::env::var("CORE_MODEL_CHECK_EVERY_STEP").is_ok();
        let checked = match &step {
            Step::List(p) if local.path(p).is_dir() => Some(p.clone()),
            Step::List(_) => None,
            Step::Remount => Some(Vec::new()),
            _ if every_step => Some(Vec::new()),
            _ => None,
        };
        if let Some(dir) = checked {
            compare_tree(&core, &local, &dir, &context).await;
        }
    }
    core.remount().await;
    compare_tree(&core, &local, &[], &format!("seed {seed}: at the end")).await;
    eprintln!(
        "core model: seed {seed}: {count} operations in {:.1} s, {} store requests",
        started.elapsed().as_secs_f64(),
        core.memory.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_a_local_directory() {
    // Odd seeds in the default format (3, AES-GCM), even ones in format 2 (CTR + HMAC),
    // which volumes made before it keep.
    for seed in seeds(&[1, 2, 3, 4]) {
        let format = if seed % 2 == 0 { 2 } else { 3 };
        run_model(seed, ops(1500), false, format).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_a_local_directory_with_encrypted_names() {
    for seed in seeds(&[11, 12]) {
        run_model(seed, ops(1500), true, 3).await;
    }
}

/// With failures injected into the store: every operation either succeeds as on the local
/// directory or fails with an errno; a file whose operation failed holds its old contents or
/// the new ones, never anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_never_give_wrong_bytes() {
    for seed in seeds(&[21, 22, 23]) {
        let count = ops(1500);
        eprintln!("core model with faults: seed {seed}, {count} operations");
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let local = Local {
            root: dir.path().to_path_buf(),
        };
        let mut core = Core::new(false).await;
        let (mut failed, mut succeeded) = (0, 0);
        for i in 0..count {
            let step = random_step(&mut rng, false);
            let context = format!("seed {seed}, step {i}: {}", describe(&step));
            let path = match &step {
                Step::WriteNew(p, _)
                | Step::WriteAt(p, _, _)
                | Step::Truncate(p, _)
                | Step::Read(p, _)
                | Step::Chmod(p, _) => p.clone(),
                _ => Vec::new(),
            };
            let before = local.contents(&path);
            let before_mode = local.mode(&path);
            // One request in 20 fails, of any kind the store can report.
            let kind = *rng.pick(&[
                StoreErrorKind::Transient,
                StoreErrorKind::Throttled,
                StoreErrorKind::AccessDenied,
                StoreErrorKind::Fatal,
            ]);
            // (A mount that cannot read its config fails before it starts: not this test.)
            if !matches!(step, Step::Remount) {
                core.faults.fail_randomly(50_000, rng.next(), kind);
            }
            let got = apply_core(&mut core, &step).await;
            core.faults.fail_randomly(0, 0, kind);
            let want = local.apply(&step);
            match (&got, &want) {
                (Ok(Some(g)), Ok(Some(w))) => assert!(g == w, "{context}: read other bytes"),
                (Ok(_), Ok(_)) => succeeded += 1,
                (Err(e), Ok(_)) => {
                    failed += 1;
                    assert!(*e != 0, "{context}: failed without an errno");
                    if matches!(step, Step::Read(..)) {
                        continue;
                    }
                    // What does the store hold now? The old or the new state, only.
                    core.remount().await;
                    if let Step::Chmod(p, mode) = &step {
                        let perm = u32::from(core.resolve(p).await.expect("lookup").perm);
                        let old = before_mode.expect("the file existed");
                        assert!(
                            perm == old || perm == *mode,
                            "{context}: mode {perm:o} after a failed chmod"
                        );
                        std::fs::set_permissions(
                            local.path(p),
                            std::fs::Permissions::from_mode(perm),
                        )
                        .expect("model");
                        continue;
                    }
                    let after = local.contents(&path);
                    let now = match core.read_all(&path, 131072).await {
                        Ok(b) => Some(b),
                        Err(libc::ENOENT) => None,
                        Err(e) => panic!("{context}: unreadable after a failed save: errno {e}"),
                    };
                    assert!(
                        now == before || now == after,
                        "{context}: after a failed operation the file holds neither its old nor its new contents"
                    );
                    // The model follows what the store kept.
                    match &now {
                        Some(bytes) => std::fs::write(local.path(&path), bytes).expect("model"),
                        None => {
                            let _ = std::fs::remove_file(local.path(&path));
                        }
                    }
                }
                (Ok(_), Err(e)) => {
                    panic!("{context}: succeeded where the local directory fails with errno {e}")
                }
                // Both fail (a missing file): the core may report the injected failure first.
                (Err(_), Err(_)) => {}
            }
        }
        core.remount().await;
        compare_tree(
            &core,
            &local,
            &[],
            &format!("seed {seed} with faults: at the end"),
        )
        .await;
        eprintln!("core model with faults: seed {seed}: {succeeded} succeeded, {failed} failed");
        assert!(
            failed > 0,
            "seed {seed}: no operation failed: the faults were not injected"
        );
    }
}
