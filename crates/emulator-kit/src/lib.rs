//! Shared plumbing for the emulators: serving, fault injection, request counters, limits, SQLite files.
