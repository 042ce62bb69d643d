//! The service's notion of "now". Production reads the system clock; tests drive a manual clock
//! so that rooms can start, run and end without waiting.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Self {
        Self::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t.lock().expect("clock poisoned"),
        }
    }

    /// Now as stored: a UTC `NaiveDateTime`.
    pub fn now_naive(&self) -> NaiveDateTime {
        self.now().naive_utc()
    }

    /// Moves a manual clock; does nothing to the system clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Clock::Manual(t) = self {
            *t.lock().expect("clock poisoned") = to;
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            let mut guard = t.lock().expect("clock poisoned");
            *guard += by;
        }
    }
}
