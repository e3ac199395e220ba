//! Durable Raft storage: a write-ahead log of entries and HardStates plus the
//! latest snapshot, on disk, mirrored in raft-rs' `MemStorage` for reads.
//!
//! Layout of a data directory:
//! - `wal.log`: records `[len u32][crc32 u32][type u8][payload]`, little
//!   endian; the CRC covers type and payload. Entries and HardStates are
//!   appended and fsynced before anything that depends on them is sent or
//!   acknowledged. At start, a torn tail (a crash mid-write: the last record
//!   incomplete, or with a sector that was never written) is cut off — it
//!   was never fsynced, so nothing depending on it was acknowledged, and the
//!   leader sends the entries again. Any other record that fails its
//!   checksum (a record followed by valid ones, or a complete last record
//!   with no sign of an interrupted write) is corruption of data that may
//!   have been acknowledged: the replica refuses to start, saying where.
//! - `snapshot.bin`: the latest snapshot (an `eraftpb.Snapshot`), replaced
//!   atomically (write, fsync, rename, fsync directory).
//!
//! On compaction the log is rewritten to hold only what follows the
//! compaction point, so disk use stays bounded.

use anyhow::{bail, Context, Result};
use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const REC_ENTRY: u8 = 1;
const REC_HARD_STATE: u8 = 2;
const HEADER: usize = 9;
/// No single record may claim to be larger than this: a bigger length field
/// is corruption, not a record.
const MAX_RECORD: usize = 512 * 1024 * 1024;

/// The raft-rs `Storage` the node reads from: the in-memory mirror of the
/// log plus the latest snapshot, which raft-rs sends to lagging followers.
#[derive(Clone)]
pub struct RaftStorage {
    mem: MemStorage,
    snapshot: Arc<RwLock<Snapshot>>,
}

impl RaftStorage {
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    pub fn latest_snapshot(&self) -> Snapshot {
        self.snapshot.read().clone()
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.read().get_metadata().index
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snapshot.read();
        if idx == snap.get_metadata().index && idx != 0 {
            return Ok(snap.get_metadata().term);
        }
        drop(snap);
        self.mem.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = self.snapshot.read();
        if snap.get_metadata().index < request_index || snap.get_metadata().index == 0 {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap.clone())
    }
}

/// The files of one replica's data directory.
pub struct DiskLog {
    dir: PathBuf,
    wal: File,
    buf: Vec<u8>,
    storage: RaftStorage,
}

/// What was recovered from disk at start.
pub struct Recovered {
    pub log: DiskLog,
    /// The snapshot to restore the state machine from, if any.
    pub snapshot: Option<Snapshot>,
    pub truncated_tail: bool,
}

impl DiskLog {
    /// Opens (or creates) a data directory. A new directory starts with
    /// `voters` as its configuration.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<Recovered> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for e in fs::read_dir(dir)? {
            let path = e?.path();
            if path.to_string_lossy().ends_with(STAGED) {
                // A snapshot being written when the replica stopped.
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        let mem = MemStorage::new();
        let snap_path = dir.join("snapshot.bin");
        let mut snapshot = Snapshot::default();
        let mut recovered_snapshot = None;
        if snap_path.exists() {
            let bytes =
                fs::read(&snap_path).with_context(|| format!("reading {}", snap_path.display()))?;
            let (payload, ok) = check_framed(&bytes);
            if !ok {
                bail!(
                    "{} is corrupt (checksum mismatch); refusing to start rather than serve \
                     corrupted state: restore the data directory from a backup (an emptied one \
                     cannot rejoin as the same member)",
                    snap_path.display()
                );
            }
            snapshot = Snapshot::parse_from_bytes(payload)
                .with_context(|| format!("decoding {}", snap_path.display()))?;
            mem.wl()
                .apply_snapshot(snapshot.clone())
                .map_err(|e| anyhow::anyhow!("applying snapshot: {e}"))?;
            recovered_snapshot = Some(snapshot.clone());
        } else {
            let voters = initial_voters(dir, voters)?;
            mem.initialize_with_conf_state(ConfState::from((voters, vec![])));
        }
        let wal_path = dir.join("wal.log");
        let mut truncated_tail = false;
        if wal_path.exists() {
            let mut bytes = Vec::new();
            File::open(&wal_path)?.read_to_end(&mut bytes)?;
            let snap_index = snapshot.get_metadata().index;
            let mut pos = 0usize;
            let mut hs: Option<HardState> = None;
            while pos < bytes.len() {
                match read_record(&bytes[pos..]) {
                    Some((ty, payload, used)) => {
                        match ty {
                            REC_ENTRY => {
                                let e = Entry::parse_from_bytes(payload)
                                    .context("decoding a log entry")?;
                                if e.index > snap_index {
                                    let last = mem.last_index().unwrap_or(0);
                                    if e.index > last + 1 {
                                        bail!(
                                            "wal.log has a gap: entry {} after {}",
                                            e.index,
                                            last
                                        );
                                    }
                                    mem.wl()
                                        .append(&[e])
                                        .map_err(|e| anyhow::anyhow!("replaying log: {e}"))?;
                                }
                            }
                            REC_HARD_STATE => {
                                hs = Some(
                                    HardState::parse_from_bytes(payload)
                                        .context("decoding a hard state")?,
                                );
                            }
                            other => bail!("wal.log: unknown record type {other}"),
                        }
                        pos += used;
                    }
                    None => {
                        if let Some(why) = corruption(&bytes, pos) {
                            bail!(
                                "{} is corrupt at offset {pos} of {} bytes: {why}; refusing to \
                                 start rather than lose or serve acknowledged state: restore the \
                                 data directory from a backup (an emptied one cannot rejoin as \
                                 the same member)",
                                wal_path.display(),
                                bytes.len()
                            );
                        }
                        // A torn write at the end: what follows was never
                        // acknowledged (we fsync before acknowledging).
                        tracing::warn!(
                            offset = pos,
                            dropped = bytes.len() - pos,
                            "wal.log ends in an incomplete or corrupt record; truncating it"
                        );
                        truncated_tail = true;
                        let f = OpenOptions::new().write(true).open(&wal_path)?;
                        f.set_len(pos as u64)?;
                        f.sync_all()?;
                        break;
                    }
                }
            }
            if let Some(mut hs) = hs {
                let last = mem.last_index().unwrap_or(0);
                if hs.commit > last {
                    hs.commit = last;
                }
                let snap_idx = snapshot.get_metadata().index;
                if hs.commit < snap_idx {
                    hs.commit = snap_idx;
                }
                mem.wl().set_hardstate(hs);
            }
        }
        let wal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .with_context(|| format!("opening {}", wal_path.display()))?;
        sync_dir(dir)?;
        Ok(Recovered {
            log: DiskLog {
                dir: dir.to_path_buf(),
                wal,
                buf: Vec::new(),
                storage: RaftStorage {
                    mem,
                    snapshot: Arc::new(RwLock::new(snapshot)),
                },
            },
            snapshot: recovered_snapshot,
            truncated_tail,
        })
    }

    pub fn storage(&self) -> RaftStorage {
        self.storage.clone()
    }

    /// Buffers entries for the log and appends them to the in-memory mirror.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in entries {
            push_record(&mut self.buf, REC_ENTRY, &e.write_to_bytes()?);
        }
        self.storage
            .mem
            .wl()
            .append(entries)
            .map_err(|e| anyhow::anyhow!("appending to the log: {e}"))?;
        Ok(())
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<()> {
        push_record(&mut self.buf, REC_HARD_STATE, &hs.write_to_bytes()?);
        self.storage.mem.wl().set_hardstate(hs.clone());
        Ok(())
    }

    /// Records a new commit index (not fsynced on its own: the commit index
    /// can always be learned again from the leader).
    pub fn set_commit(&mut self, commit: u64) -> Result<()> {
        let mut hs = self.storage.mem.rl().hard_state().clone();
        if hs.commit >= commit {
            return Ok(());
        }
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Writes and fsyncs what is buffered.
    pub fn sync(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.wal.write_all(&self.buf).context("writing wal.log")?;
        self.wal.sync_data().context("fsync of wal.log")?;
        self.buf.clear();
        Ok(())
    }

    /// Writes only, without fsync (for records whose loss is harmless).
    pub fn flush_lazy(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.wal.write_all(&self.buf).context("writing wal.log")?;
        self.buf.clear();
        Ok(())
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.storage.mem.wl().set_conf_state(cs);
    }

    /// Saves a snapshot taken by this replica at `index` and compacts the
    /// log, keeping `keep` entries before it for slow followers.
    pub fn save_own_snapshot(&mut self, snapshot: Snapshot, keep: u64) -> Result<()> {
        let staged = stage_snapshot(&self.dir, snapshot)?;
        self.install_own_snapshot(staged, keep)?;
        Ok(())
    }

    /// Makes a snapshot written by [`stage_snapshot`] (on any thread) the
    /// current one and compacts the log, keeping `keep` entries before it.
    /// One that is no newer than the current snapshot (a snapshot from the
    /// leader or a forced one was installed meanwhile) is dropped: answers
    /// whether it was installed.
    pub fn install_own_snapshot(&mut self, staged: StagedSnapshot, keep: u64) -> Result<bool> {
        let index = staged.snapshot.get_metadata().index;
        if index <= self.storage.snapshot_index() {
            let _ = fs::remove_file(&staged.path);
            return Ok(false);
        }
        self.sync()?;
        fs::rename(&staged.path, self.dir.join("snapshot.bin"))?;
        sync_dir(&self.dir)?;
        *self.storage.snapshot.write() = staged.snapshot;
        let first = self.storage.mem.first_index().unwrap_or(1);
        let compact_to = index.saturating_sub(keep).max(first);
        if compact_to > first {
            self.storage
                .mem
                .wl()
                .compact(compact_to)
                .map_err(|e| anyhow::anyhow!("compacting the log: {e}"))?;
        }
        self.rewrite_wal()?;
        Ok(true)
    }

    /// Installs a snapshot received from the leader, replacing the log.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        self.sync()?;
        self.write_snapshot_file(&snapshot)?;
        self.storage
            .mem
            .wl()
            .apply_snapshot(snapshot.clone())
            .map_err(|e| anyhow::anyhow!("installing snapshot: {e}"))?;
        *self.storage.snapshot.write() = snapshot;
        self.rewrite_wal()
    }

    fn write_snapshot_file(&self, snapshot: &Snapshot) -> Result<()> {
        write_atomically(&self.dir, "snapshot.bin", &framed_snapshot(snapshot)?)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces wal.log with the current HardState and retained entries.
    fn rewrite_wal(&mut self) -> Result<()> {
        let mut out = Vec::new();
        let core = self.storage.mem.rl();
        let hs = core.hard_state().clone();
        drop(core);
        let first = self.storage.mem.first_index().unwrap_or(1);
        let last = self.storage.mem.last_index().unwrap_or(0);
        if last >= first {
            let ents = self
                .storage
                .mem
                .entries(first, last + 1, None, GetEntriesContext::empty(false))
                .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
            for e in &ents {
                push_record(&mut out, REC_ENTRY, &e.write_to_bytes()?);
            }
        }
        push_record(&mut out, REC_HARD_STATE, &hs.write_to_bytes()?);
        write_atomically(&self.dir, "wal.log", &out)?;
        self.wal = OpenOptions::new()
            .append(true)
            .open(self.dir.join("wal.log"))?;
        Ok(())
    }
}

/// The configuration a data directory started with, recorded when it was
/// created (`initial-voters`), so that a restart before the first snapshot
/// never takes a different one from changed flags (`--peers` listing a
/// member added since, or `--join` left out). Directories made before the
/// file existed take `voters`, as they always did.
fn initial_voters(dir: &Path, voters: &[u64]) -> Result<Vec<u64>> {
    let path = dir.join("initial-voters");
    match fs::read_to_string(&path) {
        Ok(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<u64>()
                    .with_context(|| format!("{} holds {text:?}", path.display()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = voters
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            write_atomically(dir, "initial-voters", text.as_bytes())?;
            Ok(voters.to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn push_record(buf: &mut Vec<u8>, ty: u8, payload: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(payload);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.push(ty);
    buf.extend_from_slice(payload);
}

/// Reads one record; `None` when it is incomplete or its checksum fails.
fn read_record(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    if b.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(b[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b[4..8].try_into().ok()?);
    let ty = b[8];
    if len > MAX_RECORD || b.len() < HEADER + len {
        return None;
    }
    let payload = &b[HEADER..HEADER + len];
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(payload);
    if h.finalize() != crc {
        return None;
    }
    Some((ty, payload, HEADER + len))
}

/// Disk sectors: a write interrupted by a crash leaves whole sectors
/// unwritten (zeros), never half of one.
const SECTOR: usize = 512;

/// Why the bad record at `pos` of `wal` is corruption rather than a torn
/// last write, or `None` when it is a torn write (safe to cut off).
fn corruption(wal: &[u8], pos: usize) -> Option<String> {
    // Anything valid after it: the bad record is in the middle.
    let mut at = pos + 1;
    while at + HEADER <= wal.len() {
        if let Some((ty, _, _)) = read_record(&wal[at..]) {
            if ty == REC_ENTRY || ty == REC_HARD_STATE {
                return Some(format!(
                    "a record fails its checksum and valid records follow it (at offset {at})"
                ));
            }
        }
        at += 1;
    }
    // Nothing valid follows: the bad region runs to the end. A write cut
    // short by a crash ends in an incomplete record...
    let mut at = pos;
    while at < wal.len() {
        if wal.len() - at < HEADER {
            return None;
        }
        let len = u32::from_le_bytes(wal[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD || at + HEADER + len > wal.len() {
            return None;
        }
        at += HEADER + len;
    }
    // ...or has whole sectors that were never written (zeros).
    if wal[pos..].iter().all(|&b| b == 0) {
        return None;
    }
    let mut start = pos.div_ceil(SECTOR) * SECTOR;
    while start + SECTOR <= wal.len() {
        if wal[start..start + SECTOR].iter().all(|&b| b == 0) {
            return None;
        }
        start += SECTOR;
    }
    Some(format!(
        "its last {} bytes fail their checksum but are complete records, with no unwritten \
         sector: not an interrupted write",
        wal.len() - pos
    ))
}

fn check_framed(b: &[u8]) -> (&[u8], bool) {
    match read_record(b) {
        Some((_, payload, used)) if used == b.len() => (payload, true),
        _ => (&[], false),
    }
}

/// A snapshot written and fsynced beside the data directory's current one,
/// waiting for [`DiskLog::install_own_snapshot`].
pub struct StagedSnapshot {
    pub snapshot: Snapshot,
    path: PathBuf,
}

/// Writes `snapshot` to `snapshot.bin.<index>.staged` in `dir` and fsyncs
/// it: the expensive part of saving a snapshot, safe on another thread
/// while the log moves on (nothing reads staged files; `open` removes
/// leftovers of a crash).
pub fn stage_snapshot(dir: &Path, snapshot: Snapshot) -> Result<StagedSnapshot> {
    let index = snapshot.get_metadata().index;
    let framed = framed_snapshot(&snapshot)?;
    let path = dir.join(format!("snapshot.bin.{index}{STAGED}"));
    let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&framed)?;
    f.sync_all()?;
    Ok(StagedSnapshot { snapshot, path })
}

const STAGED: &str = ".staged";

/// `snapshot.bin`'s contents: one checksummed record holding the snapshot.
fn framed_snapshot(snapshot: &Snapshot) -> Result<Vec<u8>> {
    let bytes = snapshot.write_to_bytes()?;
    let mut framed = Vec::with_capacity(bytes.len() + HEADER);
    push_record(&mut framed, 0, &bytes);
    Ok(framed)
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, size: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: vec![index as u8 | 1; size].into(),
            ..Default::default()
        }
    }

    /// A data directory with `n` entries (one record each) and a HardState
    /// record; returns the record offsets.
    fn write_log(dir: &Path, n: u64, size: usize) -> Vec<usize> {
        let mut log = DiskLog::open(dir, &[1]).unwrap().log;
        let mut offsets = Vec::new();
        let mut at = std::fs::metadata(dir.join("wal.log")).unwrap().len() as usize;
        for i in 1..=n {
            log.append(&[entry(i, size)]).unwrap();
            offsets.push(at);
            at += log.buf.len();
            log.sync().unwrap();
        }
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: n,
            ..Default::default()
        };
        log.set_hard_state(&hs).unwrap();
        offsets.push(at);
        log.sync().unwrap();
        offsets
    }

    fn wal(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join("wal.log")).unwrap()
    }

    fn set_wal(dir: &Path, b: &[u8]) {
        std::fs::write(dir.join("wal.log"), b).unwrap();
    }

    fn last_index(dir: &Path) -> Result<(u64, bool)> {
        let r = DiskLog::open(dir, &[1])?;
        Ok((r.log.storage().last_index().unwrap(), r.truncated_tail))
    }

    #[test]
    fn an_intact_log_reopens_whole() {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 10, 100);
        assert_eq!(last_index(d.path()).unwrap(), (10, false));
        let hs = DiskLog::open(d.path(), &[1])
            .unwrap()
            .log
            .storage()
            .initial_state()
            .unwrap();
        assert_eq!(hs.hard_state.vote, 1);
    }

    #[test]
    fn a_torn_last_write_is_cut_off() {
        // Cut in the middle of the last record (the HardState), then of
        // the last entry.
        let d = tempfile::tempdir().unwrap();
        let offs = write_log(d.path(), 10, 100);
        let b = wal(d.path());
        set_wal(d.path(), &b[..b.len() - 3]);
        assert_eq!(last_index(d.path()).unwrap(), (10, true));
        set_wal(d.path(), &b[..offs[9] + 20]);
        assert_eq!(last_index(d.path()).unwrap(), (9, true));
        // The cut is persistent: a second start finds a clean log.
        assert_eq!(last_index(d.path()).unwrap(), (9, false));
        // An incomplete header.
        set_wal(d.path(), &b[..offs[9] + 4]);
        assert_eq!(last_index(d.path()).unwrap(), (9, true));
    }

    #[test]
    fn a_tail_of_zeros_is_a_torn_write() {
        // The file grew but the data never reached the disk.
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 10, 100);
        let mut b = wal(d.path());
        b.extend(std::iter::repeat_n(0u8, 4096));
        set_wal(d.path(), &b);
        assert_eq!(last_index(d.path()).unwrap(), (10, true));
    }

    #[test]
    fn a_last_record_with_an_unwritten_sector_is_a_torn_write() {
        let d = tempfile::tempdir().unwrap();
        let offs = write_log(d.path(), 5, 3000);
        // Drop the HardState record, then zero one whole sector inside the
        // last entry's payload.
        let mut b = wal(d.path());
        b.truncate(offs[5]);
        let first_sector = (offs[4] + HEADER).div_ceil(SECTOR) * SECTOR;
        b[first_sector..first_sector + SECTOR].fill(0);
        set_wal(d.path(), &b);
        assert_eq!(last_index(d.path()).unwrap(), (4, true));
    }

    #[test]
    fn a_corrupt_record_in_the_middle_refuses_to_start() {
        // Before: the log was silently cut at the bad record, losing every
        // later (fsynced, possibly acknowledged) entry and the vote.
        let d = tempfile::tempdir().unwrap();
        let offs = write_log(d.path(), 10, 100);
        let mut b = wal(d.path());
        b[offs[4] + HEADER + 10] ^= 0x40;
        set_wal(d.path(), &b);
        let e = last_index(d.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt at offset"), "{e}");
        assert!(e.contains("valid records follow"), "{e}");
        assert!(e.contains("refusing to start"), "{e}");
        // Nothing was cut.
        assert_eq!(wal(d.path()), b);
        // A corrupt length field, too.
        let mut b = wal(d.path());
        b[offs[4] + HEADER + 10] ^= 0x40;
        b[offs[4]..offs[4] + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
        set_wal(d.path(), &b);
        let e = last_index(d.path()).unwrap_err().to_string();
        assert!(e.contains("valid records follow"), "{e}");
    }

    #[test]
    fn a_complete_last_record_that_fails_its_checksum_refuses_to_start() {
        // Not the signature of an interrupted write: bit rot in the last
        // record, which may hold an acknowledged entry or a vote.
        let d = tempfile::tempdir().unwrap();
        let offs = write_log(d.path(), 10, 100);
        let mut b = wal(d.path());
        b[offs[10] + HEADER + 1] ^= 0x01;
        set_wal(d.path(), &b);
        let e = last_index(d.path()).unwrap_err().to_string();
        assert!(e.contains("fail their checksum but are complete"), "{e}");
    }

    #[test]
    fn a_corrupt_snapshot_refuses_to_start() {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), 10, 100);
        let mut log = DiskLog::open(d.path(), &[1]).unwrap().log;
        let mut snap = Snapshot::default();
        snap.set_data(vec![7u8; 1000].into());
        snap.mut_metadata().index = 8;
        snap.mut_metadata().term = 1;
        snap.mut_metadata()
            .set_conf_state(ConfState::from((vec![1], vec![])));
        log.save_own_snapshot(snap, 2).unwrap();
        drop(log);
        assert_eq!(last_index(d.path()).unwrap().0, 10);
        let p = d.path().join("snapshot.bin");
        let mut b = std::fs::read(&p).unwrap();
        b[HEADER + 500] ^= 0x10;
        std::fs::write(&p, &b).unwrap();
        let e = last_index(d.path()).unwrap_err().to_string();
        assert!(e.contains("snapshot.bin is corrupt"), "{e}");
    }
}
