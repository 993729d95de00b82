//! API tests (filled below).
