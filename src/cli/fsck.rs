//! `s3cryptfs fsck`: verifies every object of a volume (header, size and every segment's tag),
//! reports objects that are not ours, and lists (and with --abort-stale, aborts or removes)
//! multipart uploads and pending versions of new files left behind by writers that died.
//! Exit status 0 only if nothing is wrong.

use std::time::{Duration, SystemTime};

use futures::StreamExt;

use super::args::FsckArgs;
use super::recover::{KeyName, PathDecoder, open, stream_out};
use super::{EXIT_FAILURE, EXIT_STORE, fail, runtime};
use crate::crypto::ObjectDecryptor;
use crate::object_keys::{LOST_UPDATES_PREFIX, PENDING_PREFIX};
use crate::store::{Metadata, ObjectInfo, UploadInfo};
use crate::volume::{
    Binding, CONFIG_COPY_KEY, CONFIG_KEY, ConfigCopy, RESERVED_NAME, Volume, read_config_copy,
};

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
        let (pending, lost_updates): (Vec<ObjectInfo>, Vec<ObjectInfo>) = reserved
            .into_iter()
            .filter(|o| o.key.starts_with(PENDING_PREFIX) || o.key.starts_with(LOST_UPDATES_PREFIX))
            .partition(|o| o.key.starts_with(PENDING_PREFIX));
        // Names first: on a name-encrypted volume every key must decrypt (side objects of
        // long names are checked as part of the names they hold). Plain names are whatever
        // the keys say.
        let mut decoder = PathDecoder::new(&volume);
        let mut hidden = 0;
        let mut objects = Vec::new();
        let mut markers = Vec::new();
        for o in candidates {
            // Directory markers: empty (older builds) or an empty object of ours.
            let marker = o.key.ends_with('/');
            if !volume.names.encrypts() {
                if marker {
                    markers.push(o.key);
                } else {
                    objects.push(o);
                }
                continue;
            }
            match decoder.decode(&o.key).await {
                KeyName::Path(_) if marker => markers.push(o.key),
                KeyName::Path(_) => objects.push(o),
                KeyName::SideObject => {}
                KeyName::Hidden => {
                    hidden += 1;
                    println!("BADNAME  {}: the name does not decrypt (foreign or tampered)", o.key);
                }
            }
        }
        let object_keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
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

        let config_problems = check_config_copies(&volume, args.repair_config).await;
        let mut attrs_invalid = 0;
        if args.bind_attributes {
            let keys = object_keys.into_iter().chain(markers);
            attrs_invalid = bind_attributes(&volume, keys).await;
        }

        let lost = report_lost_updates(&volume, &lost_updates, args.forget_lost_updates).await;

        let uploads = match volume.store.list_uploads("").await {
            Ok(u) => u,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let now = SystemTime::now();
        let (mut stale, mut aborted, mut recent) = (0, 0, 0);
        // What writers that died left behind: versions of new files a mount finished early
        // and had not saved under their names yet, and multipart uploads never completed.
        let leftovers = pending
            .iter()
            .map(|o| Leftover::Pending(o.key.clone(), o.last_modified))
            .chain(uploads.iter().map(|u| Leftover::Upload(u.clone())));
        for leftover in leftovers {
            let Words {
                recent_tag,
                removed_tag,
                what,
                key,
            } = leftover.words();
            let age = leftover
                .since()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default()
                .as_secs();
            if Duration::from_secs(age) < args.stale_after {
                recent += 1;
                println!("{recent_tag} {key} ({age}s old, may still be in use)");
            } else if !args.abort_stale {
                stale += 1;
                println!("STALE    {what} {key} ({age}s old): run with --abort-stale to remove it");
            } else {
                match leftover.remove(&volume).await {
                    Ok(()) => {
                        aborted += 1;
                        println!("{removed_tag} stale {what} {key} ({age}s old)");
                    }
                    Err(e) => {
                        stale += 1;
                        println!("STALE    {what} {key} ({age}s old): removal failed: {e}");
                    }
                }
            }
        }
        println!(
            "{total} objects: {ok} ok, {corrupt} corrupt, {foreign} foreign, {unchecked} unchecked; \
             {hidden} names that do not decrypt; uploads: {stale} stale, {aborted} aborted, {recent} recent; \
             {lost} possible lost updates"
        );
        if corrupt + foreign + unchecked + stale + hidden + attrs_invalid + config_problems + lost > 0
        {
            EXIT_FAILURE
        } else {
            0
        }
    })
}

/// Compares both objects of the volume config with the config that unlocked; with `repair`,
/// writes that config over a copy that is missing, unreadable or different. How many copies
/// are still wrong.
async fn check_config_copies(volume: &Volume, repair: bool) -> usize {
    let current = volume.config.to_json();
    let mut problems = 0;
    for key in [CONFIG_KEY, CONFIG_COPY_KEY] {
        let state = match read_config_copy(volume.store.as_ref(), key).await {
            Ok(ConfigCopy::Read(config)) if config.to_json() == current => continue,
            Ok(ConfigCopy::Read(..)) => "differs from the config that unlocked".to_string(),
            Ok(ConfigCopy::Missing) => "missing".to_string(),
            Ok(ConfigCopy::Unreadable(why)) => format!("unreadable: {why}"),
            Err(e) => {
                problems += 1;
                println!("CONFIG   {key}: cannot be read: {e}");
                continue;
            }
        };
        if !repair {
            problems += 1;
            println!("CONFIG   {key}: {state}; run with --repair-config to write it again");
            continue;
        }
        let body = bytes::Bytes::from(current.clone());
        match volume.store.put(key, body, &Metadata::new()).await {
            Ok(_) => println!("REPAIRED {key}: was {state}; written from the config that unlocked"),
            Err(e) => {
                problems += 1;
                println!("CONFIG   {key}: {state}; writing it failed: {e}");
            }
        }
    }
    problems
}

/// Binds what older builds recorded to the objects of `keys` (`--bind-attributes`), with a
/// line for each change and each object whose attributes cannot be bound; how many of those.
async fn bind_attributes(volume: &Volume, keys: impl Iterator<Item = String>) -> usize {
    let (mut bound, mut already, mut none, mut invalid) = (0, 0, 0, 0);
    let results: Vec<(String, Result<Binding, crate::store::StoreError>)> =
        futures::stream::iter(keys)
            .map(|key| async move {
                let result = volume.bind_attributes(&key).await;
                (key, result)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    for (key, result) in results {
        match result {
            Ok(Binding::BoundNow) => {
                bound += 1;
                println!("BOUND    {key}: attributes bound to the object");
            }
            Ok(Binding::AlreadyBound) => already += 1,
            Ok(Binding::NoneRecorded) => none += 1,
            Ok(Binding::Invalid(why)) => {
                invalid += 1;
                println!("ATTRS    {key}: attributes left unbound: {why}");
            }
            Err(e) => {
                invalid += 1;
                println!("ATTRS    {key}: attributes not bound: {e}");
            }
        }
    }
    println!(
        "attributes: {bound} bound now, {already} already bound, {none} objects record none, \
         {invalid} could not be bound"
    );
    invalid
}

/// How a report line names a leftover (the tags line up the report's columns).
struct Words<'a> {
    recent_tag: &'static str,
    removed_tag: &'static str,
    what: &'static str,
    key: &'a str,
}

/// Prints the records of saves that another mount may have replaced unseen (on a server
/// that ignores conditional writes, docs/SEMANTICS.md "Several mounts on one volume");
/// removes them with `forget`. How many are left.
async fn report_lost_updates(volume: &Volume, records: &[ObjectInfo], forget: bool) -> usize {
    let mut left = 0;
    for record in records {
        let facts = match volume.store.head(&record.key).await {
            Ok(info) => info.metadata,
            Err(e) => {
                println!("LOST?    {}: unreadable record: {e}", record.key);
                left += 1;
                continue;
            }
        };
        let fact = |name: &str| facts.get(name).map_or("?", String::as_str);
        let when = record
            .last_modified
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map_or("?".to_string(), |d| format!("{}s ago", d.as_secs()));
        println!(
            "LOST?    {}: replaced by another mount as it was saved ({when}; saved {}, found {}): \
             one of the two saves may be lost; see the file and its .conflict- names{}",
            fact("key"),
            fact("saved"),
            fact("found"),
            if forget {
                ""
            } else {
                ", then run fsck --forget-lost-updates"
            }
        );
        if forget {
            if let Err(e) = volume.store.delete(&record.key).await {
                println!("LOST?    {}: could not remove the record: {e}", record.key);
                left += 1;
            }
        } else {
            left += 1;
        }
    }
    left
}

/// Something a writer that died left behind.
enum Leftover {
    /// A new file's version under the pending prefix, with its time.
    Pending(String, Option<SystemTime>),
    Upload(UploadInfo),
}

impl Leftover {
    fn words(&self) -> Words<'_> {
        match self {
            Leftover::Pending(key, _) => Words {
                recent_tag: "PENDING ",
                removed_tag: "REMOVED ",
                what: "pending version",
                key,
            },
            Leftover::Upload(u) => Words {
                recent_tag: "UPLOAD  ",
                removed_tag: "ABORTED ",
                what: "upload of",
                key: &u.key,
            },
        }
    }

    fn since(&self) -> Option<SystemTime> {
        match self {
            Leftover::Pending(_, time) => *time,
            Leftover::Upload(u) => u.initiated,
        }
    }

    async fn remove(&self, volume: &Volume) -> Result<(), crate::store::StoreError> {
        match self {
            Leftover::Pending(key, _) => volume.store.delete(key).await,
            Leftover::Upload(u) => volume.store.abort_multipart(&u.key, &u.upload_id).await,
        }
    }
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
