//! The last error of something that is retried, shown while it keeps failing.

use std::sync::{Mutex, PoisonError};

/// The error of the last attempt of something that is retried, while it fails.
#[derive(Debug, Default)]
pub struct LastError(Mutex<Option<String>>);

impl LastError {
    /// Replaces it (None after a success).
    pub fn set(&self, error: Option<String>) {
        // Only a String is behind the lock: a panic elsewhere cannot leave it inconsistent.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }

    /// The error, while failing.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
