//! The file outbox: the embedded default transport. Each message becomes one JSON file named
//! after its idempotency key in a directory, written atomically (temporary file, then a hard link)
//! and never overwritten, so a repeated delivery of one key is counted, not written twice.
//!
//! The file holds the message as the engine hands it over (recipient, template, subject, offer,
//! personal fields). Rendering templates into MJML, HTML and text is the channels layer's job.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ports::{Dispatch, SendOutcome, Transport};

/// A directory in which each idempotency key is written at most once: the file appears
/// atomically (temporary file, then a hard link, which fails when the target exists, so two
/// racing deliveries cannot both win) and is never overwritten. The JSON outbox here and the
/// channels' `.eml` outbox both write through it.
#[derive(Debug)]
pub struct OnceDir {
    dir: PathBuf,
    written: AtomicU64,
    repeated: AtomicU64,
}

/// Distinguishes temporary files of concurrent writes in one process.
static TMP: AtomicU64 = AtomicU64::new(0);

impl OnceDir {
    /// Writes into `dir`, creating it.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            written: AtomicU64::new(0),
            repeated: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files written by this instance.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes of a key that was already there (should stay 0).
    pub fn repeated(&self) -> u64 {
        self.repeated.load(Ordering::Relaxed)
    }

    /// The file a key is written to, with extension `ext`.
    pub fn path_of(&self, key: &str, ext: &str) -> PathBuf {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.{ext}"))
    }

    /// Writes `bytes` for `key` unless the key is already there; `Ok(false)` when it was.
    pub fn put(&self, key: &str, ext: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let path = self.path_of(key, ext);
        let fresh = if path.exists() {
            false
        } else {
            let n = TMP.fetch_add(1, Ordering::Relaxed);
            let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            let linked = std::fs::hard_link(&tmp, &path);
            std::fs::remove_file(&tmp)?;
            match linked {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(e),
            }
        };
        let counter = if fresh { &self.written } else { &self.repeated };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(fresh)
    }
}

/// A directory of delivered messages, one JSON file each.
#[derive(Debug)]
pub struct FileOutbox {
    files: OnceDir,
}

impl FileOutbox {
    /// Writes into `dir`, creating it.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(Self {
            files: OnceDir::new(dir)?,
        })
    }

    /// The directory and its counts of written and repeated keys.
    pub fn files(&self) -> &OnceDir {
        &self.files
    }

    /// The file a key is written to.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.files.path_of(key, "json")
    }
}

impl Transport for FileOutbox {
    async fn deliver(&self, m: &Dispatch) -> SendOutcome {
        let bytes = match serde_json::to_vec_pretty(m) {
            Ok(b) => b,
            Err(e) => return SendOutcome::Failed(format!("file outbox: {e}")),
        };
        match self.files.put(m.key.as_str(), "json", &bytes) {
            Ok(true) => SendOutcome::Sent {
                provider_id: Some(self.path_of(m.key.as_str()).display().to_string()),
                // The dispatch is written as it is: no rendered subject to keep.
                subject: None,
            },
            Ok(false) => SendOutcome::Sent {
                provider_id: Some("already in the outbox".into()),
                subject: None,
            },
            Err(e) => {
                SendOutcome::Failed(format!("file outbox {}: {e}", self.files.dir().display()))
            }
        }
    }
}
