//! Command-line arguments (clap). Names follow mountpoint-s3 and rclone where they mean the same.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::store::StoreConfig;
use crate::upload::OnConflict;

/// `--on-conflict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictPolicy {
    KeepBoth,
    Error,
}

impl From<ConflictPolicy> for OnConflict {
    fn from(policy: ConflictPolicy) -> Self {
        match policy {
            ConflictPolicy::KeepBoth => OnConflict::KeepBoth,
            ConflictPolicy::Error => OnConflict::Error,
        }
    }
}

pub use super::key_args::{KeyArgs, PASSPHRASE_ENV, Secret};

#[derive(Debug, Parser)]
#[command(
    name = "s3cryptfs",
    version,
    about = "Mount an S3 bucket as a directory, with everything encrypted on the client",
    long_about = "s3cryptfs mounts an S3 bucket (or a prefix of one) as a directory. File contents \
                  are encrypted and authenticated on this machine (AES-256-CTR + HMAC-SHA256, per-object \
                  keys), so the storage provider only ever holds ciphertext.\n\n\
                  Credentials come from the standard AWS chain: environment (AWS_ACCESS_KEY_ID, ...), \
                  ~/.aws profiles (--profile), web identity, instance metadata. Secrets are never \
                  taken on the command line."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an encrypted volume at BUCKET[/PREFIX], unlocked by a key file or a passphrase
    /// and by a recovery key printed once
    Init(InitArgs),
    /// Mount the volume at BUCKET[/PREFIX] on a directory
    Mount(MountArgs),
    /// Unmount a mounted volume (files still being written are saved first)
    Umount(UmountArgs),
    /// List the volume's files without mounting it (sizes are plaintext sizes)
    Ls(LsArgs),
    /// Decrypt one file of the volume to stdout, verified, without mounting it
    Cat(ObjectArgs),
    /// Copy a file out of the volume to a local path, verified, without mounting it
    Get(GetArgs),
    /// Copy a local file into the volume, encrypted, without mounting it
    Put(PutArgs),
    /// Verify every object of the volume and find (and optionally abort) stale uploads
    Fsck(FsckArgs),
    /// Change the key or passphrase that unlocks the volume (the data is not rewritten):
    /// replaces the key slot the current key opens
    Rekey(RekeyArgs),
    /// List, add or remove key slots: the key files, passphrases and recovery keys that
    /// each unlock the volume on their own
    #[command(subcommand)]
    Key(KeyCommand),
    /// Export the volume config to a file (an offline backup of what unlocks the volume) or
    /// import it back into a volume whose config was lost
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the volume's key slots (needs no key: the config is not secret)
    List(LocationArgs),
    /// Add a key slot: a new key file, passphrase or recovery key, unlocked with an existing
    /// key (--key-file, --passphrase-file, ...)
    Add(KeyAddArgs),
    /// Remove a key slot, unlocked with any key of the volume (the last slot is kept)
    Remove(KeyRemoveArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write the volume config (JSON, holding only wrapped keys) to a file or stdout
    Export(ConfigExportArgs),
    /// Write an exported config back into the volume (both copies), after checking that
    /// the given key unlocks it and that it belongs to the volume there
    Import(ConfigImportArgs),
}

/// The volume and how to reach it, for commands that need no key.
#[derive(Debug, Args)]
pub struct LocationArgs {
    /// The volume: BUCKET or BUCKET/PREFIX
    pub location: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// What a new key slot holds.
#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// The new key file (see --generate-key)
    #[arg(long, value_name = "FILE", conflicts_with = "new_passphrase_file")]
    pub new_key_file: Option<PathBuf>,
    /// Generate the new key into --new-key-file first
    #[arg(long, requires = "new_key_file")]
    pub generate_key: bool,
    /// File whose first line is the new passphrase (on a terminal, without any --new-*
    /// option, it is asked for twice)
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    /// A slot whose key AWS KMS keeps: a random key, encrypted by this KMS key (id, ARN or
    /// alias; the credentials need kms:Encrypt now and kms:Decrypt to unlock, see --kms)
    #[arg(long, value_name = "KEY_ID", conflicts_with_all = ["new_key_file", "new_passphrase_file"])]
    pub new_kms_key_id: Option<String>,
    /// scrypt cost of a new passphrase, as log2(N)
    #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u8).range(10..=22))]
    pub kdf_cost: u8,
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The volume and a key that unlocks it now
    #[command(flatten)]
    pub volume: VolumeArgs,
    #[command(flatten)]
    pub new: NewKeyArgs,
    /// Add a recovery key: a random key printed once, for a person to write down
    #[arg(long, conflicts_with_all = ["new_key_file", "new_passphrase_file", "new_kms_key_id"])]
    pub recovery: bool,
    /// Name of the new slot (letters, digits, '.', '_', '-'); by default its kind
    /// ("key-file", "passphrase", "recovery", with -2, -3, ... when taken)
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// The volume and a key that unlocks it now
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Name of the slot to remove (`s3cryptfs key list` shows them)
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ConfigExportArgs {
    #[command(flatten)]
    pub volume: LocationArgs,
    /// File to write (refuses to overwrite; mode 0600); stdout if not given
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigImportArgs {
    /// The volume and a key that unlocks the config being imported
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// The exported config
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Multipart uploads older than this are stale (a crashed or killed writer left them):
    /// seconds, or with an s/m/h/d suffix
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    pub stale_after: std::time::Duration,
    /// Abort the stale uploads (their parts stop costing storage) and remove stale pending
    /// versions of new files (left by a mount that died before saving them)
    #[arg(long)]
    pub abort_stale: bool,
    /// Remove the records of possible lost updates once they are looked at (a mount makes
    /// one when another mount replaced a file just as it saved it, on a server that ignores
    /// conditional writes; fsck lists them until then)
    #[arg(long)]
    pub forget_lost_updates: bool,
    /// Write the volume config's missing, damaged or outdated copy from the one that
    /// unlocked (the config lives in two objects, .s3cryptfs/volume.json and
    /// volume.copy.json, so that losing one does not lose the volume)
    #[arg(long)]
    pub repair_config: bool,
    /// Check only each object's size and header, not every segment's tag (much faster)
    #[arg(long)]
    pub headers_only: bool,
    /// Check every segment's tag of only this percentage of the objects (chosen by a hash of
    /// the name, so repeated runs with the same figure check the same ones); the others get
    /// the size and header check
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub sample: u8,
    /// Bind the attributes (mode, owner, times) that builds before attribute binding recorded
    /// to their objects, so that an --allow-other mount shows them instead of root 0600.
    /// Run it once, while you trust the bucket's contents: whatever attributes it finds are
    /// taken as they are
    #[arg(long)]
    pub bind_attributes: bool,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// The mount point
    pub mountpoint: PathBuf,
}

/// The volume and how to reach and unlock it (for commands that work without a mount).
#[derive(Debug, Args)]
pub struct VolumeArgs {
    /// The volume: BUCKET or BUCKET/PREFIX
    pub location: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Directory inside the volume to list (default: its root)
    #[arg(default_value = "")]
    pub path: String,
    /// List subdirectories too
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(Debug, Args)]
pub struct ObjectArgs {
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Path of the file inside the volume
    pub path: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Path of the file inside the volume
    pub path: String,
    /// Local file to write (refuses to overwrite unless --force)
    pub local: PathBuf,
    /// Overwrite the local file if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Local file to upload
    pub local: PathBuf,
    /// Path inside the volume (replaced if it exists)
    pub path: String,
}

/// Where the bucket is and how to reach it.
#[derive(Debug, Args, Clone)]
pub struct ConnectionArgs {
    /// Key prefix of the volume inside the bucket (instead of, or appended to,
    /// BUCKET/PREFIX)
    #[arg(long)]
    pub prefix: Option<String>,
    /// AWS region of the bucket [default: from AWS_REGION or the profile, else us-east-1]
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// S3 endpoint URL, for S3-compatible servers (MinIO, Garage, Ceph ...) [env: AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Use path-style addressing (http://host/bucket/key), needed by most self-hosted servers
    #[arg(long)]
    pub force_path_style: bool,
    /// Named AWS profile to take credentials and region from
    #[arg(long)]
    pub profile: Option<String>,
    /// PEM file of extra CA certificates for an HTTPS endpoint [env: AWS_CA_BUNDLE]
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Seconds before an S3 request attempt is abandoned and retried
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Attempts per S3 request (retries back off exponentially; throttling is retried too)
    #[arg(long, default_value_t = 6)]
    pub max_attempts: u32,
}

impl ConnectionArgs {
    pub fn store_config(&self, location: &str) -> Result<StoreConfig, String> {
        let location = match &self.prefix {
            Some(p) => format!(
                "{}/{}",
                location.trim_end_matches('/'),
                p.trim_start_matches('/')
            ),
            None => location.to_string(),
        };
        let mut config = StoreConfig::from_location(&location)?;
        config.region = self.region.clone();
        config.endpoint_url = self.endpoint_url.clone();
        config.force_path_style = self.force_path_style;
        config.profile = self.profile.clone();
        config.ca_bundle = self.ca_bundle.clone();
        config.attempt_timeout = Duration::from_secs(self.request_timeout.max(1));
        config.max_attempts = self.max_attempts.max(1);
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The volume: BUCKET or BUCKET/PREFIX
    pub location: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Plaintext segment size in bytes (power of two, 4096 to 16777216): the unit of
    /// authentication and of random reads
    #[arg(long, default_value_t = crate::crypto::Layout::DEFAULT_SEGMENT_SIZE)]
    pub segment_size: u32,
    /// Create the volume even if the prefix already holds other objects
    #[arg(long)]
    pub force: bool,
    /// Encrypt file and directory names too (each path component with AES-SIV, bound to
    /// its directory): the bucket's key list then shows no names, only their number, depth
    /// and lengths. Fixed for the life of the volume
    #[arg(long)]
    pub encrypt_names: bool,
    /// Object format of the volume, fixed for its life. 3 (default): segments sealed with
    /// AES-256-GCM, about a fifth of the CPU time of 2's AES-CTR with HMAC-SHA256. 2: the
    /// default of builds before 2026-12 (appends keep what a file already has in the bucket,
    /// as in 3). 1: the first format. Choose 1 or 2 only for volumes that older builds must
    /// still mount; this build reads and writes all three
    #[arg(long, default_value_t = crate::crypto::VOLUME_FORMAT_VERSION, value_parser = clap::value_parser!(u32).range(1..=3))]
    pub object_format: u32,
    /// Generate a new random key into --key-file first (mode 0600; an existing file is
    /// never overwritten)
    #[arg(long, requires = "key_file")]
    pub generate_key: bool,
    /// Make no recovery key. By default init adds one: a random key printed once, in
    /// groups a person can write down, that unlocks the volume if every other key is lost
    #[arg(long)]
    pub no_recovery_key: bool,
    /// scrypt cost of a passphrase volume, as log2(N): each step doubles the time and memory
    /// an attacker needs per guess (17 = 128 MiB)
    #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u8).range(10..=22))]
    pub kdf_cost: u8,
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The volume and its current key or passphrase
    #[command(flatten)]
    pub volume: VolumeArgs,
    #[command(flatten)]
    pub new: NewKeyArgs,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// The volume: BUCKET or BUCKET/PREFIX
    pub location: String,
    /// The directory to mount it on
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Owner shown for objects that record none (written by other tools); files made
    /// through the mount record their own [default: the mounting user]
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group shown for objects that record none [default: the mounting user's group]
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits, in octal, of files that record none
    #[arg(long, default_value = "0644", value_parser = parse_mode)]
    pub file_mode: u16,
    /// Permission bits, in octal, of directories that record none
    #[arg(long, default_value = "0755", value_parser = parse_mode)]
    pub dir_mode: u16,
    /// Let users other than the one who mounted use the mount
    #[arg(long)]
    pub allow_other: bool,
    /// Mount read-only
    #[arg(long)]
    pub read_only: bool,
    /// Forbid running programs from the mount (as `mount -o noexec`); the mount is always
    /// nosuid and nodev
    #[arg(long)]
    pub noexec: bool,
    /// Unmount as soon as the daemon exits, however it exits (kill -9, OOM): fusermount3
    /// watches it. Without it a dead daemon leaves a mount answering ENOTCONN, which the next
    /// mount on the same directory clears. Lets root use the mount too (FUSE's allow_root)
    #[arg(long)]
    pub auto_unmount: bool,
    /// Seconds that attributes, directory listings and negative lookups are trusted before
    /// S3 is asked again (changes made through this mount are seen at once)
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub metadata_ttl: f64,
    /// Directory for the encrypted staging copies of files changed in place (opened for
    /// writing without truncating) [default: $XDG_CACHE_HOME/s3cryptfs, /var/cache/s3cryptfs
    /// for root]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Local disk that the staging copies of all files being changed in place may take
    /// together (K, M, G suffixes); a change beyond it fails with ENOSPC
    #[arg(long, default_value = "10G", value_parser = parse_size)]
    pub max_cache_size: u64,
    /// Largest new file that programs can still change behind its end after its first parts
    /// were uploaded (zip, linkers, muxers and databases go back to patch what they wrote):
    /// up to this size the parts sent are also kept, encrypted, under --cache-dir (within
    /// --max-cache-size) until the file is saved. Past it such a write fails with EINVAL.
    /// The copy costs CPU (page cache writes), not speed or memory; 0 keeps nothing (K, M,
    /// G suffixes)
    #[arg(long, default_value = "256M", value_parser = parse_size_or_zero, value_name = "SIZE")]
    pub keep_sent_parts: u64,
    /// What a save does when another mount saved (or removed) the file since this mount
    /// last read it (docs/SEMANTICS.md, "Several mounts on one volume"): `keep-both` keeps
    /// both versions, one under NAME.conflict-HOST-TIME beside the file, and close()
    /// succeeds with a warning in the log; `error` fails close()/fsync() with EIO and
    /// leaves the other mount's version in place
    #[arg(long, value_enum, default_value = "keep-both", value_name = "POLICY")]
    pub on_conflict: ConflictPolicy,
    /// Memory for cached decrypted segments (K, M, G suffixes). Files read at once share it
    /// for read-ahead: many concurrent readers of large files go faster with more
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub cache_size: u64,
    /// Largest read-ahead window of a sequential reader (K, M, G suffixes)
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub max_prefetch: u64,
    /// Memory for upload part buffers across all files being written (K, M, G suffixes);
    /// a new writer waits, then fails with ENOMEM, when it is used up
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub max_upload_memory: u64,
    /// Part buffers of one file being written: the parts uploading and the one it fills.
    /// When a full part makes this many, write() waits for the first upload to finish. Each
    /// takes --part-size of memory; more help only when the network's latency is the limit
    #[arg(long, default_value_t = crate::upload::DEFAULT_PARTS_IN_FLIGHT)]
    pub parts_in_flight: usize,
    /// Size of each of a new file's first 1000 upload parts (5M to 512M; later parts grow
    /// so a file can reach 5 TiB). Smaller parts use less memory (--parts-in-flight of them
    /// per file being written), larger ones fewer requests
    #[arg(long, default_value = "8M", value_parser = parse_part_size, value_name = "SIZE")]
    pub part_size: u64,
    /// Stay in the foreground (for systemd services and debugging)
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Let the daemon dump core when it crashes. Off by default: a core dump holds the
    /// volume's keys and recently read plaintext
    #[arg(long)]
    pub allow_core_dumps: bool,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Serve Prometheus metrics (requests by kind, bytes, errors, parts in flight, cache
    /// hits, single-PUT vs multipart files) at http://ADDR/metrics; loopback addresses only
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Append logs to this file. Without it logs go to stderr, which a background mount
    /// closes once the mount is live (use --foreground under systemd: journald keeps them)
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// `90`, `90s`, `15m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration such as 90s, 15m, 2h or 1d"))?;
    let secs = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3600,
        'd' => n * 86400,
        _ => return Err(format!("'{s}': unknown unit (use s, m, h or d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

pub fn parse_mode(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{s}' is not an octal mode such as 0644"))
}

/// A size: a number with a unit, `64K`, `128M`, `2G`, `1T`, also written `64KiB`, `64KB`,
/// `128 MiB` (all powers of 1024), or a bare number of bytes of at least 1 MiB. A bare
/// number below that is refused: `--max-cache-size 10240` was meant as MiB, not as 10 KiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = (&t[..split], t[split..].trim());
    let multiplier: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "'{s}': unknown size unit (use K, M, G or T, or KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("'{s}' is not a size such as 128M"))?;
    if unit.is_empty() && bytes < 1 << 20 {
        return Err(format!(
            "'{s}' would be {bytes} bytes: give a unit, such as {s}M or {s}K"
        ));
    }
    Ok(bytes)
}

/// An upload part size within S3's limits and ours.
fn parse_part_size(s: &str) -> Result<u64, String> {
    use crate::upload::{MAX_PART_SIZE, MIN_PART_SIZE};
    let bytes = parse_size(s)?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&bytes) {
        return Err(format!(
            "'{s}': a part size must be from {} to {} (S3 refuses parts under 5 MiB)",
            show_size(MIN_PART_SIZE),
            show_size(MAX_PART_SIZE)
        ));
    }
    Ok(bytes)
}

/// A size as [`parse_size`] reads it, or `0` for none.
pub fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    parse_size(s)
}

/// A size for the startup log: `64 MiB`, `10 GiB`, `1536 KiB`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map(|(unit, size)| format!("{} {unit}", bytes / size))
        .unwrap_or_else(|| format!("{bytes} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_defaults_are_the_write_paths() {
        let cli = Cli::try_parse_from(["s3cryptfs", "mount", "bucket", "/mnt"]).unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not a mount")
        };
        assert_eq!(args.part_size, crate::upload::DEFAULT_PART_SIZE);
        assert_eq!(args.parts_in_flight, crate::upload::DEFAULT_PARTS_IN_FLIGHT);
    }

    #[test]
    fn parses_sizes_and_modes() {
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        let bare = parse_size("10240").unwrap_err();
        assert!(bare.contains("10240M"), "{bare}");
        assert!(parse_size("4096").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
        // `--keep-sent-parts 0` turns the copy off; other bare numbers keep parse_size's rule.
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        assert_eq!(parse_size_or_zero("256M"), Ok(256 << 20));
        assert!(parse_size_or_zero("100").is_err());
        // Parts: S3's 5 MiB minimum up to our 512 MiB.
        assert_eq!(parse_part_size("5M"), Ok(5 << 20));
        assert_eq!(parse_part_size("512M"), Ok(512 << 20));
        assert!(
            parse_part_size("4M")
                .unwrap_err()
                .contains("from 5 MiB to 512 MiB")
        );
        assert!(parse_part_size("1G").is_err());
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(10 << 30), "10 GiB");
        assert_eq!(show_size(1536 << 10), "1536 KiB");
        assert_eq!(show_size(1000), "1000 bytes");
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert!(parse_mode("0999").is_err());
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1d").unwrap().as_secs(), 86400);
        assert!(parse_duration("1w").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
