//! Attributes are bound to their object (docs/FORMAT.md 9a, docs/SEMANTICS.md "Attributes"):
//! a provider that moves, replays, deletes or forges attribute values never gets them shown
//! or enforced. Core on the in-memory store, for mounts with and without `--allow-other`.

mod common;

use std::time::Duration;

use common::in_process::{Core, Settings};
use s3cryptfs::crypto::{
    ATTRS_METADATA_NAME, AttrsBinding, BINDING_METADATA_NAME, Header, Layout, PosixAttrs,
    VOLUME_FORMAT_VERSION, seal_attrs, seal_unbound_attrs,
};
use s3cryptfs::store::fault::Op;
use s3cryptfs::store::{Metadata, ObjectStore};

fn path(text: &str) -> Vec<String> {
    text.split('/').map(str::to_string).collect()
}

async fn core(shared: bool) -> Core {
    Core::with(Settings {
        shared,
        ..Settings::default()
    })
    .await
}

/// Mode bits and owner shown for `name` after a fresh mount.
async fn shown(core: &mut Core, name: &str) -> (u16, u32) {
    core.remount().await;
    let attr = core.resolve(&path(name)).await.expect("found");
    (attr.perm, attr.uid)
}

/// A saved file with `mode` and owner `uid`, recorded through the mount.
async fn file_with(core: &mut Core, name: &str, mode: u32, uid: u32) {
    core.write_new(&path(name), &[name.as_bytes().to_vec()])
        .await
        .unwrap();
    core.chmod_chown(&path(name), mode, uid).await.unwrap();
    // The delayed save of changed attributes (half a second), then a fresh mount.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        shown(core, name).await,
        (mode as u16, uid),
        "recorded as set"
    );
}

/// What the provider sees of `key`'s attributes.
async fn metadata_of(core: &Core, key: &str) -> Metadata {
    core.memory.head(key).await.unwrap().metadata
}

/// The provider puts `metadata` on `key` (its body unchanged).
async fn provider_sets(core: &Core, key: &str, metadata: &Metadata) {
    core.memory.copy(key, key, Some(metadata)).await.unwrap();
}

/// Runs `test` on a mount only its user reaches and on a shared one.
macro_rules! on_both_mounts {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(start_paused = true)]
                async fn private_mount() {
                    super::$test(false).await;
                }
                #[tokio::test(start_paused = true)]
                async fn shared_mount() {
                    super::$test(true).await;
                }
            }
        )*
    };
}

on_both_mounts!(
    values_moved_from_another_object_are_not_believed,
    a_binding_named_to_match_the_object_is_not_believed,
    values_of_an_earlier_version_are_not_believed,
    a_directory_keeps_its_own_attributes,
    bound_attributes_survive_a_rename,
    deleted_and_older_values_follow_the_documented_rule,
);

async fn values_moved_from_another_object_are_not_believed(shared: bool) {
    let mut core = core(shared).await;
    file_with(&mut core, "private", 0o600, 1000).await;
    file_with(&mut core, "public", 0o666, 2000).await;
    let public = metadata_of(&core, "public").await;
    provider_sets(&core, "private", &public).await;
    assert_eq!(
        shown(&mut core, "private").await,
        (0o600, 0),
        "another object's attributes are not this one's: private to root"
    );
    assert_eq!(shown(&mut core, "public").await, (0o666, 2000));
}

async fn a_binding_named_to_match_the_object_is_not_believed(shared: bool) {
    let mut core = core(shared).await;
    file_with(&mut core, "private", 0o600, 1000).await;
    file_with(&mut core, "public", 0o666, 2000).await;
    // The provider moves the public value over, naming the private file's own header and
    // body digest (both in the clear) so that a HEAD finds the digest it expects.
    let mut moved = metadata_of(&core, "public").await;
    let own = metadata_of(&core, "private").await;
    moved.insert(
        BINDING_METADATA_NAME.to_string(),
        own[BINDING_METADATA_NAME].clone(),
    );
    provider_sets(&core, "private", &moved).await;
    assert_eq!(
        shown(&mut core, "private").await,
        (0o600, 0),
        "the value was sealed for another object: private to root"
    );
}

async fn values_of_an_earlier_version_are_not_believed(shared: bool) {
    let mut core = core(shared).await;
    file_with(&mut core, "f", 0o644, 1000).await;
    let earlier = metadata_of(&core, "f").await;
    // A new version of the file, made private to its owner.
    core.write_new(&path("f"), &[b"second version".to_vec()])
        .await
        .unwrap();
    core.chmod_chown(&path("f"), 0o600, 1000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shown(&mut core, "f").await, (0o600, 1000));
    provider_sets(&core, "f", &earlier).await;
    assert_eq!(
        shown(&mut core, "f").await,
        (0o600, 0),
        "the earlier version's 0644 is not shown"
    );
}

async fn a_directory_keeps_its_own_attributes(shared: bool) {
    let mut core = core(shared).await;
    core.mkdir(&path("private"), 0o700).await.unwrap();
    core.mkdir(&path("public"), 0o777).await.unwrap();
    core.chmod_chown(&path("private"), 0o700, 1000)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shown(&mut core, "private").await, (0o700, 1000));
    assert_eq!(shown(&mut core, "public").await, (0o777, 0));
    let public = metadata_of(&core, "public/").await;
    provider_sets(&core, "private/", &public).await;
    assert_eq!(shown(&mut core, "private").await, (0o700, 0));
}

async fn bound_attributes_survive_a_rename(shared: bool) {
    let mut core = core(shared).await;
    file_with(&mut core, "a", 0o640, 1000).await;
    core.mkdir(&path("d"), 0o750).await.unwrap();
    core.rename(&path("a"), &path("d/b")).await.unwrap();
    core.rename(&path("d"), &path("e")).await.unwrap();
    assert_eq!(shown(&mut core, "e/b").await, (0o640, 1000));
    assert_eq!(shown(&mut core, "e").await, (0o750, 0));
    // A change made while the object moves rides with the copy, bound as well.
    core.chmod_chown(&path("e/b"), 0o604, 3000).await.unwrap();
    core.rename(&path("e/b"), &path("c")).await.unwrap();
    assert_eq!(shown(&mut core, "c").await, (0o604, 3000));
}

async fn deleted_and_older_values_follow_the_documented_rule(shared: bool) {
    let mut core = core(shared).await;
    file_with(&mut core, "deleted", 0o640, 1000).await;
    provider_sets(&core, "deleted", &Metadata::new()).await;
    // None recorded: the mount's defaults (--file-mode 0644, --uid 0 here) where only its
    // user reaches it; private to root on a shared mount.
    let expected = if shared { (0o600, 0) } else { (0o644, 0) };
    assert_eq!(shown(&mut core, "deleted").await, expected);

    // An older build's value (bound to nothing): as recorded on a private mount only.
    file_with(&mut core, "older", 0o600, 1000).await;
    let forged = PosixAttrs {
        mode: libc::S_IFREG | 0o755,
        uid: 1000,
        gid: 0,
        mtime: std::time::SystemTime::UNIX_EPOCH,
        ctime: std::time::SystemTime::UNIX_EPOCH,
        atime: std::time::SystemTime::UNIX_EPOCH,
    };
    let sealed = seal_unbound_attrs(&*core.master().await, &forged);
    let older = Metadata::from([(ATTRS_METADATA_NAME.to_string(), sealed)]);
    provider_sets(&core, "older", &older).await;
    let expected = if shared { (0o600, 0) } else { (0o755, 1000) };
    assert_eq!(shown(&mut core, "older").await, expected);
    // Recorded again through the mount: bound, and shown as set everywhere.
    core.chmod_chown(&path("older"), 0o750, 1000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shown(&mut core, "older").await, (0o750, 1000));

    // A directory without a marker (made by other tools).
    core.memory
        .put(
            "implicit/file",
            bytes::Bytes::from_static(b"x"),
            &Metadata::new(),
        )
        .await
        .unwrap();
    let expected = if shared { (0o700, 0) } else { (0o755, 0) };
    assert_eq!(shown(&mut core, "implicit").await, expected);
}

/// `fsck --bind-attributes`: what older builds recorded, bound where it lies, then believed
/// by a shared mount; a value that verifies under no key is left alone and reported.
#[tokio::test(start_paused = true)]
async fn older_attributes_are_bound_in_place_on_request() {
    use s3cryptfs::volume::{Binding, Volume};
    let mut core = core(true).await;
    file_with(&mut core, "file", 0o600, 1000).await;
    let master = core.master().await;
    let older = |mode: u32| {
        let attrs = PosixAttrs {
            mode,
            uid: 1000,
            gid: 0,
            mtime: std::time::SystemTime::UNIX_EPOCH,
            ctime: std::time::SystemTime::UNIX_EPOCH,
            atime: std::time::SystemTime::UNIX_EPOCH,
        };
        Metadata::from([(
            ATTRS_METADATA_NAME.to_string(),
            seal_unbound_attrs(&master, &attrs),
        )])
    };
    provider_sets(&core, "file", &older(libc::S_IFREG | 0o640)).await;
    // An older build's directory: an empty marker with its attributes.
    core.memory
        .put("dir/", bytes::Bytes::new(), &older(libc::S_IFDIR | 0o750))
        .await
        .unwrap();
    core.memory
        .put(
            "junk",
            bytes::Bytes::from_static(b"?"),
            &older(libc::S_IFREG),
        )
        .await
        .unwrap();
    assert_eq!(
        shown(&mut core, "file").await,
        (0o600, 0),
        "not believed yet"
    );

    let store: std::sync::Arc<dyn ObjectStore> = core.memory.clone();
    let key = s3cryptfs::crypto::UserKey::from_key_bytes(&[7u8; 32]).unwrap();
    let volume = Volume::open(store, "memory://volume", &key).await.unwrap();
    assert_eq!(
        volume.bind_attributes("file").await.unwrap(),
        Binding::BoundNow
    );
    assert_eq!(
        volume.bind_attributes("dir/").await.unwrap(),
        Binding::BoundNow
    );
    assert_eq!(
        volume.bind_attributes("file").await.unwrap(),
        Binding::AlreadyBound
    );
    // The new marker is sent in one request: its value is bound to its digest too.
    assert_eq!(
        volume.bind_attributes("dir/").await.unwrap(),
        Binding::AlreadyBound
    );
    assert!(matches!(
        volume.bind_attributes("junk").await.unwrap(),
        Binding::Invalid(_)
    ));
    assert_eq!(shown(&mut core, "file").await, (0o640, 1000));
    assert_eq!(shown(&mut core, "dir").await, (0o750, 1000));
    assert_eq!(core.read_all(&path("file"), 4096).await.unwrap(), b"file");
}

/// ctime moves with every change of contents, mode, owner, times or name (never backwards),
/// mtime only with the contents or an explicit utimes, atime only with utimes; all three
/// survive a remount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctime_moves_with_every_change_and_survives_a_remount() {
    use s3cryptfs::fs::AttrChange;
    let mut core = core(false).await;
    core.write_new(&path("f"), &[b"first".to_vec()])
        .await
        .unwrap();
    let mut last = core.resolve(&path("f")).await.unwrap();
    assert!(last.ctime >= last.mtime);
    // Each step: what it does, and whether the mtime moves with it.
    let mut check = |what: &str, attr: s3cryptfs::fs::Attr, mtime_moves: bool| {
        assert!(attr.ctime > last.ctime, "{what}: ctime moves");
        if mtime_moves {
            assert!(attr.mtime > last.mtime, "{what}: mtime moves");
        } else {
            assert_eq!(attr.mtime, last.mtime, "{what}: mtime stays");
        }
        last = attr;
    };
    core.chmod(&path("f"), 0o600).await.unwrap();
    check("chmod", core.resolve(&path("f")).await.unwrap(), false);
    core.chmod_chown(&path("f"), 0o600, 0).await.unwrap();
    check("chown", core.resolve(&path("f")).await.unwrap(), false);
    core.rename(&path("f"), &path("g")).await.unwrap();
    check("rename", core.resolve(&path("g")).await.unwrap(), false);
    core.write_at(&path("g"), 2, b"ST").await.unwrap();
    check("write", core.resolve(&path("g")).await.unwrap(), true);
    core.truncate(&path("g"), 3).await.unwrap();
    check("truncate", core.resolve(&path("g")).await.unwrap(), true);
    let ino = core.resolve(&path("g")).await.unwrap().ino;
    let past = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let read_at = std::time::UNIX_EPOCH + Duration::new(1_100_000_000, 5);
    let change = AttrChange {
        mtime: Some(past),
        atime: Some(read_at),
        ..Default::default()
    };
    let touched = core.fs.setattr(ino, change, None).await.unwrap();
    assert_eq!((touched.mtime, touched.atime), (past, read_at));
    assert!(touched.ctime > last.ctime, "utimes: ctime moves");
    // Reads do not move the atime (noatime).
    core.read_all(&path("g"), 4096).await.unwrap();
    core.remount().await;
    let after = core.resolve(&path("g")).await.unwrap();
    assert_eq!(
        (after.mtime, after.ctime, after.atime),
        (touched.mtime, touched.ctime, read_at),
        "recorded with the object"
    );
}

/// A file replaced by a rename while its own attribute change waits to be saved: the wait
/// ends with nothing saved onto the object now under the name (its values would not verify
/// there, and the file would show as root's, 0600).
#[tokio::test(start_paused = true)]
async fn a_replaced_file_saves_no_attributes_onto_its_replacement() {
    let mut core = core(false).await;
    core.write_new(&path("target"), &[b"old".to_vec()])
        .await
        .unwrap();
    core.write_new(&path("new"), &[b"new".to_vec()])
        .await
        .unwrap();
    core.chmod(&path("new"), 0o640).await.unwrap();
    core.fs.flush_all_attrs().await;
    core.chmod(&path("target"), 0o600).await.unwrap();
    core.rename(&path("new"), &path("target")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // past the delayed save
    let (mode, _) = shown(&mut core, "target").await;
    assert_eq!(mode, 0o640, "the replacement keeps its own attributes");
    assert_eq!(core.read_all(&path("target"), 4096).await.unwrap(), b"new");
}

/// Lookups made since `since` = (HEADs, header reads): a header read is a ranged GET.
fn lookups_since(core: &Core, since: (usize, usize)) -> (usize, usize) {
    let reads = core.faults.header_reads() - since.1;
    (core.faults.calls(Op::Head) - since.0 - reads, reads)
}

fn lookup_counts(core: &Core) -> (usize, usize) {
    (core.faults.calls(Op::Head), core.faults.header_reads())
}

/// Attributes sealed for the body's digest (everything this build sends in one request) are
/// checked by a HEAD alone, the ETag being that digest: no ranged GET of the header when a
/// listed name is looked up.
#[tokio::test(start_paused = true)]
async fn bound_attributes_are_checked_by_one_head() {
    let mut core = core(true).await;
    file_with(&mut core, "f", 0o640, 1000).await;
    core.write_new(&path("new"), &[b"as written".to_vec()])
        .await
        .unwrap();
    core.mkdir(&path("d"), 0o750).await.unwrap();
    core.chmod_chown(&path("d"), 0o750, 1000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    core.remount().await;
    // Listed first, as `ls -l` does (a name not listed is asked for with a GET that also
    // brings its first segment, for the read that usually follows). Listing asks about
    // small objects, which may be symlinks or special files: those are these lookups.
    let before = lookup_counts(&core);
    core.list(&[]).await.unwrap();
    let f = core.resolve(&path("f")).await.unwrap();
    let new = core.resolve(&path("new")).await.unwrap();
    let d = core.resolve(&path("d")).await.unwrap();
    assert_eq!((f.perm, f.uid), (0o640, 1000));
    assert_eq!(new.uid, Core::caller().uid);
    assert_eq!((d.perm, d.uid), (0o750, 1000));
    assert_eq!(
        lookups_since(&core, before),
        (3, 0),
        "(HEADs, header reads)"
    );
}

/// A volume of objects whose values are bound to their header only (multipart uploads, builds
/// before digests): each is looked up by one ranged GET, after a few lookups that also tried
/// a HEAD first; shown as recorded.
#[tokio::test(start_paused = true)]
async fn attributes_bound_to_the_header_only_are_read_with_it() {
    let mut core = core(true).await;
    let master = core.master().await;
    let layout = Layout::with_format(65536, VOLUME_FORMAT_VERSION as u8).unwrap();
    let files = 100;
    for i in 0..files {
        let name = format!("f{i:03}");
        core.write_new(&path(&name), &[name.as_bytes().to_vec()])
            .await
            .unwrap();
        let body = core.memory.object(&name).unwrap();
        let header = Header::parse(&body, layout).unwrap();
        let attrs = PosixAttrs {
            mode: libc::S_IFREG | 0o604,
            uid: 4000 + i,
            gid: 0,
            mtime: std::time::SystemTime::UNIX_EPOCH,
            ctime: std::time::SystemTime::UNIX_EPOCH,
            atime: std::time::SystemTime::UNIX_EPOCH,
        };
        let sealed = seal_attrs(&master, &attrs, &AttrsBinding::of(&header));
        let header_only = Metadata::from([(ATTRS_METADATA_NAME.to_string(), sealed)]);
        provider_sets(&core, &name, &header_only).await;
    }
    core.remount().await;
    let before = lookup_counts(&core);
    core.list(&[]).await.unwrap();
    for i in 0..files {
        let attr = core.resolve(&path(&format!("f{i:03}"))).await.unwrap();
        assert_eq!((attr.perm, attr.uid), (0o604, 4000 + i));
    }
    let (heads, reads) = lookups_since(&core, before);
    assert_eq!(reads, files as usize, "one header read each");
    assert!(
        heads <= 32,
        "{heads} HEADs: they stop once they do not help"
    );
}
