//! The emulator's state as its HTTP handlers share it: the platform behind a lock, the data
//! file it was seeded from, and the channel pushes go out on (the socket.io endpoint listens).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use super::platform::Platform;
use crate::models::Push;

pub(crate) struct EmulatorState {
    pub(crate) platform: Mutex<Platform>,
    pub(crate) data_file: Option<PathBuf>,
    pub(crate) pushes: broadcast::Sender<Push>,
}

impl EmulatorState {
    pub(crate) fn platform(&self) -> MutexGuard<'_, Platform> {
        // Every operation leaves the state consistent before it can fail, so a panic elsewhere
        // while the lock was held leaves nothing half-done.
        self.platform.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState")
            .field("data_file", &self.data_file)
            .finish_non_exhaustive()
    }
}
