//! Backups: the `bedrock.v1.Maintenance` service (`Backup`, a checkpoint
//! streamed in chunks) and the `bedrock backup DIR` command that writes
//! it to disk and verifies it.
//!
//! Server side, the checkpoint is taken into `<data-dir>/backups/` (hard
//! links need the same file system), streamed file by file in
//! [`CHUNK_BYTES`] chunks read on the blocking pool, and deleted when the
//! stream ends or the client goes away. Client side, files are written
//! into a new directory, fsynced with the directory, then opened as a
//! database to prove the backup is whole; a partial backup is left in
//! `DIR.partial` and never in `DIR`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use bedrock_proto::v1 as pb;
use pb::maintenance_server::{Maintenance, MaintenanceServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::client::Access;
use crate::store::Store;

/// Largest `data` of one [`pb::BackupChunk`], in bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Tells backups apart in the scratch directory.
static NEXT_BACKUP: AtomicU64 = AtomicU64::new(0);

/// The `bedrock.v1.Maintenance` service.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    store: Store,
    scratch: PathBuf,
}

impl MaintenanceService {
    /// The service over `store`; checkpoints go under `scratch` (a
    /// directory on the data directory's file system, created on demand).
    pub fn new(store: Store, scratch: PathBuf) -> MaintenanceService {
        MaintenanceService { store, scratch }
    }

    /// The tonic server.
    pub fn into_server(self) -> MaintenanceServer<MaintenanceService> {
        MaintenanceServer::new(self)
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type BackupStream = ReceiverStream<Result<pb::BackupChunk, Status>>;

    async fn backup(&self, _request: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let n = NEXT_BACKUP.fetch_add(1, Ordering::Relaxed);
        let dir = self.scratch.join(format!("backup-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", self.scratch.display())))?;
        let _ = std::fs::remove_dir_all(&dir);
        let revision = self.store.checkpoint(dir.clone()).await.map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            Status::from(e)
        })?;
        tracing::info!(revision, dir = %dir.display(), "backup checkpoint taken; streaming");
        let (tx, rx) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = stream_dir(&dir, revision, &tx) {
                let _ = tx.blocking_send(Err(Status::internal(format!("backup failed: {e:#}"))));
            }
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot delete the backup checkpoint");
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends every file of `dir` in chunks; stops early (Ok) if the client
/// went away.
fn stream_dir(dir: &Path, revision: u64, tx: &mpsc::Sender<Result<pb::BackupChunk, Status>>) -> anyhow::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut buf = vec![0u8; CHUNK_BYTES];
    for name in names {
        let mut file = std::fs::File::open(dir.join(&name)).with_context(|| format!("open {name}"))?;
        let mut offset = 0u64;
        loop {
            let n = read_full(&mut file, &mut buf).with_context(|| format!("read {name}"))?;
            let last = n < buf.len();
            let chunk = pb::BackupChunk { file: name.clone(), offset, data: buf[..n].to_vec(), last, revision };
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Ok(());
            }
            offset += n as u64;
            if last {
                break;
            }
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A file name the server may send: one plain component.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// `bedrock backup DIR`: streams a backup from the first endpoint that
/// answers into `DIR` (which must not exist), then opens it to verify it.
///
/// # Errors
/// `DIR` exists, the connection or the stream fails, the server sends an
/// unsafe file name or out-of-order chunk, or the result does not open.
pub async fn run_backup(endpoints: &[String], access: &Access, dir: &Path) -> anyhow::Result<ExitCode> {
    if dir.exists() {
        bail!("{} exists; a backup goes into a new directory", dir.display());
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).with_context(|| format!("create {}", partial.display()))?;
    let mut failures = Vec::new();
    let mut stream = None;
    for endpoint in endpoints {
        let channel = match access.endpoint(endpoint)?.connect().await {
            Ok(ch) => ch,
            Err(e) => {
                failures.push(format!("{endpoint}: {e}"));
                continue;
            }
        };
        let mut client = pb::maintenance_client::MaintenanceClient::new(channel);
        match client.backup(access.request(pb::BackupRequest {})).await {
            Ok(resp) => {
                stream = Some(resp.into_inner());
                break;
            }
            Err(s) => failures.push(format!("{endpoint}: {}: {}", s.code(), s.message())),
        }
    }
    let Some(mut stream) = stream else { bail!("no endpoint took the backup: {}", failures.join("; ")) };
    let (mut files, mut bytes, mut revision) = (0u64, 0u64, 0u64);
    let mut current: Option<(String, std::fs::File, u64)> = None;
    while let Some(chunk) = stream.message().await.context("backup stream")? {
        if !safe_name(&chunk.file) {
            bail!("the server sent an unsafe file name {:?}", chunk.file);
        }
        revision = chunk.revision;
        if current.as_ref().is_none_or(|(name, _, _)| *name != chunk.file) {
            if let Some((name, _, _)) = &current {
                bail!("file {name} ended without its last chunk");
            }
            let path = partial.join(&chunk.file);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("create {}", path.display()))?;
            current = Some((chunk.file.clone(), file, 0));
        }
        let Some((name, file, written)) = current.as_mut() else { unreachable!("set above") };
        if chunk.offset != *written {
            bail!("chunk of {name} at offset {} (expected {written})", chunk.offset);
        }
        file.seek(SeekFrom::Start(chunk.offset))?;
        file.write_all(&chunk.data)?;
        *written += chunk.data.len() as u64;
        bytes += chunk.data.len() as u64;
        if chunk.last {
            file.sync_all()?;
            files += 1;
            current = None;
        }
    }
    if let Some((name, _, _)) = current {
        bail!("the stream ended in the middle of {name}");
    }
    std::fs::File::open(&partial)?.sync_all()?;
    // Prove it opens as a database before calling it a backup.
    let check = partial.clone();
    let opened = tokio::task::spawn_blocking(move || bedrock_txn::Db::open(bedrock_txn::Options::with_dir(&check)))
        .await?
        .with_context(|| format!("the backup in {} does not open", partial.display()))?;
    let last = opened.stats().last_sequence;
    drop(opened);
    std::fs::rename(&partial, dir).with_context(|| format!("rename {} to {}", partial.display(), dir.display()))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    println!(
        "backup of revision {revision} in {}: {files} files, {bytes} bytes (opens at sequence {last})",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn only_plain_file_names_are_accepted() {
        assert!(safe_name("000012.sst"));
        assert!(safe_name("CURRENT"));
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "a\0b"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }
}
