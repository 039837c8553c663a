//! The crash-safe disk spool (being written; see `ARCHITECTURE.md`).
