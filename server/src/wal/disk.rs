//! The file operations the log needs, behind [`Disk`]: [`StdDisk`] over `std::fs`, and
//! [`SimDisk`], an in-memory disk for tests and the deterministic simulation that loses
//! what was not synced when it [`crash`](SimDisk::crash)es.
//!
//! Paths name files; there are no handles, so the trait stays object-safe and a
//! simulated crash has nothing dangling. `SimDisk` is deterministic: a crash draws from
//! a seeded RNG, never the clock.
//!
//! What `SimDisk` keeps over a crash (the weakest disk POSIX allows, close to ext4's
//! `data=ordered` without its luck):
//! - a file's bytes as of its last `sync`, plus, when the crash keeps unsynced writes,
//!   a random prefix of the writes since (the last one kept possibly cut short);
//! - a directory's entries (create, rename, remove) as of its last `sync_dir`; later
//!   changes to it are lost.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The file operations of the log. Every method is blocking.
pub trait Disk: Send + Sync + 'static {
    /// Creates the directory and its parents (durably: parents are synced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates an empty file, replacing one of that name.
    fn create(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// The whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Exactly `len` bytes at `offset`.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Sets the length, allocating (zeroed) space when it grows.
    fn allocate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the file's bytes durable (fdatasync).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// The real disk, over `std::fs`. Open files are cached by path until renamed or removed.
#[derive(Default)]
pub struct StdDisk {
    open: Mutex<BTreeMap<PathBuf, Arc<std::fs::File>>>,
}

impl StdDisk {
    pub fn new() -> StdDisk {
        StdDisk::default()
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<PathBuf, Arc<std::fs::File>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn file(&self, path: &Path) -> io::Result<Arc<std::fs::File>> {
        if let Some(file) = self.files().get(path) {
            return Ok(file.clone());
        }
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)?,
        );
        self.files().insert(path.to_path_buf(), file.clone());
        Ok(file)
    }
}

impl Disk for StdDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.sync_dir(parent)?;
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        self.files().insert(path.to_path_buf(), Arc::new(file));
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0; len];
        self.file(path)?.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    }

    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file(path)?.write_all_at(bytes, offset)
    }

    fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let file = self.file(path)?;
        let wanted = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        // SAFETY: the descriptor belongs to `file`, which outlives the call.
        let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, wanted) };
        if status == 0 && file.metadata()?.len() == len {
            return Ok(());
        }
        // A file system without fallocate (or a file longer than asked): plain length.
        file.set_len(len)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.file(path)?.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = self.files();
        files.remove(from);
        files.remove(to);
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.files().remove(path);
        std::fs::remove_file(path)
    }
}

#[derive(Clone, Debug)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Change::Write { offset, bytes } => write_into(data, *offset, bytes),
            Change::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let offset = offset as usize;
    if data.len() < offset + bytes.len() {
        data.resize(offset + bytes.len(), 0);
    }
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
}

#[derive(Clone, Default)]
struct Inode {
    /// What a reader sees now.
    data: Vec<u8>,
    /// What survives a crash for certain.
    synced: Vec<u8>,
    /// Changes since the last sync, in order.
    unsynced: Vec<Change>,
}

#[derive(Clone, Default)]
struct SimState {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries now, and as of each directory's last sync.
    names: BTreeMap<PathBuf, u64>,
    synced_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    syncs: u64,
    /// Mutating operations left before the power goes (`None`: it stays on).
    power_left: Option<u64>,
}

impl SimState {
    /// Counts one mutating operation against a pending power cut.
    fn spend(&mut self) -> io::Result<()> {
        match &mut self.power_left {
            Some(0) => Err(io::Error::other("the power is out")),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// The in-memory disk. Cheap to clone; clones share the files.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
    /// While true, `sync` waits: a test holds fsyncs to show what queues behind one.
    held: Arc<(Mutex<bool>, Condvar)>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// File syncs so far (directory syncs not counted).
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Makes every `sync` wait until [`release_syncs`](Self::release_syncs).
    pub fn hold_syncs(&self) {
        *self.held.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    pub fn release_syncs(&self) {
        *self.held.0.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.held.1.notify_all();
    }

    /// After `ops` more mutating operations (writes, syncs, creates, renames, removes)
    /// every one fails and changes nothing, as if the power went out in the middle of
    /// whatever the log was doing; [`crash`](Self::crash) then restores it.
    pub fn cut_power_after(&self, ops: u64) {
        self.state().power_left = Some(ops);
    }

    /// The power goes out. Directory changes since each directory's last sync are lost;
    /// each file keeps its synced bytes and, when `keep_unsynced` is set, a random prefix
    /// (drawn from `seed`) of its later writes, the last one kept possibly cut short.
    pub fn crash(&self, seed: u64, keep_unsynced: bool) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = self.state();
        state.power_left = None;
        state.names = state.synced_names.clone();
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|id, _| live.contains(id));
        for inode in state.inodes.values_mut() {
            let mut data = std::mem::take(&mut inode.synced);
            if keep_unsynced && !inode.unsynced.is_empty() {
                let kept = rng.random_range(0..=inode.unsynced.len());
                for change in &inode.unsynced[..kept] {
                    change.apply(&mut data);
                }
                if let Some(Change::Write { offset, bytes }) = inode.unsynced.get(kept) {
                    let cut = rng.random_range(0..=bytes.len());
                    write_into(&mut data, *offset, &bytes[..cut]);
                }
            }
            inode.synced = data.clone();
            inode.data = data;
            inode.unsynced.clear();
        }
    }

    /// The power goes out for good on this disk (every later operation fails, so a
    /// process still holding it changes nothing), and the disk that comes back is a new
    /// one holding what [`crash`](Self::crash) would keep. The simulation restarts a node
    /// on that one while the crashed node's last tasks wind down on this one.
    pub fn crash_into_new(&self, seed: u64, keep_unsynced: bool) -> SimDisk {
        let survivor = {
            let mut state = self.state();
            state.power_left = Some(0);
            state.clone()
        };
        let disk = SimDisk {
            state: Arc::new(Mutex::new(survivor)),
            held: Arc::default(),
        };
        disk.crash(seed, keep_unsynced);
        disk
    }

    /// The file's current bytes (for tests that damage files).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let id = state.names.get(path)?;
        state.inodes.get(id).map(|inode| inode.data.clone())
    }

    /// Replaces the file's bytes, durably, as a bit flip on the platter would.
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) -> bool {
        let mut state = self.state();
        let Some(&id) = state.names.get(path) else {
            return false;
        };
        let Some(inode) = state.inodes.get_mut(&id) else {
            return false;
        };
        inode.data = bytes.clone();
        inode.synced = bytes;
        inode.unsynced.clear();
        true
    }

    fn change(&self, path: &Path, change: Change) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        let id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        change.apply(&mut inode.data);
        inode.unsynced.push(change);
        Ok(())
    }

    fn read<T>(&self, path: &Path, f: impl FnOnce(&[u8]) -> io::Result<T>) -> io::Result<T> {
        let state = self.state();
        let id = state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inodes.get(id).ok_or_else(|| not_found(path))?;
        f(&inode.data)
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        if !state.dirs.contains(&parent_of(path)) {
            return Err(not_found(&parent_of(path)));
        }
        let id = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(id, Inode::default());
        state.names.insert(path.to_path_buf(), id);
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.state();
        Ok(state.names.contains_key(path) || state.dirs.contains(path))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        self.read(path, |data| Ok(data.len() as u64))
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read(path, |data| Ok(data.to_vec()))
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.read(path, |data| {
            let start = offset as usize;
            data.get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))
        })
    }

    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.change(
            path,
            Change::Write {
                offset,
                bytes: bytes.to_vec(),
            },
        )
    }

    fn allocate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.change(path, Change::SetLen(len))
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        {
            let (held, released) = &*self.held;
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            while *held {
                held = released.wait(held).unwrap_or_else(|p| p.into_inner());
            }
        }
        let mut state = self.state();
        state.spend()?;
        state.syncs += 1;
        let id = *state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        for change in std::mem::take(&mut inode.unsynced) {
            change.apply(&mut inode.synced);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        let SimState {
            names,
            synced_names,
            ..
        } = &mut *state;
        synced_names.retain(|path, _| path.parent() != Some(dir));
        for (path, id) in names.iter() {
            if path.parent() == Some(dir) {
                synced_names.insert(path.clone(), *id);
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        if !state.dirs.contains(&parent_of(to)) {
            return Err(not_found(&parent_of(to)));
        }
        let id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.spend()?;
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loses_unsynced_writes_and_unsynced_names() {
        let disk = SimDisk::new();
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        let a = dir.join("a");
        disk.create(&a).unwrap();
        disk.write_at(&a, 0, b"synced").unwrap();
        disk.sync(&a).unwrap();
        disk.sync_dir(dir).unwrap();
        disk.write_at(&a, 6, b" lost").unwrap();
        let b = dir.join("b");
        disk.create(&b).unwrap();
        disk.sync(&b).unwrap();
        disk.crash(1, false);
        assert_eq!(disk.read_all(&a).unwrap(), b"synced");
        assert!(!disk.exists(&b).unwrap(), "b's name was never synced");
    }

    #[test]
    fn a_crash_may_keep_a_prefix_of_unsynced_writes() {
        for seed in 0..50 {
            let disk = SimDisk::new();
            let dir = Path::new("/d");
            disk.create_dir_all(dir).unwrap();
            let a = dir.join("a");
            disk.create(&a).unwrap();
            disk.sync_dir(dir).unwrap();
            disk.write_at(&a, 0, b"0123").unwrap();
            disk.write_at(&a, 4, b"4567").unwrap();
            disk.crash(seed, true);
            let data = disk.read_all(&a).unwrap();
            assert!(b"01234567".starts_with(&data), "seed {seed}: {data:?}");
        }
    }

    #[test]
    fn the_real_disk_reads_what_it_wrote() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = StdDisk::new();
        let path = tmp.path().join("f");
        disk.create(&path).unwrap();
        disk.allocate(&path, 4096).unwrap();
        disk.write_at(&path, 10, b"hello").unwrap();
        disk.sync(&path).unwrap();
        assert_eq!(disk.len(&path).unwrap(), 4096);
        assert_eq!(disk.read_at(&path, 10, 5).unwrap(), b"hello");
        let moved = tmp.path().join("g");
        disk.rename(&path, &moved).unwrap();
        disk.sync_dir(tmp.path()).unwrap();
        assert_eq!(disk.list(tmp.path()).unwrap(), vec!["g".to_string()]);
        disk.remove(&moved).unwrap();
        assert!(!disk.exists(&moved).unwrap());
    }
}
