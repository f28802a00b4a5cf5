//! Working with a volume without FUSE: `ls`, `cat`, `get`, `put`. A user whose server died
//! gets files back with nothing but the binary, the key and credentials.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use super::args::{GetArgs, LsArgs, ObjectArgs, PutArgs, VolumeArgs};
use super::{EXIT_FAILURE, EXIT_STORE, EXIT_USAGE, fail, runtime};
use crate::crypto::ObjectDecryptor;
use crate::object_keys as names;
use crate::upload::{MemoryBudget, ObjectWriter, UploadConfig, UploadContext, UploadStats};
use crate::volume::{RESERVED_NAME, Volume};

/// Segments fetched per GET when streaming a file out.
const SEGMENTS_PER_GET: u64 = 128;

/// Opens the volume; the error is already printed, its exit status returned.
pub(super) async fn open(args: &VolumeArgs) -> Result<Volume, i32> {
    let config = args
        .connection
        .store_config(&args.location)
        .map_err(|e| fail(EXIT_USAGE, e))?;
    let secret = args.key.secret(false).map_err(|e| fail(EXIT_USAGE, e))?;
    let store = super::connect(config.clone())
        .await
        .map_err(|e| fail(EXIT_STORE, e))?;
    super::unlock(store, &config, &secret)
        .await
        .map_err(|(code, message)| fail(code, message))
}

fn clean_path(path: &str) -> String {
    path.trim_matches('/').to_string()
}

/// The object key of the plaintext `path` (a file, or with `as_dir` a directory prefix), and
/// the side objects its long encrypted names need (key, body).
pub(super) fn key_of(volume: &Volume, path: &str, as_dir: bool) -> (String, Vec<(String, String)>) {
    let mut key = String::new();
    let mut dir_path = String::new();
    let mut sides = Vec::new();
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, name) in components.iter().enumerate() {
        let encoded = volume.names.encode(&dir_path, name);
        if let Some(body) = encoded.side_body {
            sides.push((names::side_object_key(&key, &encoded.component), body));
        }
        key.push_str(&encoded.component);
        if as_dir || i + 1 < components.len() {
            key.push('/');
        }
        dir_path = names::join_path(&dir_path, name);
    }
    (key, sides)
}

/// What a key of the volume is, by name.
pub(super) enum KeyName {
    /// A plaintext path (ending in `/` for a directory marker).
    Path(String),
    /// The side object of a long encrypted name.
    SideObject,
    /// A name that does not decrypt (foreign or tampered), or cannot be a file name.
    Hidden,
}

/// Turns keys back into plaintext paths, reading (and caching) long names' side objects.
pub(super) struct PathDecoder<'a> {
    volume: &'a Volume,
    sides: HashMap<String, Option<Vec<u8>>>,
}

impl<'a> PathDecoder<'a> {
    pub(super) fn new(volume: &'a Volume) -> Self {
        Self {
            volume,
            sides: HashMap::new(),
        }
    }

    pub(super) async fn decode(&mut self, key: &str) -> KeyName {
        let parts: Vec<&str> = key.split('/').collect();
        let (mut dir_path, mut prefix) = (String::new(), String::new());
        for (i, component) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if component.is_empty() && last && i > 0 {
                return KeyName::Path(format!("{dir_path}/"));
            }
            let name = match self.volume.names.classify(&dir_path, component, i == 0) {
                names::Listed::Name(name) => name,
                names::Listed::SideObject if last => return KeyName::SideObject,
                names::Listed::LongName => {
                    let side = names::side_object_key(&prefix, component);
                    if !self.sides.contains_key(&side) {
                        let body = self.volume.read_side_object(&side).await;
                        self.sides.insert(side.clone(), body);
                    }
                    let body = self.sides[&side].as_deref();
                    match body.and_then(|b| self.volume.names.decode_long(&dir_path, component, b))
                    {
                        Some(name) => name,
                        None => return KeyName::Hidden,
                    }
                }
                _ => return KeyName::Hidden,
            };
            dir_path = names::join_path(&dir_path, &name);
            prefix = format!("{prefix}{component}/");
        }
        KeyName::Path(dir_path)
    }
}

pub fn ls(args: LsArgs) -> i32 {
    runtime().block_on(async {
        let volume = match open(&args.volume).await {
            Ok(v) => v,
            Err(code) => return code,
        };
        let dir = clean_path(&args.path);
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            key_of(&volume, &dir, true).0
        };
        let delimiter = (!args.recursive).then_some("/");
        let listing = match volume.store.list_all(&prefix, delimiter).await {
            Ok(l) => l,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let mut decoder = PathDecoder::new(&volume);
        let mut out = std::io::stdout().lock();
        for p in &listing.common_prefixes {
            if prefix.is_empty() && p.trim_end_matches('/') == RESERVED_NAME {
                continue;
            }
            match decoder.decode(p).await {
                KeyName::Path(path) => {
                    let _ = writeln!(out, "{:>15}  {path}", "-");
                }
                _ => eprintln!("hidden: {p} (its name does not decrypt)"),
            }
        }
        for o in &listing.objects {
            if o.key.ends_with('/') || o.key.starts_with(&format!("{RESERVED_NAME}/")) {
                continue; // directory markers and our own objects
            }
            let path = match decoder.decode(&o.key).await {
                KeyName::Path(path) => path,
                KeyName::SideObject => continue,
                KeyName::Hidden => {
                    eprintln!("hidden: {} (its name does not decrypt)", o.key);
                    continue;
                }
            };
            let size = match volume.layout.plaintext_size(o.size) {
                Ok(s) => s.to_string(),
                Err(_) => "not-ours".to_string(),
            };
            let _ = writeln!(out, "{size:>15}  {path}");
        }
        0
    })
}

pub fn cat(args: ObjectArgs) -> i32 {
    runtime().block_on(async {
        let volume = match open(&args.volume).await {
            Ok(v) => v,
            Err(code) => return code,
        };
        let mut out = std::io::stdout().lock();
        let hidden = indicatif::ProgressBar::hidden();
        let key = key_of(&volume, &clean_path(&args.path), false).0;
        match stream_out(&volume, &key, &mut out, &hidden).await {
            Ok(()) => 0,
            Err((code, message)) => fail(code, message),
        }
    })
}

pub fn get(args: GetArgs) -> i32 {
    if args.local.exists() && !args.force {
        return fail(
            EXIT_USAGE,
            format!(
                "{} exists (pass --force to overwrite)",
                args.local.display()
            ),
        );
    }
    runtime().block_on(async {
        let volume = match open(&args.volume).await {
            Ok(v) => v,
            Err(code) => return code,
        };
        // Written next to the target and renamed at the end: a failed or tampered download
        // never leaves a half-written file under the final name.
        let dir = args.local.parent().filter(|p| !p.as_os_str().is_empty());
        let tmp = match tempfile::NamedTempFile::new_in(dir.unwrap_or(std::path::Path::new("."))) {
            Ok(t) => t,
            Err(e) => return fail(EXIT_FAILURE, format!("cannot create a temporary file: {e}")),
        };
        let mut writer = std::io::BufWriter::new(tmp);
        let progress = super::progress_bar(0, true);
        let key = key_of(&volume, &clean_path(&args.path), false).0;
        let copied = stream_out(&volume, &key, &mut writer, &progress).await;
        progress.finish_and_clear();
        if let Err((code, message)) = copied {
            return fail(code, message);
        }
        let tmp = match writer.into_inner() {
            Ok(t) => t,
            Err(e) => return fail(EXIT_FAILURE, e.error().to_string()),
        };
        if let Err(e) = tmp
            .as_file()
            .sync_all()
            .and_then(|_| tmp.persist(&args.local).map(|_| ()).map_err(|e| e.error))
        {
            return fail(
                EXIT_FAILURE,
                format!("cannot write {}: {e}", args.local.display()),
            );
        }
        0
    })
}

/// Streams the verified plaintext of `path` into `out`, a run of segments per GET.
pub(super) async fn stream_out(
    volume: &Volume,
    path: &str,
    out: &mut impl Write,
    progress: &indicatif::ProgressBar,
) -> Result<(), (i32, String)> {
    let store_err = |e: crate::store::StoreError| {
        let code = if e.is_not_found() {
            EXIT_USAGE
        } else {
            EXIT_STORE
        };
        (code, format!("{path}: {e}"))
    };
    let corrupt = |e: crate::crypto::CryptoError| (EXIT_FAILURE, format!("{path}: {e}"));
    let info = volume.store.head(path).await.map_err(store_err)?;
    let etag = info.etag.clone();
    let layout = volume.layout;
    let header = volume
        .store
        .get_range(path, 0..layout.header_len() as u64, etag.as_deref())
        .await
        .map_err(store_err)?
        .body
        .collect()
        .await
        .map_err(store_err)?;
    let decryptor =
        ObjectDecryptor::new(&volume.master, layout, &header, info.size).map_err(corrupt)?;
    let segments = decryptor.segment_count();
    let plaintext_size = decryptor.plaintext_size();
    progress.set_length(plaintext_size);
    let mut first = 0;
    while first < segments {
        let last = (first + SEGMENTS_PER_GET).min(segments);
        let start = layout.segment_ciphertext_range(first, plaintext_size).start;
        let end = layout
            .segment_ciphertext_range(last - 1, plaintext_size)
            .end;
        let mut body = volume
            .store
            .get_range(path, start..end, etag.as_deref())
            .await
            .map_err(store_err)?
            .body;
        for seg in first..last {
            let range = layout.segment_ciphertext_range(seg, plaintext_size);
            let mut buf = Vec::with_capacity((range.end - range.start) as usize);
            body.read_into(&mut buf, (range.end - range.start) as usize)
                .await
                .map_err(store_err)?;
            let n = decryptor.open_segment(seg, &mut buf).map_err(corrupt)?;
            out.write_all(&buf[..n])
                .map_err(|e| (EXIT_FAILURE, format!("writing {path}: {e}")))?;
            progress.inc(n as u64);
        }
        first = last;
    }
    out.flush()
        .map_err(|e| (EXIT_FAILURE, format!("writing {path}: {e}")))
}

pub fn put(args: PutArgs) -> i32 {
    let mut file = match std::fs::File::open(&args.local) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_USAGE, format!("{}: {e}", args.local.display())),
    };
    runtime().block_on(async {
        let volume = match open(&args.volume).await {
            Ok(v) => Arc::new(v),
            Err(code) => return code,
        };
        let ctx = Arc::new(UploadContext {
            store: volume.store.clone(),
            master: volume.master.clone(),
            layout: volume.layout,
            budget: MemoryBudget::new(64 << 20, Duration::from_secs(30)),
            config: UploadConfig::default(),
            stats: UploadStats::default(),
            // Recovery writes under names nothing else is saving.
            conditions: Default::default(),
        });
        let path = clean_path(&args.path);
        let (key, sides) = key_of(&volume, &path, false);
        // Long encrypted names' side objects first: an object is never without its name.
        for (side, body) in sides {
            if let Err(e) = ctx
                .store
                .put(&side, bytes::Bytes::from(body), &Default::default())
                .await
            {
                return fail(EXIT_STORE, format!("{path}: {e}"));
            }
        }
        // Recorded as `cp -p` would keep them: the local file's mode and time, owned by
        // the user who puts it.
        let local = file.metadata().ok();
        let attrs = local.as_ref().map(|m| {
            use std::os::unix::fs::PermissionsExt;
            let mtime = m
                .modified()
                .unwrap_or_else(|_| std::time::SystemTime::now());
            crate::crypto::PosixAttrs {
                mode: libc::S_IFREG | (m.permissions().mode() & 0o7777),
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
                mtime,
                ctime: std::time::SystemTime::now(),
                atime: m.accessed().unwrap_or(mtime),
            }
        });
        let mut writer = ObjectWriter::new(ctx, key, attrs);
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        let size = local.map(|m| m.len()).unwrap_or(0);
        let progress = super::progress_bar(size, true);
        loop {
            let n = match std::io::Read::read(&mut file, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await;
                    return fail(EXIT_FAILURE, format!("{}: {e}", args.local.display()));
                }
            };
            if let Err(e) = writer.write(offset, &buf[..n]).await {
                progress.abandon();
                return fail(EXIT_STORE, format!("{path}: {e}"));
            }
            offset += n as u64;
            progress.set_position(offset);
        }
        progress.finish_and_clear();
        match writer.commit().await {
            Ok(done) => {
                eprintln!("{path}: {} bytes stored", done.plaintext_size);
                0
            }
            Err(e) => fail(EXIT_STORE, format!("{path}: {e}")),
        }
    })
}
