//! The file outbox: the embedded default transport. Each message becomes one JSON file named
//! after its idempotency key in a directory, written atomically (temporary file, then rename)
//! and never overwritten, so a repeated delivery of one key is counted, not written twice.
//!
//! The file holds the message as the engine hands it over (recipient, template, subject, offer,
//! personal fields). Rendering templates into MJML, HTML and text is the channels layer's job.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ports::{Dispatch, SendOutcome, Transport};

/// A directory of delivered messages.
#[derive(Debug)]
pub struct FileOutbox {
    dir: PathBuf,
    written: AtomicU64,
    repeated: AtomicU64,
}

impl FileOutbox {
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

    /// Messages written by this instance.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Deliveries of a key that was already in the outbox (should stay 0).
    pub fn repeated(&self) -> u64 {
        self.repeated.load(Ordering::Relaxed)
    }

    /// The file a key is written to.
    pub fn path_of(&self, key: &str) -> PathBuf {
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
        self.dir.join(format!("{safe}.json"))
    }

    fn write(&self, m: &Dispatch) -> std::io::Result<bool> {
        let path = self.path_of(&m.key);
        if path.exists() {
            return Ok(false);
        }
        let n = self.written.load(Ordering::Relaxed) + self.repeated.load(Ordering::Relaxed);
        let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(m).map_err(std::io::Error::other)?,
        )?;
        // A hard link fails when the target exists, so two racing deliveries cannot both win.
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {
                std::fs::remove_file(&tmp)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl Transport for FileOutbox {
    async fn deliver(&self, m: &Dispatch) -> SendOutcome {
        match self.write(m) {
            Ok(true) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                SendOutcome::Sent {
                    provider_id: Some(self.path_of(&m.key).display().to_string()),
                }
            }
            Ok(false) => {
                self.repeated.fetch_add(1, Ordering::Relaxed);
                SendOutcome::Sent {
                    provider_id: Some("already in the outbox".into()),
                }
            }
            Err(e) => SendOutcome::Failed(format!("file outbox {}: {e}", self.dir.display())),
        }
    }
}
