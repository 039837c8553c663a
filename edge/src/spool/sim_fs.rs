//! A power-cut simulator: an in-memory [`FileLayer`] that knows which bytes and
//! directory entries are durable, and at a simulated crash throws away everything
//! that is not.
//!
//! - File data is durable up to the length at the last `sync_data` (or `truncate`,
//!   which fsyncs). Bytes written after that are lost at a crash, except that the
//!   crash may keep a random prefix of them (a torn write), optionally with its end
//!   zero-filled (a file extended whose data pages never made it).
//! - Creations, removals and renames are durable only after `sync_dir`; a crash
//!   restores the directory as of the last `sync_dir`, so a removed file can come
//!   back and a created one can vanish.
//! - A budget of mutating operations can be set; when it runs out every further
//!   mutating operation fails, as if the power went out right there.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use rand::{rngs::SmallRng, Rng};

use super::fs::{AppendFile, DirEntry, DirLock, FileLayer, ReadAt};

/// The simulated file system; clone the `Arc` to share it with a spool.
#[derive(Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug, Default)]
struct SimState {
    nodes: Vec<Node>,
    /// The directory as the process sees it: path -> node index.
    current: BTreeMap<PathBuf, usize>,
    /// The directory as of the last `sync_dir`.
    durable: BTreeMap<PathBuf, usize>,
    /// Mutating operations left before the simulated power cut (None: unlimited).
    budget: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct Node {
    data: Vec<u8>,
    durable_len: usize,
}

#[derive(Debug)]
struct SimAppend {
    state: Arc<Mutex<SimState>>,
    node: usize,
}

#[derive(Debug)]
struct SimRead {
    data: Vec<u8>,
}

fn lock(state: &Mutex<SimState>) -> MutexGuard<'_, SimState> {
    // A test that panicked while holding the lock has failed already.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        lock(&self.state)
    }

    fn handle(&self, node: usize) -> Box<dyn AppendFile> {
        Box::new(SimAppend {
            state: Arc::clone(&self.state),
            node,
        })
    }

    /// Lets `ops` more mutating operations succeed, then fails every one.
    pub fn cut_power_after(&self, ops: u64) {
        self.lock().budget = Some(ops);
    }

    /// Simulates the crash: every non-durable byte and directory change is lost
    /// (keeping a random torn prefix of unsynced bytes when `rng` says so), and the
    /// operation budget is lifted. Whoever used the files before must be dropped.
    pub fn crash(&self, rng: &mut SmallRng) {
        let mut state = self.lock();
        state.current = state.durable.clone();
        state.budget = None;
        for node in &mut state.nodes {
            let unsynced = node.data.len() - node.durable_len;
            let keep = if unsynced > 0 && rng.gen_bool(0.5) {
                rng.gen_range(0..=unsynced)
            } else {
                0
            };
            node.data.truncate(node.durable_len + keep);
            if keep > 0 && rng.gen_bool(0.25) {
                let zeros = rng.gen_range(1..=keep.min(512));
                let len = node.data.len();
                node.data[len - zeros..].fill(0);
            }
            node.durable_len = node.data.len();
        }
    }

    /// Overwrites a file's bytes as if the disk changed them (durable at once).
    pub fn corrupt(&self, path: &Path, edit: &mut dyn FnMut(&mut Vec<u8>)) -> io::Result<()> {
        let mut state = self.lock();
        let node = *state.current.get(path).ok_or_else(|| not_found(path))?;
        let node = &mut state.nodes[node];
        edit(&mut node.data);
        node.durable_len = node.data.len();
        Ok(())
    }

    /// Names of the files in the directory as the process sees it.
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.lock().current.keys().cloned().collect()
    }
}

impl SimState {
    fn spend(&mut self) -> io::Result<()> {
        match &mut self.budget {
            Some(0) => Err(power_cut()),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn new_node(&mut self, path: &Path) -> usize {
        self.nodes.push(Node::default());
        let node = self.nodes.len() - 1;
        self.current.insert(path.to_path_buf(), node);
        node
    }
}

impl FileLayer for SimFs {
    fn lock_dir(&self, _dir: &Path) -> io::Result<DirLock> {
        // One process at a time by construction: tests drop a spool before reopening.
        Ok(DirLock::unlocked())
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.lock();
        Ok(state
            .current
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, &node)| DirEntry {
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                len: state.nodes[node].data.len() as u64,
            })
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let node = *state.current.get(path).ok_or_else(|| not_found(path))?;
        Ok(state.nodes[node].data.clone())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadAt>> {
        Ok(Box::new(SimRead {
            data: self.read(path)?,
        }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let node = {
            let mut state = self.lock();
            state.spend()?;
            if state.current.contains_key(path) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            state.new_node(path)
        };
        Ok(self.handle(node))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let node = {
            let mut state = self.lock();
            state.spend()?;
            state.new_node(path)
        };
        Ok(self.handle(node))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let node = *self
            .lock()
            .current
            .get(path)
            .ok_or_else(|| not_found(path))?;
        Ok(self.handle(node))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.spend()?;
        let node = *state.current.get(path).ok_or_else(|| not_found(path))?;
        let node = &mut state.nodes[node];
        node.data.resize(len as usize, 0);
        node.durable_len = node.data.len();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend()?;
        state.current.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend()?;
        let node = state.current.remove(from).ok_or_else(|| not_found(from))?;
        state.current.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend()?;
        let current: Vec<(PathBuf, usize)> = state
            .current
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, &node)| (path.clone(), node))
            .collect();
        state.durable.retain(|path, _| path.parent() != Some(dir));
        state.durable.extend(current);
        Ok(())
    }
}

impl AppendFile for SimAppend {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.spend()?;
        state.nodes[self.node].data.extend_from_slice(data);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.spend()?;
        let node = &mut state.nodes[self.node];
        node.durable_len = node.data.len();
        Ok(())
    }
}

impl ReadAt for SimRead {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = offset as usize;
        let src = self
            .data
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
}
