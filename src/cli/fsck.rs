//! `s3cryptfs fsck`: verifies every object of a volume (header, size and every segment's tag),
//! reports objects that are not ours, and lists (and with --abort-stale, aborts or removes)
//! multipart uploads and pending versions of new files left behind by writers that died.
//! Exit status 0 only if nothing is wrong.

use std::time::SystemTime;

use futures::StreamExt;

use super::args::FsckArgs;
use super::recover::{KeyName, PathDecoder, open, stream_out};
use super::{EXIT_FAILURE, EXIT_STORE, fail, runtime};
use crate::crypto::ObjectDecryptor;
use crate::object_keys::PENDING_PREFIX;
use crate::store::ObjectInfo;
use crate::volume::{RESERVED_NAME, Volume};

/// Objects verified at once.
const CONCURRENCY: usize = 4;

enum Verdict {
    Ok,
    /// Not in our format at all (another program's object).
    Foreign(String),
    /// Ours, but damaged or tampered with.
    Corrupt(String),
    /// Could not be checked (S3 error).
    Unchecked(String),
}

pub fn run(args: FsckArgs) -> i32 {
    runtime().block_on(async {
        let volume = match open(&args.volume).await {
            Ok(v) => v,
            Err(code) => return code,
        };
        let listing = match volume.store.list_all("", None).await {
            Ok(l) => l,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let (reserved, candidates): (Vec<ObjectInfo>, Vec<ObjectInfo>) = listing
            .objects
            .into_iter()
            .partition(|o| o.key.starts_with(&format!("{RESERVED_NAME}/")));
        let pending: Vec<ObjectInfo> = reserved
            .into_iter()
            .filter(|o| o.key.starts_with(PENDING_PREFIX))
            .collect();
        // Names first: on a name-encrypted volume every key must decrypt (side objects of
        // long names are checked as part of the names they hold). Plain names are whatever
        // the keys say.
        let mut decoder = PathDecoder::new(&volume);
        let mut hidden = 0;
        let mut objects = Vec::new();
        for o in candidates {
            let marker = o.key.ends_with('/') && o.size == 0;
            if !volume.names.encrypts() {
                if !marker {
                    objects.push(o);
                }
                continue;
            }
            match decoder.decode(&o.key).await {
                KeyName::Path(_) if marker => {}
                KeyName::Path(_) => objects.push(o),
                KeyName::SideObject => {}
                KeyName::Hidden => {
                    hidden += 1;
                    println!("BADNAME  {}: the name does not decrypt (foreign or tampered)", o.key);
                }
            }
        }
        let total = objects.len();
        let progress = super::progress_bar(total as u64, false);
        let verdicts: Vec<(String, Verdict)> = futures::stream::iter(objects)
            .map(|o| {
                let (volume, progress) = (&volume, &progress);
                let headers_only = args.headers_only || !sampled(&o.key, args.sample);
                async move {
                    let verdict = verify(volume, &o, headers_only).await;
                    progress.inc(1);
                    (o.key.clone(), verdict)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        progress.finish_and_clear();
        let (mut ok, mut foreign, mut corrupt, mut unchecked) = (0, 0, 0, 0);
        for (key, verdict) in &verdicts {
            match verdict {
                Verdict::Ok => ok += 1,
                Verdict::Foreign(why) => {
                    foreign += 1;
                    println!("FOREIGN  {key}: {why}");
                }
                Verdict::Corrupt(why) => {
                    corrupt += 1;
                    println!("CORRUPT  {key}: {why}");
                }
                Verdict::Unchecked(why) => {
                    unchecked += 1;
                    println!("UNCHECKED  {key}: {why}");
                }
            }
        }

        let uploads = match volume.store.list_uploads("").await {
            Ok(u) => u,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let now = SystemTime::now();
        let (mut stale, mut aborted, mut recent) = (0, 0, 0);
        // Versions of new files that a mount finished early and had not yet saved under
        // their names: a crash or kill -9 leaves them; their files were never saved.
        for o in &pending {
            let age = o
                .last_modified
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if age < args.stale_after {
                recent += 1;
                println!("PENDING  {} ({}s old, may still be in use)", o.key, age.as_secs());
            } else if args.abort_stale {
                match volume.store.delete(&o.key).await {
                    Ok(()) => {
                        aborted += 1;
                        println!("REMOVED  stale pending version {} ({}s old)", o.key, age.as_secs());
                    }
                    Err(e) => {
                        stale += 1;
                        println!("STALE    {} ({}s old): removal failed: {e}", o.key, age.as_secs());
                    }
                }
            } else {
                stale += 1;
                println!(
                    "STALE    pending version {} ({}s old): run with --abort-stale to remove it",
                    o.key,
                    age.as_secs()
                );
            }
        }
        for u in &uploads {
            let age = u
                .initiated
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if age < args.stale_after {
                recent += 1;
                println!("UPLOAD   {} ({}s old, may still be in progress)", u.key, age.as_secs());
                continue;
            }
            if args.abort_stale {
                match volume.store.abort_multipart(&u.key, &u.upload_id).await {
                    Ok(()) => {
                        aborted += 1;
                        println!("ABORTED  stale upload of {} ({}s old)", u.key, age.as_secs());
                    }
                    Err(e) => {
                        stale += 1;
                        println!("STALE    {} ({}s old): abort failed: {e}", u.key, age.as_secs());
                    }
                }
            } else {
                stale += 1;
                println!(
                    "STALE    upload of {} ({}s old): run with --abort-stale to remove it",
                    u.key,
                    age.as_secs()
                );
            }
        }
        println!(
            "{total} objects: {ok} ok, {corrupt} corrupt, {foreign} foreign, {unchecked} unchecked; \
             {hidden} names that do not decrypt; uploads: {stale} stale, {aborted} aborted, {recent} recent"
        );
        if corrupt + foreign + unchecked + stale + hidden > 0 {
            EXIT_FAILURE
        } else {
            0
        }
    })
}

/// Whether `key` falls in a `percent` sample (stable across runs).
fn sampled(key: &str, percent: u8) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish() % 100 < u64::from(percent)
}

async fn verify(volume: &Volume, object: &ObjectInfo, headers_only: bool) -> Verdict {
    if let Err(e) = volume.layout.plaintext_size(object.size) {
        return Verdict::Foreign(e.to_string());
    }
    let header = match volume
        .store
        .get_range(
            &object.key,
            0..volume.layout.header_len() as u64,
            object.etag.as_deref(),
        )
        .await
    {
        Ok(r) => match r.body.collect().await {
            Ok(h) => h,
            Err(e) => return Verdict::Unchecked(e.to_string()),
        },
        Err(e) => return Verdict::Unchecked(e.to_string()),
    };
    if let Err(e) = ObjectDecryptor::new(&volume.master, volume.layout, &header, object.size) {
        return match e {
            crate::crypto::CryptoError::NotOurFormat
            | crate::crypto::CryptoError::UnsupportedVersion(_) => Verdict::Foreign(e.to_string()),
            other => Verdict::Corrupt(other.to_string()),
        };
    }
    if headers_only {
        return Verdict::Ok;
    }
    let hidden = indicatif::ProgressBar::hidden();
    match stream_out(volume, &object.key, &mut std::io::sink(), &hidden).await {
        Ok(()) => Verdict::Ok,
        Err((EXIT_FAILURE, why)) => Verdict::Corrupt(why),
        Err((_, why)) => Verdict::Unchecked(why),
    }
}
