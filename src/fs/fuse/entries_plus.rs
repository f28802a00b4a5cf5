//! READDIRPLUS replies: each entry with the attributes this mount has at hand, so that a
//! program that looks at every entry (`ls -l`) needs no LOOKUP for them.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fuser::{INodeNo, ReplyDirectoryPlus};

use super::convert::{bare_attr, file_attr};
use super::{GENERATION, NameTotals};
use crate::fs::filesystem::{DirEntry, FsCore};

/// Answers a READDIRPLUS whose first entry (from `start`) the mount has to ask S3 about: it
/// is looked up (the program's next step would have looked it up anyway), then the reply is
/// filled on from it as [`fill_plus`] does. A reply may not be empty before the end of the
/// directory: the kernel would take it for the end.
pub(super) async fn reply_from_lookup(
    fs: &FsCore,
    ttl: Duration,
    totals: &NameTotals,
    dir: u64,
    entries: &[DirEntry],
    start: usize,
    mut reply: ReplyDirectoryPlus,
) {
    let first = &entries[start];
    let offset = (start + 1) as u64;
    match fs.lookup(dir, OsStr::new(&first.name)).await {
        Ok(a) => {
            add_known(fs, totals, ttl, first, offset, &a, &mut reply);
        }
        Err(e) => {
            e.log("readdirplus");
            add_stand_in(fs, dir, first, offset, &mut reply);
        }
    }
    fill_plus(fs, ttl, totals, dir, entries, start + 1, &mut reply);
    reply.ok();
}

/// Adds an entry with its attributes, a lookup to the kernel: counted in `totals`, or
/// forgotten again if the reply had no room for it. Returns whether the reply was full.
fn add_known(
    fs: &FsCore,
    totals: &NameTotals,
    ttl: Duration,
    entry: &DirEntry,
    offset: u64,
    attr: &crate::fs::filesystem::Attr,
    reply: &mut ReplyDirectoryPlus,
) -> bool {
    let full = reply.add(
        INodeNo(attr.ino),
        offset,
        &entry.name,
        &ttl,
        &file_attr(attr),
        GENERATION,
    );
    if full {
        // Not sent: the lookup it counted did not happen.
        fs.forget(attr.ino, 1);
    } else {
        totals.listed_with_attrs.fetch_add(1, Ordering::Relaxed);
    }
    full
}

/// Adds to a READDIRPLUS reply, from entry `start` on, the entries whose attributes `fs`
/// has at hand, and stops before the first it has not (or when the reply is full). Returns
/// how many entries the reply holds.
pub(super) fn fill_plus(
    fs: &FsCore,
    ttl: Duration,
    totals: &NameTotals,
    dir: u64,
    entries: &[DirEntry],
    start: usize,
    reply: &mut ReplyDirectoryPlus,
) -> usize {
    let mut sent = 0;
    for (i, e) in entries.iter().enumerate().skip(start) {
        let offset = (i + 1) as u64;
        let full = if e.name == "." || e.name == ".." {
            // Shown, not looked up: only their inode number and type are used.
            let attr = fs
                .attr_now(e.ino)
                .map_or_else(|| bare_attr(e.ino, e.kind), |a| file_attr(&a));
            reply.add(INodeNo(e.ino), offset, &e.name, &ttl, &attr, GENERATION)
        } else {
            match fs.entry_attrs_now(dir, OsStr::new(&e.name)) {
                None => break,
                Some(Ok(a)) => add_known(fs, totals, ttl, e, offset, &a, reply),
                Some(Err(err)) => {
                    err.log("readdirplus");
                    add_stand_in(fs, dir, e, offset, reply)
                }
            }
        };
        if full {
            break;
        }
        sent += 1;
    }
    sent
}

/// An entry whose lookup failed, handed over so that the listing stays whole: its stand-in
/// inode expires at once, so the kernel looks the name up again (and gets the error) before
/// anything uses it. Returns whether the reply was full.
fn add_stand_in(
    fs: &FsCore,
    dir: u64,
    entry: &DirEntry,
    offset: u64,
    reply: &mut ReplyDirectoryPlus,
) -> bool {
    let ino = fs.stand_in_ino(dir, &entry.name);
    let attr = bare_attr(ino, entry.kind);
    reply.add(
        INodeNo(ino),
        offset,
        &entry.name,
        &Duration::ZERO,
        &attr,
        GENERATION,
    )
}
